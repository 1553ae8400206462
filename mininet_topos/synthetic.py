"""Seeded synthetic QKD meshes (random geometric graphs) for scale and routing benchmarks.

Recipe (shared/topologies/README.md): ``n`` points uniformly in a square of
side ``40*sqrt(n)`` km, each joined to its 3 nearest neighbours, then the
components are joined by their closest pair of points until the graph is
connected.  That gives a mean link of about 32 km and a mean degree of about
3.7.  Link rates follow the README's benchmark formula
``R(L) = 13.7 Mb/s * 10^(-0.02 (max(L, 10) - 10))`` (written explicitly into
each link, always below the PLOB bound), so routing results stay comparable
with the figures quoted there.  Nearest neighbours come from scipy's KD-tree
when scipy is installed, else from a uniform grid; both give the same graph.
"""
from __future__ import annotations

import math
import random
from typing import Callable, Sequence

from mininet_topos.model import Node, QkdLink, Sae, Topology

NEIGHBOURS = 3
SIDE_KM_PER_SQRT_N = 40.0
MIN_NODES, MAX_NODES = 4, 100_000
SAE_EVERY = 10          # one SAE on every 10th node, plus sae-a / sae-b on opposite corners

Point = tuple[float, float]
Knn = Callable[[Sequence[Point], Sequence[int], int], list[list[int]]]


def link_rate(km: float) -> float:
    """The README's benchmark rate law in bits/s (13.7 Mb/s flat up to 10 km, then 0.2 dB/km)."""
    return 13.7e6 * 10.0 ** (-0.02 * (max(km, 10.0) - 10.0))


def points(n: int, seed: int) -> list[Point]:
    """``n`` seeded uniform points (km) in the square of side 40*sqrt(n)."""
    rng = random.Random(seed)
    side = SIDE_KM_PER_SQRT_N * math.sqrt(n)
    return [(rng.random() * side, rng.random() * side) for _ in range(n)]


def _knn_kdtree(pts: Sequence[Point], query: Sequence[int], k: int) -> list[list[int]]:
    from scipy.spatial import cKDTree
    tree = cKDTree(pts)
    _, idx = tree.query([pts[i] for i in query], k=k + 1)
    return [[int(j) for j in row if j != i][:k] for i, row in zip(query, idx)]


class _Grid:
    """Uniform bucket grid with about one point per cell: exact k-nearest-neighbour search."""

    def __init__(self, pts: Sequence[Point]):
        self.pts = pts
        xs = [p[0] for p in pts]
        ys = [p[1] for p in pts]
        self.x0, self.y0 = min(xs), min(ys)
        span = max(max(xs) - self.x0, max(ys) - self.y0, 1e-9)
        self.cells = max(1, int(math.sqrt(len(pts))))
        self.size = span / self.cells * (1 + 1e-9)
        self.buckets: dict[tuple[int, int], list[int]] = {}
        for i, p in enumerate(pts):
            self.buckets.setdefault(self._cell(p), []).append(i)

    def _cell(self, p: Point) -> tuple[int, int]:
        return int((p[0] - self.x0) / self.size), int((p[1] - self.y0) / self.size)

    def nearest(self, i: int, k: int) -> list[int]:
        p = self.pts[i]
        cx, cy = self._cell(p)
        found: list[tuple[float, int]] = []
        ring = 0
        while True:
            for gx in range(cx - ring, cx + ring + 1):
                for gy in range(cy - ring, cy + ring + 1):
                    if max(abs(gx - cx), abs(gy - cy)) != ring:
                        continue
                    for j in self.buckets.get((gx, gy), ()):
                        if j != i:
                            q = self.pts[j]
                            found.append(((q[0] - p[0]) ** 2 + (q[1] - p[1]) ** 2, j))
            # every point outside the rings searched is at least ring*size away
            if len(found) >= k:
                found.sort()
                if found[k - 1][0] <= (ring * self.size) ** 2 or ring > self.cells:
                    return [j for _, j in found[:k]]
            elif ring > self.cells:
                return [j for _, j in sorted(found)]
            ring += 1


def _knn_grid(pts: Sequence[Point], query: Sequence[int], k: int) -> list[list[int]]:
    grid = _Grid(pts)
    return [grid.nearest(i, k) for i in query]


def _default_knn() -> Knn:
    try:
        import scipy.spatial  # noqa: F401
    except ImportError:
        return _knn_grid
    return _knn_kdtree


def edges(pts: Sequence[Point], knn: Knn | None = None) -> list[tuple[int, int]]:
    """Sorted edges (i < j) of the connected 3-nearest-neighbour graph on ``pts``."""
    knn = knn or _default_knn()
    n = len(pts)
    out: set[tuple[int, int]] = set()
    for i, row in zip(range(n), knn(pts, range(n), min(NEIGHBOURS, n - 1))):
        out.update((min(i, j), max(i, j)) for j in row)
    parent = list(range(n))

    def find(x: int) -> int:
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for i, j in out:
        parent[find(i)] = find(j)
    while True:
        comps: dict[int, list[int]] = {}
        for i in range(n):
            comps.setdefault(find(i), []).append(i)
        if len(comps) == 1:
            break
        # join the smallest component to its closest point outside it
        small = min(comps.values(), key=lambda c: (len(c), c[0]))
        inside = set(small)
        best: tuple[float, int, int] | None = None
        for i, row in zip(small, knn(pts, small, len(small))):
            for j in row:
                if j not in inside:
                    d = math.dist(pts[i], pts[j])
                    if best is None or (d, i, j) < best:
                        best = (d, i, j)
                    break
        assert best is not None
        _, i, j = best
        out.add((min(i, j), max(i, j)))
        parent[find(i)] = find(j)
    return sorted(out)


def mesh(n: int, seed: int = 1) -> Topology:
    """The seeded synthetic mesh of ``n`` nodes (ids N1..Nn) with SAEs, as a Topology."""
    if not MIN_NODES <= n <= MAX_NODES:
        raise ValueError(f"mesh size must be {MIN_NODES}..{MAX_NODES} nodes, got {n}")
    pts = points(n, seed)
    ids = [f"N{i + 1}" for i in range(n)]
    nodes = {ids[i]: Node(id=ids[i], location=(round(p[0], 3), round(p[1], 3)))
             for i, p in enumerate(pts)}
    links = []
    for i, j in edges(pts):
        km = max(round(math.dist(pts[i], pts[j]), 2), 0.01)
        links.append(QkdLink(id=f"{ids[i]}-{ids[j]}", a=ids[i], b=ids[j],
                             rate_bps=float(round(link_rate(km))), length_km=km))
    corner_a = min(range(n), key=lambda i: pts[i][0] + pts[i][1])
    corner_b = max(range(n), key=lambda i: pts[i][0] + pts[i][1])
    saes = {"sae-a": Sae("sae-a", ids[corner_a]), "sae-b": Sae("sae-b", ids[corner_b])}
    for i in range(0, n, SAE_EVERY):
        sae_id = f"sae-{ids[i].lower()}"
        saes[sae_id] = Sae(sae_id, ids[i])
    return Topology(
        name=f"mesh{n}-s{seed}", nodes=nodes, links=links, saes=saes,
        description=f"synthetic random geometric mesh: {n} nodes, seed {seed}, "
                    f"{NEIGHBOURS} nearest neighbours in a {SIDE_KM_PER_SQRT_N:g}*sqrt(n) km square",
        source="synthetic (mininet_topos.synthetic; recipe from shared/topologies/README.md)")
