"""``qkdnet qlink A B down|up|qber X``: cause (or clear) a fault on the QKD link between two nodes.

A and B are node or SAE ids (an SAE means its node). The fault is set at both ends of the
link (each end's agent, over its management API ``qusec.manage.v1.Manage``, as the operator
whose certificate network.json names): a fault of the shared quantum channel is seen by both
modules. ``down`` stops key production; ``qber X`` (0..0.5) lowers the secret key rate per
the BB84 formula, and from 0.11 on raises an alarm and stops it; ``up`` clears the fault.
Each end reports the change to QuSeC at once, which excludes an alarmed link and reroutes the
paths on it (``qkdnet links`` shows the alarm). Several parallel links between A and B: all,
or the one ``--link ID`` names.

On a Mininet network the agents listen inside their hosts: from the root namespace (as root)
each end's call runs inside its node's host (``mnexec -a PID``, network.json lists the pids),
the way ``qkdnet key`` runs SAE calls. The Mininet CLI's ``qlink A B qkd ...`` is this command.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

STATES = ("down", "up", "qber")
MAX_QBER = 0.5
USAGE = "qlink A B down|up|qber X [--link ID]   (A, B: node or SAE ids; X: a QBER within 0..0.5)"


class QlinkError(Exception):
    """What the command could not do, in one line."""


def add_parser(sub: argparse._SubParsersAction) -> None:
    help_text = "cause or clear a fault on the QKD link between two nodes: down, up, qber X"
    p = sub.add_parser("qlink", help=help_text, description=help_text + ". The fault is set at both "
                       "ends (their agents' management API, as the operator network.json names); "
                       "from a QBER of 0.11 the link raises an alarm and makes no key, and QuSeC "
                       "reroutes the paths on it.")
    p.add_argument("a", metavar="A", help="node or SAE id")
    p.add_argument("b", metavar="B", help="node or SAE id")
    p.add_argument("fault", nargs="+", metavar="down|up|qber X", help="the fault to set")
    p.add_argument("--link", default=None, metavar="ID", help="only this link (several link A and B)")
    p.add_argument("--network", type=Path, default=None,
                   help="STATE_DIR/network.json (or STATE_DIR) of a running network "
                        "(default: the one network of yours running now)")
    p.add_argument("--timeout", type=float, default=5.0, help="seconds to wait for each agent (default 5)")
    p.add_argument("--json", action="store_true", help="print the ends' fault states as JSON")
    p.add_argument("--end", action="append", default=None, help=argparse.SUPPRESS)   # one end only (in a host)
    p.set_defaults(func=run)


# -- the checks (pure) --------------------------------------------------------------------------
def parse_fault(words: list[str]) -> tuple[str, float]:
    """``down`` | ``up`` | ``qber X`` as (state, qber); QlinkError naming what is wrong."""
    if not words or words[0] not in STATES:
        raise QlinkError(f"the fault must be down, up or qber X, got {' '.join(words) or 'nothing'!r}")
    state = words[0]
    if state != "qber":
        if len(words) != 1:
            raise QlinkError(f"{state} takes no value, got {' '.join(words[1:])!r}")
        return state, 0.0
    if len(words) != 2:
        raise QlinkError("qber takes one value, a QBER within 0..0.5 (e.g. qber 0.11)")
    try:
        qber = float(words[1].rstrip("%")) / (100 if words[1].endswith("%") else 1)
    except ValueError:
        raise QlinkError(f"QBER {words[1]!r} is not a number (e.g. qber 0.11 or qber 11%)") from None
    if not 0.0 <= qber <= MAX_QBER:
        raise QlinkError(f"QBER {words[1]} is outside 0..0.5 (a QBER above 0.5 is not an error rate)")
    return state, qber


def resolve_node(doc: dict, name: str) -> str:
    """The node ``name`` means in network.json ``doc``: a node id, or an SAE id (its node)."""
    if name in doc.get("nodes", {}):
        return name
    sae = doc.get("saes", {}).get(name)
    if sae is not None:
        return sae["node"]
    raise QlinkError(f"unknown node or SAE {name!r}; nodes: {', '.join(sorted(doc.get('nodes', {})))}")


def pick_links(links: list[tuple[str, str]], a: str, b: str, only: str | None) -> list[str]:
    """The ids of ``a``'s links (``(link id, peer)``) toward ``b`` (only ``only`` if given)."""
    if a == b:
        raise QlinkError(f"both ends are node {a}: no link between them")
    toward = sorted(lid for lid, peer in links if peer == b)
    if not toward:
        near = sorted({peer for _, peer in links})
        raise QlinkError(f"nodes {a} and {b} are not neighbours (no QKD link between them); "
                         f"{a}'s QKD neighbours: {', '.join(near) or 'none'}")
    if only is not None:
        if only not in toward:
            raise QlinkError(f"link {only!r} does not join {a} and {b}; their links: {', '.join(toward)}")
        return [only]
    return toward


# -- talking to the agents ------------------------------------------------------------------------
def _client(doc: dict, node: str, timeout: float) -> Any:
    from kms_agents.manage import ManageClient
    op = doc.get("operator") or {}
    if not op.get("cert") or not op.get("key"):
        raise QlinkError("network.json names no operator certificate (operator.cert, operator.key): "
                         "qkdnet pki issues one")
    addr = doc["nodes"][node].get("relay_addr")
    if not addr:
        raise QlinkError(f"network.json names no relay address for node {node} (is its agent up?)")
    return ManageClient(addr, doc["ca_cert"], op["cert"], op["key"], timeout=timeout)


def set_end(doc: dict, end: str, other: str, state: str, qber: float, only: str | None,
            timeout: float) -> list[dict]:
    """Set the fault on ``end``'s links toward ``other``; the end's states after the call."""
    from kms_agents.manage import ManageError
    from google.protobuf import json_format
    try:
        with _client(doc, end, timeout) as client:
            current = client.faults()
            ids = pick_links([(f.link_id, f.peer_node) for f in current], end, other, only)
            out = []
            for lid in ids:
                got = client.set_fault(lid, state, qber)
                out.append({"node": end, **json_format.MessageToDict(
                    got, preserving_proto_field_name=True, always_print_fields_with_no_presence=True)})
            return out
    except ManageError as exc:
        raise QlinkError(f"node {end}: {exc}") from None


def set_end_in_host(doc: dict, network: Path, end: str, other: str, words: list[str],
                    only: str | None, timeout: float) -> list[dict]:
    """:func:`set_end` run inside ``end``'s Mininet host (its agent listens there)."""
    pid = ((doc.get("mininet") or {}).get("nodes") or {}).get(end, {}).get("pid")
    if not pid:
        raise QlinkError(f"network.json names no host pid of node {end}")
    argv = ["mnexec", "-a", str(pid), sys.executable, "-m", "mininet_topos.cli", "qlink", end, other,
            *words, "--network", str(network), "--end", end, "--json", "--timeout", str(timeout)]
    if only:
        argv += ["--link", only]
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout * 3 + 30)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise QlinkError(f"node {end}: cannot run in its host: {exc}") from None
    if proc.returncode:
        raise QlinkError((proc.stderr.strip().splitlines() or [f"exit status {proc.returncode}"])[-1]
                         .removeprefix("qkdnet qlink: "))
    return json.loads(proc.stdout)


def apply(network: Path, a_name: str, b_name: str, words: list[str], only: str | None = None,
          ends: list[str] | None = None, timeout: float = 5.0) -> list[dict]:
    """Check, then set the fault at both ends (or ``ends``); one dict per link end set."""
    from mininet_topos.launch.keypair import in_root_namespace
    from mininet_topos.provision.netinfo import NetworkInfoError, load_network
    state, qber = parse_fault(words)
    try:
        doc = load_network(network)
    except NetworkInfoError as exc:
        raise QlinkError(str(exc)) from None
    a, b = resolve_node(doc, a_name), resolve_node(doc, b_name)
    if a == b:
        raise QlinkError(f"{a_name} and {b_name} are both on node {a}: no link between them")
    in_host = doc.get("mode") == "mininet" and ends is None and in_root_namespace()
    out: list[dict] = []
    for end in ends or [a, b]:
        if end not in (a, b):
            raise QlinkError(f"--end {end}: not {a} or {b}")
        other = b if end == a else a
        out += (set_end_in_host(doc, network, end, other, words, only, timeout) if in_host
                else set_end(doc, end, other, state, qber, only, timeout))
    return out


def describe(ends: list[dict]) -> str:
    """One line per link end set."""
    lines = []
    for e in ends:
        word = e.get("state", "").removeprefix("FAULT_STATE_").lower()
        what = f"qber {e.get('qber', 0):g}" if word == "qber" else word
        alarm = f"ALARM {e['alarm']}, no key" if e.get("alarm") else \
            f"key rate {e.get('skr_bps', 0):.0f} of {e.get('nominal_skr_bps', 0):.0f} b/s"
        lines.append(f"link {e['link_id']} at {e['node']} (toward {e['peer_node']}): {what}: {alarm}")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    from mininet_topos.cli.status import StatusError, network_path
    try:
        ends = apply(network_path(args.network), args.a, args.b, args.fault, args.link, args.end,
                     args.timeout)
    except (QlinkError, StatusError) as exc:
        print(f"qkdnet qlink: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(ends, indent=2) if args.json else describe(ends), flush=True)
    return 0
