"""Test PKI for the controller tests: the project's ``kms_agents.pki`` when present, else a local CA."""
from __future__ import annotations

import datetime as dt
import ipaddress
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class TestPki:
    ca_cert: str
    qusec_cert: str
    qusec_key: str
    nodes: dict[str, tuple[str, str]] = field(default_factory=dict)  # node -> (cert, key)

    def node(self, node_id: str) -> tuple[str, str]:
        return self.nodes[node_id]


def make_pki(out_dir: Path, nodes: list[str]) -> TestPki:
    """CA, a 'qusec' server certificate and one client certificate per node (CN = node id)."""
    try:
        from kms_agents import pki as project_pki
        from mininet_topos.model import Node, Topology
    except ImportError:
        return _local_pki(Path(out_dir), nodes)
    topo = Topology(name="test", nodes={n: Node(n) for n in nodes}, links=[])
    p = project_pki.build_pki(topo, out_dir)
    return TestPki(p.ca_cert, p.qusec_cert, p.qusec_key,
                   {n: (p.nodes[n].cert, p.nodes[n].key) for n in nodes})


def _local_pki(out: Path, nodes: list[str]) -> TestPki:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    out.mkdir(parents=True, exist_ok=True)
    now = dt.datetime.now(dt.timezone.utc)

    def name(cn: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])

    def write(stem: str, cert: x509.Certificate, key) -> tuple[str, str]:
        (out / f"{stem}.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        (out / f"{stem}.key").write_bytes(key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
        return str(out / f"{stem}.pem"), str(out / f"{stem}.key")

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (x509.CertificateBuilder().subject_name(name("test CA")).issuer_name(name("test CA"))
          .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
          .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=2))
          .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
          .sign(ca_key, hashes.SHA256()))
    ca_cert, _ = write("ca", ca, ca_key)

    def issue(cn: str, server: bool) -> tuple[str, str]:
        key = ec.generate_private_key(ec.SECP256R1())
        usages = [ExtendedKeyUsageOID.CLIENT_AUTH] + ([ExtendedKeyUsageOID.SERVER_AUTH] if server else [])
        sans = [x509.DNSName(cn), x509.DNSName("localhost"),
                x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
        cert = (x509.CertificateBuilder().subject_name(name(cn)).issuer_name(ca.subject)
                .public_key(key.public_key()).serial_number(x509.random_serial_number())
                .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=2))
                .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
                .add_extension(x509.SubjectAlternativeName(sans), critical=False)
                .sign(ca_key, hashes.SHA256()))
        return write(cn, cert, key)

    qc, qk = issue("qusec", True)
    return TestPki(ca_cert, qc, qk, {n: issue(n, True) for n in nodes})
