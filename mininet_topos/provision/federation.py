"""The parent controller of a multi-domain topology: its PKI and its configuration file.

The parent runs its own CA (the federation's), separate from every domain's: it issues the
parent's server certificate and one client certificate per domain QuSeC
(``urn:qusec:controller:qusec-DOMAIN``), and ``parent.toml`` maps each of those names to its
domain. A domain QuSeC trusts the federation CA for its parent link only.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from mininet_topos.model import Topology
from mininet_topos.provision.pki import CertPair, issue_pair, new_ca

PARENT_NAME = "parent"


def controller_name(domain: str) -> str:
    """The name a domain QuSeC's parent-link certificate carries."""
    return f"qusec-{domain}"


@dataclass
class Federation:
    out_dir: str
    ca_cert: str
    parent: CertPair
    domains: dict[str, CertPair] = field(default_factory=dict)   # domain -> its QuSeC's client cert
    config: str = ""


def build(topo: Topology, out_dir: str | Path, *, listen: str = "127.0.0.1:0",
          interval_s: float = 2.0) -> Federation:
    """The federation CA, the parent's certificate, one per domain, and ``parent.toml``."""
    out = Path(out_dir).resolve()
    out.mkdir(parents=True, exist_ok=True)
    ca_key, ca_name = new_ca(f"QuSeC federation CA ({topo.name})", out)
    fed = Federation(str(out), str(out / "ca.pem"),
                     issue_pair(ca_key, ca_name, "controller", PARENT_NAME, out, [PARENT_NAME, "127.0.0.1"]))
    for dom in topo.domains:
        fed.domains[dom] = issue_pair(ca_key, ca_name, "controller", controller_name(dom), out)
    cfg = out / "parent.toml"
    q = json.dumps
    cfg.write_text("\n".join(
        [f"# The parent controller of {topo.name}: python -m quseccontroller.parent --config {cfg}",
         "[listen]", f"grpc = {q(listen)}", "", "[tls]", f"ca_cert = {q(fed.ca_cert)}",
         f"cert = {q(fed.parent.cert)}", f"key = {q(fed.parent.key)}", "", "[export]",
         f"interval_s = {interval_s!r}"]
        + [line for dom in topo.domains
           for line in ("", "[[domains]]", f"id = {q(dom)}", f"controller = {q(controller_name(dom))}")]) + "\n")
    fed.config = str(cfg)
    return fed
