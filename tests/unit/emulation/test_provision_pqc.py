"""The [pqc] tables of a PQC link's ends (pure): each end names the other by node id, at its
address, with the CA of the other end's domain (trusted for that link only)."""
from __future__ import annotations

from mininet_topos import topology
from mininet_topos.provision import interworking


def test_each_end_of_a_pqc_link_names_the_other_with_its_domains_ca() -> None:
    topo = topology.load("beijing_shanghai3")
    assert interworking.pqc_ends(topo) == ["BJ3", "SH3"]
    tables = interworking.pqc_tables(topo, lambda n: f"10.9.0.{1 if n == 'BJ3' else 2}:7100",
                                     lambda d: f"/ca/{d}.pem")
    assert sorted(tables) == ["BJ3", "SH3"]
    assert tables["BJ3"].listen == "10.9.0.1:7100"
    [bj] = tables["BJ3"].links
    assert (bj.id, bj.peer, bj.addr, bj.ca_cert) == ("pqc-wan", "SH3", "10.9.0.2:7100", "/ca/shanghai.pem")
    [sh] = tables["SH3"].links
    assert (sh.id, sh.peer, sh.addr, sh.ca_cert) == ("pqc-wan", "BJ3", "10.9.0.1:7100", "/ca/beijing.pem")
    # a site's KME that ends no PQC link gets no [pqc] table
    assert "BJ-IW" not in tables
