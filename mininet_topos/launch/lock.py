"""One Mininet network at a time: the machine-wide lock, the launcher mark, and polling."""
from __future__ import annotations

import contextlib
import fcntl
import os
import time
from pathlib import Path
from typing import Any, Callable, Iterator, TextIO

LOCK_PATH = "/tmp/qusec-mininet.lock"
LAUNCHER_MARK = "launcher.pid"   # in a state dir while its Mininet launcher runs


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
def mininet_lock(progress: TextIO | None = None) -> Iterator[None]:
    """Hold /tmp/qusec-mininet.lock: one Mininet network (and OVS bridge set) at a time.

    Under ``flock /tmp/qusec-mininet.lock COMMAND`` the lock is already ours (inherited) and
    stays with the parent: nothing is taken or released here.
    """
    if _inherited_lock_fd() is not None:
        yield
        return
    with open(LOCK_PATH, "a") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if progress is not None:
                print(f"waiting for {LOCK_PATH} (another Mininet network is running)",
                      file=progress, flush=True)
            fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


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
