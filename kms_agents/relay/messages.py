"""The relay's working types: why a relay failed, hop messages and acks, keys handed back."""
from __future__ import annotations

import enum
from dataclasses import dataclass, field

from kms_agents.relay.crypto import VERSION, RelayHeader

EXT_PATH = "qusec_path"      # relay message extension: the path's node ids, comma-separated
EXT_LEVEL = "qusec_security_level"   # relay message extension: the key's level when weaker than its
                                     # hops' (pqc: it came in over a post-quantum link)
EXT_DOMAINS = "qusec_domains"   # relay ack extension (JSON): the domains a handed-off key went on through


class Reason(enum.Enum):
    """The conditions a relay failure is told apart by.

    The value is the status name the relay reports: the gRPC status at its edges
    (:mod:`kms_agents.relay.wire` maps both ways) and ``qusec_relay_status`` in the
    ETSI 014 error an SAE gets.
    """

    INVALID = "INVALID_ARGUMENT"        # a malformed or inconsistent message or request
    DENIED = "PERMISSION_DENIED"        # no live authorisation, wrong sender, refused by policy
    DUPLICATE = "ALREADY_EXISTS"        # replayed sequence number, share or key already here
    NOT_AUTHENTIC = "UNAUTHENTICATED"   # one-time MAC, link key IDs or a hybrid blob rejected
    UNMET = "FAILED_PRECONDITION"       # no link, address or identity for it; level not allowed
    NO_KEY = "RESOURCE_EXHAUSTED"       # not enough link key (QuSeC: no_key, rate_limit)
    UNREACHABLE = "UNAVAILABLE"         # next hop, link KMS or QuSeC unreachable; no path
    TIMEOUT = "DEADLINE_EXCEEDED"       # a hop (and the chain behind it) or QuSeC too slow
    UNKNOWN_NODE = "NOT_FOUND"          # QuSeC does not know a node of the request
    UNSUPPORTED = "UNIMPLEMENTED"       # the peer does not serve the relay
    INTERNAL = "INTERNAL"               # a bug, or paths from QuSeC that cannot be used
    FAILED = "UNKNOWN"                  # any other answer of a peer


class RelayFailure(Exception):
    """A relay could not be completed; ``reason`` says why, ``message`` names node and cause.

    ``check`` names, in a word, the check of this node that refused the message (the
    refusal's log line and metric label); "" for a failure passed on from elsewhere.
    """

    def __init__(self, reason: Reason, message: str, check: str = "") -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message
        self.check = check


class OptionUnmet(RelayFailure):
    """A mandatory request option (e.g. ``qusec_max_hops``) cannot be met on the granted path."""

    def __init__(self, message: str, detail: dict) -> None:
        super().__init__(Reason.UNMET, message)
        self.detail = detail


@dataclass(frozen=True)
class RelayMessage:
    """One hop of a relay: the header the one-time MAC covers, the ciphertext and the tag.

    A ``pqc`` message carries neither ciphertext nor tag (no QKD key crosses the hop).
    """

    header: RelayHeader
    ciphertext: bytes = b""
    tag: bytes = b""


@dataclass(frozen=True)
class VoidMessage:
    """Forget ``key_id`` (a bulk batch: every one of ``key_ids``) along a path."""

    path_id: str
    key_id: str
    reason: str
    from_node: str
    key_ids: tuple[str, ...] = ()
    version: str = VERSION


class AckStatus(enum.Enum):
    """What a hop answers (relay.proto RelayStatus)."""

    UNSPECIFIED = 0
    RELAYED = 1
    VOIDED = 2
    FAILED = 3
    KEY_NOT_PRESENT = 4


@dataclass
class Ack:
    """A hop's answer; the destination's travels back along the chain."""

    status: AckStatus
    key_id: str = ""
    message: str = ""
    extensions: dict[str, str] = field(default_factory=dict)


@dataclass
class RelayedKey:
    """An end-to-end key the source hands back to the master SAE."""

    key_id: str
    key: bytes
    meta: dict
