"""``qkdnet check FILE...``: validate topology, policy and inventory files, naming file, entry and problem."""
from __future__ import annotations

import argparse
import sys
import tomllib
from pathlib import Path
from typing import TextIO

from mininet_topos import topology

POLICY_KEYS = ("rules", "policy", "default")   # top-level keys that mark a policy file


def is_policy(data: dict) -> bool:
    """A TOML document is a policy file when it has policy tables and no topology tables."""
    return any(k in data for k in POLICY_KEYS) and not any(k in data for k in ("nodes", "links"))


def is_inventory(data: dict) -> bool:
    """QuSeC's inventory (quseccontroller/inventory.py): nodes and links only, nodes naming their
    SAEs or links their hop latency (a topology file has [[saes]] and link rates instead)."""
    if set(data) - {"nodes", "links"} or not data:
        return False
    nodes = data.get("nodes") if isinstance(data.get("nodes"), list) else []
    links = data.get("links") if isinstance(data.get("links"), list) else []
    return (any(isinstance(n, dict) and "saes" in n for n in nodes)
            or any(isinstance(l, dict) and "latency_ms" in l and not {"rate_bps", "length_km"} & set(l)
                   for l in links))


def check_policy(path: Path) -> tuple[list[str], str | None]:
    from quseccontroller.policy import PolicyError, load
    try:
        table = load(path)
    except PolicyError as exc:
        return list(exc.problems), None
    return [], f"{path}: ok (policy, {len(table.rules)} rules and a default)"


def check_inventory(path: Path) -> tuple[list[str], str | None]:
    from quseccontroller.inventory import InventoryError, load
    try:
        inv = load(path)
    except InventoryError as exc:
        return list(exc.problems), None
    return [], f"{path}: ok (QuSeC inventory, {len(inv.nodes)} nodes, {len(inv.links)} links)"


def check_file(spec: str) -> tuple[list[str], str | None]:
    """Check one file (or shipped topology name): its problems, and the ok line if none."""
    path = Path(spec)
    if not path.is_file():
        if spec in topology.shipped() or spec.startswith("mesh:"):
            try:
                topo = topology.load(spec)
            except topology.TopologyError as exc:
                return exc.problems, None
            return [], f"{spec}: ok ({topology.summary(topo)})"
        what = "is a directory" if path.is_dir() else "not found"
        return [f"{spec}: file: {what}"], None
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        return [f"{spec}: file: cannot read: {exc}"], None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError:
        data = None     # the topology loader reports the syntax error with its line
    if data is not None and is_policy(data):
        return check_policy(path)
    if data is not None and is_inventory(data):
        return check_inventory(path)
    try:
        topo = topology.loads(text, spec, path=path)
    except topology.TopologyError as exc:
        return exc.problems, None
    return [], f"{spec}: ok ({topology.summary(topo)})"


def check(specs: list[str], out: TextIO | None = None) -> int:
    """Check every file, print problems and ok lines; 0 when all are good, else 1."""
    out = out or sys.stdout
    failed = 0
    for spec in specs:
        problems, ok = check_file(spec)
        for p in problems:
            print(p, file=out)
        if ok and not problems:
            print(ok, file=out)
        else:
            failed += 1
    if failed and len(specs) > 1:
        print(f"{failed} of {len(specs)} files have problems", file=out)
    return 1 if failed else 0


def add_parser(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "check", help="validate topology and policy files",
        description="Validate topology files (and shipped topology names) and QuSeC policy files. "
                    "Every problem is printed as 'FILE: ENTRY: problem'; the exit status is "
                    "non-zero when any file has a problem. A TOML file with [default], [policy] "
                    "or [[rules]] (and no nodes/links) is checked as a policy file.")
    parser.add_argument("files", nargs="+", metavar="FILE", help="topology or policy TOML files")
    parser.set_defaults(func=lambda args: check(args.files))
