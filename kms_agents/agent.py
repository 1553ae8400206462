"""``kms-agent --config FILE``: one node's vKMS (ETSI 014 HTTPS, 004-style gRPC, peer/relay gRPC).

Start-up: make the state directory private (0700: the key store is in it), open the key
store, build one key source per QKD link end, create the gRPC servers with their
servicers (PeerKms and KeyRelay on the node-to-node server, for nodes; ETSI 004
KeyDelivery on the application one, ``grpc.aio``, for SAEs) and the relay
(:class:`~kms_agents.relay.node.RelayNode`; Manage, the operators' management API, on the
node-to-node server too), serve /metrics, start serving, start the relay
(control stream to QuSeC, pre-relay buffers), then write ``STATE_DIR/agent.json`` with the
real bound endpoints (launchers poll it). SIGTERM/SIGINT stop everything cleanly.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import threading
from pathlib import Path
from typing import Any

from kms_agents import logformat, metrics, rpc, version
from kms_agents.channels import PeerChannels
from kms_agents.config import AgentConfig, ConfigError, load_config
from kms_agents.etsi004 import Etsi004Servicer, KeyStreams
from kms_agents.etsi014 import Etsi014Server
from kms_agents.etsi020.crossing import Crossing
from kms_agents.etsi020.node import Etsi020Node
from kms_agents.relay.pqclink import PqcLink, handoffs
from kms_agents.keysource import KeySource, KeySourceError, make_key_source
from kms_agents.keystore import KeyStore
from kms_agents.manage import ManageServicer
from kms_agents.peers import PeerClient, PeerServicer
from kms_agents.proto import (etsi004_pb2, etsi004_pb2_grpc, manage_pb2, manage_pb2_grpc, peer_pb2,
                              peer_pb2_grpc, relay_pb2, relay_pb2_grpc)
from kms_agents.relay.node import RelayNode
from kms_agents.service import KeyService

log = logging.getLogger("kms_agents.agent" if __name__ == "__main__" else __name__)


class StateDirBusy(RuntimeError):
    """Another agent already runs on this state directory."""


def _lock_state_dir(state_dir: Path):
    """Hold an exclusive lock on STATE_DIR/agent.lock for the agent's lifetime (one agent per key store)."""
    import fcntl
    f = open(state_dir / "agent.lock", "a+")
    try:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        f.seek(0)
        holder = f.read().strip() or "?"
        f.close()
        raise StateDirBusy(f"{state_dir}: another agent (pid {holder}) is running on this state directory") from None
    f.seek(0)
    f.truncate()
    f.write(str(os.getpid()))
    f.flush()
    return f


class Agent:
    """A running vKMS."""

    def __init__(self, config: AgentConfig) -> None:
        self.config = config
        self.node_id = config.node_id
        self.state_dir = Path(config.state_dir)
        self.state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(self.state_dir, 0o700)   # the key store is in it: no one else's to read
        self._lock_file = _lock_state_dir(self.state_dir)
        self.agent_json = self.state_dir / "agent.json"
        if self.agent_json.exists():
            self.agent_json.unlink()   # a stale file must never look like readiness
        tls = config.tls
        credentials = rpc.server_credentials(tls.ca_cert, tls.cert, tls.key)
        self.store = KeyStore(self.state_dir / "keys.db")
        self.links: list[KeySource] = [make_key_source(lk, self.node_id, self.store, tls) for lk in config.links]
        self.channels = PeerChannels(rpc.channel_credentials(tls.ca_cert, tls.cert, tls.key), config.peers)
        self.peers = PeerClient(self.channels)
        self.relay = RelayNode(config, links=self.links, store=self.store, channels=self.channels,
                               endpoints=lambda: self.endpoints)
        self.service = KeyService(self.node_id, config.saes, self.links, self.store, config.limits, self.peers,
                                  self.relay.relayer)
        self.streams = KeyStreams(self.service, self.peers.stream_event, graph=config.graph,
                                  identity=self.relay.identity, caps=config.caps)
        self.relay_server = rpc.Server(config.listen_relay, credentials)
        self.relay_server.add(peer_pb2_grpc.add_PeerKmsServicer_to_server,
                              PeerServicer(self.service.delivery, self.streams.on_peer_event),
                              peer_pb2.DESCRIPTOR.services_by_name["PeerKms"])
        self.relay_server.add(relay_pb2_grpc.add_KeyRelayServicer_to_server, self.relay.servicer,
                              relay_pb2.DESCRIPTOR.services_by_name["KeyRelay"])
        # the management API (operators only): link faults, reported to QuSeC at once
        self.relay_server.add(manage_pb2_grpc.add_ManageServicer_to_server,
                              ManageServicer(self.node_id, self.links, self.relay.report_now),
                              manage_pb2.DESCRIPTOR.services_by_name["Manage"])
        self.etsi004_server = rpc.AioServer(config.listen_etsi004, credentials)
        self.etsi004_server.add(etsi004_pb2_grpc.add_KeyDeliveryServicer_to_server, Etsi004Servicer(self.streams),
                                etsi004_pb2.DESCRIPTOR.services_by_name["KeyDelivery"])
        self.etsi014 = Etsi014Server(self.service, config.listen_etsi014, tls.ca_cert, tls.cert, tls.key,
                                     caps=config.caps)
        # ETSI GS QKD 020 toward KMEs of other networks ([etsi020], docs/etsi020.md); with QuSeC
        # too, the node is an interworking KME (docs/interworking.md): keys relayed here for
        # another domain's SAE are handed to the peer KME, and the peer's keys go on through
        # the relay
        self.crossing = Crossing(self.node_id, config.saes) \
            if (config.etsi020 or config.pqc) is not None and self.relay.control is not None else None
        self.etsi020 = None if config.etsi020 is None else Etsi020Node(
            config.etsi020, tls, self.node_id, config.saes, self.store, advertise_host=config.advertise_host,
            relay_onward=self.crossing.onward if self.crossing else None,
            on_settled=self.crossing.settled if self.crossing else None,
            on_voided=self.crossing.voided if self.crossing else None)
        # a post-quantum link's end ([pqc], docs/interworking.md): keys cross it under ML-KEM
        self.pqc = PqcLink(config.pqc, tls, self.node_id, self.relay.identity, self.crossing) \
            if config.pqc is not None and self.crossing is not None else None
        if self.crossing is not None:
            self.crossing.node, self.crossing.engine = self.etsi020, self.relay.engine
            self.relay.engine.receiver.handoff, self.relay.engine.receiver.handoff_void = \
                handoffs(self.crossing, self.pqc)
        self.metrics_http, self.metrics_port = metrics.serve(config.listen_metrics)
        metrics.watch_levels(self.levels)
        self._stopped = threading.Event()

    def levels(self) -> metrics.Levels:
        """Link key and end-to-end keys held here now (read at each /metrics scrape). SAE pairs are
        those of the config only: a label is never a name a peer made up."""
        links = []
        for lk in self.links:
            try:
                links.append(metrics.LinkLevel(lk.link_id, 8 * lk.available_bytes(), 8 * lk.capacity_bytes()))
            except (KeySourceError, OSError):   # e.g. a vendor KMS that does not answer
                links.append(metrics.LinkLevel(lk.link_id, None, None))
        known = self.config.saes
        pending = {pair: v for pair, v in self.store.pending_levels().items()
                   if pair[0] in known and pair[1] in known}
        return metrics.Levels(links, pending)

    def _advertised(self, listen: str, port: int) -> str:
        host = self.config.advertise_host or listen.rpartition(":")[0].strip("[]")
        if host in ("", "0.0.0.0", "::"):
            host = "127.0.0.1"
        return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"

    def _metrics_host(self) -> str:
        host = self.config.listen_metrics.rpartition(":")[0].strip("[]")
        host = "127.0.0.1" if host in ("", "0.0.0.0", "::") else host
        return f"[{host}]" if ":" in host else host

    @property
    def endpoints(self) -> dict[str, Any]:
        return {"node_id": self.node_id, "pid": os.getpid(),
                "etsi014_url": "https://" + self._advertised(self.config.listen_etsi014, self.etsi014.port),
                "etsi004_addr": self._advertised(self.config.listen_etsi004, self.etsi004_server.port),
                "relay_addr": self._advertised(self.config.listen_relay, self.relay_server.port),
                "metrics_url": f"http://{self._metrics_host()}:{self.metrics_port}/metrics",
                "links": [{"id": lk.link_id, "peer": lk.peer_node, "kind": lk.kind, "rate_bps": lk.rate_bps}
                          for lk in self.links],
                "saes": self.config.local_saes(),
                **({"etsi020_url": self.etsi020.url} if self.etsi020 else {}),
                **({"pqc_addr": self._advertised(self.config.pqc.listen, self.pqc.server.port)}
                   if self.pqc else {})}

    # -- lifecycle ----------------------------------------------------------------------------
    def start(self) -> None:
        for server in (self.relay_server, self.etsi004_server):
            server.start()
        self.etsi014.start()
        if self.etsi020:
            self.etsi020.start()
        if self.pqc:
            self.pqc.start()
        self.relay.start()   # registers with QuSeC: the endpoints are final once every server serves
        tmp = self.agent_json.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.endpoints, indent=2) + "\n")
        os.replace(tmp, self.agent_json)
        log.info("node %s serving: %s", self.node_id, self.endpoints)

    def stop(self) -> None:
        if self._stopped.is_set():
            return
        self._stopped.set()
        try:
            self.relay.stop()
        except Exception:  # noqa: BLE001 - keep stopping the rest
            log.exception("stopping the relay failed")
        for server in (self.relay_server, self.etsi004_server):
            server.draining()
        self.etsi014.stop()
        if self.etsi020:
            self.etsi020.stop()
        if self.pqc:
            self.pqc.stop()
        for server in (self.etsi004_server, self.relay_server):
            server.stop(grace=1.0)
        self.streams.close_executor()
        metrics.unwatch_levels(self.levels)
        self.metrics_http.shutdown()
        self.metrics_http.server_close()
        self.channels.close()
        for lk in self.links:
            lk.close()
        self.store.close()
        try:
            self.agent_json.unlink()
        except FileNotFoundError:
            pass
        self._lock_file.close()
        log.info("node %s stopped", self.node_id)

    def wait(self) -> None:
        self._stopped.wait()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="kms-agent", description="Run one node's vKMS agent.")
    parser.add_argument("--config", required=True, type=Path, help="agent TOML config (docs/agent.md)")
    parser.add_argument("--log-level", default=os.environ.get("QUSEC_LOG_LEVEL", "INFO"))
    parser.add_argument("--version", action="version", version=f"%(prog)s {version()}")
    args = parser.parse_args(argv)
    logformat.configure(args.log_level.upper())   # logfmt lines on stderr (docs/agent.md)
    try:
        cfg = load_config(args.config)
    except ConfigError as exc:
        print("\n".join(exc.problems), file=sys.stderr)
        return 2
    stop = threading.Event()
    started = threading.Event()

    def on_signal(signum: int, _frame: Any) -> None:
        stop.set()
        if not started.is_set():   # still starting (e.g. a link KMS blocks): abort start-up now
            raise KeyboardInterrupt(f"signal {signum} during start-up")

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, on_signal)
    try:
        agent = Agent(cfg)
    except StateDirBusy as exc:
        print(f"kms-agent: {exc}", file=sys.stderr)
        return 3
    try:
        agent.start()
        started.set()
        while not stop.wait(1.0):
            pass
    except KeyboardInterrupt:
        log.warning("node %s: stopped during start-up", cfg.node_id)
        return 1
    finally:
        started.set()
        agent.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
