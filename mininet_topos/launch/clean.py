"""Find and remove what a QKD network left behind: its processes, OVS bridges, veths, host shells.

``cleanup_ours()`` removes only what a QKD network makes (our OVS bridges ``qsN``, the
management bridge, their veths, Mininet shells of our hosts), by name and pid: Mininet's
own ``mn -c`` also kills every process called ``ping`` or ``controller`` on the machine,
deletes every OVS bridge and ``/tmp/*.log``.
"""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
from pathlib import Path

from mininet_topos.launch.plan import MGMT_BRIDGE, SWITCH_PREFIX


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def leftover_pids(state_dir: Path) -> dict[int, str]:
    """Processes started for ``state_dir`` that still run: pid -> what it is.

    Found by their command line naming a file inside the state dir (agent configs,
    qusec.conf) and by the gateway's pid file, so nothing else on the machine is touched.
    """
    state_dir = state_dir.resolve()
    found: dict[int, str] = {}
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        cmd = _cmdline(int(proc.name))
        if str(state_dir) + "/" in cmd and ("kms_agents.agent" in cmd or "kms-agent" in cmd
                                            or "osken-manager" in cmd or "quseccontroller" in cmd):
            found[int(proc.name)] = cmd.split(" --config")[0].split("/")[-1][:60]
    try:
        gw = json.loads((state_dir / "qusec" / "gateway.json").read_text()).get("pid")
        if gw and "quseccontroller.gateway" in _cmdline(int(gw)):
            found[int(gw)] = "quseccontroller.gateway"
    except (OSError, ValueError):
        pass
    return found


def our_bridges() -> list[str]:
    """OVS bridges a QKD network made (qs1, qs2, ...)."""
    out = subprocess.run(["ovs-vsctl", "--timeout=5", "list-br"], capture_output=True, text=True)
    return [b for b in out.stdout.split()
            if b.startswith(SWITCH_PREFIX) and b[len(SWITCH_PREFIX):].isdigit()]


def mininet_shells(names: set[str] | None = None) -> dict[int, str]:
    """Mininet node shells (``bash ... mininet:NAME``) still running: pid -> NAME.

    Only those named in ``names`` when given (one network at a time holds the lock, so
    without names every leftover shell is a crashed network's).
    """
    found = {}
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            m = re.search(r"\bmininet:(\S+)", _cmdline(int(proc.name)))
            if m and (names is None or m.group(1) in names):
                found[int(proc.name)] = m.group(1)
    return found


def our_veths() -> list[str]:
    """Root-namespace veths of our switches and management bridge (qsN-ethM, qmgmt0-ethM)."""
    out = subprocess.run(["ip", "-o", "link", "show"], capture_output=True, text=True).stdout
    pat = re.compile(rf"^\d+: ((?:{SWITCH_PREFIX}\d+|{MGMT_BRIDGE})-eth\d+)[@:]")
    return [m.group(1) for line in out.splitlines() if (m := pat.match(line))]


def cleanup_ours(host_names: set[str] | None = None, say=print) -> None:
    """Remove our bridges, veths and Mininet shells (not other people's processes or files)."""
    bridges = our_bridges()
    if bridges:
        subprocess.run(["ovs-vsctl", "--timeout=10", *[a for br in bridges
                        for a in ("--", "--if-exists", "del-br", br)]], check=False)
        say(f"removed OVS bridges: {' '.join(bridges)}")
    if subprocess.run(["ip", "link", "show", MGMT_BRIDGE], capture_output=True).returncode == 0:
        subprocess.run(["ip", "link", "del", MGMT_BRIDGE], check=False)
        say(f"removed management bridge {MGMT_BRIDGE}")
    shells = mininet_shells(host_names)
    if shells:
        kill_all(shells, grace=1.0)
        say(f"stopped {len(shells)} Mininet host shell(s)")
    veths = our_veths()
    for v in veths:
        subprocess.run(["ip", "link", "del", v], capture_output=True, check=False)
    if veths:
        say(f"removed {len(veths)} leftover veth(s)")


def kill_all(pids: dict[int, str], grace: float = 5.0) -> None:
    for pid in pids:
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + grace
    for pid in pids:
        while time.monotonic() < deadline and Path(f"/proc/{pid}").exists():
            time.sleep(0.05)
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
