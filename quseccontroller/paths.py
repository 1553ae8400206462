"""Key-aware, policy-constrained relay path computation over the QKD graph (single and k node-disjoint)."""
from __future__ import annotations

import fnmatch
from dataclasses import dataclass, field, replace

from quseccontroller.arcs import ArcIndex, Found
from quseccontroller.pathcost import Constraints
from quseccontroller.state import NetworkState

EPS = 1e-9


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


def _index(state: NetworkState) -> ArcIndex:
    if state.arc_index is None:
        state.arc_index = ArcIndex()
    return state.arc_index


def _node_ok(state: NetworkState, c: Constraints, n: str) -> bool:
    if not state.node_up(n):
        return False
    if c.check_trust and c.min_trust and state.trust(n) < c.min_trust:
        return False
    return not (c.check_trust and c.exclude and any(fnmatch.fnmatchcase(n, g) for g in c.exclude))


def _bounded_hops(state: NetworkState, c: Constraints, src: str, dst: str, banned: set[str],
                  no_direct: bool) -> Found | None:
    """Least-cost path with at most ``c.max_hops`` hops (hop-layered Bellman-Ford; only used
    when the least-cost path is too long, and max_hops is small). Hop costs and usable links
    come from the same arrays as the array search's."""
    index = _index(state)
    index.refresh(state)
    usable, w = index.arc_weights(c)
    at = index.idx
    best: dict[str, Found] = {src: ([src], [], 0.0)}
    frontier = dict(best)
    for _ in range(c.max_hops):
        nxt: dict[str, Found] = {}
        for u, (p, ls, d) in sorted(frontier.items()):
            if u == dst or (u != src and not _node_ok(state, c, u)):
                continue
            for v in sorted(state.qkd.adj[u]):
                if v in p or v in banned or (no_direct and u == src and v == dst):
                    continue
                if v != dst and not _node_ok(state, c, v):
                    continue
                arc = index.best_arc(at[u], at[v], usable, w)
                if arc is None:
                    continue
                cand = (p + [v], ls + [index.lids[arc]], d + float(w[arc]))
                if v not in best or cand[2] < best[v][2] - EPS:
                    best[v] = nxt[v] = cand
        frontier = nxt
    return best.get(dst) if dst != src else None


def _one_path(state: NetworkState, c: Constraints, src: str, dst: str, banned: set[str] = frozenset(),
              no_direct: bool = False) -> Found | None:
    found = _index(state).search(state, src, dst, c, banned, no_direct)
    if found and c.max_hops and len(found[1]) > c.max_hops:
        found = _bounded_hops(state, c, src, dst, banned, no_direct)
    return found


def _find(state: NetworkState, c: Constraints, src: str, dst: str, k: int) -> list[Found]:
    if k == 1:
        first = _one_path(state, c, src, dst)
        return [first] if first else []
    # k paths of least total cost (min-cost flow); with a hop limit they may be too long, and
    # then the greedy way (cheapest bounded path, ban its relays, repeat) is what is left.
    flow = _index(state).disjoint(state, src, dst, c, k)
    if not (c.max_hops and any(len(ls) > c.max_hops for _, ls, _ in flow)):
        return flow
    found: list[Found] = []
    banned: set[str] = set()
    while len(found) < k:
        # The direct link (if used) carries one share only: parallel links share both ends.
        nxt = _one_path(state, c, src, dst, banned, no_direct=any(len(p) == 2 for p, _, _ in found))
        if nxt is None:
            break
        found.append(nxt)
        banned |= set(nxt[0][1:-1])
    return found


def compute(state: NetworkState, src: str, dst: str, c: Constraints, k: int = 1) -> PathResult:
    """Up to ``k`` node-disjoint paths from src to dst satisfying ``c``, each with its cost;
    when none, ``refusal`` says why (unknown_node, disconnected, trust, max_hops, no_key)."""
    for n in (src, dst):
        if n not in state.qkd or not state.node_up(n):
            return PathResult(refusal="unknown_node", reason=f"node {n!r} is not registered with QuSeC")
    if src == dst:
        return PathResult(paths=[[src]], links=[[]], costs=[0.0], reason="source and destination are the same node")
    found = _find(state, c, src, dst, k)
    if not found:
        why = _why_not(state, src, dst, c, k)
        return PathResult(refusal=why, reason=_explain_refusal(why, src, dst, c, k))
    if len(found) < k:
        return PathResult(refusal=_why_not(state, src, dst, c, k),
                          reason=f"only {len(found)} of {k} node-disjoint paths from {src} to {dst} "
                                 f"({_constraint_text(c)})")
    return PathResult(paths=[p for p, _, _ in found], links=[ls for _, ls, _ in found],
                      costs=[round(w, 6) for _, _, w in found],
                      reason=f"{c.metric} metric, {_constraint_text(c)}")


def _why_not(state: NetworkState, src: str, dst: str, c: Constraints, k: int) -> str:
    """The first constraint whose relaxation yields enough paths (no_key, trust, max_hops),
    else "disconnected" (checked first: with nothing relaxed enough there is nothing to name)."""
    relaxations = (("no_key", dict(check_key=False)),
                   ("trust", dict(check_key=False, check_trust=False)),
                   ("max_hops", dict(check_key=False, check_trust=False, max_hops=0)))
    if len(_find(state, replace(c, **relaxations[-1][1]), src, dst, k)) < k:
        return "disconnected"
    for name, change in relaxations[:-1]:
        if len(_find(state, replace(c, **change), src, dst, k)) >= k:
            return name
    return relaxations[-1][0]


def _constraint_text(c: Constraints) -> str:
    parts = [f"need {c.need_bits} bits per hop"]
    if c.min_trust:
        parts.append(f"relay trust >= {c.min_trust}")
    if c.exclude:
        parts.append(f"excluding {', '.join(c.exclude)}")
    if c.max_hops:
        parts.append(f"at most {c.max_hops} hops")
    return "; ".join(parts)


def _explain_refusal(why: str, src: str, dst: str, c: Constraints, k: int) -> str:
    what = {"no_key": "every path that meets the policy crosses a QKD link without enough stored key",
            "trust": "every path crosses a relay node below the required trust level or excluded",
            "max_hops": "every path is longer than the allowed number of hops",
            "disconnected": "no chain of usable QKD links joins them"}[why]
    paths = "path" if k == 1 else f"{k} node-disjoint paths"
    return f"no {paths} from {src} to {dst}: {what} ({_constraint_text(c)})"
