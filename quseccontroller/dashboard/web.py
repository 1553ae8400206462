"""The dashboard's web edge (aiohttp, in the gateway's event loop): the page, its snapshot and
its server-sent event stream, and the loopback token listener.

``DashboardHub`` reads the app's status and events through the gateway (every ``POLL_S`` while a
page is connected, every ``IDLE_POLL_S`` otherwise so the series and KPIs have a history; never
more than ``POLL_SHARE`` of the time: a poll of a large network holds up the app), feeds
the pure view model and pushes each delta to every open stream. Streams are bounded per identity
and in all. ``serve(hub, request, authorize)`` answers one /dashboard request, for a caller
``authorize(request)`` names (it raises an HTTP error for any other): on the operator port
(``operator_authorize``: an operator certificate) and on the token listener ``serve_loopback``
runs (``token_authorize``: the rules of ``quseccontroller.dashboard.access``).
"""
from __future__ import annotations

import asyncio
import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Awaitable, Callable

from aiohttp import web

from quseccontroller.bridge import BridgeError
from quseccontroller.dashboard import access
from quseccontroller.dashboard.model import DashboardView

LOG = logging.getLogger(__name__)

POLL_S = 0.5            # while a page is connected: a change reaches it within about 1 s
IDLE_POLL_S = 5.0       # without one: the series and KPI window keep their history
POLL_SHARE = 0.05       # polls take at most this share of the time (at 10,000 nodes one status
                        # is ~6 MB: ~0.5 s of the app's hub and ~0.5 s of the gateway's GIL)
KEEPALIVE_S = 15.0      # an SSE comment line so proxies and browsers keep the stream
GONE_CHECK_S = 1.0      # how often a quiet stream checks that its page is still there
QUEUE_DEPTH = 64        # deltas waiting for one slow page; more and it is cut (it reconnects)
STATIC = Path(__file__).parent / "static"
STATIC_FILES = {"dashboard.js": "text/javascript", "dashboard.css": "text/css"}
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; style-src 'self'; "
                               "script-src 'self'; connect-src 'self'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store"}

Authorize = Callable[[web.Request], Awaitable[str]]


class StreamsFull(Exception):
    """No room for another stream (the message says which bound)."""


def counters_from_registry(registry: Any) -> dict:
    """The gateway's path counters and setup-time histogram, as the view model takes them."""
    out: dict[str, Any] = {"requested": 0.0, "granted": 0.0, "refused": 0.0, "setup_buckets": []}
    for metric in registry.collect():
        for s in metric.samples:
            if s.name == "qusec_paths_requested_total":
                out["requested"] = s.value
            elif s.name == "qusec_paths_granted_total":
                out["granted"] = s.value
            elif s.name == "qusec_paths_refused_total":
                out["refused"] += s.value
            elif s.name == "qusec_path_setup_seconds_bucket":
                out["setup_buckets"].append((float(s.labels["le"]), s.value))
    return out


@dataclass(eq=False)
class Subscription:
    identity: str
    queue: asyncio.Queue = field(default_factory=lambda: asyncio.Queue(QUEUE_DEPTH))


class DashboardHub:
    """The view model, the streams reading it, and the loop keeping it current."""

    def __init__(self, gateway: Any, *, max_streams: int = 16, max_per_identity: int = 4,
                 poll_s: float = POLL_S, idle_poll_s: float = IDLE_POLL_S):
        self.gateway = gateway
        self.view = DashboardView()
        self.max_streams = max_streams
        self.max_per_identity = max_per_identity
        self.poll_s, self.idle_poll_s = poll_s, idle_poll_s
        self.subs: list[Subscription] = []
        self._task: asyncio.Task | None = None
        self._wake = asyncio.Event()
        self._lock = asyncio.Lock()
        self.polls = 0

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.ensure_future(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            self._task = None
        for sub in list(self.subs):     # every open stream ends
            self._cut(sub)

    def _cut(self, sub: Subscription) -> None:
        self.unsubscribe(sub)
        while not sub.queue.empty():
            sub.queue.get_nowait()
        sub.queue.put_nowait(None)

    async def snapshot(self) -> dict:
        """The view for a page that just connected (never while an update runs)."""
        async with self._lock:
            if self.polls == 0:
                await self._poll_locked()
            return self.view.snapshot()

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            t0 = loop.time()
            try:
                await self.poll()
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - the dashboard loop must keep running
                LOG.exception("dashboard poll failed")
            took = loop.time() - t0
            self._wake.clear()
            try:
                await asyncio.wait_for(self._wake.wait(), max(self.poll_s if self.subs else self.idle_poll_s,
                                                              took / POLL_SHARE))
            except asyncio.TimeoutError:
                pass

    async def poll(self) -> None:
        """Read the app once and push what changed to every stream."""
        async with self._lock:
            delta = await self._poll_locked()
        if delta:
            for sub in list(self.subs):
                if sub.queue.full():      # a page that does not read: cut it, it reconnects
                    self._cut(sub)
                else:
                    sub.queue.put_nowait(delta)

    async def _poll_locked(self) -> dict:
        loop = asyncio.get_running_loop()
        status = await loop.run_in_executor(None, self.gateway.refresh_gauges)
        events: list[dict] = []
        if status:
            try:
                body = await loop.run_in_executor(None, self.gateway.events, self.view.last_seq, 1000)
                if body.get("last_seq", 0) < self.view.last_seq:   # the app restarted
                    self.view.last_seq = 0
                    body = await loop.run_in_executor(None, self.gateway.events, 0, 1000)
                events = body.get("events", [])
            except BridgeError:
                pass
        counters = counters_from_registry(self.gateway.metrics.registry)
        # the view model is pure but not free (a new layout for a changed graph): off the loop
        delta = await loop.run_in_executor(None, self.view.update, status, events, counters, time.time())
        self.polls += 1
        return delta

    async def subscribe(self, identity: str) -> Subscription:
        """A new stream for ``identity`` (StreamsFull past either bound); the view is read
        first when no poll has run yet."""
        if len(self.subs) >= self.max_streams:
            raise StreamsFull(f"the dashboard serves at most {self.max_streams} streams in all")
        if sum(1 for s in self.subs if s.identity == identity) >= self.max_per_identity:
            raise StreamsFull(f"{identity} already holds {self.max_per_identity} dashboard streams")
        sub = Subscription(identity)
        self.subs.append(sub)
        self._wake.set()     # poll at the fast rate from now on
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        if sub in self.subs:
            self.subs.remove(sub)


def _sse(kind: str, data: dict) -> bytes:
    return f"event: {kind}\ndata: {json.dumps(data, separators=(',', ':'), default=str)}\n\n".encode()


async def serve(hub: DashboardHub, request: web.BaseRequest, authorize: Authorize,
                keep: Callable[[], None] | None = None) -> web.StreamResponse:
    """Answer one /dashboard request: /dashboard/ (the page), /dashboard/static/NAME,
    /dashboard/snapshot, /dashboard/stream; each only for a caller ``authorize`` lets through.
    ``keep()`` is called once a stream is admitted (its server's connection deadline then gives
    way to the stream's own bounds)."""
    path = request.path
    if path == "/dashboard":
        raise web.HTTPFound("/dashboard/" + (f"?{request.query_string}" if request.query_string else ""))
    who = await authorize(request)
    if path == "/dashboard/":
        return web.Response(body=(STATIC / "index.html").read_bytes(), content_type="text/html",
                            headers=SECURITY_HEADERS)
    if path.startswith("/dashboard/static/"):
        name = path.removeprefix("/dashboard/static/")
        if name not in STATIC_FILES:
            raise web.HTTPNotFound(text=f"no such file {name}", headers=SECURITY_HEADERS)
        return web.Response(body=(STATIC / name).read_bytes(), content_type=STATIC_FILES[name],
                            headers=SECURITY_HEADERS)
    if path == "/dashboard/snapshot":
        return web.json_response(await hub.snapshot(), headers=SECURITY_HEADERS,
                                 dumps=lambda x: json.dumps(x, default=str))
    if path == "/dashboard/stream":
        return await _stream(hub, request, who, keep)
    raise web.HTTPNotFound(text=f"no such resource {path}; try /dashboard/", headers=SECURITY_HEADERS)


async def _stream(hub: DashboardHub, request: web.BaseRequest, who: str,
                  keep: Callable[[], None] | None) -> web.StreamResponse:
    try:
        sub = await hub.subscribe(who)
    except StreamsFull as exc:
        LOG.warning("event=dashboard_refused peer=%s identity=%s reason=stream_limit msg=%r",
                    request.remote, who, str(exc))
        raise web.HTTPTooManyRequests(text=str(exc), headers=SECURITY_HEADERS) from None
    if keep is not None:
        keep()
    resp = web.StreamResponse(headers={**SECURITY_HEADERS, "Content-Type": "text/event-stream",
                                       "X-Accel-Buffering": "no"})
    try:
        await resp.prepare(request)
        await resp.write(_sse("snapshot", await hub.snapshot()))
        quiet = 0.0
        while True:
            try:
                msg = await asyncio.wait_for(sub.queue.get(), GONE_CHECK_S)
            except asyncio.TimeoutError:
                # a page that went away frees its slot within GONE_CHECK_S
                if request.transport is None or request.transport.is_closing():
                    break
                quiet += GONE_CHECK_S
                if quiet >= KEEPALIVE_S:
                    await resp.write(b": keep-alive\n\n")
                    quiet = 0.0
                continue
            if msg is None:
                break
            await resp.write(_sse("delta", msg))
            quiet = 0.0
    except (ConnectionResetError, ConnectionError):
        pass
    finally:
        hub.unsubscribe(sub)
    return resp


def token_authorize(token: str, remote: str) -> Authorize:
    """The token listener's check: a loopback peer naming a loopback host, with the run's
    cookie, or (on the page only) the run's token, which is exchanged for the cookie."""

    async def authorize(request: web.Request) -> str:
        refuse = None
        if not access.peer_ok(request.remote, remote):
            refuse = (403, "peer", "the dashboard's token listener serves this machine only")
        elif not access.host_header_ok(request.host, remote):
            refuse = (403, "host", f"Host {request.host!r} is not a loopback name")
        elif access.cookie_ok(request.cookies.get(access.COOKIE), token):
            return "token"
        elif "token" in request.query:
            if access.token_ok(request.query["token"], token):
                if request.path in ("/dashboard/", "/dashboard"):
                    # the token leaves the address bar; the cookie carries on
                    raise web.HTTPSeeOther("/dashboard/", headers={
                        "Set-Cookie": access.cookie_header(token), **SECURITY_HEADERS})
                return "token"
            refuse = (403, "token", "wrong dashboard token")
        else:
            refuse = (401, "no_token", "the dashboard needs its token: open the URL qkdnet up "
                                       "printed (the token is in QuSeC's state dir, dashboard.token)")
        code, reason, text = refuse
        LOG.warning("event=dashboard_refused peer=%s reason=%s path=%s", request.remote, reason,
                    request.path)
        exc = web.HTTPUnauthorized if code == 401 else web.HTTPForbidden
        raise exc(text=text, headers=SECURITY_HEADERS)

    return authorize


def operator_authorize(who: Any, on_refused: Callable[[str], None] | None = None) -> Authorize:
    """The operator port's check for a connection whose verified certificate named ``who``
    (None: none with a QuSeC identity): role operator, the same rule as /status;
    ``on_refused(reason)`` counts a refusal."""
    from quseccontroller.identity import OPERATOR

    async def authorize(request: web.BaseRequest) -> str:
        if who is not None and who.role == OPERATOR:
            return str(who)
        reason = "role" if who is not None else "no_identity"
        if on_refused is not None:
            on_refused(reason)
        LOG.warning("event=operator_refused peer=%s identity=%s reason=%s path=%s", request.remote,
                    who or "-", reason, request.path)
        raise web.HTTPForbidden(text=f"{request.path} needs an operator certificate (urn:qusec:operator:"
                                     f"NAME), not {who or 'a certificate without a QuSeC identity'}",
                                headers=SECURITY_HEADERS)

    return authorize


async def serve_loopback(hub: DashboardHub, listen: str, state_dir: str | Path, *,
                         remote: str = "refuse") -> tuple[web.AppRunner, str]:
    """The token listener on ``listen``: (its runner, its URL without the token). A
    non-loopback ``listen`` is refused (DashboardAccessError) unless ``remote`` is allow."""
    from quseccontroller.options import split_hostport
    host, port = split_hostport(listen, "--dashboard-listen")
    access.check_bind(host, remote)
    token = access.ensure_token(state_dir)
    authorize = token_authorize(token, remote)
    app = web.Application()
    app.add_routes([web.get("/dashboard{tail:.*}", lambda request: serve(hub, request, authorize))])
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    bound = runner.addresses[0]
    shown = "127.0.0.1" if bound[0] in ("0.0.0.0", "::") else bound[0]
    shown = f"[{shown}]" if ":" in shown else shown
    return runner, f"http://{shown}:{bound[1]}/dashboard/"


class DashboardServer:
    """One gateway's dashboard: the hub, and the token listener when ``listen`` is set (the
    operator port serves the same routes for operator certificates)."""

    def __init__(self, gateway: Any, state_dir: str | Path, *, listen: str = "",
                 remote: str = "refuse", max_streams: int = 16, max_per_identity: int = 4):
        self.hub = DashboardHub(gateway, max_streams=max_streams, max_per_identity=max_per_identity)
        self.state_dir = Path(state_dir)
        self.listen, self.remote = listen, remote
        self.runner: web.AppRunner | None = None
        self.url = ""            # the token listener's /dashboard/ (without the token)

    async def start(self) -> None:
        self.hub.start()
        if self.listen:
            try:
                self.runner, self.url = await serve_loopback(self.hub, self.listen, self.state_dir,
                                                             remote=self.remote)
            except OSError as exc:   # the key service goes on without the token listener
                LOG.error("event=dashboard_unavailable listen=%s msg=%r", self.listen, str(exc))

    async def stop(self) -> None:
        await self.hub.stop()
        if self.runner is not None:
            await self.runner.cleanup()
            self.runner = None
            access.remove_token(self.state_dir)    # a clean stop ends the run's token
