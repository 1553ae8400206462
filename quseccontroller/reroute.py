"""Rerouting at the QKD level: paths crossing a link that went OFF or a node that left move or go."""
from __future__ import annotations

from collections import Counter

from quseccontroller.actions import Action, Revoke
from quseccontroller.admission import reserve, unreserve
from quseccontroller.grants import ActivePath, authorisations
from quseccontroller.pathcost import Constraints
from quseccontroller.paths import compute
from quseccontroller.state import NetworkState


def broken(st: NetworkState, ap: ActivePath) -> bool:
    """The path crosses a QKD link that is not usable, or a node whose agent is not connected."""
    return any(not st.links[lid].usable() for lid in ap.links) or \
        any(not st.node_up(n) for n in ap.nodes)


def reroute_broken(st: NetworkState, paths: dict[str, ActivePath], counters: Counter) -> list[Action]:
    """Move every broken path to a new one (new authorisations, Revoke to the nodes it drops),
    or revoke it with the reason when there is none. Counts "rerouted" and "revoked"."""
    acts: list[Action] = []
    for pid in sorted(paths):
        ap = paths[pid]
        if not broken(st, ap):
            continue
        unreserve(st, ap)
        # Another share of the same grant keeps its relays: the shares stay node-disjoint.
        others = {n for p in paths.values() if p.request is ap.request and p is not ap
                  for n in p.nodes[1:-1]}
        d = ap.decision
        c = Constraints(need_bits=ap.request.bits, min_trust=d.min_trust,
                        exclude=tuple(d.exclude_nodes) + tuple(sorted(others)),
                        max_hops=d.max_hops, metric=d.metric)
        res = compute(st, ap.nodes[0], ap.nodes[-1], c, 1)
        if not res.ok:
            paths.pop(pid)
            counters["revoked"] += 1
            acts += [Revoke(n, pid, f"rerouting failed: {res.reason}") for n in ap.nodes]
            continue
        old = set(ap.nodes)
        ap.nodes, ap.links, ap.cost = res.paths[0], res.links[0], res.costs[0]
        reserve(st, ap)
        counters["rerouted"] += 1
        acts += [Revoke(n, pid, "rerouted") for n in sorted(old - set(ap.nodes))]
        acts += authorisations(ap, st.agents)
    return acts
