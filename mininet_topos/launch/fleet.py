"""The vKMS agents of a launched network (both launchers): configs, start, readiness by agent.json, stop."""
from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import IO, Any, Self

log = logging.getLogger(__name__)

# (node id, argv, env, log file) -> the started process; plain Popen locally, host.popen in Mininet.
Spawner = Callable[[str, list[str], dict[str, str], IO[bytes]], subprocess.Popen]


class AgentStartError(RuntimeError):
    """An agent exited or did not become ready; the message quotes the end of its log."""


def tail(path: Path, n: int = 15) -> str:
    """The last ``n`` lines of a log, or "(no log)"."""
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-n:])
    except OSError:
        return "(no log)"


def popen_spawner(_node: str, argv: list[str], env: dict[str, str], logf: IO[bytes]) -> subprocess.Popen:
    """Start an agent as a plain local process."""
    return subprocess.Popen(argv, stdout=logf, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env)


class AgentFleet:
    """One ``kms-agent`` per node: each writes ``STATE/agent.json`` once it serves.

    ``configs`` (node -> kms_agents.config.AgentConfig) are written as ``agent.toml`` in each
    node's state dir; ``procs`` and ``agents`` (node -> its agent.json) are public and live
    for the fleet's lifetime (after ``stop`` the processes stay, with their exit codes).
    """

    def __init__(self, spawn: Spawner = popen_spawner, env: dict[str, str] | None = None) -> None:
        self.spawn_fn = spawn
        self.env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
        self.configs: dict[str, Any] = {}
        self.procs: dict[str, subprocess.Popen] = {}
        self.agents: dict[str, dict] = {}

    def state(self, node_id: str) -> Path:
        return Path(self.configs[node_id].state_dir)

    def write_configs(self, configs: dict[str, Any],
                      adjust: Callable[[str, Any], None] | None = None) -> None:
        """Keep ``configs`` (after ``adjust(node, cfg)``) and write each node's agent.toml."""
        from kms_agents.config import write_config
        for node_id, cfg in configs.items():
            if adjust is not None:
                adjust(node_id, cfg)
            write_config(cfg, Path(cfg.state_dir) / "agent.toml")
        self.configs = dict(configs)

    def spawn(self, node_id: str) -> subprocess.Popen:
        """Start (or restart) one agent; its old agent.json is removed first."""
        state = self.state(node_id)
        (state / "agent.json").unlink(missing_ok=True)   # a killed agent leaves its file behind
        self.agents.pop(node_id, None)
        argv = [sys.executable, "-m", "kms_agents.agent", "--config", str(state / "agent.toml")]
        with open(state / "agent.log", "ab") as logf:
            proc = self.spawn_fn(node_id, argv, self.env, logf)
        self.procs[node_id] = proc
        return proc

    def spawn_all(self) -> None:
        for node_id in self.configs:
            self.spawn(node_id)

    def poll(self, nodes: Iterable[str] | None = None) -> list[str]:
        """Read every not-yet-ready node's agent.json once; the nodes that became ready now.

        Raises AgentStartError (with the end of its log) for an agent that exited.
        """
        fresh = []
        for node_id in (self.configs if nodes is None else nodes):
            if node_id in self.agents:
                continue
            state = self.state(node_id)
            proc = self.procs[node_id]
            if proc.poll() is not None:
                raise AgentStartError(f"agent {node_id} exited with code {proc.returncode}; "
                                      f"{state / 'agent.log'}:\n{tail(state / 'agent.log')}")
            try:
                self.agents[node_id] = json.loads((state / "agent.json").read_text())
            except (OSError, ValueError):
                continue
            fresh.append(node_id)
        return fresh

    def wait_ready(self, nodes: Iterable[str] | None = None, timeout: float = 60.0,
                   say: Callable[[str], None] | None = None, interval: float = 0.05) -> None:
        """Poll until every agent in ``nodes`` (default all) has written agent.json."""
        nodes = list(self.configs if nodes is None else nodes)
        deadline = time.monotonic() + timeout
        while True:
            ready = self.poll(nodes)
            done = sum(1 for n in nodes if n in self.agents) - len(ready)
            for node_id in ready:   # one count per node, in order, even when several came up at once
                done += 1
                if say is not None:
                    say(f"  [{done}/{len(nodes)}] node {node_id} ready: {self.agents[node_id]['etsi014_url']}")
            missing = [n for n in nodes if n not in self.agents]
            if not missing:
                return
            if time.monotonic() > deadline:
                raise AgentStartError(f"agents not ready after {timeout:.0f} s: {sorted(missing)} "
                                      f"(logs: STATE/NODE/agent.log)")
            time.sleep(interval)

    def dead(self) -> list[str]:
        return sorted(n for n, p in self.procs.items() if p.poll() is not None)

    def stop(self, grace: float = 10.0) -> None:
        """SIGTERM every agent at once, SIGKILL those still running after ``grace`` seconds."""
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.terminate()
        deadline = time.monotonic() + grace
        for node_id, proc in self.procs.items():
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                log.warning("agent %s ignored SIGTERM; killing it", node_id)
                proc.kill()
                proc.wait(5)


class Steps:
    """A stop's steps: each runs even when an earlier one failed (a failure is logged);
    ``raise_first()`` raises the first failure once all have run."""

    def __init__(self) -> None:
        self.errors: list[BaseException] = []

    def __call__(self, what: str, fn: Callable[[], Any]) -> None:
        try:
            fn()
        except Exception as exc:  # noqa: BLE001 - the remaining steps must still run
            log.exception("stop: %s failed", what)
            self.errors.append(exc)

    def raise_first(self) -> None:
        if self.errors:
            raise self.errors[0]


class StartStop:
    """A network as a context manager: start() on entry (stop() when it fails), stop() on exit."""

    def start(self) -> Path:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


class LaunchedNetwork(StartStop):
    """What both launchers share: the agents' configs and restarts (and StartStop's context manager)."""

    fleet: AgentFleet

    @property
    def configs(self) -> dict[str, Any]:
        """node -> its kms_agents.config.AgentConfig."""
        return self.fleet.configs

    def respawn_agent(self, node_id: str, *, kill: bool = True, wait_s: float = 15.0) -> subprocess.Popen:
        """Kill -9 (or SIGTERM) one agent and start it again on its state dir (not waiting for it)."""
        proc = self.fleet.procs[node_id]
        if kill:
            proc.kill()
        else:
            proc.terminate()
        proc.wait(wait_s)
        return self.fleet.spawn(node_id)
