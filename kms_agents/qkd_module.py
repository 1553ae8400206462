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

Faults (:class:`LinkFault`, set by the agent's management API, ``kms_agents.manage``): an end
can be set ``down`` (no quantum signal: no key is produced), ``up`` again, or given a QBER.
At or above :data:`QBER_THRESHOLD` (11 %, the BB84 bound: one-way post-processing of BB84
distils no secret key beyond it, 1 - 2 h(Q) <= 0) the module raises an alarm and produces no
key, as a real module aborts key distillation; below it the secret key rate falls per the
asymptotic BB84 rate, ``R0 (1 - 2 h(Q)) / (1 - 2 h(Q0))`` (:func:`bb84_rate`; ``Q0`` =
:data:`NOMINAL_QBER`, the QBER at which the configured ``rate_bps`` holds). While an alarm
stands, the end offers no key (``available_bytes`` 0, ``take`` raises :class:`LinkAlarm`);
key the peer took before the fault can still be claimed. A fault lives in memory: an agent
restarted comes back ``up``. Production is counted piecewise (the blocks made up to the last
change plus those made at the present rate since), so a fault changes only what comes after.
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
from typing import ContextManager, Protocol

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

BLOCK_BYTES = 32                 # one key block = 256 bits
DEFAULT_CAPACITY_BYTES = 1 << 20  # per direction
_COUNT_BITS = 22                 # run length field of a key ID
_COUNT_MASK = (1 << _COUNT_BITS) - 1
MAX_RANGE_BLOCKS = _COUNT_MASK   # longest run one key ID names (128 MiB)
_START_BITS = 62 - _COUNT_BITS   # first index field (2^40 blocks = 32 TiB per direction)

QBER_THRESHOLD = 0.11   # BB84 with one-way post-processing: no secret key at or above (1 - 2 h(Q) <= 0)
NOMINAL_QBER = 0.0      # the QBER at which a link's configured rate_bps holds
MAX_QBER = 0.5          # a QBER above 0.5 is not an error rate (flip every bit and it is below)
FAULT_STATES = ("up", "down", "qber")
ALARM_DOWN = "link_down"
ALARM_QBER = "qber_above_threshold"


class KeySourceError(Exception):
    """A link key source could not serve a request."""


class InsufficientKey(KeySourceError):
    """Not enough link key is available right now."""


class UnknownKeyIds(KeySourceError):
    """Key IDs that this link end never issued, already claimed, or expired."""


class KeySourceUnavailable(KeySourceError):
    """The key source (e.g. an external KMS) cannot be reached."""


class LinkAlarm(InsufficientKey):
    """The link raised an alarm (down, or QBER above the threshold): it produces no key."""


def binary_entropy(p: float) -> float:
    """h(p) = -p log2 p - (1 - p) log2 (1 - p)."""
    if p <= 0.0 or p >= 1.0:
        return 0.0
    return -p * math.log2(p) - (1 - p) * math.log2(1 - p)


def bb84_rate(rate0: float, qber: float, qber0: float = NOMINAL_QBER) -> float:
    """Secret key rate at ``qber`` of a link making ``rate0`` at ``qber0``: the asymptotic BB84
    rate ``rate0 (1 - 2 h(Q)) / (1 - 2 h(Q0))``, 0 at or above :data:`QBER_THRESHOLD`."""
    if not 0.0 <= qber <= MAX_QBER:
        raise ValueError(f"QBER must be within 0..{MAX_QBER}, got {qber}")
    if not 0.0 <= qber0 < QBER_THRESHOLD:
        raise ValueError(f"nominal QBER must be within 0..{QBER_THRESHOLD}, got {qber0}")
    if qber >= QBER_THRESHOLD:
        return 0.0
    return max(0.0, rate0 * (1 - 2 * binary_entropy(qber)) / (1 - 2 * binary_entropy(qber0)))


@dataclass(frozen=True)
class LinkFault:
    """A link end's fault state: ``up`` (no fault), ``down`` (no key), or ``qber`` with a QBER."""
    state: str = "up"
    qber: float = NOMINAL_QBER

    def __post_init__(self) -> None:
        if self.state not in FAULT_STATES:
            raise ValueError(f"fault state must be one of {', '.join(FAULT_STATES)}, got {self.state!r}")
        if not isinstance(self.qber, (int, float)) or not 0.0 <= self.qber <= MAX_QBER:
            raise ValueError(f"QBER must be within 0..{MAX_QBER}, got {self.qber!r}")

    @property
    def alarm(self) -> str:
        """Why the link makes no key ("" while it makes key)."""
        if self.state == "down":
            return ALARM_DOWN
        if self.state == "qber" and self.qber >= QBER_THRESHOLD:
            return ALARM_QBER
        return ""

    def rate(self, rate0: float) -> float:
        """The secret key rate of a link making ``rate0`` without this fault."""
        if self.state == "down":
            return 0.0
        if self.state == "qber":
            return bb84_rate(rate0, self.qber)
        return rate0


NO_FAULT = LinkFault()


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

    def deferred(self) -> ContextManager[None]:
        """Changes made inside are durable when the block ends (one wait for all of them)."""
        ...


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
        self.nominal_rate_bps = float(rate_bps)
        self.epoch = float(epoch)
        self._fault = NO_FAULT
        # production so far: blocks made up to _made_at, plus those made at _rate since
        self._made, self._made_at, self._rate = 0, self.epoch, self.nominal_rate_bps
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

    # -- faults ----------------------------------------------------------------
    @property
    def rate_bps(self) -> float:
        """The secret key rate now (the configured rate, less what the fault takes)."""
        return self._rate

    def fault(self) -> LinkFault:
        return self._fault

    def set_fault(self, fault: LinkFault) -> LinkFault:
        """Set this end's fault from now on; returns the previous one."""
        with self._lock:
            now = self._clock()
            self._made, self._made_at = self._released(now), max(now, self.epoch)
            self._rate = fault.rate(self.nominal_rate_bps)
            old, self._fault = self._fault, fault
        return old

    def _released(self, now: float) -> int:
        return self._made + released_blocks(now, self._made_at, self._rate)

    # -- KeySource interface -------------------------------------------------
    def capacity_bytes(self) -> int:
        """Most key this end can hold ready for its own direction."""
        return self._capacity * BLOCK_BYTES

    def available_bytes(self) -> int:
        """Link key ready to be taken now at this end (none while an alarm stands)."""
        if self._fault.alarm:
            return 0
        with self._lock:
            start, released = self._window()
            return (released - start) * BLOCK_BYTES

    def peer_available_bytes(self) -> int:
        """Key released toward this end and not claimed here yet (at most one buffer): what the
        peer can have for hops it initiates, as this end sees it (QuSeC checks the peer's
        report against it)."""
        released = self._released(self._clock())
        if self._claimed_top is None:
            self._claimed_top = self._store.link_claimed_top(self.link_id, self._in, self._fp)
        return max(0, min(self._capacity, released - self._claimed_top)) * BLOCK_BYTES

    def take(self, n_bytes: int) -> LinkKey:
        """Take ``n_bytes`` of fresh link key (whole blocks are consumed); durable before return."""
        if n_bytes <= 0:
            raise ValueError(f"n_bytes must be positive, got {n_bytes}")
        blocks = math.ceil(n_bytes / BLOCK_BYTES)
        if self._fault.alarm:
            raise LinkAlarm(f"link {self.link_id}: no key: alarm {self._fault.alarm}")
        # durable before return, but waited for outside the module lock: takes on this link made
        # meanwhile share the commit (inside the caller's deferred block, the block waits)
        with self._store.deferred(), self._lock:
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
        released = self._released(self._clock())
        if self._cursor is None:   # this object is the only writer of its direction's cursor
            self._cursor = self._store.link_cursor(self.link_id, self._out, self._fp)
        return max(self._cursor, released - self._capacity), max(released, self._cursor)
