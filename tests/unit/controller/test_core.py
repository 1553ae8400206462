"""QuSeCCore facade: events in, actions out (authorisations, revocations, reroutes, policy)."""
from __future__ import annotations

from dataclasses import asdict, fields

from tests.helpers.qusec_net import core_with

from quseccontroller.actions import Authorise, FlowMods, PathRequest, RelayAuthorisation, Revoke
from quseccontroller.policy import parse
from quseccontroller.state import LINK_OFF, AgentInfo, LinkState

EDGES = [("A", "B"), ("B", "C"), ("C", "D"), ("A", "E"), ("E", "D")]


def auths(acts):
    return {a.node_id: a.auth for a in acts if isinstance(a, Authorise)}


def test_grant_authorises_every_node_with_prev_and_next_hop():
    core, agents = core_with(EDGES)
    d, acts = core.request_path(PathRequest("A", "D", "sae-a", "sae-d", 256, 4), 100.0)
    assert d.granted and d.rule == "default" and d.security_level == "qkd"
    assert d.paths == [["A", "E", "D"]] and len(d.path_ids) == 1
    assert d.expires_at == 160.0 and "key_aware" in d.reason
    a = auths(acts)
    assert set(a) == {"A", "E", "D"}
    assert (a["A"].prev_hop, a["A"].next_hop, a["A"].next_hop_addr) == ("", "E", agents["E"].relay_addr)
    assert (a["E"].prev_hop, a["E"].next_hop) == ("A", "D")
    assert (a["D"].prev_hop_addr, a["D"].next_hop) == (agents["E"].relay_addr, "")
    assert all(x.expires_unix_ms == 160_000 and x.path_id == d.path_ids[0] for x in a.values())
    assert asdict(a["E"]) == dict(
        path_id=d.path_ids[0], prev_hop="A", next_hop="D", prev_hop_addr=agents["A"].relay_addr,
        next_hop_addr=agents["D"].relay_addr, expires_unix_ms=160_000, src_node="A", dst_node="D",
        share_index=0, share_count=1, src_sae="sae-a", dst_saes=("sae-d",), security_level="qkd", handoff=None,
        foreign_src_sae=False)


def test_core_records_mirror_control_proto_field_for_field():
    # The gateway converts these to and from control.proto by field name.
    from quseccontroller.proto import control_pb2 as pb
    for cls, msg in ((RelayAuthorisation, pb.RelayAuthorisation), (PathRequest, pb.PathRequest),
                     (LinkState, pb.QkdLinkState), (AgentInfo, pb.Register)):
        # a PathRequest's handoff is the gateway's (from the parent's chain), never an agent's
        assert [f.name for f in fields(cls) if (cls, f.name) != (PathRequest, "handoff")] \
            == list(msg.DESCRIPTOR.fields_by_name), cls


def test_saes_resolve_to_nodes():
    core, _ = core_with(EDGES)
    d, _ = core.request_path(PathRequest("", "", "sae-b", "sae-d"), 1.0)
    assert d.granted and d.paths[0][0] == "B" and d.paths[0][-1] == "D"
    d, _ = core.request_path(PathRequest("", "", "sae-b", "sae-nobody"), 1.0)
    assert d.refusal == "unknown_sae" and "destination" in d.reason and "sae-nobody" in d.reason
    # A node cannot ask on behalf of an SAE that is attached elsewhere.
    d, _ = core.request_path(PathRequest("A", "D", "sae-b", "sae-d"), 1.0)
    assert d.refusal == "unknown_node" and "attached to node 'B'" in d.reason


def test_policy_deny_rate_limit_and_pqc_fallback():
    table = parse({"default": {}, "rules": [
        {"name": "no-c", "match": {"dst_node": "C"}, "action": "deny"},
        {"name": "capped", "match": {"src_sae": "sae-a"}, "rate_limit_bps": 100, "rate_burst_s": 10},
        {"name": "pqc-ok", "match": {"application": "mail"}, "min_trust": 5, "allow_pqc_fallback": True},
    ]}, "p.toml")
    core, _ = core_with(EDGES, policy=table)
    d, acts = core.request_path(PathRequest("A", "C"), 1.0)
    assert (d.granted, d.refusal, d.rule, acts) == (False, "policy_deny", "no-c", [])
    ok, _ = core.request_path(PathRequest("A", "D", "sae-a", "sae-d", 256, 3), 1.0)   # 768 of 1000 bits
    assert ok.granted
    d, _ = core.request_path(PathRequest("A", "D", "sae-a", "sae-d", 256, 1), 1.0)
    assert (d.granted, d.refusal, d.rule) == (False, "rate_limit", "capped")
    d, _ = core.request_path(PathRequest("A", "D", "sae-a", "sae-d", 256, 1), 4.0)   # +300 bits refilled
    assert d.granted
    # No relay meets trust 5: falls back to PQC, no paths, no authorisations.
    d, acts = core.request_path(PathRequest("B", "D", "sae-b", "sae-d", application="mail"), 1.0)
    assert d.granted and d.security_level == "pqc" and d.paths == [] and not auths(acts)
    assert "PQC fallback" in d.reason and core.counters["granted_pqc_fallback"] == 1


def test_reload_policy_keeps_paths_and_state():
    core, _ = core_with(EDGES)
    d, _ = core.request_path(PathRequest("A", "D"), 1.0)
    core.reload_policy(parse({"default": {"action": "deny"}}, "deny.toml"))
    assert d.path_ids[0] in core.paths and len(core.state.links) == 5
    d2, _ = core.request_path(PathRequest("A", "D"), 2.0)
    assert d2.refusal == "policy_deny"
    assert core.status()["policy"] == "deny.toml"


def test_qkd_link_off_reroutes_path_and_revokes_dropped_nodes():
    core, _ = core_with(EDGES)
    d, _ = core.request_path(PathRequest("A", "D"), 1.0)
    pid = d.path_ids[0]
    acts = core.agent_report("E", [LinkState("E-D", "D", 1e5, 0, status=LINK_OFF)], 2.0)
    assert core.paths[pid].nodes == ["A", "B", "C", "D"]
    assert [(r.node_id, r.path_id, r.reason) for r in acts if isinstance(r, Revoke)] == [("E", pid, "rerouted")]
    assert set(auths(acts)) == {"A", "B", "C", "D"}
    assert ("E-D", "E") not in core.state.reserved and core.state.reserved[("C-D", "C")] == 256
    assert core.counters["rerouted"] == 1


def test_agent_gone_revokes_when_no_alternative():
    core, _ = core_with([("A", "B"), ("B", "C")])
    d, _ = core.request_path(PathRequest("A", "C"), 1.0)
    acts = core.agent_gone("B", 2.0)
    revokes = [a for a in acts if isinstance(a, Revoke)]
    assert {r.node_id for r in revokes} == {"A", "B", "C"}
    assert all("rerouting failed" in r.reason for r in revokes)
    assert not core.paths and not core.state.reserved
    d2, _ = core.request_path(PathRequest("A", "C"), 3.0)
    assert d2.refusal == "unknown_node" or d2.refusal == "disconnected"


def test_reregistration_brings_node_back():
    core, agents = core_with([("A", "B"), ("B", "C")])
    core.agent_gone("B", 1.0)
    assert not core.request_path(PathRequest("A", "C"), 2.0)[0].granted
    core.agent_registered(agents["B"], 3.0)
    assert core.request_path(PathRequest("A", "C"), 4.0)[0].paths == [["A", "B", "C"]]


def test_expire_and_release():
    core, _ = core_with(EDGES)
    d1, _ = core.request_path(PathRequest("A", "D"), 0.0)
    d2, _ = core.request_path(PathRequest("B", "D"), 30.0)
    assert core.expire(59.0) == []
    acts = core.expire(60.0)
    assert {a.path_id for a in acts if isinstance(a, Revoke)} == {d1.path_ids[0]}
    assert all(a.reason == "expired" for a in acts if isinstance(a, Revoke))
    assert core.release_path("no-such-path", 61.0) == []
    acts = core.release_path(d2.path_ids[0], 61.0)
    assert {a.node_id for a in acts if isinstance(a, Revoke)} == set(d2.paths[0])
    assert not core.paths and not core.state.reserved


def test_local_loopback_network_grants_without_flows():
    core, _ = core_with(EDGES, data_ip=False)
    d, acts = core.request_path(PathRequest("A", "C"), 1.0)
    assert d.granted and d.flows_installed == 0
    assert not any(isinstance(a, FlowMods) for a in acts)
    assert core.switch_down(99, 2.0) == []


def test_relay_port_of_new_agent_gets_a_drop_rule_on_every_switch():
    core, _ = core_with([("A", "B")])
    acts = core.switch_up(1, [1, 2], 0.0)
    n_before = len(core.reconciler.installed[1])
    info = AgentInfo("C", "10.0.0.9:7999", data_ip="10.0.0.9", links=(LinkState("B-C", "B", 1e5, 10**6),))
    acts = core.agent_registered(info, 1.0)
    fm = [a for a in acts if isinstance(a, FlowMods)]
    assert fm and fm[0].dpid == 1 and len(core.reconciler.installed[1]) == n_before + 1
    assert {dict(m.match.items()).get("tcp_dst") for m in fm[0].msgs} >= {7999}


def test_status_summarises_everything():
    core, _ = core_with(EDGES)
    core.request_path(PathRequest("A", "D"), 1.0)
    s = core.status()
    assert set(s["nodes"]) == set("ABCDE") and s["nodes"]["A"]["online"]
    assert s["links"]["A-E"]["status"] == "ACTIVE" and s["counters"]["granted"] == 1
    assert len(s["paths"]) == 1 and s["flows"] == 0


def test_quiet_vkms_host_is_arp_probed_until_seen():
    from os_ken.lib.packet import arp, packet
    from tests.helpers.qusec_net import ring_switches

    from quseccontroller import ofmsgs
    core, agents = core_with([("A", "B")])
    net = ring_switches(core, agents, 3)
    info = AgentInfo("C", "10.0.0.7:7000", data_ip="10.0.0.7", links=(LinkState("B-C", "B", 1e5, 10**6),))
    net.apply(core.agent_registered(info, 10.0))
    probes = [(d, m) for d, m in net.packet_outs]
    # Every switch probes out of its edge ports: not ring ports (2, 3), not ports with known hosts.
    assert sorted((d, tuple(a.port for a in m.actions)) for d, m in probes) == [(1, (4,)), (2, (4,)), (3, (1, 4))]
    req = packet.Packet(probes[0][1].data).get_protocol(arp.arp)
    assert (req.opcode, req.dst_ip, req.src_ip, req.src_mac) == (1, "10.0.0.7", "0.0.0.0", ofmsgs.PROBE_MAC)
    assert not [a for a in core.expire(12.0) if isinstance(a, FlowMods)]        # rate limited
    assert [a for a in core.expire(15.0) if isinstance(a, FlowMods)]            # probed again
    # Our own probe seen on an undiscovered link is not a host.
    assert core.host_seen(ofmsgs.PROBE_MAC, "0.0.0.0", 2, 4, 16.0) == []
    net.apply(core.host_seen("00:00:00:00:00:77", "10.0.0.7", 3, 4, 16.0))
    assert not [a for a in core.expire(30.0) if isinstance(a, FlowMods)]


def test_a_path_setup_on_a_big_network_only_looks_at_the_flows_it_changes(monkeypatch):
    # 75 switches in a ring, one host each: a one-hop path touches two switches and a handful
    # of relay flows; reconciling must not walk every flow of every switch (it did, per call).
    from tests.helpers.qusec_net import ring_switches

    from quseccontroller import ofmsgs as om
    edges = [(f"N{i:02d}", f"N{i + 1:02d}") for i in range(74)]
    core, agents = core_with(edges)
    ring_switches(core, agents, 75)
    reads = []
    body = om.FlowSpec.body
    monkeypatch.setattr(om.FlowSpec, "body", property(lambda f: reads.append(1) or body.fget(f)))
    d, acts = core.request_path(PathRequest("N10", "N11"), 1.0)
    assert d.granted
    assert sorted(a.dpid for a in acts if isinstance(a, FlowMods)) == [11, 12]
    assert len(reads) <= 20, len(reads)
    reads.clear()
    acts = core.release_path(d.path_ids[0], 2.0)
    assert sorted(a.dpid for a in acts if isinstance(a, FlowMods)) == [11, 12]
    assert len(reads) <= 20, len(reads)


def test_latency_metric_takes_hop_latencies_from_the_inventory():
    # A-E-D is the short route (2 hops) but slow; A-B-C-D has more hops and is fast.
    from tests.helpers.qusec_net import inventory_for
    inv = inventory_for(EDGES + [("D", "F")], dict(zip(("A-B", "B-C", "C-D", "A-E", "E-D", "D-F"),
                                                       (1.0, 1.5, 0.5, 10.0, 10.0, None))))
    by = {m: parse({"default": {"metric": m}}, f"{m}.toml") for m in ("latency", "hops")}
    core, _ = core_with(EDGES, policy=by["latency"], inventory=inv)
    assert core.state.links["A-E"].latency_ms == 10.0   # applied when the agents reported the link
    d, _ = core.request_path(PathRequest("A", "D"), 1.0)
    assert d.paths == [["A", "B", "C", "D"]] and d.cost == 3.0 and "latency metric" in d.reason
    core.reload_policy(by["hops"])
    assert core.request_path(PathRequest("A", "D"), 2.0)[0].paths == [["A", "E", "D"]]
    # Without an inventory every hop costs the default 1 ms: "latency" ranks like "hops".
    core.reload_policy(by["latency"])
    core.set_inventory(None)
    d, _ = core.request_path(PathRequest("A", "D"), 3.0)
    assert d.paths == [["A", "E", "D"]] and d.cost == 2.0
    plain, _ = core_with(EDGES, policy=by["latency"])
    assert plain.request_path(PathRequest("A", "D"), 1.0)[0].paths == [["A", "E", "D"]]
    # A reload reaches links already known and those that appear later.
    core.set_inventory(inv)
    f_node = AgentInfo("F", "10.0.0.9:7000", links=(LinkState("D-F", "D", 1e5, 10**6),),
                       saes=("sae-f",))
    core.agent_registered(f_node, 4.0)
    core.agent_report("D", [LinkState("D-F", "F", 1e5, 10**6)], 4.0)   # both ends report D-F
    assert core.state.links["D-F"].latency_ms == 1.0
    core.set_inventory(inventory_for(EDGES + [("D", "F")], {"D-F": 7}))
    assert core.state.links["D-F"].latency_ms == 7.0 and core.state.links["A-E"].latency_ms == 1.0
    assert core.request_path(PathRequest("A", "F"), 5.0)[0].cost == 9.0


def test_a_large_network_is_asked_to_report_less_often() -> None:
    from tests.helpers.qusec_net import inventory_for

    from quseccontroller.core import QuSeCCore
    from quseccontroller.state import REPORT_INTERVAL_S, REPORTS_PER_S
    small = QuSeCCore(inventory=inventory_for([("A", "B")]))
    assert small.report_interval_ms() == REPORT_INTERVAL_S * 1000
    edges = [(f"N{i}", f"N{i + 1}") for i in range(4999)]
    big = QuSeCCore(inventory=inventory_for(edges))
    assert big.report_interval_ms() == 5000 * 1000 // REPORTS_PER_S     # 10 s for 5,000 nodes
    assert big.state.report_interval_s == 5000 / REPORTS_PER_S   # a report may be that old: disputes allow for it
