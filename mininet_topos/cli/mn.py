"""``qkdnet mn ARGS...``: Mininet's own ``mn``, from this installation, with the QKD topologies.

The ``mn`` on PATH is usually the system's, run by the system Python, which has none of this
project's packages; this runs the ``mn`` installed beside ``qkdnet`` (the same environment) with
``--custom mininet_topos/qkdtopos.py`` already given, so ``--topo qkdlinear,4``,
``--controller qusec`` and ``--test qkdping`` just work.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import mininet_topos


def qkdtopos() -> Path:
    return Path(mininet_topos.__file__).resolve().parent / "qkdtopos.py"


def argv(mn_args: list[str]) -> list[str]:
    """The command line this runs: this environment's Python, its ``mn``, ``--custom``, the rest."""
    mn = Path(sys.executable).with_name("mn")
    return [sys.executable, str(mn), "--custom", str(qkdtopos()), *mn_args]


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("mn", help="Mininet's mn from this environment, with the QKD topologies (root)",
                       description="Run Mininet's own `mn` from this installation with --custom "
                                   f"{qkdtopos()} given: e.g. `qkdnet mn --topo qkdlinear,4 "
                                   "--controller qusec --switch ovs,datapath=user,protocols=OpenFlow13`. "
                                   "Every argument goes to mn (`qkdnet mn -- --help` for its own help).")
    p.add_argument("mn_args", nargs="*", metavar="MN_ARG", help="arguments for mn, passed as they are")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    mn_args = args.mn_args[1:] if args.mn_args[:1] == ["--"] else args.mn_args
    cmd = argv(mn_args)
    if not Path(cmd[1]).exists():
        print(f"qkdnet mn: Mininet is not installed in this environment ({cmd[1]} missing): "
              "pip install 'qusec[emulation]', or make setup", file=sys.stderr)
        return 2
    if os.geteuid() != 0:
        print("qkdnet mn: Mininet needs root", file=sys.stderr)
        return 2
    sys.stdout.flush()
    os.execv(cmd[0], cmd)
    return 1   # not reached
