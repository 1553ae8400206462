"""``qkdnet``: bring QKD networks up, check files, get keys, run benchmarks.

Each sub-command lives in its own module exposing ``add_parser(subparsers)``,
which registers the parser and sets ``func`` to the function that runs it.
Heavy imports (grpc, os-ken, Mininet) stay inside those functions so that
``qkdnet --help`` and ``qkdnet check`` start fast.
"""
from __future__ import annotations

import argparse
import importlib
import logging
import sys

from quseccontroller import logformat, version

# Order is the order shown in --help.
SUBCOMMAND_MODULES = (
    "mininet_topos.cli.up",          # up
    "mininet_topos.cli.demo",        # demo
    "mininet_topos.cli.check",    # check
    "mininet_topos.cli.bench",    # bench
    "mininet_topos.provision.pki",            # pki
    "mininet_topos.cli.key",         # key
    "mininet_topos.cli.status",      # status, links, paths, events (QuSeC's operator view)
    "mininet_topos.cli.qlink",       # qlink (QKD link faults, over the agents' management API)
    "mininet_topos.cli.topo",     # topo (generate / list shipped topologies)
    "mininet_topos.cli.clean",    # clean
    "mininet_topos.cli.mn",       # mn (Mininet's own, with the QKD topologies)
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="qkdnet",
        description="QuSeC: SDN key management for trusted-node QKD networks.",
        epilog="Run 'qkdnet COMMAND --help' for a command's options.",
    )
    parser.add_argument("-v", "--verbose", action="count", default=0,
                        help="more log output (repeat for debug)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in SUBCOMMAND_MODULES:
        importlib.import_module(name).add_parser(sub)
    _add_version(parser, f"qkdnet {version()}")
    return parser


def _add_version(parser: argparse.ArgumentParser, text: str) -> None:
    """``--version`` on the parser and on every sub-command's, at any depth."""
    parser.add_argument("--version", action="version", version=text)
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in dict.fromkeys(action.choices.values()):   # aliases share a parser
                _add_version(child, text)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    argv = sys.argv[1:] if argv is None else list(argv)
    # qkdnet [-v] mn ARGS...: every word after `mn` is mn's, verbatim
    cut = next((i for i, a in enumerate(argv) if not a.startswith("-")), None)
    if cut is not None and argv[cut] == "mn":
        args = parser.parse_args(argv[:cut + 1])
        args.mn_args = argv[cut + 1:]
    else:
        args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    logformat.configure(logging.WARNING - 10 * min(args.verbose, 2))   # logfmt, as QuSeC's
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        return 130

