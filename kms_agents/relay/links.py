"""This node's QKD link ends as the relay sees them: link states for QuSeC, consumption, the link to use."""
from __future__ import annotations

import enum
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any


class LinkStatus(enum.Enum):
    ACTIVE = "active"     # producing key
    PASSIVE = "passive"   # up, no key ready
    OFF = "off"           # its link KMS cannot be reached, or the link raised an alarm


@dataclass(frozen=True)
class LinkState:
    """One link end as reported to QuSeC (Register and LinkReport)."""

    link_id: str
    peer_node: str
    skr_bps: float               # secret key rate of the link
    stored_bits: int             # key available at this end
    consumption_bps: float = 0.0
    status: LinkStatus = LinkStatus.ACTIVE
    kms_kind: str = ""           # "simulated", "etsi014", ...
    peer_stored_bits: int = 0    # key this end sees for hops the PEER initiates (0: not known)
    alarm: str = ""              # why the link makes no key (status OFF): "link_down", "qber_above_threshold"
    qber: float = 0.0            # the QBER the module measures (0: nominal or not known)


class ConsumptionMeter:
    """Recent link key consumption per link end, inferred from its key level over time.

    Between two looks, this end produced ``rate/2 x dt`` (its half of the link's key,
    unless the buffer was full) and its level moved by ``delta``; what is missing was
    consumed (relays, direct deliveries, key streams alike). Smoothed with a half-life.
    """

    def __init__(self, half_life_s: float = 10.0) -> None:
        self.half_life_s = half_life_s
        self._last: dict[str, tuple[float, int]] = {}
        self._bps: dict[str, float] = {}

    def update(self, link_id: str, now: float, stored_bits: int, rate_bps: float,
               capacity_bits: int | None = None) -> float:
        """Record a level; returns the smoothed consumption in bits/s."""
        last = self._last.get(link_id)
        self._last[link_id] = (now, stored_bits)
        if last is None or now <= last[0]:
            return self._bps.get(link_id, 0.0)
        dt = now - last[0]
        produced = rate_bps / 2 * dt
        if capacity_bits is not None:  # a full buffer drops what it cannot hold
            produced = min(produced, max(0, capacity_bits - last[1]))
        consumed = max(0.0, produced - (stored_bits - last[1])) / dt
        alpha = 1 - 0.5 ** (dt / self.half_life_s)
        bps = (1 - alpha) * self._bps.get(link_id, consumed) + alpha * consumed
        self._bps[link_id] = bps
        return bps


def link_states(sources: Sequence[Any], meter: ConsumptionMeter | None = None,
                now: float | None = None) -> list[LinkState]:
    """The states of this node's link key sources."""
    out = []
    now = time.monotonic() if now is None else now
    for src in sources:
        consumption, peer_stored = 0.0, 0
        fault = src.fault() if hasattr(src, "fault") else None
        alarm, qber = (fault.alarm, fault.qber if fault.state == "qber" else 0.0) if fault else ("", 0.0)
        try:
            stored = src.available_bytes() * 8
            peer_available = getattr(src, "peer_available_bytes", None)
            peer_stored = peer_available() * 8 if peer_available is not None else 0
            status = LinkStatus.OFF if alarm else LinkStatus.ACTIVE if stored else LinkStatus.PASSIVE
            if meter is not None:
                try:
                    cap = src.capacity_bytes() * 8
                except Exception:  # capacity unknown: assume the buffer never fills
                    cap = None
                consumption = meter.update(src.link_id, now, stored, float(src.rate_bps), cap)
        except Exception:  # an unreachable vendor KMS is reported as off, not raised
            stored, peer_stored, status = 0, 0, LinkStatus.OFF
        out.append(LinkState(link_id=src.link_id, peer_node=src.peer_node,
                             skr_bps=float(src.rate_bps), stored_bits=stored,
                             consumption_bps=consumption, status=status,
                             kms_kind=getattr(src, "kind", ""), peer_stored_bits=peer_stored,
                             alarm=alarm, qber=qber))
    return out


def best_link(links: Sequence[Any], peer: str) -> Any | None:
    """This node's link toward ``peer`` with the most key ready (several modules may serve a pair)."""
    best, best_bytes = None, -1
    for src in links:
        if src.peer_node != peer:
            continue
        try:
            avail = src.available_bytes()
        except Exception:  # an unreachable vendor KMS is skipped
            continue
        if avail > best_bytes:
            best, best_bytes = src, avail
    return best
