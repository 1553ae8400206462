"""Where each node is drawn (pure): at its location when every node has one, else a stable layout.

Coordinates come back in a 1000 x 1000 box (y down, as SVG draws), with a margin. A location is
``[x, y]`` (km, y north) and is drawn as given, unless two nodes would then lie on top of each
other (closer than ``MIN_SEPARATION`` in the box: metro networks on a country's map); such a
graph, and one without locations for all its nodes, is laid out by Kamada-Kawai (a seeded spring layout when large or disconnected; past FORCE_UP_TO
nodes the locations as given, overlaps and all, or a circle), so the
same nodes and links always give the same picture.
"""
from __future__ import annotations

from typing import Iterable, Mapping

import networkx as nx

BOX = 1000.0
MARGIN = 60.0
SEED = 13
KAMADA_KAWAI_UP_TO = 250  # nodes; beyond, a spring layout (Kamada-Kawai's cost grows as n^2)
MIN_SEPARATION = 30.0     # in the box: closer nodes cannot be told apart
# Beyond, no force layout: a spring layout costs O(n^2) a round (measured in the gateway, where
# the dashboard's view lives: 38 s for 1,000 nodes on the loaded 2-core machine, minutes for
# 5,000, holding the gateway's GIL while agents register). Such a network is drawn at its
# locations even where dots overlap, else on a circle.
FORCE_UP_TO = 500    # 3 s at 500 nodes there


def _fit(points: Mapping[str, tuple[float, float]], flip_y: bool) -> dict[str, tuple[float, float]]:
    """Scale ``points`` into the box (aspect kept), y flipped when it points north."""
    if not points:
        return {}
    xs = [p[0] for p in points.values()]
    ys = [p[1] for p in points.values()]
    span = max(max(xs) - min(xs), max(ys) - min(ys)) or 1.0
    scale = (BOX - 2 * MARGIN) / span
    # centre the shorter side
    off_x = MARGIN + ((BOX - 2 * MARGIN) - (max(xs) - min(xs)) * scale) / 2
    off_y = MARGIN + ((BOX - 2 * MARGIN) - (max(ys) - min(ys)) * scale) / 2
    out = {}
    for n, (x, y) in points.items():
        px = off_x + (x - min(xs)) * scale
        py = off_y + ((max(ys) - y) if flip_y else (y - min(ys))) * scale
        out[n] = (round(px, 1), round(py, 1))
    return out


def _separated(points: list[tuple[float, float]]) -> bool:
    """No two points closer than MIN_SEPARATION (a grid of cells that size: near-linear)."""
    cells: dict[tuple[int, int], list[tuple[float, float]]] = {}
    for x, y in points:
        cx, cy = int(x // MIN_SEPARATION), int(y // MIN_SEPARATION)
        for i in (cx - 1, cx, cx + 1):
            for j in (cy - 1, cy, cy + 1):
                for px, py in cells.get((i, j), ()):
                    if (px - x) ** 2 + (py - y) ** 2 < MIN_SEPARATION ** 2:
                        return False
        cells.setdefault((cx, cy), []).append((x, y))
    return True


def layout(nodes: Iterable[str], edges: Iterable[tuple[str, str]],
           locations: Mapping[str, tuple[float, float] | None] | None = None
           ) -> tuple[str, dict[str, tuple[float, float]]]:
    """("location" or "stable", node -> (x, y) in the box)."""
    nodes = sorted(set(nodes))
    locations = locations or {}
    if nodes and all(locations.get(n) is not None for n in nodes):
        placed = _fit({n: (float(locations[n][0]), float(locations[n][1])) for n in nodes}, flip_y=True)
        if _separated(list(placed.values())) or len(nodes) > FORCE_UP_TO:
            return "location", placed
    g = nx.Graph()
    g.add_nodes_from(nodes)
    g.add_edges_from((a, b) for a, b in sorted(edges) if a in g and b in g and a != b)
    if len(nodes) == 1:
        return "stable", {nodes[0]: (BOX / 2, BOX / 2)}
    if len(nodes) <= 2 or g.number_of_edges() == 0 or len(nodes) > FORCE_UP_TO:
        pos = nx.circular_layout(g)
    else:
        init = nx.circular_layout(g)   # a fixed start: the layout depends on the graph only
        if nx.is_connected(g) and len(nodes) <= KAMADA_KAWAI_UP_TO:
            pos = nx.kamada_kawai_layout(g, pos=init)
        else:
            pos = nx.spring_layout(g, pos=init, seed=SEED, iterations=100)
    return "stable", _fit({n: (float(p[0]), float(p[1])) for n, p in pos.items()}, flip_y=False)
