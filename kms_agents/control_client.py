"""Agent side of control.proto: the long-lived Connect stream to QuSeC and the RequestPath call.

One background thread keeps one bidirectional stream open over mutual TLS (the
node's certificate, ``urn:qusec:node:NODE``), to a server that must present the controller's
certificate: the channel pins the TLS name ``qusec``, which only QuSeC's certificate carries. It registers first, then sends link
reports every ``report_interval`` and early when a link's key level crosses a
threshold, and applies the RelayAuthorisation / Revocation messages QuSeC pushes
down to the node's AuthTable (acking each authorisation). When the stream breaks
(QuSeC restarting) it reconnects with bounded exponential back-off and registers
again. Nothing here blocks key delivery: direct-link keys never wait for QuSeC.

This is the agent's only module that knows control.proto: it converts QuSeC's messages
to and from the agent's dataclasses (:class:`Registration`, link states, authorisations,
path queries and plans, refusals).
"""
from __future__ import annotations

import logging
import queue
import random
import threading
import time
from bisect import bisect_right
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import grpc
from grpc_status import rpc_status

from kms_agents import rpc
from kms_agents.relay import wire
from kms_agents.relay.authz import Authorisation, AuthTable
from kms_agents.relay.links import LinkState
from kms_agents.relay.plan import Handoff, Hop, PathPlan, PathQuery, PathRefused, PlannedPath
from quseccontroller.proto import control_pb2, control_pb2_grpc

__all__ = ["ControlClient", "ControlSettings", "PathRefused", "Registration", "crossed"]

log = logging.getLogger(__name__)

DEFAULT_THRESHOLDS_BITS = (8 * 1024, 64 * 1024, 1024 * 1024)
QUSEC_NAME = "qusec"         # the DNS name in QuSeC's certificate, and only in its
AUTH_FORGET_GRACE_S = 120.0  # expired authorisations still route Voids this long


@dataclass(frozen=True)
class Registration:
    """What a (re)connecting control stream sends first: how QuSeC reaches and sees this node."""

    node_id: str
    relay_addr: str
    etsi014_url: str = ""
    etsi004_addr: str = ""
    data_ip: str = ""
    trust_level: int = 3
    links: list[LinkState] = field(default_factory=list)
    saes: list[str] = field(default_factory=list)
    agent_version: str = ""


@dataclass
class ControlSettings:
    """Where QuSeC is and how the agent talks to it (defaults documented here, nowhere else)."""

    target: str                        # QuSeC gRPC host:port
    ca_cert: Path
    cert: Path                         # the node's certificate (urn:qusec:node:NODE)
    key: Path
    server_name: str = QUSEC_NAME      # the TLS name QuSeC's certificate must carry (pinned)
    report_interval_s: float = 2.0     # until QuSeC's Registered says otherwise
    poll_interval_s: float = 0.25      # how often link levels are looked at for thresholds
    thresholds_bits: Sequence[int] = DEFAULT_THRESHOLDS_BITS
    backoff_initial_s: float = 0.2
    backoff_max_s: float = 5.0
    path_deadline_s: float = 10.0


def band(bits: int, thresholds: Sequence[int]) -> int:
    """Which band (0 = below the lowest threshold) a key level falls in."""
    return bisect_right(sorted(thresholds), bits)


def crossed(prev: dict[str, int], cur: dict[str, int], thresholds: Sequence[int]) -> list[str]:
    """Links whose stored bits moved into another threshold band (or appeared/vanished)."""
    out = [lid for lid in cur
           if lid not in prev or band(prev[lid], thresholds) != band(cur[lid], thresholds)]
    return sorted(out + [lid for lid in prev if lid not in cur])


def backoff_delays(initial: float, maximum: float,
                   rng: random.Random | None = None) -> Iterator[float]:
    """Endless bounded exponential back-off with jitter (each delay in [d/2, d])."""
    rng = rng or random.Random()
    delay = initial
    while True:
        yield rng.uniform(delay / 2, delay)
        delay = min(maximum, delay * 2)


class ControlClient:
    """The agent's connection to QuSeC (stream thread + unary calls)."""

    def __init__(self, settings: ControlSettings, *, register: Callable[[], Registration],
                 links: Callable[[], list[LinkState]], authz: AuthTable,
                 on_revoke: Callable[[str, str], None] | None = None,
                 on_reregistered: Callable[[], None] | None = None) -> None:
        self.settings, self.authz = settings, authz
        self._register, self._links = register, links                        # what the stream sends
        self._on_revoke, self._on_reregistered = on_revoke, on_reregistered  # what it calls back
        self.registered = threading.Event()
        self.registrations = 0          # how many times the stream registered (1 + reconnects)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._call: grpc.Future | None = None
        self._outbox: queue.Queue = queue.Queue()
        self._report_interval = settings.report_interval_s
        self._channel = self._make_channel()
        self._stub = control_pb2_grpc.QuSeCControlStub(self._channel)

    def _make_channel(self) -> grpc.Channel:
        s = self.settings
        creds = rpc.channel_credentials(s.ca_cert, s.cert, s.key)
        options = [("grpc.keepalive_time_ms", 10_000), ("grpc.keepalive_timeout_ms", 5_000),
                   ("grpc.keepalive_permit_without_calls", 1),
                   ("grpc.initial_reconnect_backoff_ms", int(s.backoff_initial_s * 1000)),
                   ("grpc.max_reconnect_backoff_ms", int(s.backoff_max_s * 1000))]
        if s.server_name:
            options.append(("grpc.ssl_target_name_override", s.server_name))
        return grpc.secure_channel(s.target, creds, options=options)

    # -- lifecycle ---------------------------------------------------------------------------
    def start(self) -> None:
        """Start the stream thread (returns at once; see ``registered``)."""
        self._thread = threading.Thread(target=self._run, name="qusec-control", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Close the stream and the channel."""
        self._stop.set()
        self._outbox.put(None)
        call = self._call
        if call is not None:
            call.cancel()
        if self._thread:
            self._thread.join(timeout=5)
        self._channel.close()

    def report_now(self) -> None:
        """Send the link states at once (e.g. a link raised an alarm), not at the next report."""
        self._outbox.put("report")

    # -- the stream --------------------------------------------------------------------------
    def _run(self) -> None:
        delays = backoff_delays(self.settings.backoff_initial_s, self.settings.backoff_max_s)
        while not self._stop.is_set():
            try:
                self._stream_once()
                reason = "stream ended"
            except grpc.RpcError as exc:
                reason = f"{exc.code().name}: {exc.details()}"
            except Exception:  # keep the agent alive whatever the controller sends
                log.exception("control stream failed")
                reason = "internal error"
            if self._stop.is_set():
                break
            if self.registered.is_set():
                delays = backoff_delays(self.settings.backoff_initial_s,
                                        self.settings.backoff_max_s)
            self.registered.clear()
            delay = next(delays)
            log.warning("control stream to QuSeC %s lost (%s); reconnecting in %.2f s",
                        self.settings.target, reason, delay)
            self._stop.wait(delay)

    def _requests(self, outbox: queue.Queue,
                  first: Registration) -> Iterator[control_pb2.AgentMessage]:
        yield control_pb2.AgentMessage(register=register_to_proto(first))
        last_bits: dict[str, int] = {}
        next_report = time.monotonic() + self._report_interval
        while not self._stop.is_set():
            try:
                item = outbox.get(timeout=self.settings.poll_interval_s)
            except queue.Empty:
                item = "poll"
            if item is None:
                return
            if isinstance(item, control_pb2.AgentMessage):
                yield item
                continue
            self.authz.expire(time.time(), grace=AUTH_FORGET_GRACE_S)
            try:
                links = self._links()
            except Exception:  # a broken key source must not kill the control stream
                log.exception("reading link states failed")
                continue
            bits = {ln.link_id: int(ln.stored_bits) for ln in links}
            changed = crossed(last_bits, bits, self.settings.thresholds_bits) if last_bits else []
            if not last_bits:
                last_bits = bits
            now = time.monotonic()
            if changed or item == "report" or now >= next_report:
                last_bits = bits
                next_report = now + self._report_interval
                yield control_pb2.AgentMessage(report=control_pb2.LinkReport(
                    links=[link_to_proto(ln) for ln in links], threshold_crossed=bool(changed)))

    def _stream_once(self) -> None:
        # a fresh outbox per stream: the previous stream's generator may still be parked on its own
        self._outbox = queue.Queue()
        call = self._stub.Connect(self._requests(self._outbox, self._register()))
        self._call = call
        try:
            for msg in call:
                self._handle(msg)
        finally:
            self._call = None
            call.cancel()

    def _handle(self, msg: control_pb2.ControllerMessage) -> None:
        kind = msg.WhichOneof("body")
        if kind == "registered":
            if msg.registered.report_interval_ms:
                self._report_interval = msg.registered.report_interval_ms / 1000.0
            self.registrations += 1
            if self.registrations > 1:
                # a new controller session: paths granted before may be unknown to it now
                # (and their flows gone); forget them so the next relay asks afresh
                self.authz.clear()
                if self._on_reregistered:
                    self._on_reregistered()
            self.registered.set()
            log.info("registered with QuSeC as %s (report every %.1f s)",
                     msg.registered.node_id, self._report_interval)
        elif kind == "authorise":
            auth = authorisation_of(msg.authorise)
            self.authz.grant(auth)
            self._outbox.put(control_pb2.AgentMessage(
                auth_ack=control_pb2.AuthorisationAck(path_id=auth.path_id)))
            log.debug("authorised for path %s (%s -> here -> %s)", auth.path_id,
                      auth.prev_hop or "-", auth.next_hop or "-")
        elif kind == "revoke":
            self.authz.revoke(msg.revoke.path_id, msg.revoke.reason or "revoked by QuSeC")
            if self._on_revoke:
                self._on_revoke(msg.revoke.path_id, msg.revoke.reason)
        else:
            log.warning("ignoring unknown controller message %r", kind)

    # -- unary calls -------------------------------------------------------------------------
    def request_path(self, query: PathQuery, timeout: float | None = None) -> PathPlan:
        """Ask QuSeC for a relay path; raises PathRefused with the controller's reason."""
        try:
            reply = self._stub.RequestPath(path_request_to_proto(query),
                                           timeout=timeout or self.settings.path_deadline_s)
        except grpc.RpcError as exc:
            raise refusal_from(exc) from None
        return plan_of(reply)

    def release_path(self, path_id: str, timeout: float = 2.0) -> bool:
        """Release a path early; False if QuSeC could not be told (it expires anyway)."""
        try:
            return self._stub.ReleasePath(control_pb2.ReleaseRequest(path_id=path_id),
                                          timeout=timeout).released
        except grpc.RpcError as exc:
            log.info("release of path %s failed: %s", path_id, exc.code().name)
            return False


# -- control.proto <-> the agent's dataclasses ----------------------------------------------
def link_to_proto(link: LinkState) -> control_pb2.QkdLinkState:
    return control_pb2.QkdLinkState(
        link_id=link.link_id, peer_node=link.peer_node, skr_bps=link.skr_bps,
        stored_bits=link.stored_bits, consumption_bps=link.consumption_bps,
        status=control_pb2.LinkStatus.Value(f"LINK_STATUS_{link.status.name}"),
        kms_kind=link.kms_kind, peer_stored_bits=link.peer_stored_bits, alarm=link.alarm,
        qber=link.qber)


def register_to_proto(reg: Registration) -> control_pb2.Register:
    return control_pb2.Register(
        node_id=reg.node_id, relay_addr=reg.relay_addr, etsi014_url=reg.etsi014_url,
        etsi004_addr=reg.etsi004_addr, data_ip=reg.data_ip, trust_level=reg.trust_level,
        links=[link_to_proto(ln) for ln in reg.links], saes=reg.saes,
        agent_version=reg.agent_version)


def authorisation_of(msg: control_pb2.RelayAuthorisation) -> Authorisation:
    """An authorisation QuSeC pushed (its share_index counts from 0; ours from 1)."""
    return Authorisation(path_id=msg.path_id, prev_hop=msg.prev_hop, next_hop=msg.next_hop,
                         prev_hop_addr=msg.prev_hop_addr, next_hop_addr=msg.next_hop_addr,
                         expires_at=msg.expires_unix_ms / 1000.0, src_node=msg.src_node,
                         dst_node=msg.dst_node, share_index=msg.share_index + 1,
                         share_count=msg.share_count or 1, src_sae=msg.src_sae,
                         dst_saes=tuple(msg.dst_saes), security_level=msg.security_level,
                         handoff=handoff_of(msg.handoff) if msg.HasField("handoff") else None,
                         foreign_src_sae=msg.foreign_src_sae)


def handoff_of(msg: control_pb2.Handoff) -> Handoff:
    return Handoff(crossing=msg.crossing, kind=msg.kind, peer_domain=msg.peer_domain,
                   peer_kme=msg.peer_kme, exit_node=msg.exit_node)


def path_request_to_proto(query: PathQuery) -> control_pb2.PathRequest:
    return control_pb2.PathRequest(src_node=query.src_node, dst_node=query.dst_node,
                                   src_sae=query.src_sae, dst_sae=query.dst_sae,
                                   key_size_bits=query.key_size_bits, key_count=query.key_count,
                                   dst_saes=query.slave_saes)


def plan_of(reply: control_pb2.PathReply) -> PathPlan:
    """What QuSeC granted, as the relay engine uses it."""
    return PathPlan(
        paths=tuple(PlannedPath(path_id=p.path_id, share_index=p.share_index,
                                hops=tuple(Hop(h.node_id, h.relay_addr) for h in p.hops))
                    for p in reply.paths),
        security_level=reply.security_level, rule=reply.rule,
        expires_at=reply.expires_unix_ms / 1000.0,
        handoff=handoff_of(reply.handoff) if reply.HasField("handoff") else None)


def refusal_from(exc: grpc.RpcError) -> PathRefused:
    """Turn a RequestPath error into PathRefused, reading the PathRefusal status detail if any."""
    code = exc.code() if hasattr(exc, "code") else grpc.StatusCode.UNKNOWN
    details = exc.details() if hasattr(exc, "details") else str(exc)
    reason, rule = "", ""
    try:
        status = rpc_status.from_call(exc)
    except (ValueError, AttributeError):
        status = None
    if status is not None:
        for detail in status.details:
            refusal = control_pb2.PathRefusal()
            if detail.Unpack(refusal):
                reason, rule = refusal.reason, refusal.rule
                details = refusal.message or details
                break
    if not reason and code == grpc.StatusCode.DEADLINE_EXCEEDED:
        reason = "timeout"
    elif not reason and code == grpc.StatusCode.UNAVAILABLE:
        reason = "controller_unavailable"
    return PathRefused(wire.reason_of(code), reason, details or "", rule)
