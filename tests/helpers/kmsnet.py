"""Helpers for the vKMS integration tests: a small topology, clients for its SAEs, an agent's refusal
counters, and certificates from a network's CA made to order (to attack with)."""
from __future__ import annotations

import re
import urllib.request
from pathlib import Path

from kms_agents.client import Etsi004Client, Etsi014Client
from mininet_topos.model import Node, QkdLink, Sae, Topology


def small_topology(fast_bps: float = 2e6, slow_bps: float = 4096.0) -> Topology:
    """A -fast- B -slow- C; two SAEs on A and on B, one on C (A and C are not neighbours)."""
    nodes = {n: Node(n) for n in ("A", "B", "C")}
    links = [QkdLink("A-B", "A", "B", fast_bps), QkdLink("B-C", "B", "C", slow_bps)]
    saes = {s: Sae(s, s[4].upper()) for s in ("sae-a1", "sae-a2", "sae-b1", "sae-b2", "sae-c1")}
    return Topology("kmstest", nodes, links, saes)


class Saes:
    """ETSI 014/004 clients of the SAEs of a network.json document (cached per SAE); every client
    checks it reached the KME of the node it was made for (``kme_node``)."""

    def __init__(self, doc: dict) -> None:
        self.doc = doc
        self._c014: dict[str, Etsi014Client] = {}

    def kme(self, sae: str, node: str | None = None) -> Etsi014Client:
        """Client for ``sae`` talking to the KME of ``node`` (default: its own node)."""
        node = node or self.doc["saes"][sae]["node"]
        key = f"{sae}@{node}@{self.doc['nodes'][node]['etsi014_url']}"
        if key not in self._c014:
            e = self.doc["saes"][sae]
            self._c014[key] = Etsi014Client(self.doc["nodes"][node]["etsi014_url"], self.doc["ca_cert"],
                                            e["cert"], e["key"], kme_node=node)
        return self._c014[key]

    def app(self, sae: str) -> Etsi004Client:
        e = self.doc["saes"][sae]
        return Etsi004Client(self.doc["nodes"][e["node"]]["etsi004_addr"], self.doc["ca_cert"], e["cert"], e["key"],
                             kme_node=e["node"])

    def close(self) -> None:
        for c in self._c014.values():
            c.close()


def node_cert(state_dir: Path, node: str) -> tuple[str, str]:
    return str(state_dir / "pki" / "nodes" / f"{node}.pem"), str(state_dir / "pki" / "nodes" / f"{node}.key")


def refusals(agent: dict, server: str, reason: str) -> float:
    """An agent's ``qusec_agent_refusals_total{server, reason}``, scraped from its /metrics
    (``agent``: its agent.json)."""
    with urllib.request.urlopen(agent["metrics_url"], timeout=5) as r:
        text = r.read().decode()
    pattern = (r'^qusec_agent_refusals_total\{(?=[^}]*reason="%s")(?=[^}]*server="%s")[^}]*\} (\S+)$'
               % (re.escape(reason), re.escape(server)))
    m = re.search(pattern, text, re.M)
    return float(m.group(1)) if m else 0.0


def forged_cert(pki_dir: Path, out: Path, name: str, role: str) -> tuple[str, str]:
    """A certificate from the network's own CA for ``role:name`` (e.g. an SAE certificate whose
    name is a node id), as a stolen CA key or a careless issuer would make; (cert, key) paths."""
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    from tests.helpers.pki import make_cert, write
    ca = (x509.load_pem_x509_certificate((pki_dir / "ca.pem").read_bytes()),
          serialization.load_pem_private_key((pki_dir / "ca.key").read_bytes(), None))
    cert, key = make_cert(ca, name, role=role)
    c, k = write(cert, key, out, f"{role}-{name}")
    return str(c), str(k)
