"""The QuSeCControl servicer: proto in -> bridge call to the app -> proto out.

The app (where the core decides and the flows go in) is behind ``GatewayBridgeClient``; the
only state kept here is what belongs to gRPC: the agents' open control streams and the
acknowledgements of delivered authorisations. Errors end calls through ``rpc.maps_errors``.
"""
from __future__ import annotations

import logging
import threading
import time
from typing import Any, Iterator

import grpc

from quseccontroller import options, records
from quseccontroller.bridge import BridgeError, GatewayBridgeClient
from quseccontroller.gateway import rpc
from quseccontroller.gateway.metrics import Metrics
from quseccontroller.gateway.rpc import Abort, PathRefused, bad_request, error_info, maps_errors
from quseccontroller.gateway.sessions import AgentSession, Sessions
from quseccontroller.proto import control_pb2, control_pb2_grpc

LOG = logging.getLogger(__name__)

SERVICE = control_pb2.DESCRIPTOR.services_by_name["QuSeCControl"].full_name


def check_register(reg: control_pb2.Register) -> None:
    if not reg.node_id:
        raise bad_request("register.node_id", "required")
    if reg.relay_addr:
        try:
            options.split_hostport(reg.relay_addr, "register.relay_addr")
        except ValueError as exc:
            raise bad_request("register.relay_addr", str(exc)) from None
    for i, ls in enumerate(reg.links):
        if not ls.link_id or not ls.peer_node:
            raise bad_request(f"register.links[{i}]", "link_id and peer_node are required")


def _peer(_request: Any, context: grpc.ServicerContext) -> str:
    return f"peer={context.peer()}"


def _path(request: control_pb2.PathRequest, _context: grpc.ServicerContext) -> str:
    return f"src={request.src_node} dst={request.dst_node} app={request.application}"


class ControlServicer(control_pb2_grpc.QuSeCControlServicer):
    """QuSeCControl (Connect, RequestPath, ReleasePath) over the bridge to the app."""

    def __init__(self, bridge_path: str, *, gone_grace: float = options.default("gone_grace"),
                 ack_timeout: float = options.default("ack_timeout"),
                 call_timeout: float = options.BRIDGE_CALL_TIMEOUT_S):
        self.gone_grace = gone_grace
        self.ack_timeout = ack_timeout
        self.call_timeout = call_timeout
        self.metrics = Metrics()
        self.sessions = Sessions(gone_grace, self._gone, self.metrics.nodes)
        self.bridge = GatewayBridgeClient(bridge_path, self.on_push, self.on_connect)

    # -- bridge side -------------------------------------------------------------------------
    def call(self, op: str, args: dict | None = None) -> dict:
        """One app call; its BridgeError ends the gRPC call with the mapped status."""
        return self.bridge.call(op, args or {}, timeout=self.call_timeout)

    def on_push(self, msg: dict) -> None:
        node = msg.get("node_id", "")
        session = self.sessions.get(node)
        if session is None:
            LOG.warning("push %s for node %s without a control stream dropped", msg.get("push"), node)
            return
        session.send(records.push_proto(msg))

    def on_connect(self) -> None:
        """A (re)started app knows nothing of open streams: register them again."""
        for s in self.sessions.snapshot().values():
            try:
                self.call("register", s.register)
            except BridgeError as exc:
                LOG.warning("re-registering %s failed: %s", s.node_id, exc)

    def refresh_gauges(self) -> dict:
        """Pull the app's status into the gauges; returns it ({} when the app is away)."""
        try:
            status = self.bridge.call("status", {}, timeout=2.0)
        except BridgeError:
            return {}
        self.metrics.refresh(status)
        return status

    # -- Connect -----------------------------------------------------------------------------
    @maps_errors(count="rejected", event="stream_refused", describe=_peer, level=logging.WARNING)
    def Connect(self, request_iterator: Iterator[control_pb2.AgentMessage],
                context: grpc.ServicerContext) -> Iterator[control_pb2.ControllerMessage]:
        session = self._open_session(request_iterator, context)
        reader = threading.Thread(target=self._read_stream, args=(session, request_iterator),
                                  name=f"agent-{session.node_id}", daemon=True)
        reader.start()
        context.add_callback(session.close)
        try:
            yield records.registered_proto(session.node_id, options.REPORT_INTERVAL_MS)
            while True:
                msg = session.out.get()
                if msg is None:
                    break
                yield msg
        finally:
            self._close_session(session)

    def _open_session(self, request_iterator: Iterator[control_pb2.AgentMessage],
                      context: grpc.ServicerContext) -> AgentSession:
        cn = rpc.peer_cn(context)
        if not cn:
            raise Abort(grpc.StatusCode.UNAUTHENTICATED, "no verified client certificate")
        try:
            first = next(request_iterator)
        except StopIteration:
            raise bad_request("register", "stream closed before Register") from None
        if first.WhichOneof("body") != "register":
            raise bad_request("register", f"first message must be Register, got {first.WhichOneof('body')}")
        reg = first.register
        check_register(reg)
        if reg.node_id != cn:
            raise error_info(grpc.StatusCode.PERMISSION_DENIED,
                             f"certificate CN {cn!r} may not register as node {reg.node_id!r}",
                             "NODE_ID_MISMATCH", cn=cn, node_id=reg.node_id)
        wire = records.register_to_wire(reg)
        self.call("register", wire)
        session = AgentSession(reg.node_id, wire)
        self._update_links(session, wire["links"])
        self.sessions.open(session)
        LOG.info("event=registered node=%s peer=%s links=%d saes=%d relay=%s", reg.node_id,
                 context.peer(), len(reg.links), len(reg.saes), reg.relay_addr)
        return session

    def _read_stream(self, session: AgentSession, it: Iterator[control_pb2.AgentMessage]) -> None:
        try:
            for msg in it:
                kind = msg.WhichOneof("body")
                if kind == "auth_ack":
                    session.acked(msg.auth_ack.path_id)
                elif kind == "report":
                    links = [records.link_to_wire(x) for x in msg.report.links]
                    self._update_links(session, links)
                    try:
                        self.call("report", records.report_to_wire(session.node_id, links))
                    except BridgeError as exc:
                        LOG.warning("report from %s not delivered: %s", session.node_id, exc)
                else:
                    LOG.warning("node %s sent %s on an open stream; ignored", session.node_id, kind)
        except grpc.RpcError:
            pass
        except Exception:  # noqa: BLE001
            LOG.exception("control stream of %s failed", session.node_id)
        finally:
            session.close()

    def _update_links(self, session: AgentSession, links: list[dict]) -> None:
        for link in links:
            session.links[link["link_id"]] = link
            self.metrics.key_bits.labels(session.node_id, link["link_id"]).set(link["stored_bits"])
        sessions = list(self.sessions.snapshot().values()) + [session]
        # Other streams' reader threads update their own dicts concurrently: iterate copies.
        up = {lid for s in sessions for lid, l in list(s.links.items()) if l["status"] == "ACTIVE"}
        self.metrics.qkd_links.set(len(up))

    def _close_session(self, session: AgentSession) -> None:
        if self.sessions.closed(session):
            LOG.info("event=stream_closed node=%s gone_in_s=%.1f", session.node_id, self.gone_grace)

    def _gone(self, session: AgentSession) -> None:
        for link_id in session.links:
            self.metrics.key_bits.remove(session.node_id, link_id)
        LOG.info("event=node_gone node=%s", session.node_id)
        try:
            self.call("gone", {"node_id": session.node_id})
        except BridgeError as exc:
            LOG.warning("gone for %s not delivered: %s", session.node_id, exc)

    # -- RequestPath / ReleasePath ------------------------------------------------------------
    @maps_errors(count="refused", event="path_refused", describe=_path)
    def RequestPath(self, request: control_pb2.PathRequest,
                    context: grpc.ServicerContext) -> control_pb2.PathReply:
        t0 = time.monotonic()
        self.metrics.requested.inc()
        reply, timing = self._request_path(request, context)
        total = time.monotonic() - t0
        self.metrics.granted.inc()
        self.metrics.setup.observe(total)
        self.metrics.setup_app.observe(timing["app_ms"] / 1000)
        self.metrics.flows.inc(reply.flows_installed)
        LOG.info("event=path_granted src=%s dst=%s app=%s paths=%s rule=%s flows=%d ms=%.1f "
                 "app_ms=%.1f auth_ms=%.1f", request.src_node, request.dst_node, request.application,
                 ";".join(f"{p.path_id}:{'>'.join(h.node_id for h in p.hops)}" for p in reply.paths),
                 reply.rule, reply.flows_installed, total * 1000, timing["app_ms"], timing["auth_ms"])
        context.set_trailing_metadata((
            ("qusec-app-ms", f"{timing['app_ms']:.3f}"),
            ("qusec-auth-ms", f"{timing['auth_ms']:.3f}"),
            ("qusec-gateway-ms", f"{total * 1000:.3f}")))
        return reply

    def _request_path(self, request: control_pb2.PathRequest,
                      context: grpc.ServicerContext) -> tuple[control_pb2.PathReply, dict]:
        if not request.src_node:
            raise bad_request("src_node", "required")
        if not request.dst_node:
            raise bad_request("dst_node", "required")
        if request.src_node == request.dst_node:
            raise bad_request("dst_node", "equals src_node")
        cn = rpc.peer_cn(context)
        if cn != request.src_node:
            raise error_info(grpc.StatusCode.PERMISSION_DENIED,
                             f"certificate CN {cn!r} may not request paths for node {request.src_node!r}",
                             "NODE_ID_MISMATCH", cn=cn, node_id=request.src_node)
        result = self.call("request_path", records.path_request_to_wire(request))
        if not result.get("granted"):
            reason, rule, message = records.refusal_from_wire(result)
            raise PathRefused(reason, f"path {request.src_node} -> {request.dst_node} refused "
                                      f"({reason}): {message}", rule=rule, message=message)
        t_auth = time.monotonic()
        try:
            self._deliver(result.get("authorisations", []))
        except (Abort, PathRefused):
            for p in result.get("paths", []):
                try:
                    self.call("release", {"path_id": p["path_id"]})
                except BridgeError as exc:
                    LOG.warning("release of undelivered path %s failed: %s", p["path_id"], exc)
            raise
        auth_ms = (time.monotonic() - t_auth) * 1000
        return records.path_reply_proto(result), {"app_ms": float(result.get("app_ms", 0.0)),
                                                  "auth_ms": auth_ms}

    def _deliver(self, auths: list[dict]) -> None:
        """Push every authorisation down its node's stream and wait for all the acks."""
        sessions = self.sessions.snapshot()
        missing = sorted({a["node_id"] for a in auths} - set(sessions))
        if missing:
            raise PathRefused("disconnected",
                              f"no control stream from node(s) {', '.join(missing)} on the path",
                              message=f"not connected: {', '.join(missing)}")
        waits = []
        for a in auths:
            session = sessions[a["node_id"]]
            ev = session.expect_ack(a["auth"]["path_id"])
            session.send(records.authorise_proto(a["auth"]))
            waits.append((a["node_id"], ev))
        deadline = time.monotonic() + self.ack_timeout
        late = sorted({node for node, ev in waits
                       if not ev.wait(max(0.0, deadline - time.monotonic()))})
        if late:
            raise error_info(grpc.StatusCode.DEADLINE_EXCEEDED,
                             f"authorisation not acknowledged within {self.ack_timeout:.1f}s by "
                             f"{', '.join(late)}", "AUTH_NOT_ACKED", nodes=",".join(late))

    @maps_errors()
    def ReleasePath(self, request: control_pb2.ReleaseRequest,
                    context: grpc.ServicerContext) -> control_pb2.ReleaseReply:
        if not request.path_id:
            raise bad_request("path_id", "required")
        result = self.call("release", {"path_id": request.path_id})
        return control_pb2.ReleaseReply(released=bool(result.get("released")))
