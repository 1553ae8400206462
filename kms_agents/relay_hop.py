"""Receiving side of the key relay: relay nodes forward under authorisation, destinations store.

A relay node checks the sender, its live authorisation from QuSeC, the sequence
number and the one-time MAC, then forwards with fresh link key; the destination
checks the SAEs, combines multipath shares, derives hybrid/pqc keys and stores the
key for the slave SAE.

:class:`HopRole` is mixed into :class:`kms_agents.relay_engine.RelayEngine`, whose
``__init__`` sets the state it uses (authorisations, link sources, replay window,
pending shares, key store) and which provides ``_send_hop`` for forwarding.
"""
from __future__ import annotations

import datetime as _dt
import logging
import time
from dataclasses import dataclass, field

import grpc

from kms_agents import hybrid, relay_crypto, shares
from kms_agents.authz import Authorisation, NotAuthorised
from kms_agents.keystore import DuplicateKey, StoredKey
from kms_agents.proto import relay_pb2
from kms_agents.qkd_module import KeySourceError, UnknownKeyIds
from kms_agents.relay_wire import EXT_PATH, RelayFailure, header_of

log = logging.getLogger(__name__)

AUTH_WAIT_S = 1.0          # an authorisation push may trail the path reply by a few ms
PENDING_SHARES_TTL_S = 30.0


@dataclass
class _Pending:
    shares: dict[int, bytes] = field(default_factory=dict)
    responder: hybrid.Responder | None = None
    created: float = field(default_factory=time.monotonic)



class HopRole:
    """Relay-node and destination handling of RelayRequest / VoidRequest."""

    def _authorised(self, path_id: str, from_node: str, src: str, dst: str, index: int,
                    count: int) -> Authorisation:
        try:
            return self._authz.check(path_id, from_node=from_node, src_node=src, dst_node=dst,
                                     now=self._clock(), share_index=index, share_count=count)
        except NotAuthorised as first:
            if self._authz.get(path_id) is None and self._authz.wait_for(path_id, AUTH_WAIT_S):
                try:
                    return self._authz.check(path_id, from_node=from_node, src_node=src,
                                             dst_node=dst, now=self._clock(),
                                             share_index=index, share_count=count)
                except NotAuthorised as exc:
                    first = exc
            raise RelayFailure(grpc.StatusCode.PERMISSION_DENIED,
                               f"node {self.node_id}: {first}") from None

    def handle_relay(self, req: relay_pb2.RelayRequest, peer: str) -> relay_pb2.RelayAck:
        """Receive one hop from authenticated neighbour ``peer``; forward or deliver.

        Raises RelayFailure (the servicer turns it into a gRPC status).
        """
        if req.version != relay_crypto.VERSION:
            raise RelayFailure(grpc.StatusCode.INVALID_ARGUMENT,
                               f"relay protocol version {req.version!r} not supported "
                               f"(this node speaks {relay_crypto.VERSION})")
        if req.from_node != peer:
            raise RelayFailure(grpc.StatusCode.PERMISSION_DENIED,
                               f"message claims to come from {req.from_node!r} but the TLS peer "
                               f"is {peer!r}")
        try:
            header = header_of(req)
        except relay_crypto.RelayCryptoError as exc:
            raise RelayFailure(grpc.StatusCode.INVALID_ARGUMENT, str(exc)) from None
        if header.dst_node == self.node_id and header.from_node == header.src_node == self.node_id:
            raise RelayFailure(grpc.StatusCode.INVALID_ARGUMENT, "relay to self")
        auth = self._authorised(header.path_id, peer, header.src_node, header.dst_node,
                                header.share_index, header.share_count)
        hop = f"{peer}|{header.link_id}"
        try:
            self._replay.check(hop, header.seq)
        except relay_crypto.ReplayError as exc:
            raise RelayFailure(grpc.StatusCode.ALREADY_EXISTS, f"node {self.node_id}: {exc}") from None
        source = self._link(header.link_id) if self._link else self._sources(peer)
        if source is None or source.link_id != header.link_id or source.peer_node != peer:
            raise RelayFailure(grpc.StatusCode.FAILED_PRECONDITION,
                               f"node {self.node_id} has no QKD link {header.link_id} to {peer}")
        if header.security_level == "pqc":
            if req.ciphertext or req.tag or header.pad_key_ids or header.mac_key_ids:
                raise RelayFailure(grpc.StatusCode.INVALID_ARGUMENT,
                                   "a pqc relay message carries no QKD key")
            self._replay.accept(hop, header.seq)
            return self._forward_or_deliver(header, b"", auth)
        n = header.payload_bytes
        try:
            if header.mac_key_ids:
                pad = source.claim(header.pad_key_ids, n)
                mac = source.claim(header.mac_key_ids, relay_crypto.MAC_KEY_BYTES)
            else:
                material = source.claim(header.pad_key_ids, n + relay_crypto.MAC_KEY_BYTES)
                pad, mac = material[:n], material[n:]
        except UnknownKeyIds as exc:
            raise RelayFailure(grpc.StatusCode.UNAUTHENTICATED,
                               f"node {self.node_id}: link key of this message unknown or "
                               f"already used: {exc}") from None
        except KeySourceError as exc:
            raise RelayFailure(grpc.StatusCode.UNAVAILABLE,
                               f"node {self.node_id}: link key source failed: {exc}") from None
        if len(pad) != n or len(mac) != relay_crypto.MAC_KEY_BYTES:
            raise RelayFailure(grpc.StatusCode.UNAUTHENTICATED,
                               f"node {self.node_id}: link key IDs cover {len(pad)}+{len(mac)} "
                               f"bytes, message needs {n}+{relay_crypto.MAC_KEY_BYTES}")
        try:
            share = relay_crypto.open_sealed(header, req.ciphertext, req.tag, pad, mac)
            self._replay.accept(hop, header.seq)
        except relay_crypto.ReplayError as exc:
            raise RelayFailure(grpc.StatusCode.ALREADY_EXISTS, f"node {self.node_id}: {exc}") from None
        except relay_crypto.RelayCryptoError as exc:
            raise RelayFailure(grpc.StatusCode.UNAUTHENTICATED, f"node {self.node_id}: {exc}") from None
        return self._forward_or_deliver(header, share, auth)

    def _forward_or_deliver(self, header: relay_crypto.RelayHeader, share: bytes,
                            auth: Authorisation) -> relay_pb2.RelayAck:
        if auth.next_hop:
            return self._send_hop(auth.next_hop, auth.next_hop_addr, path_id=header.path_id,
                                  key_id=header.key_id, key_ids=header.key_ids,
                                  size_bits=header.size_bits, src=header.src_node,
                                  dst=header.dst_node,
                                  share=share, index=header.share_index,
                                  count=header.share_count, level=header.security_level,
                                  initiator_sae=header.initiator_sae_id,
                                  targets=list(header.target_sae_ids),
                                  extensions=dict(header.extensions))
        if header.dst_node != self.node_id:
            raise RelayFailure(grpc.StatusCode.PERMISSION_DENIED,
                               f"node {self.node_id} is the end of path {header.path_id} but the "
                               f"message is for {header.dst_node}")
        return self._deliver(header, share, auth)

    def _check_saes(self, header: relay_crypto.RelayHeader) -> None:
        if not header.target_sae_ids:
            raise RelayFailure(grpc.StatusCode.INVALID_ARGUMENT, "relay names no target SAE")
        if self._sae_node is None:
            return
        master = self._sae_node(header.initiator_sae_id)
        if master != header.src_node:
            raise RelayFailure(grpc.StatusCode.INVALID_ARGUMENT,
                               f"master SAE {header.initiator_sae_id!r} is not attached to node "
                               f"{header.src_node}")
        wrong = [t for t in header.target_sae_ids if self._sae_node(t) != self.node_id]
        if wrong:
            raise RelayFailure(grpc.StatusCode.INVALID_ARGUMENT,
                               f"target SAE(s) {wrong} are not attached to node {self.node_id}")

    def _deliver(self, header: relay_crypto.RelayHeader, share: bytes,
                 auth: Authorisation) -> relay_pb2.RelayAck:
        level = header.security_level
        self._check_saes(header)
        ack = relay_pb2.RelayAck(status=relay_pb2.RELAYED, key_id=header.key_id)
        self._drop_stale_pending()
        with self._lock:
            pending = self._pending.setdefault(header.key_id, _Pending())
            if header.share_index in pending.shares:
                raise RelayFailure(grpc.StatusCode.ALREADY_EXISTS,
                                   f"share {header.share_index} of key {header.key_id} already here")
            pending.shares[header.share_index] = share
        ext = dict(header.extensions)
        if level in ("hybrid", "pqc") and hybrid.EXT_OFFER in ext:
            if self._identity is None:
                raise RelayFailure(grpc.StatusCode.FAILED_PRECONDITION,
                                   f"node {self.node_id} has no TLS identity for {level} keys")
            try:
                responder = hybrid.Responder(
                    self._identity, hybrid.unb64(ext[hybrid.EXT_OFFER], "hybrid offer"),
                    src_node=header.src_node, key_id=header.key_id, level=level,
                    now=_dt.datetime.now(_dt.timezone.utc))
            except hybrid.HybridError as exc:
                self._drop_pending(header.key_id)
                raise RelayFailure(grpc.StatusCode.UNAUTHENTICATED,
                                   f"node {self.node_id}: {level} offer rejected: {exc}") from None
            with self._lock:
                pending.responder = responder
            ack.extensions[hybrid.EXT_ANSWER] = hybrid.b64(responder.answer)
        with self._lock:
            complete = (len(pending.shares) == header.share_count
                        and (level == "qkd" or pending.responder is not None))
            if complete:
                self._pending.pop(header.key_id, None)
        if not complete:
            return ack
        if level == "pqc":  # no QKD key: derive() only uses its length
            key = bytes(header.payload_bytes)
        else:
            key = shares.combine([pending.shares[i] for i in sorted(pending.shares)])
        path = ext.get(EXT_PATH, "").split(",") if ext.get(EXT_PATH) else []
        meta = {"qusec_route_type": "indirect", "qusec_security_level": level,
                "qusec_src_node": header.src_node, "qusec_path": path,
                "qusec_hops": max(0, len(path) - 2), "qusec_path_id": header.path_id,
                "qusec_shares": header.share_count}
        ids = header.key_ids or (header.key_id,)
        n = header.size_bits // 8
        materials = [key[i * n:(i + 1) * n] for i in range(len(ids))]
        if level in ("hybrid", "pqc"):
            materials = [pending.responder.derive(m, kid) for m, kid in zip(materials, ids)]
        try:
            self._store.put([StoredKey(key_id=kid, master_sae=header.initiator_sae_id,
                                       slaves=list(header.target_sae_ids), material=m,
                                       meta=dict(meta)) for kid, m in zip(ids, materials)])
        except DuplicateKey:
            raise RelayFailure(grpc.StatusCode.ALREADY_EXISTS,
                               f"key {header.key_id} is already stored at {self.node_id}") from None
        except ValueError as exc:
            raise RelayFailure(grpc.StatusCode.INVALID_ARGUMENT, str(exc)) from None
        log.info("stored %d relayed key(s) %s from %s for %s (%s, %d share(s))", len(ids),
                 header.key_id, header.src_node, ",".join(header.target_sae_ids), level,
                 header.share_count)
        return ack

    def _drop_pending(self, key_id: str) -> None:
        with self._lock:
            self._pending.pop(key_id, None)

    def _drop_stale_pending(self) -> None:
        cutoff = time.monotonic() - PENDING_SHARES_TTL_S
        with self._lock:
            for key_id in [k for k, p in self._pending.items() if p.created < cutoff]:
                del self._pending[key_id]

    def handle_void(self, req: relay_pb2.VoidRequest, peer: str) -> relay_pb2.RelayAck:
        """Forget ``req.key_id`` here and pass the void on along the authorised path."""
        if req.from_node != peer:
            raise RelayFailure(grpc.StatusCode.PERMISSION_DENIED,
                               f"void claims to come from {req.from_node!r} but the TLS peer is "
                               f"{peer!r}")
        auth = self._authz.get(req.path_id)
        if auth is None or auth.prev_hop != peer:
            raise RelayFailure(grpc.StatusCode.PERMISSION_DENIED,
                               f"node {self.node_id}: no authorisation on path {req.path_id} "
                               f"from {peer}")
        if auth.next_hop:
            return self._send_void(auth.next_hop, auth.next_hop_addr, relay_pb2.VoidRequest(
                version=relay_crypto.VERSION, path_id=req.path_id, key_id=req.key_id,
                reason=req.reason, from_node=self.node_id, key_ids=list(req.key_ids)),
                self._hop_timeout)
        self._drop_pending(req.key_id)
        ids = list(req.key_ids) or [req.key_id]
        present = any(self._store.peek(kid) is not None for kid in ids)
        self._store.discard(ids)
        log.info("voided key %s (%s)", req.key_id, req.reason)
        return relay_pb2.RelayAck(status=relay_pb2.VOIDED if present else relay_pb2.KEY_NOT_PRESENT,
                                  key_id=req.key_id, message=req.reason)

