"""Admission of path requests: per SAE-pair token-bucket rate limits, and key reservations on grant."""
from __future__ import annotations

from typing import Iterable

from quseccontroller.actions import PathRequest
from quseccontroller.grants import ActivePath
from quseccontroller.policy import Decision
from quseccontroller.state import NetworkState


# A grant's first relay takes its key within this long (a relay attempt's budget is 0.6 s plus
# 50 ms a hop; a failed one has taken what it took): a report received later shows the key spent.
# Reports come every report interval (2 s), so a reservation lasts about one interval instead of
# reservation_s: on links that store a few seconds of key, counting the same key twice for 5 s
# makes them look empty, and requests are refused (no_key) or sent round longer paths.
SPENT_S = 1.0


class Admission:
    """Rate-limit buckets by (source, destination) SAE pair, and the life of reservations."""

    def __init__(self, reservation_s: float = 5.0, spent_s: float = SPENT_S) -> None:
        # A grant reserves its key on every hop so that concurrent requests cannot count the same
        # link key twice. Once the relay has happened, the agents' reports show the key gone, so a
        # hop's reservation ends with the first report of its initiating end made spent_s or more
        # after the grant, and every hop's after reservation_s (or at release) at the latest.
        self.reservation_s = float(reservation_s)
        self.spent_s = float(spent_s)
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
        """Reservations the agents' reports carry now: a hop's once its initiating end reported
        the link ``spent_s`` or more after the grant, all of a path's after ``reservation_s``."""
        for ap in paths:
            if not ap.reserved:
                continue
            if now - ap.granted_at >= self.reservation_s:
                unreserve(st, ap)
                continue
            since = ap.granted_at + self.spent_s
            left = []
            for lid, a, bits in ap.reserved:
                rec = st.links.get(lid)
                if rec is not None and rec.reported.get(a, since - 1.0) >= since:
                    st.unreserve(lid, a, bits)
                else:
                    left.append((lid, a, bits))
            ap.reserved = left


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
