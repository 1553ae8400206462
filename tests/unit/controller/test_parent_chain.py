"""The parent's domain chains: key-aware, QKD before post-quantum, only what both sides declare."""
from __future__ import annotations

from dataclasses import replace

import pytest

from quseccontroller.abstract import Border, DomainExport, Reach
from quseccontroller.parent.chain import ChainRequest, NoChain, Segment, choose, crossings

FULL = 10**7


def r(hops: int, stored: int = FULL, rate: float = 1e6) -> Reach:
    return Reach(rate_bps=rate, stored_bits=stored, hops=hops)


def world(**changes) -> dict[str, DomainExport]:
    """beijing_shanghai3 as its domains export it: a trunk between two metros, a PQC WAN link."""
    ex = {
        "beijing": DomainExport("beijing", 1, (Border("BJ-IW", "bj-site", "etsi020", "trunk", "T-BJ"),
                                               Border("BJ3", "pqc-wan", "pqc", "shanghai", "SH3")),
                                {("BJ-IW", "BJ3"): r(2)}, {"sae-bj1": {"BJ-IW": r(2), "BJ3": r(1)}}),
        "trunk": DomainExport("trunk", 1, (Border("T-BJ", "bj-site", "etsi020", "beijing", "BJ-IW"),
                                           Border("T-SH", "sh-site", "etsi020", "shanghai", "SH-IW")),
                              {("T-BJ", "T-SH"): r(5)}, {"sae-jn": {"T-BJ": r(2), "T-SH": r(3)}}),
        "shanghai": DomainExport("shanghai", 1, (Border("SH-IW", "sh-site", "etsi020", "trunk", "T-SH"),
                                                 Border("SH3", "pqc-wan", "pqc", "beijing", "BJ3")),
                                 {("SH-IW", "SH3"): r(2)}, {"sae-sh1": {"SH-IW": r(2), "SH3": r(1)}}),
    }
    ex.update(changes)
    return ex


REQ = ChainRequest("beijing", "sae-sh1", 256, {"BJ-IW": r(2), "BJ3": r(1)})


def test_qkd_chain_through_the_trunk() -> None:
    c = choose(world(), REQ)
    assert c.dst_domain == "shanghai" and c.security == "qkd"
    assert c.segments == (Segment("beijing", "", "BJ-IW"), Segment("trunk", "T-BJ", "T-SH"),
                          Segment("shanghai", "SH-IW", ""))
    assert [(x.id, x.from_node, x.to_node) for x in c.crossings] == [("bj-site", "BJ-IW", "T-BJ"),
                                                                     ("sh-site", "T-SH", "SH-IW")]


def test_pqc_link_only_when_no_qkd_chain_and_allowed() -> None:
    ex = world()
    sh = ex["shanghai"]
    down = replace(sh, borders=(replace(sh.borders[0], up=False), sh.borders[1]))
    c = choose(world(shanghai=down), REQ)
    assert c.security == "pqc" and [x.id for x in c.crossings] == ["pqc-wan"]
    assert c.segments == (Segment("beijing", "", "BJ3"), Segment("shanghai", "SH3", ""))
    with pytest.raises(NoChain) as info:
        choose(world(shanghai=down), replace(REQ, allow_pqc=False))
    assert info.value.reason == "no_route"


def test_a_crossing_one_side_alone_declares_is_not_used() -> None:
    tr = world()["trunk"]
    liar = replace(tr, borders=(tr.borders[0], replace(tr.borders[1], peer_node="SH2")))
    assert [x.id for x in choose(world(trunk=liar), REQ).crossings] == ["pqc-wan"]
    assert len(crossings(world())) == 3 and len(crossings(world(trunk=liar))) == 2


def test_no_transit_and_exclusions() -> None:
    tr = world()["trunk"]
    assert choose(world(trunk=replace(tr, transit=False)), REQ).security == "pqc"
    assert choose(world(), replace(REQ, exclude=("sh-site",))).security == "pqc"
    assert choose(world(), replace(REQ, exclude=("trunk",))).security == "pqc"
    with pytest.raises(NoChain) as info:
        choose(world(), replace(REQ, exclude=("shanghai",)))
    assert info.value.reason == "excluded"


def test_a_drained_transit_domain_is_left_out() -> None:
    tr = world()["trunk"]
    dry = replace(tr, links={("T-BJ", "T-SH"): r(5, stored=100, rate=10)})
    assert choose(world(trunk=dry), REQ).security == "pqc"


def test_key_aware_between_two_transit_domains() -> None:
    # a second trunk with more hops but plenty of key beats a short one running dry
    bj, tr, sh = world()["beijing"], world()["trunk"], world()["shanghai"]
    low = replace(tr, links={("T-BJ", "T-SH"): r(3, stored=2000, rate=1e3)})
    alt = DomainExport("trunk2", 1, (Border("U-BJ", "bj-site2", "etsi020", "beijing", "BJ-IW2"),
                                     Border("U-SH", "sh-site2", "etsi020", "shanghai", "SH-IW2")),
                       {("U-BJ", "U-SH"): r(6)}, {})
    bj2 = replace(bj, borders=bj.borders + (Border("BJ-IW2", "bj-site2", "etsi020", "trunk2", "U-BJ"),),
                  saes={"sae-bj1": {}})
    sh2 = replace(sh, borders=sh.borders + (Border("SH-IW2", "sh-site2", "etsi020", "trunk2", "U-SH"),),
                  saes={"sae-sh1": {"SH-IW": r(2), "SH-IW2": r(2), "SH3": r(1)}})
    req = replace(REQ, src_reach={"BJ-IW": r(2), "BJ-IW2": r(2), "BJ3": r(1)})
    c = choose({"beijing": bj2, "trunk": low, "trunk2": alt, "shanghai": sh2}, req)
    assert [s.domain for s in c.segments] == ["beijing", "trunk2", "shanghai"]
    c = choose({"beijing": bj2, "trunk": tr, "trunk2": alt, "shanghai": sh2}, req)
    assert [s.domain for s in c.segments] == ["beijing", "trunk", "shanghai"]


@pytest.mark.parametrize("req,exports,reason", [
    (replace(REQ, dst_sae="sae-nobody"), world(), "unknown_sae"),
    (replace(REQ, dst_sae="sae-bj1"), world(), "same_domain"),
    (REQ, {k: v for k, v in world().items() if k != "beijing"}, "domain_down"),
    (REQ, world(trunk=replace(world()["trunk"], saes={"sae-sh1": {"T-SH": r(1)}})), "ambiguous_sae"),
    (replace(REQ, src_reach={}), world(), "no_route"),
])
def test_refusals_have_reasons(req, exports, reason) -> None:
    with pytest.raises(NoChain) as info:
        choose(exports, req)
    assert info.value.reason == reason and str(info.value)


def test_a_pqc_link_is_used_only_where_it_joins_the_source_and_destination_domains() -> None:
    # from the trunk, with the Shanghai site down: beijing (transit) and its PQC link would reach
    # shanghai, but a key already relayed into a domain does not go on at the post-quantum level
    ex = world()
    sh, bj = ex["shanghai"], ex["beijing"]
    down = replace(sh, borders=(replace(sh.borders[0], up=False), sh.borders[1]))
    req = ChainRequest("trunk", "sae-sh1", 256, {"T-BJ": r(1), "T-SH": r(1)})
    with pytest.raises(NoChain) as info:
        choose(world(shanghai=down, beijing=replace(bj, transit=True)), req)
    assert info.value.reason == "no_route"


def test_a_source_that_is_itself_a_border_starts_the_chain_there() -> None:
    # the domain's reach from a border to itself: no hop, unbounded rate (abstract.reach)
    here = Reach(rate_bps=float("inf"), stored_bits=1 << 62, hops=0)
    c = choose(world(), ChainRequest("beijing", "sae-sh1", 256, {"BJ-IW": here, "BJ3": r(2)}))
    assert c.security == "qkd" and [x.id for x in c.crossings] == ["bj-site", "sh-site"]
    assert c.segments[0] == Segment("beijing", "", "BJ-IW")
