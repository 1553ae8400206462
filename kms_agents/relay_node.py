"""Relay plugin of the vKMS agent: KeyRelay gRPC service, QuSeC control client, network relayer.

``attach(agent)`` is called by the agent at start (``AGENT_PLUGINS``). It registers the
KeyRelay servicer (relay.proto) on the agent's gRPC server (mutual TLS; the peer vKMS
is identified by its certificate CN), starts the control client when the config names
a QuSeC address, and replaces the agent's relayer with :class:`NetworkRelayer`, which
relays keys for non-neighbour SAEs hop by hop (:mod:`kms_agents.relay_engine`).
"""
from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import grpc

from kms_agents import relay_crypto
from kms_agents.authz import AuthTable
from kms_agents.hybrid import NodeIdentity
from kms_agents.proto import relay_pb2, relay_pb2_grpc
from kms_agents.relay_engine import RelayEngine, RelayFailure
from kms_agents.relay_wire import OptionUnmet
from quseccontroller.proto import control_pb2

log = logging.getLogger(__name__)

LEVEL_ORDER = ("qkd", "hybrid", "pqc")


def peer_cn(context: grpc.ServicerContext) -> str:
    """The common name of the TLS client certificate ('' without one)."""
    names = context.auth_context().get("x509_common_name") or []
    return names[0].decode() if names else ""


class PeerChannels:
    """Mutual-TLS channels to neighbour vKMSs, one per (node, address), checked against the node id."""

    def __init__(self, ca_cert: str | Path, cert: str | Path, key: str | Path) -> None:
        self._creds = grpc.ssl_channel_credentials(
            root_certificates=Path(ca_cert).read_bytes(), private_key=Path(key).read_bytes(),
            certificate_chain=Path(cert).read_bytes())
        self._stubs: dict[tuple[str, str], relay_pb2_grpc.KeyRelayStub] = {}
        self._channels: list[grpc.Channel] = []
        self._lock = threading.Lock()

    def stub(self, node: str, addr: str) -> relay_pb2_grpc.KeyRelayStub:
        if not addr:
            raise RelayFailure(grpc.StatusCode.FAILED_PRECONDITION,
                               f"no relay address known for next hop {node}")
        with self._lock:
            stub = self._stubs.get((node, addr))
            if stub is None:
                # the peer's certificate must name the node we mean to reach (SAN = node id)
                channel = grpc.secure_channel(addr, self._creds, options=[
                    ("grpc.ssl_target_name_override", node)])
                self._channels.append(channel)
                stub = self._stubs[(node, addr)] = relay_pb2_grpc.KeyRelayStub(channel)
            return stub

    def relay(self, node: str, addr: str, req: relay_pb2.RelayRequest,
              timeout: float) -> relay_pb2.RelayAck:
        return self._call("Relay", node, addr, req, timeout)

    def void(self, node: str, addr: str, req: relay_pb2.VoidRequest,
             timeout: float) -> relay_pb2.RelayAck:
        return self._call("Void", node, addr, req, timeout)

    def _call(self, method: str, node: str, addr: str, req: Any, timeout: float) -> relay_pb2.RelayAck:
        try:
            return getattr(self.stub(node, addr), method)(req, timeout=timeout)
        except grpc.RpcError as exc:
            raise RelayFailure(exc.code(), exc.details() or f"next hop {node}: {exc.code().name}")

    def close(self) -> None:
        with self._lock:
            for channel in self._channels:
                channel.close()
            self._channels.clear()
            self._stubs.clear()


class KeyRelayServicer(relay_pb2_grpc.KeyRelayServicer):
    """Thin adapter: proto in -> engine -> proto out; RelayFailure -> gRPC status."""

    def __init__(self, engine: RelayEngine) -> None:
        self.engine = engine

    def _run(self, fn: Callable, request: Any, context: grpc.ServicerContext) -> Any:
        peer = peer_cn(context)
        if not peer:
            context.abort(grpc.StatusCode.UNAUTHENTICATED, "relay needs a client certificate")
        try:
            return fn(request, peer)
        except RelayFailure as exc:
            log.warning("relay from %s refused: %s: %s", peer, exc.code.name, exc.message)
            context.abort(exc.code, exc.message)
        except Exception as exc:  # keep serving; the caller gets a status, not a hang
            log.exception("relay from %s failed", peer)
            context.abort(grpc.StatusCode.INTERNAL, f"node {self.engine.node_id}: {exc}")

    def Relay(self, request: relay_pb2.RelayRequest,
              context: grpc.ServicerContext) -> relay_pb2.RelayAck:
        return self._run(self.engine.handle_relay, request, context)

    def Void(self, request: relay_pb2.VoidRequest,
             context: grpc.ServicerContext) -> relay_pb2.RelayAck:
        return self._run(self.engine.handle_void, request, context)


def effective_level(policy_level: str, requested: str | None) -> str:
    """The security level a relay uses: the policy's, upgraded to hybrid when the SAE asks for it.

    ``pqc`` is only ever used when the policy says so (a fallback, never a request).
    """
    policy_level = policy_level or "qkd"
    if not requested or requested == policy_level:
        return policy_level
    if requested == "hybrid" and policy_level == "qkd":
        return "hybrid"  # strictly stronger: HKDF over the QKD key and an ML-KEM secret
    raise RelayFailure(grpc.StatusCode.FAILED_PRECONDITION,
                       f"security level {requested!r} requested but the matched policy gives "
                       f"{policy_level!r}")


def max_hops_check(max_hops: int) -> Callable[[control_pb2.PathReply], None]:
    """A path check refusing granted paths that cross more than ``max_hops`` trusted nodes."""
    def check(reply: control_pb2.PathReply) -> None:
        paths = [[h.node_id for h in p.hops] for p in reply.paths]
        hops = max((len(p) - 2 for p in paths), default=0)
        if hops > max_hops:
            raise OptionUnmet(f"QuSeC's path {' | '.join('-'.join(p) for p in paths)} crosses {hops} "
                              f"trusted relay nodes; qusec_max_hops is {max_hops}",
                              {"qusec_max_hops": max_hops, "qusec_hops": hops, "qusec_paths": paths})
    return check


class NetworkRelayer:
    """The agent's relayer (service.Relayer protocol) backed by a RelayEngine."""

    def __init__(self, engine: RelayEngine, *, error: Callable[[int, str, list], Exception],
                 result: Callable[..., Any], prerelay: Any = None) -> None:
        self.engine = engine
        self._error = error      # service.KeyServiceError
        self._result = result    # service.RelayResult
        self.prerelay = prerelay
        # ID tuples of key lists rewritten with derived (hybrid/pqc) keys, recently
        self._derived: deque[tuple[str, ...]] = deque(maxlen=256)

    def relay(self, *, master_sae: str, slave_saes: list[str], dst_node: str,
              keys: list[tuple[str, bytes]], security_level: str | None,
              extensions: dict[str, Any], options: Any = None) -> Any:
        """Relay ``keys``; the result's ``keys`` replace them for hybrid/pqc or buffered keys.

        ``options`` (service.RequestOptions): a mandatory ``qusec_max_hops`` is enforced on
        the granted path before any link key is spent (400 "not all extension_mandatory
        request options could be met" otherwise). The service relays one list to each
        destination node of a multi-node request; once a hybrid/pqc relay has replaced its
        keys by derived ones, no other node could derive the same, so such a second relay
        is refused rather than giving SAEs different keys under one ID.
        """
        ids = tuple(kid for kid, _ in keys)
        mandatory = dict(getattr(options, "mandatory", None) or {})
        max_hops = mandatory.get("qusec_max_hops")
        try:
            if ids in self._derived:
                raise RelayFailure(grpc.StatusCode.FAILED_PRECONDITION,
                                   "hybrid/pqc keys are agreed between two end nodes; they cannot "
                                   "be shared with SAEs on several nodes")
            if self.prerelay is not None and not security_level and max_hops is None:
                got = self.prerelay.take(master_sae, slave_saes, dst_node, keys)
                if got is not None:
                    return got
            relayed, reply, level = self.engine.relay_keys(
                master_sae=master_sae, slave_saes=slave_saes, dst_node=dst_node, keys=keys,
                level_for=lambda policy: effective_level(policy, security_level),
                check_path=None if max_hops is None else max_hops_check(int(max_hops)))
        except OptionUnmet as exc:
            from kms_agents.service import MSG_EXT_UNMET
            raise self._error(400, MSG_EXT_UNMET, [dict(exc.detail, reason=exc.message)]) from None
        except RelayFailure as exc:
            raise self._error(503, f"relay to node {dst_node} failed: {exc.message}",
                              [{"qusec_route_type": "indirect", "qusec_dst_node": dst_node,
                                "qusec_relay_status": exc.code.name}]) from None
        if self.prerelay is not None:
            self.prerelay.observe(master_sae, slave_saes, dst_node, len(keys), len(keys[0][1]))
        if level != "qkd":
            self._derived.append(ids)
        # the master gets what the slave gets: the derived key for hybrid/pqc
        return self._result(paths=[[h.node_id for h in p.hops] for p in reply.paths],
                            security_level=level, keys=[(k.key_id, k.key) for k in relayed])

    def stored_key_count(self, dst_node: str, key_size: int) -> int:
        """Keys of ``key_size`` bits that could be relayed now (bounded by this node's links)."""
        if self.prerelay is not None:
            buffered = self.prerelay.count(dst_node, key_size)
            if buffered:
                return buffered
        return self.engine.relayable_keys(key_size)

    def buffered_key_count(self, master_sae: str, slave_sae: str, dst_node: str, key_size: int) -> int:
        """Keys of ``key_size`` bits pre-relayed to ``dst_node`` for this SAE pair, ready to serve."""
        if self.prerelay is None:
            return 0
        return self.prerelay.count(dst_node, key_size, master_sae, slave_sae)


class ConsumptionMeter:
    """Recent link key consumption per link end, inferred from its key level over time.

    Between two looks, this end produced ``rate/2 x dt`` (its half of the link's key,
    unless the buffer was full) and its level moved by ``delta``; what is missing was
    consumed (relays, direct deliveries, key streams alike). Smoothed with a half-life.
    """

    def __init__(self, half_life_s: float = 10.0) -> None:
        self.half_life_s = half_life_s
        self._last: dict[str, tuple[float, int]] = {}
        self._bps: dict[str, float] = {}

    def update(self, link_id: str, now: float, stored_bits: int, rate_bps: float,
               capacity_bits: int | None = None) -> float:
        """Record a level; returns the smoothed consumption in bits/s."""
        last = self._last.get(link_id)
        self._last[link_id] = (now, stored_bits)
        if last is None or now <= last[0]:
            return self._bps.get(link_id, 0.0)
        dt = now - last[0]
        produced = rate_bps / 2 * dt
        if capacity_bits is not None:  # a full buffer drops what it cannot hold
            produced = min(produced, max(0, capacity_bits - last[1]))
        consumed = max(0.0, produced - (stored_bits - last[1])) / dt
        alpha = 1 - 0.5 ** (dt / self.half_life_s)
        bps = (1 - alpha) * self._bps.get(link_id, consumed) + alpha * consumed
        self._bps[link_id] = bps
        return bps


def link_states(sources: Sequence[Any], meter: ConsumptionMeter | None = None,
                now: float | None = None) -> list[control_pb2.QkdLinkState]:
    """control.proto link states of this node's link key sources."""
    out = []
    now = time.monotonic() if now is None else now
    for src in sources:
        consumption = 0.0
        try:
            stored = src.available_bytes() * 8
            status = control_pb2.LINK_STATUS_ACTIVE if stored else control_pb2.LINK_STATUS_PASSIVE
            if meter is not None:
                try:
                    cap = src.capacity_bytes() * 8
                except Exception:  # capacity unknown: assume the buffer never fills
                    cap = None
                consumption = meter.update(src.link_id, now, stored, float(src.rate_bps), cap)
        except Exception:  # an unreachable vendor KMS is reported as off, not raised
            stored, status = 0, control_pb2.LINK_STATUS_OFF
        out.append(control_pb2.QkdLinkState(link_id=src.link_id, peer_node=src.peer_node,
                                            skr_bps=float(src.rate_bps), stored_bits=stored,
                                            consumption_bps=consumption, status=status,
                                            kms_kind=getattr(src, "kind", "")))
    return out


def relay_hop_bytes(key_bytes: int) -> int:
    """Link key one hop burns for a key of ``key_bytes``: the pad plus the one-time MAC key."""
    return key_bytes + relay_crypto.MAC_KEY_BYTES


def make_identity(node_id: str, ca_cert: str, cert: str, key: str) -> NodeIdentity | None:
    """The node's signing identity for hybrid keys (None, with a warning, if unreadable)."""
    try:
        return NodeIdentity.load(node_id, cert, key, ca_cert)
    except (OSError, ValueError) as exc:
        log.warning("no TLS identity for hybrid keys (%s); hybrid/pqc relays will be refused", exc)
        return None


def _best_link(links: Sequence[Any], peer: str) -> Any | None:
    """This node's link toward ``peer`` with the most key ready (several modules may serve a pair)."""
    best, best_bytes = None, -1
    for src in links:
        if src.peer_node != peer:
            continue
        try:
            avail = src.available_bytes()
        except Exception:  # an unreachable vendor KMS is skipped
            continue
        if avail > best_bytes:
            best, best_bytes = src, avail
    return best


RELAY_FIELDS: dict[str, type] = {
    "hop_timeout_s": float, "max_parallel": int, "report_interval_s": float,
    "path_deadline_s": float, "backoff_max_s": float, "data_ip": str, "advertise_addr": str,
    "prerelay": bool, "prerelay_max_keys": int}


def relay_settings(config: Any) -> dict[str, Any]:
    """The agent config's optional ``[relay]`` section (documented in docs/relay.md)."""
    section = dict((getattr(config, "extra", None) or {}).get("relay", {}))
    where = f"{getattr(config, 'source', '') or '<config>'}: [relay]"
    unknown = sorted(set(section) - set(RELAY_FIELDS))
    if unknown:
        raise ValueError(f"{where}: unknown field(s) {', '.join(unknown)} "
                         f"(known: {', '.join(sorted(RELAY_FIELDS))})")
    for name, value in section.items():
        kind = RELAY_FIELDS[name]
        ok = (isinstance(value, bool) if kind is bool else
              isinstance(value, kind) and not isinstance(value, bool))
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            ok = True
        if not ok or (kind in (int, float) and value <= 0):
            raise ValueError(f"{where}: {name}: expected a positive {kind.__name__}"
                             if kind in (int, float) else
                             f"{where}: {name}: expected a {kind.__name__}, got {value!r}")
    return section


class RelayNode:
    """Everything the relay plugin adds to one agent; kept on ``agent.relay_node``."""

    def __init__(self, agent: Any) -> None:
        from kms_agents import service as service_mod
        from kms_agents.control_client import ControlClient, ControlSettings
        cfg = agent.config
        self.agent = agent
        self.settings = relay_settings(cfg)
        self.authz = AuthTable()
        self.meter = ConsumptionMeter()
        self.channels = PeerChannels(cfg.tls.ca_cert, cfg.tls.cert, cfg.tls.key)
        self.identity = make_identity(agent.node_id, cfg.tls.ca_cert, cfg.tls.cert, cfg.tls.key)
        self.control: ControlClient | None = None
        if cfg.qusec_addr:
            self.control = ControlClient(
                ControlSettings(target=cfg.qusec_addr, ca_cert=Path(cfg.tls.ca_cert),
                                cert=Path(cfg.tls.cert), key=Path(cfg.tls.key),
                                report_interval_s=float(self.settings.get("report_interval_s", 2.0)),
                                path_deadline_s=float(self.settings.get("path_deadline_s", 10.0)),
                                backoff_max_s=float(self.settings.get("backoff_max_s", 5.0))),
                register=self.register_message,
                links=lambda: link_states(agent.links, self.meter),
                authz=self.authz, on_revoke=lambda pid, why: self.engine.on_revoke(pid, why),
                on_reregistered=lambda: self.engine.forget_all_paths())
        links = agent.links
        self.engine = RelayEngine(
            agent.node_id, sources=lambda peer: _best_link(links, peer),
            link=lambda lid: next((lk for lk in links if lk.link_id == lid), None),
            all_sources=lambda: list(links), store=agent.store, authz=self.authz,
            request_path=self.control.request_path if self.control else None,
            release_path=self.control.release_path if self.control else None,
            send=self.channels.relay, send_void=self.channels.void, identity=self.identity,
            hop_timeout_s=float(self.settings.get("hop_timeout_s", 10.0)),
            max_parallel=int(self.settings.get("max_parallel", 8)),
            sae_node=lambda sae: cfg.saes.get(sae))
        self.prerelay = None
        if self.settings.get("prerelay"):
            from kms_agents.prerelay import PreRelay
            self.prerelay = PreRelay(self.engine, max_keys=int(self.settings.get(
                "prerelay_max_keys", 64)))
        self.relayer = NetworkRelayer(self.engine, error=service_mod.KeyServiceError,
                                      result=service_mod.RelayResult, prerelay=self.prerelay)

    def register_message(self) -> control_pb2.Register:
        """The Register a (re)connecting control stream sends first."""
        ep = self.agent.endpoints
        cfg = self.agent.config
        data_ip = self.settings.get("data_ip") or ep["relay_addr"].rpartition(":")[0].strip("[]")
        return control_pb2.Register(
            node_id=self.agent.node_id, relay_addr=self.settings.get("advertise_addr") or ep["relay_addr"],
            etsi014_url=ep["etsi014_url"], etsi004_addr=ep["etsi004_addr"], data_ip=data_ip,
            trust_level=int(cfg.trust), links=link_states(self.agent.links),
            saes=cfg.local_saes(), agent_version=f"qusec-agent/{relay_crypto.VERSION}")

    def address_of(self, node: str, src_sae: str, dst_sae: str) -> str:
        """Relay/peer gRPC address of a non-neighbour ``node`` (from a path QuSeC grants for
        the SAE pair), for node-to-node control messages such as ETSI 004 stream events.

        Raises RelayFailure when QuSeC refuses or is unreachable.
        """
        key_size = int(getattr(self.agent.config.limits, "key_size", 256))
        reply = self.engine.path_for(node, src_sae, dst_sae, key_size, 1)
        return reply.paths[0].hops[-1].relay_addr

    def start(self) -> None:
        if self.control is not None:
            self.control.start()
        if self.prerelay is not None:
            self.prerelay.start()

    def stop(self) -> None:
        if self.prerelay is not None:
            self.prerelay.stop()
        if self.control is not None:
            self.control.stop()
        self.engine.close()
        self.channels.close()


def attach(agent: Any) -> RelayNode:
    """Agent plugin hook: add KeyRelay to the relay server, the control client and the relayer."""
    node = RelayNode(agent)
    relay_pb2_grpc.add_KeyRelayServicer_to_server(KeyRelayServicer(node.engine), agent.relay_server)
    agent.relay_services.append(relay_pb2.DESCRIPTOR.services_by_name["KeyRelay"].full_name)
    agent.relayer = node.relayer
    agent.relay_node = node
    agent.on_started(node.start)   # endpoints are final once every server is serving
    agent.on_stop(node.stop)
    log.info("relay plugin attached to node %s (QuSeC %s)", agent.node_id,
             agent.config.qusec_addr or "not configured: direct links only")
    return node
