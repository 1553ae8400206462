"""The ``[etsi020]`` tables of a multi-domain topology's interworking KMEs, and the ``[pqc]`` tables
of its PQC links' ends (pure).

Every KME of an interworking site serves ETSI GS QKD 020 to the other KMEs of its site: it
listens where ``addr_of`` says, names each of them as a peer by its node identity
(``urn:qusec:node:PEER``) and trusts, for GS QKD 020 only, the CA of the peer's domain (each
domain has its own PKI). Nothing else of another domain is configured: its SAEs are found by
QuSeC and the parent controller.

Each end of a ``[[pqc_links]]`` link serves the link on a listener of its own (``addr_of``) and
names the other end by node id, with the CA of that end's domain: trusted there, for that link,
and nowhere else (not by its relay or ETSI 014 servers).
"""
from __future__ import annotations

from collections.abc import Callable

from kms_agents.config import Etsi020Config, Etsi020Peer, PqcConfig, PqcLinkPeer
from mininet_topos.model import Topology


def site_kmes(topo: Topology) -> list[str]:
    """Every node that is a KME of an interworking site."""
    return sorted({k for site in topo.interworking for k in site.kmes})


def etsi020_tables(topo: Topology, addr_of: Callable[[str], str],
                   ca_of: Callable[[str], str]) -> dict[str, Etsi020Config]:
    """Node -> its ``[etsi020]`` table. ``addr_of(node)``: the host:port its GS QKD 020 server
    listens on (and peers call); ``ca_of(domain)``: that domain's CA certificate file."""
    out: dict[str, Etsi020Config] = {}
    for site in topo.interworking:
        for kme in site.kmes:
            cfg = out.setdefault(kme, Etsi020Config(listen=addr_of(kme)))
            for peer in site.kmes:
                if peer == kme or any(p.kme_id == peer for p in cfg.peers):
                    continue
                ca = ca_of(topo.nodes[peer].domain)
                cfg.peers.append(Etsi020Peer(kme_id=peer, url=f"https://{addr_of(peer)}",
                                             identity=f"urn:qusec:node:{peer}", ca_cert=ca))
                if ca not in cfg.ca_certs:
                    cfg.ca_certs.append(ca)
    return out


def pqc_ends(topo: Topology) -> list[str]:
    """Every node that is an end of a PQC link."""
    return sorted({n for link in topo.pqc_links for n in (link.a, link.b)})


def pqc_tables(topo: Topology, addr_of: Callable[[str], str],
               ca_of: Callable[[str], str]) -> dict[str, PqcConfig]:
    """Node -> its ``[pqc]`` table. ``addr_of(node)``: the host:port its PQC link server listens
    on (and the other end calls); ``ca_of(domain)``: that domain's CA certificate file."""
    out: dict[str, PqcConfig] = {}
    for link in topo.pqc_links:
        for me, peer in ((link.a, link.b), (link.b, link.a)):
            cfg = out.setdefault(me, PqcConfig(listen=addr_of(me)))
            cfg.links.append(PqcLinkPeer(id=link.id, peer=peer, addr=addr_of(peer),
                                         ca_cert=ca_of(topo.nodes[peer].domain)))
    return out
