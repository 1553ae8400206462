"""Which server each node of a cluster run goes to (pure, no Mininet, no ssh).

A node is placed whole: its switch, its vKMS host and its SAE hosts share a server, so only
switch-to-switch links can cross servers. ``place(nodes, links, n_servers)`` gives balanced
groups (sizes differ by at most one) that cut few links: the nodes in breadth-first order from
a peripheral node (the far end of a line, the edge of a mesh), cut into contiguous runs, so
each server holds a connected region; with two servers a Kernighan-Lin pass then swaps pairs of
nodes while that cuts fewer links. Deterministic: the same topology gives the same placement.
"""
from __future__ import annotations

from collections.abc import Iterable, Sequence

import networkx as nx


def _bfs_order(g: nx.Graph, nodes: Sequence[str]) -> list[str]:
    """Every node, component by component (in file order), breadth-first from a node farthest
    from the component's first node; neighbours in file order."""
    rank = {n: i for i, n in enumerate(nodes)}
    order: list[str] = []
    seen: set[str] = set()
    for first in nodes:
        if first in seen:
            continue
        dist = nx.single_source_shortest_path_length(g, first)
        start = max(dist, key=lambda n: (dist[n], -rank[n]))
        comp = [start]
        seen.add(start)
        i = 0
        while i < len(comp):
            for nb in sorted(g.neighbors(comp[i]), key=rank.__getitem__):
                if nb not in seen:
                    seen.add(nb)
                    comp.append(nb)
            i += 1
        order += comp
    return order


def cut(placement: dict[str, int], links: Iterable[tuple[str, str]]) -> int:
    """How many links join nodes on different servers."""
    return sum(1 for a, b in links if placement[a] != placement[b])


def place(nodes: Sequence[str], links: Iterable[tuple[str, str]], n_servers: int) -> dict[str, int]:
    """node -> server index (0 = the first server), balanced, cutting few links.

    ValueError when there are no servers, or more servers than nodes (a server without a node
    would run nothing).
    """
    links = list(links)
    if n_servers < 1:
        raise ValueError("a cluster needs at least one server")
    if n_servers > len(nodes):
        raise ValueError(f"{n_servers} servers for {len(nodes)} nodes: every server needs a node")
    g = nx.Graph()
    g.add_nodes_from(nodes)
    g.add_edges_from(links)
    order = _bfs_order(g, nodes)
    base, extra = divmod(len(order), n_servers)
    placement: dict[str, int] = {}
    i = 0
    for server in range(n_servers):
        size = base + (1 if server < extra else 0)
        for n in order[i:i + size]:
            placement[n] = server
        i += size
    if n_servers == 2 and len(nodes) > 2:
        first = {n for n, s in placement.items() if s == 0}
        a, b = nx.algorithms.community.kernighan_lin_bisection(
            g, partition=(first, set(nodes) - first), seed=0)
        better = {n: (0 if n in a else 1) for n in nodes}
        if cut(better, links) < cut(placement, links):
            placement = better
    return placement
