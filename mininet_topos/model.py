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

    def qkd_graph(self) -> nx.MultiGraph:
        """Nodes with their attributes; one edge per QKD link, keyed by link id."""
        g = nx.MultiGraph(name=self.name)
        for n in self.nodes.values():
            g.add_node(n.id, trust=n.trust, role=n.role, location=n.location)
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
