"""The running GS QKD 020 KME of one agent: its event loop thread, server, peer sessions and the KME.

The agent is threaded; :class:`Etsi020Node` runs aiohttp on an event loop of its own and
offers blocking calls (``send_keys``, ``void_sent``) for the agent's threads.
"""
from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Sequence

from aiohttp import web

from kms_agents.config import Etsi020Config, TlsConfig
from kms_agents.etsi020.client import ACK, PeerSession, client_context
from kms_agents.etsi020.kme import Kme, RelayOnward, Settled, Voided
from kms_agents.etsi020.model import ExtKey, Outcome
from kms_agents.etsi020.server import make_app, server_context
from kms_agents.etsi020.store import ExtKeyStore
from kms_agents.keystore import KeyStore

log = logging.getLogger(__name__)

STOP_GRACE_S = 2.0


class Etsi020Node:
    def __init__(self, cfg: Etsi020Config, tls: TlsConfig, node_id: str, saes: dict[str, str], store: KeyStore,
                 *, advertise_host: str = "", relay_onward: RelayOnward | None = None,
                 on_settled: Settled | None = None, on_voided: Voided | None = None) -> None:
        self.cfg, self.tls, self.node_id = cfg, tls, node_id
        self.kme_id = cfg.kme_id or node_id
        self.cafiles = list(cfg.ca_certs) or [tls.ca_cert]
        host, _, port = cfg.listen.rpartition(":")
        self._host, self._port = host.strip("[]"), int(port)
        self._advertise = advertise_host
        self.port = 0
        self.ext_store = ExtKeyStore(store, retention_s=cfg.retention_s)
        self._saes, self._relay_onward, self._on_settled = saes, relay_onward, on_settled
        self._on_voided = on_voided
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="etsi020", daemon=True)
        self._runner: web.AppRunner | None = None
        self._runner_task: asyncio.Task | None = None
        self.kme: Kme | None = None

    @property
    def url(self) -> str:
        host = self._advertise or self._host
        if host in ("", "0.0.0.0", "::"):
            host = "127.0.0.1"
        return f"https://{f'[{host}]' if ':' in host else host}:{self.port}"

    def callback_url(self) -> str:
        return self.cfg.callback_url or self.url + ACK

    async def _start(self) -> None:
        sessions = {}
        for peer in self.cfg.peers:
            ctx = client_context([peer.ca_cert] if peer.ca_cert else self.cafiles, self.tls.cert, self.tls.key)
            sessions[peer.kme_id] = PeerSession(peer, ctx, self.cfg.call_timeout_s)
        self.kme = Kme(self.cfg, self.node_id, self._saes, self.ext_store, sessions, self.callback_url,
                       relay_onward=self._relay_onward, on_settled=self._on_settled,
                       on_voided=self._on_voided)
        cafiles = list(dict.fromkeys(self.cafiles + [p.ca_cert for p in self.cfg.peers if p.ca_cert]))
        # handlers run to the end even if the client goes away (a request held in the store must
        # reach its relay); an idle or half-sent connection is closed after keepalive_timeout; on
        # stop, requests in progress get STOP_GRACE_S (peers retry or void what was cut short)
        self._runner = web.AppRunner(make_app(self.kme, self.cfg), access_log=None,
                                     handler_cancellation=False, keepalive_timeout=self.cfg.request_s * 3,
                                     shutdown_timeout=STOP_GRACE_S)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self._host or None, self._port,
                           ssl_context=server_context(cafiles, self.tls.cert, self.tls.key), backlog=128)
        await site.start()
        self.port = self._runner.addresses[0][1]
        self._runner_task = self.loop.create_task(self.kme.run())

    def start(self) -> None:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self.loop).result(30)
        log.info("etsi020: KME %s serving GS QKD 020 at %s", self.kme_id, self.url)

    async def _stop(self) -> None:
        if self._runner_task is not None:
            self._runner_task.cancel()
        if self.kme is not None:
            await self.kme.close()
            for session in self.kme.sessions.values():
                await session.close()
        if self._runner is not None:
            await self._runner.cleanup()
        # whatever is left (connections that never finished a request) ends with the loop
        rest = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for task in rest:
            task.cancel()
        await asyncio.gather(*rest, return_exceptions=True)

    def stop(self) -> None:
        if not self._thread.is_alive():
            return
        try:
            asyncio.run_coroutine_threadsafe(self._stop(), self.loop).result(STOP_GRACE_S + 15)
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(5)
            if not self._thread.is_alive():
                self.loop.close()

    # -- blocking calls for the agent's threads -------------------------------------------------------
    def _call(self, coro, timeout_s: float | None = None):
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout_s or self.cfg.call_timeout_s * 2)

    def send_keys(self, kme_id: str, keys: Sequence[ExtKey], initiator: str, targets: Sequence[str], *,
                  sync: bool = False) -> list[Outcome] | None:
        """See :meth:`Kme.send_keys`; ``kme_id`` must be a configured peer. The keys are recorded
        in the calling thread, then posted from the event loop (one hop between threads less)."""
        session = self.kme.record_sent(kme_id, keys, initiator, targets, sync=sync)
        return self._call(self.kme.post_sent(session, keys, initiator, targets, sync=sync))

    def void_sent(self, kme_id: str, key_ids: Sequence[str]) -> None:
        self._call(self.kme.void_sent(kme_id, key_ids))
