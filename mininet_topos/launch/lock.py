"""One Mininet network at a time: the machine-wide lock, and polling.

The lock is an ``flock`` on ``/tmp/qusec-mininet.lock`` (the kernel drops it when its holder
dies). Waiting for it polls, so a signal stops the wait at once, and ``timeout`` bounds it. (Not
the ``filelock`` package: it may unlink and re-create the lock file, and a parent that took the
lock with ``flock /tmp/qusec-mininet.lock COMMAND`` must keep holding the same file's lock.)
"""
from __future__ import annotations

import contextlib
import fcntl
import os
import time
from pathlib import Path
from typing import Any, Callable, Iterator, TextIO

LOCK_PATH = "/tmp/qusec-mininet.lock"
POLL_S = 0.1


class EmulationError(RuntimeError):
    """The emulated network did not come up or a step failed; the message says where to look."""


def _inherited_lock_fd() -> int | None:
    """A descriptor of LOCK_PATH inherited from a parent that holds the lock, or None.

    ``flock /tmp/qusec-mininet.lock make demo`` passes its locked descriptor down; locking the
    file again through a new descriptor would wait for ourselves forever.
    """
    try:
        inode = os.stat(LOCK_PATH).st_ino
        fds = os.listdir("/proc/self/fd")
        locks = Path("/proc/locks").read_text()
    except OSError:
        return None
    if not any(l.split()[1] == "FLOCK" and l.split()[5].endswith(f":{inode}")
               for l in locks.splitlines() if len(l.split()) > 5):
        return None
    for fd in fds:
        try:
            if os.readlink(f"/proc/self/fd/{fd}") == LOCK_PATH:
                fcntl.flock(int(fd), fcntl.LOCK_EX | fcntl.LOCK_NB)   # ours already: succeeds
                return int(fd)
        except OSError:
            continue
    return None


@contextlib.contextmanager
def mininet_lock(progress: TextIO | None = None, timeout: float | None = None) -> Iterator[None]:
    """Hold /tmp/qusec-mininet.lock: one Mininet network (and OVS bridge set) at a time.

    ``timeout``: seconds to wait for another network to finish (None: as long as it takes);
    EmulationError naming the holder after it. Under ``flock /tmp/qusec-mininet.lock COMMAND``
    the lock is already ours (inherited) and stays with the parent: nothing is taken or released.
    """
    if _inherited_lock_fd() is not None:
        yield
        return
    with open(LOCK_PATH, "a+") as fh:
        deadline = None if timeout is None else time.monotonic() + timeout
        waiting = False
        while True:
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if deadline is not None and time.monotonic() >= deadline:
                    raise EmulationError(f"another Mininet network still holds {LOCK_PATH} after "
                                         f"{timeout:g} s{_holder(fh)}; try again later or raise "
                                         "--wait-lock") from None
                if not waiting and progress is not None:
                    print(f"waiting for {LOCK_PATH} (another Mininet network is running{_holder(fh)})"
                          + (f", at most {timeout:g} s" if timeout is not None else ""),
                          file=progress, flush=True)
                waiting = True
                time.sleep(POLL_S)   # a signal handler that raises ends the wait here
        fh.seek(0)
        fh.truncate()
        fh.write(f"{os.getpid()}\n")
        fh.flush()
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _holder(fh: Any) -> str:
    fh.seek(0)
    pid = fh.read().strip()
    return f", pid {pid}" if pid.isdigit() else ""


def wait_for(cond: Callable[[], Any], timeout: float, what: str, interval: float = 0.2) -> Any:
    """Poll ``cond`` until it returns something true; EmulationError naming ``what`` otherwise."""
    deadline = time.monotonic() + timeout
    last = None
    while True:
        last = cond()
        if last:
            return last
        if time.monotonic() > deadline:
            raise EmulationError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)
