"""Open vSwitch on this host: start it if needed and pick the datapath.

Machines without the openvswitch kernel module (common in VMs and containers)
run OVS's userspace datapath (``datapath_type=netdev``). ``python -m
mininet_topos.launch.ovs start`` is what ``make`` calls.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

OVS_CTL = Path("/usr/share/openvswitch/scripts/ovs-ctl")


class OvsError(RuntimeError):
    """Open vSwitch is missing or cannot be started."""


def is_running() -> bool:
    if not shutil.which("ovs-vsctl"):
        return False
    return subprocess.run(["ovs-vsctl", "--timeout=3", "show"], capture_output=True).returncode == 0


def kernel_datapath_available() -> bool:
    """True when the openvswitch kernel module is loaded or loadable."""
    if Path("/sys/module/openvswitch").exists():
        return True
    if shutil.which("modprobe") and os.geteuid() == 0:
        return subprocess.run(["modprobe", "openvswitch"], capture_output=True).returncode == 0
    return False


def datapath() -> str:
    """Mininet's OVSSwitch ``datapath`` argument: 'kernel' where possible, else 'user'."""
    return "kernel" if kernel_datapath_available() else "user"


def ensure_running() -> None:
    """Start ovsdb-server and ovs-vswitchd unless they already answer."""
    if is_running():
        return
    if not OVS_CTL.exists():
        raise OvsError(f"Open vSwitch is not installed ({OVS_CTL} missing): "
                       "apt-get install openvswitch-switch")
    if os.geteuid() != 0:
        raise OvsError("Open vSwitch is not running and starting it needs root")
    # ovs-ctl warns about ulimit in containers and skips modprobe without module
    # support; both are harmless with the userspace datapath.
    proc = subprocess.run([str(OVS_CTL), "start", "--system-id=random"],
                          capture_output=True, text=True)
    if not is_running():
        raise OvsError(f"ovs-ctl start failed (exit {proc.returncode}):\n{proc.stdout}{proc.stderr}")


def set_ssl(key: str, cert: str, ca_cert: str) -> None:
    """The OpenFlow TLS identity of every bridge (OVS keeps one per ovsdb): the switches then
    connect to ``ssl:`` controllers with ``cert`` and accept only a controller ``ca_cert`` signed.
    One network at a time holds the Mininet lock, so setting it machine-wide is safe."""
    for path in (key, cert, ca_cert):
        if not Path(path).is_file():
            raise OvsError(f"OpenFlow TLS: {path} not found")
    proc = subprocess.run(["ovs-vsctl", "--timeout=10", "set-ssl", key, cert, ca_cert],
                          capture_output=True, text=True)
    if proc.returncode:
        raise OvsError(f"ovs-vsctl set-ssl failed: {proc.stderr.strip()}")


# OVS's default inactivity probe is 5 s: during a 100-node bring-up QuSeC's hub is busy for
# longer, every switch dropped its connection once (ovs-vswitchd: "no response to inactivity
# probe after 5 seconds, disconnecting"), and each reconnect replanned its flows.
INACTIVITY_PROBE_MS = 30_000


def set_inactivity_probe(targets: list[str], ms: int = INACTIVITY_PROBE_MS) -> int:
    """Set ``inactivity_probe`` on every Controller record with one of ``targets`` (e.g.
    ``ssl:127.0.0.1:6653``), in one ovs-vsctl call; returns how many were set."""
    uuids: list[str] = []
    for target in targets:
        out = subprocess.run(["ovs-vsctl", "--timeout=10", "--bare", "--columns=_uuid", "find", "Controller",
                              f'target="{target}"'], capture_output=True, text=True)
        uuids += out.stdout.split()
    if not uuids:
        return 0
    cmd = ["ovs-vsctl", "--timeout=10"]
    for u in uuids:
        cmd += ["--", "set", "Controller", u, f"inactivity_probe={ms}"]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise OvsError(f"ovs-vsctl set Controller inactivity_probe failed: {proc.stderr.strip()}")
    return len(uuids)


def del_ssl() -> None:
    """Forget the OpenFlow TLS identity (the network that set it stopped)."""
    subprocess.run(["ovs-vsctl", "--timeout=10", "del-ssl"], capture_output=True)


def ssl_config() -> str:
    """``ovs-vsctl get-ssl`` (empty when none is set)."""
    return subprocess.run(["ovs-vsctl", "--timeout=5", "get-ssl"], capture_output=True,
                          text=True).stdout.strip()


def main(argv: list[str]) -> int:
    if argv[:1] != ["start"]:
        print("usage: python -m mininet_topos.launch.ovs start", file=sys.stderr)
        return 2
    if os.geteuid() != 0 and not is_running():
        print("ovs: not root and Open vSwitch is not running; the emulation tests will be skipped")
        return 0
    try:
        ensure_running()
    except OvsError as exc:
        print(f"ovs: {exc}", file=sys.stderr)
        return 1
    print(f"ovs: running ({datapath()} datapath)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
