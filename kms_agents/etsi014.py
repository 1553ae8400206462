"""ETSI GS QKD 014 REST server over HTTPS with mutual TLS (the standard library's HTTP server).

The calling SAE is the identity of its client certificate (``CERT_REQUIRED``, the network's
CA; role ``sae``: a node's or QuSeC's certificate is no SAE). HTTP/1.1 keep-alive; the TLS
handshake runs in the connection's own thread so a slow client never blocks ``accept``.
What a caller may hold is capped (``[caps]``): open connections in total (one thread each)
and per SAE, the handshake's time, and each request's: it must arrive whole within
``etsi014_request_s`` of its first byte, and its answer be taken within as long, however
slowly the bytes trickle. Requests are translated into
:class:`~kms_agents.service.KeyService` calls; errors become 400/401/503 with the ETSI
error body (401 without a body). The OpenAPI document is kms_agents/openapi/etsi014.json.
"""
from __future__ import annotations

import io
import json
import logging
import socket
import ssl
import threading
import time
import urllib.parse
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from kms_agents import metrics
from kms_agents.config import Caps
from kms_agents.keyrequest import KeyServiceError, bad
from kms_agents.rpc import check_caller, https_server_context
from kms_agents.service import KeyService

log = logging.getLogger(__name__)

API_PREFIX = "/api/v1/keys/"
MAX_BODY = 1 << 20


class DeadlinePassed(TimeoutError):
    """A request (or its answer) took longer than its whole-request deadline."""


class DeadlineIO(io.RawIOBase):
    """A connection's socket as a raw stream whose every read and write waits only until the
    current deadline (``deadline``, monotonic; None: ``idle_s`` per read, between requests)."""

    def __init__(self, sock: socket.socket, idle_s: float) -> None:
        super().__init__()
        self.sock, self.idle_s = sock, idle_s
        self.deadline: float | None = None
        self.expired = False

    def readable(self) -> bool:
        return True

    def writable(self) -> bool:
        return True

    def _timeout(self) -> float:
        if self.deadline is None:
            return self.idle_s
        left = self.deadline - time.monotonic()
        if left <= 0:
            self.expired = True
            raise DeadlinePassed("whole-request deadline passed")
        return left

    def readinto(self, buf) -> int:
        self.sock.settimeout(self._timeout())
        try:
            return self.sock.recv_into(buf)
        except TimeoutError:
            if self.deadline is not None:
                self.expired = True
                raise DeadlinePassed("whole-request deadline passed") from None
            raise

    def write(self, data) -> int:
        self.sock.settimeout(self._timeout())
        try:
            return self.sock.send(data)
        except TimeoutError:
            self.expired = True
            raise DeadlinePassed("answer not taken before the deadline") from None


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 256
    allow_reuse_address = True

    def __init__(self, addr: tuple[str, int], ctx: ssl.SSLContext, service: KeyService, caps: Caps) -> None:
        self.ctx = ctx
        self.service = service
        self.caps = caps
        self.open = 0                       # connections with a thread
        self.per_sae: Counter[str] = Counter()
        self.count_lock = threading.Lock()
        family = socket.AF_INET6 if ":" in addr[0] else socket.AF_INET
        self.address_family = family
        super().__init__(addr, _Handler)

    def get_request(self):
        sock, addr = self.socket.accept()
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return self.ctx.wrap_socket(sock, server_side=True, do_handshake_on_connect=False), addr

    def process_request(self, request, client_address) -> None:
        with self.count_lock:
            full = self.open >= self.caps.etsi014_connections
            if not full:
                self.open += 1
        if full:   # refused before TLS: a thread per connection is what the cap bounds
            metrics.refused("etsi014", "connections", f"{self.caps.etsi014_connections} connections open "
                            "(etsi014_connections): connection closed", logger=log, peer=client_address[0])
            self.shutdown_request(request)
            return
        try:
            super().process_request(request, client_address)
        except Exception:
            with self.count_lock:
                self.open -= 1
            raise

    def process_request_thread(self, request, client_address) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            with self.count_lock:
                self.open -= 1

    def handle_error(self, request, client_address) -> None:
        import sys
        exc = sys.exc_info()[1]
        if isinstance(exc, OSError):   # peers that vanish or fail TLS: routine, not a server fault
            log.debug("ETSI 014 connection from %s: %s", client_address, exc)
        else:
            log.warning("ETSI 014 connection from %s failed", client_address, exc_info=True)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    default_request_version = "HTTP/1.0"   # so even a garbled request line gets a status line back
    server_version = "qusec-vkms/1"
    sys_version = ""
    server: _Server

    def setup(self) -> None:
        caps = self.server.caps
        self.connection = self.request
        self.sae = ""
        self._refusal: tuple[str, str] | None = None    # (reason, message): answer 401 / 503
        self._counted = False
        self._handshake_failed = False
        # the whole handshake within etsi014_handshake_s (ssl applies it as one deadline)
        self.connection.settimeout(caps.etsi014_handshake_s)
        try:
            self.connection.do_handshake()
        except (ssl.SSLError, OSError) as exc:
            if isinstance(exc, TimeoutError):
                metrics.refused("etsi014", "handshake_deadline", f"TLS handshake not done within "
                                f"{caps.etsi014_handshake_s:g} s", logger=log, level=logging.INFO,
                                peer=self.client_address[0])
            else:
                log.info("TLS handshake with %s failed: %s", self.client_address, exc)
            self._handshake_failed = True
        else:
            self._identify()
        self._io = DeadlineIO(self.connection, caps.etsi014_idle_s)
        self.rfile = io.BufferedReader(self._io, 64 * 1024)
        self.wfile = io.BufferedWriter(self._io, 64 * 1024)

    def _identify(self) -> None:
        ident, refusal = check_caller(self.connection, "sae", "etsi014", "a client certificate naming the SAE "
                                                                          "is required")
        if refusal is not None:
            self._refusal = ("401", refusal[1])
            return
        self.sae = ident.name
        caps = self.server.caps
        with self.server.count_lock:
            self.server.per_sae[self.sae] += 1
            self._counted = True
            busy = self.server.per_sae[self.sae] > caps.etsi014_connections_per_sae
        if busy:
            message = (f"SAE {self.sae!r} has {caps.etsi014_connections_per_sae} connections open to this "
                       "KME (the most it may); close idle ones")
            metrics.refused("etsi014", "connections_per_sae", message, logger=log, caller=f"sae:{self.sae}")
            self._refusal = ("503", message)

    def handle(self) -> None:
        if not self._handshake_failed:
            super().handle()

    def handle_one_request(self) -> None:
        self._io.deadline = None
        try:
            if not self.rfile.peek(1):   # the client closed the connection
                self.close_connection = True
                return
        except (TimeoutError, OSError):  # idle too long, or gone
            self.close_connection = True
            return
        # the request's first byte is here: the rest must follow within the deadline
        self._io.deadline = time.monotonic() + self.server.caps.etsi014_request_s
        self.path = ""   # a request line that does not parse counts as endpoint "other", not the last one's
        super().handle_one_request()
        if self._io.expired:
            self.close_connection = True
            metrics.refused("etsi014", "request_deadline", f"request not received (or its answer not taken) "
                            f"within {self.server.caps.etsi014_request_s:g} s: connection closed", logger=log,
                            caller=f"sae:{self.sae}" if self.sae else "", peer=self.client_address[0])

    def finish(self) -> None:
        if self._counted:
            with self.server.count_lock:
                self.server.per_sae[self.sae] -= 1
                if self.server.per_sae[self.sae] <= 0:
                    del self.server.per_sae[self.sae]
        try:
            if not self.wfile.closed:
                self.wfile.flush()
        except OSError:
            pass
        finally:
            self.wfile.close()
            self.rfile.close()

    def log_message(self, fmt: str, *args: Any) -> None:
        log.debug("%s %s", self.client_address[0], fmt % args)

    # -- responses --------------------------------------------------------------
    def _send(self, status: int, body: dict | None, extra_headers: dict | None = None) -> None:
        # the answer gets its own deadline: the time the key service took is not the client's
        self._io.deadline = time.monotonic() + self.server.caps.etsi014_request_s
        metrics.etsi014_answered(getattr(self, "path", ""), status, body)
        data = b"" if body is None else json.dumps(body).encode()
        self.send_response(status)
        if body is not None:
            self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Cache-Control", "no-store")
        for k, v in (extra_headers or {}).items():
            self.send_header(k, v)
        # headers and body in one write: no Nagle/delayed-ACK stall between two small segments
        self._headers_buffer.append(b"\r\n")
        if data and self.command != "HEAD":
            self._headers_buffer.append(data)
        self.flush_headers()
        self.wfile.flush()

    def _error(self, exc: KeyServiceError) -> None:
        self._send(exc.status, exc.body())

    # -- dispatch ----------------------------------------------------------------
    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_PUT(self) -> None:
        self._dispatch("PUT")

    def do_DELETE(self) -> None:
        self._dispatch("DELETE")

    def do_PATCH(self) -> None:
        self._dispatch("PATCH")

    def __getattr__(self, name: str):
        # any other method token (HEAD, OPTIONS, made-up ones) is a 405, never the base class's 501
        if name.startswith("do_") and name[3:].isascii() and name[3:].isupper():
            return lambda: self._dispatch(name[3:])
        raise AttributeError(name)

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """Protocol-level errors (bad request line, headers too long ...) with the ETSI JSON body."""
        self.close_connection = True
        text = message or explain or self.responses.get(code, ("error",))[0]
        if code >= 500 and code != 503:   # e.g. 505 for "HTTP/9.9": the client's fault, say so with a 400
            code = 400
        try:
            self._send(code, {"message": text},
                       {"Connection": "close"})
        except OSError:
            pass

    def _dispatch(self, method: str) -> None:
        try:
            body_bytes = self._read_body()
        except KeyServiceError as exc:
            self.close_connection = True
            self._error(exc)
            return
        parts = urllib.parse.urlsplit(self.path)
        if not parts.path.startswith(API_PREFIX):
            self._send(404, {"message": f"no such resource {parts.path!r}; the API is under {API_PREFIX}"})
            return
        segs = parts.path[len(API_PREFIX):].split("/")
        if len(segs) != 2 or not segs[0] or segs[1] not in ("status", "enc_keys", "dec_keys"):
            self._send(404, {"message": f"no such resource {parts.path!r}; expected "
                                        f"{API_PREFIX}{{SAE_ID}}/status|enc_keys|dec_keys"})
            return
        sae_id, call = urllib.parse.unquote(segs[0]), segs[1]
        allowed = ("GET",) if call == "status" else ("GET", "POST")
        if method not in allowed:
            self._send(405, {"message": f"method {method} not allowed on {call}"}, {"Allow": ", ".join(allowed)})
            return
        if self._refusal is not None:
            status, message = self._refusal
            if status == "401":
                self._send(401, None)
            else:   # over a cap: say so, and end this connection
                self.close_connection = True
                self._send(503, {"message": message}, {"Connection": "close"})
            return
        try:
            result = self._call(method, call, sae_id, parts.query, body_bytes)
        except KeyServiceError as exc:
            self._error(exc)
            return
        except Exception:  # noqa: BLE001 - a bug must not kill the connection thread silently
            log.exception("ETSI 014 %s %s failed", method, call)
            self._send(500, {"message": "internal error in the KME"})
            return
        self._send(200, result)

    def _read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            raise bad("chunked request bodies are not supported; send Content-Length")
        length = self.headers.get("Content-Length")
        if length is None:
            return b""
        if not length.isdigit():
            raise bad("Content-Length must be a non-negative integer")
        n = int(length)
        if n > MAX_BODY:
            raise bad(f"request body too large ({n} > {MAX_BODY} bytes)")
        return self.rfile.read(n) if n else b""

    def _call(self, method: str, call: str, sae_id: str, query: str, body_bytes: bytes) -> dict:
        svc = self.server.service
        params = _query(query)
        if call == "status":
            if params:
                raise bad("Get status takes no query parameters")
            return svc.status(self.sae, sae_id)
        if method == "GET":
            if body_bytes:
                raise bad("a GET request carries its parameters in the query, not in a body")
            if call == "enc_keys":
                for k in params:
                    if k not in ("number", "size"):
                        raise bad(f"unknown query parameter {k!r}: GET enc_keys takes only number and size",
                                  parameter=k)
                body = {k: _int_param(k, v) for k, v in params.items()}
                return svc.enc_keys(self.sae, sae_id, body)
            if set(params) != {"key_ID"}:
                raise bad("GET dec_keys takes exactly one query parameter: key_ID")
            return svc.dec_keys(self.sae, sae_id, {"key_IDs": [{"key_ID": params["key_ID"]}]})
        if params:
            raise bad("a POST request carries its parameters in the JSON body, not in the query")
        body = _json(body_bytes)
        if call == "enc_keys":
            return svc.enc_keys(self.sae, sae_id, body)
        return svc.dec_keys(self.sae, sae_id, body)


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


class Etsi014Server:
    """The node's ETSI 014 endpoint: start() serves in a background thread."""

    def __init__(self, service: KeyService, listen: str, ca_cert: str, cert: str, key: str, *,
                 caps: Caps | None = None) -> None:
        host, _, port = listen.rpartition(":")
        host = host.strip("[]")
        self._httpd = _Server((host, int(port)), https_server_context(ca_cert, cert, key), service,
                              caps or Caps())
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return self._httpd.server_address[1]

    @property
    def host(self) -> str:
        return self._httpd.server_address[0]

    def start(self) -> "Etsi014Server":
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.2},
                                        name="etsi014", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        if self._thread:
            self._thread.join(timeout=5)
