"""Pure parts of the relay benchmark: its topology, percentiles, the recorded section."""
from __future__ import annotations

from mininet_topos.bench import relay as bench_relay


def test_topology_is_a_valid_line_with_one_sae_per_node(tmp_path) -> None:
    from mininet_topos import topology
    path = tmp_path / "t.toml"
    path.write_text(bench_relay.topology_toml())
    topo = topology.load(str(path))
    assert len(topo.nodes) == 10 and len(topo.links) == 9
    assert {s.id for s in topo.saes.values()} == {"sae-p"} | {f"sae-{i}" for i in range(9)}


def test_percentile() -> None:
    from mininet_topos.bench.stats import percentile
    assert percentile([3.0, 1.0, 2.0], 50) == 2.0
    assert percentile([1.0, 2.0], 99) == 1.99
    assert percentile([5.0], 99) == 5.0
    assert percentile([4.0, 1.0, 3.0, 2.0], 50) == 2.5   # the median of an even count
    assert percentile(list(range(101)), 99) == 99.0
    assert percentile([], 50) != percentile([], 50)      # NaN


def test_markdown_states_targets_from_numbers() -> None:
    lat = {"relayed": [{"hops": 5, "route": "indirect", "p50_ms": 30.0, "p99_ms": 40.0}],
           "buffered_direct_p50_ms": 2.0, "buffered_p50_ms": 2.5, "buffered_hops": 5,
           "unbuffered_p50_ms_same_hops": 30.0, "relay_samples": 10}
    md = bench_relay.latency_markdown(lat)
    assert "30.0 ms, NOT met" in md and "x1.25; target within x1.5: met" in md
    tp = {"relay_mbps": 90.0, "relay_mbps_hops": 3, "link_rate_bps": 1e9, "relay_seconds": 4.0,
          "relay_mbps_by_clients": [{"clients": 1, "relay_mbps": 50.0}, {"clients": 4, "relay_mbps": 90.0}],
          "bulk_request": {"number": 128, "size_bits": 8192, "clients": 4},
          "link_kms_take_claim_mbps": 100.0}
    md = bench_relay.throughput_markdown(tp)
    assert "(best client count, 4): **90.00 Mb/s** (target 85 Mb/s: met)" in md and "1e+09 b/s" in md
    assert "| 1 | 50 |" in md
    assert "NOT met" in bench_relay.throughput_markdown(dict(tp, relay_mbps=84.9))


def test_bench_commands_carry_the_relay_options() -> None:
    import argparse

    from mininet_topos.bench import kms as bench
    parser = argparse.ArgumentParser()
    bench.add_parser(parser.add_subparsers(dest="bench"))
    args = parser.parse_args(["latency", "--relay-samples", "5"])
    assert args.relay and args.relay_samples == 5
    assert not parser.parse_args(["throughput", "--no-relay"]).relay

