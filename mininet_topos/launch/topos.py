"""Mininet topologies built from QKD topology files: one switch per node, vKMS and SAE hosts.

``plan(topology)`` is the pure part: which switches (with fixed DPIDs), hosts (with fixed
data-plane and management addresses) and links a topology becomes. ``QkdTopo`` turns a
plan into a Mininet ``Topo``. The out-of-band management network is a plain Linux bridge
in the root namespace (``MgmtBridge``): agent <-> QuSeC control traffic never crosses the
OpenFlow switches QuSeC programs.
"""
from __future__ import annotations

import ipaddress
import re
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from mininet.node import RemoteController, Switch
from mininet.topo import Topo

from mininet_topos.model import Topology

SWITCH_PREFIX = "qs"              # our OVS bridges are qs1, qs2, ...: `qkdnet clean` finds them by it
MGMT_BRIDGE = "qmgmt0"            # the management bridge (Linux bridge in the root namespace)
DATA_NET = ipaddress.ip_network("10.0.0.0/16")
SAE_BASE = ipaddress.ip_address("10.0.128.0")     # SAE hosts: 10.0.128.1, ...
MGMT_NET = ipaddress.ip_network("172.30.0.0/16")
MGMT_ROOT_IP = ipaddress.ip_address("172.30.0.1")  # QuSeC's address on the management network
MAX_NODES = 32000                 # node and SAE addresses must stay inside DATA_NET's halves

_NAME_OK = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,9}$")
_SAE_NAME_OK = re.compile(r"^[A-Za-z][A-Za-z0-9_-]{0,9}$")
# Words the Mininet CLI reads as commands: a host of that name could not be addressed.
_RESERVED = {"dpctl", "dump", "exit", "gterm", "help", "intfs", "iperf", "iperfudp", "link",
             "links", "net", "nodes", "noecho", "pingall", "pingallfull", "pingpair",
             "pingpairfull", "ports", "px", "py", "quit", "sh", "source", "switch", "time",
             "wait", "x", "xterm", "eof", "qkey", "qpaths", "qlinks", "qpolicy", "qnodes",
             "c0", "lo"}


class TopoPlanError(ValueError):
    """The topology cannot be emulated (e.g. too many nodes for the address plan)."""


@dataclass(frozen=True)
class SwitchPlan:
    name: str
    node: str
    dpid: int


@dataclass(frozen=True)
class NodeHostPlan:
    name: str
    node: str
    switch: str
    ip: str          # data plane (ETSI 014/004 for SAEs, relay between agents)
    mgmt_ip: str     # management network (control stream to QuSeC)


@dataclass(frozen=True)
class SaeHostPlan:
    name: str
    sae: str
    node: str
    switch: str
    ip: str


@dataclass(frozen=True)
class LinkPlan:
    a: str           # switch names
    b: str
    node_a: str
    node_b: str
    delay_ms: float | None = None


@dataclass
class EmulationPlan:
    """Everything a topology becomes in Mininet, with names and addresses fixed up front."""
    topology: str
    switches: list[SwitchPlan] = field(default_factory=list)
    node_hosts: list[NodeHostPlan] = field(default_factory=list)
    sae_hosts: list[SaeHostPlan] = field(default_factory=list)
    links: list[LinkPlan] = field(default_factory=list)
    prefixlen: int = DATA_NET.prefixlen
    mgmt_prefixlen: int = MGMT_NET.prefixlen
    mgmt_root_ip: str = str(MGMT_ROOT_IP)

    def switch_of(self, node: str) -> SwitchPlan:
        return next(s for s in self.switches if s.node == node)

    def node_host(self, node: str) -> NodeHostPlan:
        for h in self.node_hosts:
            if h.node == node:
                return h
        raise KeyError(f"no node {node!r} in {self.topology}")

    def sae_host(self, sae: str) -> SaeHostPlan:
        for h in self.sae_hosts:
            if h.sae == sae:
                return h
        raise KeyError(f"no SAE {sae!r} in {self.topology}")

    def node_of_dpid(self) -> dict[int, str]:
        return {s.dpid: s.node for s in self.switches}

    def expected_switch_links(self) -> set[frozenset[int]]:
        """Switch adjacencies (pairs of DPIDs) LLDP discovery should find."""
        dpid = {s.name: s.dpid for s in self.switches}
        return {frozenset((dpid[l.a], dpid[l.b])) for l in self.links}


def _host_name(wanted: str, fallback: str, pattern: re.Pattern, taken: set[str]) -> str:
    ok = (pattern.match(wanted) and wanted.lower() not in _RESERVED
          and not wanted.startswith(SWITCH_PREFIX) and wanted not in taken)
    name = wanted if ok else fallback
    if name in taken:
        raise TopoPlanError(f"host name {name!r} is used twice")
    taken.add(name)
    return name


def plan(topology: Topology) -> EmulationPlan:
    """Switches, hosts and links of ``topology`` in Mininet (pure; no root needed).

    Hosts are named after their node or SAE id where that is a usable Mininet name
    (short, no CLI command), else ``nI`` / ``eJ``. Switch ``qsI`` has DPID I, in file order.
    """
    n_nodes, n_saes = len(topology.nodes), len(topology.saes)
    if n_nodes > MAX_NODES or n_saes > MAX_NODES:
        raise TopoPlanError(f"{topology.name}: {n_nodes} nodes / {n_saes} SAEs exceed the "
                            f"address plan ({MAX_NODES} each)")
    p = EmulationPlan(topology.name)
    taken: set[str] = set()
    sw_of: dict[str, str] = {}
    for i, node_id in enumerate(topology.nodes, start=1):
        sw = f"{SWITCH_PREFIX}{i}"
        sw_of[node_id] = sw
        taken.add(sw)
        p.switches.append(SwitchPlan(sw, node_id, i))
    for i, node_id in enumerate(topology.nodes, start=1):
        name = _host_name(node_id, f"n{i}", _NAME_OK, taken)
        p.node_hosts.append(NodeHostPlan(name, node_id, sw_of[node_id],
                                         str(DATA_NET.network_address + i),
                                         str(MGMT_ROOT_IP + i)))
    for j, sae in enumerate(topology.saes.values(), start=1):
        name = _host_name(sae.id, f"e{j}", _SAE_NAME_OK, taken)
        p.sae_hosts.append(SaeHostPlan(name, sae.id, sae.node, sw_of[sae.node], str(SAE_BASE + j)))
    g = topology.classical_graph()
    order = {n: i for i, n in enumerate(topology.nodes)}
    for a, b, data in sorted(g.edges(data=True), key=lambda e: sorted((order[e[0]], order[e[1]]))):
        if order[a] > order[b]:
            a, b = b, a
        p.links.append(LinkPlan(sw_of[a], sw_of[b], a, b, data.get("latency_ms")))
    return p


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


class QkdTopo(Topo):
    """A Mininet topology from a QKD topology: ``QkdTopo(plan(topology), mgmt=True)``.

    Per node: switch ``qsI`` and the vKMS host (data interface eth0 on the switch, management
    interface eth1 on the management bridge when ``mgmt``); per SAE: a host on its node's
    switch; switch links follow the classical graph (the fibre unless the file says otherwise).
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
