"""PKI for a QKD network: one CA, certificates for QuSeC, every vKMS node and every SAE (``qkdnet pki``).

Node and QuSeC certificates are server and client certificates: CN = node id (or
"qusec"), SANs = that name, the given addresses, 127.0.0.1 and localhost, so any
standard TLS client verifies them with the CA. SAE certificates are client
certificates whose CN is the SAE ID: the vKMS takes the calling SAE from it, so an
SAE can never act as another one. ECDSA P-256, SHA-256.
"""
from __future__ import annotations

import argparse
import datetime as dt
import ipaddress
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from mininet_topos.model import Topology

QUSEC_NAME = "qusec"
VALID_DAYS = 825


@dataclass(frozen=True)
class CertPair:
    cert: str   # absolute path, PEM
    key: str    # absolute path, PEM (mode 0600)


@dataclass
class Pki:
    """Where the PKI's files are (absolute paths)."""
    out_dir: str
    ca_cert: str
    ca_key: str
    qusec: CertPair
    nodes: dict[str, CertPair] = field(default_factory=dict)
    saes: dict[str, CertPair] = field(default_factory=dict)

    @property
    def qusec_cert(self) -> str:
        return self.qusec.cert

    @property
    def qusec_key(self) -> str:
        return self.qusec.key

    def node(self, node_id: str) -> CertPair:
        return self.nodes[node_id]

    def sae(self, sae_id: str) -> CertPair:
        return self.saes[sae_id]

    def to_json(self) -> dict:
        return {"ca_cert": self.ca_cert, "ca_key": self.ca_key,
                "qusec": vars(self.qusec),
                "nodes": {k: vars(v) for k, v in self.nodes.items()},
                "saes": {k: vars(v) for k, v in self.saes.items()}}

    @classmethod
    def load(cls, out_dir: str | Path) -> "Pki":
        """Re-open a PKI written by :func:`build_pki` (reads ``pki.json``)."""
        data = json.loads((Path(out_dir) / "pki.json").read_text())
        return cls(str(Path(out_dir).resolve()), data["ca_cert"], data["ca_key"], CertPair(**data["qusec"]),
                   {k: CertPair(**v) for k, v in data["nodes"].items()},
                   {k: CertPair(**v) for k, v in data["saes"].items()})


def _new_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _write_key(key: ec.EllipticCurvePrivateKey, path: Path) -> None:
    data = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)


def _write_cert(cert: x509.Certificate, path: Path) -> None:
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "QuSeC QKD network"),
                      x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _sans(names: list[str]) -> list[x509.GeneralName]:
    out: list[x509.GeneralName] = []
    for n in dict.fromkeys(names):
        try:
            out.append(x509.IPAddress(ipaddress.ip_address(n)))
        except ValueError:
            if n.isascii() and n.replace("-", "").replace(".", "").replace("_", "").isalnum():
                out.append(x509.DNSName(n))
    return out


def _issue(ca_key, ca_name: x509.Name, cn: str, key, *, server: bool, names: list[str]) -> x509.Certificate:
    now = dt.datetime.now(dt.timezone.utc)
    usages = [ExtendedKeyUsageOID.CLIENT_AUTH] + ([ExtendedKeyUsageOID.SERVER_AUTH] if server else [])
    b = (x509.CertificateBuilder().subject_name(_name(cn)).issuer_name(ca_name)
         .public_key(key.public_key()).serial_number(x509.random_serial_number())
         .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=VALID_DAYS))
         .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
         .add_extension(x509.KeyUsage(digital_signature=True, key_encipherment=False, content_commitment=False,
                                      data_encipherment=False, key_agreement=True, key_cert_sign=False,
                                      crl_sign=False, encipher_only=False, decipher_only=False), critical=True)
         .add_extension(x509.ExtendedKeyUsage(usages), critical=False))
    sans = _sans(names)
    if sans:
        b = b.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    return b.sign(ca_key, hashes.SHA256())


def build_pki(topology: Topology, out_dir: str | Path, addresses: dict[str, list[str]] | None = None) -> Pki:
    """Create the CA and every certificate of ``topology`` under ``out_dir``.

    ``addresses`` maps a node id (or "qusec") to extra names/IPs its server certificate
    must carry (e.g. its Mininet host IPs).
    """
    addresses = addresses or {}
    out = Path(out_dir).resolve()
    for sub in ("nodes", "saes"):
        (out / sub).mkdir(parents=True, exist_ok=True)
    ca_key = _new_key()
    ca_name = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "QuSeC QKD network"),
                         x509.NameAttribute(NameOID.COMMON_NAME, f"QuSeC CA ({topology.name})")])
    now = dt.datetime.now(dt.timezone.utc)
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
          .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
          .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=VALID_DAYS))
          .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
          .add_extension(x509.KeyUsage(digital_signature=True, key_encipherment=False, content_commitment=False,
                                       data_encipherment=False, key_agreement=False, key_cert_sign=True,
                                       crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
          .sign(ca_key, hashes.SHA256()))
    _write_cert(ca, out / "ca.pem")
    _write_key(ca_key, out / "ca.key")

    def issue(cn: str, sub: Path, server: bool) -> CertPair:
        key = _new_key()
        names = [cn, *addresses.get(cn, []), "127.0.0.1", "localhost"] if server else [cn]
        cert = _issue(ca_key, ca_name, cn, key, server=server, names=names)
        stem = sub / _file_stem(cn)
        _write_cert(cert, stem.with_suffix(".pem"))
        _write_key(key, stem.with_suffix(".key"))
        return CertPair(str(stem.with_suffix(".pem")), str(stem.with_suffix(".key")))

    pki = Pki(str(out), str(out / "ca.pem"), str(out / "ca.key"), issue(QUSEC_NAME, out, True))
    for node_id in topology.nodes:
        pki.nodes[node_id] = issue(node_id, out / "nodes", True)
    for sae_id in topology.saes:
        pki.saes[sae_id] = issue(sae_id, out / "saes", False)
    (out / "pki.json").write_text(json.dumps(pki.to_json(), indent=2) + "\n")
    return pki


def _file_stem(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("pki", help="create a CA and certificates for QuSeC, every node and every SAE",
                       description="Create a CA and certificates (QuSeC, every vKMS node, every SAE) "
                                   "for a topology.")
    p.add_argument("topology", help="topology file, shipped name or mesh:N[:SEED]")
    p.add_argument("--out", required=True, type=Path, help="output directory")
    p.add_argument("--address", action="append", default=[], metavar="NAME=ADDR",
                   help="extra SAN for a node's (or qusec's) server certificate; repeatable")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    import sys

    from mininet_topos import topology as topo_mod
    try:
        topo = topo_mod.load(args.topology)
    except topo_mod.TopologyError as exc:
        print("\n".join(exc.problems), file=sys.stderr)
        return 1
    addresses: dict[str, list[str]] = {}
    for item in args.address:
        name, sep, addr = item.partition("=")
        if not sep or not addr:
            print(f"--address {item!r}: expected NAME=ADDR", file=sys.stderr)
            return 2
        addresses.setdefault(name, []).append(addr)
    pki = build_pki(topo, args.out, addresses)
    print(f"CA {pki.ca_cert}; {len(pki.nodes)} node and {len(pki.saes)} SAE certificates in {pki.out_dir}")
    return 0
