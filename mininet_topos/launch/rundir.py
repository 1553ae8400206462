"""A state directory belongs to one launcher at a time, and every run can be found again.

``claim(state_dir, mode)`` is the first thing a launcher does, before it writes any file: it
takes ``STATE/launcher.lock`` (an exclusive ``flock`` the kernel drops when the process dies,
however it dies) or fails with :class:`StateDirInUse` naming the launcher that holds it. It also
records the run in this user's run registry (``/tmp/qusec-runs-UID/``), so ``qkdnet clean``
finds crashed runs wherever their state directories are: a registered run whose lock nobody
holds is a crashed one.
"""
from __future__ import annotations

import fcntl
import hashlib
import json
import os
import tempfile
import time
from dataclasses import dataclass
from collections.abc import Callable
from pathlib import Path
from typing import IO

from mininet_topos.launch.clean import kill_all, leftover_pids

LOCK_NAME = "launcher.lock"


class StateDirInUse(RuntimeError):
    """Another live launcher holds the state directory; nothing in it was touched."""


@dataclass(frozen=True)
class Run:
    """One registered run: its state directory, launcher pid, mode and start time."""
    state_dir: Path
    pid: int
    mode: str
    started: float
    entry: Path

    def alive(self) -> bool:
        """True while a launcher holds the run's state directory."""
        return holder(self.state_dir) is not None


def registry(uid: int | None = None) -> Path:
    """This user's run registry (one small JSON file per run)."""
    return Path(tempfile.gettempdir()) / f"qusec-runs-{os.getuid() if uid is None else uid}"


def _entry(state_dir: Path) -> Path:
    return registry() / (hashlib.sha1(str(state_dir).encode()).hexdigest()[:16] + ".json")


def holder(state_dir: str | os.PathLike) -> int | None:
    """The pid of the launcher holding ``state_dir`` (None when no live launcher does)."""
    lock = Path(state_dir) / LOCK_NAME
    try:
        fh = open(lock, "r")
    except OSError:
        return None
    with fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            text = fh.read().split()
            return int(text[0]) if text and text[0].isdigit() else -1
        fcntl.flock(fh, fcntl.LOCK_UN)
    return None


class Claim:
    """The held state directory of a running launcher; ``release()`` (or process exit) frees it.
    ``crashed``: the earlier run of this directory that ended without releasing it, if any (its
    processes may still run: the launcher stops them before it starts anything)."""

    def __init__(self, state_dir: Path, mode: str, fh: IO[str]) -> None:
        self.state_dir, self.mode, self._fh = state_dir, mode, fh
        self.entry = _entry(state_dir)
        self.entry.parent.mkdir(mode=0o700, exist_ok=True)
        self.crashed = next((r for r in runs() if r.entry == self.entry), None)
        tmp = self.entry.with_suffix(".tmp")
        tmp.write_text(json.dumps({"state_dir": str(state_dir), "pid": os.getpid(), "mode": mode,
                                   "started": time.time()}))
        tmp.replace(self.entry)

    def stop_crashed(self, say: Callable[[str], None]) -> bool:
        """Stop what the crashed earlier run of this state dir left running; True when there
        was such a run (a launcher calls this before it starts anything)."""
        if self.crashed is None:
            return False
        left = leftover_pids(self.state_dir)
        if left:
            say(f"  a crashed run left {len(left)} process(es) in {self.state_dir}; stopping them")
            kill_all(left)
        return True

    def release(self) -> None:
        if self._fh is None:
            return
        self.entry.unlink(missing_ok=True)
        fcntl.flock(self._fh, fcntl.LOCK_UN)
        self._fh.close()
        self._fh = None


def claim(state_dir: str | os.PathLike, mode: str) -> Claim:
    """Hold ``state_dir`` for this launcher (``mode``: "local" or "mininet"), or raise
    StateDirInUse before any file in it is written."""
    state_dir = Path(state_dir).resolve()
    state_dir.mkdir(parents=True, exist_ok=True)
    fh = open(state_dir / LOCK_NAME, "a+")
    try:
        fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        fh.seek(0)
        pid = fh.read().strip() or "?"
        fh.close()
        raise StateDirInUse(f"{state_dir} is in use by a running launcher (pid {pid}); nothing in it "
                            "was changed: stop that network first, or use another --state-dir") from None
    fh.seek(0)
    fh.truncate()
    fh.write(f"{os.getpid()}\n")
    fh.flush()
    return Claim(state_dir, mode, fh)


def runs(uid: int | None = None) -> list[Run]:
    """Every registered run of user ``uid`` (default: this user), live or crashed."""
    out = []
    for entry in sorted(registry(uid).glob("*.json")):
        try:
            d = json.loads(entry.read_text())
            out.append(Run(Path(d["state_dir"]), int(d["pid"]), str(d["mode"]), float(d["started"]),
                           entry))
        except (OSError, ValueError, KeyError, TypeError):
            continue
    return out
