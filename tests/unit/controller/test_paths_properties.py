"""Property tests of the path search on random QKD graphs: every answer obeys every constraint."""
from __future__ import annotations

import fnmatch

from hypothesis import given, settings
from hypothesis import strategies as st
from tests.helpers.qusec_net import agents_for

from quseccontroller.actions import PathRequest
from quseccontroller.core import QuSeCCore
from quseccontroller.paths import Constraints, compute
from quseccontroller.policy import parse
from quseccontroller.state import LinkState

NODES = [f"n{i}" for i in range(8)]


@st.composite
def networks(draw):
    edges = draw(st.sets(st.tuples(st.sampled_from(NODES), st.sampled_from(NODES))
                         .filter(lambda e: e[0] < e[1]), min_size=3, max_size=16))
    edges = sorted(edges)
    stored = {e: draw(st.integers(0, 4000)) for e in edges}
    trust = {n: draw(st.integers(1, 5)) for n in NODES}
    return edges, stored, trust


def build(edges, stored, trust) -> QuSeCCore:
    core = QuSeCCore(parse({"default": {}}))
    for info in agents_for(edges, trust=trust).values():
        core.agent_registered(info, 0.0)
    for (a, b), bits in stored.items():
        core.agent_report(a, [LinkState(f"{a}-{b}", b, 1e3, bits)], 0.0)
        core.agent_report(b, [LinkState(f"{a}-{b}", a, 1e3, bits)], 0.0)
    return core


@settings(max_examples=60, deadline=None)
@given(networks(), st.integers(0, 5), st.sampled_from([(), ("n1",), ("n2*", "n3")]),
       st.integers(0, 4), st.integers(1, 3), st.integers(1, 3000))
def test_answers_obey_constraints_and_refusals_name_a_real_cause(net, min_trust, exclude, max_hops, k, need):
    edges, stored, trust = net
    core = build(edges, stored, trust)
    nodes = sorted(core.state.qkd)
    src, dst = nodes[0], nodes[-1]
    c = Constraints(need_bits=need, min_trust=min_trust, exclude=exclude, max_hops=max_hops)
    res = compute(core.state, src, dst, c, k)
    if res.ok:
        assert len(res.paths) == k
        for path, links in zip(res.paths, res.links):
            assert path[0] == src and path[-1] == dst and len(set(path)) == len(path)
            assert not max_hops or len(links) <= max_hops
            for u, v, lid in zip(path, path[1:], links):
                rec = core.state.links[lid]
                assert {rec.a, rec.b} == {u, v} and rec.stored_from(u) >= need
            for relay in path[1:-1]:
                assert trust[relay] >= min_trust
                assert not any(fnmatch.fnmatchcase(relay, g) for g in exclude)
        relays = [set(p[1:-1]) for p in res.paths]
        assert sum(map(len, relays)) == len(set().union(*relays))
        assert sum(len(p) == 2 for p in res.paths) <= 1
    else:
        relax = {"no_key": dict(check_key=False), "trust": dict(check_key=False, check_trust=False),
                 "max_hops": dict(check_key=False, check_trust=False, max_hops=0)}
        if res.refusal in relax:
            from dataclasses import replace
            assert compute(core.state, src, dst, replace(c, **relax[res.refusal]), k).ok
        else:
            assert res.refusal == "disconnected"
            loose = Constraints(need_bits=need, check_key=False, check_trust=False)
            assert not compute(core.state, src, dst, loose, k).ok


@settings(max_examples=40, deadline=None)
@given(networks(), st.lists(st.tuples(st.integers(0, 7), st.integers(0, 7), st.integers(1, 1500)),
                            min_size=1, max_size=25))
def test_grants_never_reserve_more_key_than_a_link_end_holds(net, requests):
    edges, stored, trust = net
    core = build(edges, stored, trust)
    nodes = sorted(core.state.qkd)
    for a, b, bits in requests:
        src, dst = nodes[a % len(nodes)], nodes[b % len(nodes)]
        core.request_path(PathRequest(src, dst, key_size_bits=bits, key_count=1), 1.0)
        for (lid, u), held in core.state.reserved.items():
            assert held <= core.state.links[lid].stored_from(u)
