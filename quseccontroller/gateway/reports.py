"""Link reports on their way from the agents' streams to the app.

Link levels are state, not events: of each node only its newest report waits (a newer one
replaces it and keeps its place in line), and the reports that waited while the last batch was
with the app go to it in one bridge call (``reports``). One task carries them for every stream:
a stream never waits for the app (an authorisation ack read behind a report is taken at once), a
busy app sees one batch at a time, and a path request reaching the app behind a batch waits for
that batch only: the reports that came in during the round trip before it.
"""
from __future__ import annotations

import asyncio
import itertools
import logging
from typing import Any, Awaitable, Callable

LOG = logging.getLogger(__name__)

# Reports per bridge call at most: a bound on the frame (~1 KiB a report), not a pace. With one
# batch in flight a batch holds what came in during the last one's round trip (rate x RTT: ~50
# at 500 reports/s and 100 ms), so the app keeps up at any rate it can take at all.
BATCH = 2000

Taken = list[tuple[Any, list[dict]]]   # (session, its links as wire dicts)


class ReportQueue:
    """The newest waiting report of each node; ``send(taken)`` hands one batch to the app."""

    def __init__(self, send: Callable[[Taken], Awaitable[None]],
                 on_replaced: Callable[[], None] = lambda: None, batch: int = BATCH):
        self.send = send
        self.on_replaced = on_replaced
        self.batch = max(1, int(batch))
        self._waiting: dict[str, tuple[Any, list[dict]]] = {}   # node id -> (session, links)
        self._task: asyncio.Task | None = None

    def __len__(self) -> int:
        return len(self._waiting)

    def put(self, session: Any, links: list[dict]) -> None:
        """``session``'s newest report (on the loop; returns at once)."""
        if session.node_id in self._waiting:
            self.on_replaced()
        self._waiting[session.node_id] = (session, links)
        if self._task is None or self._task.done():
            self._task = asyncio.ensure_future(self._drain())

    def drop(self, node_id: str) -> None:
        """A node gone: its waiting report is not handed over."""
        self._waiting.pop(node_id, None)

    async def _drain(self) -> None:
        while self._waiting:
            nodes = list(itertools.islice(self._waiting, self.batch))
            taken = [self._waiting.pop(n) for n in nodes]
            try:
                await self.send(taken)
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - one bad batch must not stop the reports
                LOG.exception("a batch of %d reports failed", len(taken))
