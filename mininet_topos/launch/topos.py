"""Mininet topologies built from QKD topology files: one switch per node, vKMS and SAE hosts.

``mininet_topos.launch.plan`` is the pure part: which switches (with fixed DPIDs), hosts (with
fixed data-plane and management addresses) and links a topology becomes. ``QkdTopo`` turns a
plan into a Mininet ``Topo``. The out-of-band management network is a plain Linux bridge
in the root namespace (``MgmtBridge``): agent <-> QuSeC control traffic never crosses the
OpenFlow switches QuSeC programs.
"""
from __future__ import annotations

import sys
from collections.abc import Iterable
from typing import Any

from mininet.node import OVSSwitch, RemoteController, Switch
from mininet.topo import Topo

from mininet_topos.launch.plan import MGMT_BRIDGE, MGMT_NET, MGMT_ROOT_IP, EmulationPlan

class MgmtBridge(Switch):
    """A Linux bridge in the root namespace carrying the management network (no OpenFlow).

    It ignores the controllers Mininet hands every switch, and holds QuSeC's management
    address, so agents reach QuSeC in the root namespace without touching the data plane.
    """

    def __init__(self, name: str, address: str = f"{MGMT_ROOT_IP}/{MGMT_NET.prefixlen}",
                 **params) -> None:
        params.setdefault("dpid", "%016x" % 0xFFFF)  # unused, keeps Mininet's name->dpid away
        params["inNamespace"] = False
        super().__init__(name, **params)
        self.address = address

    def start(self, _controllers) -> None:
        self.cmd("ip link del", self.name, "2>/dev/null")
        self.cmd("ip link add", self.name, "type bridge")
        for intf in self.intfList():
            if self.name in intf.name:
                self.cmd("ip link set", intf.name, "master", self.name)
                self.cmd("ip link set", intf.name, "up")
        self.cmd("ip addr add", self.address, "dev", self.name)
        self.cmd("ip link set", self.name, "up")

    def stop(self, deleteIntfs: bool = True) -> None:  # noqa: N803 - Mininet's signature
        self.cmd("ip link del", self.name, "2>/dev/null")
        super().stop(deleteIntfs)

    def connected(self) -> bool:
        return "UP" in self.cmd("ip link show", self.name)


class QuSeCRemote(RemoteController):
    """QuSeC as Mininet's remote controller (default 127.0.0.1:6653), without the telnet probe.

    Mininet's ``RemoteController`` checks the port with telnet and decodes the reply as UTF-8;
    QuSeC's binary OpenFlow HELLO then raises UnicodeDecodeError (intermittently: it depends on
    timing). Whoever starts QuSeC waits for its port instead.
    """

    def __init__(self, name: str, ip: str = "127.0.0.1", port: int = 6653, **kwargs) -> None:
        super().__init__(name, ip=ip, port=port, **kwargs)

    def checkListening(self) -> None:  # noqa: N802 - Mininet's name
        pass

    def stop(self, *_args: Any, **_kwargs: Any) -> None:
        """End this node's shell: Mininet's RemoteController.stop does nothing, so every
        network used to leave a ``bash ... mininet:c0`` behind in the root namespace."""
        self.terminate()


class DomainSwitch(OVSSwitch):
    """An OVS bridge under one of several controllers: its domain's QuSeC (``controller``, the
    controller's Mininet name). Mininet hands every switch every controller; this one keeps its own."""

    def __init__(self, name: str, *, controller: str | None = None, **params: Any) -> None:
        self.own_controller = controller
        super().__init__(name, **params)

    def start(self, controllers: list) -> None:
        super().start([c for c in controllers if self.own_controller in (None, c.name)])


class QkdTopo(Topo):
    """A Mininet topology from a QKD topology: ``QkdTopo(plan(topology), mgmt=True)``.

    Per node: switch ``qsI`` and the vKMS host (data interface eth0 on the switch, management
    interface eth1 on the management bridge when ``mgmt``); per SAE: a host on its node's
    switch; switch links follow the classical graph (the fibre unless the file says otherwise);
    per crossing between domains (a multi-domain plan), a direct link between its two node hosts
    on its own subnet, after the management interfaces.
    """

    def build(self, emulation_plan: EmulationPlan, mgmt: bool = True) -> None:  # noqa: D401
        p = emulation_plan
        self.qkd_plan = p
        for s in p.switches:
            self.addSwitch(s.name, dpid="%016x" % s.dpid)
        if mgmt:
            self.addSwitch(MGMT_BRIDGE, cls=MgmtBridge)
        # Host links first, so port 1 of every switch is its node host (data interface eth0).
        for h in p.node_hosts:
            self.addHost(h.name, ip=f"{h.ip}/{p.prefixlen}")
            self.addLink(h.name, h.switch)
        for h in p.sae_hosts:
            self.addHost(h.name, ip=f"{h.ip}/{p.prefixlen}")
            self.addLink(h.name, h.switch)
        for link in p.links:
            opts = {"delay": f"{link.delay_ms}ms"} if link.delay_ms else {}
            self.addLink(link.a, link.b, **opts)
        if mgmt:
            for h in p.node_hosts:
                self.addLink(h.name, MGMT_BRIDGE,
                             params1={"ip": f"{h.mgmt_ip}/{p.mgmt_prefixlen}"})
        for c in p.crossings:
            self.addLink(c.host_a, c.host_b, params1={"ip": f"{c.ip_a}/{c.prefixlen}"},
                         params2={"ip": f"{c.ip_b}/{c.prefixlen}"})


# ``python -S -c TX_CSUM_OFF IF...`` inside a host = ``ethtool -K IF tx off`` (no ethtool needed).
# OVS's userspace datapath reads frames from the veths with AF_PACKET and forwards them with
# the checksum the sending kernel left for the NIC to fill in: ping works, TCP does not.
TX_CSUM_OFF = """
import ctypes, fcntl, socket, struct, sys
ETHTOOL_STXCSUM, SIOCETHTOOL = 0x17, 0x8946
with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
    for ifname in sys.argv[1:]:
        value = ctypes.create_string_buffer(struct.pack("II", ETHTOOL_STXCSUM, 0))
        ifreq = struct.pack("16sP", ifname.encode(), ctypes.addressof(value)).ljust(40, bytes(1))
        fcntl.ioctl(s.fileno(), SIOCETHTOOL, ifreq)
"""


def tx_checksum_off(hosts: Iterable[Any], timeout: float = 30.0) -> None:
    """Turn off TX checksum offload on every interface of ``hosts`` (all at once).

    Needed for TCP on the userspace datapath (see TX_CSUM_OFF); RuntimeError naming the host
    when it fails.
    """
    procs = [(h, h.popen([sys.executable, "-S", "-c", TX_CSUM_OFF,
                          *(i.name for i in h.intfList() if i.name != "lo")]))
             for h in hosts]
    for h, proc in procs:
        _, err = proc.communicate(timeout=timeout)
        if proc.returncode:
            raise RuntimeError(f"could not turn off TX checksum offload in {h.name}: "
                               f"{(err or b'').decode(errors='replace').strip()}")
