"""Hybrid (QKD + ML-KEM-768) and PQC end-to-end keys, agreed between the two END vKMSs.

The source vKMS sends an ephemeral ML-KEM-768 encapsulation key signed with its
node TLS key (certificate included, chained to the network CA, identity
``urn:qusec:node:SOURCE``); the destination checks it, encapsulates, and answers with
the ciphertext signed with its own node key. Both signed messages name the master and
slave SAEs, so a relay that rewrites the target SAE of the message it forwards is
caught by the destination (and the source). Relays carry both blobs but cannot
replace them, so none of them learns the ML-KEM secret. The final key is HKDF-SHA256 over the relayed
QKD key and the ML-KEM secret ("hybrid"), or over the ML-KEM secret alone
("pqc", a policy-allowed fallback), bound to both signed messages. Pure: the
caller passes identities, keys and the time.
"""
from __future__ import annotations

import base64
import datetime as _dt
import hashlib
import struct
from collections.abc import Sequence

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.mlkem import MLKEM768PrivateKey, MLKEM768PublicKey
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from kms_agents.identity import IdentityError, NodeIdentity, sign, verify
from kms_agents.identity import check_peer_cert as _check_cert

__all__ = ["EXT_ANSWER", "EXT_OFFER", "LEVELS", "HybridError", "Initiator", "NodeIdentity", "Responder",
           "b64", "check_peer_cert", "respond", "unb64"]

LEVELS = ("qkd", "hybrid", "pqc")
EXT_OFFER = "qusec_hybrid_offer"    # relay request extension: base64 signed offer
EXT_ANSWER = "qusec_hybrid_answer"  # relay ack extension: base64 signed answer
_OFFER_TAG = b"qusec-hybrid-offer/2"    # /2: the offer and the answer sign the SAE ids
_ANSWER_TAG = b"qusec-hybrid-answer/2"
_KDF_SALT = b"qusec-hybrid-kdf/1"


class HybridError(Exception):
    """A hybrid offer/answer is malformed, badly signed, or from the wrong node or for other SAEs."""


def _lp(*parts: bytes) -> bytes:
    return b"".join(struct.pack(">I", len(p)) + p for p in parts)


def _unlp(data: bytes, count: int, what: str) -> list[bytes]:
    out, pos = [], 0
    for _ in range(count):
        if pos + 4 > len(data):
            raise HybridError(f"{what}: truncated")
        (n,) = struct.unpack_from(">I", data, pos)
        pos += 4
        if pos + n > len(data):
            raise HybridError(f"{what}: truncated")
        out.append(data[pos:pos + n])
        pos += n
    if pos != len(data):
        raise HybridError(f"{what}: {len(data) - pos} trailing bytes")
    return out


def _saes(src_sae: str, dst_saes: Sequence[str]) -> bytes:
    """The SAE ids a key is for, as one signed field (the slaves in sorted order)."""
    return _lp(src_sae.encode(), *(s.encode() for s in sorted(dst_saes)))


def _sign(key: object, data: bytes) -> bytes:
    try:
        return sign(key, data)
    except IdentityError as exc:
        raise HybridError(str(exc)) from None


def _verify(cert: x509.Certificate, sig: bytes, data: bytes) -> None:
    try:
        verify(cert, sig, data)
    except IdentityError as exc:
        raise HybridError(str(exc)) from None


def check_peer_cert(cert_der: bytes, ca: x509.Certificate, expected_node: str,
                    now: _dt.datetime) -> x509.Certificate:
    """Parse ``cert_der`` and check it was issued by ``ca``, is valid at ``now`` and is the
    certificate of node ``expected_node`` (its ``urn:qusec:node:`` identity, not its CN)."""
    try:
        return _check_cert(cert_der, ca, "node", expected_node, now)
    except IdentityError as exc:
        raise HybridError(str(exc)) from None


def _derive(level: str, qkd_key: bytes, secret: bytes, transcript: bytes, size: int,
            context: str = "") -> bytes:
    if level == "hybrid":
        ikm = qkd_key + secret
    elif level == "pqc":
        ikm = secret
    else:
        raise HybridError(f"security level {level!r} is not hybrid or pqc")
    # context (a key ID) separates the keys of a bulk message sharing one ML-KEM secret
    info = level.encode() + b"\x00" + hashlib.sha256(transcript).digest() + context.encode()
    return HKDF(hashes.SHA256(), size, _KDF_SALT, info).derive(ikm)


def _offer_body(level: str, src: str, dst: str, key_id: str, saes: bytes, ek: bytes,
                cert_der: bytes) -> bytes:
    return _lp(_OFFER_TAG, level.encode(), src.encode(), dst.encode(), key_id.encode(), saes, ek,
               cert_der)


class Initiator:
    """Source end: makes the signed offer, then finishes with the destination's answer."""

    def __init__(self, me: NodeIdentity, dst_node: str, key_id: str, level: str, *,
                 src_sae: str = "", dst_saes: Sequence[str] = ()) -> None:
        if level not in ("hybrid", "pqc"):
            raise HybridError(f"security level {level!r} is not hybrid or pqc")
        self.me, self.dst_node, self.key_id, self.level = me, dst_node, key_id, level
        self._saes = _saes(src_sae, dst_saes)
        self._kem = MLKEM768PrivateKey.generate()
        body = _offer_body(level, me.node_id, dst_node, key_id, self._saes,
                           self._kem.public_key().public_bytes_raw(), me.cert_der)
        self.offer = _lp(body, _sign(me.key, body))
        self._agreed: tuple[bytes, bytes] | None = None

    def finish(self, answer: bytes, qkd_key: bytes, now: _dt.datetime) -> bytes:
        """Check the answer and derive the key (one key per exchange)."""
        self.accept(answer, now)
        return self.derive(qkd_key)

    def derive(self, qkd_key: bytes, context: str = "") -> bytes:
        """A key from the agreed secret (after ``accept``); ``context`` names one of several."""
        if self._agreed is None:
            raise HybridError("no answer accepted yet")
        secret, transcript = self._agreed
        return _derive(self.level, qkd_key, secret, transcript, len(qkd_key), context)

    def accept(self, answer: bytes, now: _dt.datetime) -> None:
        """Check the answer (CA, identity = destination node, signature over our offer and the
        SAE ids) and decapsulate."""
        body, sig = _unlp(answer, 2, "hybrid answer")
        tag, offer_hash, dst, key_id, saes, ct, cert_der = _unlp(body, 7, "hybrid answer body")
        if tag != _ANSWER_TAG:
            raise HybridError("hybrid answer: wrong type tag")
        if offer_hash != hashlib.sha256(self.offer).digest():
            raise HybridError("hybrid answer does not answer our offer")
        if dst.decode() != self.dst_node or key_id.decode() != self.key_id:
            raise HybridError(f"hybrid answer is for {dst.decode()}/{key_id.decode()}, expected "
                              f"{self.dst_node}/{self.key_id}")
        if saes != self._saes:
            raise HybridError("hybrid answer is for other SAEs than our offer")
        cert = check_peer_cert(cert_der, self.me.ca, self.dst_node, now)
        _verify(cert, sig, body)
        try:
            secret = self._kem.decapsulate(ct)
        except ValueError as exc:
            raise HybridError(f"ML-KEM ciphertext rejected: {exc}") from None
        self._agreed = (secret, self.offer + body)


class Responder:
    """Destination end: checks the offer and encapsulates; ``answer`` goes back, ``derive`` makes the key.

    Split from the derivation so a multipath destination can answer when the first
    share arrives and derive once it has combined all of them.
    """

    def __init__(self, me: NodeIdentity, offer: bytes, *, src_node: str, key_id: str, level: str,
                 now: _dt.datetime, src_sae: str = "", dst_saes: Sequence[str] = ()) -> None:
        body, sig = _unlp(offer, 2, "hybrid offer")
        tag, o_level, src, dst, o_key_id, saes, ek, cert_der = _unlp(body, 8, "hybrid offer body")
        if tag != _OFFER_TAG:
            raise HybridError("hybrid offer: wrong type tag")
        got = (o_level.decode(), src.decode(), dst.decode(), o_key_id.decode())
        want = (level, src_node, me.node_id, key_id)
        if got != want:
            raise HybridError(f"hybrid offer binds level/src/dst/key {got}, relay message says {want}")
        if saes != _saes(src_sae, dst_saes):
            raise HybridError(f"hybrid offer is signed for other SAEs than the relay message names "
                              f"({src_sae} -> {','.join(sorted(dst_saes))})")
        cert = check_peer_cert(cert_der, me.ca, src_node, now)
        _verify(cert, sig, body)
        try:
            self._secret, ct = MLKEM768PublicKey.from_public_bytes(ek).encapsulate()
        except ValueError as exc:
            raise HybridError(f"ML-KEM encapsulation key rejected: {exc}") from None
        a_body = _lp(_ANSWER_TAG, hashlib.sha256(offer).digest(), me.node_id.encode(),
                     key_id.encode(), saes, ct, me.cert_der)
        self.level = level
        self.answer = _lp(a_body, _sign(me.key, a_body))
        self._transcript = offer + a_body

    def derive(self, qkd_key: bytes, context: str = "") -> bytes:
        """The end-to-end key (same length as the relayed QKD key); ``context`` as the initiator's."""
        return _derive(self.level, qkd_key, self._secret, self._transcript, len(qkd_key), context)


def respond(me: NodeIdentity, offer: bytes, *, src_node: str, key_id: str, level: str,
            qkd_key: bytes, now: _dt.datetime, src_sae: str = "",
            dst_saes: Sequence[str] = ()) -> tuple[bytes, bytes]:
    """Destination end in one step: check the offer, encapsulate; returns (signed answer, key)."""
    r = Responder(me, offer, src_node=src_node, key_id=key_id, level=level, now=now, src_sae=src_sae,
                  dst_saes=dst_saes)
    return r.answer, r.derive(qkd_key)


def b64(data: bytes) -> str:
    """Blob -> text for a proto ``map<string,string>`` extension."""
    return base64.b64encode(data).decode("ascii")


def unb64(text: str, what: str) -> bytes:
    """Text from an extension -> blob; HybridError naming ``what`` if it is not base64."""
    try:
        return base64.b64decode(text.encode("ascii"), validate=True)
    except (ValueError, UnicodeEncodeError):
        raise HybridError(f"{what} is not base64") from None
