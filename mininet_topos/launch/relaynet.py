"""A loopback network from a topology TOML string, with per-node ``[relay]`` settings.

A :class:`~mininet_topos.launch.local.LocalNetwork` (QuSeC under osken-manager, one kms-agent
per node, mutual TLS on loopback, no root) started at construction, for the relay integration
tests and the relay part of ``qkdnet bench latency/throughput``: unlike ``qkdnet up --local``
it lets a caller put an interposer in front of a node (``advertise_addr``), switch pre-relay
buffers on, or size the link buffers.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from kms_agents.client import Etsi014Client
from mininet_topos import topology
from mininet_topos.launch.local import LocalNetwork


class RelayNet(LocalNetwork):
    """QuSeC + one agent per node of ``topology_toml`` under ``root``; stopped by ``stop()``."""

    def __init__(self, root: Path, topology_toml: str, *, policy_toml: str | None = None,
                 relay_settings: dict[str, dict[str, Any]] | None = None,
                 limits: dict[str, int] | None = None, link_capacity_bytes: int = 0) -> None:
        root = Path(root)
        root.mkdir(parents=True, exist_ok=True)
        (root / "topo.toml").write_text(topology_toml)
        policy = None
        if policy_toml:
            policy = root / "policy.toml"
            policy.write_text(policy_toml)
        relay_settings = relay_settings or {}

        def adjust(node: str, cfg: Any) -> None:
            if node in relay_settings:
                cfg.relay = dataclasses.replace(cfg.relay, **relay_settings[node])
            if link_capacity_bytes:
                for link in cfg.links:
                    link.capacity_bytes = link_capacity_bytes

        super().__init__(topology.load(str(root / "topo.toml")), root, policy=policy,
                         limits=limits, config_hook=adjust)
        try:
            self.start()
        except BaseException:
            self.stop()
            raise

    @property
    def info(self) -> dict[str, dict]:
        """node -> its agent.json (endpoints)."""
        return self.agents

    def client(self, sae: str) -> Etsi014Client:
        """An ETSI 014 client of ``sae`` (its certificate) at its node's vKMS."""
        node = self.topology.saes[sae].node
        pair = self.pki.saes[sae]
        return Etsi014Client(self.agents[node]["etsi014_url"], self.pki.ca_cert, pair.cert, pair.key,
                             kme_node=node)

    def db(self, node: str) -> Path:
        """The node's SQLite key store."""
        return Path(self.configs[node].state_dir) / "keys.db"
