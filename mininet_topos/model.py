"""Typed model of a QKD network topology (what a topology TOML file describes).

The loader (``mininet_topos.topology``) builds these from TOML files and checks them;
everything else (QuSeC core, vKMS agents, PKI, the Mininet launcher, benchmarks)
consumes them.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import networkx as nx

DEFAULT_TRUST = 3      # trust levels run 1 (lowest) .. 5 (highest)
KMS_KINDS = ("simulated", "etsi014")


@dataclass(frozen=True)
class Node:
    id: str
    trust: int = DEFAULT_TRUST
    location: tuple[float, float] | None = None   # (x_km, y_km) or (lat, lon)
    role: str = "trusted"                          # "trusted" relay node or "end" node
    domain: str = ""                               # its network's id ("": the file has no domains)


@dataclass(frozen=True)
class QkdLink:
    id: str                       # unique; parallel links between one pair get distinct ids
    a: str
    b: str
    rate_bps: float               # secret key rate (explicit, or from length_km)
    length_km: float | None = None
    kms: str = "simulated"        # link KMS kind at both ends
    kms_url: str | None = None    # for kms = "etsi014": base URL of the vendor KMS

    def peer(self, node: str) -> str:
        return self.b if node == self.a else self.a


@dataclass(frozen=True)
class Domain:
    """One QKD network or policy domain: run by its own QuSeC, with its own switches and policy."""
    id: str
    description: str = ""


@dataclass(frozen=True)
class Interworking:
    """An interworking site: one KME (a node) per network it joins, in one protected site.

    Its KMEs pass keys to each other over ETSI GS QKD 020; no QKD link joins them.
    """
    id: str
    kmes: tuple[str, ...]


@dataclass(frozen=True)
class PqcLink:
    """A post-quantum-only link between two domains (ML-KEM over a WAN): no QKD key on it."""
    id: str
    a: str
    b: str

    def peer(self, node: str) -> str:
        return self.b if node == self.a else self.a


@dataclass(frozen=True)
class Sae:
    id: str
    node: str


@dataclass(frozen=True)
class ClassicalLink:
    a: str
    b: str
    latency_ms: float | None = None


@dataclass
class Topology:
    name: str
    nodes: dict[str, Node]
    links: list[QkdLink]
    saes: dict[str, Sae] = field(default_factory=dict)
    classical: list[ClassicalLink] = field(default_factory=list)  # empty: follows the QKD links
    description: str = ""
    source: str = ""
    path: Path | None = None
    domains: dict[str, Domain] = field(default_factory=dict)       # empty: one network
    interworking: list[Interworking] = field(default_factory=list)
    pqc_links: list[PqcLink] = field(default_factory=list)

    @property
    def multi_domain(self) -> bool:
        return bool(self.domains)

    def domain_view(self, domain: str) -> "Topology":
        """The part of the network one domain's QuSeC runs: its nodes, QKD links, SAEs, classical links."""
        nodes = {n.id: n for n in self.nodes.values() if n.domain == domain}
        return Topology(
            name=f"{self.name}-{domain}", nodes=nodes,
            links=[lk for lk in self.links if lk.a in nodes and lk.b in nodes],
            saes={s.id: s for s in self.saes.values() if s.node in nodes},
            classical=[c for c in self.classical if c.a in nodes and c.b in nodes],
            description=self.domains[domain].description if domain in self.domains else "",
            source=self.source, path=self.path)

    def domain_graph(self) -> nx.MultiGraph:
        """Domains joined by their interworking sites (kind "etsi020") and PQC links (kind "pqc").

        One edge per pair of KMEs of a site (keyed by the site id) or per PQC link (its id);
        ``ends`` maps each domain of the edge to its node there.
        """
        g = nx.MultiGraph(name=f"{self.name} domains")
        g.add_nodes_from(self.domains)
        for site in self.interworking:
            for i, x in enumerate(site.kmes):
                for y in site.kmes[i + 1:]:
                    dx, dy = self.nodes[x].domain, self.nodes[y].domain
                    g.add_edge(dx, dy, key=f"{site.id}:{x}:{y}", kind="etsi020", site=site.id,
                               ends={dx: x, dy: y})
        for p in self.pqc_links:
            da, db = self.nodes[p.a].domain, self.nodes[p.b].domain
            g.add_edge(da, db, key=p.id, kind="pqc", link=p.id, ends={da: p.a, db: p.b})
        return g

    def site_of(self, node: str) -> Interworking | None:
        """The interworking site ``node`` is a KME of, if any."""
        return next((s for s in self.interworking if node in s.kmes), None)

    def qkd_graph(self) -> nx.MultiGraph:
        """Nodes with their attributes; one edge per QKD link, keyed by link id."""
        g = nx.MultiGraph(name=self.name)
        for n in self.nodes.values():
            g.add_node(n.id, trust=n.trust, role=n.role, location=n.location, domain=n.domain)
        for link in self.links:
            g.add_edge(link.a, link.b, key=link.id, rate_bps=link.rate_bps,
                       length_km=link.length_km, kms=link.kms)
        return g

    def classical_graph(self) -> nx.Graph:
        """The classical (switch) network: explicit classical links, else the QKD graph's."""
        g = nx.Graph(name=self.name)
        g.add_nodes_from(self.nodes)
        if self.classical:
            for c in self.classical:
                g.add_edge(c.a, c.b, latency_ms=c.latency_ms)
        else:
            for link in self.links:
                g.add_edge(link.a, link.b)
        return g

    def links_of(self, node: str) -> list[QkdLink]:
        return [link for link in self.links if node in (link.a, link.b)]

    def saes_of(self, node: str) -> list[Sae]:
        return [s for s in self.saes.values() if s.node == node]
