"""``qkdnet up TOPOLOGY [--local] [--no-cli] [--policy FILE]``: bring a QKD network up until interrupted."""
from __future__ import annotations

import argparse
import importlib
import sys
from typing import Any

EXIT_BAD_INPUT = 2   # a topology or policy file the checkers refuse (nothing was started)


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("up", help="bring a QKD network up and keep it running until Ctrl-C",
                       description="Bring a QKD network up (Mininet + OVS by default; --local runs every "
                                   "node as a plain process on loopback) and write DIR/network.json. "
                                   "The topology and the policy file are checked before anything "
                                   "starts; a broken one exits with code 2 and the checker's messages.")
    p.add_argument("topology", nargs="?", default="metro8",
                   help="topology file, shipped name or mesh:N[:SEED] (default: metro8)")
    p.add_argument("--local", action="store_true", help="plain processes on loopback (no root, no OpenFlow)")
    p.add_argument("--state-dir", help="where configs, keys, logs and network.json go "
                                       "(default: /tmp/qkdnet-TOPOLOGY)")
    p.add_argument("--policy", metavar="FILE",
                   help="QuSeC policy file (TOML, docs/policy.md); default: allow everything, one "
                        "key-aware path, security level qkd")
    p.add_argument("--no-cli", action="store_true",
                   help="Mininet mode: no Mininet CLI; stay up until SIGTERM or Ctrl-C (also the "
                        "behaviour when stdin is not a terminal)")
    p.add_argument("--no-qusec", action="store_true", help="--local: do not start QuSeC (neighbours only)")
    p.set_defaults(func=run)


def check_inputs(args: argparse.Namespace) -> tuple[Any, list[str]]:
    """Load the topology and check the policy file: (Topology or None, problems).

    Pure reading: no process, file or network is created, so a broken input fails before
    anything starts.
    """
    from mininet_topos import topology as topo_mod
    problems: list[str] = []
    topo = None
    try:
        topo = topo_mod.load(args.topology)
    except topo_mod.TopologyError as exc:
        problems += exc.problems
    policy = getattr(args, "policy", None)
    if policy:
        from quseccontroller.policy import PolicyError, load as load_policy
        try:
            load_policy(policy)
        except PolicyError as exc:
            problems += exc.problems
    return topo, problems


def run(args: argparse.Namespace) -> int:
    topo, problems = check_inputs(args)
    if problems:
        print("qkdnet up: nothing started; fix these first:", file=sys.stderr)
        print("\n".join(f"  {p}" for p in problems), file=sys.stderr)
        return EXIT_BAD_INPUT
    if args.local:
        from mininet_topos import local
        return local.run(args)
    try:
        emulation = importlib.import_module("mininet_topos.emulation")
    except ModuleNotFoundError as exc:
        if exc.name != "mininet_topos.emulation":
            raise
        print("qkdnet up: the Mininet launcher (mininet_topos.emulation) is not available yet; "
              "use --local to run the network as local processes", file=sys.stderr)
        return 2
    return int(emulation.run_up(args) or 0)
