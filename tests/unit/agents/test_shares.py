"""XOR secret sharing over node-disjoint paths."""
from __future__ import annotations

import os

import pytest
from hypothesis import given, settings, strategies as st

from kms_agents.relay import shares


@settings(max_examples=50, deadline=None)
@given(st.binary(min_size=1, max_size=64), st.integers(min_value=1, max_value=5))
def test_split_combine_roundtrip(key: bytes, k: int) -> None:
    parts = shares.split(key, k)
    assert len(parts) == k and all(len(p) == len(key) for p in parts)
    assert shares.combine(parts) == key
    assert shares.combine(list(reversed(parts))) == key


def test_single_share_is_the_key_and_missing_share_is_not() -> None:
    key = os.urandom(32)
    assert shares.split(key, 1) == [key]
    parts = shares.split(key, 3)
    assert shares.combine(parts[:2]) != key
    assert key not in parts


def test_shares_are_fresh_randomness() -> None:
    key = os.urandom(32)
    assert shares.split(key, 2)[0] != shares.split(key, 2)[0]


def test_bad_input() -> None:
    with pytest.raises(shares.ShareError, match="at least 1"):
        shares.split(b"k", 0)
    with pytest.raises(shares.ShareError, match="empty key"):
        shares.split(b"", 2)
    with pytest.raises(shares.ShareError, match="different lengths"):
        shares.combine([b"ab", b"abc"])
    with pytest.raises(shares.ShareError, match="no shares"):
        shares.combine([])


def test_node_disjoint_check() -> None:
    shares.check_node_disjoint([["A", "B", "C", "E"], ["A", "D", "E"], ["A", "E"]])
    with pytest.raises(shares.ShareError, match="node B is on paths 0 and 1"):
        shares.check_node_disjoint([["A", "B", "E"], ["A", "B", "C", "E"]])
    with pytest.raises(shares.ShareError, match="same two nodes"):
        shares.check_node_disjoint([["A", "B", "E"], ["A", "C", "F"]])
    with pytest.raises(shares.ShareError, match="direct link"):
        shares.check_node_disjoint([["A", "E"], ["A", "E"]])
    with pytest.raises(shares.ShareError, match="visits a node twice"):
        shares.check_node_disjoint([["A", "B", "A", "E"]])
