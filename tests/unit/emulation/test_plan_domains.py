"""A multi-domain topology in one Mininet (pure parts): every domain's part of one plan, the
crossing links between domains that no switch forwards, the KMEs' GS QKD 020 tables on them,
and the demo's choice of SAE pairs and of the interworking node it fails."""
from __future__ import annotations

import ipaddress

import pytest

from mininet_topos import topology
from mininet_topos.cli import demo_domains, up
from mininet_topos.launch.plan import CROSSING_NET, DATA_NET, TopoPlanError, plan
from mininet_topos.launch.topos import QkdTopo
from mininet_topos.provision import interworking


@pytest.fixture(scope="module")
def bs3():
    return topology.load("beijing_shanghai3")


def test_one_plan_for_every_domain_and_each_domain_its_part(bs3) -> None:
    p = plan(bs3)
    assert len(p.switches) == len(bs3.nodes) == len({s.dpid for s in p.switches})
    parts = {d: p.part(set(bs3.domain_view(d).nodes), d) for d in bs3.domains}
    # the parts cover the plan once: no switch, host or switch link is in two domains
    assert sorted(s.name for part in parts.values() for s in part.switches) == sorted(s.name for s in p.switches)
    assert sum(len(part.links) for part in parts.values()) == len(p.links)
    for d, part in parts.items():
        nodes = set(bs3.domain_view(d).nodes)
        assert {h.node for h in part.node_hosts} == nodes
        assert all(l.node_a in nodes and l.node_b in nodes for l in part.links)
        assert {h.sae for h in part.sae_hosts} == set(bs3.domain_view(d).saes)
    # no switch link joins two domains: each domain's LLDP sees only its own switches
    dom = {n.id: n.domain for n in bs3.nodes.values()}
    assert all(dom[l.node_a] == dom[l.node_b] for l in p.links)


def test_every_site_and_pqc_link_is_a_direct_link_on_its_own_subnet(bs3) -> None:
    p = plan(bs3)
    got = {(c.id, c.kind, frozenset((c.node_a, c.node_b))) for c in p.crossings}
    assert got == {("bj-site", "etsi020", frozenset({"BJ-IW", "T-BJ"})),
                   ("sh-site", "etsi020", frozenset({"T-SH", "SH-IW"})),
                   ("pqc-wan", "pqc", frozenset({"BJ3", "SH3"}))}
    nets = set()
    for c in p.crossings:
        net = ipaddress.ip_network(f"{c.ip_a}/{c.prefixlen}", strict=False)
        assert ipaddress.ip_address(c.ip_b) in net and net.subnet_of(CROSSING_NET)
        assert not net.overlaps(DATA_NET)   # never on the switches' data plane
        nets.add(net)
    assert len(nets) == 3
    assert p.crossing_ips("BJ-IW") == [p.crossings[0].ip_of("BJ-IW")] and p.crossing_ips("BJ1") == []
    # the part of a domain keeps the crossings that touch it (its KMEs' certificates name them)
    trunk = p.part(set(bs3.domain_view("trunk").nodes))
    assert {c.id for c in trunk.crossings} == {"bj-site", "sh-site"}


def test_the_mininet_topo_wires_each_crossing_host_to_host_after_the_management_link(bs3) -> None:
    p = plan(bs3)
    mt = QkdTopo(p)
    for c in p.crossings:
        assert c.host_b in mt.g[c.host_a]                       # a direct link, no switch between
        info = mt.linkInfo(c.host_a, c.host_b)
        ends = {info["node1"]: info["params1"]["ip"], info["node2"]: info["params2"]["ip"]}
        assert ends == {c.host_a: f"{c.ip_a}/24", c.host_b: f"{c.ip_b}/24"}
    # single-domain plans have none
    assert plan(topology.load("metro8")).crossings == []


def test_a_site_of_three_kmes_is_refused_before_anything_starts(bs3) -> None:
    from dataclasses import replace
    site = bs3.interworking[0]
    wide = replace(bs3, interworking=[replace(site, kmes=(*site.kmes, "SH-IW")), *bs3.interworking[1:]])
    with pytest.raises(TopoPlanError, match="bj-site.*3 KMEs.*--local"):
        plan(wide)
    net, probs = up.one_network(wide, None, "wide.toml")
    assert net is None and "bj-site" in probs[0]


def test_a_node_ending_two_pqc_links_is_refused_it_has_one_wan_address(bs3) -> None:
    from dataclasses import replace

    from mininet_topos.model import PqcLink
    two = replace(bs3, pqc_links=[*bs3.pqc_links, PqcLink("pqc-2", "BJ3", "T-JN")])
    with pytest.raises(TopoPlanError, match="'BJ3' ends more than one PQC link.*--local"):
        plan(two)


def test_up_brings_every_domain_up_in_mininet_or_local(bs3) -> None:
    assert up.one_network(bs3, None, "beijing_shanghai3") == (bs3, [])
    assert up.one_network(bs3, None, "beijing_shanghai3", local=True) == (bs3, [])


def test_site_kmes_serve_gs_qkd_020_on_their_site_link_and_trust_the_peer_domains_ca(bs3) -> None:
    p = plan(bs3)
    site_ip = {n: c.ip_of(n) for c in p.crossings if c.kind == "etsi020" for n in (c.node_a, c.node_b)}
    tables = interworking.etsi020_tables(bs3, lambda n: f"{site_ip[n]}:8020", lambda d: f"/ca/{d}.pem")
    assert set(tables) == {"BJ-IW", "T-BJ", "T-SH", "SH-IW"}
    t = tables["T-BJ"]
    assert t.listen == f"{site_ip['T-BJ']}:8020"
    (peer,) = t.peers
    assert (peer.kme_id, peer.url, peer.identity, peer.ca_cert) == (
        "BJ-IW", f"https://{site_ip['BJ-IW']}:8020", "urn:qusec:node:BJ-IW", "/ca/beijing.pem")
    assert t.ca_certs == ["/ca/beijing.pem"]


def test_the_demo_pairs_saes_across_the_most_sites_and_fails_a_site_on_the_chain(bs3) -> None:
    pairs = demo_domains.cross_pairs(bs3)
    assert pairs == [("sae-bj1", "sae-sh1", 2), ("sae-bj3", "sae-jn", 1)]
    chain = [{"domain": "beijing", "crossing": "bj-site"}, {"domain": "trunk", "crossing": "sh-site"},
             {"domain": "shanghai"}]
    # no second site joins beijing and shanghai, only the PQC link: the last site's exit KME stops
    assert demo_domains.site_to_fail(bs3, chain, "beijing", "shanghai") == ("sh-site", "T-SH", "pqc")
    # beijing -> trunk without bj-site: over the PQC link to shanghai, then sh-site
    assert demo_domains.alternative(bs3, "beijing", "trunk", "bj-site") == "pqc"
    from dataclasses import replace
    assert demo_domains.alternative(replace(bs3, pqc_links=[]), "beijing", "trunk", "bj-site") == "none"


def test_the_network_json_of_several_domains_names_each_domains_own(tmp_path) -> None:
    import json

    from mininet_topos.provision.netinfo import NetworkInfoError, load_network
    top = tmp_path / "network.json"
    top.write_text(json.dumps({"topology": "beijing_shanghai3", "mode": "mininet", "parent": {},
                               "domains": {d: {"network": f"/run/domains/{d}/network.json"}
                                           for d in ("beijing", "trunk", "shanghai")}}))
    with pytest.raises(NetworkInfoError) as err:   # qkdnet status / key / qlink read it
        load_network(top)
    assert "a network of 3 domains (beijing, trunk, shanghai)" in str(err.value)
    assert "/run/domains/trunk/network.json" in str(err.value)
