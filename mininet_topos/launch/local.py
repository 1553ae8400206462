"""``qkdnet up TOPOLOGY --local``: every node's vKMS agent as a plain process on loopback (no root).

Creates the PKI and agent configs under the state directory, starts QuSeC (agents then get
its address; when it does not start, the agents serve direct links only), starts one
``kms-agent`` per node, waits for every ``agent.json`` (with progress output) and, with
QuSeC, for every agent's registration, writes
``network.json`` (docs/emulation.md describes it) and keeps running until Ctrl-C / SIGTERM, then stops
every process it started.
"""
from __future__ import annotations

import logging
import subprocess
import time
from pathlib import Path
from collections.abc import Callable
from typing import Any, TextIO

from mininet_topos.launch import rundir
from mininet_topos.launch.operator import OperatorClient
from mininet_topos.launch.fleet import AgentFleet, LaunchedNetwork, AgentStartError, popen_spawner
from mininet_topos.model import Topology
from mininet_topos.provision.netinfo import write_network_json

log = logging.getLogger(__name__)

READY_TIMEOUT_S = 60.0


LaunchError = AgentStartError   # the network did not come up; the message names the log to read


class LocalNetwork(LaunchedNetwork):
    """PKI + agents (+ QuSeC) of one topology, as local processes."""

    def __init__(self, topology: Topology, state_dir: str | Path, *, with_qusec: bool = True,
                 progress: TextIO | None = None, agent_env: dict[str, str] | None = None,
                 limits: dict[str, int] | None = None,
                 config_hook: Callable[[str, Any], None] | None = None,
                 policy: str | Path | None = None, inventory: Any = None,
                 parent: tuple[str, str, str, str] | None = None) -> None:
        self.topology = topology
        # One domain of several: its QuSeC inventory (with [domain] and [[borders]]) and the
        # parent controller it exports to (address, CA, this QuSeC's client cert and key).
        self.inventory = inventory
        self.parent = parent
        self.policy = str(Path(policy).resolve()) if policy else None
        self.state_dir = Path(state_dir).resolve()
        self.with_qusec = with_qusec
        self.progress = progress
        self.limits = limits or {}
        self.config_hook = config_hook   # (node id, AgentConfig) -> None, before configs are written
        self.fleet = AgentFleet(popen_spawner, env=agent_env)
        self.procs: dict[str, subprocess.Popen] = self.fleet.procs
        self.agents: dict[str, dict] = self.fleet.agents
        self.controller: Any = None
        self.pki: Any = None
        self.qusec: dict[str, str] | None = None
        self.network_json = self.state_dir / "network.json"
        self.claim: rundir.Claim | None = None
        self.operator: OperatorClient | None = None

    def _say(self, msg: str) -> None:
        if self.progress is not None:
            print(msg, file=self.progress, flush=True)

    def _start_qusec(self) -> dict[str, str] | None:
        from mininet_topos.launch.controller import Controller
        from mininet_topos.provision import inventory
        inv_file = self.state_dir / "inventory.toml"
        if self.inventory is not None:
            from quseccontroller.inventory import dumps
            inv_file.write_text(dumps(self.inventory, comment=f"QuSeC inventory of {self.inventory.source}"))
        else:
            inventory.write(self.topology, inv_file)
        ctl = Controller(self.state_dir / "qusec", ca_cert=self.pki.ca_cert, cert=self.pki.qusec_cert,
                         key=self.pki.qusec_key, observe_links=False, policy=self.policy,
                         inventory=inv_file, parent=self.parent)
        try:
            ctl.start()
            ctl.wait_ready(READY_TIMEOUT_S)
        except Exception as exc:  # noqa: BLE001 - the key service still works without QuSeC
            self._say(f"QuSeC did not start ({exc}); agents run standalone (neighbours only)")
            try:
                ctl.stop()
            except Exception:  # noqa: BLE001
                pass
            return None
        self.controller = ctl
        self.operator = OperatorClient(ctl.https_url, self.pki.ca_cert, self.pki.operator.cert,
                                       self.pki.operator.key)
        self._say(f"QuSeC ready: gRPC {ctl.grpc_addr}, metrics {ctl.http_url}, operator {ctl.https_url}")
        if ctl.dashboard_url:
            self._say(f"QuSeC dashboard (open in a browser on this machine): {ctl.dashboard_url}")
        return {"grpc": ctl.grpc_addr, "http": ctl.http_url, "https": ctl.https_url}

    def _adjust(self, node_id: str, cfg: Any) -> None:
        for k, v in self.limits.items():
            setattr(cfg.limits, k, v)
        if self.config_hook is not None:
            self.config_hook(node_id, cfg)

    def start(self) -> Path:
        """Bring everything up; returns the path of network.json. LaunchError, with nothing in
        the state dir touched, while another launcher holds it."""
        from mininet_topos.provision.agents import configs_for_topology
        from mininet_topos.provision.pki import build_pki
        try:
            self.claim = rundir.claim(self.state_dir, "local")
        except rundir.StateDirInUse as exc:
            raise LaunchError(str(exc)) from None
        self.claim.stop_crashed(self._say)
        self._say(f"PKI for {len(self.topology.nodes)} nodes and {len(self.topology.saes)} SAEs "
                  f"in {self.state_dir / 'pki'}")
        if self.pki is None:   # one made beforehand (several domains' PKIs) is used as it is
            self.pki = build_pki(self.topology, self.state_dir / "pki")
        self.qusec = self._start_qusec() if self.with_qusec else None
        self.fleet.write_configs(configs_for_topology(self.topology, self.pki, self.state_dir,
                                                      qusec_addr=(self.qusec or {}).get("grpc")),
                                 self._adjust)
        self.fleet.spawn_all()
        self._wait(list(self.configs))
        self._write_network_json()
        self._say(f"network {self.topology.name} up: {len(self.agents)} agents; {self.network_json}")
        return self.network_json

    def _wait(self, nodes: list[str]) -> None:
        """Until every agent in ``nodes`` serves (agent.json) and, with QuSeC, is registered."""
        self.fleet.wait_ready(nodes, timeout=READY_TIMEOUT_S, say=self._say)
        if self.qusec:
            self.wait_registered(set(nodes))

    def registered_nodes(self) -> set[str]:
        """Nodes QuSeC has a live registration for now (its /status, as the operator)."""
        try:
            core = self.operator.status(timeout=2).get("core", {})
        except (OSError, ValueError, AttributeError):
            return set()
        return {n for n, v in core.get("nodes", {}).items() if v.get("online")}

    def wait_registered(self, nodes: set[str], timeout: float = READY_TIMEOUT_S) -> float:
        """Seconds until every node in ``nodes`` is registered with QuSeC (LaunchError after
        ``timeout``)."""
        t0 = time.monotonic()
        while not nodes <= self.registered_nodes():
            if time.monotonic() - t0 > timeout:
                raise LaunchError(f"nodes not registered with QuSeC after {timeout:.0f} s: "
                                  f"{sorted(nodes - self.registered_nodes())} (logs: "
                                  f"{self.state_dir}/NODE/agent.log, {self.state_dir}/qusec/osken.log)")
            time.sleep(0.05)
        return time.monotonic() - t0

    def _write_network_json(self) -> None:
        write_network_json(self.network_json, self.topology, self.pki, self.agents, self.qusec)

    def restart_agent(self, node_id: str, *, kill: bool = True) -> dict:
        """Kill (-9) or stop one agent and start it again on the same state dir; returns its new agent.json."""
        self.respawn_agent(node_id, kill=kill)
        self._wait([node_id])
        self._write_network_json()
        return self.agents[node_id]

    def stop(self) -> None:
        """Stop every process started here (SIGTERM, then SIGKILL after 10 s)."""
        self.fleet.stop()
        if self.controller is not None:
            self.controller.stop()
            self.controller = None
        if self.claim is not None:
            self.claim.release()
            self.claim = None
