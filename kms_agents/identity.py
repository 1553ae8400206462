"""Who a certificate names: ``urn:qusec:ROLE:NAME`` identities, checks of peer certificates, node signatures.

Every certificate of a QuSeC network carries exactly one URI SAN ``urn:qusec:ROLE:NAME``
(ROLE: node, sae, controller, operator, switch); :func:`identity_of` reads it (cached by
certificate bytes). A certificate without exactly one such URI names nobody: servers treat
its holder as unauthenticated. :class:`NodeIdentity` is this node's own certificate and key,
which sign what must be shown to come from this node across other nodes (hybrid offers and
answers, key-stream events relayed by neighbours). Pure: no sockets; time is passed in.
"""
from __future__ import annotations

import datetime as _dt
import functools
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa

ROLES = ("node", "sae", "controller", "operator", "switch")
URI_PREFIX = "urn:qusec:"


class IdentityError(Exception):
    """A peer certificate or signature that does not prove what it is meant to."""


@dataclass(frozen=True)
class Identity:
    """What a verified certificate names: its role, its name, the IP addresses it carries."""

    role: str
    name: str
    addresses: tuple[str, ...] = ()

    def __str__(self) -> str:
        return f"{self.role}:{self.name}"


def _load(data: bytes) -> x509.Certificate:
    if data.lstrip().startswith(b"-----BEGIN"):
        return x509.load_pem_x509_certificate(data)
    return x509.load_der_x509_certificate(data)


@functools.lru_cache(maxsize=1024)
def identity_of(cert: bytes) -> Identity | None:
    """The identity a certificate (PEM or DER bytes) names, or None without exactly one
    ``urn:qusec:ROLE:NAME`` URI of a known role."""
    try:
        parsed = _load(bytes(cert))
        san = parsed.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except (ValueError, x509.ExtensionNotFound):
        return None
    uris = [u for u in san.get_values_for_type(x509.UniformResourceIdentifier) if u.startswith(URI_PREFIX)]
    if len(uris) != 1:
        return None
    role, sep, name = uris[0][len(URI_PREFIX):].partition(":")
    if role not in ROLES or not sep or not name:
        return None
    return Identity(role, name, tuple(str(ip) for ip in san.get_values_for_type(x509.IPAddress)))


# -- this node's signing identity --------------------------------------------------------------
@dataclass(frozen=True)
class NodeIdentity:
    """This node's certificate and key (for signing), and the network CA that checks peers."""

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

    @property
    def cert_der(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.DER)

    def sign(self, data: bytes) -> bytes:
        return sign(self.key, data)


def sign(key: object, data: bytes) -> bytes:
    """Sign ``data`` with a node key (ECDSA/SHA-256, RSA-PSS/SHA-256 or Ed25519)."""
    if isinstance(key, ec.EllipticCurvePrivateKey):
        return key.sign(data, ec.ECDSA(hashes.SHA256()))
    if isinstance(key, rsa.RSAPrivateKey):
        return key.sign(data, padding.PSS(padding.MGF1(hashes.SHA256()), padding.PSS.MAX_LENGTH),
                        hashes.SHA256())
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return key.sign(data)
    raise IdentityError(f"unsupported node key type {type(key).__name__}")


def verify(cert: x509.Certificate, sig: bytes, data: bytes) -> None:
    """Raise IdentityError unless ``sig`` is the certificate's key's signature over ``data``."""
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
            raise IdentityError(f"unsupported peer key type {type(pub).__name__}")
    except InvalidSignature:
        raise IdentityError("signature does not verify (altered in transit)") from None


def check_peer_cert(cert_der: bytes, ca: x509.Certificate, role: str, name: str,
                    now: _dt.datetime) -> x509.Certificate:
    """The certificate ``cert_der``, checked: issued by ``ca``, valid at ``now``, naming ``role:name``."""
    try:
        cert = x509.load_der_x509_certificate(cert_der)
    except ValueError as exc:
        raise IdentityError(f"peer certificate unreadable: {exc}") from None
    try:
        cert.verify_directly_issued_by(ca)
    except (ValueError, TypeError, InvalidSignature):
        raise IdentityError("peer certificate is not issued by the network CA") from None
    if not (cert.not_valid_before_utc <= now <= cert.not_valid_after_utc):
        raise IdentityError(f"peer certificate not valid at {now.isoformat()}")
    ident = identity_of(cert_der)
    if ident is None or (ident.role, ident.name) != (role, name):
        raise IdentityError(f"peer certificate names {ident or 'no urn:qusec identity'}, "
                            f"not {role}:{name}")
    return cert
