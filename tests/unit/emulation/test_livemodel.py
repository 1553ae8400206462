"""The model of bench live-routing in simulated time: with the live network's differences undone
it is the key-flow simulation again (QuSeC reaches the bound); as live, it does not."""
from __future__ import annotations

from dataclasses import replace

from mininet_topos import topology
from mininet_topos.bench.keyflow import random_pairs
from mininet_topos.bench.livemodel import Model, run
from mininet_topos.bench.liverouting import scaled


def _metro8():
    topo0 = topology.load("metro8")
    pairs = random_pairs(topo0, 8, 1)
    topo, _, _ = scaled(topo0, pairs, 4096.0, 8)
    return topo, pairs


def test_every_request_of_the_window_is_counted_once() -> None:
    topo, pairs = _metro8()
    model = Model(warmup_s=20.0, window_s=10.0)
    got = run(topo, pairs, "key_aware", model, seed=1)
    per_pair = model.window_s * model.pair_bps / (model.keys * 256)
    assert got["ok"] + got["failed"] == len(pairs) * per_pair
    assert got["bits"] == got["ok"] * model.keys * 256 and got["refused"] <= got["failed"]


def test_a_path_per_request_with_fresh_reports_reaches_the_bound_and_reuse_does_not() -> None:
    topo, pairs = _metro8()
    live = Model(warmup_s=30.0, window_s=20.0)
    sim = replace(live, fresh=True, interval_s=0.25)
    assert run(topo, pairs, "key_aware", sim, seed=1)["ratio"] >= 0.99
    assert run(topo, pairs, "key_aware", live, seed=1)["ratio"] < 0.99
