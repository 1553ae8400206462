"""Synthetic meshes: seeded, connected, the README's statistics, valid topology files, fast."""
from __future__ import annotations

import statistics

import networkx as nx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mininet_topos import keyrate, synthetic, topology


def test_seeded_and_reproducible() -> None:
    a, b, c = synthetic.mesh(200, 5), synthetic.mesh(200, 5), synthetic.mesh(200, 6)
    assert a.links == b.links and a.nodes == b.nodes
    assert a.links != c.links


@pytest.mark.parametrize("n", [100, 1000])
def test_statistics_match_readme(n: int) -> None:
    topo = synthetic.mesh(n, 1)
    g = topo.qkd_graph()
    assert len(topo.nodes) == n and nx.is_connected(g)
    degree = 2 * len(topo.links) / n
    mean_km = statistics.mean(link.length_km for link in topo.links)
    assert 3.4 <= degree <= 4.1, degree
    assert 26 <= mean_km <= 40, mean_km
    assert min(d for _, d in g.degree) >= synthetic.NEIGHBOURS


def test_rates_follow_readme_law_and_plob() -> None:
    topo = synthetic.mesh(300, 2)
    for link in topo.links:
        assert link.rate_bps == pytest.approx(synthetic.link_rate(link.length_km), abs=0.5)
        assert link.rate_bps <= keyrate.plob_bound_bps(link.length_km)
    assert synthetic.link_rate(5) == synthetic.link_rate(10) == 13.7e6
    assert synthetic.link_rate(60) == pytest.approx(13.7e6 / 10)


def test_grid_and_kdtree_agree() -> None:
    for n, seed in ((150, 1), (700, 9)):
        pts = synthetic.points(n, seed)
        assert synthetic.edges(pts, synthetic._knn_grid) == synthetic.edges(pts, synthetic._knn_kdtree)


def test_made_connected_when_knn_graph_is_not() -> None:
    # two far-apart clusters: the 3-NN graph has two components, one bridge joins them
    pts = [(0, 0), (1, 0), (0, 1), (1, 1), (100, 100), (101, 100), (100, 101), (101, 101)]
    e = synthetic.edges(pts)
    g = nx.Graph(e)
    assert nx.is_connected(g)
    assert [tuple(sorted(b)) for b in nx.bridges(g)] == [(3, 4)]


def test_saes_far_apart_and_file_round_trip(tmp_path) -> None:
    topo = synthetic.mesh(100, 3)
    assert topology.hops(topo, topo.saes["sae-a"].node, topo.saes["sae-b"].node) >= 3
    path = tmp_path / "m.toml"
    path.write_text(topology.dumps(topo))
    again = topology.load(path)
    assert again.nodes == topo.nodes and again.links == topo.links and again.saes == topo.saes


@pytest.mark.parametrize("n", [3, 100_001])
def test_size_limits(n: int) -> None:
    with pytest.raises(ValueError, match="mesh size"):
        synthetic.mesh(n, 1)


@settings(max_examples=25, deadline=None)
@given(n=st.integers(min_value=4, max_value=80), seed=st.integers(min_value=0, max_value=2**31))
def test_any_mesh_is_a_valid_connected_topology(n: int, seed: int) -> None:
    topo = synthetic.mesh(n, seed)
    g = topo.qkd_graph()
    assert nx.is_connected(g) and min(d for _, d in g.degree) >= min(3, n - 1)
    again = topology.loads(topology.dumps(topo), "<mesh>")
    assert again.links == topo.links and again.saes == topo.saes
