"""A domain's export to its parent: borders, what it carries between them, and nothing inside."""
from __future__ import annotations

from tests.helpers.qusec_net import core_with

from quseccontroller.abstract import Border, Reach, export, reach, usable_graph, widest
from quseccontroller.state import LINK_OFF, LinkState

# X1 and X2 are border nodes; two routes between them: X1-A-X2 and X1-B-C-X2.
EDGES = [("X1", "A"), ("A", "X2"), ("X1", "B"), ("B", "C"), ("C", "X2"), ("C", "S")]
BORDERS = [Border("X1", "site1", "etsi020", "north", "N1"), Border("X2", "wan", "pqc", "south", "S9")]


def test_reach_sums_parallel_routes_and_takes_the_widest_path() -> None:
    core, _ = core_with(EDGES, rate=1e5, stored=10**6)
    core.agent_report("A", [LinkState("A-X2", "X2", 1e5, 5000)], 1.0)   # A's end nearly empty
    g = usable_graph(core.state)
    r = reach(g, "X1", "X2")
    assert r.rate_bps == 2e5                       # two node-disjoint routes of 1e5 each
    assert (r.stored_bits, r.hops) == (10**6, 3)   # the route with key, not the shorter one
    assert widest(g, "X1", "X2") == (10**6, 3)
    assert widest(g, "X1", "nowhere") is None


def test_ties_on_key_go_to_fewer_hops() -> None:
    core, _ = core_with(EDGES, rate=1e5, stored=10**6)
    assert widest(usable_graph(core.state), "X1", "X2") == (10**6, 2)


def test_off_links_and_absent_agents_do_not_carry() -> None:
    core, _ = core_with(EDGES, rate=1e5, stored=10**6)
    core.agent_report("A", [LinkState("X1-A", "X1", 1e5, 10**6, status=LINK_OFF)], 1.0)
    assert reach(usable_graph(core.state), "X1", "X2").rate_bps == 1e5
    core.agent_gone("C", 2.0)
    assert reach(usable_graph(core.state), "X1", "X2") is None


def test_export_names_borders_and_saes_only() -> None:
    core, _ = core_with(EDGES, rate=1e5, stored=10**6)
    ex = export(core.state, "mid", BORDERS, seq=7)
    assert ex.domain == "mid" and ex.seq == 7 and all(b.up for b in ex.borders)
    assert list(ex.links) == [("X1", "X2")] and ex.link("X2", "X1") == ex.links[("X1", "X2")]
    # every SAE of the domain, reached from each border
    assert set(ex.saes) == {f"sae-{n.lower()}" for n in ("X1", "A", "X2", "B", "C", "S")}
    assert ex.saes["sae-s"]["X2"] == Reach(rate_bps=1e5, stored_bits=10**6, hops=2)
    assert ex.saes["sae-x1"]["X1"].hops == 0
    # what leaves the domain: border ids, peers, and numbers; no inside node
    names = {b.node for b in ex.borders} | {n for pair in ex.links for n in pair} \
        | {n for per in ex.saes.values() for n in per}
    assert names == {"X1", "X2"}


def test_a_border_whose_agent_left_is_down_and_carries_nothing() -> None:
    core, _ = core_with(EDGES, rate=1e5, stored=10**6)
    core.agent_gone("X2", 1.0)
    ex = export(core.state, "mid", BORDERS, seq=1, saes=["sae-s"])
    assert [b.up for b in ex.borders] == [True, False]
    assert ex.links == {} and set(ex.saes["sae-s"]) == {"X1"}


def test_serves_counts_stored_key_and_the_rate_over_the_horizon() -> None:
    r = Reach(rate_bps=1000, stored_bits=100, hops=2)
    assert r.serves(600, horizon_s=0.5) and not r.serves(601, horizon_s=0.5)
