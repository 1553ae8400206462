"""Hybrid (QKD + ML-KEM-768) and PQC end-to-end keys, agreed between the two END vKMSs.

The source vKMS sends an ephemeral ML-KEM-768 encapsulation key signed with its
node TLS key (certificate included, chained to the network CA, CN = source node);
the destination checks it, encapsulates, and answers with the ciphertext signed
with its own node key. Relays carry both blobs but cannot replace them, so none
of them learns the ML-KEM secret. The final key is HKDF-SHA256 over the relayed
QKD key and the ML-KEM secret ("hybrid"), or over the ML-KEM secret alone
("pqc", a policy-allowed fallback), bound to both signed messages. Pure: the
caller passes identities, keys and the time.
"""
from __future__ import annotations

import base64
import datetime as _dt
import hashlib
import struct
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.mlkem import MLKEM768PrivateKey, MLKEM768PublicKey
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.x509.oid import NameOID

LEVELS = ("qkd", "hybrid", "pqc")
EXT_OFFER = "qusec_hybrid_offer"    # relay request extension: base64 signed offer
EXT_ANSWER = "qusec_hybrid_answer"  # relay ack extension: base64 signed answer
_OFFER_TAG = b"qusec-hybrid-offer/1"
_ANSWER_TAG = b"qusec-hybrid-answer/1"
_KDF_SALT = b"qusec-hybrid-kdf/1"


class HybridError(Exception):
    """A hybrid offer/answer is malformed, badly signed, or from the wrong node."""


@dataclass(frozen=True)
class NodeIdentity:
    """A node's TLS identity as used for signing hybrid blobs, and the CA that checks peers."""

    node_id: str
    cert: x509.Certificate
    key: object  # a private key: EC, RSA or Ed25519
    ca: x509.Certificate

    @classmethod
    def load(cls, node_id: str, cert: str | Path, key: str | Path, ca: str | Path) -> "NodeIdentity":
        """Read PEM files (node cert, node key, CA cert)."""
        return cls(node_id=node_id,
                   cert=x509.load_pem_x509_certificate(Path(cert).read_bytes()),
                   key=serialization.load_pem_private_key(Path(key).read_bytes(), None),
                   ca=x509.load_pem_x509_certificate(Path(ca).read_bytes()))


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


def _sign(key: object, data: bytes) -> bytes:
    if isinstance(key, ec.EllipticCurvePrivateKey):
        return key.sign(data, ec.ECDSA(hashes.SHA256()))
    if isinstance(key, rsa.RSAPrivateKey):
        return key.sign(data, padding.PSS(padding.MGF1(hashes.SHA256()), padding.PSS.MAX_LENGTH),
                        hashes.SHA256())
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return key.sign(data)
    raise HybridError(f"unsupported node key type {type(key).__name__}")


def _verify(cert: x509.Certificate, sig: bytes, data: bytes) -> None:
    pub = cert.public_key()
    try:
        if isinstance(pub, ec.EllipticCurvePublicKey):
            pub.verify(sig, data, ec.ECDSA(hashes.SHA256()))
        elif isinstance(pub, rsa.RSAPublicKey):
            pub.verify(sig, data, padding.PSS(padding.MGF1(hashes.SHA256()),
                                              padding.PSS.MAX_LENGTH), hashes.SHA256())
        elif isinstance(pub, ed25519.Ed25519PublicKey):
            pub.verify(sig, data)
        else:
            raise HybridError(f"unsupported peer key type {type(pub).__name__}")
    except InvalidSignature:
        raise HybridError("signature does not verify (blob altered in transit)") from None


def check_peer_cert(cert_der: bytes, ca: x509.Certificate, expected_cn: str,
                    now: _dt.datetime) -> x509.Certificate:
    """Parse ``cert_der`` and check it was issued by ``ca``, is valid at ``now`` and names the node."""
    try:
        cert = x509.load_der_x509_certificate(cert_der)
    except ValueError as exc:
        raise HybridError(f"peer certificate unreadable: {exc}") from None
    try:
        cert.verify_directly_issued_by(ca)
    except (ValueError, TypeError, InvalidSignature):
        raise HybridError("peer certificate is not issued by the network CA") from None
    if not (cert.not_valid_before_utc <= now <= cert.not_valid_after_utc):
        raise HybridError(f"peer certificate not valid at {now.isoformat()}")
    cns = [a.value for a in cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)]
    if cns != [expected_cn]:
        raise HybridError(f"peer certificate CN {cns} is not node {expected_cn!r}")
    return cert


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


def _offer_body(level: str, src: str, dst: str, key_id: str, ek: bytes, cert_der: bytes) -> bytes:
    return _lp(_OFFER_TAG, level.encode(), src.encode(), dst.encode(), key_id.encode(), ek,
               cert_der)


class Initiator:
    """Source end: makes the signed offer, then finishes with the destination's answer."""

    def __init__(self, me: NodeIdentity, dst_node: str, key_id: str, level: str) -> None:
        if level not in ("hybrid", "pqc"):
            raise HybridError(f"security level {level!r} is not hybrid or pqc")
        self.me, self.dst_node, self.key_id, self.level = me, dst_node, key_id, level
        self._kem = MLKEM768PrivateKey.generate()
        body = _offer_body(level, me.node_id, dst_node, key_id, self._kem.public_key().public_bytes_raw(),
                           me.cert.public_bytes(serialization.Encoding.DER))
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
        """Check the answer (CA, CN = destination, signature over our offer) and decapsulate."""
        body, sig = _unlp(answer, 2, "hybrid answer")
        tag, offer_hash, dst, key_id, ct, cert_der = _unlp(body, 6, "hybrid answer body")
        if tag != _ANSWER_TAG:
            raise HybridError("hybrid answer: wrong type tag")
        if offer_hash != hashlib.sha256(self.offer).digest():
            raise HybridError("hybrid answer does not answer our offer")
        if dst.decode() != self.dst_node or key_id.decode() != self.key_id:
            raise HybridError(f"hybrid answer is for {dst.decode()}/{key_id.decode()}, expected "
                              f"{self.dst_node}/{self.key_id}")
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
                 now: _dt.datetime) -> None:
        body, sig = _unlp(offer, 2, "hybrid offer")
        tag, o_level, src, dst, o_key_id, ek, cert_der = _unlp(body, 7, "hybrid offer body")
        if tag != _OFFER_TAG:
            raise HybridError("hybrid offer: wrong type tag")
        got = (o_level.decode(), src.decode(), dst.decode(), o_key_id.decode())
        want = (level, src_node, me.node_id, key_id)
        if got != want:
            raise HybridError(f"hybrid offer binds level/src/dst/key {got}, relay message says {want}")
        cert = check_peer_cert(cert_der, me.ca, src_node, now)
        _verify(cert, sig, body)
        try:
            self._secret, ct = MLKEM768PublicKey.from_public_bytes(ek).encapsulate()
        except ValueError as exc:
            raise HybridError(f"ML-KEM encapsulation key rejected: {exc}") from None
        a_body = _lp(_ANSWER_TAG, hashlib.sha256(offer).digest(), me.node_id.encode(),
                     key_id.encode(), ct, me.cert.public_bytes(serialization.Encoding.DER))
        self.level = level
        self.answer = _lp(a_body, _sign(me.key, a_body))
        self._transcript = offer + a_body

    def derive(self, qkd_key: bytes, context: str = "") -> bytes:
        """The end-to-end key (same length as the relayed QKD key); ``context`` as the initiator's."""
        return _derive(self.level, qkd_key, self._secret, self._transcript, len(qkd_key), context)


def respond(me: NodeIdentity, offer: bytes, *, src_node: str, key_id: str, level: str,
            qkd_key: bytes, now: _dt.datetime) -> tuple[bytes, bytes]:
    """Destination end in one step: check the offer, encapsulate; returns (signed answer, key)."""
    r = Responder(me, offer, src_node=src_node, key_id=key_id, level=level, now=now)
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
