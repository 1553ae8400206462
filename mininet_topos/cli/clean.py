"""``qkdnet clean``: stop what crashed runs left behind (agents, QuSeC, gateway), wherever their
state directories are, and remove our Mininet leftovers (bridges, veths, host shells).

Crashed runs are found in the run registry every launcher writes to (launch/rundir.py): a run
whose launcher no longer holds its state directory. What counts as a Mininet leftover of ours,
and why ``mn -c`` runs only with ``--mininet``: launch/clean.py.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from mininet_topos.launch import rundir
from mininet_topos.launch.clean import cleanup_ours, kill_all, leftover_pids
from mininet_topos.launch.lock import EmulationError, mininet_lock
from mininet_topos.launch.servers import on_remotes


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("clean", help="stop what crashed networks left behind (agents, QuSeC, Mininet)",
                       description="Stop the agents, osken-manager and gateway processes of every "
                                   "crashed run of this user (local or Mininet, found in the run "
                                   "registry the launchers keep, whatever --state-dir they used), "
                                   "and, as root, remove our OVS bridges, the management bridge, "
                                   "veths and Mininet host shells. Running networks are left alone; "
                                   "the Mininet part waits for a running Mininet network (its lock).")
    p.add_argument("--state-dir", action="append", default=[],
                   help="also clean this state directory (repeatable), registered or not")
    p.add_argument("--wait-lock", type=float, default=None, metavar="SECONDS",
                   help="wait at most this long for a running Mininet network (default: as long "
                        "as it runs)")
    p.add_argument("--mininet", action="store_true",
                   help="also run Mininet's full cleanup (mn -c: every OVS bridge, every "
                        "'ping'/'controller' process, /tmp/*.log)")
    p.set_defaults(func=run)


def _stop_run(state_dir: Path, what: str) -> int:
    """Stop a crashed run's processes; how many there were."""
    holder = rundir.holder(state_dir)
    if holder is not None:
        print(f"{state_dir}: its launcher (pid {holder}) is still running; stop it instead")
        return 0
    pids = leftover_pids(state_dir)
    if pids:
        print(f"{state_dir} ({what}): stopping {len(pids)} leftover process(es): "
              + ", ".join(f"{p} ({name})" for p, name in sorted(pids.items())))
        kill_all(pids)
    # A cluster run (STATE/cluster.json): its agents, bridges, tunnels and host shells on the other servers.
    on_remotes(state_dir, "clean", print)
    return len(pids)


def run(args: argparse.Namespace) -> int:
    stopped, crashed = 0, 0
    seen: set[Path] = set()
    for r in rundir.runs():
        if r.alive():
            print(f"{r.state_dir}: running ({r.mode}, launcher pid {r.pid}); left alone")
            continue
        crashed += 1
        seen.add(r.state_dir)
        started = time.strftime("%Y-%m-%d %H:%M", time.localtime(r.started))
        stopped += _stop_run(r.state_dir, f"{r.mode} run of pid {r.pid}, started {started}, crashed")
        r.entry.unlink(missing_ok=True)
    for d in (Path(x).resolve() for x in args.state_dir):
        if d not in seen:
            stopped += _stop_run(d, "given")
    if os.geteuid() == 0:
        try:
            with mininet_lock(sys.stdout, timeout=args.wait_lock):
                cleanup_ours()
                if args.mininet:
                    from mininet.clean import cleanup
                    cleanup()
        except EmulationError as exc:
            print(f"qkdnet clean: {exc}", file=sys.stderr)
            return 1
    elif args.mininet:
        print("qkdnet clean: --mininet needs root (Mininet and OVS cleanup)", file=sys.stderr)
        return 2
    else:
        print("(not root: Mininet leftovers, if any, need `sudo qkdnet clean`)")
    print(f"clean: {crashed} crashed run(s), {stopped} process(es) stopped" if crashed or stopped
          else "clean: nothing left behind")
    return 0
