"""QuSeC's event log (pure, bounded): what it decided, numbered, for operators and dashboards.

The last ``capacity`` events, each with a sequence number that only grows (``seq``) and the
wall time it happened (``time``, passed in). A reader asks for the events after the last
sequence number it saw (``since``); ``missed`` tells it how many fell out of the log meanwhile.
Events name nodes, SAEs, links, paths and rules, never a key or a key ID: a field whose name
says key material is refused.
"""
from __future__ import annotations

from collections import deque
from typing import Any

CAPACITY = 1000

# kind -> what it says; every event also has seq, time, kind
KINDS = {
    "path_granted": "a relay path (or paths) granted: src/dst nodes and SAEs, paths, rule",
    "path_refused": "a path request refused: src/dst, reason, message, rule",
    "reroute": "a granted path moved (result moved, its new nodes) or revoked (result revoked)",
    "switch_up": "an OpenFlow switch connected", "switch_down": "an OpenFlow switch left",
    "switch_link_up": "LLDP found a switch link", "switch_link_down": "a switch link went down",
    "qkd_link_up": "a QKD link became usable", "qkd_link_down": "a QKD link stopped being usable",
    "qkd_alarm": "a QKD link end raised an alarm (state raised) or cleared it (state cleared): "
                 "link, node, reason (link_down, qber_above_threshold), qber",
    "agent_registered": "a node's agent registered", "agent_left": "a node's agent is gone",
    "registration_refused": "a control stream refused before it registered: node, reason",
    "policy_reloaded": "the policy file was reloaded: rules",
    "policy_rejected": "a changed policy file was rejected (the old table stays): problems",
}
REFUSALS = ("path_refused", "registration_refused", "policy_rejected")
_FORBIDDEN = ("key", "key_id", "key_ids", "keys", "secret")


class EventLog:
    """The last ``capacity`` events, oldest first."""

    def __init__(self, capacity: int = CAPACITY):
        if capacity < 1:
            raise ValueError(f"event log capacity must be at least 1, got {capacity}")
        self._events: deque[dict] = deque(maxlen=capacity)
        self.seq = 0     # the last event's sequence number (0: none yet)

    def record(self, kind: str, now: float, **fields: Any) -> dict:
        """Add an event of ``kind`` at wall time ``now``; returns it."""
        if kind not in KINDS:
            raise ValueError(f"unknown event kind {kind!r} (known: {', '.join(KINDS)})")
        bad = sorted(f for f in fields if f.lower() in _FORBIDDEN or f.lower().startswith("key_"))
        if bad:
            raise ValueError(f"event {kind}: field(s) {', '.join(bad)} would carry key material")
        self.seq += 1
        event = {"seq": self.seq, "time": round(float(now), 3), "kind": kind, **fields}
        self._events.append(event)
        return event

    @property
    def first_seq(self) -> int:
        """The oldest event still held (seq + 1 when the log is empty)."""
        return self._events[0]["seq"] if self._events else self.seq + 1

    def since(self, seq: int = 0, limit: int = CAPACITY) -> dict:
        """The events after ``seq`` (at most ``limit``, oldest first), the last sequence number,
        and how many events after ``seq`` are no longer held (``missed``)."""
        seq = max(0, int(seq))
        limit = max(0, int(limit))
        first = self.first_seq
        # events are numbered without gaps: the one after seq sits at index seq + 1 - first
        start = max(0, seq + 1 - first)
        out = [self._events[i] for i in range(start, min(len(self._events), start + limit))]
        return {"events": out, "last_seq": self.seq, "missed": max(0, first - seq - 1)}

    def recent(self, kinds: tuple[str, ...], n: int = 10) -> list[dict]:
        """The last ``n`` events of the given kinds, oldest first."""
        out: list[dict] = []
        for event in reversed(self._events):
            if len(out) >= n:
                break
            if event["kind"] in kinds:
                out.append(event)
        return out[::-1]
