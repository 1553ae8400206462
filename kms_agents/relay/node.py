"""One agent's relay, wired from its config: control client, engine, pre-relay buffers, relayer, servicer.

Built by the agent at start (:class:`kms_agents.agent.Agent`). The KeyRelay servicer
serves on the agent's node-to-node gRPC server (mutual TLS; the peer vKMS is named by
its certificate's ``urn:qusec:node:`` identity), the control client starts when the config names a QuSeC address,
and the relayer relays keys for non-neighbour SAEs hop by hop.
"""
from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from kms_agents.channels import PeerChannels
from kms_agents.config import AgentConfig
from kms_agents.control_client import ControlClient, ControlSettings, Registration
from kms_agents.keysource import KeySource
from kms_agents.identity import NodeIdentity
from kms_agents.keystore import KeyStore
from kms_agents.relay import crypto
from kms_agents.relay.authz import AuthTable
from kms_agents.relay.engine import RelayEngine
from kms_agents.relay.links import ConsumptionMeter, best_link, link_states
from kms_agents.relay.prerelay import PreRelay
from kms_agents.relay.network import NetworkRelayer
from kms_agents.relay.servicer import KeyRelayServicer
from kms_agents.relay.transport import RelayTransport

log = logging.getLogger(__name__)


def make_identity(node_id: str, ca_cert: str, cert: str, key: str) -> NodeIdentity | None:
    """The node's signing identity for hybrid keys (None, with a warning, if unreadable)."""
    try:
        return NodeIdentity.load(node_id, cert, key, ca_cert)
    except (OSError, ValueError) as exc:
        log.warning("no TLS identity for hybrid keys (%s); hybrid/pqc relays will be refused", exc)
        return None


class RelayNode:
    """Everything the relay adds to one agent (``endpoints``: what agent.json says, once bound)."""

    def __init__(self, config: AgentConfig, *, links: Sequence[KeySource], store: KeyStore,
                 channels: PeerChannels, endpoints: Callable[[], dict[str, Any]]) -> None:
        tls, settings = config.tls, config.relay
        self.config = config
        self.settings = settings
        self._links = links
        self._endpoints = endpoints
        self.authz = AuthTable()
        self.meter = ConsumptionMeter()
        self.transport = RelayTransport(channels)
        self.identity = make_identity(config.node_id, tls.ca_cert, tls.cert, tls.key)
        self.control: ControlClient | None = None
        if config.qusec_addr:
            self.control = ControlClient(
                ControlSettings(target=config.qusec_addr, ca_cert=Path(tls.ca_cert),
                                cert=Path(tls.cert), key=Path(tls.key),
                                report_interval_s=settings.report_interval_s,
                                path_deadline_s=settings.path_deadline_s,
                                backoff_max_s=settings.backoff_max_s),
                register=self.registration, links=lambda: link_states(links, self.meter),
                authz=self.authz, on_revoke=lambda pid, why: self.engine.on_revoke(pid, why),
                on_reregistered=lambda: self.engine.forget_all_paths())
        self.engine = RelayEngine(
            config.node_id, sources=lambda peer: best_link(links, peer),
            link=lambda lid: next((lk for lk in links if lk.link_id == lid), None),
            all_sources=lambda: list(links), store=store, authz=self.authz,
            request_path=self.control.request_path if self.control else None,
            release_path=self.control.release_path if self.control else None,
            send=self.transport.relay, send_void=self.transport.void, identity=self.identity,
            hop_timeout_s=settings.hop_timeout_s, max_parallel=settings.max_parallel,
            sae_node=lambda sae: config.saes.get(sae))
        self.prerelay = PreRelay(self.engine, max_keys=settings.prerelay_max_keys) \
            if settings.prerelay else None
        self.relayer = NetworkRelayer(self.engine, prerelay=self.prerelay,
                                      routes_foreign=self.control is not None)
        self.servicer = KeyRelayServicer(self.engine.receiver)
        log.info("relay of node %s ready (QuSeC %s)", config.node_id,
                 config.qusec_addr or "not configured: direct links only")

    def registration(self) -> Registration:
        """What a (re)connecting control stream registers (the endpoints are final by then)."""
        ep = self._endpoints()
        data_ip = self.settings.data_ip or ep["relay_addr"].rpartition(":")[0].strip("[]")
        return Registration(
            node_id=self.config.node_id, relay_addr=self.settings.advertise_addr or ep["relay_addr"],
            etsi014_url=ep["etsi014_url"], etsi004_addr=ep["etsi004_addr"], data_ip=data_ip,
            trust_level=int(self.config.trust), links=link_states(self._links),
            saes=self.config.local_saes(), agent_version=f"qusec-agent/{crypto.VERSION}")

    def report_now(self) -> None:
        """Send QuSeC this node's link states now (a link fault changed), not at the next report."""
        if self.control is not None:
            self.control.report_now()

    def start(self) -> None:
        """Once every server is serving: connect to QuSeC, fill buffers."""
        if self.control is not None:
            self.control.start()
        if self.prerelay is not None:
            self.prerelay.start()

    def stop(self) -> None:
        """Before the servers and the channel pool close (buffers are voided over it)."""
        if self.prerelay is not None:
            self.prerelay.stop()
        if self.control is not None:
            self.control.stop()
        self.engine.close()
