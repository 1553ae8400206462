"""The agents' open control streams: one session per node, and the grace before a lost one is gone."""
from __future__ import annotations

import queue
import threading
from typing import Any, Callable

from quseccontroller.proto import control_pb2


class AgentSession:
    """One agent's open control stream: an outbound queue and pending authorisation acks."""

    def __init__(self, node_id: str, register: dict):
        self.node_id = node_id
        self.register = register           # its Register as a wire dict (re-sent to a new app)
        self.out: queue.Queue = queue.Queue()
        self.acks: dict[str, threading.Event] = {}
        self.lock = threading.Lock()
        self.links: dict[str, dict] = {}   # link id -> last reported state (wire dict)

    def send(self, msg: control_pb2.ControllerMessage) -> None:
        self.out.put(msg)

    def expect_ack(self, path_id: str) -> threading.Event:
        with self.lock:
            return self.acks.setdefault(path_id, threading.Event())

    def acked(self, path_id: str) -> None:
        with self.lock:
            ev = self.acks.pop(path_id, None)
        if ev is not None:
            ev.set()

    def close(self) -> None:
        self.out.put(None)


class Sessions:
    """The current session of every node. A closed stream's node is gone ``on_gone(session)``
    after ``gone_grace`` seconds unless it reconnects first; ``gauge`` tracks how many are open."""

    def __init__(self, gone_grace: float, on_gone: Callable[[AgentSession], None], gauge: Any):
        self.gone_grace = gone_grace
        self.on_gone = on_gone
        self.gauge = gauge
        self._lock = threading.Lock()
        self._by_node: dict[str, AgentSession] = {}
        self._timers: dict[str, threading.Timer] = {}

    def open(self, session: AgentSession) -> None:
        """``session`` becomes its node's; a stale stream of the same node is closed."""
        with self._lock:
            old = self._by_node.get(session.node_id)
            self._by_node[session.node_id] = session
            timer = self._timers.pop(session.node_id, None)
            self.gauge.set(len(self._by_node))
        if timer is not None:
            timer.cancel()
        if old is not None:
            old.close()  # a reconnecting agent replaces its stale stream

    def closed(self, session: AgentSession) -> bool:
        """``session``'s stream ended: start its grace (False if a newer stream replaced it)."""
        with self._lock:
            if self._by_node.get(session.node_id) is not session:
                return False
            timer = threading.Timer(self.gone_grace, self._expire, args=(session,))
            timer.daemon = True
            self._timers[session.node_id] = timer
        timer.start()
        return True

    def _expire(self, session: AgentSession) -> None:
        with self._lock:
            if self._by_node.get(session.node_id) is not session:
                return
            del self._by_node[session.node_id]
            self._timers.pop(session.node_id, None)
            self.gauge.set(len(self._by_node))
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
