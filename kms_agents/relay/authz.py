"""A relay node's table of live relay authorisations pushed by QuSeC (path, prev/next hop, expiry).

A node forwards (or accepts, or originates) a relay message only under a live
authorisation for that path id whose previous hop is the authenticated sender
and whose ends and share match the message. Pure apart from a lock and a
condition variable (waiting briefly for an authorisation still in flight).
"""
from __future__ import annotations

import threading
from dataclasses import dataclass


class NotAuthorised(Exception):
    """No live authorisation covers this relay message; ``reason`` says which check failed."""

    def __init__(self, path_id: str, reason: str) -> None:
        super().__init__(f"path {path_id}: not authorised: {reason}")
        self.path_id = path_id
        self.reason = reason


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


class AuthTable:
    """Live authorisations of this node, by path id."""

    def __init__(self) -> None:
        self._auths: dict[str, Authorisation] = {}
        self._revoked: dict[str, str] = {}  # path id -> reason, so a late check names it
        self._cond = threading.Condition()

    def grant(self, auth: Authorisation) -> None:
        """Add or replace (reroute) the authorisation for ``auth.path_id``."""
        with self._cond:
            self._auths[auth.path_id] = auth
            self._revoked.pop(auth.path_id, None)
            self._cond.notify_all()

    def revoke(self, path_id: str, reason: str = "revoked") -> bool:
        """Remove a path's authorisation; True if there was one."""
        with self._cond:
            self._revoked[path_id] = reason
            if len(self._revoked) > 4096:  # bounded memory of past revocations
                self._revoked.pop(next(iter(self._revoked)))
            return self._auths.pop(path_id, None) is not None

    def clear(self) -> None:
        """Forget every authorisation (the controller connection was lost and re-established)."""
        with self._cond:
            self._auths.clear()

    def expire(self, now: float, grace: float = 0.0) -> list[str]:
        """Forget authorisations expired more than ``grace`` s ago; returns their path ids.

        ``check`` refuses an expired authorisation at once; the grace only keeps its
        hops known so that a late Void can still reach the destination.
        """
        with self._cond:
            gone = [p for p, a in self._auths.items() if a.expires_at + grace <= now]
            for path_id in gone:
                del self._auths[path_id]
            return gone

    def get(self, path_id: str) -> Authorisation | None:
        """The authorisation for ``path_id`` (expired or not), or None."""
        with self._cond:
            return self._auths.get(path_id)

    def __len__(self) -> int:
        with self._cond:
            return len(self._auths)

    def check(self, path_id: str, *, from_node: str, src_node: str, dst_node: str, now: float,
              share_index: int = 1, share_count: int = 1) -> Authorisation:
        """The live authorisation for a message on ``path_id`` coming from ``from_node``.

        ``from_node`` is "" when this node originates the message. Raises
        NotAuthorised naming the first check that failed.
        """
        with self._cond:
            auth = self._auths.get(path_id)
            reason = self._revoked.get(path_id)
        if auth is None:
            raise NotAuthorised(path_id, f"revoked ({reason})" if reason
                                else "no authorisation from QuSeC for this path")
        if auth.expires_at <= now:
            raise NotAuthorised(path_id, f"authorisation expired {now - auth.expires_at:.1f} s ago")
        if auth.prev_hop != from_node:
            raise NotAuthorised(path_id, f"previous hop is {auth.prev_hop or '(none: source)'}, "
                                         f"message came from {from_node or '(this node)'}")
        if (auth.src_node, auth.dst_node) != (src_node, dst_node):
            raise NotAuthorised(path_id, f"authorised for {auth.src_node}->{auth.dst_node}, "
                                         f"message is {src_node}->{dst_node}")
        if (auth.share_index, auth.share_count) != (share_index, share_count):
            raise NotAuthorised(path_id, f"authorised for share {auth.share_index}/"
                                         f"{auth.share_count}, message carries "
                                         f"{share_index}/{share_count}")
        return auth

    def wait_for(self, path_id: str, timeout: float) -> Authorisation | None:
        """Block up to ``timeout`` s until ``path_id`` is authorised (its push may trail the reply)."""
        with self._cond:
            self._cond.wait_for(lambda: path_id in self._auths or path_id in self._revoked,
                                timeout=timeout)
            return self._auths.get(path_id)
