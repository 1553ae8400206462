"""Process supervision on os-ken's hub: the spawned gRPC gateway, and the launcher we live for.

``GatewaySupervisor.run`` (a green thread) starts the gateway and restarts it with a doubling
back-off when it exits; ``exit_with_parent`` ends the app when the launcher that started it
is gone, so no controller lingers on a shared machine.
"""
from __future__ import annotations

import logging
import os
import subprocess
import time
from pathlib import Path
from typing import Callable

from os_ken.lib import hub

from quseccontroller.options import GATEWAY_RESTART_MAX_S, GATEWAY_RESTART_MIN_S

LOG = logging.getLogger(__name__)

# A gateway that ran this long before exiting was healthy: its restart starts a fresh back-off.
_HEALTHY_RUN_S = 30.0


class GatewaySupervisor:
    """Runs ``argv()`` with its output appended to ``log_path``; restarts it until stopped."""

    def __init__(self, argv: Callable[[], list[str]], log_path: Path):
        self.argv = argv
        self.log_path = log_path
        self.proc: subprocess.Popen | None = None
        self.restarts = 0
        self._stopping = False

    def run(self) -> None:
        backoff = GATEWAY_RESTART_MIN_S
        while not self._stopping:
            with open(self.log_path, "ab") as log:
                self.proc = subprocess.Popen(self.argv(), stdout=log, stderr=subprocess.STDOUT,
                                             stdin=subprocess.DEVNULL)
            started = time.monotonic()
            LOG.info("gateway started (pid %d), log %s", self.proc.pid, self.log_path)
            while self.proc.poll() is None and not self._stopping:
                hub.sleep(0.2)
            if self._stopping:
                return
            LOG.warning("gateway exited with %s; restarting in %.1fs", self.proc.returncode, backoff)
            self.restarts += 1
            if time.monotonic() - started > _HEALTHY_RUN_S:
                backoff = GATEWAY_RESTART_MIN_S
            hub.sleep(backoff)
            backoff = min(backoff * 2, GATEWAY_RESTART_MAX_S)

    def stop(self) -> None:
        """Stop restarting; SIGTERM the gateway, SIGKILL it after 5 s."""
        self._stopping = True
        proc = self.proc
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()
        for _ in range(50):
            if proc.poll() is not None:
                return
            hub.sleep(0.1)
        proc.kill()


def exit_with_parent(parent_pid: int, interval: float, cleanup: Callable[[], None]) -> None:
    """Every ``interval`` s: when ``parent_pid`` is no longer our parent, ``cleanup()`` and exit."""
    while True:
        hub.sleep(interval)
        if os.getppid() != parent_pid:
            LOG.warning("launcher (pid %d) is gone; exiting", parent_pid)
            cleanup()
            os._exit(0)
