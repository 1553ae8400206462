"""A relay node's table of live relay authorisations pushed by QuSeC (path, prev/next hop, expiry).

A node forwards (or accepts, or originates) a relay message only under a live
authorisation for that path id whose previous hop is the authenticated sender and
whose ends, share, SAEs and security level match the message. A message for a path
this node holds no authorisation for is refused at once: QuSeC answers a path request
only after every node on the path acknowledged its authorisation, so none is in flight
when the first message arrives. Pure apart from a lock.
"""
from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any


class NotAuthorised(Exception):
    """No live authorisation covers this relay message; ``reason`` says which check failed,
    ``check`` names it in a word (the refusal's metric label)."""

    def __init__(self, path_id: str, reason: str, check: str = "unknown_path") -> None:
        super().__init__(f"path {path_id}: not authorised: {reason}")
        self.path_id = path_id
        self.reason = reason
        self.check = check


def granted_levels(level: str) -> tuple[str, ...]:
    """The relay levels a path granted at ``level`` carries: that level, and hybrid on a qkd
    grant (an SAE may ask for hybrid; it is strictly stronger: HKDF over the QKD key and an
    ML-KEM secret). Never pqc unless granted."""
    level = level or "qkd"
    return ("qkd", "hybrid") if level == "qkd" else (level,)


@dataclass(frozen=True)
class Authorisation:
    """One node's permission to take part in one relay path (pushed by QuSeC; shares count from 1)."""

    path_id: str
    prev_hop: str          # "" at the source
    next_hop: str          # "" at the destination
    prev_hop_addr: str
    next_hop_addr: str
    expires_at: float      # unix seconds
    src_node: str
    dst_node: str
    share_index: int = 1
    share_count: int = 1
    src_sae: str = ""              # what QuSeC granted the path for: the master SAE,
    dst_saes: tuple[str, ...] = ()  # the slave SAEs at the destination
    security_level: str = ""       # and the level ("" = qkd)
    # at the exit KME of an inter-domain segment only (kms_agents.relay.plan.Handoff): the key
    # is handed to the next domain here, never stored for the (foreign) slave SAEs
    handoff: Any = None
    foreign_src_sae: bool = False  # src_sae is another domain's (its key came in at src_node)


class AuthTable:
    """Live authorisations of this node, by path id."""

    def __init__(self) -> None:
        self._auths: dict[str, Authorisation] = {}
        self._revoked: dict[str, str] = {}  # path id -> reason, so a late check names it
        self._grants: dict[str, int] = {}   # path id -> how many grants it had (a reroute re-grants)
        self._lock = threading.Lock()

    def grant(self, auth: Authorisation) -> None:
        """Add or replace (reroute) the authorisation for ``auth.path_id``."""
        with self._lock:
            self._auths[auth.path_id] = auth
            self._revoked.pop(auth.path_id, None)
            self._grants[auth.path_id] = self._grants.get(auth.path_id, 0) + 1

    def grants(self, path_id: str) -> int:
        """How many times ``path_id`` was granted here: it grows when QuSeC moves the path."""
        with self._lock:
            return self._grants.get(path_id, 0)

    def revoke(self, path_id: str, reason: str = "revoked") -> bool:
        """Remove a path's authorisation; True if there was one."""
        with self._lock:
            self._revoked[path_id] = reason
            if len(self._revoked) > 4096:  # bounded memory of past revocations
                self._revoked.pop(next(iter(self._revoked)))
            self._grants.pop(path_id, None)
            return self._auths.pop(path_id, None) is not None

    def clear(self) -> None:
        """Forget every authorisation (the controller connection was lost and re-established)."""
        with self._lock:
            self._auths.clear()
            self._grants.clear()

    def expire(self, now: float, grace: float = 0.0) -> list[str]:
        """Forget authorisations expired more than ``grace`` s ago; returns their path ids.

        ``check`` refuses an expired authorisation at once; the grace only keeps its
        hops known so that a late Void can still reach the destination.
        """
        with self._lock:
            gone = [p for p, a in self._auths.items() if a.expires_at + grace <= now]
            for path_id in gone:
                del self._auths[path_id]
                self._grants.pop(path_id, None)
            return gone

    def get(self, path_id: str) -> Authorisation | None:
        """The authorisation for ``path_id`` (expired or not), or None."""
        with self._lock:
            return self._auths.get(path_id)

    def __len__(self) -> int:
        with self._lock:
            return len(self._auths)

    def check(self, path_id: str, *, from_node: str, src_node: str, dst_node: str, now: float,
              share_index: int = 1, share_count: int = 1, src_sae: str | None = None,
              dst_saes: Sequence[str] = (), security_level: str = "") -> Authorisation:
        """The live authorisation for a message on ``path_id`` coming from ``from_node`` (and,
        given ``src_sae``, granted for ``src_sae`` -> ``dst_saes`` at ``security_level``:
        :func:`check_granted_for`).

        ``from_node`` is "" when this node originates the message. Raises NotAuthorised
        naming the first check that failed, at once (nothing waits here).
        """
        with self._lock:
            auth = self._auths.get(path_id)
            reason = self._revoked.get(path_id)
        if auth is None:
            if reason:
                raise NotAuthorised(path_id, f"revoked ({reason})", "revoked")
            raise NotAuthorised(path_id, "no authorisation from QuSeC for this path", "unknown_path")
        if auth.expires_at <= now:
            raise NotAuthorised(path_id, f"authorisation expired {now - auth.expires_at:.1f} s ago", "expired")
        if auth.prev_hop != from_node:
            raise NotAuthorised(path_id, f"previous hop is {auth.prev_hop or '(none: source)'}, "
                                         f"message came from {from_node or '(this node)'}", "wrong_hop")
        if (auth.src_node, auth.dst_node) != (src_node, dst_node):
            raise NotAuthorised(path_id, f"authorised for {auth.src_node}->{auth.dst_node}, "
                                         f"message is {src_node}->{dst_node}", "wrong_nodes")
        if (auth.share_index, auth.share_count) != (share_index, share_count):
            raise NotAuthorised(path_id, f"authorised for share {auth.share_index}/"
                                         f"{auth.share_count}, message carries "
                                         f"{share_index}/{share_count}", "wrong_share")
        if src_sae is not None:
            check_granted_for(auth, src_sae, dst_saes, security_level)
        return auth


def check_granted_for(auth: Authorisation, src_sae: str, dst_saes: Sequence[str], security_level: str) -> None:
    """Raise NotAuthorised unless ``auth`` was granted for ``src_sae`` -> ``dst_saes`` (every one,
    no other) at ``security_level`` (:func:`granted_levels`)."""
    if (auth.src_sae, sorted(set(auth.dst_saes))) != (src_sae, sorted(set(dst_saes))) \
            or len(set(dst_saes)) != len(dst_saes):
        raise NotAuthorised(auth.path_id, f"authorised for SAE {auth.src_sae or '(none)'} -> "
                                          f"{','.join(auth.dst_saes) or '(none)'}, message is {src_sae} -> "
                                          f"{','.join(dst_saes)}", "wrong_saes")
    if (security_level or "qkd") not in granted_levels(auth.security_level):
        raise NotAuthorised(auth.path_id, f"authorised for security level {auth.security_level or 'qkd'}, "
                                          f"message is {security_level or 'qkd'}", "wrong_level")
