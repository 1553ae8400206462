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


def test_windows_alternate_the_metrics_so_a_drift_weighs_on_both() -> None:
    from mininet_topos.bench.liverouting import order
    assert order(1) == ["hops", "key_aware"]
    assert order(3) == ["hops", "key_aware", "key_aware", "hops", "hops", "key_aware"]


def _rec(ok: bool, links: int = 0, hops: int = 0, ms: float = 10.0, error: str = "") -> dict:
    return {"ok": ok, "bits": 2048 if ok else 0, "links": links, "hops": hops, "ms": ms, "error": error}


def test_a_window_counts_delivered_bits_against_the_bound_and_links_per_request() -> None:
    from mininet_topos.bench.liverouting import summarise
    recs = [_rec(True, 1), _rec(True, 3, 2), _rec(False, error="503 not enough link key")]
    got = summarise(recs, window_s=2.0, pair_bps=1024.0, pairs=2)
    assert got["ratio"] == round(4096 / (1024 * 2 * 2), 3) and got["delivered_bps"] == 2048.0
    assert (got["requests_ok"], got["requests_failed"], got["links_per_request"]) == (2, 1, 2.0)
    assert got["errors"] == {"503 not enough link key": 1}


def test_the_report_compares_the_means_and_says_whether_the_windows_overlap() -> None:
    import argparse

    from mininet_topos.bench.liverouting import report
    args = argparse.Namespace(keys=8, pair_bps=4096.0, buffer_s=2.0, rounds=2, window=40.0, warmup=60.0)

    def row(metric: str, rnd: int, ratio: float) -> dict:
        return {"topology": "t", "nodes": 8, "pairs": 8, "metric": metric, "round": rnd, "delivered_bps": 1.0,
                "ratio": ratio, "requests_ok": 10, "requests_failed": 1, "ok_share": 0.909, "links_per_request": 2.0,
                "grants": 3, "refusals": 0, "p50_ms": 10.0, "records": [_rec(True, 2, 1)]}
    text = report([row("hops", 1, 0.95), row("key_aware", 1, 0.96), row("key_aware", 2, 0.94),
                   row("hops", 2, 0.93)], args)
    assert "key_aware 0.950 of the bound (windows 0.940..0.960), hops 0.940 (0.930..0.950), " \
           "the ranges overlap: met" in text
    text = report([row("hops", 1, 0.97), row("key_aware", 1, 0.91)], args)
    assert "the ranges do not overlap: NOT met" in text
