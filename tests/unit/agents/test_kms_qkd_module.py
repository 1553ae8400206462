"""Simulated QKD module + SQLite link state: same keys and IDs at both ends, rate, never twice, restart."""
from __future__ import annotations

import os
import uuid
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
    assert len(lk.material) == 80 and len(lk.key_ids) == 1   # one ID for the run of 3 blocks
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


def test_one_take_is_one_key_id_for_a_contiguous_run(tmp_path: Path) -> None:
    clock = Clock(1100.0)
    a, b, sa, _ = pair(tmp_path, clock)
    lk = a.take(10 * qm.BLOCK_BYTES + 1)
    assert len(lk.key_ids) == 1
    start, count = qm.parse_range_id(SECRET, "A>B", lk.key_ids[0])
    assert count == 11
    # the run's material is the concatenation of its blocks' material
    assert lk.material == b"".join(qm.block_key(SECRET, "A>B", i) for i in range(start, start + 10)) \
        + qm.block_key(SECRET, "A>B", start + 10)[:1]
    # a forged ID claiming a longer run (same start, other count) does not verify
    raw = bytearray(uuid.UUID(lk.key_ids[0]).bytes)
    raw[15] ^= 0x01
    assert qm.parse_range_id(SECRET, "A>B", str(uuid.UUID(bytes=bytes(raw)))) is None
    # the far end may derive only a prefix, yet the whole run is claimed
    assert b.claim(lk.key_ids, 5) == lk.material[:5]
    with pytest.raises(qm.UnknownKeyIds):
        b.claim(lk.key_ids)


def test_overlapping_runs_are_claimed_once(tmp_path: Path) -> None:
    clock = Clock(1100.0)
    a, b, *_ = pair(tmp_path, clock)
    lk = a.take(8 * qm.BLOCK_BYTES)
    start, _ = qm.parse_range_id(SECRET, "A>B", lk.key_ids[0])
    inner = qm.range_id(SECRET, "A>B", start + 2, 3)       # an attacker with the secret only
    assert b.claim([inner]) == qm.range_key(SECRET, "A>B", start + 2, 3)
    with pytest.raises(qm.UnknownKeyIds, match="already claimed"):
        b.claim(lk.key_ids)                                # overlaps the claimed inner run
    with pytest.raises(qm.UnknownKeyIds, match="overlapping"):
        b.claim([qm.range_id(SECRET, "A>B", start + 20, 4), qm.range_id(SECRET, "A>B", start + 22, 1)])
    with pytest.raises(ValueError):
        qm.range_id(SECRET, "A>B", 0, 1 << 22)


def test_a_take_longer_than_one_id_can_name_gets_several(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(qm, "MAX_RANGE_BLOCKS", 4)
    clock = Clock(1100.0)
    a, b, *_ = pair(tmp_path, clock)
    lk = a.take(10 * qm.BLOCK_BYTES)
    assert [qm.parse_range_id(SECRET, "A>B", k)[1] for k in lk.key_ids] == [4, 4, 2]
    assert b.claim(lk.key_ids) == lk.material


@settings(max_examples=25, deadline=None)
@given(runs=st.lists(st.tuples(st.integers(0, 60), st.integers(1, 8)), min_size=1, max_size=12))
def test_random_runs_claim_each_block_at_most_once(tmp_path_factory, runs) -> None:
    store = KeyStore(tmp_path_factory.mktemp("runs") / "b.db")
    b = qm.SimulatedQkdModule("L1", "B", "A", SECRET, RATE, 1000.0, store, clock=Clock(1100.0))
    claimed: set[int] = set()
    for start, count in runs:
        blocks = set(range(start, start + count))
        try:
            got = b.claim([qm.range_id(SECRET, "A>B", start, count)])
        except qm.UnknownKeyIds:
            assert blocks & claimed      # refused only because a block was claimed before
            continue
        assert not blocks & claimed
        assert got == qm.range_key(SECRET, "A>B", start, count)
        claimed |= blocks
    store.close()


def test_peer_available_is_what_was_released_toward_this_end_and_not_claimed(tmp_path: Path) -> None:
    clock = Clock(1001.0)   # 10 blocks released per direction
    a, b, sa, _ = pair(tmp_path, clock, capacity=8 * qm.BLOCK_BYTES)
    # what B can take toward A, as A sees it: released, bounded by the buffer, minus A's claims
    assert a.peer_available_bytes() == b.available_bytes() == 8 * qm.BLOCK_BYTES
    lk = b.take(3 * qm.BLOCK_BYTES)
    assert a.peer_available_bytes() == 8 * qm.BLOCK_BYTES   # not claimed at A yet (in flight)
    a.claim(lk.key_ids)
    assert a.peer_available_bytes() == b.available_bytes() == 5 * qm.BLOCK_BYTES
    assert a.available_bytes() == 8 * qm.BLOCK_BYTES        # A's own direction is untouched
    # a restarted A reads its claims back from the store
    a2 = qm.SimulatedQkdModule("L1", "A", "B", SECRET, RATE, 1000.0, sa, clock=clock,
                               capacity_bytes=8 * qm.BLOCK_BYTES)
    assert a2.peer_available_bytes() == 5 * qm.BLOCK_BYTES
