"""One KME's side of GS QKD 020: what each request does, and the work that follows it (async).

Requests (from :mod:`.server`, the peer already identified) are checked by :mod:`.model`,
routed, held in :mod:`.store`, and answered; relaying, acks, retries and voids run as tasks
of the node's event loop, store calls in worker threads. Where a key goes: targets that are
SAEs of this node get it in the key store (ETSI 014 ``dec_keys`` by key ID) once it is
relayed; targets elsewhere in this node's network go through ``relay_onward`` (a callable the
agent passes in; without one they have no known route).
"""
from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import aiohttp

from kms_agents import metrics
from kms_agents.config import Etsi020Config, Etsi020Peer
from kms_agents.etsi020 import rules
from kms_agents.etsi020.client import EXT_KEYS, VOID, PeerSession
from kms_agents.etsi020.model import (Bounds, ExtKey, Outcome, ack_calls, ext_key_body, outcomes_of, parse_acks,
                                      parse_ext_keys, parse_void, version_container, void_body)
from kms_agents.etsi020.problems import Problem, bad, unavailable
from kms_agents.etsi020.store import ACK as OUT_ACK
from kms_agents.etsi020.store import VOID as OUT_VOID
from kms_agents.etsi020.store import VOID_ACK as OUT_VOID_ACK
from kms_agents.etsi020.store import ExtKeyStore, KeyIdInUse, SentKey, TooMuchWaiting
from kms_agents.keystore import StoredKey

log = logging.getLogger(__name__)

PURGE_EVERY_S = 60.0   # how often settled rows past their retention are forgotten


@dataclass(frozen=True)
class Onward:
    """Keys to relay into this node's network (the targets that are not SAEs of this node)."""
    peer: str
    initiator: str
    targets: tuple[str, ...]
    keys: tuple[ExtKey, ...]          # with their per-key extensions, to pass on unchanged
    extension_optional: dict[str, Any] | None = None   # passed on unchanged (we implement none)


# returns when relayed (the extension for their acks, or None); raises to fail the keys
RelayOnward = Callable[[Onward], "dict[str, Any] | None"]
# a key we sent reached a final state (the key before, with its material; the state); called on the
# event loop: it must return quickly (hand the work to a thread of its own)
Settled = Callable[[SentKey, str], None]
# keys a peer passed us were voided at its request (the peer's KME ID, the key IDs); called in a
# worker thread: keys relayed onward are voided there too
Voided = Callable[[str, list[str]], None]


class SendRefused(Exception):
    """The peer answered 400/401 to our ext_keys: it kept nothing, and neither did we."""

    def __init__(self, status: int, body: Any) -> None:
        super().__init__(f"peer refused with {status}: {body}")
        self.status, self.body = status, body


class Kme:
    def __init__(self, cfg: Etsi020Config, node_id: str, saes: dict[str, str], store: ExtKeyStore,
                 sessions: dict[str, PeerSession], callback_url: Callable[[], str], *,
                 relay_onward: RelayOnward | None = None, on_settled: Settled | None = None,
                 on_voided: Voided | None = None, clock: Callable[[], float] = time.time) -> None:
        self.cfg, self.node_id, self.saes, self.store = cfg, node_id, dict(saes), store
        self.sessions, self.callback_url = sessions, callback_url
        self.relay_onward, self.on_settled, self.clock = relay_onward, on_settled, clock
        self.on_voided = on_voided
        self.bounds = Bounds(cfg.max_keys_per_request, cfg.max_key_bytes, cfg.max_targets)
        self._tasks: set[asyncio.Task] = set()
        self._wake = asyncio.Event()
        self._purged = 0.0

    async def _db(self, fn, *args):
        return await asyncio.to_thread(fn, *args)

    def _spawn(self, coro) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- requests ---------------------------------------------------------------------------------
    def versions(self) -> dict[str, Any]:
        return version_container(self.cfg.sync_mode)

    def _route(self, req) -> tuple[list[str], list[str]]:
        """(targets on this node, targets elsewhere in this network); 400 for unknown SAEs."""
        if self.saes.get(req.initiator) is not None:
            raise bad("key-routing-error", invalid_routing=f"initiator SAE {req.initiator} is in this network: "
                                                           "the key would go back where it came from")
        unknown = [t for t in req.targets if t not in self.saes]
        if unknown and self.relay_onward is None:
            raise bad("key-routing-error", target_sae_id_not_recognized=f"unknown target SAE {unknown[0]}")
        # with an onward relay, a target this network's config does not name goes to it too: QuSeC
        # finds the SAE (perhaps in a domain beyond this one) or the relay fails (acked "failed")
        local = [t for t in req.targets if self.saes.get(t) == self.node_id]
        remote = [t for t in req.targets if self.saes.get(t) != self.node_id]
        if remote and self.relay_onward is None:
            raise Problem(503, "key-routing-error", {"no_known_route": f"no route to target SAE {remote[0]}"})
        return local, remote

    async def ext_keys(self, peer: Etsi020Peer, body: Any) -> tuple[int, Any]:
        req = parse_ext_keys(body, self.bounds)
        if req.extension_mandatory:
            raise unavailable("unsupported-mandatory-extension",
                              unsupported_mandatory_extension="this KME implements no mandatory extension: "
                                                              + ", ".join(sorted(req.extension_mandatory)))
        local, remote = self._route(req)
        if req.callback_url is None and not self.cfg.sync_mode:
            raise bad("missing-parameters", missing_parameters="ack_callback_url: this KME serves the "
                                                               "asynchronous mode only")
        try:   # one transaction: this peer's share of our work, then the keys held
            # keys only passed on (no target here) never have their material stored here
            new, known = await self._db(functools.partial(self.store.receive, hold_material=bool(local)),
                                        peer.kme_id, req, self.clock(), self.cfg.max_pending_per_peer)
        except KeyIdInUse as exc:
            raise bad("invalid-parameter", malformed_property=str(exc)) from None
        except TooMuchWaiting:
            raise unavailable(server_side_general_error=f"KME {peer.kme_id} has too much work waiting here") from None
        if req.callback_url is None:   # synchronous: answer once every key is resolved
            relay = asyncio.ensure_future(self._relay(peer, req, new, local, remote, sync=True))
            self._tasks.add(relay)
            relay.add_done_callback(self._tasks.discard)
            try:   # shielded: on a timeout the relay goes on, and the peer treats the keys as "may be assigned"
                done = await asyncio.wait_for(asyncio.shield(relay), self.cfg.request_s)
            except TimeoutError:
                raise unavailable(server_side_general_error="the relay did not finish in time") from None
            calls = ack_calls(known + done)
            if len(calls) != 1 or sum(len(c["key_id_container"]) for c in calls[0]) != len(req.keys):
                # a retry of keys whose relay is still under way: their outcome is not known yet
                raise unavailable(server_side_general_error="the relay of some of these keys is still under way")
            return 200, calls[0]
        self._spawn(self._relay(peer, req, new, local, remote))
        if known:   # a retry of keys already settled: ack them again
            for call in ack_calls(known):
                await self._db(self.store.enqueue, peer.kme_id, req.callback_url, OUT_ACK, call, self.clock())
            self._wake.set()
        return 202, None

    async def _relay(self, peer: Etsi020Peer, req, keys: Sequence[ExtKey], local: list[str],
                     remote: list[str], *, sync: bool = False) -> list[Outcome]:
        if not keys:
            return []
        ids = [k.key_id for k in keys]
        try:
            extension = None
            if remote:   # what the onward relay reports (the domains the keys went on through)
                extension = await asyncio.to_thread(self.relay_onward, Onward(
                    peer.kme_id, req.initiator, tuple(remote), tuple(keys), req.extension_optional)) or None
            if sync and not local:
                # passed on, never stored here: the answer does not wait for this table's commit (the
                # keys are held beyond, relayed; their material leaves this table just after)
                self._spawn(self._db(self.store.relayed, ids, [], self.clock(), extension))
                return [Outcome(kid, "relayed", req.initiator, tuple(req.targets), None, extension) for kid in ids]
            deliverable = [StoredKey(k.key_id, req.initiator, list(local), k.material, meta={"etsi020_peer": peer.kme_id})
                           for k in keys] if local else []
            out = await self._db(self.store.relayed, ids, deliverable, self.clock(), extension)
        except Exception as exc:  # noqa: BLE001 - any failure of the relay fails these keys
            log.warning("etsi020: relay of %d keys from KME %s failed: %s", len(ids), peer.kme_id, exc)
            out = await self._db(self.store.failed, ids, f"relay failed: {type(exc).__name__}", self.clock())
        self._wake.set()
        return out

    async def ack(self, peer: Etsi020Peer, body: Any) -> tuple[int, Any]:
        outcomes = outcomes_of(parse_acks(body))
        try:
            changes = await self._db(self.store.apply_acks, peer.kme_id, outcomes)
        except KeyError as exc:
            raise bad("key-not-present", key_not_present=f"key {exc.args[0]} is not one KME "
                                                         f"{peer.kme_id} may acknowledge here") from None
        except rules.AckRefused as exc:
            raise bad("ack-not-understood", ack_not_understood=str(exc)) from None
        # the void acks for keys the peer passed us: the keys are gone on its side too
        self._settle(changes)
        return 200, None

    def _settle(self, changes: Sequence[tuple[SentKey, str]]) -> None:
        for before, state in changes:
            if state != before.state and state in rules.TX_FINAL and self.on_settled is not None:
                try:
                    self.on_settled(before, state)
                except Exception:  # noqa: BLE001 - a hook's failure must not undo the ack
                    log.exception("etsi020: on_settled hook failed for a key of KME %s", before.peer)

    async def void(self, peer: Etsi020Peer, body: Any) -> tuple[int, Any]:
        req = parse_void(body, self.bounds)
        if req.callback_url is None and not self.cfg.sync_mode:
            raise bad("void-request-not-understood",
                      void_request_not_understood="ack_callback_url: this KME serves the asynchronous mode only")
        outcomes, changes = await self._db(self._void_both, peer.kme_id, req)
        self._settle(changes)
        sent = {k.key_id for k, _ in changes}
        # keys relayed on leave no copy here (the store answers "failed to void" for them): the
        # hook voids whichever of them it relayed on, along their paths
        voided = [o.key_id for o in outcomes if o.status != "key not present" and o.key_id not in sent]
        if voided and self.on_voided is not None:
            self._spawn(self._voided(peer.kme_id, voided))
        if req.callback_url is None:
            return 200, ack_calls(outcomes)[0] if outcomes else []
        for call in ack_calls(outcomes):
            await self._db(self.store.enqueue, peer.kme_id, req.callback_url, OUT_VOID_ACK, call, self.clock())
        self._wake.set()
        return 202, None

    async def _voided(self, peer: str, key_ids: list[str]) -> None:
        try:
            await asyncio.to_thread(self.on_voided, peer, key_ids)
        except Exception:  # noqa: BLE001 - the void here stands; onward copies expire unfetched
            log.exception("etsi020: on_voided hook failed for %d key(s) of KME %s", len(key_ids), peer)

    def _void_both(self, peer: str, req) -> tuple[list[Outcome], list[tuple[SentKey, str]]]:
        # a void may name keys the peer passed us, or (the other direction) keys we passed it
        with self.store.store.transaction():
            return self._void_both_tx(peer, req)

    def _void_both_tx(self, peer: str, req) -> tuple[list[Outcome], list[tuple[SentKey, str]]]:
        sent = {k.key_id: k for k in self.store.sent(req.key_ids) if k.peer == peer}
        changes = [(k, rules.TX_VOIDED) for k in sent.values() if k.state not in rules.TX_FINAL]
        self.store.set_sent([k.key_id for k, _ in changes], rules.TX_VOIDED)
        rx_ids = [k for k in req.key_ids if k not in sent]
        outcomes = self.store.void_received(peer, rx_ids, req.initiator, req.targets) if rx_ids or not req.key_ids \
            else []
        outcomes += [Outcome(k, "voided" if sent[k].state != rules.TX_RELAYED else "failed to void",
                             req.initiator, tuple(req.targets)) for k in sent]
        return outcomes, changes

    # -- our calls to peers -------------------------------------------------------------------------
    async def send_keys(self, kme_id: str, keys: Sequence[ExtKey], initiator: str, targets: Sequence[str], *,
                        sync: bool = False) -> list[Outcome] | None:
        """Pass keys to a peer KME: None once it accepted them (202; its acks settle them later),
        or, with ``sync``, their outcomes. Raises :class:`SendRefused` for a 400/401 (nothing
        is held on either side then); any other failure leaves the keys to be retried, then voided
        (with ``sync``, voided: their material is not kept here for a retry)."""
        session = await self._db(functools.partial(self.record_sent, sync=sync), kme_id, keys, initiator, targets)
        return await self.post_sent(session, keys, initiator, targets, sync=sync)

    def record_sent(self, kme_id: str, keys: Sequence[ExtKey], initiator: str, targets: Sequence[str], *,
                    sync: bool = False) -> PeerSession:
        """The first half of :meth:`send_keys`, blocking (one store transaction, in the caller's
        thread): the keys recorded sent before any byte of them leaves; the peer's session."""
        session = self.sessions.get(kme_id)
        if session is None:
            raise ValueError(f"KME {kme_id!r} is not a configured [[etsi020.peers]] entry")
        now = self.clock()
        # the synchronous mode keeps no material: without an answer the keys are voided, not retried
        self.store.record_sent(kme_id, list(keys), initiator, list(targets), now + self.cfg.ack_timeout_s, now,
                               keep_material=not sync)
        return session

    async def post_sent(self, session: PeerSession, keys: Sequence[ExtKey], initiator: str,
                        targets: Sequence[str], *, sync: bool = False) -> list[Outcome] | None:
        """The second half of :meth:`send_keys`: the keys recorded by :meth:`record_sent`, posted."""
        return await self._post_keys(session, list(keys), initiator, list(targets), sync=sync, attempts=1)

    async def _post_keys(self, session: PeerSession, keys: list[ExtKey], initiator: str, targets: list[str], *,
                         sync: bool, attempts: int) -> list[Outcome] | None:
        ids = [k.key_id for k in keys]
        body = ext_key_body(keys, initiator, targets, None if sync else self.callback_url())
        status = None
        try:
            answer = await session.post(session.url(EXT_KEYS), body)
            status = answer.status
        except (aiohttp.ClientError, TimeoutError) as exc:
            log.warning("etsi020: ext_keys to KME %s failed: %s", session.peer.kme_id, exc)
            answer = None
        if answer is not None and status == 202 and not sync:
            return None
        if answer is not None and status == 200 and sync:
            try:
                outcomes = outcomes_of(parse_acks(answer.body))
                if sorted(o.key_id for o in outcomes) != sorted(ids):
                    raise KeyError("the answer acknowledges other keys than those sent")
                for o in outcomes:
                    rules.tx_after_ack(rules.TX_SENT, o.status)
            except (Problem, KeyError, rules.AckRefused) as exc:   # an answer we cannot use: as no answer
                log.warning("etsi020: KME %s answered ext_keys with acks we cannot apply: %s",
                            session.peer.kme_id, exc)
                status = None
            else:
                # the answer settles the keys for the caller now; this table follows in the background
                # (a crash before that leaves them sent: retried, and the peer answers the same)
                self._spawn(self._apply_acks(session.peer.kme_id, outcomes))
                return outcomes
        action = rules.after_failure(status, attempts, self.cfg.max_attempts)
        if action == rules.FORGET:
            await self._db(self.store.forget_sent, ids)
            raise SendRefused(status, answer.body if answer else None)
        # no answer or an answer that may mean "assigned": retry later (same IDs and values), or void
        due = self.clock() + self.cfg.retry_s * (2 ** (attempts - 1))
        await self._db(lambda: self.store.set_sent(ids, rules.TX_SENT, due=due))
        self._wake.set()
        return None

    async def _apply_acks(self, kme_id: str, outcomes: list[Outcome]) -> None:
        try:
            self._settle(await self._db(self.store.apply_acks, kme_id, outcomes))
        except (KeyError, rules.AckRefused) as exc:   # e.g. voided meanwhile: the void's ack settles them
            log.info("etsi020: acks of KME %s not applied: %s", kme_id, exc)

    async def void_sent(self, kme_id: str, key_ids: Sequence[str]) -> None:
        """Ask the peer to void keys we passed it (async; its acks settle them)."""
        sent = [k for k in await self._db(self.store.sent, list(key_ids)) if k.peer == kme_id]
        if not sent:
            return
        now = self.clock()
        await self._db(lambda: self.store.set_sent([k.key_id for k in sent], rules.TX_VOIDING,
                                                   due=now + self.cfg.ack_timeout_s))
        groups: dict[tuple, list[str]] = {}
        for k in sent:
            groups.setdefault((k.initiator, k.targets), []).append(k.key_id)
        session = self.sessions[kme_id]
        for (initiator, targets), ids in groups.items():
            body = void_body(ids, initiator, list(targets), self.callback_url())
            try:
                answer = await session.post(session.url(VOID), body)
                if answer.status == 200 and isinstance(answer.body, list):
                    self._settle(await self._db(self.store.apply_acks, kme_id, outcomes_of(parse_acks(answer.body))))
            except (aiohttp.ClientError, TimeoutError) as exc:
                log.warning("etsi020: void to KME %s failed: %s", kme_id, exc)

    # -- the work that follows requests ---------------------------------------------------------------
    async def run(self) -> None:
        """Deliver queued acks and voids, retry or void sent keys whose acks are overdue; until cancelled."""
        # keys received before a restart whose relay never finished: fail them (acked ``failed``)
        ids = [kid for kid, _ in await self._db(self.store.unsettled)]
        if ids:
            await self._db(self.store.failed, ids, "the KME restarted during the relay", self.clock())
        while True:
            try:
                await self._pump()
            except Exception:  # noqa: BLE001 - keep the loop alive; the next round retries
                log.exception("etsi020: background round failed")
            self._wake.clear()
            try:
                await asyncio.wait_for(self._wake.wait(), 0.5)
            except TimeoutError:
                pass

    async def _pump(self) -> None:
        now = self.clock()
        for item in await self._db(self.store.outbox_due, now):
            session = self.sessions.get(item.peer)
            ok = False
            if session is not None:
                try:
                    answer = await session.post(item.url, item.body)
                    # 400 key_not_present: the peer holds nothing to settle; no use repeating
                    ok = answer.status in (200, 202, 400)
                except (aiohttp.ClientError, TimeoutError) as exc:
                    log.info("etsi020: %s to KME %s not delivered: %s", item.kind, item.peer, exc)
            if ok:
                await self._db(self.store.outbox_done, item.id)
            elif item.attempts + 1 < self.cfg.max_attempts and session is not None:
                await self._db(self.store.outbox_later, item.id,
                               self.clock() + self.cfg.retry_s * (2 ** item.attempts))
            else:
                await self._db(self.store.outbox_done, item.id)
                if item.kind == OUT_ACK:   # our ack never arrived: void the keys, here and toward the sender
                    await self._void_unacked(item)
                else:
                    metrics.refused("etsi020", "undelivered", f"{item.kind} to KME {item.peer} dropped after "
                                    f"{item.attempts + 1} attempts", logger=log)
        for key in await self._db(self.store.sent_due, now):
            await self._overdue(key)
        if now - self._purged >= PURGE_EVERY_S:
            self._purged = now
            await self._db(self.store.purge, now)

    async def _void_unacked(self, item) -> None:
        ids = [k["key_id"] for c in item.body for k in c["key_id_container"]]
        relayed = [k["key_id"] for c in item.body if c["ack_status"] == "relayed" for k in c["key_id_container"]]
        await self._db(self.store.voiding_received, item.peer, relayed)
        session = self.sessions.get(item.peer)
        if session is None or not ids:
            return
        for c in item.body:
            body = void_body([k["key_id"] for k in c["key_id_container"]], c["initiator_sae_id"],
                             c["target_sae_ids"], self.callback_url())
            await self._db(self.store.enqueue, item.peer, session.url(VOID), OUT_VOID, body, self.clock())

    async def _overdue(self, key: SentKey) -> None:
        session = self.sessions.get(key.peer)
        if session is None:
            return
        if key.state == rules.TX_VOIDING:
            if key.attempts >= 2 * self.cfg.max_attempts:
                await self._db(lambda: self.store.set_sent([key.key_id], rules.TX_FAILED_TO_VOID))
                self._settle([(key, rules.TX_FAILED_TO_VOID)])
                return
            await self._db(lambda: self.store.set_sent([key.key_id], rules.TX_VOIDING, attempts=key.attempts + 1,
                                                       due=self.clock() + self.cfg.ack_timeout_s))
            await self.void_sent(key.peer, [key.key_id])
            return
        if key.material is not None and rules.after_failure(None, key.attempts, self.cfg.max_attempts) == rules.RETRY:
            await self._db(lambda: self.store.set_sent([key.key_id], rules.TX_SENT, attempts=key.attempts + 1,
                                                       due=self.clock() + self.cfg.ack_timeout_s))
            await self._post_keys(session, [ExtKey(key.key_id, key.material or b"")], key.initiator,
                                  list(key.targets), sync=False, attempts=key.attempts + 1)
        else:
            await self.void_sent(key.peer, [key.key_id])

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            try:
                await task
            except (asyncio.CancelledError, Exception):  # noqa: BLE001
                pass
