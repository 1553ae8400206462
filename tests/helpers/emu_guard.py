"""Leftover checks for the Mininet tier (its conftest turns them into fixture finalisers): after a test (pass or fail) nothing of ours is left.

Checked under the Mininet lock (so another run's live network is never mistaken for a
leftover): OVS bridges qsN, the management bridge, our root-namespace veths, Mininet host
shells (each holds a host's network namespace), and agents / QuSeC / gateway processes
whose command line names a file under this pytest run's temp dir. Whatever is found is
removed the way ``qkdnet clean`` does it (never ``mn -c``) and the test errors, naming it.
"""
from __future__ import annotations

import subprocess
from pathlib import Path

from mininet_topos.launch.clean import cleanup_ours, kill_all, leftover_pids, mininet_shells, our_bridges, our_veths
from mininet_topos.launch.lock import mininet_lock
from mininet_topos.launch.plan import MGMT_BRIDGE


def leftovers(base: Path) -> dict[str, list]:
    """What a finished test left behind: kind -> names/pids (empty when clean)."""
    mgmt = subprocess.run(["ip", "link", "show", MGMT_BRIDGE], capture_output=True).returncode == 0
    found = {"processes": sorted(f"{pid} {what}" for pid, what in leftover_pids(base).items()),
             "OVS bridges": our_bridges(),
             "management bridge": [MGMT_BRIDGE] if mgmt else [],
             "veths": our_veths(),
             "Mininet host shells": sorted(mininet_shells().values())}
    return {k: v for k, v in found.items() if v}


def sweep(base: Path) -> dict[str, list]:
    """Find and remove our leftovers (under the lock); what was found."""
    with mininet_lock():
        left = leftovers(base)
        if left:
            kill_all(leftover_pids(base), grace=3.0)
            cleanup_ours(None, say=lambda _m: None)
    return left


def check_clean(base: Path) -> None:
    """Fail (after removing them) when leftovers of this run are found."""
    left = sweep(base)
    assert not left, f"left behind after the test (now removed): {left}"
