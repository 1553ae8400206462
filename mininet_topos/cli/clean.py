"""``qkdnet clean``: remove what a crashed ``qkdnet up`` left behind (Mininet, agents, QuSeC, bridges).

What counts as ours, and why ``mn -c`` runs only with ``--mininet``: mininet_topos.launch.clean.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from mininet_topos.launch.clean import cleanup_ours, kill_all, launcher_alive, leftover_pids
from mininet_topos.launch.lock import LAUNCHER_MARK, mininet_lock

STATE_GLOB = "/tmp/qkdnet-*"


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("clean", help="clean up after a crashed network (Mininet, agents, QuSeC, bridges)",
                       description="Stop leftover agents, osken-manager and gateway processes found in "
                                   "state directories, remove our OVS bridges and the management bridge, "
                                   "and run Mininet's own cleanup. Waits for other running networks "
                                   "(takes the Mininet lock).")
    p.add_argument("--state-dir", action="append", default=[],
                   help=f"state directory to clean (repeatable; default: every {STATE_GLOB})")
    p.add_argument("--mininet", action="store_true",
                   help="also run Mininet's full cleanup (mn -c: every OVS bridge, every "
                        "'ping'/'controller' process, /tmp/*.log)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if os.geteuid() != 0:
        print("qkdnet clean: needs root (Mininet and OVS cleanup)", file=sys.stderr)
        return 2
    # By default only Mininet runs' state dirs (a local run's agents are not ours to stop).
    dirs = [Path(d) for d in args.state_dir] or sorted(
        d for d in Path("/tmp").glob(STATE_GLOB[5:]) if (d / LAUNCHER_MARK).exists())
    with mininet_lock(sys.stdout):
        for d in dirs:
            launcher = launcher_alive(d / LAUNCHER_MARK)
            if launcher:
                print(f"{d}: its launcher (pid {launcher}) is still running; stop it instead")
                continue
            (d / LAUNCHER_MARK).unlink(missing_ok=True)
            pids = leftover_pids(d)
            if pids:
                print(f"{d}: stopping {len(pids)} leftover process(es): "
                      + ", ".join(f"{p} ({what})" for p, what in sorted(pids.items())))
                kill_all(pids)
        cleanup_ours()
        if args.mininet:
            from mininet.clean import cleanup
            cleanup()
    print("clean")
    return 0
