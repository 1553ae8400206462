"""``qkdnet status|links|paths|events``: what QuSeC knows of a running network, from any shell.

Each reads QuSeC's operator interface (HTTPS, mutual TLS, the operator certificate network.json
names; ``mininet_topos.launch.operator``) and prints a table (``mininet_topos.cli.views``, the
ones the Mininet CLI prints too) or, with ``--json``, QuSeC's JSON as it came. ``--network``
defaults to the one running network of this user (the run registry of
``mininet_topos.launch.rundir``); with none or several running it must be given. Every failure
is one line on stderr naming what went wrong, and exit status 1.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any, Callable

from mininet_topos.cli import views

COMMANDS = {
    "status": "QuSeC's summary: switches, nodes registered, links, paths, last policy reload, "
              "recent refusals",
    "links": "QKD links (rate, stored key at each end, status) and switch links",
    "paths": "QuSeC's active relay paths",
    "events": "QuSeC's recent events: grants, refusals, reroutes, links, agents, policy reloads",
}
FOLLOW_INTERVAL_S = 1.0


class StatusError(Exception):
    """What the command could not do, in one line."""


def add_parser(sub: argparse._SubParsersAction) -> None:
    for name, help_text in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text + " (QuSeC's operator "
                           "interface: HTTPS with the operator certificate network.json names).")
        p.add_argument("--network", type=Path, default=None,
                       help="STATE_DIR/network.json (or STATE_DIR) of a running network "
                            "(default: the one network of yours running now)")
        p.add_argument("--json", action="store_true", help="print QuSeC's JSON as it came")
        p.add_argument("--timeout", type=float, default=5.0, help="seconds to wait for QuSeC (default 5)")
        if name == "events":
            p.add_argument("--since", type=int, default=0, metavar="SEQ",
                           help="only the events after sequence number SEQ (default 0: all held)")
            p.add_argument("--limit", type=int, default=None, metavar="N", help="at most N events")
            p.add_argument("-f", "--follow", action="store_true",
                           help="keep printing new events until interrupted")
        p.set_defaults(func=run, view=name)


def network_path(given: Path | None) -> Path:
    """``given`` (a network.json or the state directory holding one), or the network.json of
    the one live run in this user's run registry."""
    if given is not None:
        return given / "network.json" if given.is_dir() else given
    from mininet_topos.launch.rundir import runs
    live = sorted((r for r in runs() if r.alive() and (r.state_dir / "network.json").exists()),
                  key=lambda r: r.started)
    if not live:
        raise StatusError("no running network found (qkdnet up TOPOLOGY [--local] writes "
                          "STATE_DIR/network.json): pass --network STATE_DIR/network.json")
    if len(live) > 1:
        raise StatusError(f"{len(live)} networks are running ("
                          + ", ".join(str(r.state_dir) for r in live)
                          + "): pass --network STATE_DIR/network.json")
    return live[0].state_dir / "network.json"


def client(path: Path, timeout: float) -> Any:
    from mininet_topos.launch.operator import OperatorClient, OperatorError
    from mininet_topos.provision.netinfo import NetworkInfoError, load_network
    try:
        doc = load_network(path)
    except NetworkInfoError as exc:
        raise StatusError(str(exc)) from None
    try:
        return OperatorClient.of_network(doc, timeout=timeout)
    except (OperatorError, ValueError, KeyError) as exc:
        raise StatusError(f"{path}: {exc}") from None


def run(args: argparse.Namespace) -> int:
    from mininet_topos.launch.operator import OperatorError
    try:
        op = client(network_path(args.network), args.timeout)
        if args.view == "events":
            return _events(op, args)
        st = op.status()
        say = _printer(args.json)
        if args.view == "status":
            say(st, lambda: views.format_summary(st, op.url))
        elif args.view == "links":
            say(st.get("core", {}).get("links", {}), lambda: views.format_links(st))
        else:
            say(st.get("core", {}).get("paths", {}), lambda: views.format_paths(st))
        return 0
    except (StatusError, OperatorError) as exc:
        print(f"qkdnet {args.view}: {exc}", file=sys.stderr)
        return 1


def _printer(as_json: bool) -> Callable[[Any, Callable[[], str]], None]:
    def say(body: Any, table: Callable[[], str]) -> None:
        print(json.dumps(body, indent=2) if as_json else table(), flush=True)
    return say


def _events(op: Any, args: argparse.Namespace) -> int:
    doc = op.events(args.since, args.limit)
    if args.follow and args.json:     # JSON lines: one event a line, as they come
        for e in doc.get("events", []):
            print(json.dumps(e), flush=True)
    else:
        _printer(args.json)(doc, lambda: views.format_events(doc))
    seq = doc.get("last_seq", args.since)
    while args.follow:
        time.sleep(FOLLOW_INTERVAL_S)
        doc = op.events(seq)
        if doc.get("last_seq", 0) < seq:   # QuSeC restarted: its log starts again at 1
            doc = op.events(0)
        for e in doc.get("events", []):
            print(json.dumps(e) if args.json else views.format_event(e), flush=True)
        seq = doc.get("last_seq", seq)
    return 0
