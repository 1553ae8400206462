"""Per-hop relay crypto: one-time pad, one-time Poly1305 MAC, sequence numbers and replay window.

Every hop a->b of a relay burns fresh link key shared by a and b: ``len(key)``
bytes for the one-time pad and ``MAC_KEY_BYTES`` for a one-time Poly1305 key.
With a uniformly random, never reused Poly1305 key the tag is an
information-theoretic one-time MAC (forgery probability below 2**-100 for
messages of a few KiB), and the pad gives perfect secrecy, so a hop's security
rests only on the link key. The MAC covers a canonical encoding of every header
field plus the ciphertext, so no field can be altered or moved between messages.
Pure: no sockets, no clocks (time is passed in).
"""
from __future__ import annotations

import struct
import threading
from dataclasses import dataclass, field

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.poly1305 import Poly1305

VERSION = "qusec-relay/1"
MAC_KEY_BYTES = 32  # Poly1305 one-time key (r, s)
TAG_BYTES = 16
_DOMAIN = b"qusec-relay-mac/1\x00"


class RelayCryptoError(Exception):
    """A relay message failed a cryptographic or sequence check (reject it, void the key)."""


class RelayAuthError(RelayCryptoError):
    """The one-time MAC did not verify: the message was altered or forged."""


class ReplayError(RelayCryptoError):
    """The sequence number was already seen or is too old for the replay window."""


@dataclass(frozen=True)
class RelayHeader:
    """Every field of a relay message that the hop MAC authenticates (all but ciphertext and tag)."""

    path_id: str
    seq: int
    key_id: str
    from_node: str
    src_node: str
    dst_node: str
    share_index: int
    share_count: int
    size_bits: int
    security_level: str
    link_id: str
    pad_key_ids: tuple[str, ...]
    mac_key_ids: tuple[str, ...]
    initiator_sae_id: str = ""
    target_sae_ids: tuple[str, ...] = ()
    extensions: tuple[tuple[str, str], ...] = ()
    version: str = VERSION
    key_ids: tuple[str, ...] = ()   # bulk: the end-to-end keys carried (key_id names the batch)

    @property
    def payload_bytes(self) -> int:
        """Length of the ciphertext: one key, or every key of a bulk message."""
        return self.size_bits // 8 * max(1, len(self.key_ids))

    def __post_init__(self) -> None:
        problems = []
        if not (0 < self.seq < 2**64):
            problems.append(f"seq {self.seq} out of range 1..2**64-1")
        if self.size_bits <= 0 or self.size_bits % 8:
            problems.append(f"size_bits {self.size_bits} must be a positive multiple of 8")
        if not (1 <= self.share_index <= self.share_count):
            problems.append(f"share {self.share_index}/{self.share_count} invalid")
        for name in ("path_id", "key_id", "from_node", "src_node", "dst_node", "link_id"):
            if not getattr(self, name):
                problems.append(f"{name} is empty")
        if problems:
            raise RelayCryptoError("relay header: " + "; ".join(problems))


def _field(out: list[bytes], value: object) -> None:
    if isinstance(value, str):
        data = value.encode("utf-8")
        out.append(b"s" + struct.pack(">I", len(data)) + data)
    elif isinstance(value, int):
        out.append(b"i" + struct.pack(">Q", value))
    elif isinstance(value, tuple):
        out.append(b"l" + struct.pack(">I", len(value)))
        for item in value:
            _field(out, item)
    else:  # pragma: no cover - programming error
        raise TypeError(f"cannot encode {type(value).__name__}")


def canonical_header(header: RelayHeader) -> bytes:
    """Unambiguous, length-prefixed encoding of the header (fixed field order, sorted extensions)."""
    out: list[bytes] = [_DOMAIN]
    for value in (header.version, header.path_id, header.seq, header.key_id, header.from_node,
                  header.src_node, header.dst_node, header.share_index, header.share_count,
                  header.size_bits, header.security_level, header.link_id, header.pad_key_ids,
                  header.mac_key_ids, header.initiator_sae_id, header.target_sae_ids,
                  tuple(sorted(header.extensions)), header.key_ids):
        _field(out, value)
    return b"".join(out)


_XOR_NUMPY_FROM = 4096   # bytes: below it Python's integers are as fast, and numpy is not imported


def xor(a: bytes, b: bytes) -> bytes:
    """Byte-wise XOR of two equal-length strings. A bulk message's on numpy (128 KiB in
    microseconds, where Python's big integers took half a millisecond, twice per relay hop),
    imported at the first one: an agent that relays no bulk never pays numpy's import at start
    (70 ms of CPU per agent, 150 of them starting at once in a 150-node Mininet)."""
    if len(a) != len(b):
        raise ValueError(f"xor of unequal lengths {len(a)} and {len(b)}")
    if len(a) < _XOR_NUMPY_FROM:
        return (int.from_bytes(a, "big") ^ int.from_bytes(b, "big")).to_bytes(len(a), "big")
    import numpy as np
    return np.bitwise_xor(np.frombuffer(a, np.uint8), np.frombuffer(b, np.uint8)).tobytes()


def _check_keys(header: RelayHeader, pad: bytes, mac_key: bytes) -> None:
    if len(pad) != header.payload_bytes:
        raise RelayCryptoError(f"pad is {len(pad) * 8} bits, header says "
                               f"{header.payload_bytes * 8}")
    if len(mac_key) != MAC_KEY_BYTES:
        raise RelayCryptoError(f"MAC key is {len(mac_key)} bytes, need {MAC_KEY_BYTES}")


def seal(header: RelayHeader, key: bytes, pad: bytes, mac_key: bytes) -> tuple[bytes, bytes]:
    """Encrypt ``key`` with the one-time ``pad`` and tag header + ciphertext; returns (ciphertext, tag)."""
    _check_keys(header, pad, mac_key)
    if len(key) != len(pad):
        raise RelayCryptoError(f"key is {len(key)} bytes, pad is {len(pad)}")
    ciphertext = xor(key, pad)
    tag = Poly1305.generate_tag(mac_key, canonical_header(header) + ciphertext)
    return ciphertext, tag


def open_sealed(header: RelayHeader, ciphertext: bytes, tag: bytes, pad: bytes,
                mac_key: bytes) -> bytes:
    """Verify the tag (constant time) and return the key; raises RelayAuthError on any mismatch."""
    _check_keys(header, pad, mac_key)
    if len(ciphertext) != len(pad):
        raise RelayAuthError(f"ciphertext is {len(ciphertext)} bytes, header says {len(pad)}")
    try:
        Poly1305.verify_tag(mac_key, canonical_header(header) + ciphertext, tag)
    except InvalidSignature:
        raise RelayAuthError("one-time MAC does not verify (message altered or forged)") from None
    return xor(ciphertext, pad)


def hop_key_bytes(payload_bytes: int) -> int:
    """Link key one hop burns for a message of ``payload_bytes``: the pad plus one one-time MAC key."""
    return payload_bytes + MAC_KEY_BYTES


def split_link_key(material: bytes, key_bytes: int) -> tuple[bytes, bytes]:
    """Split fresh link key into (pad, MAC key): the first ``key_bytes`` pad, the next 32 key the MAC."""
    if len(material) != hop_key_bytes(key_bytes):
        raise RelayCryptoError(
            f"link key is {len(material)} bytes, need {key_bytes} (pad) + {MAC_KEY_BYTES} (MAC)")
    return material[:key_bytes], material[key_bytes:]


class SeqCounter:
    """Sender side: strictly increasing sequence numbers per hop, also across restarts.

    The next number is ``max(last + 1, now_us)``, so a restarted sender (whose
    counter is gone) starts above everything it sent before as long as the clock
    does not run backwards by more than the gap.
    """

    def __init__(self) -> None:
        self._last: dict[str, int] = {}
        self._lock = threading.Lock()

    def next(self, hop: str, now: float) -> int:
        """The next sequence number for ``hop`` (e.g. "B|link-id") at time ``now`` (unix seconds)."""
        with self._lock:
            seq = max(self._last.get(hop, 0) + 1, int(now * 1_000_000))
            self._last[hop] = seq
            return seq


@dataclass
class _Window:
    highest: int = 0
    seen: set[int] = field(default_factory=set)  # accepted numbers within the window


@dataclass
class ReplayWindow:
    """Receiver side: accept each sequence number once, within ``size`` of the highest seen.

    Concurrent relays on one hop may arrive slightly out of order, hence a
    window (as IPsec's anti-replay) rather than a bare "greater than last" rule.
    Senders number by microseconds (SeqCounter), so the default window is 60 s
    of reordering; anything older is refused. ``check`` does not record;
    ``accept`` records after the MAC verified, so a forged message cannot burn a
    legitimate number.
    """

    size: int = 60_000_000
    _hops: dict[str, _Window] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def check(self, hop: str, seq: int) -> None:
        """Raise ReplayError if ``seq`` on ``hop`` was seen or is below the window."""
        with self._lock:
            self._check(self._hops.get(hop, _Window()), hop, seq)

    def _check(self, win: _Window, hop: str, seq: int) -> None:
        if seq <= 0:
            raise ReplayError(f"hop {hop}: sequence number {seq} is not positive")
        if seq > win.highest:
            return
        if win.highest - seq >= self.size:
            raise ReplayError(f"hop {hop}: sequence number {seq} is older than the replay window "
                              f"(highest {win.highest}, window {self.size})")
        if seq in win.seen:
            raise ReplayError(f"hop {hop}: sequence number {seq} already seen (replay)")

    def accept(self, hop: str, seq: int) -> None:
        """Check and record ``seq`` atomically; raises ReplayError if it cannot be accepted."""
        with self._lock:
            win = self._hops.setdefault(hop, _Window())
            self._check(win, hop, seq)
            win.seen.add(seq)
            if seq > win.highest:
                win.highest = seq
                if len(win.seen) > 4096:  # forget what fell out of the window
                    floor = seq - self.size
                    win.seen = {s for s in win.seen if s > floor}
