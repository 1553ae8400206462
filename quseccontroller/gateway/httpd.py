"""The gateway's HTTP ports: plain /metrics and /healthz, and the operator's HTTPS interface.

The plain port is for scrapers and probes: it serves nothing that names a path or an SAE.
What QuSeC knows of the network (``/status``: paths, hosts, links, the policy reload state,
recent refusals; ``/etsi015``: which SAEs talk; ``/events?since=SEQ``: what QuSeC decided
after event SEQ; ``/dashboard/``: the live page, quseccontroller/dashboard) is served on the operator
port only, over mutual TLS to a certificate of role operator (``qkdnet pki`` issues one); any other
certificate gets 403. Both are aiohttp servers (HTTP/1.1, keep-alive) on the gateway's event loop
beside grpc.aio: a connection costs a coroutine, and the
answers, which wait on the bridge, are made in the loop's executor. Each port caps its
connections (more are closed before TLS) and cuts every connection after a deadline.
"""
from __future__ import annotations

import asyncio
import json
import logging
import socket
import ssl
import urllib.parse
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from quseccontroller.bridge import BridgeError
from quseccontroller.dashboard import web as dashboard_web
from quseccontroller.dashboard.web import DashboardHub
from quseccontroller.gateway.control import ControlServicer
from quseccontroller.gateway.rpc import tls_peer_identity
from quseccontroller.identity import OPERATOR, Identity, NoIdentity
from quseccontroller.options import split_hostport

LOG = logging.getLogger(__name__)

MAX_CONNECTIONS = 64          # per port; more are closed at once
CONNECTION_DEADLINE_S = 10.0  # a connection (TLS handshake, requests, answers) is cut after this
OPERATOR_PATHS = ("/status", "/etsi015", "/events", "/healthz")
EVENTS_LIMIT = 1000           # events in one /events answer at most


@dataclass(frozen=True)
class Answer:
    status: int
    body: bytes
    ctype: str = "application/json"


def _json(status: int, body: Any) -> Answer:
    return Answer(status, json.dumps(body, indent=1, default=str).encode())


class Pages:
    """What each port answers (blocking: it waits on the bridge; run in the executor).
    /metrics and /healthz on the plain port; /status, /etsi015, /events, /healthz for operators."""

    def __init__(self, gateway: ControlServicer, operator: bool, operator_url: str = "") -> None:
        self.gateway, self.operator, self.operator_url = gateway, operator, operator_url

    def get(self, target: str, who: Identity | None, peer: str) -> Answer:
        path, _, query = target.partition("?")
        if self.operator:
            return self._operator(path, query, who, peer)
        if path == "/metrics":
            self.gateway.refresh_gauges(fresh=False)
            return Answer(200, generate_latest(self.gateway.metrics.registry), CONTENT_TYPE_LATEST)
        if path == "/healthz":
            return self._healthz()
        if path in ("/status", "/etsi015", "/events") or path.startswith("/dashboard"):
            return _json(404, {"message": f"{path} is served on QuSeC's operator interface (HTTPS, "
                                         f"an operator certificate): {self.operator_url}{path}"})
        return _json(404, {"message": f"no such resource {path}; try /metrics, /healthz"})

    def _operator(self, path: str, query: str, who: Identity | None, peer: str) -> Answer:
        gw = self.gateway
        if who is None or who.role != OPERATOR:
            reason = "role" if who is not None else "no_identity"
            gw.metrics.operator_refused.labels(reason).inc()
            LOG.warning("event=operator_refused peer=%s identity=%s reason=%s path=%s",
                        peer, who or "-", reason, path)
            return _json(403, {"message": f"{path} needs an operator certificate (urn:qusec:operator:"
                                         f"NAME), not {who or 'a certificate without a QuSeC identity'}"})
        if path == "/etsi015":
            try:
                return _json(200, gw.bridge.call("state", {}, timeout=5.0))
            except BridgeError as exc:
                return _json(503, {"message": f"controller app unavailable: {exc.message}"})
        if path == "/status":
            status = gw.refresh_gauges()
            return _json(200 if status else 503, status or {"message": "controller app unavailable"})
        if path == "/events":
            return self._events(query)
        if path == "/healthz":
            return self._healthz()
        return _json(404, {"message": f"no such resource {path}; try {', '.join(OPERATOR_PATHS)}"})

    def _events(self, query: str) -> Answer:
        """``/events?since=SEQ&limit=N``: the events after SEQ (default 0: all held), oldest first."""
        params = urllib.parse.parse_qs(query, keep_blank_values=True)
        unknown = sorted(set(params) - {"since", "limit"})
        args = {}
        for name, default in (("since", 0), ("limit", EVENTS_LIMIT)):
            value = (params.get(name) or [str(default)])[-1]
            if not value.isdigit():
                return _json(400, {"message": f"/events: {name} must be a whole number, got {value!r}"})
            args[name] = int(value)
        if unknown:
            return _json(400, {"message": f"/events: unknown parameter(s) {', '.join(unknown)}; "
                                         "known: since, limit"})
        try:
            return _json(200, self.gateway.events(args["since"], min(args["limit"], EVENTS_LIMIT)))
        except BridgeError as exc:
            return _json(503, {"message": f"controller app unavailable: {exc.message}"})

    def _healthz(self) -> Answer:
        gw = self.gateway
        status = gw.refresh_gauges() if gw.bridge.connected else {}
        ok = bool(status)
        return _json(200 if ok else 503, {"status": "SERVING" if ok else "NOT_SERVING",
                                         "app_connected": gw.bridge.connected,
                                         "nodes": gw.sessions.nodes(),
                                         "switches": len(status.get("switches", []))})


# -- the edge: aiohttp on the gateway's loop, connections capped and cut -----------------------------
class _Connection(web.RequestHandler):
    """aiohttp's HTTP/1.1 connection knowing its peer and (operator port) its verified identity."""

    def __init__(self, port: "HttpPort", peer: str, who: Identity | None) -> None:
        super().__init__(port.aio, loop=port.loop, keepalive_timeout=CONNECTION_DEADLINE_S, access_log=None)
        self.port, self.peer, self.who = port, peer, who
        self.raw: asyncio.Transport | None = None   # the TCP transport the cap counts

    def connection_lost(self, exc: BaseException | None) -> None:
        if self.raw is not None:
            self.port.release(self.raw)
        super().connection_lost(exc)

    def handle_error(self, request, status: int = 500, exc: BaseException | None = None,
                     message: str | None = None) -> web.StreamResponse:
        LOG.debug("http %s: %s %s", self.peer, status, message or exc)
        resp = _response(_json(400 if status >= 500 else status, {"message": message or "bad request"}))
        resp.force_close()
        return resp


def _response(answer: Answer) -> web.Response:
    return web.Response(status=answer.status, body=answer.body, headers={"Content-Type": answer.ctype})


class _Accept(asyncio.Protocol):
    """One accepted connection: counted against MAX_CONNECTIONS before anything else (TLS
    included), cut after CONNECTION_DEADLINE_S; aiohttp's _Connection takes over once it is
    (with TLS: once the handshake is done and the peer known)."""

    def __init__(self, port: "HttpPort") -> None:
        self.port = port
        self.buffered: list[bytes] = []
        self.lost: tuple[BaseException | None] | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:
        port = self.port
        peer = str((transport.get_extra_info("peername") or ("?",))[0])
        if port.open >= MAX_CONNECTIONS:
            LOG.warning("event=http_refused peer=%s reason=connection_limit limit=%d", peer, MAX_CONNECTIONS)
            transport.abort()
            return
        port.open += 1
        cut = port.loop.call_later(CONNECTION_DEADLINE_S, transport.abort)
        port.cuts[transport] = cut
        if port.tls is None:
            self._serve(transport, transport, peer, None)
            return
        transport.pause_reading()
        task = port.loop.create_task(self._handshake(transport, peer))
        port.tasks.add(task)
        task.add_done_callback(port.tasks.discard)

    async def _handshake(self, transport: asyncio.Transport, peer: str) -> None:
        port = self.port
        try:
            tls = await port.loop.start_tls(transport, self, port.tls, server_side=True,
                                            ssl_handshake_timeout=CONNECTION_DEADLINE_S)
        except (OSError, asyncio.TimeoutError) as exc:   # ssl.SSLError is an OSError
            LOG.info("event=operator_refused peer=%s reason=tls msg=%r", peer, str(exc))
            port.pages.gateway.metrics.operator_refused.labels("tls").inc()
            port.release(transport)
            transport.abort()
            return
        try:
            who: Identity | None = tls_peer_identity(tls.get_extra_info("ssl_object"))
        except NoIdentity:
            who = None
        self._serve(transport, tls, peer, who)

    def _serve(self, raw: asyncio.Transport, transport: asyncio.Transport, peer: str, who: Identity | None) -> None:
        conn = _Connection(self.port, peer, who)
        conn.raw = raw
        transport.set_protocol(conn)
        conn.connection_made(transport)
        for data in self.buffered:
            conn.data_received(data)
        if self.lost is not None:
            conn.connection_lost(self.lost[0])

    # (TLS) between the handshake and the switch to _Connection: keep what arrives
    def data_received(self, data: bytes) -> None:
        self.buffered.append(data)

    def connection_lost(self, exc: BaseException | None) -> None:
        self.lost = (exc,)


class HttpPort:
    """One listening port (``tls``: the operator's) on the running loop; ``server_address``,
    ``shutdown()`` as the stdlib servers had."""

    def __init__(self, pages: Pages, host: str, port: int, tls: ssl.SSLContext | None,
                 dashboard: DashboardHub | None = None) -> None:
        self.pages, self.tls = pages, tls
        self.dashboard = dashboard        # the operator port serves /dashboard/ (docs/dashboard.md)
        self.loop = asyncio.get_running_loop()
        self.open = 0
        self.cuts: dict[asyncio.Transport, asyncio.TimerHandle] = {}
        self.tasks: set[asyncio.Task] = set()
        self.aio = web.Server(self.handle, loop=self.loop, access_log=None)
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.sock = socket.socket(family, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((host, port))          # bound now: a port in use fails here, at start-up
        self.sock.listen(128)
        self.server_address = self.sock.getsockname()
        self._server: asyncio.base_events.Server | None = None
        self._start = self.loop.create_task(self._serve())

    async def _serve(self) -> None:
        self._server = await self.loop.create_server(lambda: _Accept(self), sock=self.sock)

    def keep(self, raw: asyncio.Transport) -> None:
        """A long-lived answer with bounds of its own (a dashboard stream) outlives the
        connection deadline; the connection still counts against MAX_CONNECTIONS."""
        cut = self.cuts.get(raw)
        if cut is not None:
            cut.cancel()

    def release(self, raw: asyncio.Transport) -> None:
        cut = self.cuts.pop(raw, None)
        if cut is not None:
            cut.cancel()
            self.open -= 1

    async def handle(self, request: web.BaseRequest) -> web.StreamResponse:
        conn: _Connection = request.protocol   # type: ignore[assignment]
        if request.method not in ("GET", "HEAD"):
            return _response(_json(405, {"message": f"method {request.method} not allowed; GET only"}))
        path = request.path
        if self.dashboard is not None and (path == "/dashboard" or path.startswith("/dashboard/")):
            refused = self.pages.gateway.metrics.operator_refused
            check = dashboard_web.operator_authorize(conn.who, lambda reason: refused.labels(reason).inc())
            return await dashboard_web.serve(self.dashboard, request, check, keep=lambda: self.keep(conn.raw))
        answer = await self.loop.run_in_executor(None, self.pages.get, request.raw_path, conn.who, conn.peer)
        return _response(answer)

    def shutdown(self) -> None:
        self._start.cancel()
        if self._server is not None:
            self._server.close()
        else:
            self.sock.close()
        for task in list(self.tasks):
            task.cancel()
        for raw in list(self.cuts):
            raw.abort()


def serve_http(gateway: ControlServicer, listen: str, *, tls: ssl.SSLContext | None = None,
               operator_url: str = "", what: str = "--http-listen",
               dashboard: DashboardHub | None = None) -> HttpPort:
    """Serve ``gateway``'s plain HTTP side (or, with ``tls``, its operator HTTPS side, with the
    ``dashboard`` for operator certificates) on ``listen`` (port 0: any) on the running event loop."""
    host, port = split_hostport(listen, what)
    return HttpPort(Pages(gateway, tls is not None, operator_url), host, port, tls,
                    dashboard if tls is not None else None)
