"""The app's policy file: loaded at start, reloaded when its mtime changes.

A bad file at start-up is fatal (its problems are the error); a bad file later is logged and
the old table stays in force. "policy reloaded from ..." is the line launchers wait for.
"""
from __future__ import annotations

import logging
import os
from typing import Callable

from quseccontroller.policy import PolicyError, PolicyTable, default_table
from quseccontroller.policy import load as load_policy

LOG = logging.getLogger(__name__)


class PolicyWatch:
    """Watches the [qusec] policy file (empty path: the default table, nothing to watch)."""

    def __init__(self, path: str):
        self.path = path
        self.mtime = 0.0

    def initial(self) -> PolicyTable:
        if not self.path:
            return default_table()
        table = load_policy(self.path)
        self.mtime = os.stat(self.path).st_mtime
        return table

    def poll(self, apply: Callable[[PolicyTable], object]) -> bool:
        """``apply(table)`` when the file changed and its new table is valid; True then."""
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
            return False
        apply(table)
        LOG.info("policy reloaded from %s (%d rules)", self.path, len(table.rules))
        return True
