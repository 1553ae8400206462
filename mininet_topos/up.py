"""``qkdnet up TOPOLOGY [--local] [--state-dir DIR]``: bring a QKD network up until interrupted."""
from __future__ import annotations

import argparse
import importlib
import sys


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("up", help="bring a QKD network up and keep it running until Ctrl-C",
                       description="Bring a QKD network up (Mininet + OVS by default; --local runs every "
                                   "node as a plain process on loopback) and write DIR/network.json.")
    p.add_argument("topology", nargs="?", default="metro8",
                   help="topology file, shipped name or mesh:N[:SEED] (default: metro8)")
    p.add_argument("--local", action="store_true", help="plain processes on loopback (no root, no OpenFlow)")
    p.add_argument("--state-dir", help="where configs, keys, logs and network.json go "
                                       "(default: /tmp/qkdnet-TOPOLOGY)")
    p.add_argument("--no-qusec", action="store_true", help="--local: do not start QuSeC (neighbours only)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
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
