"""XOR secret sharing of an end-to-end key over k node-disjoint relay paths.

K = S1 xor ... xor Sk with S1..S(k-1) uniformly random: any k-1 shares are
independent of K, so a relay node on one path learns nothing about the key.
"""
from __future__ import annotations

import os
from collections.abc import Callable, Sequence

from kms_agents.relay.crypto import xor


class ShareError(ValueError):
    """Shares or paths that cannot be used (wrong count, lengths, overlapping paths)."""


def split(key: bytes, k: int, randbytes: Callable[[int], bytes] = os.urandom) -> list[bytes]:
    """Split ``key`` into ``k`` XOR shares (k = 1 gives the key itself)."""
    if k < 1:
        raise ShareError(f"share count must be at least 1, got {k}")
    if not key:
        raise ShareError("cannot split an empty key")
    shares = [randbytes(len(key)) for _ in range(k - 1)]
    last = key
    for share in shares:
        last = xor(last, share)
    return shares + [last]


def combine(shares: Sequence[bytes]) -> bytes:
    """XOR all shares back into the key; every share must be present and the same length."""
    if not shares:
        raise ShareError("no shares to combine")
    lengths = {len(s) for s in shares}
    if len(lengths) != 1:
        raise ShareError(f"shares have different lengths: {sorted(lengths)}")
    key = shares[0]
    for share in shares[1:]:
        key = xor(key, share)
    return key


def check_node_disjoint(paths: Sequence[Sequence[str]]) -> None:
    """Raise ShareError unless the paths share their ends and no intermediate node or direct edge."""
    if not paths:
        raise ShareError("no paths")
    ends = {(p[0], p[-1]) for p in paths if len(p) >= 2}
    if len(ends) != 1 or any(len(p) < 2 for p in paths):
        raise ShareError(f"paths do not all join the same two nodes: {[list(p) for p in paths]}")
    seen: dict[str, int] = {}
    direct = 0
    for i, path in enumerate(paths):
        if len(set(path)) != len(path):
            raise ShareError(f"path {i} visits a node twice: {list(path)}")
        if len(path) == 2:
            direct += 1
        for node in path[1:-1]:
            if node in seen:
                raise ShareError(f"node {node} is on paths {seen[node]} and {i}: not node-disjoint")
            seen[node] = i
    if direct > 1:
        raise ShareError("more than one path is the direct link: shares would share a hop")
