"""Simulated QKD module: identical key blocks at both ends of a link, released at the link rate.

Stand-in for the quantum channel (DESIGN.md §6). Both ends hold the same per-link
secret (created at bring-up) and the same epoch. Block ``i`` of direction ``X>Y``
(the key that node X hands out when it initiates toward Y) is
``HMAC-SHA256(secret, "key" | X>Y | i)``; its key ID is a UUID made of an HMAC tag
over the same inputs and the index, so the far end can check and locate an ID
without any exchange, and nobody without the secret can forge one. Each direction
is its own disjoint sub-stream (half the link rate each), so both ends can initiate
at once. Blocks are released at ``rate_bps / 2`` per direction since the epoch; a
finite buffer (``capacity_bytes`` per direction) drops the oldest unused blocks, as a
real module's key store would. The persistent cursor and claimed-index set live in
a :class:`LinkStateStore` (the agent's SQLite key store), so a block is never handed
out twice, even across restarts.
"""
from __future__ import annotations

import hashlib
import hmac
import math
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Protocol

BLOCK_BYTES = 32                 # one key block = 256 bits
DEFAULT_CAPACITY_BYTES = 1 << 20  # per direction
_INDEX_MASK = (1 << 62) - 1


class KeySourceError(Exception):
    """A link key source could not serve a request."""


class InsufficientKey(KeySourceError):
    """Not enough link key is available right now."""


class UnknownKeyIds(KeySourceError):
    """Key IDs that this link end never issued, already claimed, or expired."""


class KeySourceUnavailable(KeySourceError):
    """The key source (e.g. an external KMS) cannot be reached."""


@dataclass(frozen=True)
class LinkKey:
    """Link key taken at the initiating end: the IDs the far end claims it by, and the bytes."""
    key_ids: list[str]
    material: bytes


class LinkStateStore(Protocol):
    """Durable per-link state (implemented by :class:`kms_agents.keystore.KeyStore`)."""

    def link_cursor(self, link_id: str, direction: str, fingerprint: str) -> int: ...

    def advance_link_cursor(self, link_id: str, direction: str, fingerprint: str,
                            old: int, new: int) -> None: ...

    def claim_link_indices(self, link_id: str, direction: str, fingerprint: str,
                           indices: list[int], floor: int) -> bool: ...


def direction(initiator: str, responder: str) -> str:
    """Label of the sub-stream used when ``initiator`` hands out key toward ``responder``."""
    return f"{initiator}>{responder}"


def fingerprint(secret: bytes) -> str:
    """Short public fingerprint of a link secret (state is reset when the secret changes)."""
    return hashlib.sha256(b"qusec-link-fp" + secret).hexdigest()[:16]


def block_key(secret: bytes, direction_label: str, index: int) -> bytes:
    """Key material of block ``index`` of one direction's sub-stream."""
    msg = b"key|" + direction_label.encode() + b"|" + index.to_bytes(8, "big")
    return hmac.new(secret, msg, hashlib.sha256).digest()


def block_id(secret: bytes, direction_label: str, index: int) -> str:
    """Key ID of block ``index``: an HMAC tag and the index, formatted as a UUID."""
    msg = b"id|" + direction_label.encode() + b"|" + index.to_bytes(8, "big")
    tag = hmac.new(secret, msg, hashlib.sha256).digest()[:8]
    raw = bytearray(tag + (index & _INDEX_MASK).to_bytes(8, "big"))
    raw[6] = (raw[6] & 0x0F) | 0x40          # version 4 nibble
    raw[8] = (raw[8] & 0x3F) | 0x80          # RFC 4122 variant
    return str(uuid.UUID(bytes=bytes(raw)))


def block_index(secret: bytes, direction_label: str, key_id: str) -> int | None:
    """The index a key ID names, or None if the ID was not made with this secret/direction."""
    try:
        raw = uuid.UUID(key_id).bytes
    except (ValueError, AttributeError, TypeError):
        return None
    index = int.from_bytes(raw[8:], "big") & _INDEX_MASK
    return index if hmac.compare_digest(block_id(secret, direction_label, index), str(uuid.UUID(key_id))) else None


def released_blocks(now: float, epoch: float, rate_bps: float) -> int:
    """Blocks one direction has produced since ``epoch`` (half the link rate per direction)."""
    if now <= epoch or rate_bps <= 0:
        return 0
    return int((now - epoch) * rate_bps / 2 / (BLOCK_BYTES * 8))


class SimulatedQkdModule:
    """One end of a simulated QKD link (the :class:`KeySource` for kind ``simulated``)."""

    kind = "simulated"

    def __init__(self, link_id: str, local_node: str, peer_node: str, secret: bytes,
                 rate_bps: float, epoch: float, store: LinkStateStore, *,
                 capacity_bytes: int = DEFAULT_CAPACITY_BYTES,
                 clock: Callable[[], float] = time.time) -> None:
        if len(secret) < 16:
            raise ValueError(f"link {link_id}: secret must be at least 16 bytes")
        if rate_bps <= 0:
            raise ValueError(f"link {link_id}: rate_bps must be positive, got {rate_bps}")
        self.link_id = link_id
        self.local_node = local_node
        self.peer_node = peer_node
        self.rate_bps = float(rate_bps)
        self.epoch = float(epoch)
        self._secret = secret
        self._fp = fingerprint(secret)
        self._out = direction(local_node, peer_node)   # what we hand out
        self._in = direction(peer_node, local_node)    # what the peer hands out, we claim
        self._store = store
        self._clock = clock
        self._capacity = max(1, capacity_bytes // BLOCK_BYTES)
        self._lock = threading.Lock()
        self._cursor: int | None = None

    # -- KeySource interface -------------------------------------------------
    def capacity_bytes(self) -> int:
        """Most key this end can hold ready for its own direction."""
        return self._capacity * BLOCK_BYTES

    def available_bytes(self) -> int:
        """Link key ready to be taken now at this end."""
        with self._lock:
            start, released = self._window()
            return (released - start) * BLOCK_BYTES

    def take(self, n_bytes: int) -> LinkKey:
        """Take ``n_bytes`` of fresh link key (whole blocks are consumed); durable before return."""
        if n_bytes <= 0:
            raise ValueError(f"n_bytes must be positive, got {n_bytes}")
        blocks = math.ceil(n_bytes / BLOCK_BYTES)
        with self._lock:
            start, released = self._window()
            if released - start < blocks:
                raise InsufficientKey(
                    f"link {self.link_id}: {n_bytes} bytes of link key requested, "
                    f"{(released - start) * BLOCK_BYTES} available")
            self._store.advance_link_cursor(self.link_id, self._out, self._fp, self._cursor, start + blocks)
            self._cursor = start + blocks
        ids = [block_id(self._secret, self._out, i) for i in range(start, start + blocks)]
        material = b"".join(block_key(self._secret, self._out, i) for i in range(start, start + blocks))
        return LinkKey(key_ids=ids, material=material[:n_bytes])

    def claim(self, key_ids: Iterable[str], n_bytes: int | None = None) -> bytes:
        """Material of link key the peer took (by its IDs), in order; each ID only once."""
        ids = list(key_ids)
        if not ids:
            raise UnknownKeyIds(f"link {self.link_id}: no key IDs given")
        indices = []
        for kid in ids:
            idx = block_index(self._secret, self._in, kid)
            if idx is None:
                raise UnknownKeyIds(f"link {self.link_id}: key ID {kid} was not issued on this link")
            indices.append(idx)
        if len(set(indices)) != len(indices):
            raise UnknownKeyIds(f"link {self.link_id}: duplicate key IDs")
        floor = max(0, max(indices) - 4 * self._capacity)
        # no module lock here: the store's transaction is atomic, and the caller may hold it
        # (claim and storing the end-to-end key in one transaction)
        if not self._store.claim_link_indices(self.link_id, self._in, self._fp, indices, floor):
            raise UnknownKeyIds(f"link {self.link_id}: key IDs already claimed or expired")
        material = b"".join(block_key(self._secret, self._in, i) for i in indices)
        return material if n_bytes is None else material[:n_bytes]

    def close(self) -> None:
        pass

    # -- internals -------------------------------------------------------------
    def _window(self) -> tuple[int, int]:
        """(first takeable index, released count); blocks beyond the buffer were dropped."""
        released = released_blocks(self._clock(), self.epoch, self.rate_bps)
        if self._cursor is None:   # this object is the only writer of its direction's cursor
            self._cursor = self._store.link_cursor(self.link_id, self._out, self._fp)
        return max(self._cursor, released - self._capacity), max(released, self._cursor)
