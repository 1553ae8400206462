"""PKI for a QKD network: one CA and a certificate for every party that speaks TLS (``qkdnet pki``).

Every certificate says what its holder is: a URI SAN ``urn:qusec:ROLE:NAME`` with ROLE one of
node, sae, controller, operator, switch (``identity_uri``); servers check the role they expect
as well as the name. The CN is the name too (for people reading certificates).

* node (a vKMS): server and client; DNS SAN = the node id (what a neighbour's channel pins),
  IP SANs = the addresses the node really listens on (127.0.0.1 on a loopback network);
* controller (QuSeC, name ``qusec``): server and client; DNS SAN ``qusec`` and its addresses;
* sae: client only; the vKMS takes the calling SAE from it, so an SAE never acts as another;
* operator: client only; what QuSeC's operator interface (/status, /etsi015) asks for;
* switch: client only; the Open vSwitch instance's OpenFlow TLS identity.

ECDSA P-256, SHA-256.
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
SWITCH_NAME = "ovs"
OPERATOR_NAME = "operator"      # the operator certificate every launched network gets
ROLES = ("node", "sae", "controller", "operator", "switch")
URI_PREFIX = "urn:qusec:"
VALID_DAYS = 825


def identity_uri(role: str, name: str) -> str:
    """The URI SAN naming ``name`` in ``role``: ``urn:qusec:node:A``."""
    if role not in ROLES:
        raise ValueError(f"unknown role {role!r} (one of {', '.join(ROLES)})")
    return f"{URI_PREFIX}{role}:{name}"


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
    operators: dict[str, CertPair] = field(default_factory=dict)
    switch: CertPair | None = None

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

    @property
    def operator(self) -> CertPair:
        """The network's default operator certificate."""
        return self.operators[OPERATOR_NAME]

    def to_json(self) -> dict:
        return {"ca_cert": self.ca_cert, "ca_key": self.ca_key,
                "qusec": vars(self.qusec),
                "nodes": {k: vars(v) for k, v in self.nodes.items()},
                "saes": {k: vars(v) for k, v in self.saes.items()},
                "operators": {k: vars(v) for k, v in self.operators.items()},
                "switch": vars(self.switch) if self.switch else None}

    def save(self) -> None:
        (Path(self.out_dir) / "pki.json").write_text(json.dumps(self.to_json(), indent=2) + "\n")

    @classmethod
    def load(cls, out_dir: str | Path) -> "Pki":
        """Re-open a PKI written by :func:`build_pki` (reads ``pki.json``)."""
        data = json.loads((Path(out_dir) / "pki.json").read_text())
        return cls(str(Path(out_dir).resolve()), data["ca_cert"], data["ca_key"], CertPair(**data["qusec"]),
                   {k: CertPair(**v) for k, v in data["nodes"].items()},
                   {k: CertPair(**v) for k, v in data["saes"].items()},
                   {k: CertPair(**v) for k, v in data.get("operators", {}).items()},
                   CertPair(**data["switch"]) if data.get("switch") else None)


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


def _issue(ca_key, ca_name: x509.Name, role: str, cn: str, key, *, server: bool,
           names: list[str]) -> x509.Certificate:
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
    sans = [x509.UniformResourceIdentifier(identity_uri(role, cn)), *_sans(names)]
    return b.add_extension(x509.SubjectAlternativeName(sans), critical=False).sign(ca_key, hashes.SHA256())


def new_ca(cn: str, out: Path) -> tuple[ec.EllipticCurvePrivateKey, x509.Name]:
    """A new CA named ``cn``: writes ``out/ca.pem`` and ``out/ca.key`` (0600); (its key, its name)."""
    ca_key = _new_key()
    ca_name = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "QuSeC QKD network"),
                         x509.NameAttribute(NameOID.COMMON_NAME, cn)])
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
    return ca_key, ca_name


def build_pki(topology: Topology, out_dir: str | Path, addresses: dict[str, list[str]] | None = None,
              *, operators: tuple[str, ...] = (OPERATOR_NAME,)) -> Pki:
    """Create the CA and every certificate of ``topology`` under ``out_dir``.

    ``addresses`` maps a node id (or "qusec") to the IPs or names its server certificate carries:
    where it really listens (e.g. its Mininet host IPs); a node without any listens on loopback
    and gets 127.0.0.1. ``operators``: operator certificates to issue (more later with
    :func:`issue_operator`).
    """
    addresses = addresses or {}
    out = Path(out_dir).resolve()
    for sub in ("nodes", "saes", "operators"):
        (out / sub).mkdir(parents=True, exist_ok=True)
    ca_key, ca_name = new_ca(f"QuSeC CA ({topology.name})", out)

    def server_names(name: str) -> list[str]:
        return [name, *(addresses.get(name) or ["127.0.0.1"])]

    pki = Pki(str(out), str(out / "ca.pem"), str(out / "ca.key"),
              issue_pair(ca_key, ca_name, "controller", QUSEC_NAME, out, server_names(QUSEC_NAME)))
    for node_id in topology.nodes:
        pki.nodes[node_id] = issue_pair(ca_key, ca_name, "node", node_id, out / "nodes", server_names(node_id))
    for sae_id in topology.saes:
        pki.saes[sae_id] = issue_pair(ca_key, ca_name, "sae", sae_id, out / "saes")
    for name in operators:
        pki.operators[name] = issue_pair(ca_key, ca_name, "operator", name, out / "operators")
    pki.switch = issue_pair(ca_key, ca_name, "switch", SWITCH_NAME, out)
    pki.save()
    return pki


def issue_pair(ca_key, ca_name: x509.Name, role: str, name: str, where: Path,
                server_names: list[str] | None = None) -> CertPair:
    """Issue and write ``where/NAME.pem`` and ``.key``: a server and client certificate when
    ``server_names`` are given, else a client certificate."""
    key = _new_key()
    cert = _issue(ca_key, ca_name, role, name, key, server=server_names is not None,
                  names=server_names or [])
    stem = where / _file_stem(name)
    _write_cert(cert, stem.with_suffix(".pem"))
    _write_key(key, stem.with_suffix(".key"))
    return CertPair(str(stem.with_suffix(".pem")), str(stem.with_suffix(".key")))


def issue_operator(pki: Pki, name: str) -> CertPair:
    """One more operator certificate from the network's CA (``qkdnet pki --add-operator``)."""
    if name in pki.operators:
        raise ValueError(f"operator {name!r} already has a certificate: {pki.operators[name].cert}")
    ca_key = serialization.load_pem_private_key(Path(pki.ca_key).read_bytes(), None)
    ca = x509.load_pem_x509_certificate(Path(pki.ca_cert).read_bytes())
    (Path(pki.out_dir) / "operators").mkdir(exist_ok=True)
    pki.operators[name] = issue_pair(ca_key, ca.subject, "operator", name, Path(pki.out_dir) / "operators")
    pki.save()
    return pki.operators[name]


def _file_stem(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("pki", help="create a network's CA and certificates, or add an operator certificate",
                       description="Create a CA and certificates (QuSeC, every vKMS node, every SAE, an "
                                   "operator, the switches) for a topology; or, with --add-operator, "
                                   "issue one more operator certificate from an existing PKI.")
    p.add_argument("topology", nargs="?", help="topology file, shipped name or mesh:N[:SEED]")
    p.add_argument("--out", required=True, type=Path, help="the PKI directory")
    p.add_argument("--address", action="append", default=[], metavar="NAME=ADDR",
                   help="an address a node's (or qusec's) server certificate carries, where it "
                        "listens (default 127.0.0.1); repeatable")
    p.add_argument("--add-operator", metavar="NAME",
                   help="issue an operator certificate (role operator) from the PKI in --out")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    import sys

    from mininet_topos import topology as topo_mod
    if args.add_operator:
        try:
            pair = issue_operator(Pki.load(args.out), args.add_operator)
        except (OSError, ValueError, KeyError) as exc:
            print(f"qkdnet pki: {args.out}: {exc}", file=sys.stderr)
            return 1
        print(f"operator {args.add_operator}: {pair.cert} (key {pair.key})")
        return 0
    if not args.topology:
        print("qkdnet pki: give a TOPOLOGY (or --add-operator NAME)", file=sys.stderr)
        return 2
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
    print(f"CA {pki.ca_cert}; {len(pki.nodes)} node, {len(pki.saes)} SAE and "
          f"{len(pki.operators)} operator certificates in {pki.out_dir}")
    return 0
