"""A post-quantum link between two domains' KMEs: keys cross it under an ML-KEM-768 secret.

A topology's ``[[pqc_links]]`` link joins a node of one domain to a node of another over a WAN
with no QKD key (docs/interworking.md). A key handed off at its exit KME (the relay destination's
handoff step, kind ``pqc``) crosses it as one relay hop, in two KeyRelay calls to the peer's PQC
link server (its own listener: mutual TLS, the peer domain's CA trusted there and nowhere else):

1. **Agree.** A relay message without key material carrying this node's signed ML-KEM-768 offer
   (:mod:`kms_agents.relay.hybrid` at the ``pqc`` level: it signs both node ids, the batch id and
   the SAE ids, with this node's certificate). The peer checks the certificate against the
   link's CA and peer node, encapsulates, and answers signed in the ack.
2. **Pass.** The keys, one-time padded and MAC'd (:mod:`kms_agents.relay.crypto`), with pad and
   MAC key drawn by HKDF from that secret, which is used once. The peer opens them and relays
   them on into its domain under their own IDs (the interworking :class:`Crossing`'s onward
   step, as for keys that came in over ETSI GS QKD 020, telling the slave's node the key's level:
   ``pqc``). It acknowledges once they are stored at the slave SAE's node, and only then does the
   exit KME acknowledge its own relay hop.

A failure, or no answer within the relay's time, fails the relay; keys that may have crossed are
voided toward the peer (``Void``), which voids what it relayed on. Every caller must be the link's
configured peer: a certificate of that node issued by that link's CA (a certificate of another
domain, role or node is refused and counted, ``server="pqc"``). Nothing here keeps key material.
"""
from __future__ import annotations

import dataclasses
import datetime as _dt
import json
import logging
import threading
import time
import uuid
from collections.abc import Sequence
from typing import Any

import grpc
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from kms_agents import metrics, rpc
from kms_agents.channels import PeerChannels
from kms_agents.config import PqcConfig, PqcLinkPeer, TlsConfig
from kms_agents.etsi020.kme import Onward
from kms_agents.etsi020.model import ExtKey
from kms_agents.identity import IdentityError, NodeIdentity, check_peer_cert
from kms_agents.proto import relay_pb2, relay_pb2_grpc
from kms_agents.relay import crypto, hybrid, wire
from kms_agents.relay.messages import (EXT_DOMAINS, Ack, AckStatus, Reason, RelayFailure, RelayMessage,
                                       VoidMessage)
from kms_agents.relay.transport import RelayTransport

log = logging.getLogger(__name__)

KIND = "pqc"
LEVEL = "pqc"
_PAD_CONTEXT = "qusec-pqc-crossing/1"   # HKDF context of the pad and MAC key of a crossing


def domains_after(handoff: Any, text: str | None) -> list[dict]:
    """The domains keys passed over ``handoff`` went on through (the peer's ack extension): the
    first, the peer's own, named from the handoff QuSeC granted, not from what the peer says."""
    try:
        got = json.loads(text) if text else None
    except ValueError:
        got = None
    if not isinstance(got, list) or not got or not all(isinstance(d, dict) for d in got):
        return []
    first = dict(got[0], domain=handoff.peer_domain, crossing=handoff.crossing,
                 entry=handoff.peer_kme, level=LEVEL)
    return [first] + got[1:]


def pad_and_mac(agreed: Any, payload_bytes: int) -> tuple[bytes, bytes]:
    """The one-time pad and Poly1305 key of one crossing, from the agreed ML-KEM secret
    (``agreed``: the hybrid Initiator after ``accept``, or the Responder)."""
    material = agreed.derive(bytes(crypto.hop_key_bytes(payload_bytes)), _PAD_CONTEXT)
    return crypto.split_link_key(material, payload_bytes)


def header(link: str, seq: int, batch: str, src: str, dst: str, size_bits: int, initiator: str,
           targets: Sequence[str], key_ids: Sequence[str],
           extensions: tuple[tuple[str, str], ...] = ()) -> crypto.RelayHeader:
    """The header of a crossing's message (the MAC covers it): the link is its path and link."""
    return crypto.RelayHeader(path_id=link, seq=seq, key_id=batch, from_node=src, src_node=src,
                              dst_node=dst, share_index=1, share_count=1, size_bits=size_bits,
                              security_level=LEVEL, link_id=link, pad_key_ids=(), mac_key_ids=(),
                              initiator_sae_id=initiator, target_sae_ids=tuple(targets),
                              extensions=extensions, key_ids=tuple(key_ids))


@dataclasses.dataclass
class _Agreed:
    responder: hybrid.Responder
    binds: tuple               # what the pass must name alike: SAEs, key ids, size
    created: float


class PqcLink:
    """This node's ends of its PQC links: hand keys over them, and take the peers' keys in.

    ``onward``: the interworking Crossing that relays incoming keys on (and voids them)."""

    def __init__(self, cfg: PqcConfig, tls: TlsConfig, node_id: str, identity: NodeIdentity | None,
                 onward: Any, *, clock=time.monotonic) -> None:
        self.cfg, self.node_id, self.onward = cfg, node_id, onward
        self.links: dict[str, PqcLinkPeer] = {lk.id: lk for lk in cfg.links}
        self._cas = {lk.id: x509.load_pem_x509_certificate(open(lk.ca_cert, "rb").read())
                     for lk in cfg.links}
        # signed offers and answers are checked against the link's CA: the peer domain's
        self._ident = {lid: dataclasses.replace(identity, ca=ca) for lid, ca in self._cas.items()} \
            if identity is not None else {}
        self._transport = {lk.id: RelayTransport(PeerChannels(
            rpc.channel_credentials(lk.ca_cert, tls.cert, tls.key))) for lk in cfg.links}
        self._seq = crypto.SeqCounter()
        self._clock = clock
        self._pending: dict[tuple[str, str], _Agreed] = {}   # (link, batch) -> the agreed secret
        self._lock = threading.Lock()
        cas = b"".join(open(c, "rb").read() for c in dict.fromkeys(lk.ca_cert for lk in cfg.links))
        creds = grpc.ssl_server_credentials([(open(tls.key, "rb").read(), open(tls.cert, "rb").read())],
                                            root_certificates=cas, require_client_auth=True)
        self.server = rpc.Server(cfg.listen, creds, workers=8)
        self.server.add(relay_pb2_grpc.add_KeyRelayServicer_to_server, PqcLinkServicer(self),
                        relay_pb2.DESCRIPTOR.services_by_name["KeyRelay"])

    def start(self) -> None:
        self.server.start()

    def stop(self) -> None:
        self.server.draining()
        self.server.stop(grace=1.0)
        for t in self._transport.values():
            t.channels.close()

    def _link_to(self, handoff: Any) -> PqcLinkPeer:
        link = self.links.get(handoff.crossing)
        if link is None or link.peer != handoff.peer_kme or handoff.kind != KIND:
            raise RelayFailure(Reason.UNMET, f"node {self.node_id} has no PQC link {handoff.crossing} "
                               f"to {handoff.peer_kme}", "no_handoff")
        if link.id not in self._ident:
            raise RelayFailure(Reason.UNMET, f"node {self.node_id} has no TLS identity for ML-KEM")
        return link

    # -- leaving: the relay's handoff step ------------------------------------------------------
    def hand_off(self, handoff: Any, initiator: str, targets: Sequence[str],
                 keys: Sequence[tuple[str, bytes]], timeout_s: float) -> list[dict]:
        """Pass ``keys`` over the PQC link ``handoff.crossing``; returns once the peer relayed
        them on (the domains they went on through, as the peer's ack names them), else raises
        RelayFailure (and voids them toward the peer)."""
        link = self._link_to(handoff)
        deadline = time.monotonic() + timeout_s
        ids = [kid for kid, _ in keys]
        size_bits = 8 * len(keys[0][1])
        batch = ids[0] if len(ids) == 1 else str(uuid.uuid4())
        init = hybrid.Initiator(self._ident[link.id], link.peer, batch, LEVEL, src_sae=initiator,
                                dst_saes=targets)

        def hdr(extensions=()):
            return header(link.id, self._seq.next(link.id, time.time()), batch, self.node_id,
                          link.peer, size_bits, initiator, targets, ids, extensions)
        transport = self._transport[link.id]
        ack = transport.relay(link.peer, link.addr, RelayMessage(hdr(((hybrid.EXT_OFFER, hybrid.b64(init.offer)),))),
                              max(0.05, deadline - time.monotonic()))
        try:
            init.accept(hybrid.unb64(ack.extensions.get(hybrid.EXT_ANSWER, ""), "ML-KEM answer"),
                        _dt.datetime.now(_dt.timezone.utc))
        except hybrid.HybridError as exc:
            raise RelayFailure(Reason.NOT_AUTHENTIC, f"PQC link {link.id}: the answer of {link.peer} "
                               f"rejected: {exc}") from None
        h = hdr()
        pad, mac = pad_and_mac(init, h.payload_bytes)
        ciphertext, tag = crypto.seal(h, b"".join(m for _, m in keys), pad, mac)
        try:
            ack = transport.relay(link.peer, link.addr, RelayMessage(h, ciphertext, tag),
                                  max(0.05, deadline - time.monotonic()))
        except RelayFailure as exc:
            # the peer may hold them (or have relayed them on): void them there
            self._void(link, batch, ids, f"not acknowledged: {exc.message}")
            raise RelayFailure(exc.reason, f"PQC link {link.id} to {link.peer} of "
                               f"{handoff.peer_domain}: {exc.message}") from None
        if ack.status is not AckStatus.RELAYED:
            self._void(link, batch, ids, f"acknowledged {ack.status.name}")
            raise RelayFailure(Reason.FAILED, f"PQC link {link.id}: {link.peer} acknowledged "
                               f"{ack.status.name}, not relayed: {ack.message}")
        return domains_after(handoff, ack.extensions.get(EXT_DOMAINS))

    def void(self, handoff: Any, key_ids: Sequence[str]) -> None:
        """The relay's void reached this exit KME: void the keys passed to the peer too."""
        link = self._link_to(handoff)
        ids = list(key_ids)
        self._void(link, ids[0] if len(ids) == 1 else str(uuid.uuid4()), ids, "voided by the source")

    def _void(self, link: PqcLinkPeer, batch: str, ids: list[str], reason: str) -> None:
        try:
            self._transport[link.id].void(link.peer, link.addr, VoidMessage(
                path_id=link.id, key_id=batch, reason=reason[:200], from_node=self.node_id,
                key_ids=tuple(ids) if len(ids) > 1 else ()), self.cfg.call_timeout_s)
        except RelayFailure as exc:
            log.warning("pqc: void of %d key(s) toward %s over %s failed: %s", len(ids), link.peer,
                        link.id, exc.message)

    # -- coming in: the PQC link server ---------------------------------------------------------
    def caller(self, context: Any, link_id: str) -> PqcLinkPeer:
        """The link ``link_id`` if the verified client certificate is its peer's: that node,
        issued by that link's CA (else rpc.Abort, logged and counted)."""
        pem = rpc.peer_certificate(context)
        link = self.links.get(link_id)
        if link is None:
            metrics.refused("pqc", "no_link", f"no PQC link {link_id!r} here", logger=log)
            raise rpc.Abort(grpc.StatusCode.PERMISSION_DENIED, f"node {self.node_id} has no PQC "
                            f"link {link_id!r}")
        try:
            if not pem:
                raise IdentityError("no client certificate")
            der = x509.load_pem_x509_certificate(pem).public_bytes(serialization.Encoding.DER)
            check_peer_cert(der, self._cas[link.id], "node", link.peer, _dt.datetime.now(_dt.timezone.utc))
        except (IdentityError, ValueError) as exc:
            message = f"PQC link {link.id} takes only node {link.peer} of its CA: {exc}"
            metrics.refused("pqc", "wrong_peer", message, logger=log, link=link.id)
            raise rpc.Abort(grpc.StatusCode.PERMISSION_DENIED, message) from None
        return link

    def receive(self, msg: RelayMessage, link: PqcLinkPeer) -> Ack:
        """An agree or a pass from the link's peer."""
        h = msg.header
        if (h.from_node, h.src_node, h.dst_node, h.path_id, h.security_level, h.share_count) != \
                (link.peer, link.peer, self.node_id, link.id, LEVEL, 1) or h.pad_key_ids or h.mac_key_ids:
            raise RelayFailure(Reason.INVALID, f"PQC link {link.id}: a message must go from "
                               f"{link.peer} to {self.node_id}, level pqc, one share, no link key")
        binds = (h.initiator_sae_id, h.target_sae_ids, h.key_ids, h.size_bits)
        if not msg.ciphertext:
            return self._agree(h, link, binds)
        with self._lock:
            agreed = self._pending.pop((link.id, h.key_id), None)
        if agreed is None or agreed.binds != binds:
            raise RelayFailure(Reason.NOT_AUTHENTIC, f"PQC link {link.id}: no agreed secret for "
                               f"batch {h.key_id} and these SAEs and keys")
        pad, mac = pad_and_mac(agreed.responder, h.payload_bytes)
        try:
            material = crypto.open_sealed(h, msg.ciphertext, msg.tag, pad, mac)
        except crypto.RelayCryptoError as exc:
            raise RelayFailure(Reason.NOT_AUTHENTIC, f"PQC link {link.id}: {exc}") from None
        ids = h.key_ids or (h.key_id,)
        n = h.size_bits // 8
        keys = tuple(ExtKey(kid, material[i * n:(i + 1) * n]) for i, kid in enumerate(ids))
        ext = self.onward.onward(Onward(link.peer, h.initiator_sae_id, tuple(h.target_sae_ids), keys),
                                 level=LEVEL) or {}
        log.info("pqc: %d key(s) %s from %s over %s relayed on for %s", len(ids), h.key_id, link.peer,
                 link.id, ",".join(h.target_sae_ids))
        # the onward step's ack extension (one entry): this domain's segment and those beyond it
        domains = next((v for v in ext.values() if isinstance(v, list)), None) if isinstance(ext, dict) else None
        return Ack(AckStatus.RELAYED, key_id=h.key_id,
                   extensions={EXT_DOMAINS: json.dumps(domains)} if domains else {})

    def _agree(self, h: crypto.RelayHeader, link: PqcLinkPeer, binds: tuple) -> Ack:
        offer = dict(h.extensions).get(hybrid.EXT_OFFER)
        if not offer or not h.target_sae_ids:
            raise RelayFailure(Reason.INVALID, f"PQC link {link.id}: an agree carries an ML-KEM "
                               f"offer and names the SAEs")
        try:
            responder = hybrid.Responder(
                self._ident[link.id], hybrid.unb64(offer, "ML-KEM offer"), src_node=link.peer,
                key_id=h.key_id, level=LEVEL, now=_dt.datetime.now(_dt.timezone.utc),
                src_sae=h.initiator_sae_id, dst_saes=h.target_sae_ids)
        except (hybrid.HybridError, KeyError) as exc:
            metrics.refused("pqc", "offer", f"PQC link {link.id}: offer rejected: {exc}", logger=log,
                            link=link.id)
            raise RelayFailure(Reason.NOT_AUTHENTIC, f"PQC link {link.id}: offer rejected: {exc}") from None
        now = self._clock()
        with self._lock:
            for k in [k for k, a in self._pending.items() if a.created < now - self.cfg.pending_s]:
                del self._pending[k]
            if sum(1 for k in self._pending if k[0] == link.id) >= self.cfg.max_pending_per_peer:
                raise RelayFailure(Reason.NO_KEY, f"PQC link {link.id}: {self.cfg.max_pending_per_peer} "
                                   f"agreed secrets already wait for their keys")
            self._pending[(link.id, h.key_id)] = _Agreed(responder, binds, now)
        return Ack(AckStatus.RELAYED, key_id=h.key_id, message="agreed",
                   extensions={hybrid.EXT_ANSWER: hybrid.b64(responder.answer)})

    def voided(self, msg: VoidMessage, link: PqcLinkPeer) -> Ack:
        """The peer voids keys it passed: those relayed on are voided along their paths too."""
        if msg.from_node != link.peer or msg.path_id != link.id:
            raise RelayFailure(Reason.INVALID, f"PQC link {link.id}: a void from {link.peer} names "
                               f"the link as its path")
        ids = list(dict.fromkeys(msg.key_ids or (msg.key_id,)))
        with self._lock:
            self._pending.pop((link.id, msg.key_id), None)
        self.onward.voided(link.peer, ids)
        return Ack(AckStatus.VOIDED, key_id=msg.key_id, message=msg.reason)


def _status(exc: Exception) -> tuple[grpc.StatusCode, str]:
    if isinstance(exc, rpc.Abort):
        return exc.code, exc.message
    if isinstance(exc, RelayFailure):
        log.warning("pqc: refused: %s: %s", exc.reason.value, exc.message)
        return wire.status_of(exc.reason), exc.message
    log.exception("pqc: request failed")
    return grpc.StatusCode.INTERNAL, f"PQC link: {exc}"


class PqcLinkServicer(relay_pb2_grpc.KeyRelayServicer):
    """KeyRelay on the PQC link server: the caller is its link's peer (by certificate and CA)."""

    def __init__(self, link: PqcLink) -> None:
        self.link = link

    def Relay(self, request: relay_pb2.RelayRequest, context: Any) -> relay_pb2.RelayAck:
        try:
            link = self.link.caller(context, request.link_id)
            return wire.ack_to_proto(self.link.receive(wire.message_of(request), link))
        except Exception as exc:  # noqa: BLE001 - every failure is a status
            context.abort(*_status(exc))

    def Void(self, request: relay_pb2.VoidRequest, context: Any) -> relay_pb2.RelayAck:
        try:
            link = self.link.caller(context, request.path_id)
            return wire.ack_to_proto(self.link.voided(wire.void_of(request), link))
        except Exception as exc:  # noqa: BLE001 - every failure is a status
            context.abort(*_status(exc))


def handoffs(crossing: Any, pqc: PqcLink | None):
    """The relay receiver's ``handoff`` and ``handoff_void`` hooks: by the crossing's kind, over
    ETSI GS QKD 020 (``crossing``) or a PQC link (``pqc``)."""
    def hand_off(h: Any, *args: Any) -> None:
        if h.kind == KIND:
            if pqc is None:
                raise RelayFailure(Reason.UNMET, f"no PQC link {h.crossing} configured here", "no_handoff")
            return pqc.hand_off(h, *args)
        return crossing.hand_off(h, *args)

    def void(h: Any, key_ids: Sequence[str]) -> None:
        if h.kind == KIND:
            if pqc is not None:
                pqc.void(h, key_ids)
            return
        crossing.void(h, key_ids)
    return hand_off, void
