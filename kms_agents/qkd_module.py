"""Simulated QKD module: identical key at both ends of a link, released at the link rate.

Stand-in for a QKD pair (quantum channel and link KMS). Both ends hold the same per-link
secret (created at bring-up) and the same epoch. Each direction ``X>Y`` (the key that
node X hands out when it initiates toward Y) is its own disjoint keystream,
AES-256-CTR keyed with ``HMAC-SHA256(secret, "ctr|X>Y")``, cut into 32-byte blocks
(block ``i`` = keystream bytes ``32 i .. 32 i + 31``), so both ends can initiate at
once. One ``take`` hands out a contiguous run of blocks under one key ID per run
(up to ``MAX_RANGE_BLOCKS`` blocks): a UUID holding the run's first index and length
and an HMAC tag over both, so the far end can check and locate it without any
exchange, and nobody without the secret can forge or stretch one. Blocks are released
at ``rate_bps / 2`` per direction since the epoch; a finite buffer (``capacity_bytes``
per direction) drops the oldest unused blocks, as a real module's key store would.
The persistent take cursor and the claimed runs live in a :class:`LinkStateStore` (the
agent's SQLite key store; one row per take or claim), so a block is never handed out
twice, even across restarts.
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

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

BLOCK_BYTES = 32                 # one key block = 256 bits
DEFAULT_CAPACITY_BYTES = 1 << 20  # per direction
_COUNT_BITS = 22                 # run length field of a key ID
_COUNT_MASK = (1 << _COUNT_BITS) - 1
MAX_RANGE_BLOCKS = _COUNT_MASK   # longest run one key ID names (128 MiB)
_START_BITS = 62 - _COUNT_BITS   # first index field (2^40 blocks = 32 TiB per direction)


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

    def claim_link_ranges(self, link_id: str, direction: str, fingerprint: str,
                          ranges: list[tuple[int, int]], floor: int) -> bool: ...

    def link_claimed_top(self, link_id: str, direction: str, fingerprint: str) -> int: ...


def direction(initiator: str, responder: str) -> str:
    """Label of the sub-stream used when ``initiator`` hands out key toward ``responder``."""
    return f"{initiator}>{responder}"


def fingerprint(secret: bytes) -> str:
    """Short public fingerprint of a link secret (state is reset when the secret changes)."""
    return hashlib.sha256(b"qusec-link-fp" + secret).hexdigest()[:16]


def _stream_key(secret: bytes, direction_label: str) -> bytes:
    return hmac.new(secret, b"ctr|" + direction_label.encode(), hashlib.sha256).digest()


def range_key(secret: bytes, direction_label: str, start: int, count: int) -> bytes:
    """Key material of blocks ``start .. start + count - 1`` of one direction's keystream."""
    return _range_key(_stream_key(secret, direction_label), start, count)


def _range_key(stream_key: bytes, start: int, count: int) -> bytes:
    # 32-byte block i = AES-CTR counter blocks 2i and 2i + 1
    enc = Cipher(algorithms.AES(stream_key), modes.CTR((2 * start).to_bytes(16, "big"))).encryptor()
    return enc.update(bytes(count * BLOCK_BYTES)) + enc.finalize()


def block_key(secret: bytes, direction_label: str, index: int) -> bytes:
    """Key material of block ``index`` of one direction's sub-stream."""
    return range_key(secret, direction_label, index, 1)


def range_id(secret: bytes, direction_label: str, start: int, count: int) -> str:
    """Key ID of the run of ``count`` blocks from ``start``: an HMAC tag, the start and count, as a UUID."""
    if not 0 <= start < (1 << _START_BITS) or not 1 <= count <= _COUNT_MASK:
        raise ValueError(f"block run {start}+{count} out of range")
    msg = b"id|" + direction_label.encode() + b"|" + start.to_bytes(8, "big") + count.to_bytes(4, "big")
    tag = hmac.new(secret, msg, hashlib.sha256).digest()[:8]
    raw = bytearray(tag + ((start << _COUNT_BITS) | count).to_bytes(8, "big"))
    raw[6] = (raw[6] & 0x0F) | 0x40          # version 4 nibble
    raw[8] = (raw[8] & 0x3F) | 0x80          # RFC 4122 variant
    return str(uuid.UUID(bytes=bytes(raw)))


def parse_range_id(secret: bytes, direction_label: str, key_id: str) -> tuple[int, int] | None:
    """(start, count) a key ID names, or None if it was not made with this secret/direction."""
    try:
        canonical = str(uuid.UUID(key_id))
    except (ValueError, AttributeError, TypeError):
        return None
    field_ = int.from_bytes(uuid.UUID(canonical).bytes[8:], "big") & ((1 << 62) - 1)
    start, count = field_ >> _COUNT_BITS, field_ & _COUNT_MASK
    if count == 0:
        return None
    ok = hmac.compare_digest(range_id(secret, direction_label, start, count), canonical)
    return (start, count) if ok else None


def block_id(secret: bytes, direction_label: str, index: int) -> str:
    """Key ID of the single block ``index``."""
    return range_id(secret, direction_label, index, 1)


def block_index(secret: bytes, direction_label: str, key_id: str) -> int | None:
    """The first block index a key ID names, or None if it was not made with this secret/direction."""
    got = parse_range_id(secret, direction_label, key_id)
    return None if got is None else got[0]


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
        self._claimed_top: int | None = None    # one past the highest block claimed here
        self._out_key = _stream_key(secret, self._out)
        self._in_key = _stream_key(secret, self._in)

    # -- KeySource interface -------------------------------------------------
    def capacity_bytes(self) -> int:
        """Most key this end can hold ready for its own direction."""
        return self._capacity * BLOCK_BYTES

    def available_bytes(self) -> int:
        """Link key ready to be taken now at this end."""
        with self._lock:
            start, released = self._window()
            return (released - start) * BLOCK_BYTES

    def peer_available_bytes(self) -> int:
        """Key released toward this end and not claimed here yet (at most one buffer): what the
        peer can have for hops it initiates, as this end sees it (QuSeC checks the peer's
        report against it)."""
        released = released_blocks(self._clock(), self.epoch, self.rate_bps)
        if self._claimed_top is None:
            self._claimed_top = self._store.link_claimed_top(self.link_id, self._in, self._fp)
        return max(0, min(self._capacity, released - self._claimed_top)) * BLOCK_BYTES

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
        runs = [(i, min(MAX_RANGE_BLOCKS, start + blocks - i))
                 for i in range(start, start + blocks, MAX_RANGE_BLOCKS)]
        ids = [range_id(self._secret, self._out, i, c) for i, c in runs]
        return LinkKey(key_ids=ids, material=_range_key(self._out_key, start, blocks)[:n_bytes])

    def claim(self, key_ids: Iterable[str], n_bytes: int | None = None) -> bytes:
        """Material of link key the peer took (by its IDs), in order; each block only once."""
        ids = list(key_ids)
        if not ids:
            raise UnknownKeyIds(f"link {self.link_id}: no key IDs given")
        runs = []
        for kid in ids:
            run = parse_range_id(self._secret, self._in, kid)
            if run is None:
                raise UnknownKeyIds(f"link {self.link_id}: key ID {kid} was not issued on this link")
            runs.append(run)
        ordered = sorted(runs)
        if any(a + n > b for (a, n), (b, _) in zip(ordered, ordered[1:])):
            raise UnknownKeyIds(f"link {self.link_id}: duplicate or overlapping key IDs")
        floor = max(0, max(s for s, _ in runs) - 4 * self._capacity)
        # no module lock here: the store's transaction is atomic, and the caller may hold it
        # (claim and storing the end-to-end key in one transaction)
        if not self._store.claim_link_ranges(self.link_id, self._in, self._fp, runs, floor):
            raise UnknownKeyIds(f"link {self.link_id}: key IDs already claimed or expired")
        self._claimed_top = max(self._claimed_top or 0, max(a + n for a, n in runs))
        if n_bytes is not None:   # derive only what is asked for
            out, need = [], n_bytes
            for s_, n in runs:
                if need <= 0:
                    break
                take = min(n, math.ceil(need / BLOCK_BYTES))
                out.append(_range_key(self._in_key, s_, take))
                need -= take * BLOCK_BYTES
            return b"".join(out)[:n_bytes]
        return b"".join(_range_key(self._in_key, s_, n) for s_, n in runs)

    def close(self) -> None:
        pass

    # -- internals -------------------------------------------------------------
    def _window(self) -> tuple[int, int]:
        """(first takeable index, released count); blocks beyond the buffer were dropped."""
        released = released_blocks(self._clock(), self.epoch, self.rate_bps)
        if self._cursor is None:   # this object is the only writer of its direction's cursor
            self._cursor = self._store.link_cursor(self.link_id, self._out, self._fp)
        return max(self._cursor, released - self._capacity), max(released, self._cursor)
