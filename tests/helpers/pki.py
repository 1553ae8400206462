"""Test PKIs: a network's PKI made by the project's provisioning (``make_pki``), and a bare CA
with certificates made to order (``make_ca`` / ``make_cert`` / ``write``) for tests that need a
certificate the provisioning would never issue."""
from __future__ import annotations

import datetime as _dt
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def make_ca(cn: str = "test-ca") -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    now = _dt.datetime.now(_dt.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(_name(cn)).issuer_name(_name(cn))
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - _dt.timedelta(days=1))   # tests may hold a "now" from collection time
            .not_valid_after(now + _dt.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    return cert, key


def make_cert(ca: tuple, cn: str, *, role: str = "node", valid_days: float = 1.0
              ) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    """A certificate for ``cn`` in ``role`` (its ``urn:qusec:ROLE:CN`` URI SAN), server and
    client, with DNS SAN ``cn`` and IP SAN 127.0.0.1, as the provisioning issues a loopback node's."""
    import ipaddress
    ca_cert, ca_key = ca
    key = ec.generate_private_key(ec.SECP256R1())
    now = _dt.datetime.now(_dt.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(_name(cn)).issuer_name(ca_cert.subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - _dt.timedelta(days=1))   # tests may hold a "now" from collection time
            .not_valid_after(now + _dt.timedelta(days=valid_days))
            .add_extension(x509.SubjectAlternativeName(
                [x509.UniformResourceIdentifier(f"urn:qusec:{role}:{cn}"), x509.DNSName(cn),
                 x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH,
                                                  ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
            .sign(ca_key, hashes.SHA256()))
    return cert, key


def write(cert: x509.Certificate, key, out: Path, stem: str) -> tuple[Path, Path]:
    """Write ``stem.pem`` and ``stem.key`` under ``out``; returns their paths."""
    out.mkdir(parents=True, exist_ok=True)
    cpath, kpath = out / f"{stem}.pem", out / f"{stem}.key"
    cpath.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    kpath.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                        serialization.PrivateFormat.PKCS8,
                                        serialization.NoEncryption()))
    return cpath, kpath


@dataclass
class TestPki:
    __test__ = False
    ca_cert: str
    qusec_cert: str
    qusec_key: str
    nodes: dict[str, tuple[str, str]] = field(default_factory=dict)  # node -> (cert, key)
    operator: tuple[str, str] = ("", "")                             # (cert, key), role operator

    def node(self, node_id: str) -> tuple[str, str]:
        return self.nodes[node_id]


def make_pki(out_dir: Path, nodes: list[str]) -> TestPki:
    """CA, QuSeC's server certificate and one certificate per node, as ``qkdnet up`` makes them."""
    from mininet_topos.model import Node, Topology
    from mininet_topos.provision.pki import build_pki
    topo = Topology(name="test", nodes={n: Node(n) for n in nodes}, links=[])
    p = build_pki(topo, out_dir)
    return TestPki(p.ca_cert, p.qusec_cert, p.qusec_key,
                   {n: (p.nodes[n].cert, p.nodes[n].key) for n in nodes},
                   (p.operator.cert, p.operator.key))
