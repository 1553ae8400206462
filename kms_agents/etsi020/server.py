"""The GS QKD 020 HTTPS server (aiohttp): TLS 1.3 only, mutual certificates, the peer from its certificate.

Each request: the verified client certificate is looked up among the configured peers (401
problem details otherwise, before the body is read: nothing retained); the body must arrive
whole within ``request_s`` (408) and be at most ``max_body_bytes`` (400); then
:class:`~.kme.Kme` answers. Errors are RFC 9457 problem details under the media type the
official document declares (``application/json``).
"""
from __future__ import annotations

import asyncio
import json
import logging
import ssl
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from kms_agents import metrics
from kms_agents.config import Etsi020Config
from kms_agents.etsi020.client import ACK, EXT_KEYS, VERSIONS, VOID
from kms_agents.etsi020.kme import Kme
from kms_agents.etsi020.peers import NotAPeer, peer_of
from kms_agents.etsi020.problems import MEDIA_TYPE, Problem, bad, timeout, unauthorized, unavailable

log = logging.getLogger(__name__)

SERVER = "etsi020"   # the refusal counter's server label


def server_context(cafiles: list[str], cert: str, key: str) -> ssl.SSLContext:
    """TLS 1.3 (or later) only; a client certificate issued by one of ``cafiles`` is required."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    ctx.verify_mode = ssl.CERT_REQUIRED
    for ca in cafiles:
        ctx.load_verify_locations(ca)
    ctx.load_cert_chain(cert, key)
    return ctx


def _json(status: int, body: Any) -> web.Response:
    return web.Response(status=status, text=json.dumps(body), content_type=MEDIA_TYPE, charset="utf-8")


def problem_response(problem: Problem) -> web.Response:
    return _json(problem.status, problem.body())


ENDPOINTS = {VERSIONS: "versions", EXT_KEYS: "ext_keys", ACK: "ext_keys_ack", VOID: "ext_keys_void"}


def _count(path: str, status: int) -> None:
    """The one place an answered request is counted (no keys reach an SAE over this API)."""
    metrics.requests("etsi020", ENDPOINTS.get(path, "other"), status)


def make_app(kme: Kme, cfg: Etsi020Config) -> web.Application:
    """The aiohttp application serving the four operations for ``kme``."""
    BAD_BODY = {EXT_KEYS: "invalid-parameter", ACK: "ack-not-understood", VOID: "void-request-not-understood"}

    async def peer(request: web.Request):
        ssl_obj = request.transport.get_extra_info("ssl_object") if request.transport else None
        der = ssl_obj.getpeercert(binary_form=True) if ssl_obj else None
        try:
            return peer_of(der, cfg.peers)
        except NotAPeer as exc:
            metrics.refused(SERVER, exc.reason, str(exc), logger=log)
            raise unauthorized(str(exc)) from None

    async def body_of(request: web.Request) -> Any:
        too_big = bad(BAD_BODY[request.path], malformed_property=f"bodies of at most {cfg.max_body_bytes} bytes")
        if request.content_length is not None and request.content_length > cfg.max_body_bytes:
            raise too_big
        try:   # aiohttp stops reading at client_max_size, chunked bodies included
            raw = await asyncio.wait_for(request.read(), cfg.request_s)
        except TimeoutError:
            raise timeout() from None
        except web.HTTPRequestEntityTooLarge:
            raise too_big from None
        try:
            return json.loads(raw)
        except (ValueError, UnicodeDecodeError):
            raise bad(BAD_BODY[request.path], malformed_property="the body is not JSON") from None

    def handler(op: Callable[..., Awaitable[tuple[int, Any]]], with_body: bool):
        async def handle(request: web.Request) -> web.Response:
            try:
                who = await peer(request)
                if with_body:
                    status, body = await op(who, await body_of(request))
                else:
                    status, body = await op(who)
                response = web.Response(status=status) if body is None else _json(status, body)
            except Problem as problem:
                response = problem_response(problem)
            except Exception:  # noqa: BLE001 - a server-side failure is a 503 with problem details
                log.exception("etsi020: %s failed", request.path)
                response = problem_response(unavailable())
            _count(request.path, response.status)
            return response
        return handle

    async def versions(_peer) -> tuple[int, Any]:
        return 200, kme.versions()

    app = web.Application(client_max_size=cfg.max_body_bytes)
    app.router.add_get(VERSIONS, handler(versions, False))
    app.router.add_post(EXT_KEYS, handler(kme.ext_keys, True))
    app.router.add_post(ACK, handler(kme.ack, True))
    app.router.add_post(VOID, handler(kme.void, True))
    return app
