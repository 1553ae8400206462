"""QuSeC's inventory of the network it controls (a TOML file): which nodes may join, what they are.

    [[nodes]]
    id = "A"            # the node id: its certificate names urn:qusec:node:A
    trust = 3           # its trust level, 1 (lowest) .. 5 (highest); default 3
    saes = ["sae-a"]    # the SAEs attached to it
    location = [0, 8]   # optional [x, y] (km, y north): where the dashboard draws it

    [[links]]
    id = "A-B"          # the link id the agents report
    a = "A"             # its two ends: nodes of [[nodes]]
    b = "B"
    latency_ms = 2.5    # one relay hop over this link, for policy metric "latency"

    [domain]            # only when the network is one domain of several under a parent
    id = "beijing"
    transit = true      # carries other domains' keys across itself (default true)

    [[borders]]         # where keys leave for another domain (the parent sees these, nothing else)
    node = "BJ-IW"      # a node of [[nodes]]: an interworking site's KME or a PQC link's end
    crossing = "bj-site"
    kind = "etsi020"    # "etsi020" (interworking site) or "pqc" (post-quantum link)
    peer_domain = "trunk"
    peer_node = "T-BJ"

QuSeC takes node ids, trust levels, SAEs and QKD links from here, never from what a node says
in its Register (``quseccontroller.registration`` checks a Register against it). Not the
topology file format: the controller is given this file and knows nothing of how the network
was described or emulated. Every table is checked like the policy file, all problems reported
at once (``qkdnet check FILE`` runs the same checks).
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

from quseccontroller import tomlfile
from quseccontroller.abstract import KINDS, Border
from quseccontroller.tomlfile import FileProblems

TOP_FIELDS = ("nodes", "links", "domain", "borders")
DOMAIN_FIELDS = ("id", "transit")
BORDER_FIELDS = ("node", "crossing", "kind", "peer_domain", "peer_node")
NODE_FIELDS = ("id", "trust", "saes", "location")
LINK_FIELDS = ("id", "a", "b", "latency_ms")
TRUST_LEVELS = range(1, 6)
DEFAULT_TRUST = 3


class InventoryError(FileProblems):
    """An inventory that cannot be used; ``problems`` lists "FILE: links[N] (id): field: problem"."""


@dataclass(frozen=True)
class InventoryNode:
    """One node that may join: its id, its trust level, the SAEs attached to it (and where it
    is, for the dashboard's picture)."""
    id: str
    trust: int = DEFAULT_TRUST
    saes: tuple[str, ...] = ()
    location: tuple[float, float] | None = None


@dataclass(frozen=True)
class InventoryLink:
    """One QKD link: its id (as the agents report it), its two nodes, one relay hop's latency."""
    id: str
    a: str
    b: str
    latency_ms: float | None = None    # None: not known, the hop costs the default

    def peer(self, node: str) -> str | None:
        """The other end of the link seen from ``node`` (None: ``node`` is not an end)."""
        return self.b if node == self.a else self.a if node == self.b else None


@dataclass(frozen=True)
class Inventory:
    links: tuple[InventoryLink, ...] = ()
    source: str = "<no inventory>"
    nodes: tuple[InventoryNode, ...] = ()
    domain: str = ""                      # "": a network of its own, no parent
    transit: bool = True
    borders: tuple[Border, ...] = ()

    @cached_property
    def _by_id(self) -> dict[str, InventoryLink]:
        return {link.id: link for link in self.links}

    @cached_property
    def _node_by_id(self) -> dict[str, InventoryNode]:
        return {node.id: node for node in self.nodes}

    @cached_property
    def _sae_home(self) -> dict[str, str]:
        return {sae: node.id for node in self.nodes for sae in node.saes}

    def link(self, link_id: str) -> InventoryLink | None:
        return self._by_id.get(link_id)

    def node(self, node_id: str) -> InventoryNode | None:
        return self._node_by_id.get(node_id)

    def node_of_sae(self, sae: str) -> str | None:
        return self._sae_home.get(sae)

    def hop_latencies(self) -> dict[str, float]:
        """Link id -> relay-hop latency (ms), for the links whose latency is known."""
        return {link.id: link.latency_ms for link in self.links if link.latency_ms is not None}


def _unknown(where: str, key: str, known: tuple[str, ...]) -> str:
    close = tomlfile.closest(key, known)
    hint = f"did you mean {close!r}?" if close else f"one of {', '.join(known)}"
    return f"{where}: {key}: unknown field ({hint})"


def _tables(raw: list, source: str, kind: str, fields: tuple[str, ...], problems: list[str]):
    """(N, table, "FILE: kind[N] (id)", no unknown field) of every table of ``raw``; a non-table
    entry and every unknown field are problems."""
    for i, item in enumerate(raw, start=1):
        if not isinstance(item, dict):
            problems.append(f"{source}: {kind}[{i}]: must be a table, got {item!r}")
            continue
        ident = item.get("id")
        where = f"{source}: {kind}[{i}]" + (f" ({ident})" if isinstance(ident, str) and ident else "")
        unknown = [key for key in item if key not in fields]
        problems.extend(_unknown(where, key, fields) for key in unknown)
        yield i, item, where, not unknown


def _nodes(raw: Any, source: str, problems: list[str]) -> tuple[InventoryNode, ...]:
    if not isinstance(raw, list):
        problems.append(f"{source}: nodes: must be an array of tables ([[nodes]]), got {raw!r}")
        return ()
    out: list[InventoryNode] = []
    seen: dict[str, int] = {}
    sae_of: dict[str, str] = {}
    entries: list[tuple[str, list[str]]] = []     # (where, SAEs) of every node table
    for i, item, where, ok in _tables(raw, source, "nodes", NODE_FIELDS, problems):
        ident = item.get("id")
        if ident is None:
            problems.append(f"{where}: id: missing (required)")
            ok = False
        elif not isinstance(ident, str) or not ident:
            problems.append(f"{where}: id: must be a non-empty string, got {ident!r}")
            ok = False
        elif ident in seen:
            problems.append(f"{where}: id: {ident!r} already used by nodes[{seen[ident]}]")
            ok = False
        else:
            seen[ident] = i
        trust = item.get("trust", DEFAULT_TRUST)
        if isinstance(trust, bool) or not isinstance(trust, int) or trust not in TRUST_LEVELS:
            problems.append(f"{where}: trust: must be an integer 1..5, got {trust!r}")
            ok = False
        saes = item.get("saes", [])
        if not (isinstance(saes, list) and all(isinstance(x, str) and x for x in saes)):
            problems.append(f"{where}: saes: must be a list of non-empty strings, got {saes!r}")
            ok = False
            saes = []
        for sae in saes:
            if sae in sae_of:
                problems.append(f"{where}: saes: {sae!r} is already an SAE of node {sae_of[sae]!r}")
                ok = False
            sae_of.setdefault(sae, ident if isinstance(ident, str) else "?")
        entries.append((where, saes))
        location = item.get("location")
        if location is not None and not (
                isinstance(location, list) and len(location) == 2
                and all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
                        for v in location)):
            problems.append(f"{where}: location: must be [x, y] (two numbers), got {location!r}")
            ok = False
            location = None
        if ok:
            out.append(InventoryNode(ident, trust, tuple(saes),
                                     tuple(float(v) for v in location) if location else None))
    # An SAE id equal to a node id: one name would stand for two parties.
    for where, saes in entries:
        for sae in saes:
            if sae in seen:
                problems.append(f"{where}: saes: {sae!r} is also a node id (SAE ids and node "
                                "ids must differ)")
    return tuple(out)


def _links(raw: Any, source: str, problems: list[str], known: set[str]) -> tuple[InventoryLink, ...]:
    """The [[links]]; each joins two nodes of [[nodes]] (``known``): QuSeC takes no link to a
    node it does not know."""
    if not isinstance(raw, list):
        problems.append(f"{source}: links: must be an array of tables ([[links]]), got {raw!r}")
        return ()
    out: list[InventoryLink] = []
    seen: dict[str, int] = {}
    for i, item, where, ok in _tables(raw, source, "links", LINK_FIELDS, problems):
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
        else:
            for key in ("a", "b"):
                if key in ends and ends[key] not in known:
                    problems.append(f"{where}: {key}: {ends[key]!r} is not a node of the "
                                    "inventory (add it to [[nodes]])")
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


def _domain(raw: Any, source: str, problems: list[str]) -> tuple[str, bool]:
    if not isinstance(raw, dict):
        problems.append(f"{source}: domain: must be a table ([domain]), got {raw!r}")
        return "", True
    problems.extend(_unknown(f"{source}: domain", key, DOMAIN_FIELDS) for key in raw if key not in DOMAIN_FIELDS)
    ident, transit = raw.get("id"), raw.get("transit", True)
    if not isinstance(ident, str) or not ident:
        problems.append(f"{source}: domain: id: must be a non-empty string, got {ident!r}")
        ident = ""
    if not isinstance(transit, bool):
        problems.append(f"{source}: domain: transit: must be true or false, got {transit!r}")
        transit = True
    return ident, transit


def _borders(raw: Any, source: str, problems: list[str], known: set[str], domain: str) -> tuple[Border, ...]:
    if not isinstance(raw, list):
        problems.append(f"{source}: borders: must be an array of tables ([[borders]]), got {raw!r}")
        return ()
    if raw and not domain:
        problems.append(f"{source}: borders: a network with borders is a domain: give [domain] id")
    out: list[Border] = []
    for _i, item, where, ok in _tables(raw, source, "borders", BORDER_FIELDS, problems):
        vals = {}
        for key in BORDER_FIELDS:
            val = item.get(key)
            if not isinstance(val, str) or not val:
                problems.append(f"{where}: {key}: must be a non-empty string, got {val!r}")
                ok = False
            vals[key] = val
        if ok and vals["node"] not in known:
            problems.append(f"{where}: node: {vals['node']!r} is not a node of the inventory")
            ok = False
        if ok and vals["kind"] not in KINDS:
            problems.append(f"{where}: kind: must be one of {', '.join(KINDS)}, got {vals['kind']!r}")
            ok = False
        if ok and vals["peer_domain"] == domain:
            problems.append(f"{where}: peer_domain: {domain!r} is this domain")
            ok = False
        if ok and any(b.node == vals["node"] and b.crossing == vals["crossing"] for b in out):
            problems.append(f"{where}: node {vals['node']!r} and crossing {vals['crossing']!r} given twice")
            ok = False
        if ok:
            out.append(Border(vals["node"], vals["crossing"], vals["kind"], vals["peer_domain"], vals["peer_node"]))
    return tuple(out)


def parse(data: dict, source: str = "<inventory>") -> Inventory:
    """Build an Inventory from parsed TOML, or raise InventoryError listing every problem."""
    problems: list[str] = []
    for key in data:
        if key not in TOP_FIELDS:
            problems.append(_unknown(f"{source}: top level", key, TOP_FIELDS))
    nodes = _nodes(data.get("nodes", []), source, problems)
    links = _links(data.get("links", []), source, problems, {n.id for n in nodes})
    domain, transit = _domain(data["domain"], source, problems) if "domain" in data else ("", True)
    borders = _borders(data.get("borders", []), source, problems, {n.id for n in nodes}, domain)
    if problems:
        raise InventoryError(problems)
    return Inventory(links, source, nodes, domain, transit, borders)


def load(path: str | Path) -> Inventory:
    """Read and check an inventory TOML file."""
    return parse(tomlfile.read(path, InventoryError), str(path))


def dumps(inv: Inventory, comment: str = "") -> str:
    """The inventory as TOML that ``parse`` reads back (``comment``: lines put on top as # ...)."""
    out = [f"# {line}".rstrip() for line in comment.splitlines()]
    if inv.domain:
        if out:
            out.append("")
        out += ["[domain]", f"id = {json.dumps(inv.domain, ensure_ascii=False)}",
                f"transit = {'true' if inv.transit else 'false'}"]
    for node in inv.nodes:
        if out:
            out.append("")
        out += ["[[nodes]]", f"id = {json.dumps(node.id, ensure_ascii=False)}",
                f"trust = {int(node.trust)}",
                f"saes = [{', '.join(json.dumps(s, ensure_ascii=False) for s in node.saes)}]"]
        if node.location is not None:
            out.append(f"location = [{float(node.location[0])!r}, {float(node.location[1])!r}]")
    for link in inv.links:
        if out:
            out.append("")
        out += ["[[links]]", f"id = {json.dumps(link.id, ensure_ascii=False)}",
                f"a = {json.dumps(link.a, ensure_ascii=False)}",
                f"b = {json.dumps(link.b, ensure_ascii=False)}"]
        if link.latency_ms is not None:
            out.append(f"latency_ms = {float(link.latency_ms)!r}")
    for b in inv.borders:
        out += ["", "[[borders]]"] + [f"{k} = {json.dumps(getattr(b, k), ensure_ascii=False)}"
                                      for k in BORDER_FIELDS]
    return "\n".join(out) + "\n"
