"""One relay hop, both ends: sealing and sending toward a neighbour, receiving and checking from one.

:class:`HopSender` pads and MACs a share with fresh link key toward the next hop (the
source and every relay node send this way). :class:`HopReceiver` holds the relay-node
and destination roles: it checks the sender, its live authorisation from QuSeC, the
sequence number and the one-time MAC, then forwards through the sender, or, at the
destination, checks the SAEs, combines multipath shares, derives hybrid/pqc keys and
stores the key for the slave SAE. Every hop checks the message against its own
authorisation from QuSeC (path, previous hop, ends, share, SAEs, security level), so a
relay that rewrites what it forwards is refused by the next node; the destination
combines shares only when all of them name the same SAEs, level and keys, and a Void
removes only keys relayed over its path. Transport is injected (``send``: (peer, addr, message,
timeout) -> ack), so nothing here touches sockets.
"""
from __future__ import annotations

import datetime as _dt
import json
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from kms_agents import metrics
from kms_agents.keystore import DuplicateKey, KeyStore, StoredKey
from kms_agents.qkd_module import KeySourceError, UnknownKeyIds
from kms_agents.relay import attempts, crypto, hybrid, shares
from kms_agents.relay.authz import Authorisation, AuthTable, NotAuthorised, check_granted_for
from kms_agents.relay.messages import (EXT_DOMAINS, EXT_LEVEL, EXT_PATH, Ack, AckStatus, Reason, RelayFailure, RelayMessage,
                                       VoidMessage)

log = logging.getLogger(__name__)

PENDING_SHARES_TTL_S = 30.0
# A void can overtake its relay message (the message still queued at a node behind, the void
# passed on at once): the destination remembers voided key ids this long, and at most this
# many (oldest forgotten first), and refuses them if they arrive after all.
VOIDED_TTL_S = 60.0
VOIDED_MAX = 65536

Send = Callable[[str, str, RelayMessage, float], Ack]
VoidSend = Callable[[str, str, VoidMessage, float], Ack]


@dataclass(frozen=True)
class Sealed:
    """A hop message ready to go: its next hop, the budget in its header and when it was sealed."""
    peer: str
    addr: str
    msg: RelayMessage
    timeout: float
    at: float


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
             extensions: Sequence[tuple[str, str]], timeout: float | None = None) -> Ack:
        """Send one share (``index`` counts from 1) toward ``peer``; returns the chain's ack.

        ``timeout``: what this hop may take, the chain behind it included (the hop timeout
        when None); it travels in the header as the next node's budget."""
        return self.transmit(self.seal(
            peer, addr, path_id=path_id, key_id=key_id, key_ids=key_ids, size_bits=size_bits,
            src=src, dst=dst, share=share, index=index, count=count, level=level,
            initiator_sae=initiator_sae, targets=targets, extensions=extensions, timeout=timeout))

    def seal(self, peer: str, addr: str, *, path_id: str, key_id: str, key_ids: Sequence[str],
             size_bits: int, src: str, dst: str, share: bytes, index: int, count: int, level: str,
             initiator_sae: str, targets: Sequence[str],
             extensions: Sequence[tuple[str, str]], timeout: float | None = None) -> Sealed:
        """The hop message toward ``peer``, padded and MAC'd with link key taken for it (durable
        once :meth:`transmit` may send it: at once, or when the caller's deferred block ends)."""
        timeout = self.hop_timeout if timeout is None else min(timeout, self.hop_timeout)
        source = self._sources(peer)
        if source is None:
            raise RelayFailure(Reason.UNMET, f"node {self.node_id} has no QKD link to next hop {peer}")
        seq = self._seq.next(f"{peer}|{source.link_id}", self._clock())
        extensions = attempts.with_budget(tuple(extensions), timeout)
        if level == "pqc":
            # no link key: the hop is authenticated by mutual TLS, the key by the signed blobs
            header = crypto.RelayHeader(
                path_id=path_id, seq=seq, key_id=key_id, from_node=self.node_id, src_node=src,
                dst_node=dst, share_index=index, share_count=count, size_bits=size_bits,
                security_level=level, link_id=source.link_id, pad_key_ids=(), mac_key_ids=(),
                initiator_sae_id=initiator_sae, target_sae_ids=tuple(targets),
                extensions=extensions, key_ids=tuple(key_ids))
            return Sealed(peer, addr, RelayMessage(header), timeout, time.monotonic())
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
        return Sealed(peer, addr, RelayMessage(header, ciphertext, tag), timeout, time.monotonic())

    def transmit(self, sealed: Sealed) -> Ack:
        """Send a sealed hop; its call gets what is left of the sealed budget."""
        left = sealed.timeout - (time.monotonic() - sealed.at)
        return self._timed_send(sealed.peer, sealed.addr, sealed.msg, max(left, attempts.MIN_HOP_S))

    def _timed_send(self, peer: str, addr: str, msg: RelayMessage, timeout: float) -> Ack:
        """Send one hop; an acked hop's send-to-ack time goes to qusec_agent_relay_hop_seconds."""
        started = time.monotonic()
        ack = self._send(peer, addr, msg, timeout)
        metrics.hop_latency(time.monotonic() - started)
        return ack

    def void(self, peer: str, addr: str, msg: VoidMessage, timeout: float | None = None) -> Ack:
        return self._send_void(peer, addr, msg, self.hop_timeout if timeout is None else timeout)


@dataclass(frozen=True)
class _KeyFor:
    """What every share of one end-to-end key must agree on before the shares are combined."""

    src_node: str
    initiator_sae: str
    target_saes: tuple[str, ...]
    security_level: str
    size_bits: int
    share_count: int
    key_ids: tuple[str, ...]

    @classmethod
    def of(cls, header: crypto.RelayHeader) -> "_KeyFor":
        return cls(header.src_node, header.initiator_sae_id, tuple(sorted(header.target_sae_ids)),
                   header.security_level, header.size_bits, header.share_count, header.key_ids)


@dataclass
class _Pending:
    key_for: _KeyFor
    shares: dict[int, bytes] = field(default_factory=dict)
    paths: set[str] = field(default_factory=set)     # path ids the shares came over
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
        self._voided: OrderedDict[str, float] = OrderedDict()   # key id -> when voided (destination)
        # At an interworking KME (set by the agent; None: keys are never handed off here):
        # (handoff, initiator SAE, target SAEs, [(key id, key)], timeout s) -> the domains they
        # went on through (a list, for the ack's EXT_DOMAINS) once the next domain acknowledged
        # them relayed (RelayFailure otherwise); and (handoff, key ids) -> None to void keys handed off.
        self.handoff: Callable[..., list | None] | None = None
        self.handoff_void: Callable[..., None] | None = None
        self._lock = threading.Lock()

    def _authorised(self, header: crypto.RelayHeader, from_node: str) -> Authorisation:
        """This node's live authorisation for the message's path, hop, ends and share, checked at
        once (nothing is in flight: QuSeC answers the source only after every node on the path
        acknowledged its own)."""
        try:
            return self._authz.check(header.path_id, from_node=from_node, src_node=header.src_node,
                                     dst_node=header.dst_node, now=self._clock(),
                                     share_index=header.share_index, share_count=header.share_count)
        except NotAuthorised as exc:
            raise RelayFailure(Reason.DENIED, f"node {self.node_id}: {exc}", exc.check) from None

    def _granted_for(self, header: crypto.RelayHeader, auth: Authorisation) -> None:
        """The (authenticated) message's SAEs and level are those the path was granted for: a relay
        that rewrote them, sealing with its own valid link key, is refused here."""
        try:
            check_granted_for(auth, header.initiator_sae_id, header.target_sae_ids, header.security_level)
        except NotAuthorised as exc:
            raise RelayFailure(Reason.DENIED, f"node {self.node_id}: {exc}", exc.check) from None

    def handle_relay(self, msg: RelayMessage, peer: str) -> Ack:
        """Receive one hop from authenticated neighbour ``peer``; forward or deliver.

        Raises RelayFailure (the servicer turns it into a gRPC status); a refusal by one of
        this node's own checks is logged and counted (``event=refused server=relay``).
        """
        try:
            ack = self._handle_relay(msg, peer, time.monotonic())
        except RelayFailure as exc:
            metrics.relayed("hop", exc.reason)
            if exc.check:
                metrics.refused("relay", exc.check, exc.message, logger=log, caller=peer,
                                path=msg.header.path_id)
            raise
        except Exception:
            metrics.relayed("hop", Reason.INTERNAL)
            raise
        metrics.relayed("hop")
        return ack

    def _handle_relay(self, msg: RelayMessage, peer: str, arrived: float) -> Ack:
        header = msg.header
        if header.from_node != peer:
            raise RelayFailure(Reason.DENIED, f"message claims to come from {header.from_node!r} but "
                                              f"the TLS peer is {peer!r}", "wrong_sender")
        if header.dst_node == self.node_id and header.from_node == header.src_node == self.node_id:
            raise RelayFailure(Reason.INVALID, "relay to self", "invalid")
        auth = self._authorised(header, peer)
        hop = f"{peer}|{header.link_id}"
        try:
            self._replay.check(hop, header.seq)
        except crypto.ReplayError as exc:
            raise RelayFailure(Reason.DUPLICATE, f"node {self.node_id}: {exc}", "replay") from None
        source = self._link(header.link_id) if self._link else self._sources(peer)
        if source is None or source.link_id != header.link_id or source.peer_node != peer:
            raise RelayFailure(Reason.UNMET,
                               f"node {self.node_id} has no QKD link {header.link_id} to {peer}", "no_link")
        # The claim of this hop's link key and what follows it here (the take toward the next hop,
        # or the keys stored at the destination) are made durable together, in one commit shared
        # with the other hops in flight, before anything goes out: the message onward, the ack,
        # or a refusal (a failed MAC check's claim is kept, so each one-time key is tried once).
        with self._store.deferred():
            then = self._receive(msg, header, auth, source, hop, arrived)
        return then()

    def _receive(self, msg: RelayMessage, header: crypto.RelayHeader, auth: Authorisation,
                 source: object, hop: str, arrived: float) -> Callable[[], Ack]:
        """Claim, check, then seal onward or store; returns what is sent once that is durable."""
        if header.security_level == "pqc":
            if msg.ciphertext or msg.tag or header.pad_key_ids or header.mac_key_ids:
                raise RelayFailure(Reason.INVALID, "a pqc relay message carries no QKD key", "invalid")
            self._granted_for(header, auth)
            self._replay.accept(hop, header.seq)
            return self._forward_or_deliver(header, b"", auth, arrived)
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
                                                     f"unknown or already used: {exc}", "link_key") from None
        except KeySourceError as exc:
            raise RelayFailure(Reason.UNREACHABLE,
                               f"node {self.node_id}: link key source failed: {exc}") from None
        if len(pad) != n or len(mac) != crypto.MAC_KEY_BYTES:
            raise RelayFailure(Reason.NOT_AUTHENTIC,
                               f"node {self.node_id}: link key IDs cover {len(pad)}+{len(mac)} "
                               f"bytes, message needs {n}+{crypto.MAC_KEY_BYTES}", "link_key")
        try:
            share = crypto.open_sealed(header, msg.ciphertext, msg.tag, pad, mac)
            self._replay.accept(hop, header.seq)
        except crypto.ReplayError as exc:
            raise RelayFailure(Reason.DUPLICATE, f"node {self.node_id}: {exc}", "replay") from None
        except crypto.RelayCryptoError as exc:
            raise RelayFailure(Reason.NOT_AUTHENTIC, f"node {self.node_id}: {exc}", "mac") from None
        self._granted_for(header, auth)
        return self._forward_or_deliver(header, share, auth, arrived)

    def _forward_or_deliver(self, header: crypto.RelayHeader, share: bytes,
                            auth: Authorisation, arrived: float) -> Callable[[], Ack]:
        # What the previous hop allows this node, less the time spent here: the next hop gets
        # less still, so a stalled hop times out (and reconnects) before the nodes behind it.
        budget = attempts.budget_of(dict(header.extensions))
        left = attempts.forward_s(budget, time.monotonic() - arrived, self.sender.hop_timeout)
        if left < attempts.MIN_HOP_S:
            # the source has given this attempt up (or is about to): neither forward nor store
            raise RelayFailure(Reason.TIMEOUT, f"node {self.node_id}: the relay's deadline passed "
                                               f"before it could go on")
        if auth.next_hop:
            sealed = self.sender.seal(auth.next_hop, auth.next_hop_addr, path_id=header.path_id,
                                      key_id=header.key_id, key_ids=header.key_ids,
                                      size_bits=header.size_bits, src=header.src_node,
                                      dst=header.dst_node, share=share, index=header.share_index,
                                      count=header.share_count, level=header.security_level,
                                      initiator_sae=header.initiator_sae_id,
                                      targets=header.target_sae_ids, extensions=header.extensions,
                                      timeout=left)
            return lambda: self.sender.transmit(sealed)
        if header.dst_node != self.node_id:
            raise RelayFailure(Reason.DENIED, f"node {self.node_id} is the end of path "
                                              f"{header.path_id} but the message is for {header.dst_node}",
                               "wrong_nodes")
        return self._deliver(header, share, auth, left)

    def _check_saes(self, header: crypto.RelayHeader, auth: Authorisation) -> None:
        if not header.target_sae_ids:
            raise RelayFailure(Reason.INVALID, "relay names no target SAE", "wrong_saes")
        if self.sae_node is None:
            return
        master = self.sae_node(header.initiator_sae_id)
        # another domain's SAE, its key relayed on from an interworking KME: QuSeC's authorisation
        # says so (it grants that only from the KME of a site)
        if master != header.src_node and not (master is None and auth.foreign_src_sae):
            raise RelayFailure(Reason.INVALID, f"master SAE {header.initiator_sae_id!r} is not "
                                               f"attached to node {header.src_node}", "wrong_saes")
        wrong = [t for t in header.target_sae_ids if self.sae_node(t) != self.node_id]
        if wrong:
            raise RelayFailure(Reason.INVALID,
                               f"target SAE(s) {wrong} are not attached to node {self.node_id}", "wrong_saes")

    def _add_share(self, header: crypto.RelayHeader, share: bytes) -> _Pending:
        """Keep one share; every share of a key must name the same SAEs, level, sizes and key ids."""
        key_for = _KeyFor.of(header)
        self._drop_stale_pending()
        with self._lock:
            pending = self.pending.setdefault(header.key_id, _Pending(key_for))
            if pending.key_for != key_for:
                raise RelayFailure(Reason.INVALID,
                                   f"node {self.node_id}: share {header.share_index} of key {header.key_id} "
                                   f"(path {header.path_id}) names other SAEs, level, sizes or keys than "
                                   f"the share(s) already here: not combined", "share_mismatch")
            if header.share_index in pending.shares:
                raise RelayFailure(Reason.DUPLICATE,
                                   f"share {header.share_index} of key {header.key_id} already here", "replay")
            pending.shares[header.share_index] = share
            pending.paths.add(header.path_id)
        return pending

    def _deliver(self, header: crypto.RelayHeader, share: bytes, auth: Authorisation,
                 left: float | None = None) -> Callable[[], Ack]:
        """Keep a share, and with the last one store the key (durable when the caller's deferred
        block ends) or hand it off (after that); returns what answers the hop."""
        level = header.security_level
        if auth.handoff is None:
            self._check_saes(header, auth)
        elif level != "qkd":
            raise RelayFailure(Reason.UNMET, f"node {self.node_id}: keys are handed to another "
                                             f"domain at the qkd level only, not {level}", "wrong_level")
        ack = Ack(AckStatus.RELAYED, key_id=header.key_id)
        pending = self._add_share(header, share)
        ext = dict(header.extensions)
        if level in ("hybrid", "pqc") and hybrid.EXT_OFFER in ext:
            if self._identity is None:
                raise RelayFailure(Reason.UNMET, f"node {self.node_id} has no TLS identity for "
                                                 f"{level} keys")
            try:
                responder = hybrid.Responder(
                    self._identity, hybrid.unb64(ext[hybrid.EXT_OFFER], "hybrid offer"),
                    src_node=header.src_node, key_id=header.key_id, level=level,
                    now=_dt.datetime.now(_dt.timezone.utc), src_sae=header.initiator_sae_id,
                    dst_saes=header.target_sae_ids)
            except hybrid.HybridError as exc:
                self._drop_pending(header.key_id)
                raise RelayFailure(Reason.NOT_AUTHENTIC,
                                   f"node {self.node_id}: {level} offer rejected: {exc}", "hybrid") from None
            with self._lock:
                pending.responder = responder
            ack.extensions[hybrid.EXT_ANSWER] = hybrid.b64(responder.answer)
        with self._lock:
            # the last share's handler completes the key, once: two shares arriving together
            # both saw every share here and both stored it (DUPLICATE for the second path)
            complete = (len(pending.shares) == header.share_count
                        and (level == "qkd" or pending.responder is not None)
                        and self.pending.get(header.key_id) is pending)
            if complete:
                del self.pending[header.key_id]
        if not complete:
            return lambda: ack
        if level == "pqc":  # no QKD key: derive() only uses its length
            key = bytes(header.payload_bytes)
        else:
            key = shares.combine([pending.shares[i] for i in sorted(pending.shares)])
        path = ext.get(EXT_PATH, "").split(",") if ext.get(EXT_PATH) else []
        # a key that came in over a post-quantum link is told so by its source here: it is at
        # that level, whatever its hops inside this domain were (never a stronger one)
        told = ext.get(EXT_LEVEL) if ext.get(EXT_LEVEL) == "pqc" else level
        meta = {"qusec_route_type": "indirect", "qusec_security_level": told,
                "qusec_src_node": header.src_node, "qusec_path": path,
                "qusec_hops": max(0, len(path) - 2), "qusec_path_id": header.path_id,
                "qusec_path_ids": sorted(pending.paths), "qusec_shares": header.share_count}
        ids = header.key_ids or (header.key_id,)
        n = header.size_bits // 8
        materials = [key[i * n:(i + 1) * n] for i in range(len(ids))]
        if level in ("hybrid", "pqc"):
            materials = [pending.responder.derive(m, kid) for m, kid in zip(materials, ids)]
        if auth.handoff is not None:   # the exit KME: on to the next domain, never stored here
            keys = list(zip(ids, materials))
            return lambda: self._hand_off(header, auth, keys, ack, left)
        try:
            slaves = list(header.target_sae_ids)   # one list and one meta for the keys of a message
            with self._lock:   # a void holds it while it looks for the keys: stored or refused
                self._refuse_voided(ids)
                self._store.put([StoredKey(key_id=kid, master_sae=header.initiator_sae_id,
                                           slaves=slaves, material=m, meta=meta)
                                 for kid, m in zip(ids, materials)])
        except DuplicateKey:
            raise RelayFailure(Reason.DUPLICATE,
                               f"key {header.key_id} is already stored at {self.node_id}", "replay") from None
        except ValueError as exc:
            raise RelayFailure(Reason.INVALID, str(exc)) from None
        log.info("stored %d relayed key(s) %s from %s for %s (%s, %d share(s))", len(ids),
                 header.key_id, header.src_node, ",".join(header.target_sae_ids), level,
                 header.share_count)
        return lambda: ack

    def _hand_off(self, header: crypto.RelayHeader, auth: Authorisation,
                  keys: list[tuple[str, bytes]], ack: Ack, left: float | None) -> Ack:
        """Pass the keys to the next domain's KME (the handoff of this node's authorisation) and
        acknowledge the hop only once that domain acknowledged them relayed."""
        h = auth.handoff
        if self.handoff is None:
            raise RelayFailure(Reason.UNMET, f"node {self.node_id} hands no keys to other domains "
                                             f"(no ETSI GS QKD 020 configured)", "no_handoff")
        try:
            domains = self.handoff(h, header.initiator_sae_id, tuple(header.target_sae_ids), keys,
                                   left if left is not None else self.sender.hop_timeout)
        except RelayFailure:
            raise
        except Exception as exc:  # noqa: BLE001 - any failure of the crossing fails the relay
            raise RelayFailure(Reason.FAILED, f"node {self.node_id}: handoff over {h.crossing} to "
                                              f"{h.peer_domain}/{h.peer_kme} failed: {exc}") from None
        log.info("handed %d key(s) %s from %s for %s to %s/%s over %s", len(keys), header.key_id,
                 header.src_node, ",".join(header.target_sae_ids), h.peer_domain, h.peer_kme,
                 h.crossing)
        if domains:   # back to the source with the ack: the key_extension names them
            ack.extensions[EXT_DOMAINS] = json.dumps(domains)
        return ack

    def _refuse_voided(self, ids: Sequence[str]) -> None:
        """Refuse keys their source voided before they arrived (caller holds the lock)."""
        cutoff = time.monotonic() - VOIDED_TTL_S
        while self._voided and next(iter(self._voided.values())) < cutoff:
            self._voided.popitem(last=False)
        late = [kid for kid in ids if kid in self._voided]
        if late:
            raise RelayFailure(Reason.DENIED, f"node {self.node_id}: key {late[0]} was voided by its "
                                              "source before it arrived: not stored", "voided")

    def _remember_voided(self, ids: Sequence[str]) -> None:
        """Remember voided key ids (caller holds the lock)."""
        now = time.monotonic()
        for kid in ids:
            self._voided.pop(kid, None)
            self._voided[kid] = now
        while len(self._voided) > VOIDED_MAX:
            self._voided.popitem(last=False)

    def _drop_pending(self, key_id: str) -> None:
        with self._lock:
            self.pending.pop(key_id, None)

    def _drop_stale_pending(self) -> None:
        cutoff = time.monotonic() - PENDING_SHARES_TTL_S
        with self._lock:
            for key_id in [k for k, p in self.pending.items() if p.created < cutoff]:
                del self.pending[key_id]

    def handle_void(self, msg: VoidMessage, peer: str) -> Ack:
        """Forget ``msg.key_id`` here and pass the void on along the authorised path.

        Only a node on the path (its authorised previous hop here) voids, and the destination
        forgets only keys (and shares) that were relayed over that path.
        """
        try:
            return self._handle_void(msg, peer)
        except RelayFailure as exc:
            if exc.check:
                metrics.refused("relay", exc.check, exc.message, logger=log, caller=peer, path=msg.path_id)
            raise

    def _handle_void(self, msg: VoidMessage, peer: str) -> Ack:
        if msg.from_node != peer:
            raise RelayFailure(Reason.DENIED, f"void claims to come from {msg.from_node!r} but the "
                                              f"TLS peer is {peer!r}", "wrong_sender")
        auth = self._authz.get(msg.path_id)
        if auth is None or auth.prev_hop != peer:
            raise RelayFailure(Reason.DENIED, f"node {self.node_id}: no authorisation on path "
                                              f"{msg.path_id} from {peer}", "void_not_on_path")
        if auth.next_hop:
            return self.sender.void(auth.next_hop, auth.next_hop_addr, VoidMessage(
                path_id=msg.path_id, key_id=msg.key_id, reason=msg.reason, from_node=self.node_id,
                key_ids=msg.key_ids))
        with self._lock:
            pending = self.pending.get(msg.key_id)
            if pending is not None and msg.path_id in pending.paths:
                del self.pending[msg.key_id]
        ids = list(dict.fromkeys(msg.key_ids or (msg.key_id,)))
        if auth.handoff is not None:   # handed off, never stored here: void them over there
            if self.handoff_void is not None:
                self.handoff_void(auth.handoff, ids)
            log.info("voided key %s (%s) handed off to %s/%s", msg.key_id, msg.reason,
                     auth.handoff.peer_domain, auth.handoff.peer_kme)
            return Ack(AckStatus.VOIDED, key_id=msg.key_id, message=msg.reason)
        with self._lock, self._store.transaction():
            stored = {kid: self._store.peek(kid) for kid in ids}
            ours = [kid for kid, k in stored.items() if k is not None and msg.path_id in relayed_over(k.meta)]
            self._store.discard(ours)
            self._remember_voided([kid for kid, k in stored.items() if k is None])
        others = [kid for kid, k in stored.items() if k is not None and kid not in ours]
        if others:
            metrics.refused("relay", "void_not_on_path",
                            f"node {self.node_id}: void on path {msg.path_id} names {len(others)} key(s) "
                            "not relayed over it: kept", logger=log, caller=peer, path=msg.path_id)
        log.info("voided key %s (%s): %d of %d key(s) here", msg.key_id, msg.reason, len(ours), len(ids))
        return Ack(AckStatus.VOIDED if ours else AckStatus.KEY_NOT_PRESENT, key_id=msg.key_id,
                   message=msg.reason)


def relayed_over(meta: dict) -> set[str]:
    """The path ids a stored key came over (every share's, for a multipath key)."""
    return set(meta.get("qusec_path_ids") or ()) | ({meta["qusec_path_id"]} if meta.get("qusec_path_id") else set())
