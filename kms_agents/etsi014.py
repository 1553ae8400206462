"""ETSI GS QKD 014 REST server over HTTPS with mutual TLS (aiohttp's HTTP/1.1 server on an asyncio loop).

The calling SAE is the identity of its client certificate (``CERT_REQUIRED``, the network's
CA; role ``sae``: a node's or QuSeC's certificate is no SAE), read once per connection after
the handshake and given to each of its requests. HTTP/1.1 keep-alive. What a caller may hold
is capped (``[caps]``): open connections in total (the next is closed before TLS) and per SAE,
the handshake's time, the time a keep-alive connection may sit idle, and each request's: it
must arrive whole within ``etsi014_request_s`` of its first byte, and its answer be taken
within as long, however slowly the bytes trickle. Key service calls (SQLite, the neighbour's
gRPC) run in a bounded thread pool, never on the loop.

The request handling is pure (:func:`route`, :func:`call`): a method, a target and a body in,
a :class:`~kms_agents.service.KeyService` call and an answer out; errors become 400/401/503
with the ETSI error body (401 without a body). The OpenAPI document is
kms_agents/openapi/etsi014.json.
"""
from __future__ import annotations

import asyncio
import json
import logging
import threading
import urllib.parse
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiohttp import web

from kms_agents import metrics
from kms_agents.config import Caps
from kms_agents.keyrequest import KeyServiceError, bad
from kms_agents.rpc import check_caller, https_server_context
from kms_agents.service import KeyService

log = logging.getLogger(__name__)

API_PREFIX = "/api/v1/keys/"
MAX_BODY = 1 << 20
CALLS = ("status", "enc_keys", "dec_keys")
SERVER = "qusec-vkms/1"
SERVICE_THREADS = 32          # key service calls at once (each waits on SQLite or the neighbour)


# -- the pure request handling ------------------------------------------------------------------
@dataclass(frozen=True)
class Reply:
    """An answer: status, JSON body (None: no body), extra headers, and whether to end the connection."""
    status: int
    body: dict | None
    headers: dict[str, str] = field(default_factory=dict)
    close: bool = False


@dataclass(frozen=True)
class Route:
    """A request for one of the three calls: the SAE ID in the path, the call, its query string."""
    sae_id: str
    call: str
    query: str


def route(method: str, target: str) -> Route | Reply:
    """Where ``method target`` goes: a :class:`Route`, or the 404/405 answer."""
    parts = urllib.parse.urlsplit(target)
    if not parts.path.startswith(API_PREFIX):
        return Reply(404, {"message": f"no such resource {parts.path!r}; the API is under {API_PREFIX}"})
    segs = parts.path[len(API_PREFIX):].split("/")
    if len(segs) != 2 or not segs[0] or segs[1] not in CALLS:
        return Reply(404, {"message": f"no such resource {parts.path!r}; expected "
                                      f"{API_PREFIX}{{SAE_ID}}/status|enc_keys|dec_keys"})
    call = segs[1]
    allowed = ("GET",) if call == "status" else ("GET", "POST")
    if method not in allowed:
        return Reply(405, {"message": f"method {method} not allowed on {call}"}, {"Allow": ", ".join(allowed)})
    return Route(urllib.parse.unquote(segs[0]), call, parts.query)


def body_length(headers: Any) -> int:
    """The request body's declared length, or KeyServiceError (chunked, not a number, too large)."""
    if headers.get("Transfer-Encoding", "").lower() == "chunked":
        raise bad("chunked request bodies are not supported; send Content-Length")
    length = headers.get("Content-Length")
    if length is None:
        return 0
    if not length.isdigit():
        raise bad("Content-Length must be a non-negative integer")
    n = int(length)
    if n > MAX_BODY:
        raise bad(f"request body too large ({n} > {MAX_BODY} bytes)")
    return n


def call(svc: KeyService, sae: str, method: str, r: Route, body_bytes: bytes) -> Reply:
    """The key service's answer to the SAE ``sae`` (its certificate's) for ``method`` on ``r``."""
    try:
        return Reply(200, _call(svc, sae, method, r, body_bytes))
    except KeyServiceError as exc:
        return Reply(exc.status, exc.body())
    except Exception:  # noqa: BLE001 - a bug is a 500 for this request, the server serves on
        log.exception("ETSI 014 %s %s failed", method, r.call)
        return Reply(500, {"message": "internal error in the KME"})


def _call(svc: KeyService, sae: str, method: str, r: Route, body_bytes: bytes) -> dict:
    params = _query(r.query)
    if r.call == "status":
        if params:
            raise bad("Get status takes no query parameters")
        return svc.status(sae, r.sae_id)
    if method == "GET":
        if body_bytes:
            raise bad("a GET request carries its parameters in the query, not in a body")
        if r.call == "enc_keys":
            for k in params:
                if k not in ("number", "size"):
                    raise bad(f"unknown query parameter {k!r}: GET enc_keys takes only number and size",
                              parameter=k)
            body = {k: _int_param(k, v) for k, v in params.items()}
            return svc.enc_keys(sae, r.sae_id, body)
        if set(params) != {"key_ID"}:
            raise bad("GET dec_keys takes exactly one query parameter: key_ID")
        return svc.dec_keys(sae, r.sae_id, {"key_IDs": [{"key_ID": params["key_ID"]}]})
    if params:
        raise bad("a POST request carries its parameters in the JSON body, not in the query")
    body = _json(body_bytes)
    if r.call == "enc_keys":
        return svc.enc_keys(sae, r.sae_id, body)
    return svc.dec_keys(sae, r.sae_id, body)


def _query(query: str) -> dict[str, str]:
    if not query:
        return {}
    try:
        pairs = urllib.parse.parse_qsl(query, keep_blank_values=True, strict_parsing=True)
    except ValueError:
        raise bad("malformed query string") from None
    out: dict[str, str] = {}
    for k, v in pairs:
        if k in out:
            raise bad(f"query parameter {k!r} given more than once", parameter=k)
        out[k] = v
    return out


def _int_param(name: str, value: str) -> int:
    if not value.isascii() or not value.isdigit() or len(value) > 9:
        raise bad(f"{name} shall be a positive integer, got {value!r}", parameter=name)
    return int(value)


def _json(data: bytes) -> Any:
    if not data.strip():
        return None
    try:
        return json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise bad("request body is not valid JSON (UTF-8)") from None
    except RecursionError:
        raise bad("request body nests too deeply") from None


# -- the server edge: connections, TLS, deadlines -------------------------------------------------
class _Limits:
    """The connections open (all, and per SAE) against the caps; touched on the loop only."""

    def __init__(self, caps: Caps) -> None:
        self.caps = caps
        self.open = 0
        self.per_sae: Counter[str] = Counter()


class _Connection(web.RequestHandler):
    """aiohttp's HTTP/1.1 connection, knowing its caller (``sae`` or ``refusal``) and the request
    deadline: armed at a request's first byte, disarmed once its body is read."""

    def __init__(self, edge: "_Edge", peer: str, sae: str, refusal: Reply | None) -> None:
        caps = edge.limits.caps
        super().__init__(edge.aio, loop=edge.loop, keepalive_timeout=caps.etsi014_idle_s, tcp_keepalive=False,
                         access_log=None, max_line_size=8190, max_field_size=8190, max_headers=100)
        self.edge, self.peer, self.sae, self.refusal = edge, peer, sae, refusal
        self._deadline: asyncio.TimerHandle | None = None
        self._released = False

    def data_received(self, data: bytes) -> None:
        if self._deadline is None and data:     # a request's first byte: the rest within the deadline
            self._deadline = self.edge.loop.call_later(self.edge.limits.caps.etsi014_request_s, self.expired)
        super().data_received(data)

    def request_read(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def expired(self) -> None:
        self.edge.refuse_deadline(self)
        if self.transport is not None:
            self.transport.abort()

    def connection_lost(self, exc: BaseException | None) -> None:
        self.request_read()
        self.edge.release(self)
        super().connection_lost(exc)

    def handle_error(self, request, status: int = 500, exc: BaseException | None = None,
                     message: str | None = None) -> web.StreamResponse:
        """Protocol-level errors (bad request line, headers too long ...) with the ETSI JSON body."""
        log.debug("ETSI 014 request from %s: %s %s", self.peer, status, message or exc)
        if status >= 500 and status != 503:   # e.g. a parser's 5xx for the client's bytes: say 400
            status = 400
        text = message or (str(exc) if exc else "bad request")
        reply = Reply(status, {"message": text}, {"Connection": "close"}, close=True)
        metrics.etsi014_answered("", reply.status, reply.body)   # a request that does not parse: "other"
        resp = _response(reply)
        resp.force_close()
        return resp


def _response(reply: Reply) -> web.Response:
    # orjson: a bulk answer (128 base64 keys, ~200 kB) took the stdlib encoder about 0.5 ms of the
    # source node's CPU per request (the largest Python item there), orjson some 0.04 ms
    data = b"" if reply.body is None else orjson.dumps(reply.body, option=orjson.OPT_NON_STR_KEYS)
    headers = {"Server": SERVER, "Cache-Control": "no-store", **reply.headers}
    if reply.body is not None:
        headers["Content-Type"] = "application/json; charset=utf-8"
    resp = web.Response(status=reply.status, body=data, headers=headers)
    if reply.close:
        resp.force_close()
    return resp


class _Accept:
    """One accepted TCP connection until its TLS handshake is done: the total cap is checked
    before TLS; then the caller is identified and aiohttp's :class:`_Connection` takes over."""

    def __init__(self, edge: "_Edge") -> None:
        self.edge = edge
        self.buffered: list[bytes] = []
        self.lost: tuple[BaseException | None] | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:
        peer = (transport.get_extra_info("peername") or ("?",))[0]
        limits = self.edge.limits
        if limits.open >= limits.caps.etsi014_connections:
            metrics.refused("etsi014", "connections", f"{limits.caps.etsi014_connections} connections open "
                            "(etsi014_connections): connection closed", logger=log, peer=peer)
            transport.abort()
            return
        limits.open += 1
        transport.pause_reading()        # the ClientHello waits for the TLS layer
        task = self.edge.loop.create_task(self._handshake(transport, peer))
        self.edge.handshakes.add(task)
        task.add_done_callback(self.edge.handshakes.discard)

    async def _handshake(self, transport: asyncio.Transport, peer: str) -> None:
        edge, caps = self.edge, self.edge.limits.caps
        late: list[bool] = []

        def too_late() -> None:   # counted, then closed: whoever sees the close sees the count
            late.append(True)
            metrics.refused("etsi014", "handshake_deadline", f"TLS handshake not done within "
                            f"{caps.etsi014_handshake_s:g} s", logger=log, level=logging.INFO, peer=peer)
            transport.abort()

        deadline = edge.loop.call_later(caps.etsi014_handshake_s, too_late)
        try:   # asyncio's own handshake timeout only as a backstop
            tls = await edge.loop.start_tls(transport, self, edge.ctx, server_side=True,
                                            ssl_handshake_timeout=caps.etsi014_handshake_s + 5)
        except (OSError, asyncio.TimeoutError) as exc:   # ssl.SSLError is an OSError
            edge.limits.open -= 1
            if not late:
                log.info("TLS handshake with %s failed: %s", peer, exc)
            transport.abort()
            return
        finally:
            deadline.cancel()
        if tls is None:   # aborted at the deadline: start_tls gives None instead of raising
            edge.limits.open -= 1
            return
        sae, refusal = edge.identify(tls.get_extra_info("ssl_object"))
        conn = _Connection(edge, peer, sae, refusal)
        tls.set_protocol(conn)
        conn.connection_made(tls)
        for data in self.buffered:
            conn.data_received(data)
        if self.lost is not None:
            conn.connection_lost(self.lost[0])

    # between the handshake and the switch to _Connection (one loop turn): keep what arrives
    def data_received(self, data: bytes) -> None:
        self.buffered.append(data)

    def eof_received(self) -> bool:
        return False

    def connection_lost(self, exc: BaseException | None) -> None:
        self.lost = (exc,)

    def pause_writing(self) -> None:
        pass

    def resume_writing(self) -> None:
        pass


class _Edge:
    """The loop's side of the server: TLS context, caps, key service pool, aiohttp's handler."""

    def __init__(self, loop: asyncio.AbstractEventLoop, ctx, service: KeyService, caps: Caps) -> None:
        self.loop, self.ctx, self.service = loop, ctx, service
        self.limits = _Limits(caps)
        self.pool = ThreadPoolExecutor(SERVICE_THREADS, thread_name_prefix="etsi014")
        self.handshakes: set[asyncio.Task] = set()
        self.aio = web.Server(self.handle, loop=loop, access_log=None)

    def identify(self, ssl_object) -> tuple[str, Reply | None]:
        ident, refusal = check_caller(ssl_object, "sae", "etsi014", "a client certificate naming the SAE "
                                                                    "is required")
        if refusal is not None:
            return "", Reply(401, None)
        caps, per_sae = self.limits.caps, self.limits.per_sae
        per_sae[ident.name] += 1
        if per_sae[ident.name] > caps.etsi014_connections_per_sae:
            message = (f"SAE {ident.name!r} has {caps.etsi014_connections_per_sae} connections open to this "
                       "KME (the most it may); close idle ones")
            metrics.refused("etsi014", "connections_per_sae", message, logger=log, caller=f"sae:{ident.name}")
            return ident.name, Reply(503, {"message": message}, {"Connection": "close"}, close=True)
        return ident.name, None

    def release(self, conn: _Connection) -> None:
        if conn._released:
            return
        conn._released = True
        self.limits.open -= 1
        if conn.sae:
            self.limits.per_sae[conn.sae] -= 1
            if self.limits.per_sae[conn.sae] <= 0:
                del self.limits.per_sae[conn.sae]

    def refuse_deadline(self, conn: _Connection) -> None:
        metrics.refused("etsi014", "request_deadline", f"request not received (or its answer not taken) "
                        f"within {self.limits.caps.etsi014_request_s:g} s: connection closed", logger=log,
                        caller=f"sae:{conn.sae}" if conn.sae else "", peer=conn.peer)

    async def handle(self, request: web.BaseRequest) -> web.StreamResponse:
        conn: _Connection = request.protocol   # type: ignore[assignment]
        reply = await self._answer(conn, request)
        metrics.etsi014_answered(request.raw_path, reply.status, reply.body)
        resp = _response(reply)
        # the answer gets its own deadline: the time the key service took is not the client's
        try:
            async with asyncio.timeout(self.limits.caps.etsi014_request_s):
                await resp.prepare(request)
                await resp.write_eof()
                await request.writer.drain()
        except TimeoutError:
            self.refuse_deadline(conn)
            if conn.transport is not None:
                conn.transport.abort()
        return resp

    async def _answer(self, conn: _Connection, request: web.BaseRequest) -> Reply:
        try:
            n = body_length(request.headers)
        except KeyServiceError as exc:
            conn.request_read()
            return Reply(exc.status, exc.body(), close=True)
        body = await request.content.readexactly(n) if n else b""
        conn.request_read()
        r = route(request.method, request.raw_path)
        if isinstance(r, Reply):
            return r
        if conn.refusal is not None:
            return conn.refusal
        return await self.loop.run_in_executor(self.pool, call, self.service, conn.sae, request.method, r, body)


class Etsi014Server:
    """The node's ETSI 014 endpoint: bound at construction; start() serves on an asyncio loop in a
    background thread."""

    def __init__(self, service: KeyService, listen: str, ca_cert: str, cert: str, key: str, *,
                 caps: Caps | None = None) -> None:
        host, _, port = listen.rpartition(":")
        self._loop = asyncio.new_event_loop()
        self._edge = _Edge(self._loop, https_server_context(ca_cert, cert, key), service, caps or Caps())
        self._server = self._loop.run_until_complete(self._loop.create_server(
            lambda: _Accept(self._edge), host.strip("[]"), int(port), backlog=256, reuse_address=True))
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return self._server.sockets[0].getsockname()[1]

    @property
    def host(self) -> str:
        return self._server.sockets[0].getsockname()[0]

    def start(self) -> "Etsi014Server":
        self._thread = threading.Thread(target=self._loop.run_forever, name="etsi014", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        async def close() -> None:
            self._server.close()
            for task in list(self._edge.handshakes):
                task.cancel()
            await self._edge.aio.shutdown(1.0)
        if self._thread is not None:
            asyncio.run_coroutine_threadsafe(close(), self._loop).result(timeout=5)
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=5)
        else:
            self._loop.run_until_complete(close())
        self._loop.close()
        self._edge.pool.shutdown(wait=False, cancel_futures=True)
