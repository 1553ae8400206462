"""Pre-relayed buffers over in-process relay nodes (real gRPC + mutual TLS, SQLite, simulated QKD)."""
from __future__ import annotations

import os

import pytest

from kms_agents.relay.prerelay import PreRelay, target_size
from tests.helpers.relay_harness import build

pytestmark = pytest.mark.integration

LINE = ["A", "B", "C", "D"]


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


@pytest.fixture
def setup(tmp_path):
    net = build(tmp_path, LINE, list(zip(LINE, LINE[1:])))
    net.routes["D"] = [LINE]
    clock = Clock()
    pre = PreRelay(net.nodes["A"].engine, max_keys=8, min_keys=3, horizon_s=1.0, idle_s=30.0,
                   clock=clock)
    yield net, pre, clock
    net.close()


def test_target_size_follows_demand() -> None:
    assert target_size(100.0, 1, horizon_s=2, min_keys=4, max_keys=64) == 0
    assert target_size(0.1, 2, horizon_s=2, min_keys=4, max_keys=64) == 4
    assert target_size(10.0, 5, horizon_s=2, min_keys=4, max_keys=64) == 20
    assert target_size(1e6, 5, horizon_s=2, min_keys=4, max_keys=64) == 64


def test_buffer_fills_after_repeated_demand_and_serves_identical_keys(setup) -> None:
    net, pre, clock = setup
    pre.observe("sae-a", ["sae-d"], "D", 1, 32)
    assert pre.refill_once() == 0          # one request is not a pattern
    clock.t += 0.5
    pre.observe("sae-a", ["sae-d"], "D", 1, 32)
    assert pre.refill_once() == 3          # min_keys
    assert pre.count("D", 256) == 3
    assert pre.count("D", 256, "sae-a", "sae-d") == 3        # per pair (ETSI 014 status)
    assert pre.count("D", 256, "sae-a", "sae-other") == 0
    keys = [("agent-id-1", os.urandom(32)), ("agent-id-2", os.urandom(32))]
    result = pre.take("sae-a", ["sae-d"], "D", keys)
    assert result is not None and result.paths == [LINE] and result.security_level == "qkd"
    assert keys[0][0] == "agent-id-1"                              # not rewritten in place
    keys = result.keys
    assert len(keys) == 2 and not any(kid.startswith("agent-id") for kid, _ in keys)  # buffered IDs
    got = net.nodes["D"].store.fetch("sae-a", "sae-d", [kid for kid, _ in keys])
    assert [g.material for g in got] == [m for _, m in keys]
    assert pre.count("D", 256) == 1
    assert pre.take("sae-a", ["sae-d"], "D", [("x", os.urandom(32))] * 2) is None  # too few
    assert pre.take("sae-a", ["sae-d"], "D", [("x", os.urandom(16))]) is None      # other size
    assert (pre.hits, pre.misses) == (1, 2)


def test_idle_pair_voided_at_destination(setup) -> None:
    net, pre, clock = setup
    for _ in range(2):
        pre.observe("sae-a", ["sae-d"], "D", 1, 32)
        clock.t += 0.1
    pre.refill_once()
    assert net.nodes["D"].store.pending_count("sae-a", "sae-d") == 3
    clock.t += 31
    pre.refill_once()
    assert pre.count("D", 256) == 0
    assert net.nodes["D"].store.pending_count("sae-a", "sae-d") == 0  # voided there too


def test_stop_voids_buffers(setup) -> None:
    net, pre, clock = setup
    for _ in range(2):
        pre.observe("sae-a", ["sae-d"], "D", 1, 32)
        clock.t += 0.1
    pre.refill_once()
    pre.stop()
    assert net.nodes["D"].store.pending_count("sae-a", "sae-d") == 0


def test_refill_waits_until_half_is_used_then_tops_up_in_one_go(setup) -> None:
    net, pre, clock = setup
    for _ in range(2):
        pre.observe("sae-a", ["sae-d"], "D", 1, 32)
        clock.t += 0.5
    assert pre.refill_once() == 3
    assert pre.take("sae-a", ["sae-d"], "D", [("x", os.urandom(32))]) is not None
    assert pre.refill_once() == 0          # 2 of 3 left: not yet
    assert pre.take("sae-a", ["sae-d"], "D", [("y", os.urandom(32))]) is not None
    assert pre.refill_once() >= 2          # 1 left: topped up in one relay
    assert pre.count("D", 256) >= 3
