"""Per-hop relay crypto: pad, one-time MAC over header + ciphertext, sequence numbers, replay window."""
from __future__ import annotations

import dataclasses
import os

import pytest
from hypothesis import given, settings, strategies as st

from kms_agents.relay import crypto as rc


def header(**over) -> rc.RelayHeader:
    fields = dict(path_id="p-1", seq=7, key_id="k-1", from_node="B", src_node="A", dst_node="E",
                  share_index=1, share_count=2, size_bits=256, security_level="qkd",
                  link_id="B-C", pad_key_ids=("l1",), mac_key_ids=("l2",),
                  initiator_sae_id="sae-a", target_sae_ids=("sae-e",))
    fields.update(over)
    return rc.RelayHeader(**fields)


def test_seal_open_roundtrip_and_pad_hides_key() -> None:
    key, pad, mac = os.urandom(32), os.urandom(32), os.urandom(32)
    h = header()
    ct, tag = rc.seal(h, key, pad, mac)
    assert ct != key and len(ct) == 32 and len(tag) == rc.TAG_BYTES
    assert rc.open_sealed(h, ct, tag, pad, mac) == key


@pytest.mark.parametrize("change", [
    {"path_id": "p-2"}, {"seq": 8}, {"key_id": "k-2"}, {"from_node": "C"}, {"src_node": "X"},
    {"dst_node": "X"}, {"share_index": 2}, {"share_count": 3}, {"security_level": "hybrid"},
    {"link_id": "C-B"}, {"pad_key_ids": ("l9",)}, {"mac_key_ids": ("l1",)},
    {"initiator_sae_id": "sae-x"}, {"target_sae_ids": ("sae-x",)},
    {"extensions": (("qusec_x", "1"),)}, {"version": "qusec-relay/2"},
])
def test_any_header_change_breaks_the_tag(change: dict) -> None:
    key, pad, mac = os.urandom(32), os.urandom(32), os.urandom(32)
    ct, tag = rc.seal(header(), key, pad, mac)
    with pytest.raises(rc.RelayAuthError, match="does not verify"):
        rc.open_sealed(header(**change), ct, tag, pad, mac)


def test_flipped_ciphertext_bit_or_tag_rejected() -> None:
    key, pad, mac = os.urandom(32), os.urandom(32), os.urandom(32)
    h = header()
    ct, tag = rc.seal(h, key, pad, mac)
    bad = bytes([ct[0] ^ 1]) + ct[1:]
    with pytest.raises(rc.RelayAuthError):
        rc.open_sealed(h, bad, tag, pad, mac)
    with pytest.raises(rc.RelayAuthError):
        rc.open_sealed(h, ct, bytes(16), pad, mac)
    with pytest.raises(rc.RelayAuthError, match="ciphertext is 31 bytes"):
        rc.open_sealed(h, ct[:-1], tag, pad, mac)


def test_canonical_encoding_is_unambiguous() -> None:
    # moving a character between adjacent string fields must change the encoding
    a = rc.canonical_header(header(path_id="ab", key_id="c"))
    b = rc.canonical_header(header(path_id="a", key_id="bc"))
    assert a != b
    # list boundaries are encoded too
    assert (rc.canonical_header(header(pad_key_ids=("a", "b"), mac_key_ids=()))
            != rc.canonical_header(header(pad_key_ids=("a",), mac_key_ids=("b",))))
    # extension order does not matter
    assert (rc.canonical_header(header(extensions=(("x", "1"), ("y", "2"))))
            == rc.canonical_header(header(extensions=(("y", "2"), ("x", "1")))))


def test_wrong_sizes_are_refused_with_clear_errors() -> None:
    with pytest.raises(rc.RelayCryptoError, match="pad is 248 bits"):
        rc.seal(header(), os.urandom(31), os.urandom(31), os.urandom(32))
    with pytest.raises(rc.RelayCryptoError, match="MAC key is 16 bytes"):
        rc.seal(header(), os.urandom(32), os.urandom(32), os.urandom(16))
    with pytest.raises(rc.RelayCryptoError, match="size_bits 12"):
        header(size_bits=12)
    with pytest.raises(rc.RelayCryptoError, match="share 3/2"):
        header(share_index=3)
    with pytest.raises(rc.RelayCryptoError, match="path_id is empty"):
        header(path_id="")
    with pytest.raises(rc.RelayCryptoError, match="seq 0"):
        header(seq=0)


def test_hop_cost_and_split_link_key() -> None:
    assert rc.hop_key_bytes(32) == 64
    material = os.urandom(rc.hop_key_bytes(32))
    pad, mac = rc.split_link_key(material, 32)
    assert pad + mac == material and len(mac) == rc.MAC_KEY_BYTES
    with pytest.raises(rc.RelayCryptoError, match="need 16 \\(pad\\) \\+ 32"):
        rc.split_link_key(material, 16)


def test_mac_keys_are_one_time_distinct_keys_give_distinct_tags() -> None:
    h, key, pad = header(), os.urandom(32), os.urandom(32)
    tags = {rc.seal(h, key, pad, os.urandom(32))[1] for _ in range(50)}
    assert len(tags) == 50


@settings(max_examples=50, deadline=None)
@given(st.binary(min_size=1, max_size=64))
def test_roundtrip_any_length(key: bytes) -> None:
    pad, mac = os.urandom(len(key)), os.urandom(32)
    h = header(size_bits=8 * len(key))
    ct, tag = rc.seal(h, key, pad, mac)
    assert rc.open_sealed(h, ct, tag, pad, mac) == key


def test_seq_counter_strictly_increasing_and_survives_restart() -> None:
    c = rc.SeqCounter()
    seqs = [c.next("B", now=1000.0) for _ in range(5)]
    assert seqs == sorted(set(seqs)) and seqs[0] == 1_000_000_000
    other = c.next("C", now=1000.0)
    assert other == 1_000_000_000  # independent per hop
    restarted = rc.SeqCounter()
    assert restarted.next("B", now=1000.1) > seqs[-1]


def test_replay_window_accepts_each_number_once() -> None:
    w = rc.ReplayWindow(size=8)
    w.accept("B", 10)
    with pytest.raises(rc.ReplayError, match="already seen"):
        w.accept("B", 10)
    w.accept("B", 8)  # out of order but inside the window
    with pytest.raises(rc.ReplayError, match="already seen"):
        w.check("B", 8)
    w.accept("B", 20)
    with pytest.raises(rc.ReplayError, match="older than the replay window"):
        w.accept("B", 12)
    w.accept("B", 13)
    w.accept("C", 10)  # another hop has its own window
    with pytest.raises(rc.ReplayError, match="not positive"):
        w.check("B", 0)


def test_replay_window_check_does_not_record() -> None:
    w = rc.ReplayWindow()
    w.check("B", 5)
    w.check("B", 5)
    w.accept("B", 5)
    with pytest.raises(rc.ReplayError):
        w.check("B", 5)


def test_replay_window_large_jump_resets_bitmap() -> None:
    w = rc.ReplayWindow(size=4)
    for s in (1, 2, 3):
        w.accept("B", s)
    w.accept("B", 1000)
    w.accept("B", 999)
    with pytest.raises(rc.ReplayError):
        w.accept("B", 999)


def test_header_is_frozen() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        header().seq = 9  # type: ignore[misc]


def test_xor_is_bytewise_on_both_sides_of_the_numpy_threshold():
    for n in (0, 1, 32, rc._XOR_NUMPY_FROM - 1, rc._XOR_NUMPY_FROM, 128 * 1024 + 3):
        a, b = os.urandom(n), os.urandom(n)
        assert rc.xor(a, b) == bytes(x ^ y for x, y in zip(a, b)), n
    with pytest.raises(ValueError, match="unequal lengths 3 and 4"):
        rc.xor(b"abc", b"abcd")


def test_an_agent_starts_without_importing_numpy():
    """numpy is imported at the first bulk XOR, not when the agent loads (its start-up CPU
    is what a 150-node Mininet bring-up waits for)."""
    import subprocess
    import sys
    out = subprocess.run([sys.executable, "-c", "import sys, kms_agents.agent; print('numpy' in sys.modules)"],
                         capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
