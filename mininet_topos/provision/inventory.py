"""QuSeC's inventory file from a topology: its nodes (trust, SAEs) and QKD links (relay-hop latency)."""
from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import networkx as nx

from mininet_topos.model import Topology
from dataclasses import replace

from quseccontroller import inventory
from quseccontroller.abstract import Border
from quseccontroller.inventory import Inventory, InventoryLink, InventoryNode


def _latency(_u: str, _v: str, data: dict) -> float:
    return data.get("latency_ms") or 0.0   # a classical link without latency_ms adds nothing


def hop_latencies(topo: Topology) -> dict[str, float]:
    """Link id -> the least summed ``latency_ms`` over the classical graph between the link's
    two ends: the relay connection of a hop crosses the switch links between its two vKMS, and
    Mininet gives each switch link its ``latency_ms`` as a netem delay. A topology without
    classical links has its switch links follow the QKD links with no delay: every latency is 0."""
    if not topo.classical:
        return {link.id: 0.0 for link in topo.links}
    g = topo.classical_graph()
    by_source: dict[str, list] = defaultdict(list)
    for link in topo.links:
        by_source[link.a].append(link)
    out: dict[str, float] = {}
    for a in sorted(by_source):
        dist = nx.single_source_dijkstra_path_length(g, a, weight=_latency)
        for link in by_source[a]:
            if link.b not in dist:
                raise ValueError(f"{topo.name}: QKD link {link.id}: no classical route from "
                                 f"{link.a} to {link.b}")
            out[link.id] = round(float(dist[link.b]), 9)   # no float noise from the sums
    return {link.id: out[link.id] for link in topo.links}


def build(topo: Topology) -> Inventory:
    """The inventory QuSeC is given for ``topo``: every node with its trust level and SAEs (the
    only nodes that may join, and what QuSeC believes of them), every QKD link with its hop latency."""
    lat = hop_latencies(topo)
    nodes = tuple(InventoryNode(n.id, n.trust, tuple(s.id for s in topo.saes_of(n.id)), n.location)
                  for n in topo.nodes.values())
    return Inventory(tuple(InventoryLink(link.id, link.a, link.b, lat[link.id]) for link in topo.links),
                     source=f"<inventory of {topo.name}>", nodes=nodes)


def borders_of(topo: Topology, domain: str) -> tuple[Border, ...]:
    """Where keys leave ``domain``: its KMEs of interworking sites and its ends of PQC links."""
    out = []
    for x, y, data in topo.domain_graph().edges(data=True):
        if domain not in (x, y):
            continue
        peer = y if x == domain else x
        crossing = data["site"] if data["kind"] == "etsi020" else data["link"]
        out.append(Border(data["ends"][domain], crossing, data["kind"], peer, data["ends"][peer]))
    return tuple(sorted(out, key=lambda b: (b.node, b.crossing, b.peer_domain)))


def build_domain(topo: Topology, domain: str) -> Inventory:
    """The inventory of one domain's QuSeC: the domain's own nodes and links, its id, its borders."""
    inv = build(topo.domain_view(domain))
    return replace(inv, source=f"<inventory of {topo.name} domain {domain}>", domain=domain,
                   borders=borders_of(topo, domain))


def write(topo: Topology, path: str | Path) -> Path:
    """Write ``topo``'s inventory as TOML to ``path`` (what QuSeC's inventory loader reads)."""
    path = Path(path)
    how = ("latency_ms: the least summed latency_ms of the classical links between the link's two nodes."
           if topo.classical else
           "No classical links: the switch links follow the QKD links without delay, every latency_ms is 0.")
    comment = f"QuSeC inventory of topology {topo.name!r}.\n{how}"
    path.write_text(inventory.dumps(build(topo), comment=comment))
    return path
