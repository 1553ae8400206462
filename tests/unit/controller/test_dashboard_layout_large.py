"""A large network's dashboard layout is cheap: no force layout past FORCE_UP_TO nodes (a spring
layout of 5,000 nodes took minutes of the gateway's GIL while the agents registered)."""
from __future__ import annotations

import time

from mininet_topos import synthetic
from quseccontroller.dashboard.layout import BOX, FORCE_UP_TO, layout


def _mesh(n: int):
    topo = synthetic.mesh(n, 1)
    return list(topo.nodes), [(lk.a, lk.b) for lk in topo.links], {i: v.location for i, v in topo.nodes.items()}


def test_a_large_network_is_drawn_at_its_locations_at_once() -> None:
    nodes, edges, locs = _mesh(3 * FORCE_UP_TO)
    t0 = time.monotonic()
    kind, pos = layout(nodes, edges, locs)
    assert time.monotonic() - t0 < 3.0
    assert kind == "location" and set(pos) == set(nodes)
    assert all(0 <= x <= BOX and 0 <= y <= BOX for x, y in pos.values())


def test_a_large_network_without_locations_is_stable_and_cheap() -> None:
    nodes, edges, _ = _mesh(3 * FORCE_UP_TO)
    t0 = time.monotonic()
    kind, pos = layout(nodes, edges, {})
    assert time.monotonic() - t0 < 3.0
    assert kind == "stable" and len(set(pos.values())) == len(nodes)
    assert layout(list(reversed(nodes)), list(reversed(edges)), {})[1] == pos
