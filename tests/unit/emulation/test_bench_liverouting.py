"""bench live-routing's pure part: the scaled network whose bound is the asked rate per pair."""
from __future__ import annotations

import pytest

from mininet_topos import topology
from mininet_topos.bench.keyflow import max_concurrent_flow, random_pairs
from mininet_topos.bench.liverouting import scaled


def test_scaling_puts_the_bound_where_asked_and_gives_every_pair_an_sae() -> None:
    topo = topology.load("metro8")
    pairs = random_pairs(topo, 8, 1)
    net, home, bound0 = scaled(topo, pairs, 1024.0, keys=4)
    # the LP of the scaled network, with the MAC key's share, is the asked bound
    assert max_concurrent_flow(net, pairs) * 4 / 5 == pytest.approx(1024.0, rel=1e-6)
    assert bound0 > 1024.0
    for a, b in pairs:
        assert net.saes[home[a]].node == a and net.saes[home[b]].node == b
    # metro8 already has sae-b on node H: node B's SAE gets another name, H keeps its own
    assert home["H"] == "sae-b" and home["B"] != "sae-b" and net.saes["sae-b"].node == "H"
    assert len({home[n] for p in pairs for n in p}) == len({n for p in pairs for n in p})
