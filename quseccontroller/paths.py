"""Key-aware, policy-constrained relay path computation over the QKD graph (single and k node-disjoint)."""
from __future__ import annotations

import fnmatch
import heapq
from dataclasses import dataclass, field
from typing import Callable

from quseccontroller.state import NetworkState

# Key-aware edge cost (ETSI GS QKD 015: "a weighted graph built using the key availability,
# key generation rates and consumption for each link"). A hop costs 1 plus a scarcity term:
# ALPHA * (HORIZON_S * skr) / headroom, headroom = key left after this request plus what the
# link nets (generation - consumption) over HORIZON_S. A link with a full horizon of headroom
# costs 1 + ALPHA; one about to run dry costs far more; a rich link costs about 1 (a hop).
ALPHA = 1.0
HORIZON_S = 10.0
EPS = 1e-9


@dataclass(frozen=True)
class Constraints:
    """What a path must satisfy (from the matched policy rule and the request)."""
    need_bits: int = 256
    min_trust: int = 0
    exclude: tuple[str, ...] = ()
    max_hops: int = 0
    metric: str = "key_aware"
    check_key: bool = True
    check_trust: bool = True


@dataclass
class PathResult:
    paths: list[list[str]] = field(default_factory=list)
    links: list[list[str]] = field(default_factory=list)   # link id of each hop
    costs: list[float] = field(default_factory=list)
    refusal: str = ""
    reason: str = ""

    @property
    def ok(self) -> bool:
        return bool(self.paths)


def hop_cost(skr: float, cons: float, avail: int, need: int, metric: str, latency_ms: float) -> float:
    """Cost of one hop under ``metric``; ``avail`` is the (reserved-adjusted) key at its start."""
    if metric == "hops":
        return 1.0
    if metric == "latency":
        return latency_ms
    ref = HORIZON_S * skr if skr > 0 else max(avail, 1)
    headroom = avail - need + HORIZON_S * max(skr - cons, 0.0)
    return 1.0 + ALPHA * ref / max(headroom, ref * 1e-3, 1.0)


class _Graph:
    """Directed weighted view of the QKD graph under one set of constraints."""

    def __init__(self, state: NetworkState, c: Constraints, src: str, dst: str) -> None:
        self.state, self.c, self.src, self.dst = state, c, src, dst
        self.adj = state.adjacency
        self._node_ok: dict[str, bool] = {}
        self._edge: dict[tuple[str, str], tuple[float, str] | None] = {}
        self.require_online = bool(state.agents)
        if not (c.check_trust and (c.min_trust or c.exclude)):
            # No per-node constraint: only "is the node's agent connected" (hot path).
            online = state.online
            self.node_ok = online.__contains__ if self.require_online else (lambda n: True)

    def node_ok(self, n: str) -> bool:
        ok = self._node_ok.get(n)
        if ok is None:
            st, c = self.state, self.c
            ok = not self.require_online or n in st.online
            if ok and n not in (self.src, self.dst):
                if c.check_trust and c.min_trust and st.trust(n) < c.min_trust:
                    ok = False
                elif c.check_trust and c.exclude and any(fnmatch.fnmatchcase(n, g) for g in c.exclude):
                    ok = False
            self._node_ok[n] = ok
        return ok

    def edge(self, u: str, v: str, data: dict | None = None) -> tuple[float, str] | None:
        """(cost, link id) of the best usable QKD link for a hop u -> v, or None."""
        key = (u, v)
        best = self._edge.get(key, self)
        if best is not self:
            return best
        c, reserved = self.c, self.state.reserved
        need, metric, check_key = c.need_bits, c.metric, c.check_key
        best = None
        if data is None:
            data = self.adj[u][v]
        for rec in data["recs"]:
            if rec.off:
                continue
            lid = rec.link_id
            stored = rec.stored.get(u)
            if stored is None:
                stored = rec.stored_from(u)
            avail = stored - reserved.get((lid, u), 0) if reserved else stored
            if check_key and avail < need:
                continue
            if metric == "key_aware":
                skr = rec.skr_bps
                ref = HORIZON_S * skr if skr > 0 else max(avail, 1)
                net = skr - rec.consumption.get(u, 0.0)
                headroom = avail - need + (HORIZON_S * net if net > 0 else 0.0)
                w = 1.0 + ALPHA * ref / max(headroom, ref * 1e-3, 1.0)
            else:
                w = hop_cost(rec.skr_bps, 0.0, avail, need, metric, data.get("latency_ms", 1.0))
            if best is None or (w, lid) < best:
                best = (w, lid)
        self._edge[key] = best
        return best


def hops_to(state: NetworkState, dst: str) -> dict[str, int]:
    """Hop count from every node to ``dst`` over all QKD links (cached per topology version).
    Every hop costs at least 1 under the key-aware and hop metrics, and constraints only remove
    links, so this is an admissible, consistent A* bound."""
    key = (state.topo_version, dst)
    cache = state.hop_cache
    found = cache.get(key)
    if found is None:
        adj = state.adjacency
        found = {dst: 0}
        frontier = [dst]
        depth = 0
        while frontier:
            depth += 1
            nxt = []
            for u in frontier:
                for v in adj[u]:
                    if v not in found:
                        found[v] = depth
                        nxt.append(v)
            frontier = nxt
        if len(cache) >= 512:
            cache.clear()
        cache[key] = found
    return found


def _dijkstra(g: _Graph, src: str, dst: str, banned: set[str] = frozenset(), no_direct: bool = False,
              ) -> tuple[list[str], list[str], float] | None:
    """Least-cost path (A* with the hop-count bound); ties broken by fewer hops, then by the
    smaller predecessor id, so the answer does not depend on the order events arrived in."""
    bound = hops_to(g.state, dst) if g.c.metric in ("key_aware", "hops") else None
    if bound is not None and src not in bound:
        return None
    dist = {src: 0.0}
    hops = {src: 0}
    pred: dict[str, tuple[str, str]] = {}
    done: set[str] = set()
    heap = [(bound[src] if bound else 0.0, 0.0, 0, src)]
    adj, node_ok, edge, heappush, heappop = g.adj, g.node_ok, g.edge, heapq.heappush, heapq.heappop
    while heap:
        _, d, h, u = heappop(heap)
        if u in done:
            continue
        done.add(u)
        if u == dst:
            break
        if u != src and not node_ok(u):
            continue
        for v, data in adj[u].items():
            if v in done or v in banned or not (v == dst or node_ok(v)):
                continue
            if no_direct and u == src and v == dst:
                continue
            e = edge(u, v, data)
            if e is None:
                continue
            nd, nh = d + e[0], h + 1
            old = dist.get(v)
            if old is None or nd < old - EPS or (nd <= old + EPS and (nh, u) < (hops[v], pred[v][0])):
                dist[v], hops[v], pred[v] = nd, nh, (u, e[1])
                heappush(heap, (nd + bound[v] if bound else nd, nd, nh, v))
    if dst not in done:
        return None
    path, links, n = [dst], [], dst
    while n != src:
        p, lid = pred[n]
        path.append(p)
        links.append(lid)
        n = p
    return path[::-1], links[::-1], dist[dst]


def _bounded_hops(g: _Graph, src: str, dst: str, max_hops: int, banned: set[str] = frozenset(),
                  no_direct: bool = False) -> tuple[list[str], list[str], float] | None:
    """Least-cost path with at most ``max_hops`` hops (hop-layered Bellman-Ford)."""
    best: dict[str, tuple[float, list[str], list[str]]] = {src: (0.0, [src], [])}
    frontier = dict(best)
    for _ in range(max_hops):
        nxt: dict[str, tuple[float, list[str], list[str]]] = {}
        for u, (d, p, ls) in sorted(frontier.items()):
            if u == dst or (u != src and not g.node_ok(u)):
                continue
            for v in g.adj[u]:
                if v in p or v in banned or not (v == dst or g.node_ok(v)):
                    continue
                if no_direct and u == src and v == dst:
                    continue
                e = g.edge(u, v)
                if e is None:
                    continue
                cand = (d + e[0], p + [v], ls + [e[1]])
                if v not in best or cand[0] < best[v][0] - EPS:
                    best[v] = nxt[v] = cand
        frontier = nxt
        if not frontier:
            break
    if dst not in best:
        return None
    d, p, ls = best[dst]
    return p, ls, d


def _one_path(g: _Graph, src: str, dst: str, banned: set[str] = frozenset(), no_direct: bool = False):
    found = _dijkstra(g, src, dst, banned, no_direct)
    if found and g.c.max_hops and len(found[1]) > g.c.max_hops:
        found = _bounded_hops(g, src, dst, g.c.max_hops, banned, no_direct)
    return found


def _disjoint_flow(g: _Graph, src: str, dst: str, k: int) -> list[tuple[list[str], list[str], float]]:
    """k node-disjoint paths of least total cost (successive shortest paths on the node-split
    graph with potentials: Suurballe/Bhandari generalised). Returns fewer if fewer exist."""
    def out(n): return (n, 1)
    def inn(n): return (n, 0)
    flow: set[tuple] = set()        # saturated arcs (tail, head)

    def arcs(x):
        n, side = x
        if side == 0:   # n_in -> n_out (internal arc, cost 0), or back along used arcs
            if n != dst and (n == src or g.node_ok(n)) and (inn(n), out(n)) not in flow:
                yield out(n), 0.0, None
            for v in g.adj[n]:     # residual of used arc v_out -> n_in
                if (out(v), x) in flow:
                    yield out(v), -g.edge(v, n)[0], None
        else:
            for v in g.adj[n]:
                if v == src or not (v == dst or g.node_ok(v)):
                    continue
                e = g.edge(n, v)
                if e is not None and (x, inn(v)) not in flow:
                    yield inn(v), e[0], e[1]
            if (inn(n), x) in flow:   # residual of internal arc
                yield inn(n), 0.0, None

    pot: dict = {}
    found = 0
    start, goal = out(src), inn(dst)
    for _ in range(k):
        dist = {start: 0.0}
        pred: dict = {}
        heap = [(0.0, 0, start)]
        done = set()
        count = 0
        while heap:
            d, _, x = heapq.heappop(heap)
            if x in done:
                continue
            done.add(x)
            if x == goal:
                break
            for y, w, _lid in arcs(x):
                rw = w + pot.get(x, 0.0) - pot.get(y, 0.0)
                nd = d + max(rw, 0.0)
                if y not in dist or nd < dist[y] - EPS:
                    dist[y], pred[y] = nd, x
                    count += 1
                    heapq.heappush(heap, (nd, count, y))
        if goal not in done:
            break
        for x in done:
            pot[x] = pot.get(x, 0.0) + dist[x]
        y = goal
        while y != start:
            x = pred[y]
            if (y, x) in flow:
                flow.discard((y, x))
            else:
                flow.add((x, y))
            y = x
        found += 1
    paths = []
    succ = {}
    for (x, y) in flow:
        if x[1] == 1 and y[1] == 0:
            succ.setdefault(x[0], []).append(y[0])
    for first in sorted(succ.get(src, [])):
        p, ls, cost, n = [src], [], 0.0, first
        prev = src
        while True:
            w, lid = g.edge(prev, n)
            p.append(n)
            ls.append(lid)
            cost += w
            if n == dst:
                break
            prev, n = n, succ[n][0]
        paths.append((p, ls, cost))
    return sorted(paths, key=lambda t: (t[2], t[0]))


def compute(state: NetworkState, src: str, dst: str, c: Constraints, k: int = 1) -> PathResult:
    """Up to ``k`` node-disjoint paths from src to dst satisfying ``c``, each with its cost;
    when none, ``refusal`` says why (unknown_node, disconnected, trust, max_hops, no_key)."""
    for n in (src, dst):
        if n not in state.qkd or (state.agents and n not in state.online):
            return PathResult(refusal="unknown_node", reason=f"node {n!r} is not registered with QuSeC")
    if src == dst:
        return PathResult(paths=[[src]], links=[[]], costs=[0.0], reason="source and destination are the same node")
    g = _Graph(state, c, src, dst)
    found = _find(g, src, dst, k)
    if not found:
        return PathResult(refusal=_why_not(state, src, dst, c, k) or "no_key",
                          reason=_explain_refusal(state, src, dst, c, k))
    if len(found) < k:
        why = _why_not(state, src, dst, c, k) or "disconnected"
        return PathResult(refusal=why, reason=f"only {len(found)} of {k} node-disjoint paths exist "
                          f"({_constraint_text(c)})")
    return PathResult(paths=[p for p, _, _ in found], links=[ls for _, ls, _ in found],
                      costs=[round(w, 6) for _, _, w in found],
                      reason=f"{c.metric} metric, {_constraint_text(c)}")


def _find(g: _Graph, src: str, dst: str, k: int):
    first = _one_path(g, src, dst)
    if first is None or k == 1:
        return [first] if first else []
    # Fast: greedy (ban the interior nodes found so far); exact min-cost flow when greedy falls short.
    found, banned = [first], set(first[0][1:-1])
    while len(found) < k:
        # The direct link (if used) can carry one share only: parallel links share both ends.
        nxt = _one_path(g, src, dst, banned, no_direct=any(len(p) == 2 for p, _, _ in found))
        if nxt is None:
            break
        found.append(nxt)
        banned |= set(nxt[0][1:-1])
    if len(found) < k:
        flow = _disjoint_flow(g, src, dst, k)
        if len(flow) > len(found) and not (g.c.max_hops and any(len(ls) > g.c.max_hops for _, ls, _ in flow)):
            found = flow
    return found


def _why_not(state: NetworkState, src: str, dst: str, c: Constraints, k: int) -> str:
    """The first constraint whose relaxation yields enough paths."""
    from dataclasses import replace
    relaxations = (("no_key", dict(check_key=False)),
                   ("trust", dict(check_key=False, check_trust=False)),
                   ("max_hops", dict(check_key=False, check_trust=False, max_hops=0)),
                   ("disconnected", None))
    for name, change in relaxations:
        if change is None:
            return name
        cc = replace(c, **change)
        if len(_find(_Graph(state, cc, src, dst), src, dst, k)) >= k:
            return name
    return "disconnected"


def _constraint_text(c: Constraints) -> str:
    parts = [f"need {c.need_bits} bits per hop"]
    if c.min_trust:
        parts.append(f"relay trust >= {c.min_trust}")
    if c.exclude:
        parts.append(f"excluding {', '.join(c.exclude)}")
    if c.max_hops:
        parts.append(f"at most {c.max_hops} hops")
    return "; ".join(parts)


def _explain_refusal(state: NetworkState, src: str, dst: str, c: Constraints, k: int) -> str:
    why = _why_not(state, src, dst, c, k)
    what = {"no_key": "every path that meets the policy crosses a QKD link without enough stored key",
            "trust": "every path crosses a relay node below the required trust level or excluded",
            "max_hops": "every path is longer than the allowed number of hops",
            "disconnected": "no chain of usable QKD links joins them"}[why]
    paths = "path" if k == 1 else f"{k} node-disjoint paths"
    return f"no {paths} from {src} to {dst}: {what} ({_constraint_text(c)})"


WeightFn = Callable[[str, str], float]
