"""Key-flow simulation and flow bound: the benchmark runs QuSeC's path code and is checkable by hand."""
from __future__ import annotations

import json
import random

import networkx as nx
import numpy as np
import pytest

from mininet_topos.cli import main as qkdnet
from mininet_topos.model import Node, QkdLink, Sae, Topology
from mininet_topos.bench import keyflow
from quseccontroller.pathcost import hop_cost
from quseccontroller.paths import Constraints, compute


def topo(edges: list[tuple[str, str, float]], saes=()) -> Topology:
    nodes = {n: Node(n) for a, b, _ in edges for n in (a, b)}
    links = [QkdLink(f"{a}-{b}", a, b, rate) for a, b, rate in edges]
    return Topology("t", nodes, links, {s: Sae(s, n) for s, n in saes})


def test_flow_bound_matches_hand_calculation():
    line = topo([("A", "B", 2000), ("B", "C", 2000)])
    assert keyflow.max_concurrent_flow(line, [("A", "C"), ("A", "B")]) == pytest.approx(500)
    # Directions have their own half of the key: opposite pairs do not compete.
    assert keyflow.max_concurrent_flow(line, [("A", "C"), ("C", "A")]) == pytest.approx(1000)
    tri = topo([("A", "B", 2000), ("B", "C", 2000), ("A", "C", 2000)])
    assert keyflow.max_concurrent_flow(tri, [("A", "C")]) == pytest.approx(2000)


def test_key_aware_routing_splits_demand_where_shortest_path_saturates():
    # A-C direct (fast to reach, 1 hop) is too small for the demand; A-B-C has the rest.
    t = topo([("A", "C", 2000), ("A", "B", 20000), ("B", "C", 20000)])
    pairs = [("A", "C")]
    lam = keyflow.max_concurrent_flow(t, pairs)
    assert lam == pytest.approx(11000)
    cfg = keyflow.SimConfig(steps=30, warmup=5, chunks=4)
    qusec = keyflow.simulate(t, pairs, lam, "qusec", cfg)
    base = keyflow.simulate(t, pairs, lam, "shortest", cfg)
    # The baseline only ever uses A-C: 1000 bit/s (its direction's half) over 25 measured steps.
    assert base.delivered_bits == pytest.approx(1000 * 25, rel=0.05) and base.ratio < 0.1
    assert qusec.ratio > 0.95
    assert qusec.cost_per_bit > base.cost_per_bit      # detours burn more key per bit
    assert qusec.drawdown_bits <= 0.05 * qusec.consumed_bits   # not living off the initial store


def test_reservations_keep_the_simulation_from_over_committing():
    # Many pairs, one report per step: without reservations the core would hand out the same
    # stored key twice and simulate() raises on a negative store.
    from mininet_topos import synthetic
    m = synthetic.mesh(20, 3)
    pairs = keyflow.random_pairs(m, 40, 3)
    lam = keyflow.max_concurrent_flow(m, pairs)
    res = keyflow.simulate(m, pairs, lam * 1.5, "qusec", keyflow.SimConfig(steps=12, warmup=2, chunks=3))
    assert res.refused > 0 and 0 < res.ratio < 1


def test_random_pairs_and_all_to_all():
    t = topo([("A", "B", 1), ("B", "C", 1), ("C", "D", 1)])
    p = keyflow.random_pairs(t, 4, 7)
    assert len(set(p)) == 4 and not any((b, a) in p for a, b in p)
    assert p == keyflow.random_pairs(t, 4, 7)
    assert len(keyflow.random_pairs(t, 100, 1)) == 6
    assert keyflow.all_to_all(["C", "A", "B"]) == [("A", "B"), ("A", "C"), ("B", "C")]


def test_vector_and_scalar_cost_agree():
    rng = np.random.default_rng(1)
    skr = rng.uniform(0, 1e6, 200)
    skr[:10] = 0
    cons = rng.uniform(0, 2e6, 200)
    avail = rng.uniform(0, 1e7, 200)
    for metric in ("key_aware", "hops", "latency"):
        vec = hop_cost(skr, cons, avail, 256, metric, np.full(200, 2.5))
        scalar = [hop_cost(float(s), float(c), float(a), 256, metric, 2.5) for s, c, a in zip(skr, cons, avail)]
        assert np.allclose(vec, scalar)


def test_disjoint_paths_match_networkx_connectivity():
    from mininet_topos import synthetic
    m = synthetic.mesh(80, 5)
    core = keyflow.core_for(m, stored_s=1.0)
    g = m.classical_graph()
    rng = random.Random(2)
    for _ in range(40):
        a, b = rng.sample(sorted(m.nodes), 2)
        kappa = len(list(nx.node_disjoint_paths(g, a, b)))
        for k in (2, 3):
            res = compute(core.state, a, b, Constraints(), k)
            assert (len(res.paths) == k) == (kappa >= k), (a, b, k, kappa, res.reason)
            if res.ok:
                inner = [set(p[1:-1]) for p in res.paths]
                assert sum(map(len, inner)) == len(set().union(*inner))
                assert all(p[0] == a and p[-1] == b for p in res.paths)


def test_bench_routing_cli_on_a_topology_file(tmp_path, capsys):
    f = tmp_path / "ring.toml"
    lines = ['[network]\nname = "ring5"\n']
    for i in range(5):
        lines.append(f'[[nodes]]\nid = "R{i}"\n')
    for i in range(5):
        lines.append(f'[[links]]\na = "R{i}"\nb = "R{(i + 1) % 5}"\nrate_bps = {10000 * (i + 1)}\n')
    for i in (0, 2, 3):
        lines.append(f'[[saes]]\nid = "sae-{i}"\nnode = "R{i}"\n')
    f.write_text("\n".join(lines))
    rc = qkdnet(["bench", "routing", "--topology", str(f), "--json", "--no-record", "--jobs", "1"])
    assert rc == 0
    captured = capsys.readouterr()
    out = json.loads(captured.out)                 # progress goes to stderr, the JSON stays whole
    assert captured.err.startswith("bench routing: 2 scenarios") and "[1/2] flow" in captured.err \
        and "[2/2] cost" in captured.err, captured.err
    (s,) = out["scenarios"]
    assert (s["topology"], s["nodes"], s["pairs"], s["seeds"]) == ("ring5", 5, 3, 1)
    for key in ("bound_bps", "ratio_median", "ratio_worst", "baseline_ratio_median",
                "baseline_ratio_worst", "key_cost_ratio"):
        assert key in s
    assert 0 < s["ratio_median"] <= 1.0 + 1e-9 and s["ratio_median"] >= s["baseline_ratio_median"] - 1e-9
    assert out["latency"]["nodes"] == 5 and out["latency"]["path_found"] > 0
