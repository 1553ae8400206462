"""Simulated QKD module + SQLite link state: same keys and IDs at both ends, rate, never twice, restart."""
from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kms_agents import qkd_module as qm
from kms_agents.keysource import KeySource
from kms_agents.keystore import KeyStore

SECRET = bytes(range(32))
RATE = 256 * 2 * 10.0   # 10 blocks/s per direction


class Clock:
    def __init__(self, t: float) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def pair(tmp_path: Path, clock: Clock, rate: float = RATE, capacity: int = 1 << 20):
    sa, sb = KeyStore(tmp_path / "a.db"), KeyStore(tmp_path / "b.db")
    a = qm.SimulatedQkdModule("L1", "A", "B", SECRET, rate, 1000.0, sa, clock=clock, capacity_bytes=capacity)
    b = qm.SimulatedQkdModule("L1", "B", "A", SECRET, rate, 1000.0, sb, clock=clock, capacity_bytes=capacity)
    return a, b, sa, sb


def test_both_ends_derive_the_same_key_under_the_same_ids(tmp_path: Path) -> None:
    clock = Clock(1010.0)
    a, b, *_ = pair(tmp_path, clock)
    assert isinstance(a, KeySource)
    lk = a.take(80)
    assert len(lk.material) == 80 and len(lk.key_ids) == 3
    assert b.claim(lk.key_ids, 80) == lk.material
    # the other direction is its own sub-stream: B initiating gives different blocks
    lk2 = b.take(32)
    assert lk2.key_ids[0] not in lk.key_ids and lk2.material != lk.material[:32]
    assert a.claim(lk2.key_ids) == lk2.material


def test_ids_are_deterministic_from_secret_and_index() -> None:
    d = qm.direction("A", "B")
    kid = qm.block_id(SECRET, d, 7)
    assert qm.block_index(SECRET, d, kid) == 7
    assert qm.block_index(SECRET, qm.direction("B", "A"), kid) is None
    assert qm.block_index(os.urandom(32), d, kid) is None
    assert qm.block_index(SECRET, d, "not-a-uuid") is None


def test_never_faster_than_the_rate(tmp_path: Path) -> None:
    clock = Clock(1000.0)
    a, b, *_ = pair(tmp_path, clock)
    assert a.available_bytes() == 0
    with pytest.raises(qm.InsufficientKey):
        a.take(1)
    clock.t = 1001.0   # one second: 10 blocks per direction
    assert a.available_bytes() == 10 * qm.BLOCK_BYTES
    a.take(10 * qm.BLOCK_BYTES)
    with pytest.raises(qm.InsufficientKey):
        a.take(1)
    assert b.available_bytes() == 10 * qm.BLOCK_BYTES  # B's direction untouched
    clock.t = 1001.5
    assert a.available_bytes() == 5 * qm.BLOCK_BYTES


def test_buffer_drops_oldest_blocks(tmp_path: Path) -> None:
    clock = Clock(2000.0)   # 10000 blocks released, buffer 8
    a, b, *_ = pair(tmp_path, clock, capacity=8 * qm.BLOCK_BYTES)
    assert a.available_bytes() == 8 * qm.BLOCK_BYTES
    lk = a.take(32)
    assert qm.block_index(SECRET, "A>B", lk.key_ids[0]) == 10000 - 8
    assert b.claim(lk.key_ids) == lk.material


def test_a_key_is_never_handed_out_twice(tmp_path: Path) -> None:
    clock = Clock(1100.0)
    a, b, *_ = pair(tmp_path, clock)
    seen: set[str] = set()
    for _ in range(50):
        lk = a.take(64)
        assert not seen & set(lk.key_ids)
        seen |= set(lk.key_ids)
    lk = a.take(32)
    b.claim(lk.key_ids)
    with pytest.raises(qm.UnknownKeyIds):
        b.claim(lk.key_ids)
    with pytest.raises(qm.UnknownKeyIds):   # own direction's IDs are not claimable here
        a.claim(lk.key_ids)
    forged = qm.block_id(os.urandom(32), "A>B", 3)
    with pytest.raises(qm.UnknownKeyIds):
        b.claim([forged])


def test_state_survives_reopen(tmp_path: Path) -> None:
    clock = Clock(1100.0)
    a, b, sa, sb = pair(tmp_path, clock)
    first = a.take(32)
    b.claim(first.key_ids)
    pending = a.take(32)
    sa.close()
    sb.close()
    a2, b2, *_ = pair(tmp_path, clock)
    again = a2.take(32)
    assert again.key_ids[0] not in first.key_ids + pending.key_ids
    with pytest.raises(qm.UnknownKeyIds):
        b2.claim(first.key_ids)
    assert b2.claim(pending.key_ids) == pending.material   # still in step after restart
    assert b2.claim(again.key_ids) == again.material


def test_new_secret_resets_link_state(tmp_path: Path) -> None:
    clock = Clock(1100.0)
    store = KeyStore(tmp_path / "a.db")
    m1 = qm.SimulatedQkdModule("L1", "A", "B", SECRET, RATE, 1000.0, store, clock=clock)
    m1.take(320)
    m2 = qm.SimulatedQkdModule("L1", "A", "B", os.urandom(32), RATE, 1000.0, store, clock=clock)
    assert qm.block_index(m2._secret, "A>B", m2.take(32).key_ids[0]) == 0


def test_bad_construction_is_rejected(tmp_path: Path) -> None:
    store = KeyStore(tmp_path / "a.db")
    with pytest.raises(ValueError, match="L9"):
        qm.SimulatedQkdModule("L9", "A", "B", b"short", RATE, 0.0, store)
    with pytest.raises(ValueError, match="rate_bps"):
        qm.SimulatedQkdModule("L9", "A", "B", SECRET, 0, 0.0, store)


ops = st.lists(st.one_of(st.tuples(st.just("take"), st.sampled_from("AB"), st.integers(1, 100)),
                         st.tuples(st.just("claim"), st.integers(0, 50), st.booleans()),
                         st.tuples(st.just("reopen"), st.just(0), st.just(0))), max_size=40)


@settings(max_examples=25, deadline=None)
@given(script=ops)
def test_random_interleavings_never_hand_out_a_block_twice(tmp_path_factory, script) -> None:
    tmp = tmp_path_factory.mktemp("prop")
    clock = Clock(1000.5)   # 5 blocks per direction released; the clock advances as we go
    a, b, sa, sb = pair(tmp, clock)
    taken: list[tuple[str, object]] = []      # (initiator, LinkKey)
    claimed: set[int] = set()
    seen_ids: set[str] = set()
    for op, x, y in script:
        clock.t += 0.3
        if op == "take":
            src = a if x == "A" else b
            try:
                lk = src.take(y)
            except qm.InsufficientKey:
                continue
            assert not seen_ids & set(lk.key_ids) and len(lk.material) == y
            seen_ids |= set(lk.key_ids)
            taken.append((x, lk))
        elif op == "claim" and taken:
            i = x % len(taken)
            who, lk = taken[i]
            far = b if who == "A" else a
            if i in claimed:
                with pytest.raises(qm.UnknownKeyIds):
                    far.claim(lk.key_ids)
            else:
                assert far.claim(lk.key_ids, len(lk.material)) == lk.material
                claimed.add(i)
        elif op == "reopen":
            sa.close(), sb.close()
            a, b, sa, sb = pair(tmp, clock)
    sa.close(), sb.close()
