"""The app <-> gateway process boundary: length-prefixed JSON over a Unix socket.

grpcio freezes the eventlet hub inside ``osken-manager``, so the gRPC API lives in
a companion process. This module is the only place that knows how the two talk
(socket path, framing, ops, pushes), so a move to a native-thread hub touches this
file alone; what goes inside the frames is converted in ``quseccontroller.records``.

Wire format: each frame is a 4-byte big-endian length followed by that many bytes
of UTF-8 JSON (one object). Three kinds of objects:

* request (gateway -> app): ``{"id": int, "op": str, "args": {...}}``
* response (app -> gateway): ``{"id": int, "ok": true, "result": {...}}`` or
  ``{"id": int, "ok": false, "error": {"code": str, "message": str, "details": {...}}}``
* push (app -> gateway, unsolicited): ``{"push": "authorise"|"revoke", ...}``

Ops: ``register``, ``report``, ``gone``, ``request_path``, ``release``, ``state``
(ETSI 015 export), ``status``, ``events`` (the app's event log after a sequence number),
``note`` (an event the gateway decided), ``export`` (the domain's export to its parent),
``reach`` (what the domain carries from a node to its borders), ``ping``. The app side (``AppBridgeServer``) runs on
os-ken's hub; the gateway side (``GatewayBridgeClient``) runs on plain threads.
"""
from __future__ import annotations

import hashlib
import itertools
import json
import logging
import os
import socket
import struct
import threading
from pathlib import Path
from typing import Any, Callable

LOG = logging.getLogger(__name__)

MAX_FRAME = 16 * 2**20
_HEADER = struct.Struct("!I")

OPS = ("register", "report", "gone", "request_path", "release", "state", "status", "events",
       "note", "export", "reach", "ping")
PUSH_KINDS = ("authorise", "revoke")

# Error codes a handler may raise; the gateway maps them to gRPC status codes.
ERROR_CODES = ("invalid", "not_found", "permission", "unavailable", "timeout", "internal")

SOCKET_NAME = "bridge.sock"
# Unix socket paths are limited to 107 bytes; long state dirs get a short alias.
_SUN_PATH_MAX = 100


def bridge_socket_path(state_dir: str | os.PathLike) -> str:
    """The app<->gateway Unix socket for ``state_dir`` (short enough for AF_UNIX)."""
    path = str(Path(state_dir).resolve() / SOCKET_NAME)
    if len(path.encode()) <= _SUN_PATH_MAX:
        return path
    digest = hashlib.sha1(path.encode()).hexdigest()[:16]
    return f"/tmp/qusec-bridge-{digest}.sock"


class BridgeError(Exception):
    """A request failed: ``code`` is one of ERROR_CODES, ``details`` is JSON-able."""

    def __init__(self, code: str, message: str, details: dict | None = None):
        super().__init__(f"{code}: {message}")
        self.code = code if code in ERROR_CODES else "internal"
        self.message = message
        self.details = details or {}

    def to_wire(self) -> dict:
        return {"code": self.code, "message": self.message, "details": self.details}


class BridgeUnavailable(BridgeError):
    """The other side is not connected (or went away during the call)."""

    def __init__(self, message: str):
        super().__init__("unavailable", message)


class BridgeProtocolError(ValueError):
    """A frame that is not a length-prefixed JSON object (the connection is dropped)."""


def encode(msg: dict) -> bytes:
    """One frame for ``msg``."""
    body = json.dumps(msg, separators=(",", ":"), allow_nan=False).encode()
    if len(body) > MAX_FRAME:
        raise BridgeProtocolError(f"frame of {len(body)} bytes exceeds the {MAX_FRAME}-byte limit")
    return _HEADER.pack(len(body)) + body


class FrameDecoder:
    """Incremental decoder: ``feed(bytes)`` returns the complete objects so far."""

    def __init__(self) -> None:
        self._buf = bytearray()

    def feed(self, data: bytes) -> list[dict]:
        self._buf += data
        out: list[dict] = []
        while len(self._buf) >= _HEADER.size:
            (length,) = _HEADER.unpack_from(self._buf)
            if length > MAX_FRAME:
                raise BridgeProtocolError(f"frame length {length} exceeds the {MAX_FRAME}-byte limit")
            if len(self._buf) < _HEADER.size + length:
                break
            body = bytes(self._buf[_HEADER.size:_HEADER.size + length])
            del self._buf[:_HEADER.size + length]
            try:
                msg = json.loads(body)
            except (UnicodeDecodeError, json.JSONDecodeError) as exc:
                raise BridgeProtocolError(f"frame is not JSON: {exc}") from None
            if not isinstance(msg, dict):
                raise BridgeProtocolError(f"frame is a JSON {type(msg).__name__}, expected an object")
            out.append(msg)
        return out

    @property
    def pending(self) -> int:
        return len(self._buf)


def check_request(msg: dict) -> tuple[int, str, dict]:
    """Validate a request object -> (id, op, args); BridgeProtocolError if malformed."""
    rid, op, args = msg.get("id"), msg.get("op"), msg.get("args", {})
    if not isinstance(rid, int) or isinstance(rid, bool):
        raise BridgeProtocolError(f"request without an integer id: {msg!r:.200}")
    if op not in OPS:
        raise BridgeError("invalid", f"unknown op {op!r} (known: {', '.join(OPS)})")
    if not isinstance(args, dict):
        raise BridgeError("invalid", f"op {op}: args must be an object")
    return rid, op, args


# --------------------------------------------------------------------------- app side


Handler = Callable[[str, dict], dict]


class AppBridgeServer:
    """Listens on the Unix socket inside osken-manager; one green thread per request.

    ``handler(op, args) -> result`` may block on the hub (barriers); a BridgeError
    it raises goes back as an error response, anything else as ``internal``.
    """

    def __init__(self, path: str, handler: Handler):
        self.path = path
        self.handler = handler
        self._conns: dict[int, tuple[Any, Any]] = {}  # id -> (socket, send semaphore)
        self._ids = itertools.count(1)
        self._listener = None
        self._thread = None

    def start(self) -> None:
        from os_ken.lib import hub
        if os.path.exists(self.path):
            os.unlink(self.path)  # stale socket from a previous run
        os.makedirs(os.path.dirname(self.path), exist_ok=True)
        self._listener = hub.listen(self.path, family=socket.AF_UNIX)
        os.chmod(self.path, 0o600)
        self._thread = hub.spawn(self._accept_loop)
        LOG.info("bridge listening on %s", self.path)

    @property
    def connections(self) -> int:
        return len(self._conns)

    def _accept_loop(self) -> None:
        from os_ken.lib import hub
        while self._listener is not None:
            try:
                sock, _ = self._listener.accept()
            except OSError:
                if self._listener is None:
                    return
                raise
            hub.spawn(self._serve, sock)

    def _serve(self, sock) -> None:
        from os_ken.lib import hub
        cid = next(self._ids)
        self._conns[cid] = (sock, hub.Semaphore(1))
        LOG.info("bridge: gateway connected (conn %d)", cid)
        decoder = FrameDecoder()
        try:
            while True:
                data = sock.recv(65536)
                if not data:
                    break
                for msg in decoder.feed(data):
                    hub.spawn(self._dispatch, cid, msg)
        except BridgeProtocolError as exc:
            LOG.warning("bridge: dropping connection %d: %s", cid, exc)
        except OSError as exc:
            LOG.info("bridge: connection %d closed: %s", cid, exc)
        finally:
            self._conns.pop(cid, None)
            try:
                sock.close()
            except OSError:
                pass
            LOG.info("bridge: gateway disconnected (conn %d)", cid)

    def _dispatch(self, cid: int, msg: dict) -> None:
        rid = msg.get("id") if isinstance(msg.get("id"), int) else None
        try:
            rid, op, args = check_request(msg)
            reply = {"id": rid, "ok": True, "result": self.handler(op, args)}
        except BridgeError as exc:
            reply = {"id": rid, "ok": False, "error": exc.to_wire()}
        except BridgeProtocolError as exc:
            reply = {"id": rid, "ok": False, "error": BridgeError("invalid", str(exc)).to_wire()}
        except Exception as exc:  # noqa: BLE001 - a handler bug must not kill the bridge
            LOG.exception("bridge: op %r failed", msg.get("op"))
            reply = {"id": rid, "ok": False,
                     "error": BridgeError("internal", f"{type(exc).__name__}: {exc}").to_wire()}
        self._send(cid, reply)

    def _send(self, cid: int, msg: dict) -> bool:
        conn = self._conns.get(cid)
        if conn is None:
            return False
        sock, lock = conn
        try:
            frame = encode(msg)
        except (BridgeProtocolError, TypeError, ValueError) as exc:
            LOG.error("bridge: cannot encode reply: %s", exc)
            frame = encode({"id": msg.get("id"), "ok": False,
                            "error": BridgeError("internal", f"unencodable reply: {exc}").to_wire()})
        with lock:
            try:
                sock.sendall(frame)
                return True
            except OSError as exc:
                LOG.info("bridge: send on connection %d failed: %s", cid, exc)
                return False

    def push(self, kind: str, body: dict) -> int:
        """Send a push to every connected gateway; returns how many got it."""
        if kind not in PUSH_KINDS:
            raise ValueError(f"unknown push kind {kind!r}")
        msg = dict(body, push=kind)
        return sum(self._send(cid, msg) for cid in list(self._conns))

    def close(self) -> None:
        listener, self._listener = self._listener, None
        if listener is not None:
            listener.close()
        for sock, _ in list(self._conns.values()):
            try:
                sock.close()
            except OSError:
                pass
        try:
            os.unlink(self.path)
        except OSError:
            pass


# ----------------------------------------------------------------------- gateway side


class _Pending:
    __slots__ = ("event", "reply")

    def __init__(self) -> None:
        self.event = threading.Event()
        self.reply: dict | None = None


class GatewayBridgeClient:
    """Connects to the app's socket (reconnecting), makes calls, receives pushes.

    ``on_push(msg)`` runs on the reader thread and must not block; ``on_connect()``
    runs after every (re)connection, before calls are released (used to re-register
    connected agents with an app that restarted).
    """

    def __init__(self, path: str, on_push: Callable[[dict], None],
                 on_connect: Callable[[], None] | None = None,
                 retry_s: float = 0.2):
        self.path = path
        self.on_push = on_push
        self.on_connect = on_connect
        self.retry_s = retry_s
        self._sock: socket.socket | None = None
        self._send_lock = threading.Lock()
        self._pending: dict[int, _Pending] = {}
        self._pending_lock = threading.Lock()
        self._ids = itertools.count(1)
        self._connected = threading.Event()
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="bridge-reader", daemon=True)

    def start(self) -> None:
        self._thread.start()

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    def wait_connected(self, timeout: float) -> bool:
        return self._connected.wait(timeout)

    def close(self) -> None:
        self._stopping.set()
        sock = self._sock
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def call(self, op: str, args: dict | None = None, timeout: float = 10.0) -> dict:
        """One request; raises BridgeError (from the app) or BridgeUnavailable."""
        if op not in OPS:
            raise ValueError(f"unknown op {op!r}")
        sock = self._sock
        if sock is None or not self._connected.is_set():
            raise BridgeUnavailable(f"controller app not connected (bridge {self.path})")
        rid = next(self._ids)
        pending = _Pending()
        with self._pending_lock:
            self._pending[rid] = pending
        try:
            frame = encode({"id": rid, "op": op, "args": args or {}})
            with self._send_lock:
                try:
                    sock.sendall(frame)
                except OSError as exc:
                    raise BridgeUnavailable(f"controller app connection lost: {exc}") from None
            if not pending.event.wait(timeout):
                raise BridgeError("timeout", f"controller app did not answer {op} within {timeout:.1f}s")
        finally:
            with self._pending_lock:
                self._pending.pop(rid, None)
        reply = pending.reply
        if reply is None:
            raise BridgeUnavailable("controller app connection lost during the call")
        if reply.get("ok"):
            return reply.get("result") or {}
        err = reply.get("error") or {}
        raise BridgeError(err.get("code", "internal"), err.get("message", "unknown error"),
                          err.get("details"))

    def _run(self) -> None:
        logged = False
        while not self._stopping.is_set():
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                sock.connect(self.path)
            except OSError as exc:
                sock.close()
                if not logged:
                    LOG.info("bridge: waiting for the controller app at %s (%s)", self.path, exc)
                    logged = True
                self._stopping.wait(self.retry_s)
                continue
            logged = False
            self._sock = sock
            LOG.info("bridge: connected to the controller app at %s", self.path)
            self._connected.set()
            if self.on_connect is not None:
                threading.Thread(target=self._run_on_connect, daemon=True).start()
            try:
                self._read(sock)
            finally:
                self._connected.clear()
                self._sock = None
                sock.close()
                self._fail_pending()
                if not self._stopping.is_set():
                    LOG.warning("bridge: lost the controller app; reconnecting")

    def _run_on_connect(self) -> None:
        try:
            self.on_connect()
        except Exception:  # noqa: BLE001
            LOG.exception("bridge: on_connect failed")

    def _read(self, sock: socket.socket) -> None:
        decoder = FrameDecoder()
        while True:
            try:
                data = sock.recv(65536)
            except OSError:
                return
            if not data:
                return
            try:
                msgs = decoder.feed(data)
            except BridgeProtocolError as exc:
                LOG.error("bridge: bad frame from the app, reconnecting: %s", exc)
                return
            for msg in msgs:
                if "push" in msg:
                    try:
                        self.on_push(msg)
                    except Exception:  # noqa: BLE001
                        LOG.exception("bridge: push handler failed")
                    continue
                with self._pending_lock:
                    pending = self._pending.get(msg.get("id"))
                if pending is not None:
                    pending.reply = msg
                    pending.event.set()

    def _fail_pending(self) -> None:
        with self._pending_lock:
            pendings = list(self._pending.values())
        for p in pendings:
            p.event.set()  # reply stays None -> BridgeUnavailable

