"""``kms-agent --config FILE``: one node's vKMS (ETSI 014 HTTPS, 004-style gRPC, peer/relay gRPC).

Start-up: open the key store, build one key source per QKD link end, create the gRPC
servers, import each module of :data:`AGENT_PLUGINS` that exists and call its
``attach(agent)`` (it may add servicers to ``agent.relay_server`` and replace
``agent.relayer``), start serving, then write ``STATE_DIR/agent.json`` with the real
bound endpoints (launchers poll it). SIGTERM/SIGINT stop everything cleanly.
"""
from __future__ import annotations

import argparse
import importlib
import json
import logging
import os
import signal
import sys
import threading
from collections.abc import Callable
from concurrent import futures
from pathlib import Path
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from kms_agents.config import AgentConfig, ConfigError, load_config
from kms_agents.etsi004 import Etsi004Servicer, KeyStreams
from kms_agents.etsi014 import Etsi014Server
from kms_agents.keysource import KeySource, make_key_source
from kms_agents.keystore import KeyStore
from kms_agents.peers import PeerClients, PeerServicer
from kms_agents.proto import etsi004_pb2, etsi004_pb2_grpc, peer_pb2, peer_pb2_grpc
from kms_agents.service import KeyService, NoRelayer, Relayer

log = logging.getLogger("kms_agents.agent" if __name__ == "__main__" else __name__)

AGENT_PLUGINS: tuple[str, ...] = ("kms_agents.relay_node",)
GRPC_WORKERS = 32


def _grpc_server(server_creds: grpc.ServerCredentials, listen: str) -> tuple[grpc.Server, int, health.HealthServicer]:
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=GRPC_WORKERS, thread_name_prefix="grpc"))
    port = server.add_secure_port(listen, server_creds)
    if port == 0:
        raise OSError(f"cannot listen on {listen}")
    hs = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(hs, server)
    return server, port, hs


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
    """A running vKMS. Attributes plugins may use are documented in docs/agent.md."""

    def __init__(self, config: AgentConfig) -> None:
        self.config = config
        self.node_id = config.node_id
        self.state_dir = Path(config.state_dir)
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self._lock_file = _lock_state_dir(self.state_dir)
        self.agent_json = self.state_dir / "agent.json"
        if self.agent_json.exists():
            self.agent_json.unlink()   # a stale file must never look like readiness
        tls = config.tls
        ca, cert, key = (Path(p).read_bytes() for p in (tls.ca_cert, tls.cert, tls.key))
        self.server_credentials = grpc.ssl_server_credentials([(key, cert)], root_certificates=ca,
                                                              require_client_auth=True)
        self.channel_credentials = grpc.ssl_channel_credentials(ca, key, cert)
        self.store = KeyStore(self.state_dir / "keys.db")
        self.links: list[KeySource] = [make_key_source(lk, self.node_id, self.store, tls) for lk in config.links]
        self.peers = PeerClients(config.peers, self.channel_credentials)
        self.service = KeyService(self.node_id, config.saes, self.links, self.store, config.limits,
                                  self.peers, NoRelayer(self.node_id))
        self.streams = KeyStreams(self.service, self.peers.stream_event, graph=config.graph)
        self.relay_server, self.relay_port, self._relay_health = _grpc_server(self.server_credentials,
                                                                              config.listen_relay)
        peer_pb2_grpc.add_PeerKmsServicer_to_server(PeerServicer(self.service, self.streams.on_peer_event),
                                                    self.relay_server)
        self.relay_services: list[str] = [peer_pb2.DESCRIPTOR.services_by_name["PeerKms"].full_name]
        self.etsi004_server, self.etsi004_port, self._app_health = _grpc_server(self.server_credentials,
                                                                                config.listen_etsi004)
        etsi004_pb2_grpc.add_KeyDeliveryServicer_to_server(Etsi004Servicer(self.streams), self.etsi004_server)
        self.etsi014 = Etsi014Server(self.service, config.listen_etsi014, tls.ca_cert, tls.cert, tls.key)
        self.plugins: list[Any] = []
        self._started_hooks: list[Callable[[], None]] = []
        self._stop_hooks: list[Callable[[], None]] = []
        self._stopped = threading.Event()

    # -- for plugins ----------------------------------------------------------------------
    @property
    def relayer(self) -> Relayer:
        return self.service.relayer

    @relayer.setter
    def relayer(self, value: Relayer) -> None:
        self.service.relayer = value

    def peer_channel(self, node: str, refresh: bool = False) -> grpc.Channel:
        """Mutual-TLS channel to a neighbour's relay/peer gRPC server (``refresh``: re-read its address,
        e.g. after UNAVAILABLE, since a restarted neighbour may listen on a new port)."""
        return self.peers.channel(node, refresh=refresh)

    def on_started(self, fn: Callable[[], None]) -> None:
        """Run ``fn`` once every server is serving (before agent.json is written)."""
        self._started_hooks.append(fn)

    def on_stop(self, fn: Callable[[], None]) -> None:
        """Run ``fn`` first when the agent stops."""
        self._stop_hooks.append(fn)

    def _advertised(self, listen: str, port: int) -> str:
        host = self.config.advertise_host or listen.rpartition(":")[0].strip("[]")
        if host in ("", "0.0.0.0", "::"):
            host = "127.0.0.1"
        return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"

    @property
    def endpoints(self) -> dict[str, Any]:
        return {"node_id": self.node_id, "pid": os.getpid(),
                "etsi014_url": "https://" + self._advertised(self.config.listen_etsi014, self.etsi014.port),
                "etsi004_addr": self._advertised(self.config.listen_etsi004, self.etsi004_port),
                "relay_addr": self._advertised(self.config.listen_relay, self.relay_port),
                "links": [{"id": lk.link_id, "peer": lk.peer_node, "kind": lk.kind, "rate_bps": lk.rate_bps}
                          for lk in self.links],
                "saes": self.config.local_saes()}

    # -- lifecycle ----------------------------------------------------------------------------
    def load_plugins(self, names: tuple[str, ...] = AGENT_PLUGINS) -> None:
        for name in names:
            try:
                module = importlib.import_module(name)
            except ModuleNotFoundError as exc:
                if exc.name != name:
                    raise
                log.debug("plugin %s not installed", name)
                continue
            module.attach(self)
            self.plugins.append(module)
            log.info("plugin %s attached", name)

    def start(self) -> None:
        for server, services in ((self.relay_server, self.relay_services),
                                 (self.etsi004_server, [etsi004_pb2.DESCRIPTOR.services_by_name["KeyDelivery"]
                                                        .full_name])):
            reflection.enable_server_reflection([*services, health_pb2.DESCRIPTOR.services_by_name["Health"]
                                                 .full_name, reflection.SERVICE_NAME], server)
            server.start()
        for hs in (self._relay_health, self._app_health):
            hs.set("", health_pb2.HealthCheckResponse.SERVING)
        self.etsi014.start()
        for fn in self._started_hooks:
            fn()
        tmp = self.agent_json.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.endpoints, indent=2) + "\n")
        os.replace(tmp, self.agent_json)
        log.info("node %s serving: %s", self.node_id, self.endpoints)

    def stop(self) -> None:
        if self._stopped.is_set():
            return
        self._stopped.set()
        for fn in self._stop_hooks:
            try:
                fn()
            except Exception:  # noqa: BLE001 - keep stopping the rest
                log.exception("stop hook failed")
        for hs in (self._relay_health, self._app_health):
            hs.enter_graceful_shutdown()
        self.etsi014.stop()
        for server in (self.etsi004_server, self.relay_server):
            server.stop(grace=1.0).wait(2.0)
        self.peers.close()
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
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(),
                        format="%(asctime)s %(levelname)s %(name)s %(message)s")
    try:
        cfg = load_config(args.config)
    except ConfigError as exc:
        print("\n".join(exc.problems), file=sys.stderr)
        return 2
    stop = threading.Event()
    started = threading.Event()

    def on_signal(signum: int, _frame: Any) -> None:
        stop.set()
        if not started.is_set():   # still starting (e.g. a plugin blocks): abort start-up now
            raise KeyboardInterrupt(f"signal {signum} during start-up")

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, on_signal)
    try:
        agent = Agent(cfg)
    except StateDirBusy as exc:
        print(f"kms-agent: {exc}", file=sys.stderr)
        return 3
    try:
        agent.load_plugins()
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
