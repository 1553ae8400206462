"""Admission of path requests: per SAE-pair token-bucket rate limits, and key reservations on grant."""
from __future__ import annotations

from typing import Iterable

from quseccontroller.actions import PathRequest
from quseccontroller.grants import ActivePath
from quseccontroller.policy import Decision
from quseccontroller.state import NetworkState


class Admission:
    """Rate-limit buckets by (source, destination) SAE pair, and the life of reservations."""

    def __init__(self, reservation_s: float = 5.0) -> None:
        # A grant reserves its key on every hop so that concurrent requests cannot count the same
        # link key twice. Once the relay has happened, the agents' reports show the key gone, so the
        # reservation is dropped after reservation_s (or at release) instead of counting it twice.
        self.reservation_s = float(reservation_s)
        self.buckets: dict[tuple[str, str], tuple[float, float]] = {}   # pair -> (tokens, when)

    def within_rate(self, req: PathRequest, d: Decision, now: float) -> bool:
        """Whether the request fits the rule's rate limit now (nothing taken)."""
        return self._tokens(req, d, now, commit=False)

    def take(self, req: PathRequest, d: Decision, now: float) -> None:
        """Charge a granted request to its pair's bucket (may go below zero: never refused here)."""
        self._tokens(req, d, now, commit=True)

    def _tokens(self, req: PathRequest, d: Decision, now: float, commit: bool) -> bool:
        if not d.rate_limit_bps:
            return True
        key = (req.src_sae or req.src_node, req.dst_sae or req.dst_node)
        depth = d.rate_limit_bps * d.rate_burst_s
        tokens, last = self.buckets.get(key, (depth, now))
        tokens = min(depth, tokens + (now - last) * d.rate_limit_bps)
        ok = tokens >= req.bits
        if commit:
            self.buckets[key] = (tokens - req.bits, now)
        return ok

    def drop_old_reservations(self, st: NetworkState, paths: Iterable[ActivePath], now: float) -> None:
        """Reservations older than ``reservation_s``: the agents' reports carry the truth now."""
        for ap in paths:
            if ap.reserved and now - ap.granted_at >= self.reservation_s:
                unreserve(st, ap)


def reserve(st: NetworkState, ap: ActivePath) -> None:
    """Reserve the request's bits on every hop of the path, from the hop's initiating end."""
    bits = ap.request.bits
    for a, lid in zip(ap.nodes, ap.links):
        st.reserve(lid, a, bits)
        ap.reserved.append((lid, a, bits))


def unreserve(st: NetworkState, ap: ActivePath) -> None:
    """Give back whatever the path still holds reserved."""
    for lid, a, bits in ap.reserved:
        st.unreserve(lid, a, bits)
    ap.reserved = []
