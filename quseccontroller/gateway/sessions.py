"""The agents' open control streams: one session per node, the grace before a lost one is gone,
and the caps on open streams (per certificate and in total). Runs on the gateway's event loop;
the snapshot readers (``snapshot``, ``nodes``) may be called from other threads."""
from __future__ import annotations

import asyncio
import threading
from typing import Any, Callable

from quseccontroller.proto import control_pb2


class AgentSession:
    """One agent's registered control stream: an outbound queue and pending authorisation acks."""

    def __init__(self, node_id: str, register: dict, identity: str = ""):
        self.node_id = node_id
        self.register = register           # its Register as a wire dict (re-sent to a new app)
        self.identity = identity           # the certificate's urn role:name
        self.out: asyncio.Queue = asyncio.Queue()
        self.acks: dict[str, Callable[[], None]] = {}   # path id -> called on its ack
        self.links: dict[str, dict] = {}   # link id -> last reported state (wire dict)
        self.key_gauges: dict[str, Any] = {}   # link id -> its qusec_link_key_bits child
        self.refused_links: set[tuple[str, str]] = set()   # (link, reason) already logged
        self.report_interval_ms = 0        # what its Registered asked for (the app decides)

    def send(self, msg: control_pb2.ControllerMessage | None) -> None:
        self.out.put_nowait(msg)

    def expect_ack(self, path_id: str, on_ack: Callable[[], None]) -> None:
        self.acks[path_id] = on_ack

    def forget_ack(self, path_id: str) -> None:
        """No longer waiting for ``path_id``'s ack (delivery gave up)."""
        self.acks.pop(path_id, None)

    def acked(self, path_id: str) -> None:
        on_ack = self.acks.pop(path_id, None)
        if on_ack is not None:
            on_ack()

    def close(self) -> None:
        self.out.put_nowait(None)


class Sessions:
    """The current session of every node. A closed stream's node is gone ``on_gone(session)``
    after ``gone_grace`` seconds unless it reconnects first; ``gauge`` tracks how many are open."""

    def __init__(self, gone_grace: float, on_gone: Callable[[AgentSession], None], gauge: Any):
        self.gone_grace = gone_grace
        self.on_gone = on_gone
        self.gauge = gauge
        self._lock = threading.Lock()     # for readers on other threads (HTTP, bridge reconnect)
        self._by_node: dict[str, AgentSession] = {}
        self._timers: dict[str, asyncio.TimerHandle] = {}

    def open(self, session: AgentSession) -> None:
        """``session`` becomes its node's; a stale stream of the same node is closed."""
        with self._lock:
            old = self._by_node.get(session.node_id)
            self._by_node[session.node_id] = session
            self.gauge.set(len(self._by_node))
        timer = self._timers.pop(session.node_id, None)
        if timer is not None:
            timer.cancel()
        if old is not None and old is not session:
            old.close()  # a reconnecting agent replaces its stale stream

    def closed(self, session: AgentSession) -> bool:
        """``session``'s stream ended: start its grace (False if a newer stream replaced it)."""
        with self._lock:
            if self._by_node.get(session.node_id) is not session:
                return False
        old = self._timers.pop(session.node_id, None)
        if old is not None:
            old.cancel()
        self._timers[session.node_id] = asyncio.get_running_loop().call_later(
            self.gone_grace, self._expire, session)
        return True

    def _expire(self, session: AgentSession) -> None:
        with self._lock:
            if self._by_node.get(session.node_id) is not session:
                return
            del self._by_node[session.node_id]
            self.gauge.set(len(self._by_node))
        self._timers.pop(session.node_id, None)
        self.on_gone(session)

    def get(self, node_id: str) -> AgentSession | None:
        with self._lock:
            return self._by_node.get(node_id)

    def snapshot(self) -> dict[str, AgentSession]:
        with self._lock:
            return dict(self._by_node)

    def nodes(self) -> list[str]:
        with self._lock:
            return sorted(self._by_node)


class StreamsFull(Exception):
    """QuSeC holds as many control streams as it takes."""


class StreamSlot:
    """One open Connect stream, counted against its certificate's and the total cap."""

    def __init__(self, owner: str):
        self.owner = owner                    # the certificate's urn role:name
        self.evicted = asyncio.Event()        # a newer stream of the same certificate took its place
        self.session: AgentSession | None = None

    def evict(self) -> None:
        self.evicted.set()
        if self.session is not None:
            self.session.close()


class StreamLimits:
    """At most ``per_identity`` open streams per certificate (a newer one closes the oldest, so
    a reconnecting agent always gets in) and ``total`` in all (more are refused)."""

    def __init__(self, per_identity: int, total: int, gauge: Any):
        self.per_identity = max(1, int(per_identity))
        self.total = max(1, int(total))
        self.gauge = gauge
        self._by_owner: dict[str, list[StreamSlot]] = {}
        self.count = 0

    def admit(self, owner: str) -> StreamSlot:
        """A slot for a new stream of ``owner``; StreamsFull when the total cap is reached."""
        if self.count >= self.total:
            raise StreamsFull(f"QuSeC holds its maximum of {self.total} control streams")
        slots = self._by_owner.setdefault(owner, [])
        while len(slots) >= self.per_identity:
            slots.pop(0).evict()
            self.count -= 1
        slot = StreamSlot(owner)
        slots.append(slot)
        self.count += 1
        self.gauge.set(self.count)
        return slot

    def release(self, slot: StreamSlot) -> None:
        """The slot's stream ended (an evicted slot was already released)."""
        slots = self._by_owner.get(slot.owner, [])
        if slot in slots:
            slots.remove(slot)
            self.count -= 1
            self.gauge.set(self.count)
        if not slots:
            self._by_owner.pop(slot.owner, None)
