"""Calls to peer KMEs over HTTPS (aiohttp): TLS 1.3 only, our certificate, the peer's CA, and
the peer's identity checked on every new connection before a byte of a request is sent.

One :class:`PeerSession` per configured peer. Acks go to a request's ``ack_callback_url``
through the session of the peer that made the request, so a callback must be served by that
same KME (a request cannot point our acks at a third host).
"""
from __future__ import annotations

import json
import logging
import ssl
from dataclasses import dataclass
from typing import Any

import aiohttp

from kms_agents.config import Etsi020Peer
from kms_agents.etsi020.peers import matches

log = logging.getLogger(__name__)

EXT_KEYS, ACK, VOID, VERSIONS = "/kmapi/v1/ext_keys", "/kmapi/v1/ext_keys/ack", "/kmapi/v1/ext_keys/void", \
    "/kmapi/versions"


def client_context(cafiles: list[str], cert: str, key: str) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    for ca in cafiles:
        ctx.load_verify_locations(ca)
    ctx.load_cert_chain(cert, key)
    return ctx


class WrongPeer(aiohttp.ClientConnectionError):
    """The server's certificate is not the configured peer's."""


class _PeerConnector(aiohttp.TCPConnector):
    """Checks the peer's certificate names the configured KME on each new connection."""

    def __init__(self, peer: Etsi020Peer, ctx: ssl.SSLContext) -> None:
        super().__init__(ssl=ctx, limit=16)
        self._peer = peer

    async def _create_connection(self, req, traces, timeout):  # type: ignore[override]
        proto = await super()._create_connection(req, traces, timeout)
        ssl_obj = proto.transport.get_extra_info("ssl_object") if proto.transport else None
        der = ssl_obj.getpeercert(binary_form=True) if ssl_obj else None
        if not der or not matches(self._peer, der):
            proto.close()
            raise WrongPeer(f"{req.url.host}: the server's certificate does not name KME {self._peer.kme_id} "
                            f"({self._peer.identity})")
        return proto


@dataclass(frozen=True)
class Answer:
    status: int
    body: Any       # parsed JSON, or None


class PeerSession:
    """HTTPS calls to one peer KME (call from the node's event loop)."""

    def __init__(self, peer: Etsi020Peer, ctx: ssl.SSLContext, timeout_s: float) -> None:
        self.peer = peer
        self._session = aiohttp.ClientSession(connector=_PeerConnector(peer, ctx),
                                              timeout=aiohttp.ClientTimeout(total=timeout_s))

    def url(self, path: str) -> str:
        return self.peer.url.rstrip("/") + path

    async def post(self, url: str, body: Any) -> Answer:
        """POST JSON; raises aiohttp.ClientError or TimeoutError when there is no answer."""
        async with self._session.post(url, data=json.dumps(body),
                                      headers={"Content-Type": "application/json"}) as resp:
            raw = await resp.read()
            try:
                parsed = json.loads(raw) if raw else None
            except ValueError:
                parsed = None
            return Answer(resp.status, parsed)

    async def get(self, path: str) -> Answer:
        async with self._session.get(self.url(path)) as resp:
            raw = await resp.read()
            return Answer(resp.status, json.loads(raw) if raw else None)

    async def close(self) -> None:
        await self._session.close()
