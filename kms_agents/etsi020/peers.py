"""Which configured peer KME a verified certificate belongs to (pure: certificate bytes in).

A QuSeC node's certificate names it in its ``urn:qusec:node:NAME`` URI; a third-party KME is
named by a configured URI SAN, DNS SAN or subject CN. A certificate carrying a ``urn:qusec:``
identity of another role (an SAE's, QuSeC's, an operator's) is never a KME, whatever else it names.
"""
from __future__ import annotations

from collections.abc import Sequence

from cryptography import x509
from cryptography.x509.oid import NameOID

from kms_agents.config import Etsi020Peer
from kms_agents.identity import URI_PREFIX, identity_of


class NotAPeer(Exception):
    """The certificate is no configured peer KME's; ``reason`` is a fixed code for the counter."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


def _names(cert: x509.Certificate) -> tuple[set[str], set[str], set[str]]:
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        uris = set(san.get_values_for_type(x509.UniformResourceIdentifier))
        dns = {d.lower() for d in san.get_values_for_type(x509.DNSName)}
    except x509.ExtensionNotFound:
        uris, dns = set(), set()
    cns = {str(a.value) for a in cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)}
    return uris, dns, cns


def matches(peer: Etsi020Peer, cert_der: bytes) -> bool:
    """Whether the certificate names ``peer`` as its configured identity says."""
    ident = peer.identity
    if ident.startswith("urn:qusec:node:"):
        found = identity_of(cert_der)
        return found is not None and found.role == "node" and found.name == ident[len("urn:qusec:node:"):]
    uris, dns, cns = _names(x509.load_der_x509_certificate(cert_der))
    kind, _, value = ident.partition(":")
    return {"uri": value in uris, "dns": value.lower() in dns, "cn": value in cns}.get(kind, False)


def peer_of(cert_der: bytes | None, peers: Sequence[Etsi020Peer]) -> Etsi020Peer:
    """The configured peer a verified client certificate (DER) belongs to; raises :class:`NotAPeer`."""
    if not cert_der:
        raise NotAPeer("no_certificate", "no client certificate")
    try:
        cert = x509.load_der_x509_certificate(cert_der)
    except ValueError:
        raise NotAPeer("no_identity", "the client certificate cannot be read") from None
    found = identity_of(cert_der)
    if found is not None and found.role != "node":
        raise NotAPeer("wrong_role", f"a KME needs a node certificate; this one names {found}")
    uris, _, _ = _names(cert)
    if found is None and any(u.startswith(URI_PREFIX) for u in uris):
        raise NotAPeer("no_identity", "the certificate's urn:qusec: identity is malformed")
    hits = [p for p in peers if matches(p, cert_der)]
    if len(hits) != 1:
        who = str(found) if found else "a certificate"
        raise NotAPeer("not_a_peer" if not hits else "ambiguous_peer",
                       f"{who} is no configured ETSI 020 peer" if not hits else
                       f"{who} matches several configured peers")
    return hits[0]
