"""The app's policy file: loaded at start, reloaded when its mtime changes.

A bad file at start-up is fatal (its problems are the error); a bad file later is logged and
the old table stays in force. "policy reloaded from ..." is the line launchers wait for.
Every reload is kept as the reload state (``last``: time, ok or rejected, rule count, problems;
``counts`` by result) that /status and /metrics show, and recorded in the event log.
"""
from __future__ import annotations

import logging
import os
from typing import Callable

from quseccontroller.events import EventLog
from quseccontroller.policy import PolicyError, PolicyTable, default_table
from quseccontroller.policy import load as load_policy

LOG = logging.getLogger(__name__)

RESULTS = ("ok", "rejected")


class PolicyWatch:
    """Watches the [qusec] policy file (empty path: the default table, nothing to watch)."""

    def __init__(self, path: str, events: EventLog | None = None):
        self.path = path
        self.mtime = 0.0
        self.events = events
        self.counts = dict.fromkeys(RESULTS, 0)
        self.last: dict = {}     # the last reload (none yet: {})

    def initial(self) -> PolicyTable:
        if not self.path:
            return default_table()
        table = load_policy(self.path)
        self.mtime = os.stat(self.path).st_mtime
        return table

    def poll(self, apply: Callable[[PolicyTable], object], now: float = 0.0) -> bool:
        """``apply(table)`` when the file changed and its new table is valid; True then.
        ``now``: the wall time the reload state and its event carry."""
        if not self.path:
            return False
        try:
            mtime = os.stat(self.path).st_mtime
        except OSError as exc:
            LOG.warning("policy file %s: %s (old table stays in force)", self.path, exc)
            return False
        if mtime == self.mtime:
            return False
        self.mtime = mtime
        try:
            table = load_policy(self.path)
        except PolicyError as exc:
            LOG.error("policy reload rejected, old table stays in force: %s", "; ".join(exc.problems))
            self._note(now, "rejected", problems=list(exc.problems))
            return False
        apply(table)
        LOG.info("policy reloaded from %s (%d rules)", self.path, len(table.rules))
        self._note(now, "ok", rules=len(table.rules))
        return True

    def _note(self, now: float, result: str, *, rules: int = 0, problems: list[str] | None = None) -> None:
        self.counts[result] += 1
        self.last = {"time": round(now, 3), "result": result, "ok": result == "ok",
                     "file": self.path, "rules": rules, "problems": problems or []}
        if self.events is not None:
            if result == "ok":
                self.events.record("policy_reloaded", now, file=self.path, rules=rules)
            else:
                self.events.record("policy_rejected", now, file=self.path, problems=problems or [])

    def state(self) -> dict:
        """The reload state for /status: the last reload and the counts by result."""
        return {"file": self.path, "last": self.last, "reloads": dict(self.counts)}
