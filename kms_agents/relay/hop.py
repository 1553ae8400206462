"""One relay hop, both ends: sealing and sending toward a neighbour, receiving and checking from one.

:class:`HopSender` pads and MACs a share with fresh link key toward the next hop (the
source and every relay node send this way). :class:`HopReceiver` holds the relay-node
and destination roles: it checks the sender, its live authorisation from QuSeC, the
sequence number and the one-time MAC, then forwards through the sender, or, at the
destination, checks the SAEs, combines multipath shares, derives hybrid/pqc keys and
stores the key for the slave SAE. Transport is injected (``send``: (peer, addr, message,
timeout) -> ack), so nothing here touches sockets.
"""
from __future__ import annotations

import datetime as _dt
import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from kms_agents.keystore import DuplicateKey, KeyStore, StoredKey
from kms_agents.qkd_module import KeySourceError, UnknownKeyIds
from kms_agents.relay import crypto, hybrid, shares
from kms_agents.relay.authz import Authorisation, AuthTable, NotAuthorised
from kms_agents.relay.messages import (EXT_PATH, Ack, AckStatus, Reason, RelayFailure, RelayMessage,
                                       VoidMessage)

log = logging.getLogger(__name__)

AUTH_WAIT_S = 1.0          # an authorisation push may trail the path reply by a few ms
PENDING_SHARES_TTL_S = 30.0

Send = Callable[[str, str, RelayMessage, float], Ack]
VoidSend = Callable[[str, str, VoidMessage, float], Ack]


class HopSender:
    """Sends relay messages to neighbours: one take of fresh link key, one-time pad and MAC."""

    def __init__(self, node_id: str, *, sources: Callable[[str], object | None], send: Send,
                 send_void: VoidSend, hop_timeout_s: float = 10.0,
                 clock: Callable[[], float] = time.time) -> None:
        self.node_id = node_id
        self._sources = sources      # next hop node -> the link key source to pad with
        self._send = send
        self._send_void = send_void
        self.hop_timeout = hop_timeout_s
        self._clock = clock
        self._seq = crypto.SeqCounter()

    def send(self, peer: str, addr: str, *, path_id: str, key_id: str, key_ids: Sequence[str],
             size_bits: int, src: str, dst: str, share: bytes, index: int, count: int, level: str,
             initiator_sae: str, targets: Sequence[str],
             extensions: Sequence[tuple[str, str]]) -> Ack:
        """Send one share (``index`` counts from 1) toward ``peer``; returns the chain's ack."""
        source = self._sources(peer)
        if source is None:
            raise RelayFailure(Reason.UNMET, f"node {self.node_id} has no QKD link to next hop {peer}")
        seq = self._seq.next(f"{peer}|{source.link_id}", self._clock())
        extensions = tuple(sorted(extensions))
        if level == "pqc":
            # no link key: the hop is authenticated by mutual TLS, the key by the signed blobs
            header = crypto.RelayHeader(
                path_id=path_id, seq=seq, key_id=key_id, from_node=self.node_id, src_node=src,
                dst_node=dst, share_index=index, share_count=count, size_bits=size_bits,
                security_level=level, link_id=source.link_id, pad_key_ids=(), mac_key_ids=(),
                initiator_sae_id=initiator_sae, target_sae_ids=tuple(targets),
                extensions=extensions, key_ids=tuple(key_ids))
            return self._send(peer, addr, RelayMessage(header), self.hop_timeout)
        n = len(share)
        try:
            # one take for pad and MAC key: one durable link-store write per hop
            link_key = source.take(crypto.hop_key_bytes(n))
        except KeySourceError as exc:
            raise RelayFailure(Reason.NO_KEY, f"node {self.node_id}: not enough link key toward "
                                              f"{peer}: {exc}") from None
        pad, mac = crypto.split_link_key(link_key.material, n)
        header = crypto.RelayHeader(
            path_id=path_id, seq=seq, key_id=key_id, from_node=self.node_id, src_node=src,
            dst_node=dst, share_index=index, share_count=count, size_bits=size_bits,
            security_level=level, link_id=source.link_id, pad_key_ids=tuple(link_key.key_ids),
            mac_key_ids=(), initiator_sae_id=initiator_sae, target_sae_ids=tuple(targets),
            extensions=extensions, key_ids=tuple(key_ids))
        ciphertext, tag = crypto.seal(header, share, pad, mac)
        return self._send(peer, addr, RelayMessage(header, ciphertext, tag), self.hop_timeout)

    def void(self, peer: str, addr: str, msg: VoidMessage) -> Ack:
        return self._send_void(peer, addr, msg, self.hop_timeout)


@dataclass
class _Pending:
    shares: dict[int, bytes] = field(default_factory=dict)
    responder: hybrid.Responder | None = None
    created: float = field(default_factory=time.monotonic)


class HopReceiver:
    """Relay-node and destination handling of relay and void messages from neighbours."""

    def __init__(self, node_id: str, *, sender: HopSender, sources: Callable[[str], object | None],
                 link: Callable[[str], object | None] | None = None, store: KeyStore,
                 authz: AuthTable, identity: hybrid.NodeIdentity | None = None,
                 sae_node: Callable[[str], str | None] | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self.node_id = node_id
        self.sender = sender
        self._sources = sources      # neighbour -> this node's link to it (when ``link`` is absent)
        self._link = link            # link id -> this node's end of that link
        self._store = store
        self._authz = authz
        self._identity = identity
        self.sae_node = sae_node     # SAE id -> its node, to check a delivery's SAEs
        self._clock = clock
        self._replay = crypto.ReplayWindow()
        self.pending: dict[str, _Pending] = {}   # key id -> shares arrived so far (destination)
        self._lock = threading.Lock()

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
            raise RelayFailure(Reason.DENIED, f"node {self.node_id}: {first}") from None

    def handle_relay(self, msg: RelayMessage, peer: str) -> Ack:
        """Receive one hop from authenticated neighbour ``peer``; forward or deliver.

        Raises RelayFailure (the servicer turns it into a gRPC status).
        """
        header = msg.header
        if header.from_node != peer:
            raise RelayFailure(Reason.DENIED, f"message claims to come from {header.from_node!r} but "
                                              f"the TLS peer is {peer!r}")
        if header.dst_node == self.node_id and header.from_node == header.src_node == self.node_id:
            raise RelayFailure(Reason.INVALID, "relay to self")
        auth = self._authorised(header.path_id, peer, header.src_node, header.dst_node,
                                header.share_index, header.share_count)
        hop = f"{peer}|{header.link_id}"
        try:
            self._replay.check(hop, header.seq)
        except crypto.ReplayError as exc:
            raise RelayFailure(Reason.DUPLICATE, f"node {self.node_id}: {exc}") from None
        source = self._link(header.link_id) if self._link else self._sources(peer)
        if source is None or source.link_id != header.link_id or source.peer_node != peer:
            raise RelayFailure(Reason.UNMET,
                               f"node {self.node_id} has no QKD link {header.link_id} to {peer}")
        if header.security_level == "pqc":
            if msg.ciphertext or msg.tag or header.pad_key_ids or header.mac_key_ids:
                raise RelayFailure(Reason.INVALID, "a pqc relay message carries no QKD key")
            self._replay.accept(hop, header.seq)
            return self._forward_or_deliver(header, b"", auth)
        n = header.payload_bytes
        try:
            if header.mac_key_ids:
                pad = source.claim(header.pad_key_ids, n)
                mac = source.claim(header.mac_key_ids, crypto.MAC_KEY_BYTES)
            else:
                material = source.claim(header.pad_key_ids, crypto.hop_key_bytes(n))
                pad, mac = material[:n], material[n:]
        except UnknownKeyIds as exc:
            raise RelayFailure(Reason.NOT_AUTHENTIC, f"node {self.node_id}: link key of this message "
                                                     f"unknown or already used: {exc}") from None
        except KeySourceError as exc:
            raise RelayFailure(Reason.UNREACHABLE,
                               f"node {self.node_id}: link key source failed: {exc}") from None
        if len(pad) != n or len(mac) != crypto.MAC_KEY_BYTES:
            raise RelayFailure(Reason.NOT_AUTHENTIC,
                               f"node {self.node_id}: link key IDs cover {len(pad)}+{len(mac)} "
                               f"bytes, message needs {n}+{crypto.MAC_KEY_BYTES}")
        try:
            share = crypto.open_sealed(header, msg.ciphertext, msg.tag, pad, mac)
            self._replay.accept(hop, header.seq)
        except crypto.ReplayError as exc:
            raise RelayFailure(Reason.DUPLICATE, f"node {self.node_id}: {exc}") from None
        except crypto.RelayCryptoError as exc:
            raise RelayFailure(Reason.NOT_AUTHENTIC, f"node {self.node_id}: {exc}") from None
        return self._forward_or_deliver(header, share, auth)

    def _forward_or_deliver(self, header: crypto.RelayHeader, share: bytes,
                            auth: Authorisation) -> Ack:
        if auth.next_hop:
            return self.sender.send(auth.next_hop, auth.next_hop_addr, path_id=header.path_id,
                                    key_id=header.key_id, key_ids=header.key_ids,
                                    size_bits=header.size_bits, src=header.src_node,
                                    dst=header.dst_node, share=share, index=header.share_index,
                                    count=header.share_count, level=header.security_level,
                                    initiator_sae=header.initiator_sae_id,
                                    targets=header.target_sae_ids, extensions=header.extensions)
        if header.dst_node != self.node_id:
            raise RelayFailure(Reason.DENIED, f"node {self.node_id} is the end of path "
                                              f"{header.path_id} but the message is for {header.dst_node}")
        return self._deliver(header, share, auth)

    def _check_saes(self, header: crypto.RelayHeader) -> None:
        if not header.target_sae_ids:
            raise RelayFailure(Reason.INVALID, "relay names no target SAE")
        if self.sae_node is None:
            return
        master = self.sae_node(header.initiator_sae_id)
        if master != header.src_node:
            raise RelayFailure(Reason.INVALID, f"master SAE {header.initiator_sae_id!r} is not "
                                               f"attached to node {header.src_node}")
        wrong = [t for t in header.target_sae_ids if self.sae_node(t) != self.node_id]
        if wrong:
            raise RelayFailure(Reason.INVALID,
                               f"target SAE(s) {wrong} are not attached to node {self.node_id}")

    def _deliver(self, header: crypto.RelayHeader, share: bytes, auth: Authorisation) -> Ack:
        level = header.security_level
        self._check_saes(header)
        ack = Ack(AckStatus.RELAYED, key_id=header.key_id)
        self._drop_stale_pending()
        with self._lock:
            pending = self.pending.setdefault(header.key_id, _Pending())
            if header.share_index in pending.shares:
                raise RelayFailure(Reason.DUPLICATE,
                                   f"share {header.share_index} of key {header.key_id} already here")
            pending.shares[header.share_index] = share
        ext = dict(header.extensions)
        if level in ("hybrid", "pqc") and hybrid.EXT_OFFER in ext:
            if self._identity is None:
                raise RelayFailure(Reason.UNMET, f"node {self.node_id} has no TLS identity for "
                                                 f"{level} keys")
            try:
                responder = hybrid.Responder(
                    self._identity, hybrid.unb64(ext[hybrid.EXT_OFFER], "hybrid offer"),
                    src_node=header.src_node, key_id=header.key_id, level=level,
                    now=_dt.datetime.now(_dt.timezone.utc))
            except hybrid.HybridError as exc:
                self._drop_pending(header.key_id)
                raise RelayFailure(Reason.NOT_AUTHENTIC,
                                   f"node {self.node_id}: {level} offer rejected: {exc}") from None
            with self._lock:
                pending.responder = responder
            ack.extensions[hybrid.EXT_ANSWER] = hybrid.b64(responder.answer)
        with self._lock:
            complete = (len(pending.shares) == header.share_count
                        and (level == "qkd" or pending.responder is not None))
            if complete:
                self.pending.pop(header.key_id, None)
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
            raise RelayFailure(Reason.DUPLICATE,
                               f"key {header.key_id} is already stored at {self.node_id}") from None
        except ValueError as exc:
            raise RelayFailure(Reason.INVALID, str(exc)) from None
        log.info("stored %d relayed key(s) %s from %s for %s (%s, %d share(s))", len(ids),
                 header.key_id, header.src_node, ",".join(header.target_sae_ids), level,
                 header.share_count)
        return ack

    def _drop_pending(self, key_id: str) -> None:
        with self._lock:
            self.pending.pop(key_id, None)

    def _drop_stale_pending(self) -> None:
        cutoff = time.monotonic() - PENDING_SHARES_TTL_S
        with self._lock:
            for key_id in [k for k, p in self.pending.items() if p.created < cutoff]:
                del self.pending[key_id]

    def handle_void(self, msg: VoidMessage, peer: str) -> Ack:
        """Forget ``msg.key_id`` here and pass the void on along the authorised path."""
        if msg.from_node != peer:
            raise RelayFailure(Reason.DENIED, f"void claims to come from {msg.from_node!r} but the "
                                              f"TLS peer is {peer!r}")
        auth = self._authz.get(msg.path_id)
        if auth is None or auth.prev_hop != peer:
            raise RelayFailure(Reason.DENIED, f"node {self.node_id}: no authorisation on path "
                                              f"{msg.path_id} from {peer}")
        if auth.next_hop:
            return self.sender.void(auth.next_hop, auth.next_hop_addr, VoidMessage(
                path_id=msg.path_id, key_id=msg.key_id, reason=msg.reason, from_node=self.node_id,
                key_ids=msg.key_ids))
        self._drop_pending(msg.key_id)
        ids = list(msg.key_ids) or [msg.key_id]
        present = any(self._store.peek(kid) is not None for kid in ids)
        self._store.discard(ids)
        log.info("voided key %s (%s)", msg.key_id, msg.reason)
        return Ack(AckStatus.VOIDED if present else AckStatus.KEY_NOT_PRESENT, key_id=msg.key_id,
                   message=msg.reason)
