"""Hop-by-hop key relay between vKMSs: one node's relay state and the source role.

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

This module holds the shared state and the source role; the relay-node and
destination roles are :class:`kms_agents.relay_hop.HopRole`, the wire helpers
:mod:`kms_agents.relay_wire`. Transport is injected (``send``: a function
(peer, addr, request, timeout) -> ack), so nothing here touches sockets.
"""
from __future__ import annotations

import datetime as _dt
import logging
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor

import grpc

from kms_agents import hybrid, relay_crypto, shares
from kms_agents.authz import AuthTable
from kms_agents.keystore import KeyStore
from kms_agents.proto import relay_pb2
from kms_agents.qkd_module import KeySourceError
from kms_agents.relay_hop import HopRole, _Pending
from kms_agents.relay_wire import (EXT_PATH, MAX_BULK_BYTES, RelayedKey, RelayFailure,
                                   bulk_groups, header_of, hops_of, to_request)
from quseccontroller.proto import control_pb2

__all__ = ["RelayEngine", "RelayFailure", "RelayedKey", "bulk_groups", "to_request",
           "header_of", "MAX_BULK_BYTES"]

log = logging.getLogger(__name__)

PATH_REUSE_MARGIN_S = 2.0  # stop reusing a granted path this long before it expires
RETRY_ON_FRESH_PATH = (grpc.StatusCode.PERMISSION_DENIED, grpc.StatusCode.NOT_FOUND,
                       grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)

Send = Callable[[str, str, relay_pb2.RelayRequest, float], relay_pb2.RelayAck]


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
            failure = failure or RelayFailure(grpc.StatusCode.INTERNAL, f"relay failed: {exc}")
    return results, failure
VoidSend = Callable[[str, str, relay_pb2.VoidRequest, float], relay_pb2.RelayAck]


class RelayEngine(HopRole):
    """One node's relay protocol state and its source role (the receiving side: HopRole)."""

    def __init__(self, node_id: str, *, sources: Callable[[str], object | None],
                 link: Callable[[str], object | None] | None = None,
                 all_sources: Callable[[], Iterable[object]] = lambda: (), store: KeyStore,
                 authz: AuthTable, request_path: Callable[[control_pb2.PathRequest],
                                                          control_pb2.PathReply] | None,
                 release_path: Callable[[str], object] | None = None,
                 send: Send, send_void: VoidSend, identity: hybrid.NodeIdentity | None = None,
                 hop_timeout_s: float = 10.0, max_parallel: int = 8,
                 sae_node: Callable[[str], str | None] | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self.node_id = node_id
        self._sources = sources      # next hop node -> the link key source to pad with
        self._link = link            # link id -> this node's end of that link
        self._all_sources = all_sources
        self._store = store
        self._authz = authz
        self._request_path = request_path
        self._release_path = release_path
        self._send = send
        self._send_void = send_void
        self._identity = identity
        self._sae_node = sae_node    # SAE id -> its node, to check a delivery's SAEs
        self._hop_timeout = hop_timeout_s
        self._clock = clock
        self._seq = relay_crypto.SeqCounter()
        self._replay = relay_crypto.ReplayWindow()
        self._pending: dict[str, _Pending] = {}
        self._lock = threading.Lock()
        self._paths: dict[tuple, control_pb2.PathReply] = {}
        self._pool = ThreadPoolExecutor(max_workers=max_parallel, thread_name_prefix="relay")
        # separate pool: share sends never submit work, so they cannot starve the relay pool
        self._share_pool = ThreadPoolExecutor(max_workers=2 * max_parallel,
                                              thread_name_prefix="relay-share")
        self.link_bytes_used = 0  # link key this node took for relaying (pad + MAC)

    def close(self) -> None:
        """Stop the worker pool."""
        self._pool.shutdown(wait=False, cancel_futures=True)
        self._share_pool.shutdown(wait=False, cancel_futures=True)

    # ----------------------------------------------------------------------------------------
    # source
    # ----------------------------------------------------------------------------------------
    def path_for(self, dst_node: str, src_sae: str, dst_sae: str, size_bits: int, number: int,
                 fresh: bool = False) -> control_pb2.PathReply:
        """A granted path to ``dst_node`` (reused while its authorisation is live)."""
        if self._request_path is None:
            raise RelayFailure(grpc.StatusCode.UNAVAILABLE,
                               f"node {dst_node} is not a neighbour and this vKMS has no QuSeC "
                               f"controller configured to find a relay path")
        cache_key = (dst_node, src_sae, dst_sae)
        now = self._clock()
        with self._lock:
            reply = self._paths.get(cache_key)
        if not fresh and reply is not None:
            if self._still_good(reply, now):
                return reply
            self._release(reply)  # rerouted, revoked or about to expire: ask afresh
        from kms_agents.control_client import PathRefused
        try:
            reply = self._request_path(control_pb2.PathRequest(
                src_node=self.node_id, dst_node=dst_node, src_sae=src_sae, dst_sae=dst_sae,
                key_size_bits=size_bits, key_count=number))
        except PathRefused as exc:
            raise RelayFailure(exc.code, f"QuSeC refused a path {self.node_id}->{dst_node}: "
                                         f"{exc.reason or exc.code.name}: {exc.message}") from None
        if not reply.paths:
            raise RelayFailure(grpc.StatusCode.UNAVAILABLE,
                               f"QuSeC granted no path {self.node_id}->{dst_node}")
        with self._lock:
            self._paths[cache_key] = reply
        log.info("QuSeC granted %s->%s for %s->%s: %s (%s, rule %s)", self.node_id, dst_node,
                 src_sae, dst_sae, " | ".join(",".join(h.node_id for h in p.hops)
                                             for p in reply.paths),
                 reply.security_level or "qkd", reply.rule or "-")
        return reply

    def _still_good(self, reply: control_pb2.PathReply, now: float) -> bool:
        """A cached reply is reused while it lives and this node's authorisations still match it.

        QuSeC reroutes a path under the same id and pushes the source a new
        authorisation with another next hop: then the cached hops are stale.
        """
        if reply.expires_unix_ms / 1000.0 - PATH_REUSE_MARGIN_S <= now:
            return False
        for path in reply.paths:
            auth = self._authz.get(path.path_id)
            if auth is None or auth.expires_at <= now or auth.next_hop != path.hops[1].node_id:
                return False
        return True

    def _release(self, reply: control_pb2.PathReply) -> None:
        if self._release_path is None:
            return
        for path in reply.paths:
            self._pool.submit(self._release_path, path.path_id)

    def forget_path(self, dst_node: str, src_sae: str, dst_sae: str) -> None:
        """Drop a cached path (revoked or failing)."""
        with self._lock:
            self._paths.pop((dst_node, src_sae, dst_sae), None)

    def forget_all_paths(self) -> None:
        """Drop every cached path (the controller session was re-established)."""
        with self._lock:
            self._paths.clear()

    def on_revoke(self, path_id: str, _reason: str = "") -> None:
        """QuSeC revoked a path: stop reusing any cached reply that contains it."""
        with self._lock:
            for k, reply in list(self._paths.items()):
                if any(p.path_id == path_id for p in reply.paths):
                    del self._paths[k]

    def relay_keys(self, *, master_sae: str, slave_saes: list[str], dst_node: str,
                   keys: Sequence[tuple[str, bytes]],
                   level_for: Callable[[str], str] = lambda policy: policy or "qkd",
                   check_path: Callable[[control_pb2.PathReply], None] | None = None,
                   ) -> tuple[list[RelayedKey], control_pb2.PathReply, str]:
        """Relay ``keys`` (key id, material) to ``dst_node`` for ``slave_saes``; all or none.

        ``level_for`` maps the policy's security level to the one used (or raises
        RelayFailure). Returns the keys as the master must get them (derived for
        hybrid/pqc), the path reply and the level. On failure every key of the
        request is voided at the destination and RelayFailure is raised; the
        caller charges nothing to the SAE. ``check_path`` may refuse a granted path
        (raising RelayFailure, e.g. OptionUnmet) before any link key is spent on it.
        """
        if not keys:
            raise RelayFailure(grpc.StatusCode.INVALID_ARGUMENT, "no keys to relay")
        size_bits = 8 * len(keys[0][1])
        if any(len(m) * 8 != size_bits for _, m in keys) or size_bits == 0:
            raise RelayFailure(grpc.StatusCode.INVALID_ARGUMENT, "keys of one request differ in size")
        reply = self.path_for(dst_node, master_sae, slave_saes[0], size_bits, len(keys))
        if check_path is not None:
            check_path(reply)
        try:
            return self._relay_batch(reply, master_sae, slave_saes, dst_node, keys, level_for)
        except RelayFailure as exc:
            # whatever failed, the next request asks QuSeC again rather than reusing this path
            self.forget_path(dst_node, master_sae, slave_saes[0])
            if exc.code not in RETRY_ON_FRESH_PATH:
                raise
            fresh = self.path_for(dst_node, master_sae, slave_saes[0], size_bits, len(keys),
                                  fresh=True)
            if exc.code not in (grpc.StatusCode.PERMISSION_DENIED, grpc.StatusCode.NOT_FOUND) \
                    and hops_of(fresh) == hops_of(reply):
                raise  # QuSeC has not noticed the failure yet: same path, same outcome
            if check_path is not None:
                check_path(fresh)
            log.info("relay on %s failed (%s); retrying on %s", hops_of(reply), exc.message,
                     hops_of(fresh))
            return self._relay_batch(fresh, master_sae, slave_saes, dst_node, keys, level_for)

    def relayable_keys(self, key_size_bits: int) -> int:
        """Upper bound on keys this node could relay now: its best link / (key + MAC key)."""
        best = 0
        for src in self._all_sources():
            try:
                best = max(best, src.available_bytes())
            except KeySourceError:
                continue
        return best // (key_size_bits // 8 + relay_crypto.MAC_KEY_BYTES)

    def _relay_batch(self, reply: control_pb2.PathReply, master_sae: str, slave_saes: list[str],
                     dst_node: str, keys: Sequence[tuple[str, bytes]],
                     level_for: Callable[[str], str]
                     ) -> tuple[list[RelayedKey], control_pb2.PathReply, str]:
        paths = list(reply.paths)
        hop_lists = [[h.node_id for h in p.hops] for p in paths]
        if len(paths) > 1:
            try:
                shares.check_node_disjoint(hop_lists)
            except shares.ShareError as exc:
                raise RelayFailure(grpc.StatusCode.INTERNAL, f"QuSeC paths unusable: {exc}") from None
        if sorted(p.share_index for p in paths) != list(range(len(paths))):
            raise RelayFailure(grpc.StatusCode.INTERNAL,
                               f"QuSeC share indices {[p.share_index for p in paths]} are not "
                               f"0..{len(paths) - 1}")
        for hops in hop_lists:
            if len(hops) < 2 or hops[0] != self.node_id or hops[-1] != dst_node:
                raise RelayFailure(grpc.StatusCode.INTERNAL,
                                   f"QuSeC path {hops} does not join {self.node_id} to {dst_node}")
        level = level_for(reply.security_level or "qkd")
        if level not in hybrid.LEVELS:
            raise RelayFailure(grpc.StatusCode.INTERNAL, f"unknown security level {level!r}")
        if level != "qkd" and self._identity is None:
            raise RelayFailure(grpc.StatusCode.FAILED_PRECONDITION,
                               f"security level {level} needs the node's TLS identity")
        groups = bulk_groups(list(keys), level)
        jobs = [(str(uuid.uuid4()) if len(g) > 1 else g[0][0], g) for g in groups]
        futures = [self._pool.submit(self._relay_group, paths, level, group_id, group,
                                     master_sae, slave_saes, dst_node) for group_id, group in jobs]
        results, failure = gather(futures)
        out = [k for group in results for k in group]
        if failure is not None:
            for group_id, group in jobs:
                self.void(paths, group_id, failure.message,
                          key_ids=[k for k, _ in group] if len(group) > 1 else ())
            raise failure
        return out, reply, level

    def _relay_group(self, paths: list[control_pb2.RelayPath], level: str, group_id: str,
                     group: list[tuple[str, bytes]], master_sae: str, slave_saes: list[str],
                     dst_node: str) -> list[RelayedKey]:
        """Relay one key, or several keys of one size as one bulk message per hop."""
        key = b"".join(m for _, m in group)
        size_bits = 8 * len(group[0][1])
        bulk_ids = [k for k, _ in group] if len(group) > 1 else []
        # pqc carries no QKD key at all (the fallback when links run dry): only the blobs
        parts = [b""] * len(paths) if level == "pqc" else shares.split(key, len(paths))
        initiator = None
        if level in ("hybrid", "pqc"):
            initiator = hybrid.Initiator(self._identity, dst_node, group_id, level)

        def send_share(path: control_pb2.RelayPath, share: bytes) -> relay_pb2.RelayAck:
            index = path.share_index + 1  # the wire counts shares from 0
            ext = {EXT_PATH: ",".join(h.node_id for h in path.hops)}
            if initiator is not None and index == 1:
                ext[hybrid.EXT_OFFER] = hybrid.b64(initiator.offer)
            # the path reply is the source's authorisation; the hops check theirs
            return self._send_hop(path.hops[1].node_id, path.hops[1].relay_addr,
                                  path_id=path.path_id, key_id=group_id, key_ids=bulk_ids,
                                  size_bits=size_bits, src=self.node_id,
                                  dst=dst_node, share=share, index=index, count=len(paths),
                                  level=level, initiator_sae=master_sae, targets=slave_saes,
                                  extensions=ext)

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
                raise RelayFailure(grpc.StatusCode.INTERNAL,
                                   f"destination {dst_node} sent no {level} answer")
            try:
                initiator.accept(hybrid.unb64(answer, "hybrid answer"),
                                 _dt.datetime.now(_dt.timezone.utc))
            except hybrid.HybridError as exc:
                raise RelayFailure(grpc.StatusCode.UNAUTHENTICATED,
                                   f"{level} answer from {dst_node} rejected: {exc}") from None
            # one ML-KEM exchange per message; each key's derivation is bound to its ID
            finals = [initiator.derive(m, kid) for m, kid in zip(finals, ids)]
        hops = [[h.node_id for h in p.hops] for p in paths]
        meta = {"qusec_route_type": "indirect", "qusec_security_level": level,
                "qusec_path": hops[0], "qusec_paths": hops, "qusec_hops": len(hops[0]) - 2,
                "qusec_path_ids": [p.path_id for p in paths]}
        return [RelayedKey(key_id=kid, key=m, meta=dict(meta)) for kid, m in zip(ids, finals)]

    def _send_hop(self, peer: str, addr: str, *, path_id: str, key_id: str,
                  key_ids: Sequence[str], size_bits: int, src: str, dst: str,
                  share: bytes, index: int, count: int, level: str, initiator_sae: str,
                  targets: list[str], extensions: dict[str, str]) -> relay_pb2.RelayAck:
        source = self._sources(peer)
        if source is None:
            raise RelayFailure(grpc.StatusCode.FAILED_PRECONDITION,
                               f"node {self.node_id} has no QKD link to next hop {peer}")
        seq = self._seq.next(f"{peer}|{source.link_id}", self._clock())
        if level == "pqc":
            # no link key: the hop is authenticated by mutual TLS, the key by the signed blobs
            return self._send(peer, addr, relay_pb2.RelayRequest(
                version=relay_crypto.VERSION, path_id=path_id, share_index=index,
                share_count=count, seq=seq, key_id=key_id, initiator_sae_id=initiator_sae,
                target_sae_ids=list(targets), src_node=src, dst_node=dst,
                from_node=self.node_id, link_id=source.link_id, size_bits=size_bits,
                security_level=level, extensions=extensions, key_ids=list(key_ids)),
                self._hop_timeout)
        n = len(share)
        try:
            # one take for pad and MAC key: one durable link-store write per hop
            link_key = source.take(n + relay_crypto.MAC_KEY_BYTES)
        except KeySourceError as exc:
            raise RelayFailure(grpc.StatusCode.RESOURCE_EXHAUSTED,
                               f"node {self.node_id}: not enough link key toward {peer}: "
                               f"{exc}") from None
        with self._lock:
            self.link_bytes_used += n + relay_crypto.MAC_KEY_BYTES
        pad, mac = relay_crypto.split_link_key(link_key.material, n)
        header = relay_crypto.RelayHeader(
            path_id=path_id, seq=seq, key_id=key_id, from_node=self.node_id, src_node=src, dst_node=dst,
            share_index=index, share_count=count, size_bits=size_bits, security_level=level,
            link_id=source.link_id, pad_key_ids=tuple(link_key.key_ids), mac_key_ids=(),
            initiator_sae_id=initiator_sae, target_sae_ids=tuple(targets),
            extensions=tuple(sorted(extensions.items())), key_ids=tuple(key_ids))
        ciphertext, tag = relay_crypto.seal(header, share, pad, mac)
        req = to_request(header, ciphertext, tag)
        return self._send(peer, addr, req, self._hop_timeout)

    def void(self, paths: list[control_pb2.RelayPath], key_id: str, reason: str,
             key_ids: Sequence[str] = ()) -> None:
        """Tell every path's destination (through its relays) to forget ``key_id``; best effort."""
        for path in paths:
            if len(path.hops) < 2:
                continue
            nxt = path.hops[1]
            try:
                self._send_void(nxt.node_id, nxt.relay_addr, relay_pb2.VoidRequest(
                    version=relay_crypto.VERSION, path_id=path.path_id, key_id=key_id,
                    reason=reason[:200], from_node=self.node_id, key_ids=list(key_ids)),
                    self._hop_timeout)
            except Exception as exc:  # the destination drops unfinished shares on its own
                log.info("void of key %s on path %s not delivered: %s", key_id, path.path_id, exc)

