"""A relay network of real local processes with a policy file and per-node ``[relay]`` settings.

QuSeC runs under osken-manager and one kms-agent per node, with mutual TLS on
loopback (no root).

Used by the relay integration tests and the relay part of ``qkdnet bench latency/throughput``; unlike ``qkdnet up --local``
it lets a caller put an interposer in front of a node (``advertise_addr``) or switch buffers on.
"""
from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from kms_agents.client import Etsi014Client


class RelayNet:
    """QuSeC + one agent per node of ``topology_toml`` under ``root``; stopped by ``stop()``."""

    def __init__(self, root: Path, topology_toml: str, *, policy_toml: str | None = None,
                 relay_settings: dict[str, dict[str, Any]] | None = None,
                 limits: dict[str, int] | None = None, link_capacity_bytes: int = 0) -> None:
        from kms_agents.config import write_config
        from mininet_topos.provision.agents import configs_for_topology
        from mininet_topos.provision.pki import build_pki
        from mininet_topos import topology
        from mininet_topos.launch.controller import Controller
        self.root = root
        (root / "topo.toml").write_text(topology_toml)
        self.topology = topology.load(str(root / "topo.toml"))
        self.pki = build_pki(self.topology, root / "pki")
        policy = None
        if policy_toml:
            policy = root / "policy.toml"
            policy.write_text(policy_toml)
        self.controller = Controller(root / "qusec", ca_cert=self.pki.ca_cert,
                                     cert=self.pki.qusec_cert, key=self.pki.qusec_key,
                                     policy=str(policy) if policy else None, observe_links=False)
        self.controller.start()
        self.procs: dict[str, subprocess.Popen] = {}
        self.info: dict[str, dict] = {}
        try:
            self.controller.wait_ready(60)
            self.configs = configs_for_topology(self.topology, self.pki, root,
                                                qusec_addr=self.controller.grpc_addr)
            for node, cfg in self.configs.items():
                if relay_settings and node in relay_settings:
                    cfg.relay = dataclasses.replace(cfg.relay, **relay_settings[node])
                for k, v in (limits or {}).items():
                    setattr(cfg.limits, k, v)
                for link in cfg.links:
                    if link_capacity_bytes:
                        link.capacity_bytes = link_capacity_bytes
                write_config(cfg, Path(cfg.state_dir) / "agent.toml")
                self.start_agent(node)
            self.wait_agents()
        except BaseException:
            self.stop()
            raise

    def start_agent(self, node: str) -> None:
        """(Re)start one node's agent on its state dir (wait with ``wait_agents``)."""
        state = Path(self.configs[node].state_dir)
        (state / "agent.json").unlink(missing_ok=True)
        with open(state / "agent.log", "ab") as log:
            self.procs[node] = subprocess.Popen(
                [*agent_command(), "--config", str(state / "agent.toml")],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                env={**os.environ, "QUSEC_LOG_LEVEL": os.environ.get("QUSEC_LOG_LEVEL", "INFO")})
        self.info.pop(node, None)

    def wait_agents(self, timeout: float = 60.0) -> None:
        """Until every agent wrote agent.json and is registered with QuSeC."""
        deadline = time.monotonic() + timeout
        while len(self.info) < len(self.procs):
            for node, proc in self.procs.items():
                if node in self.info:
                    continue
                state = Path(self.configs[node].state_dir)
                if proc.poll() is not None:
                    raise RuntimeError(f"agent {node} exited {proc.returncode}: "
                                       f"{(state / 'agent.log').read_text()[-2000:]}")
                try:
                    self.info[node] = json.loads((state / "agent.json").read_text())
                except (OSError, ValueError):
                    pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"agents not ready: {sorted(set(self.procs) - set(self.info))}")
            time.sleep(0.05)
        self.wait_registered(set(self.procs), timeout=max(1.0, deadline - time.monotonic()))

    def registered_nodes(self) -> set[str]:
        """Nodes QuSeC currently has a live registration for (its /status)."""
        import urllib.request
        try:
            with urllib.request.urlopen(self.controller.http_url + "/status", timeout=2) as r:
                data = json.loads(r.read())
        except (OSError, ValueError):
            return set()
        core = data.get("core", data)
        return {n for n, v in core.get("nodes", {}).items() if v.get("online")}

    def wait_registered(self, nodes: set[str], timeout: float = 30.0) -> float:
        """Seconds until every node in ``nodes`` is registered (RuntimeError after timeout)."""
        t0 = time.monotonic()
        while not nodes <= self.registered_nodes():
            if time.monotonic() - t0 > timeout:
                raise RuntimeError(f"nodes not registered with QuSeC: "
                                   f"{sorted(nodes - self.registered_nodes())}")
            time.sleep(0.05)
        return time.monotonic() - t0

    def client(self, sae: str) -> Etsi014Client:
        """An ETSI 014 client of ``sae`` (its certificate) at its node's vKMS."""
        node = self.topology.saes[sae].node
        pair = self.pki.saes[sae]
        return Etsi014Client(self.info[node]["etsi014_url"], self.pki.ca_cert, pair.cert, pair.key)

    def db(self, node: str) -> Path:
        """The node's SQLite key store."""
        return Path(self.configs[node].state_dir) / "keys.db"

    def log(self, node: str) -> str:
        """The node's agent log so far."""
        return (Path(self.configs[node].state_dir) / "agent.log").read_text(errors="replace")

    def stop(self) -> None:
        """Stop every agent (SIGTERM, then SIGKILL) and QuSeC."""
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.terminate()
        for proc in self.procs.values():
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self.controller.stop()


def agent_command() -> list[str]:
    """``kms-agent`` next to this interpreter (the virtualenv's), else ``python -m``."""
    script = Path(sys.executable).with_name("kms-agent")
    return [str(script)] if script.exists() else [sys.executable, "-m", "kms_agents.agent"]
