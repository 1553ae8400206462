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

Ops: ``register``, ``report``, ``reports`` (many nodes' reports in one call: what waited
while the last batch was with the app), ``gone``, ``request_path``, ``release``, ``state``
(ETSI 015 export), ``status``, ``events`` (the app's event log after a sequence number),
``note`` (an event the gateway decided), ``export`` (the domain's export to its parent),
``reach`` (what the domain carries from a node to its borders), ``ping``. The app side (``AppBridgeServer``) runs on
os-ken's hub; the gateway side (``GatewayBridgeClient``) runs on plain threads: a reader and a
writer per connection, so a call from the gateway's event loop (``acall``) holds no thread and
never waits on the socket.
"""
from __future__ import annotations

import asyncio
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

OPS = ("register", "report", "reports", "gone", "request_path", "release", "state", "status", "events",
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
    """A call waiting for its reply: a thread's (``event``) or a coroutine's (``future`` on ``loop``)."""
    __slots__ = ("event", "reply", "future", "loop")

    def __init__(self, future: asyncio.Future | None = None,
                 loop: asyncio.AbstractEventLoop | None = None) -> None:
        self.event = threading.Event() if future is None else None
        self.reply: dict | None = None
        self.future, self.loop = future, loop


def _settle(pendings: list[_Pending]) -> None:
    """On the callers' loop: their replies (None: the connection was lost)."""
    for p in pendings:
        if not p.future.done():
            p.future.set_result(p.reply)


def _time_out(future: asyncio.Future, op: str, timeout: float) -> None:
    if not future.done():
        future.set_exception(BridgeError("timeout", f"controller app did not answer {op} within "
                                                    f"{timeout:.1f}s"))


class _Outbox:
    """The frames on their way to the app over one connection. A frame goes out at once from the
    caller's thread when nothing is queued and the socket takes it whole without waiting; the
    rest is queued for the writer thread, which sends what queued meanwhile in one write. So a
    caller (the gateway's event loop) never waits on the socket, and a call costs no thread
    switch while the app keeps up. A failed write shuts the socket (the reader then fails the
    calls waiting)."""

    def __init__(self, sock: socket.socket):
        self.sock = sock
        self._frames: list[bytes] = []
        self._writing = False
        self._cond = threading.Condition()
        self._closed = False
        threading.Thread(target=self._write, name="bridge-writer", daemon=True).start()

    def put(self, frame: bytes) -> None:
        with self._cond:
            if self._closed:
                raise BridgeUnavailable("controller app connection lost")
            if not self._frames and not self._writing:
                try:
                    sent = self.sock.send(frame, socket.MSG_DONTWAIT)
                except BlockingIOError:
                    sent = 0
                except OSError as exc:
                    self._fail(exc)
                    raise BridgeUnavailable(f"controller app connection lost: {exc}") from None
                if sent == len(frame):
                    return
                frame = frame[sent:]
            self._frames.append(frame)
            if len(self._frames) == 1:
                self._cond.notify()

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._frames.clear()
            self._cond.notify()

    def _fail(self, exc: OSError) -> None:
        LOG.info("bridge: write to the controller app failed: %s", exc)
        self._closed = True
        self._frames.clear()
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def _write(self) -> None:
        while True:
            with self._cond:
                self._writing = False
                while not self._frames and not self._closed:
                    self._cond.wait()
                if self._closed:
                    return
                frames, self._frames = self._frames, []
                self._writing = True
            try:
                self.sock.sendall(b"".join(frames))
            except OSError as exc:
                with self._cond:
                    self._fail(exc)
                return


class GatewayBridgeClient:
    """Connects to the app's socket (reconnecting), makes calls, receives pushes.

    ``call`` blocks its thread until the reply; ``acall`` awaits it on the caller's event loop
    (no thread held: the reader thread hands the replies of each read to the loop at once).
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
        self._outbox: _Outbox | None = None
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
        """One request, waited for on this thread; raises BridgeError (from the app) or
        BridgeUnavailable."""
        pending = _Pending()
        rid = self._send(op, args, pending)
        try:
            if not pending.event.wait(timeout):
                raise BridgeError("timeout", f"controller app did not answer {op} within {timeout:.1f}s")
        finally:
            self._forget(rid)
        return self._result(pending.reply)

    async def acall(self, op: str, args: dict | None = None, timeout: float = 10.0) -> dict:
        """One request from a coroutine (the same errors as ``call``), holding no thread."""
        loop = asyncio.get_running_loop()
        pending = _Pending(loop.create_future(), loop)
        rid = self._send(op, args, pending)
        timer = loop.call_later(timeout, _time_out, pending.future, op, timeout)
        try:
            reply = await pending.future
        finally:
            timer.cancel()
            self._forget(rid)
        return self._result(reply)

    def _send(self, op: str, args: dict | None, pending: _Pending) -> int:
        if op not in OPS:
            raise ValueError(f"unknown op {op!r}")
        outbox = self._outbox
        if outbox is None or not self._connected.is_set():
            raise BridgeUnavailable(f"controller app not connected (bridge {self.path})")
        rid = next(self._ids)
        frame = encode({"id": rid, "op": op, "args": args or {}})
        with self._pending_lock:
            self._pending[rid] = pending
        try:
            outbox.put(frame)
        except BridgeUnavailable:
            self._forget(rid)
            raise
        return rid

    def _forget(self, rid: int) -> None:
        with self._pending_lock:
            self._pending.pop(rid, None)

    @staticmethod
    def _result(reply: dict | None) -> dict:
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
            self._outbox = outbox = _Outbox(sock)
            LOG.info("bridge: connected to the controller app at %s", self.path)
            self._connected.set()
            if self.on_connect is not None:
                threading.Thread(target=self._run_on_connect, daemon=True).start()
            try:
                self._read(sock)
            finally:
                self._connected.clear()
                self._sock = self._outbox = None
                outbox.close()
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
            replied = []
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
                    replied.append(pending)
            self._wake(replied)

    @staticmethod
    def _wake(pendings: list[_Pending]) -> None:
        """Release the callers: threads at once, coroutines in one callback per loop."""
        by_loop: dict[asyncio.AbstractEventLoop, list[_Pending]] = {}
        for p in pendings:
            if p.event is not None:
                p.event.set()
            else:
                by_loop.setdefault(p.loop, []).append(p)
        for loop, batch in by_loop.items():
            try:
                loop.call_soon_threadsafe(_settle, batch)
            except RuntimeError:   # that loop is closed: nobody waits any more
                pass

    def _fail_pending(self) -> None:
        with self._pending_lock:
            pendings = list(self._pending.values())
        self._wake(pendings)  # reply stays None -> BridgeUnavailable

