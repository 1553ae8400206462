"""Key-aware, policy-constrained path computation: constraints, refusals, determinism, reservation, disjointness."""
from __future__ import annotations

import itertools

import pytest
from tests.helpers.qusec_net import agents_for, core_with

from quseccontroller.actions import PathRequest
from quseccontroller.core import QuSeCCore
from quseccontroller.pathcost import hop_cost
from quseccontroller.paths import Constraints, compute
from quseccontroller.policy import parse
from quseccontroller.state import LINK_OFF, LinkState

# Two routes A->D: A-B-C-D (3 hops) and A-E-D (2 hops); plus a spur D-F.
EDGES = [("A", "B"), ("B", "C"), ("C", "D"), ("A", "E"), ("E", "D"), ("D", "F")]


def test_shortest_key_aware_path_and_reason():
    core, _ = core_with(EDGES)
    res = compute(core.state, "A", "D", Constraints(need_bits=256))
    assert res.paths == [["A", "E", "D"]] and res.links == [["A-E", "E-D"]]
    assert res.costs[0] > 2 and "key_aware" in res.reason and "256 bits" in res.reason


def test_key_aware_avoids_drained_link_but_hops_metric_does_not():
    core, _ = core_with(EDGES)
    # A's end of A-E nearly empty and drained as fast as it refills.
    core.agent_report("A", [LinkState("A-E", "E", 1e5, 3000, consumption_bps=1e5)], 1.0)
    assert compute(core.state, "A", "D", Constraints(need_bits=256)).paths == [["A", "B", "C", "D"]]
    assert compute(core.state, "A", "D", Constraints(need_bits=256, metric="hops")).paths == [["A", "E", "D"]]


def test_cost_grows_as_key_drains():
    costs = [hop_cost(1e5, 1e5, avail, 256, "key_aware", 1.0) for avail in (10**9, 10**6, 10**4, 300)]
    assert costs[0] < 1.01 and costs[-1] > 100 and costs[0] < costs[1] < costs[2] < costs[3]
    # An idle link refills: the same stored key costs less than on a link drained at its rate.
    assert hop_cost(1e5, 0.0, 10**4, 256, "key_aware", 1.0) < costs[2]
    # Consumption above generation makes a link costlier than an idle one with the same key.
    assert hop_cost(1e5, 2e5, 10**6, 256, "key_aware", 1.0) > hop_cost(1e5, 0.0, 10**6, 256, "key_aware", 1.0)


def test_hop_bounded_search_costs_hops_like_the_array_search():
    # The hop-bounded fallback takes its hop costs from the array search's arrays: with a bound
    # the least-cost path already meets, both give the same path, links and cost.
    from dataclasses import replace

    from quseccontroller.paths import _bounded_hops
    core, _ = core_with(EDGES)
    core.agent_report("A", [LinkState("A-E", "E", 1e5, 3000, consumption_bps=1e5)], 1.0)
    for metric in ("key_aware", "hops", "latency"):
        c = Constraints(metric=metric)
        free = compute(core.state, "A", "D", c)
        nodes, links, cost = _bounded_hops(core.state, replace(c, max_hops=len(free.links[0])),
                                           "A", "D", set(), False)
        assert (nodes, links, round(cost, 6)) == (free.paths[0], free.links[0], free.costs[0])


def test_direction_uses_the_initiating_end_of_each_link():
    core, _ = core_with(EDGES)
    core.agent_report("E", [LinkState("E-D", "D", 1e5, 10)], 1.0)   # E->D empty, D->E full
    assert compute(core.state, "A", "D", Constraints(need_bits=256)).paths == [["A", "B", "C", "D"]]
    assert compute(core.state, "D", "A", Constraints(need_bits=256)).paths == [["D", "E", "A"]]


@pytest.mark.parametrize("constraints,refusal", [
    (Constraints(need_bits=256, min_trust=4), "trust"),
    (Constraints(need_bits=256, exclude=("B", "E*")), "trust"),
    (Constraints(need_bits=256, max_hops=1), "max_hops"),
    (Constraints(need_bits=10**7), "no_key"),
])
def test_refusals_say_why(constraints, refusal):
    core, _ = core_with(EDGES)
    res = compute(core.state, "A", "D", constraints)
    assert not res.ok and res.refusal == refusal
    assert "A to D" in res.reason


def test_trust_and_exclusion_steer_the_path():
    core, _ = core_with(EDGES, trust={"E": 1})
    assert compute(core.state, "A", "D", Constraints(min_trust=2)).paths == [["A", "B", "C", "D"]]
    core2, _ = core_with(EDGES)
    assert compute(core2.state, "A", "D", Constraints(exclude=("E",))).paths == [["A", "B", "C", "D"]]
    # Endpoints are not relays: a low-trust destination is fine.
    core3, _ = core_with(EDGES, trust={"D": 1})
    assert compute(core3.state, "A", "D", Constraints(min_trust=2)).paths == [["A", "E", "D"]]


def test_max_hops_picks_cheapest_within_bound():
    core, _ = core_with(EDGES)
    core.agent_report("A", [LinkState("A-E", "E", 1e5, 3000, consumption_bps=1e5)], 1.0)
    # Key-aware prefers the 3-hop route; with max_hops=2 the 2-hop route is taken.
    assert compute(core.state, "A", "D", Constraints(max_hops=2)).paths == [["A", "E", "D"]]


def test_unknown_and_disconnected():
    core, _ = core_with(EDGES + [("X", "Y")])
    assert compute(core.state, "A", "Q", Constraints()).refusal == "unknown_node"
    res = compute(core.state, "A", "X", Constraints())
    assert res.refusal == "disconnected" and "no chain" in res.reason
    core.agent_gone("E", 2.0)
    assert compute(core.state, "A", "E", Constraints()).refusal == "unknown_node"
    assert compute(core.state, "A", "D", Constraints()).paths == [["A", "B", "C", "D"]]


def test_link_reported_off_is_excluded():
    core, _ = core_with(EDGES)
    core.agent_report("E", [LinkState("E-D", "D", 1e5, 10**6, status=LINK_OFF)], 1.0)
    assert compute(core.state, "A", "D", Constraints()).paths == [["A", "B", "C", "D"]]
    assert compute(core.state, "D", "A", Constraints()).paths == [["D", "C", "B", "A"]]


def test_deterministic_whatever_the_registration_order():
    # A square: two equal-cost routes A-B-D and A-C-D.
    edges = [("A", "B"), ("A", "C"), ("B", "D"), ("C", "D")]
    seen = set()
    for order in itertools.permutations(sorted(agents_for(edges))):
        for e_order in (edges, edges[::-1]):
            agents = agents_for(e_order)
            core = QuSeCCore()
            for n in order:
                core.agent_registered(agents[n], 0.0)
            seen.add(tuple(compute(core.state, "A", "D", Constraints()).paths[0]))
    assert len(seen) == 1   # one answer, whatever order the events arrived in


def test_reservation_stops_concurrent_requests_over_committing_a_link():
    # A-B direct holds key for one request only; the second must take the detour A-C-B.
    core, _ = core_with([("A", "B"), ("A", "C"), ("C", "B")], stored=1500)
    req = PathRequest("A", "B", key_size_bits=256, key_count=4)   # 1024 bits
    d1, _ = core.request_path(req, 1.0)
    d2, _ = core.request_path(req, 1.0)
    d3, _ = core.request_path(req, 1.0)
    assert d1.paths == [["A", "B"]] and d2.paths == [["A", "C", "B"]]
    assert not d3.granted and d3.refusal == "no_key"
    core.release_path(d1.path_ids[0], 2.0)
    d4, _ = core.request_path(req, 2.0)
    assert d4.paths == [["A", "B"]]
    # After reservation_s the agents' reports carry the truth: reservations lapse, paths stay.
    assert core.state.reserved
    core.expire(2.0 + core.admission.reservation_s)
    assert not core.state.reserved and len(core.paths) == 2


def test_a_hop_reservation_ends_with_its_ends_first_report_after_the_relay():
    # Line A-B-C, 2100 bits at every end; a request of 1024 bits reserves them on A-B (A's end)
    # and B-C (B's end). The relay takes them; the ends' next reports show it. Counting the
    # reservation as well until reservation_s (5 s) would leave 52 bits: the next request refused.
    core, _ = core_with([("A", "B"), ("B", "C")], stored=2100)
    req = PathRequest("A", "C", key_size_bits=256, key_count=4)
    d1, _ = core.request_path(req, 1.0)
    assert d1.paths == [["A", "B", "C"]]
    assert core.state.reserved == {("A-B", "A"): 1024, ("B-C", "B"): 1024}

    def spent(node: str, links: list[tuple[str, str, int]], now: float) -> None:
        core.agent_report(node, [LinkState(lid, peer, 1e5, bits) for lid, peer, bits in links], now)

    # A report sooner than spent_s (1 s) after the grant may predate the relay: the reservation stays.
    spent("A", [("A-B", "B", 1076)], 1.4)
    early, _ = core.request_path(req, 1.4)
    assert not early.granted and early.refusal == "no_key"
    assert core.state.reserved == {("A-B", "A"): 1024, ("B-C", "B"): 1024}
    # A's report after the relay had time: A's hop holds what A says; B's hop waits for B.
    t = 2.1
    spent("A", [("A-B", "B", 1076)], t)
    core.expire(t)
    assert core.state.reserved == {("B-C", "B"): 1024}
    spent("B", [("A-B", "A", 2100), ("B-C", "C", 1076)], t)
    d2, _ = core.request_path(req, t)
    assert d2.granted and d2.paths == [["A", "B", "C"]]
    # d2's own reservations, and nothing of d1's
    assert core.state.reserved == {("A-B", "A"): 1024, ("B-C", "B"): 1024}
    assert not core.paths[d1.path_ids[0]].reserved


def test_hop_cost_counts_the_directions_half_of_the_link_rate():
    # A hop draws on its initiating end's half of the link's key stream: an idle end nets half
    # the link's rate over the horizon, and an end that already takes its whole half nets nothing
    # (taking more changes nothing: there is no generation left to count).
    from quseccontroller.pathcost import ALPHA, HORIZON_S
    skr, avail, need = 1e4, 6000.0, 1000.0
    half = HORIZON_S * skr / 2
    assert hop_cost(skr, 0.0, avail, need, "key_aware", 1.0) == pytest.approx(
        1 + ALPHA * half / (avail - need + half))
    saturated = hop_cost(skr, skr / 2, avail, need, "key_aware", 1.0)
    assert saturated == pytest.approx(1 + ALPHA * half / (avail - need))
    assert hop_cost(skr, skr, avail, need, "key_aware", 1.0) == pytest.approx(saturated)


def _disjoint(paths):
    interiors = [set(p[1:-1]) for p in paths]
    return all(not (a & b) for a, b in itertools.combinations(interiors, 2))


def test_two_disjoint_paths_and_direct_link_used_once():
    core, _ = core_with(EDGES + [("A", "D")])
    res = compute(core.state, "A", "D", Constraints(), k=2)
    assert res.paths == [["A", "D"], ["A", "E", "D"]] and _disjoint(res.paths)
    res3 = compute(core.state, "A", "D", Constraints(), k=3)
    assert len(res3.paths) == 3 and _disjoint(res3.paths)
    res4 = compute(core.state, "A", "D", Constraints(), k=4)
    assert not res4.ok or len(res4.paths) < 4
    assert res4.refusal == "disconnected" and "only 3 of 4" in res4.reason


def test_disjoint_paths_escape_the_greedy_trap():
    # Cheapest path s-a-b-t uses a and b; removing them leaves no second path, yet two
    # node-disjoint paths exist: s-a-d-t and s-c-b-t (Suurballe's classic trap).
    edges = [("s", "a"), ("a", "b"), ("b", "t"), ("s", "c"), ("c", "b"), ("a", "d"), ("d", "t")]
    core, _ = core_with(edges)
    for a, b in [("s", "c"), ("c", "b"), ("a", "d"), ("d", "t")]:
        core.agent_report(a, [LinkState(f"{a}-{b}", b, 1e5, 20000)], 0.0)
    assert compute(core.state, "s", "t", Constraints()).paths == [["s", "a", "b", "t"]]
    res = compute(core.state, "s", "t", Constraints(), k=2)
    assert len(res.paths) == 2 and _disjoint(res.paths)
    assert sorted(res.paths) == [["s", "a", "d", "t"], ["s", "c", "b", "t"]]


def test_multipath_request_through_policy_reserves_every_share():
    core, _ = core_with(EDGES + [("A", "D")], policy=parse({"default": {"paths": 2}}))
    d, acts = core.request_path(PathRequest("A", "D", key_count=2), 1.0)
    assert d.granted and len(d.paths) == 2 and _disjoint(d.paths)
    assert core.state.reserved[("A-D", "A")] == 512 and core.state.reserved[("A-E", "A")] == 512
    shares = sorted((a.auth.share_index, a.auth.share_count) for a in acts
                    if type(a).__name__ == "Authorise" and a.node_id == "A")
    assert shares == [(0, 2), (1, 2)]


def test_parallel_links_pick_the_richer_and_count_once_for_disjointness():
    # Two QKD links between A and B (e.g. two vendors' modules), plus a detour A-C-B.
    core = QuSeCCore()
    from quseccontroller.state import AgentInfo
    links = {"A": [LinkState("AB-1", "B", 1e5, 600000), LinkState("AB-2", "B", 1e5, 900000),
                   LinkState("A-C", "C", 1e5, 10**6)],
             "B": [LinkState("AB-1", "A", 1e5, 600000), LinkState("AB-2", "A", 1e5, 900000),
                   LinkState("C-B", "C", 1e5, 10**6)],
             "C": [LinkState("A-C", "A", 1e5, 10**6), LinkState("C-B", "B", 1e5, 10**6)]}
    for n in sorted(links, reverse=True):
        core.agent_registered(AgentInfo(n, f"h{n}:1", links=tuple(links[n])), 0.0)
    res = compute(core.state, "A", "B", Constraints(need_bits=256))
    assert res.paths == [["A", "B"]] and res.links == [["AB-2"]]
    two = compute(core.state, "A", "B", Constraints(need_bits=256), k=2)
    assert sorted(two.paths) == [["A", "B"], ["A", "C", "B"]]
    assert compute(core.state, "A", "B", Constraints(need_bits=256), k=3).refusal == "disconnected"
    # The richer link empties: the other one carries the hop.
    core.agent_report("A", [LinkState("AB-2", "B", 1e5, 10)], 1.0)
    assert compute(core.state, "A", "B", Constraints(need_bits=256)).links == [["AB-1"]]
