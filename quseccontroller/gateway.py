"""QuSeC's gRPC gateway process: the control API (mutual TLS), health, reflection, HTTP metrics.

``python -m quseccontroller.gateway --bridge SOCK ...`` (the os-ken app starts and restarts
it; it can also run standalone). Servicers are thin adapters: proto in -> bridge call to
the app (where the core decides and the flows go in) -> proto out. The only state kept
here is what belongs to gRPC: the agents' open control streams, the acknowledgements of
delivered authorisations, and the metrics registry.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import queue
import signal
import sys
import threading
import time
from concurrent import futures
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Iterator

import grpc
from google.protobuf import any_pb2
from google.rpc import error_details_pb2, status_pb2
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from grpc_status import rpc_status
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client import CONTENT_TYPE_LATEST

from quseccontroller import settings
from quseccontroller.bridge import BridgeError, GatewayBridgeClient
from quseccontroller.proto import control_pb2, control_pb2_grpc

# Named for the module even when run as ``python -m quseccontroller.gateway``.
LOG = logging.getLogger("quseccontroller.gateway" if __name__ == "__main__" else __name__)

SERVICE = control_pb2.DESCRIPTOR.services_by_name["QuSeCControl"].full_name
_LINK_STATUS_NAME = {v: k.removeprefix("LINK_STATUS_") for k, v in control_pb2.LinkStatus.items()}

# Core refusal reason -> gRPC status (control.proto documents the mapping).
REFUSAL_CODES = {
    "policy_deny": grpc.StatusCode.PERMISSION_DENIED,
    "trust": grpc.StatusCode.PERMISSION_DENIED,
    "unknown_node": grpc.StatusCode.NOT_FOUND,
    "no_key": grpc.StatusCode.RESOURCE_EXHAUSTED,
    "rate_limit": grpc.StatusCode.RESOURCE_EXHAUSTED,
    "disconnected": grpc.StatusCode.UNAVAILABLE,
    "max_hops": grpc.StatusCode.UNAVAILABLE,
}
BRIDGE_CODES = {
    "invalid": grpc.StatusCode.INVALID_ARGUMENT,
    "not_found": grpc.StatusCode.NOT_FOUND,
    "permission": grpc.StatusCode.PERMISSION_DENIED,
    "unavailable": grpc.StatusCode.UNAVAILABLE,
    "timeout": grpc.StatusCode.DEADLINE_EXCEEDED,
    "internal": grpc.StatusCode.INTERNAL,
}


class Abort(Exception):
    """A gRPC error with rich details (google.rpc.Status), raised by the servicer's helpers."""

    def __init__(self, code: grpc.StatusCode, message: str, *details: Any):
        super().__init__(message)
        self.code, self.message, self.details = code, message, details

    def status(self) -> grpc.Status:
        packed = []
        for d in self.details:
            a = any_pb2.Any()
            a.Pack(d)
            packed.append(a)
        return rpc_status.to_status(status_pb2.Status(code=self.code.value[0], message=self.message,
                                                       details=packed))


def bad_request(field: str, problem: str) -> Abort:
    return Abort(grpc.StatusCode.INVALID_ARGUMENT, f"{field}: {problem}",
                 error_details_pb2.BadRequest(field_violations=[
                     error_details_pb2.BadRequest.FieldViolation(field=field, description=problem)]))


def bridge_abort(exc: BridgeError) -> Abort:
    details: list[Any] = [error_details_pb2.ErrorInfo(reason=exc.code.upper(), domain="qusec",
                                                      metadata={k: str(v) for k, v in exc.details.items()})]
    if exc.code == "invalid" and "field" in exc.details:
        details.append(error_details_pb2.BadRequest(field_violations=[
            error_details_pb2.BadRequest.FieldViolation(field=str(exc.details["field"]),
                                                        description=exc.message)]))
    return Abort(BRIDGE_CODES.get(exc.code, grpc.StatusCode.INTERNAL), exc.message, *details)


def peer_cn(context: grpc.ServicerContext) -> str:
    """The Common Name of the caller's verified client certificate ('' without one)."""
    names = context.auth_context().get("x509_common_name") or []
    return names[0].decode() if names else ""


def link_to_wire(ls: control_pb2.QkdLinkState) -> dict:
    return {"link_id": ls.link_id, "peer_node": ls.peer_node, "skr_bps": ls.skr_bps,
            "stored_bits": int(ls.stored_bits), "consumption_bps": ls.consumption_bps,
            "status": _LINK_STATUS_NAME.get(ls.status, "UNSPECIFIED"), "kms_kind": ls.kms_kind}


def register_to_wire(reg: control_pb2.Register) -> dict:
    return {"node_id": reg.node_id, "relay_addr": reg.relay_addr, "etsi014_url": reg.etsi014_url,
            "etsi004_addr": reg.etsi004_addr, "data_ip": reg.data_ip,
            "trust_level": reg.trust_level, "links": [link_to_wire(x) for x in reg.links],
            "saes": list(reg.saes), "agent_version": reg.agent_version}


def check_register(reg: control_pb2.Register) -> None:
    if not reg.node_id:
        raise bad_request("register.node_id", "required")
    if reg.relay_addr:
        try:
            settings.split_hostport(reg.relay_addr, "register.relay_addr")
        except ValueError as exc:
            raise bad_request("register.relay_addr", str(exc)) from None
    for i, ls in enumerate(reg.links):
        if not ls.link_id or not ls.peer_node:
            raise bad_request(f"register.links[{i}]", "link_id and peer_node are required")


class Metrics:
    """The gateway's Prometheus metrics, in their own registry."""

    def __init__(self) -> None:
        r = self.registry = CollectorRegistry()
        self.requested = Counter("qusec_paths_requested", "Path requests received", registry=r)
        self.granted = Counter("qusec_paths_granted", "Path requests granted", registry=r)
        self.refused = Counter("qusec_paths_refused", "Path requests refused", ["reason"], registry=r)
        buckets = (.001, .0025, .005, .01, .025, .05, .1, .2, .5, 1, 2, 5)
        self.setup = Histogram("qusec_path_setup_seconds", "Request to answer: flows confirmed and "
                               "authorisations acked", buckets=buckets, registry=r)
        self.setup_app = Histogram("qusec_path_setup_app_seconds", "Time in the controller app "
                                   "(core + flow barriers)", buckets=buckets, registry=r)
        self.flows = Counter("qusec_flows_installed", "Relay flow entries installed", registry=r)
        self.flow_entries = Gauge("qusec_flow_entries", "QuSeC flow entries on all switches now",
                                  registry=r)
        self.paths_active = Gauge("qusec_paths_active", "Granted relay paths not yet expired",
                                  registry=r)
        self.nodes = Gauge("qusec_nodes_up", "Agents with an open control stream", registry=r)
        self.switches = Gauge("qusec_switches_up", "OpenFlow switches connected", registry=r)
        self.switch_links = Gauge("qusec_switch_links_up", "Switch links seen by LLDP", registry=r)
        self.qkd_links = Gauge("qusec_qkd_links_up", "QKD links reported ACTIVE", registry=r)
        self.key_bits = Gauge("qusec_link_key_bits", "Stored link key at one end", ["node", "link"],
                              registry=r)
        self.rejected = Counter("qusec_agent_streams_rejected", "Control streams refused",
                                ["reason"], registry=r)


class AgentSession:
    """One agent's open control stream: an outbound queue and pending authorisation acks."""

    def __init__(self, node_id: str, register: dict):
        self.node_id = node_id
        self.register = register
        self.out: queue.Queue = queue.Queue()
        self.acks: dict[str, threading.Event] = {}
        self.lock = threading.Lock()
        self.links: dict[str, dict] = {}

    def send(self, msg: control_pb2.ControllerMessage) -> None:
        self.out.put(msg)

    def expect_ack(self, path_id: str) -> threading.Event:
        with self.lock:
            return self.acks.setdefault(path_id, threading.Event())

    def acked(self, path_id: str) -> None:
        with self.lock:
            ev = self.acks.pop(path_id, None)
        if ev is not None:
            ev.set()

    def close(self) -> None:
        self.out.put(None)


class Gateway(control_pb2_grpc.QuSeCControlServicer):
    """The QuSeCControl servicer plus the bridge to the app and the agent sessions."""

    def __init__(self, bridge_path: str, *, gone_grace: float = settings.GONE_GRACE_S,
                 ack_timeout: float = settings.AUTH_ACK_TIMEOUT_S,
                 call_timeout: float = settings.BRIDGE_CALL_TIMEOUT_S):
        self.gone_grace = gone_grace
        self.ack_timeout = ack_timeout
        self.call_timeout = call_timeout
        self.metrics = Metrics()
        self.sessions: dict[str, AgentSession] = {}
        self.lock = threading.Lock()
        self.gone_timers: dict[str, threading.Timer] = {}
        self.bridge = GatewayBridgeClient(bridge_path, self.on_push, self.on_connect)

    # -- bridge side -------------------------------------------------------------------------
    def call(self, op: str, args: dict | None = None) -> dict:
        try:
            return self.bridge.call(op, args or {}, timeout=self.call_timeout)
        except BridgeError as exc:
            raise bridge_abort(exc) from None

    def on_push(self, msg: dict) -> None:
        node = msg.get("node_id", "")
        with self.lock:
            session = self.sessions.get(node)
        if session is None:
            LOG.warning("push %s for node %s without a control stream dropped", msg.get("push"), node)
            return
        if msg["push"] == "authorise":
            session.send(control_pb2.ControllerMessage(
                authorise=control_pb2.RelayAuthorisation(**msg["auth"])))
        else:
            session.send(control_pb2.ControllerMessage(revoke=control_pb2.Revocation(
                path_id=msg.get("path_id", ""), reason=msg.get("reason", ""))))

    def on_connect(self) -> None:
        """A (re)started app knows nothing of open streams: register them again."""
        with self.lock:
            sessions = list(self.sessions.values())
        for s in sessions:
            try:
                self.bridge.call("register", s.register, timeout=self.call_timeout)
            except BridgeError as exc:
                LOG.warning("re-registering %s failed: %s", s.node_id, exc)

    # -- Connect -----------------------------------------------------------------------------
    def Connect(self, request_iterator: Iterator[control_pb2.AgentMessage],
                context: grpc.ServicerContext) -> Iterator[control_pb2.ControllerMessage]:
        try:
            session = self._open_session(request_iterator, context)
        except Abort as exc:
            self.metrics.rejected.labels(exc.code.name.lower()).inc()
            LOG.warning("event=stream_refused peer=%s code=%s msg=%r", context.peer(), exc.code.name,
                        exc.message)
            context.abort_with_status(exc.status())
            return
        reader = threading.Thread(target=self._read_stream, args=(session, request_iterator),
                                  name=f"agent-{session.node_id}", daemon=True)
        reader.start()
        context.add_callback(session.close)
        try:
            yield control_pb2.ControllerMessage(registered=control_pb2.Registered(
                node_id=session.node_id, report_interval_ms=settings.REPORT_INTERVAL_MS))
            while True:
                msg = session.out.get()
                if msg is None:
                    break
                yield msg
        finally:
            self._close_session(session)

    def _open_session(self, request_iterator: Iterator[control_pb2.AgentMessage],
                      context: grpc.ServicerContext) -> AgentSession:
        cn = peer_cn(context)
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
            raise Abort(grpc.StatusCode.PERMISSION_DENIED,
                        f"certificate CN {cn!r} may not register as node {reg.node_id!r}",
                        error_details_pb2.ErrorInfo(reason="NODE_ID_MISMATCH", domain="qusec",
                                                    metadata={"cn": cn, "node_id": reg.node_id}))
        wire = register_to_wire(reg)
        self.call("register", wire)
        session = AgentSession(reg.node_id, wire)
        self._update_links(session, wire["links"])
        with self.lock:
            old = self.sessions.get(reg.node_id)
            self.sessions[reg.node_id] = session
            timer = self.gone_timers.pop(reg.node_id, None)
            self.metrics.nodes.set(len(self.sessions))
        if timer is not None:
            timer.cancel()
        if old is not None:
            old.close()  # a reconnecting agent replaces its stale stream
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
                    links = [link_to_wire(x) for x in msg.report.links]
                    self._update_links(session, links)
                    try:
                        self.bridge.call("report", {"node_id": session.node_id, "links": links},
                                         timeout=self.call_timeout)
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
        with self.lock:
            sessions = list(self.sessions.values()) + [session]
        # Other streams' reader threads update their own dicts concurrently: iterate copies.
        up = {lid for s in sessions for lid, l in list(s.links.items()) if l["status"] == "ACTIVE"}
        self.metrics.qkd_links.set(len(up))

    def _close_session(self, session: AgentSession) -> None:
        with self.lock:
            if self.sessions.get(session.node_id) is not session:
                return  # replaced by a newer stream
            timer = threading.Timer(self.gone_grace, self._gone, args=(session,))
            timer.daemon = True
            self.gone_timers[session.node_id] = timer
        LOG.info("event=stream_closed node=%s gone_in_s=%.1f", session.node_id, self.gone_grace)
        timer.start()

    def _gone(self, session: AgentSession) -> None:
        with self.lock:
            if self.sessions.get(session.node_id) is not session:
                return
            del self.sessions[session.node_id]
            self.gone_timers.pop(session.node_id, None)
            self.metrics.nodes.set(len(self.sessions))
        for link_id in session.links:
            self.metrics.key_bits.remove(session.node_id, link_id)
        LOG.info("event=node_gone node=%s", session.node_id)
        try:
            self.bridge.call("gone", {"node_id": session.node_id}, timeout=self.call_timeout)
        except BridgeError as exc:
            LOG.warning("gone for %s not delivered: %s", session.node_id, exc)

    # -- RequestPath / ReleasePath ------------------------------------------------------------
    def RequestPath(self, request: control_pb2.PathRequest,
                    context: grpc.ServicerContext) -> control_pb2.PathReply:
        t0 = time.monotonic()
        self.metrics.requested.inc()
        try:
            reply, timing = self._request_path(request, context)
        except Abort as exc:
            reason = next((d.reason for d in exc.details if isinstance(d, control_pb2.PathRefusal)),
                          exc.code.name.lower())
            self.metrics.refused.labels(reason).inc()
            LOG.info("event=path_refused src=%s dst=%s app=%s reason=%s code=%s ms=%.1f msg=%r",
                     request.src_node, request.dst_node, request.application, reason,
                     exc.code.name, (time.monotonic() - t0) * 1000, exc.message)
            context.abort_with_status(exc.status())
            raise AssertionError("unreachable")  # abort_with_status raises
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
        cn = peer_cn(context)
        if cn != request.src_node:
            raise Abort(grpc.StatusCode.PERMISSION_DENIED,
                        f"certificate CN {cn!r} may not request paths for node {request.src_node!r}",
                        error_details_pb2.ErrorInfo(reason="NODE_ID_MISMATCH", domain="qusec",
                                                    metadata={"cn": cn, "node_id": request.src_node}))
        args = {"src_node": request.src_node, "dst_node": request.dst_node,
                "src_sae": request.src_sae, "dst_sae": request.dst_sae,
                "key_size_bits": request.key_size_bits, "key_count": request.key_count,
                "application": request.application}
        result = self.call("request_path", args)
        if not result.get("granted"):
            reason = result.get("refusal") or "policy_deny"
            message = result.get("reason") or reason
            raise Abort(REFUSAL_CODES.get(reason, grpc.StatusCode.FAILED_PRECONDITION),
                        f"path {request.src_node} -> {request.dst_node} refused ({reason}): {message}",
                        control_pb2.PathRefusal(reason=reason, rule=result.get("rule", ""),
                                                message=message))
        t_auth = time.monotonic()
        try:
            self._deliver(result.get("authorisations", []))
        except Abort:
            for p in result.get("paths", []):
                try:
                    self.bridge.call("release", {"path_id": p["path_id"]}, timeout=self.call_timeout)
                except BridgeError as exc:
                    LOG.warning("release of undelivered path %s failed: %s", p["path_id"], exc)
            raise
        auth_ms = (time.monotonic() - t_auth) * 1000
        reply = control_pb2.PathReply(
            security_level=result.get("security_level", ""), rule=result.get("rule", ""),
            reason=result.get("reason", ""), expires_unix_ms=int(result.get("expires_unix_ms", 0)),
            flows_installed=int(result.get("flows_installed", 0)))
        for p in result.get("paths", []):
            reply.paths.add(path_id=p["path_id"], cost=float(p.get("cost", 0.0)),
                            share_index=int(p.get("share_index", 0)),
                            hops=[control_pb2.Hop(node_id=h["node_id"], relay_addr=h.get("relay_addr", ""))
                                  for h in p["hops"]])
        return reply, {"app_ms": float(result.get("app_ms", 0.0)), "auth_ms": auth_ms}

    def _deliver(self, auths: list[dict]) -> None:
        """Push every authorisation down its node's stream and wait for all the acks."""
        waits = []
        with self.lock:
            missing = sorted({a["node_id"] for a in auths} - set(self.sessions))
            sessions = dict(self.sessions)
        if missing:
            raise Abort(grpc.StatusCode.UNAVAILABLE,
                        f"no control stream from node(s) {', '.join(missing)} on the path",
                        control_pb2.PathRefusal(reason="disconnected",
                                                message=f"not connected: {', '.join(missing)}"))
        for a in auths:
            session = sessions[a["node_id"]]
            ev = session.expect_ack(a["auth"]["path_id"])
            session.send(control_pb2.ControllerMessage(
                authorise=control_pb2.RelayAuthorisation(**a["auth"])))
            waits.append((a["node_id"], ev))
        deadline = time.monotonic() + self.ack_timeout
        late = [node for node, ev in waits if not ev.wait(max(0.0, deadline - time.monotonic()))]
        if late:
            raise Abort(grpc.StatusCode.DEADLINE_EXCEEDED,
                        f"authorisation not acknowledged within {self.ack_timeout:.1f}s by "
                        f"{', '.join(sorted(set(late)))}",
                        error_details_pb2.ErrorInfo(reason="AUTH_NOT_ACKED", domain="qusec",
                                                    metadata={"nodes": ",".join(sorted(set(late)))}))

    def ReleasePath(self, request: control_pb2.ReleaseRequest,
                    context: grpc.ServicerContext) -> control_pb2.ReleaseReply:
        try:
            if not request.path_id:
                raise bad_request("path_id", "required")
            result = self.call("release", {"path_id": request.path_id})
        except Abort as exc:
            context.abort_with_status(exc.status())
            raise AssertionError("unreachable")
        return control_pb2.ReleaseReply(released=bool(result.get("released")))

    # -- observability -----------------------------------------------------------------------
    def refresh_gauges(self) -> dict:
        """Pull the app's status into the gauges; returns it ({} when the app is away)."""
        try:
            status = self.bridge.call("status", {}, timeout=2.0)
        except BridgeError:
            return {}
        self.metrics.switches.set(len(status.get("switches", [])))
        self.metrics.switch_links.set(status.get("switch_links", 0))
        core = status.get("core", {})
        self.metrics.flow_entries.set(core.get("flows", 0))
        self.metrics.paths_active.set(len(core.get("paths", {})))
        return status


class HttpHandler(BaseHTTPRequestHandler):
    """/metrics, /etsi015, /healthz (and /status) on the gateway's HTTP port."""

    gateway: Gateway  # set on the subclass made by serve_http

    def do_GET(self) -> None:  # noqa: N802 - stdlib name
        path = self.path.split("?", 1)[0]
        gw = self.gateway
        if path == "/metrics":
            gw.refresh_gauges()
            self._send(200, generate_latest(gw.metrics.registry), CONTENT_TYPE_LATEST)
        elif path == "/etsi015":
            try:
                body = gw.bridge.call("state", {}, timeout=5.0)
            except BridgeError as exc:
                self._json(503, {"message": f"controller app unavailable: {exc.message}"})
                return
            self._json(200, body)
        elif path == "/healthz":
            status = gw.refresh_gauges() if gw.bridge.connected else {}
            ok = bool(status)
            with gw.lock:
                nodes = sorted(gw.sessions)
            self._json(200 if ok else 503, {"status": "SERVING" if ok else "NOT_SERVING",
                                            "app_connected": gw.bridge.connected, "nodes": nodes,
                                            "switches": len(status.get("switches", []))})
        elif path == "/status":
            status = gw.refresh_gauges()
            self._json(200 if status else 503, status or {"message": "controller app unavailable"})
        else:
            self._json(404, {"message": f"no such resource {path}; try /metrics, /etsi015, /healthz"})

    def _json(self, code: int, body: Any) -> None:
        self._send(code, json.dumps(body, indent=1, default=str).encode(), "application/json")

    def _send(self, code: int, body: bytes, ctype: str) -> None:
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, fmt: str, *args: Any) -> None:
        LOG.debug("http %s " + fmt, self.client_address[0], *args)


def serve_http(gateway: Gateway, listen: str) -> ThreadingHTTPServer:
    host, port = settings.split_hostport(listen, "--http-listen")
    handler = type("BoundHttpHandler", (HttpHandler,), {"gateway": gateway})
    server = ThreadingHTTPServer((host, port), handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="http", daemon=True).start()
    return server


def server_credentials(ca_cert: str, cert: str, key: str) -> grpc.ServerCredentials:
    return grpc.ssl_server_credentials(
        [(Path(key).read_bytes(), Path(cert).read_bytes())],
        root_certificates=Path(ca_cert).read_bytes(), require_client_auth=True)


class GatewayServer:
    """gRPC server (control + health + reflection) and HTTP server around one Gateway."""

    def __init__(self, gateway: Gateway, grpc_listen: str, http_listen: str,
                 credentials: grpc.ServerCredentials | None, workers: int = settings.GRPC_WORKERS):
        self.gateway = gateway
        self.health = health.HealthServicer()
        # Each control stream holds a worker for its lifetime; unary calls need spares.
        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=workers),
                                  options=[("grpc.so_reuseport", 0)])
        control_pb2_grpc.add_QuSeCControlServicer_to_server(gateway, self.server)
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self.server)
        reflection.enable_server_reflection(
            (SERVICE, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
             reflection.SERVICE_NAME), self.server)
        host, _ = settings.split_hostport(grpc_listen, "--grpc-listen")
        if credentials is None:
            LOG.warning("serving gRPC WITHOUT TLS on %s (no --cert/--key/--ca-cert)", grpc_listen)
            port = self.server.add_insecure_port(grpc_listen)
        else:
            port = self.server.add_secure_port(grpc_listen, credentials)
        if not port:
            raise OSError(f"cannot bind gRPC on {grpc_listen}")
        self.grpc_addr = f"{'127.0.0.1' if host in ('0.0.0.0', '') else host}:{port}"
        self.http = serve_http(gateway, http_listen)
        http_host, http_port = self.http.server_address[:2]
        self.http_url = f"http://{'127.0.0.1' if http_host == '0.0.0.0' else http_host}:{http_port}"
        self._stop = threading.Event()

    def start(self) -> None:
        self._set_health(False)
        self.server.start()
        self.gateway.bridge.start()
        threading.Thread(target=self._watch_bridge, name="health", daemon=True).start()

    def _set_health(self, up: bool) -> None:
        st = (health_pb2.HealthCheckResponse.SERVING if up
              else health_pb2.HealthCheckResponse.NOT_SERVING)
        for name in ("", SERVICE):
            self.health.set(name, st)

    def _watch_bridge(self) -> None:
        """SERVING exactly while the controller app is connected."""
        was = None
        while not self._stop.is_set():
            up = self.gateway.bridge.connected
            if up != was:
                self._set_health(up)
                LOG.info("health: %s", "SERVING" if up else "NOT_SERVING (app not connected)")
                was = up
            self._stop.wait(0.1)

    def stop(self, grace: float = 1.0) -> None:
        self._stop.set()
        self.health.enter_graceful_shutdown()
        with self.gateway.lock:
            sessions = list(self.gateway.sessions.values())
        for s in sessions:
            s.close()
        self.server.stop(grace).wait()
        self.http.shutdown()
        self.gateway.bridge.close()


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m quseccontroller.gateway",
                                description="QuSeC gRPC gateway: serves the control API for the "
                                            "os-ken app over a Unix-socket bridge.")
    p.add_argument("--bridge", help="the app's Unix socket (default: STATE_DIR/bridge.sock)")
    p.add_argument("--state-dir", default=settings.STATE_DIR, help="where gateway.json is written")
    p.add_argument("--grpc-listen", default=settings.GRPC_LISTEN, help="host:port (port 0: any)")
    p.add_argument("--http-listen", default=settings.HTTP_LISTEN, help="host:port (port 0: any)")
    p.add_argument("--ca-cert", help="CA that signs the agents' client certificates")
    p.add_argument("--cert", help="server certificate (PEM)")
    p.add_argument("--key", help="server private key (PEM)")
    p.add_argument("--gone-grace", type=float, default=settings.GONE_GRACE_S,
                   help="seconds before a lost control stream marks its node gone")
    p.add_argument("--ack-timeout", type=float, default=settings.AUTH_ACK_TIMEOUT_S)
    p.add_argument("--grpc-workers", type=int, default=settings.GRPC_WORKERS,
                   help="gRPC threads: open control streams + concurrent calls")
    p.add_argument("--parent-pid", type=int, default=0,
                   help="exit when this process (the app that started us) is gone")
    p.add_argument("--insecure", action="store_true", help="allow serving without TLS (testing)")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    tls = (args.ca_cert, args.cert, args.key)
    if any(tls) and not all(tls):
        print("gateway: --ca-cert, --cert and --key go together", file=sys.stderr)
        return 2
    if not all(tls) and not args.insecure:
        print("gateway: mutual TLS needs --ca-cert, --cert and --key (or --insecure)", file=sys.stderr)
        return 2
    state_dir = Path(args.state_dir)
    state_dir.mkdir(parents=True, exist_ok=True)
    gateway = Gateway(args.bridge or settings.bridge_socket_path(state_dir),
                      gone_grace=args.gone_grace, ack_timeout=args.ack_timeout)
    server = GatewayServer(gateway, args.grpc_listen, args.http_listen,
                           server_credentials(*tls) if all(tls) else None, args.grpc_workers)
    server.start()
    ready = state_dir / settings.GATEWAY_READY_FILE
    tmp = ready.with_suffix(".tmp")
    tmp.write_text(json.dumps({"grpc": server.grpc_addr, "http": server.http_url,
                               "pid": os.getpid()}))
    tmp.replace(ready)
    LOG.info("gateway serving gRPC on %s, HTTP on %s, bridge %s", server.grpc_addr,
             server.http_url, gateway.bridge.path)
    done = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: done.set())
    while not done.wait(0.5):
        if args.parent_pid and os.getppid() != args.parent_pid:
            LOG.warning("parent %d is gone; exiting", args.parent_pid)
            break
    server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
