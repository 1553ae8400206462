"""Hop-by-hop key relay between vKMSs: one node's relay engine and its source role.

The source asks QuSeC for a path, makes the end-to-end key (XOR-shared over k
node-disjoint paths when the policy asks for multipath), and sends each share to
the first hop padded and MAC'd with fresh link key. Every relay node checks that
the sender is the authorised previous hop of a live path, claims the same link key
by its IDs, verifies the one-time MAC and the sequence number, and forwards with
fresh link key toward the authorised next hop. The destination stores the key for
the slave SAE and acknowledges; the ack returns along the chain, so when the
source's call returns the key is already available to the slave. On any failure
the source voids the key along every path, charges no key to the SAE and raises
:class:`RelayFailure` (HTTP 503 / a gRPC status at the edges).

:class:`RelayEngine` holds the source role and composes the two hop ends of
:mod:`kms_agents.relay.hop` (``sender``: sealing toward a neighbour, ``receiver``: the
relay-node and destination roles). QuSeC and the transport are injected
(``request_path``: a :class:`PathQuery` -> :class:`PathPlan`; ``send``: (peer, addr,
message, timeout) -> ack), so nothing here touches sockets.
"""
from __future__ import annotations

import datetime as _dt
import json
import logging
import secrets
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor

from kms_agents import metrics
from kms_agents.keystore import KeyStore, new_key_ids
from kms_agents.qkd_module import KeySourceError
from kms_agents.relay import attempts, crypto, hybrid, shares
from kms_agents.relay.authz import AuthTable
from kms_agents.relay.hop import HopReceiver, HopSender, Send, VoidSend
from kms_agents.relay.messages import EXT_DOMAINS, EXT_LEVEL, EXT_PATH, Ack, Reason, RelayedKey, RelayFailure, VoidMessage
from kms_agents.relay.plan import PathPlan, PathQuery, PathRefused, PlannedPath

log = logging.getLogger(__name__)

MAX_BULK_BYTES = 256 * 1024  # largest ciphertext of one bulk relay message
PATH_REUSE_MARGIN_S = 2.0    # stop reusing a granted path this long before it expires

RequestPath = Callable[[PathQuery], PathPlan]


def _cache_key(dst_node: str, src_sae: str, dst_saes: Sequence[str]) -> tuple:
    """Granted paths are cached per destination and SAEs: hops check the SAEs they were granted for."""
    return dst_node, src_sae, tuple(sorted(set(dst_saes)))


def _domains(text: str | None) -> list | None:
    """A handoff's ack extension (EXT_DOMAINS) back as a list; None when absent or unreadable."""
    try:
        got = json.loads(text) if text else None
    except ValueError:
        return None
    return got if isinstance(got, list) else None


def gather(futures: Iterable[Future]) -> tuple[list, RelayFailure | None]:
    """Results of the futures that succeeded (each one waited for) and the first failure."""
    results, failure = [], None
    for fut in futures:
        try:
            results.append(fut.result())
        except RelayFailure as exc:
            failure = failure or exc
        except Exception as exc:  # a bug must still void and fail cleanly
            log.exception("relay failed")
            failure = failure or RelayFailure(Reason.INTERNAL, f"relay failed: {exc}")
    return results, failure


def bulk_groups(keys: list[tuple[str, bytes]], level: str,
                max_bytes: int | None = None) -> list[list[tuple[str, bytes]]]:
    """Keys of a request cut into bulk messages (one ML-KEM exchange each for hybrid/pqc)."""
    if not keys:
        return []
    per = max(1, (max_bytes or MAX_BULK_BYTES) // max(1, len(keys[0][1])))
    if level != "qkd":
        # spread the ML-KEM work over the worker pool. Not for qkd: every message costs a
        # durable link-store commit at each hop end, which costs more than pipelining saves
        per = min(per, max(1, -(-len(keys) // 4)))
    return [keys[i:i + per] for i in range(0, len(keys), per)]


class RelayEngine:
    """One node's relay: the source role here, the hop ends in ``sender`` and ``receiver``."""

    def __init__(self, node_id: str, *, sources: Callable[[str], object | None],
                 link: Callable[[str], object | None] | None = None,
                 all_sources: Callable[[], Iterable[object]] = lambda: (), store: KeyStore,
                 authz: AuthTable, request_path: RequestPath | None,
                 release_path: Callable[[str], object] | None = None,
                 send: Send, send_void: VoidSend, identity: hybrid.NodeIdentity | None = None,
                 hop_timeout_s: float = 10.0, max_parallel: int = 8,
                 sae_node: Callable[[str], str | None] | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self.node_id = node_id
        self.sender = HopSender(node_id, sources=sources, send=send, send_void=send_void,
                                hop_timeout_s=hop_timeout_s, clock=clock)
        self.receiver = HopReceiver(node_id, sender=self.sender, sources=sources, link=link,
                                    store=store, authz=authz, identity=identity,
                                    sae_node=sae_node, clock=clock)
        self._all_sources = all_sources
        self._authz = authz
        self._request_path = request_path
        self._release_path = release_path
        self._identity = identity
        self._clock = clock
        self._lock = threading.Lock()
        self._paths: dict[tuple, PathPlan] = {}
        self._granted: dict[tuple, dict[str, int]] = {}   # the grants each cached plan was made under
        self._pool = ThreadPoolExecutor(max_workers=max_parallel, thread_name_prefix="relay")
        # separate pool: share sends never submit work, so they cannot starve the relay pool
        self._share_pool = ThreadPoolExecutor(max_workers=2 * max_parallel,
                                              thread_name_prefix="relay-share")

    def close(self) -> None:
        """Stop the worker pool."""
        self._pool.shutdown(wait=False, cancel_futures=True)
        self._share_pool.shutdown(wait=False, cancel_futures=True)

    # -- granted paths ---------------------------------------------------------------------
    def path_for(self, dst_node: str, src_sae: str, dst_saes: Sequence[str], size_bits: int, number: int,
                 fresh: bool = False, keep_handoff: bool = False) -> PathPlan:
        """A granted path to ``dst_node`` for ``src_sae`` -> ``dst_saes`` (reused while its
        authorisation is live: every hop checks the SAEs it was granted for)."""
        if self._request_path is None:
            raise RelayFailure(Reason.UNREACHABLE,
                               f"node {dst_node} is not a neighbour and this vKMS has no QuSeC "
                               f"controller configured to find a relay path")
        dst_saes = list(dst_saes)
        cache_key = _cache_key(dst_node, src_sae, dst_saes)
        now = self._clock()
        with self._lock:
            plan = self._paths.get(cache_key)
            granted = self._granted.get(cache_key, {})
        if not fresh and plan is not None:
            if self._still_good(plan, now, granted):
                return plan
            if plan.handoff is None:   # a handoff's hops are left to expire (voids still find them)
                self._release(plan)  # rerouted, revoked or about to expire: ask afresh
        try:
            plan = self._request_path(PathQuery(
                src_node=self.node_id, dst_node=dst_node, src_sae=src_sae, dst_sae=dst_saes[0],
                key_size_bits=size_bits, key_count=number, dst_saes=tuple(dst_saes)))
        except PathRefused as exc:
            raise RelayFailure(exc.reason, f"QuSeC refused a path {self.node_id}->{dst_node}: "
                                           f"{exc.refusal or exc.reason.value}: {exc.message}") from None
        if not plan.paths:
            raise RelayFailure(Reason.UNREACHABLE, f"QuSeC granted no path {self.node_id}->{dst_node}")
        # a chain across domains is chosen afresh for every request at its source; an entry KME's
        # onward segment (keep_handoff) is reused like a path inside the domain
        if plan.handoff is None or keep_handoff:
            with self._lock:
                self._paths[cache_key] = plan
                self._granted[cache_key] = {p.path_id: self._authz.grants(p.path_id) for p in plan.paths}
        log.info("QuSeC granted %s->%s for %s->%s: %s (%s, rule %s)", self.node_id, dst_node,
                 src_sae, ",".join(dst_saes), " | ".join(",".join(p.nodes) for p in plan.paths),
                 plan.security_level or "qkd", plan.rule or "-")
        return plan

    def _still_good(self, plan: PathPlan, now: float, granted: dict[str, int]) -> bool:
        """A cached plan is reused while it lives and this node's authorisations are the ones
        it was made under.

        QuSeC moves a path under the same id and pushes every node on the new route a new
        authorisation, the source's too (with the same next hop when the move is further
        along): then the cached hops, and what the SAE is told of the path, are stale.
        """
        if plan.expires_at - PATH_REUSE_MARGIN_S <= now:
            return False
        for path in plan.paths:
            auth = self._authz.get(path.path_id)
            if auth is None or auth.expires_at <= now or auth.next_hop != path.hops[1].node_id:
                return False
            if self._authz.grants(path.path_id) != granted.get(path.path_id):
                return False
        return True

    def _release(self, plan: PathPlan) -> None:
        if self._release_path is None:
            return
        for path in plan.paths:
            self._pool.submit(self._release_path, path.path_id)

    def forget_path(self, dst_node: str, src_sae: str, dst_saes: str | Sequence[str]) -> None:
        """Drop a cached path (revoked or failing); ``dst_saes``: the slave SAE(s) it was for."""
        key = _cache_key(dst_node, src_sae, [dst_saes] if isinstance(dst_saes, str) else dst_saes)
        with self._lock:
            self._paths.pop(key, None)
            self._granted.pop(key, None)

    def forget_all_paths(self) -> None:
        """Drop every cached path (the controller session was re-established)."""
        with self._lock:
            self._paths.clear()
            self._granted.clear()

    def on_revoke(self, path_id: str, _reason: str = "") -> None:
        """QuSeC revoked a path: stop reusing any cached plan that contains it."""
        with self._lock:
            for k, plan in list(self._paths.items()):
                if any(p.path_id == path_id for p in plan.paths):
                    del self._paths[k]
                    self._granted.pop(k, None)

    # -- the source role ---------------------------------------------------------------------
    def relay_keys(self, *, master_sae: str, slave_saes: list[str], dst_node: str,
                   keys: Sequence[tuple[str, bytes]],
                   level_for: Callable[[str], str] = lambda policy: policy or "qkd",
                   check_path: Callable[[PathPlan], None] | None = None, retry: bool = True,
                   keep_handoff: bool = False, told_level: str = "",
                   ) -> tuple[list[RelayedKey], PathPlan, str]:
        """Relay ``keys`` (key id, material) to ``dst_node`` for ``slave_saes``; all or none.

        ``level_for`` maps the policy's security level to the one used (or raises
        RelayFailure). Returns the keys as the master must get them (derived for
        hybrid/pqc), the path plan and the level. On failure every key of the
        request is voided at the destination and RelayFailure is raised; the
        caller charges nothing to the SAE. ``check_path`` may refuse a granted path
        (raising RelayFailure, e.g. OptionUnmet) before any link key is spent on it.
        Counted as ``qusec_agent_relays_total{role="source"}`` by result. ``dst_node`` "": the
        slave SAE is not one this node knows (QuSeC finds it, perhaps in another domain: the plan
        then ends at the exit KME with a handoff, and the keys go in one attempt). ``retry``
        False: one attempt only (keys that must keep their IDs, e.g. ones that came in over ETSI
        GS QKD 020). ``keep_handoff``: a plan ending in a handoff is kept for reuse while it lives
        (an interworking KME relaying another domain's keys on: the chain was chosen at their source).
        ``told_level``: the key's level when weaker than its hops here (``pqc``: it came in over a
        post-quantum link), told to the destination, which reports it to the slave SAE.
        """
        try:
            out = self._relay_keys(master_sae, slave_saes, dst_node, keys, level_for, check_path,
                                   retry, keep_handoff, told_level)
        except RelayFailure as exc:
            metrics.relayed("source", exc.reason)
            raise
        except Exception:
            metrics.relayed("source", Reason.INTERNAL)
            raise
        metrics.relayed("source")
        return out

    def _relay_keys(self, master_sae: str, slave_saes: list[str], dst_node: str,
                    keys: Sequence[tuple[str, bytes]], level_for: Callable[[str], str],
                    check_path: Callable[[PathPlan], None] | None, retry: bool = True,
                    keep_handoff: bool = False, told_level: str = "",
                    ) -> tuple[list[RelayedKey], PathPlan, str]:
        if not keys:
            raise RelayFailure(Reason.INVALID, "no keys to relay")
        size_bits = 8 * len(keys[0][1])
        if any(len(m) * 8 != size_bits for _, m in keys) or size_bits == 0:
            raise RelayFailure(Reason.INVALID, "keys of one request differ in size")
        plan = self.path_for(dst_node, master_sae, slave_saes, size_bits, len(keys), keep_handoff=keep_handoff)
        if check_path is not None:
            check_path(plan)
        if plan.handoff is not None:
            # the key goes on into other domains behind the exit KME: one attempt with the whole
            # path deadline, at the QKD level only (the next domain gets the key itself); the key's
            # level is the chain's (QuSeC's answer: pqc when it crosses a post-quantum link)
            chain = plan.security_level or "qkd"

            def qkd_only(policy: str) -> str:
                if level_for(chain) != chain or chain not in ("qkd", "pqc"):
                    raise RelayFailure(Reason.UNMET, f"a key for another domain's SAE crosses "
                                       f"{plan.handoff.crossing} at the {chain} level only")
                return "qkd"
            # left to expire, never released: a later void still finds its hops
            try:
                if plan.end_node == self.node_id:   # this node is the exit KME: straight across
                    out = self._hand_off_here(plan, master_sae, slave_saes, keys, qkd_only)
                else:
                    out = self._relay_batch(plan, master_sae, slave_saes, plan.end_node, keys,
                                            qkd_only, self.sender.hop_timeout, told_level)
                for k in out[0]:
                    k.meta["qusec_security_level"] = chain if chain != "qkd" else told_level or "qkd"
                return out[0], out[1], chain if chain != "qkd" else told_level or "qkd"
            except RelayFailure:
                self.forget_path(dst_node, master_sae, slave_saes)   # the next request asks afresh
                raise
        # each attempt well under the path deadline (the hop timeout): both fit in it
        deadline = attempts.attempt_s(self.sender.hop_timeout, size_bits // 8 * len(keys),
                                      max(len(p.hops) - 1 for p in plan.paths))
        if not retry:
            try:
                return self._relay_batch(plan, master_sae, slave_saes, dst_node, keys, level_for,
                                         deadline, told_level)
            except RelayFailure:
                self.forget_path(dst_node, master_sae, slave_saes)
                raise
        try:
            return self._relay_batch(plan, master_sae, slave_saes, dst_node, keys, level_for,
                                     deadline)
        except RelayFailure as exc:
            # whatever failed, the next request asks QuSeC again rather than reusing this path
            self.forget_path(dst_node, master_sae, slave_saes)
            if not attempts.should_retry(exc.reason):
                raise
            fresh = self.path_for(dst_node, master_sae, slave_saes, size_bits, len(keys),
                                  fresh=True)
            if check_path is not None:
                check_path(fresh)
            # Fresh keys under fresh IDs: the first attempt's keys are voided over their own
            # path, and a late copy of them can neither be delivered twice nor void the retry.
            again = [(kid, secrets.token_bytes(len(m))) for kid, (_, m) in zip(new_key_ids(len(keys)), keys)]
            log.info("relay on %s failed (%s); retrying on %s with fresh keys", plan.hops(),
                     exc.message, fresh.hops())
            try:
                return self._relay_batch(fresh, master_sae, slave_saes, dst_node, again,
                                         level_for, deadline)
            except RelayFailure as again_exc:
                self.forget_path(dst_node, master_sae, slave_saes)
                raise RelayFailure(again_exc.reason, f"{again_exc.message} (and before, on "
                                   f"{'|'.join('-'.join(h) for h in plan.hops())}: {exc.message})",
                                   again_exc.check) from None

    def relayable_keys(self, key_size_bits: int) -> int:
        """Upper bound on keys this node could relay now: its best link / (key + MAC key)."""
        best = 0
        for src in self._all_sources():
            try:
                best = max(best, src.available_bytes())
            except KeySourceError:
                continue
        return best // crypto.hop_key_bytes(key_size_bits // 8)

    def _hand_off_here(self, plan: PathPlan, master_sae: str, slave_saes: list[str],
                       keys: Sequence[tuple[str, bytes]], level_for: Callable[[str], str],
                       ) -> tuple[list[RelayedKey], PathPlan, str]:
        """The source is the exit KME of the chain's first crossing (this domain's segment is
        empty): the keys go straight over it, as a relay destination hands them off."""
        level_for(plan.security_level or "qkd")
        if self.receiver.handoff is None:
            raise RelayFailure(Reason.UNMET, f"node {self.node_id} hands no keys to other domains",
                               "no_handoff")
        domains = self.receiver.handoff(plan.handoff, master_sae, tuple(slave_saes), list(keys),
                                        self.sender.hop_timeout)
        meta = {"qusec_route_type": "indirect", "qusec_security_level": "qkd",
                "qusec_path": [self.node_id], "qusec_paths": [[self.node_id]], "qusec_hops": 0,
                "qusec_path_ids": [p.path_id for p in plan.paths]}
        if domains:
            meta["qusec_domains"] = domains
        return [RelayedKey(key_id=kid, key=m, meta=dict(meta)) for kid, m in keys], plan, "qkd"

    def _relay_batch(self, plan: PathPlan, master_sae: str, slave_saes: list[str],
                     dst_node: str, keys: Sequence[tuple[str, bytes]],
                     level_for: Callable[[str], str], timeout: float | None = None,
                     told_level: str = "") -> tuple[list[RelayedKey], PathPlan, str]:
        """One attempt within ``timeout``; on failure its keys are voided along every path: in
        the background when a hop stalled or broke (the SAE does not wait for voids over such a
        path), else before raising; a plan that failed in a way worth a retry is released."""
        paths = list(plan.paths)
        hop_lists = plan.hops()
        if len(paths) > 1:
            try:
                shares.check_node_disjoint(hop_lists)
            except shares.ShareError as exc:
                raise RelayFailure(Reason.INTERNAL, f"QuSeC paths unusable: {exc}") from None
        if sorted(p.share_index for p in paths) != list(range(len(paths))):
            raise RelayFailure(Reason.INTERNAL, f"QuSeC share indices {[p.share_index for p in paths]} "
                                                f"are not 0..{len(paths) - 1}")
        for hops in hop_lists:
            if len(hops) < 2 or hops[0] != self.node_id or hops[-1] != dst_node:
                raise RelayFailure(Reason.INTERNAL,
                                   f"QuSeC path {hops} does not join {self.node_id} to {dst_node}")
        level = level_for(plan.security_level or "qkd")
        if level not in hybrid.LEVELS:
            raise RelayFailure(Reason.INTERNAL, f"unknown security level {level!r}")
        if level != "qkd" and self._identity is None:
            raise RelayFailure(Reason.UNMET, f"security level {level} needs the node's TLS identity")
        groups = bulk_groups(list(keys), level)
        jobs = [(str(uuid.uuid4()) if len(g) > 1 else g[0][0], g) for g in groups]
        futures = [self._pool.submit(self._relay_group, paths, level, group_id, group,
                                     master_sae, slave_saes, dst_node, timeout, told_level)
                   for group_id, group in jobs]
        results, failure = gather(futures)
        out = [k for group in results for k in group]
        if failure is not None:
            if attempts.stalled(failure.reason):
                self._pool.submit(self._abandon, plan, jobs, failure.message, timeout)
            else:
                self._void_jobs(paths, jobs, failure.message)
                if attempts.should_retry(failure.reason):
                    self._release(plan)
            raise failure
        return out, plan, level

    def _void_jobs(self, paths: Sequence[PlannedPath], jobs: list, reason: str,
                   timeout: float | None = None) -> None:
        for group_id, group in jobs:
            self.void(paths, group_id, reason, key_ids=[k for k, _ in group] if len(group) > 1 else (),
                      timeout=timeout)

    def _abandon(self, plan: PathPlan, jobs: list, reason: str, timeout: float | None) -> None:
        """Void a failed attempt's keys over its paths, then release them (their relays are
        refused from then on, so nothing of the attempt lingers). Each void waits at most the
        attempt's deadline: a worker is never held long by a path that just stalled."""
        self._void_jobs(list(plan.paths), jobs, reason, timeout)
        self._release(plan)

    def _relay_group(self, paths: list[PlannedPath], level: str, group_id: str,
                     group: list[tuple[str, bytes]], master_sae: str, slave_saes: list[str],
                     dst_node: str, timeout: float | None = None,
                     told_level: str = "") -> list[RelayedKey]:
        """Relay one key, or several keys of one size as one bulk message per hop."""
        key = b"".join(m for _, m in group)
        size_bits = 8 * len(group[0][1])
        bulk_ids = [k for k, _ in group] if len(group) > 1 else []
        # pqc carries no QKD key at all (the fallback when links run dry): only the blobs
        parts = [b""] * len(paths) if level == "pqc" else shares.split(key, len(paths))
        initiator = None
        if level in ("hybrid", "pqc"):
            initiator = hybrid.Initiator(self._identity, dst_node, group_id, level, src_sae=master_sae,
                                         dst_saes=slave_saes)

        def send_share(path: PlannedPath, share: bytes) -> Ack:
            index = path.share_index + 1  # the hop messages count shares from 1
            ext = {EXT_PATH: ",".join(path.nodes)}
            if told_level:
                ext[EXT_LEVEL] = told_level
            if initiator is not None and index == 1:
                ext[hybrid.EXT_OFFER] = hybrid.b64(initiator.offer)
            # the path plan is the source's authorisation; the hops check theirs
            return self.sender.send(path.hops[1].node_id, path.hops[1].relay_addr,
                                    path_id=path.path_id, key_id=group_id, key_ids=bulk_ids,
                                    size_bits=size_bits, src=self.node_id, dst=dst_node,
                                    share=share, index=index, count=len(paths), level=level,
                                    initiator_sae=master_sae, targets=slave_saes,
                                    extensions=ext.items(), timeout=timeout)

        if len(paths) == 1:
            acks = [send_share(paths[0], parts[0])]
        else:  # shares travel their disjoint paths at the same time
            acks, failure = gather([self._share_pool.submit(send_share, p, sh)
                                    for p, sh in zip(paths, parts)])
            if failure is not None:
                raise failure
        answer = next((a.extensions.get(hybrid.EXT_ANSWER) for p, a in zip(paths, acks)
                       if p.share_index == 0), None)
        ids = bulk_ids or [group_id]
        n = size_bits // 8
        finals = [key[i * n:(i + 1) * n] for i in range(len(ids))]
        if initiator is not None:
            if not answer:
                raise RelayFailure(Reason.INTERNAL, f"destination {dst_node} sent no {level} answer")
            try:
                initiator.accept(hybrid.unb64(answer, "hybrid answer"),
                                 _dt.datetime.now(_dt.timezone.utc))
            except hybrid.HybridError as exc:
                raise RelayFailure(Reason.NOT_AUTHENTIC,
                                   f"{level} answer from {dst_node} rejected: {exc}") from None
            # one ML-KEM exchange per message; each key's derivation is bound to its ID
            finals = [initiator.derive(m, kid) for m, kid in zip(finals, ids)]
        hops = [p.nodes for p in paths]
        meta = {"qusec_route_type": "indirect", "qusec_security_level": level,
                "qusec_path": hops[0], "qusec_paths": hops, "qusec_hops": len(hops[0]) - 2,
                "qusec_path_ids": [p.path_id for p in paths]}
        domains = _domains(acks[0].extensions.get(EXT_DOMAINS)) if len(acks) == 1 else None
        if domains:   # handed off at the path's end: the domains the key went on through
            meta["qusec_domains"] = domains
        return [RelayedKey(key_id=kid, key=m, meta=dict(meta)) for kid, m in zip(ids, finals)]

    def void(self, paths: Sequence[PlannedPath], key_id: str, reason: str,
             key_ids: Sequence[str] = (), timeout: float | None = None) -> None:
        """Tell every path's destination (through its relays) to forget ``key_id``; best effort
        (each call waits at most ``timeout``, the hop timeout when None)."""
        for path in paths:
            if len(path.hops) < 2:
                continue
            nxt = path.hops[1]
            try:
                self.sender.void(nxt.node_id, nxt.relay_addr, VoidMessage(
                    path_id=path.path_id, key_id=key_id, reason=reason[:200],
                    from_node=self.node_id, key_ids=tuple(key_ids)), timeout)
            except Exception as exc:  # the destination drops unfinished shares on its own
                log.info("void of key %s on path %s not delivered: %s", key_id, path.path_id, exc)
