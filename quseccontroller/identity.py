"""Who a verified peer certificate names: ``urn:qusec:ROLE:NAME`` and its IP addresses (no grpc).

Every certificate of a QuSeC network carries exactly one URI SAN ``urn:qusec:ROLE:NAME``
(ROLE: node, sae, controller, operator or switch); its IP SANs are the addresses its holder
listens on. A certificate without exactly one such URI names nobody. The gateway reads the
certificate of a gRPC or HTTPS caller (``gateway/rpc.py``), the os-ken app that of a switch's
OpenFlow TLS connection; both parse it here, once per distinct certificate.
"""
from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

URI_PREFIX = "urn:qusec:"
NODE, SAE, CONTROLLER, OPERATOR, SWITCH = "node", "sae", "controller", "operator", "switch"
ROLES = (NODE, SAE, CONTROLLER, OPERATOR, SWITCH)


@dataclass(frozen=True)
class Identity:
    """The holder of a verified certificate: its role, its name, the IP addresses it names."""
    role: str
    name: str
    addresses: tuple[str, ...] = ()

    def __str__(self) -> str:
        return f"{self.role}:{self.name}"

    def has_address(self, host: str) -> bool:
        """Whether ``host`` (an IP literal) is one of the certificate's IP addresses."""
        try:
            ip = ipaddress.ip_address(host.strip("[]"))
        except ValueError:
            return False
        return str(ip) in self.addresses


class NoIdentity(ValueError):
    """A certificate that names no QuSeC identity (the message says why)."""


@lru_cache(maxsize=16384)   # more than a QuSeC holds streams (max_streams): a Connect or path request parses none
def _parse(der: bytes) -> Identity:
    cert = x509.load_der_x509_certificate(der)
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        raise NoIdentity("the certificate has no subject alternative names") from None
    uris = [u for u in san.get_values_for_type(x509.UniformResourceIdentifier)
            if u.startswith(URI_PREFIX)]
    if len(uris) != 1:
        raise NoIdentity(f"the certificate carries {len(uris)} {URI_PREFIX}ROLE:NAME URIs, "
                         "not exactly one")
    role, sep, name = uris[0][len(URI_PREFIX):].partition(":")
    if not sep or role not in ROLES or not name:
        raise NoIdentity(f"{uris[0]!r} is not {URI_PREFIX}ROLE:NAME with ROLE one of "
                         f"{', '.join(ROLES)}")
    addresses = tuple(str(ip) for ip in san.get_values_for_type(x509.IPAddress))
    return Identity(role, name, addresses)


def from_der(der: bytes) -> Identity:
    """The identity a DER certificate names; NoIdentity when it names none."""
    try:
        return _parse(bytes(der))
    except NoIdentity:
        raise
    except ValueError as exc:
        raise NoIdentity(f"unreadable certificate: {exc}") from None


@lru_cache(maxsize=16384)   # more than a QuSeC holds streams (max_streams): a Connect or path request parses none
def _pem_to_der(pem: bytes) -> bytes:
    return x509.load_pem_x509_certificate(pem).public_bytes(Encoding.DER)


def from_pem(pem: bytes) -> Identity:
    """The identity a PEM certificate names; NoIdentity when it names none."""
    try:
        der = _pem_to_der(bytes(pem))
    except ValueError as exc:
        raise NoIdentity(f"unreadable certificate: {exc}") from None
    return from_der(der)


def of_tls_socket(sock: Any) -> Identity:
    """The identity of the verified client certificate of a server-side TLS socket
    (``ssl.SSLSocket`` or eventlet's green one); NoIdentity without a certificate."""
    getpeercert = getattr(sock, "getpeercert", None)
    if getpeercert is None:
        raise NoIdentity("the connection is not TLS")
    der = getpeercert(binary_form=True)
    if not der:
        raise NoIdentity("the peer presented no certificate")
    return from_der(der)
