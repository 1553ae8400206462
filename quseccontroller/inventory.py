"""QuSeC's inventory of the network it controls (a TOML file): for now its QKD links and hop latencies.

    [[links]]
    id = "A-B"          # the link id the agents report
    a = "A"
    b = "B"
    latency_ms = 2.5    # one relay hop over this link, for policy metric "latency"

Not the topology file format: the controller is given this file and knows nothing of how the
network was described or emulated. Meant to grow ([[nodes]] with trust levels, SAEs, allowed
relay addresses); every table is checked like the policy file, all problems reported at once.
"""
from __future__ import annotations

import difflib
import json
import math
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

from quseccontroller import tomlfile
from quseccontroller.tomlfile import FileProblems

TOP_FIELDS = ("links",)
LINK_FIELDS = ("id", "a", "b", "latency_ms")


class InventoryError(FileProblems):
    """An inventory that cannot be used; ``problems`` lists "FILE: links[N] (id): field: problem"."""


@dataclass(frozen=True)
class InventoryLink:
    """One QKD link: its id (as the agents report it), its two nodes, one relay hop's latency."""
    id: str
    a: str
    b: str
    latency_ms: float | None = None    # None: not known, the hop costs the default


@dataclass(frozen=True)
class Inventory:
    links: tuple[InventoryLink, ...] = ()
    source: str = "<no inventory>"

    @cached_property
    def _by_id(self) -> dict[str, InventoryLink]:
        return {link.id: link for link in self.links}

    def link(self, link_id: str) -> InventoryLink | None:
        return self._by_id.get(link_id)

    def hop_latencies(self) -> dict[str, float]:
        """Link id -> relay-hop latency (ms), for the links whose latency is known."""
        return {link.id: link.latency_ms for link in self.links if link.latency_ms is not None}


def _unknown(where: str, key: str, known: tuple[str, ...]) -> str:
    close = difflib.get_close_matches(key, known, n=1)
    hint = f"did you mean {close[0]!r}?" if close else f"one of {', '.join(known)}"
    return f"{where}: {key}: unknown field ({hint})"


def _links(raw: Any, source: str, problems: list[str]) -> tuple[InventoryLink, ...]:
    if not isinstance(raw, list):
        problems.append(f"{source}: links: must be an array of tables ([[links]]), got {raw!r}")
        return ()
    out: list[InventoryLink] = []
    seen: dict[str, int] = {}
    for i, item in enumerate(raw, start=1):
        if not isinstance(item, dict):
            problems.append(f"{source}: links[{i}]: must be a table, got {item!r}")
            continue
        ident = item.get("id")
        where = f"{source}: links[{i}]" + (f" ({ident})" if isinstance(ident, str) and ident else "")
        ok = True
        for key in item:
            if key not in LINK_FIELDS:
                problems.append(_unknown(where, key, LINK_FIELDS))
                ok = False
        ends = {}
        for key in ("id", "a", "b"):
            val = item.get(key)
            if val is None:
                problems.append(f"{where}: {key}: missing (required)")
                ok = False
            elif not isinstance(val, str) or not val:
                problems.append(f"{where}: {key}: must be a non-empty string, got {val!r}")
                ok = False
            else:
                ends[key] = val
        if ends.get("a") is not None and ends.get("a") == ends.get("b"):
            problems.append(f"{where}: b: same node as a ({ends['a']!r}): a QKD link joins two nodes")
            ok = False
        if "id" in ends:
            if ends["id"] in seen:
                problems.append(f"{where}: id: {ends['id']!r} already used by links[{seen[ends['id']]}]")
                ok = False
            seen.setdefault(ends["id"], i)
        latency = item.get("latency_ms")
        if latency is not None:
            if isinstance(latency, bool) or not isinstance(latency, (int, float)) \
                    or not math.isfinite(latency) or latency < 0:
                problems.append(f"{where}: latency_ms: must be a number >= 0, got {latency!r}")
                ok = False
            else:
                latency = float(latency)
        if ok:
            out.append(InventoryLink(ends["id"], ends["a"], ends["b"], latency))
    return tuple(out)


def parse(data: dict, source: str = "<inventory>") -> Inventory:
    """Build an Inventory from parsed TOML, or raise InventoryError listing every problem."""
    problems: list[str] = []
    for key in data:
        if key not in TOP_FIELDS:
            problems.append(_unknown(f"{source}: top level", key, TOP_FIELDS))
    links = _links(data.get("links", []), source, problems)
    if problems:
        raise InventoryError(problems)
    return Inventory(links, source)


def load(path: str | Path) -> Inventory:
    """Read and check an inventory TOML file."""
    return parse(tomlfile.read(path, InventoryError), str(path))


def dumps(inv: Inventory, comment: str = "") -> str:
    """The inventory as TOML that ``parse`` reads back (``comment``: lines put on top as # ...)."""
    out = [f"# {line}".rstrip() for line in comment.splitlines()]
    for link in inv.links:
        if out:
            out.append("")
        out += ["[[links]]", f"id = {json.dumps(link.id, ensure_ascii=False)}",
                f"a = {json.dumps(link.a, ensure_ascii=False)}",
                f"b = {json.dumps(link.b, ensure_ascii=False)}"]
        if link.latency_ms is not None:
            out.append(f"latency_ms = {float(link.latency_ms)!r}")
    return "\n".join(out) + "\n"
