"""The gateway's HTTP ports: plain /metrics and /healthz, and the operator's HTTPS interface.

The plain port is for scrapers and probes: it serves nothing that names a path or an SAE.
What QuSeC knows of the network (``/status``: paths, hosts, links, the policy reload state,
recent refusals; ``/etsi015``: which SAEs talk; ``/events?since=SEQ``: what QuSeC decided
after event SEQ) is served on the operator port only, over mutual TLS to a certificate of role operator
(``qkdnet pki`` issues one); any other certificate gets 403. Both are stdlib servers with a
thread per connection, so each caps its connections and gives every connection a deadline.
"""
from __future__ import annotations

import json
import logging
import socket
import ssl
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from quseccontroller.bridge import BridgeError
from quseccontroller.gateway.control import ControlServicer
from quseccontroller.gateway.rpc import tls_peer_identity
from quseccontroller.identity import OPERATOR, NoIdentity
from quseccontroller.options import split_hostport

LOG = logging.getLogger(__name__)

MAX_CONNECTIONS = 64          # per port; more are closed at once
CONNECTION_DEADLINE_S = 10.0  # a connection (TLS handshake, request, answer) is cut after this
OPERATOR_PATHS = ("/status", "/etsi015", "/events", "/healthz")
EVENTS_LIMIT = 1000           # events in one /events answer at most


class HttpHandler(BaseHTTPRequestHandler):
    """/metrics and /healthz on the plain port; /status, /etsi015, /events, /healthz for operators."""

    gateway: ControlServicer   # set on the subclass made by serve_http
    operator = False           # the operator HTTPS port
    operator_url = ""          # where /status and /etsi015 are (named in the plain port's 404)

    identity = None            # the operator port's verified peer (None: no QuSeC identity)

    def setup(self) -> None:
        super().setup()
        if self.operator:
            try:
                self.identity = tls_peer_identity(self.connection)
            except NoIdentity:
                self.identity = None

    def do_GET(self) -> None:  # noqa: N802 - stdlib name
        path, _, query = self.path.partition("?")
        if self.operator:
            self._operator(path, query)
        elif path == "/metrics":
            self.gateway.refresh_gauges()
            self._send(200, generate_latest(self.gateway.metrics.registry), CONTENT_TYPE_LATEST)
        elif path == "/healthz":
            self._healthz()
        elif path in ("/status", "/etsi015", "/events"):
            self._json(404, {"message": f"{path} is served on QuSeC's operator interface (HTTPS, "
                                        f"an operator certificate): {self.operator_url}{path}"})
        else:
            self._json(404, {"message": f"no such resource {path}; try /metrics, /healthz"})

    def _operator(self, path: str, query: str = "") -> None:
        gw = self.gateway
        who = self.identity
        if who is None or who.role != OPERATOR:
            reason = "role" if who is not None else "no_identity"
            gw.metrics.operator_refused.labels(reason).inc()
            LOG.warning("event=operator_refused peer=%s identity=%s reason=%s path=%s",
                        self.client_address[0], who or "-", reason, path)
            self._json(403, {"message": f"{path} needs an operator certificate (urn:qusec:operator:"
                                        f"NAME), not {who or 'a certificate without a QuSeC identity'}"})
            return
        if path == "/etsi015":
            try:
                body = gw.bridge.call("state", {}, timeout=5.0)
            except BridgeError as exc:
                self._json(503, {"message": f"controller app unavailable: {exc.message}"})
                return
            self._json(200, body)
        elif path == "/status":
            status = gw.refresh_gauges()
            self._json(200 if status else 503, status or {"message": "controller app unavailable"})
        elif path == "/events":
            self._events(query)
        elif path == "/healthz":
            self._healthz()
        else:
            self._json(404, {"message": f"no such resource {path}; try {', '.join(OPERATOR_PATHS)}"})

    def _events(self, query: str) -> None:
        """``/events?since=SEQ&limit=N``: the events after SEQ (default 0: all held), oldest first."""
        params = urllib.parse.parse_qs(query, keep_blank_values=True)
        unknown = sorted(set(params) - {"since", "limit"})
        args = {}
        for name, default in (("since", 0), ("limit", EVENTS_LIMIT)):
            value = (params.get(name) or [str(default)])[-1]
            if not value.isdigit():
                self._json(400, {"message": f"/events: {name} must be a whole number, got {value!r}"})
                return
            args[name] = int(value)
        if unknown:
            self._json(400, {"message": f"/events: unknown parameter(s) {', '.join(unknown)}; "
                                        "known: since, limit"})
            return
        try:
            body = self.gateway.events(args["since"], min(args["limit"], EVENTS_LIMIT))
        except BridgeError as exc:
            self._json(503, {"message": f"controller app unavailable: {exc.message}"})
            return
        self._json(200, body)

    def _healthz(self) -> None:
        gw = self.gateway
        status = gw.refresh_gauges() if gw.bridge.connected else {}
        ok = bool(status)
        self._json(200 if ok else 503, {"status": "SERVING" if ok else "NOT_SERVING",
                                        "app_connected": gw.bridge.connected,
                                        "nodes": gw.sessions.nodes(),
                                        "switches": len(status.get("switches", []))})

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


class CappedHTTPServer(ThreadingHTTPServer):
    """A thread per connection, at most MAX_CONNECTIONS of them, each cut after
    CONNECTION_DEADLINE_S; with ``tls`` the handshake happens on the connection's own thread
    (never on the accepting one) and the verified peer becomes the handler's ``identity``."""

    daemon_threads = True

    def __init__(self, address: tuple[str, int], handler: type, tls: ssl.SSLContext | None = None):
        super().__init__(address, handler)
        self.tls = tls
        self._slots = threading.BoundedSemaphore(MAX_CONNECTIONS)

    def process_request(self, request: socket.socket, client_address: Any) -> None:
        if not self._slots.acquire(blocking=False):
            LOG.warning("event=http_refused peer=%s reason=connection_limit limit=%d",
                        client_address[0], MAX_CONNECTIONS)
            self.shutdown_request(request)
            return
        try:
            super().process_request(request, client_address)
        except Exception:
            self._slots.release()
            raise

    def process_request_thread(self, request: socket.socket, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()

    def finish_request(self, request: socket.socket, client_address: Any) -> None:
        request.settimeout(CONNECTION_DEADLINE_S)
        live = [request]     # the socket the deadline shuts: the TLS one once it exists
        cut = threading.Timer(CONNECTION_DEADLINE_S, lambda: _cut(live[0]))
        cut.daemon = True
        cut.start()
        conn = None
        try:
            if self.tls is not None:
                conn = live[0] = self.tls.wrap_socket(request, server_side=True,
                                                      do_handshake_on_connect=False)
                try:
                    conn.do_handshake()
                except (ssl.SSLError, OSError) as exc:
                    LOG.info("event=operator_refused peer=%s reason=tls msg=%r", client_address[0],
                             str(exc))
                    self.RequestHandlerClass.gateway.metrics.operator_refused.labels("tls").inc()
                    return
            self.RequestHandlerClass(conn or request, client_address, self)
        finally:
            cut.cancel()
            if conn is not None:
                conn.close()


def _cut(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass


def serve_http(gateway: ControlServicer, listen: str, *, tls: ssl.SSLContext | None = None,
               operator_url: str = "", what: str = "--http-listen") -> CappedHTTPServer:
    """Serve ``gateway``'s plain HTTP side (or, with ``tls``, its operator HTTPS side) on
    ``listen`` (port 0: any) in a daemon thread."""
    host, port = split_hostport(listen, what)
    handler = type("BoundHttpHandler", (HttpHandler,), {"gateway": gateway, "operator": tls is not None,
                                                         "operator_url": operator_url})
    server = CappedHTTPServer((host, port), handler, tls)
    threading.Thread(target=server.serve_forever, name="https" if tls else "http", daemon=True).start()
    return server
