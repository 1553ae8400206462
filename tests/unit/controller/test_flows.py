"""Flow planning, tested semantically on a fake OpenFlow 1.3 table: where do packets go?"""
from __future__ import annotations

import pytest
from tests.helpers.fakeoftable import CONTROLLER
from tests.helpers.qusec_net import RELAY_PORT, arp_pkt, core_with, mac_of, relay_pkt, ring_switches

from quseccontroller import ofmsgs
from quseccontroller.actions import FlowMods, PathRequest

# QKD chain A-B-C-D plus a chord A-D; classical: a ring of 4 switches, node i on switch i+1.
EDGES = [("A", "B"), ("B", "C"), ("C", "D")]
IPS = {"A": "10.0.0.1", "B": "10.0.0.2", "C": "10.0.0.3", "D": "10.0.0.4"}
STRANGER = "10.0.0.99"


def setup(n_switches=4):
    core, agents = core_with(EDGES)
    net = ring_switches(core, agents, n_switches, extra_hosts={STRANGER: (3, 4)})
    return core, agents, net


def grant(core, net, src="A", dst="D", now=1.0):
    d, acts = core.request_path(PathRequest(src, dst), now)
    assert d.granted, d.reason
    net.apply(acts)
    return d


def test_relay_hop_forwarded_both_directions_only_when_authorised():
    core, _, net = setup()
    # Before any path: A -> B on the relay port is dropped at A's switch.
    assert net.trace(1, 1, relay_pkt(IPS["A"], IPS["B"])) == []
    d = grant(core, net)
    assert d.paths == [["A", "B", "C", "D"]]
    # Each hop a -> b reaches b's host port (switch of b, port 1), and b's answers come back.
    for a, b, sw_a, sw_b in (("A", "B", 1, 2), ("B", "C", 2, 3), ("C", "D", 3, 4)):
        assert net.trace(sw_a, 1, relay_pkt(IPS[a], IPS[b])) == [(sw_b, 1)]
        back = dict(relay_pkt(IPS[b], IPS[a], dst_port=40000, src_port=RELAY_PORT))
        assert net.trace(sw_b, 1, back) == [(sw_a, 1)]
    # Not a hop of the path: A straight to D on the relay port stays dropped.
    assert net.trace(1, 1, relay_pkt(IPS["A"], IPS["D"])) == []


def test_unauthorised_host_to_relay_port_is_dropped_but_ordinary_traffic_flows():
    core, _, net = setup()
    grant(core, net)
    assert net.trace(3, 4, relay_pkt(STRANGER, IPS["B"])) == []
    assert net.trace(3, 4, relay_pkt(STRANGER, IPS["D"])) == []
    # The lockdown is for relay ports only: other TCP traffic to a vKMS host is forwarded.
    web = dict(relay_pkt(STRANGER, IPS["B"], dst_port=443))
    assert net.trace(3, 4, web) == [(2, 1)]


def test_relay_flows_priority_cookie_and_timeouts():
    core, _, net = setup()
    d = grant(core, net, now=10.0)
    ap = core.paths[d.path_ids[0]]
    relay = [e for t in net.tables.values() for e in t.entries if e.priority == ofmsgs.PRIORITY_RELAY]
    assert relay and d.flows_installed == len(relay)
    assert all(e.cookie == ap.cookie and e.cookie & ofmsgs.COOKIE_APP_MASK == ofmsgs.COOKIE_APP
               for e in relay)
    assert all(e.hard_timeout == 60 and 0 < e.idle_timeout <= 60 for e in relay)
    assert ofmsgs.PRIORITY_RELAY > ofmsgs.PRIORITY_RELAY_DROP > ofmsgs.PRIORITY_UNICAST
    # Everything we installed carries the app's cookie prefix.
    assert all(e.cookie & ofmsgs.COOKIE_APP_MASK == ofmsgs.COOKIE_APP
               for t in net.tables.values() for e in t.entries)


def test_release_removes_relay_flows_and_drops_again():
    core, _, net = setup()
    d = grant(core, net)
    assert net.trace(1, 1, relay_pkt(IPS["A"], IPS["B"])) == [(2, 1)]
    acts = core.release_path(d.path_ids[0], 2.0)
    assert any(isinstance(a, FlowMods) and any(m.command == 3 for m in a.msgs) for a in acts)
    net.apply(acts)
    assert net.trace(1, 1, relay_pkt(IPS["A"], IPS["B"])) == []
    assert not [e for t in net.tables.values() for e in t.entries if e.priority == ofmsgs.PRIORITY_RELAY]


def test_expiry_deletes_flows():
    core, _, net = setup()
    grant(core, net, now=0.0)
    net.apply(core.expire(30.0))
    assert core.paths
    net.apply(core.expire(60.0))
    assert not core.paths
    assert net.trace(1, 1, relay_pkt(IPS["A"], IPS["B"])) == []


def test_arp_broadcast_on_a_ring_reaches_every_host_once_without_loops():
    core, _, net = setup()
    arp = arp_pkt(IPS["A"], "10.0.0.200")
    exits = net.trace(1, 1, arp)   # trace raises on a loop
    # Every port that is not a switch link hears it once: hosts seen or not (port 4s are silent).
    assert exits == sorted([(2, 1), (3, 1), (4, 1), (1, 4), (2, 4), (3, 4), (4, 4)], key=repr)
    # ARP for a known host goes straight to it.
    assert net.trace(1, 1, dict(arp, arp_tpa=IPS["C"])) == [(3, 1)]


def test_ipv4_unicast_shortest_and_unknown_destination_to_controller():
    core, _, net = setup()
    ping = dict(eth_type=0x0800, ip_proto=1, ipv4_src=IPS["A"], ipv4_dst=IPS["C"])
    assert net.trace(1, 1, ping) == [(3, 1)]
    unknown = dict(ping, ipv4_dst="10.9.9.9")
    assert net.trace(1, 1, unknown) == [(1, CONTROLLER)]


def test_link_down_reroutes_relay_flows_around_the_ring():
    core, _, net = setup()
    grant(core, net)
    # Cut switch 1 <-> switch 2 (ports 1:2 and 2:3): A -> B relay must go the long way round.
    net.unplug((1, 2))
    acts = core.link_down((1, 2), (2, 3), 5.0)
    assert acts
    net.apply(acts)
    assert net.trace(1, 1, relay_pkt(IPS["A"], IPS["B"])) == [(2, 1)]
    assert net.trace(2, 1, relay_pkt(IPS["B"], IPS["A"], 40000, RELAY_PORT)) == [(1, 1)]
    arp = arp_pkt(IPS["B"], "10.0.0.200")
    exits = net.trace(2, 1, arp)
    assert len(exits) == len(set(exits)) and {(1, 1), (3, 1), (4, 1), (3, 4)} <= set(exits)
    # port_down on the other side of another link behaves the same.
    net.unplug((3, 2))
    net.apply(core.port_down(3, 2, 6.0))
    # The ring is now cut twice ({1, 4} and {2, 3}): A->B and C->D cannot be planned, B->C can.
    assert net.trace(3, 1, relay_pkt(IPS["C"], IPS["D"])) == []
    assert net.trace(2, 1, relay_pkt(IPS["B"], IPS["C"])) == [(3, 1)]
    assert core.status()["paths"][next(iter(core.paths))]["unplanned_hops"] == 2


def test_switch_reconnect_reinstalls_everything_after_deleting_our_flows():
    core, _, net = setup()
    grant(core, net)
    acts = core.switch_up(2, [1, 2, 3, 4], 3.0)
    first = acts[0]
    assert isinstance(first, FlowMods) and first.dpid == 2
    assert first.msgs[0].command == 3 and first.msgs[0].cookie_mask == ofmsgs.COOKIE_APP_MASK
    net.tables[2].entries.clear()   # what a real reconnect looks like
    net.apply(acts)
    assert net.trace(1, 1, relay_pkt(IPS["A"], IPS["B"])) == [(2, 1)]


def test_no_switches_means_paths_without_flows():
    core, _ = core_with(EDGES, data_ip=False)
    d, acts = core.request_path(PathRequest("A", "D"), 1.0)
    assert d.granted and d.flows_installed == 0
    assert not [a for a in acts if isinstance(a, FlowMods)]


def test_grid_broadcast_reaches_each_host_exactly_once_and_unicast_is_loop_free():
    # 3x3 grid of switches (many cycles); port 1 = host, ports 2..5 = E/W/S/N neighbours.
    from tests.helpers.fakeoftable import FakeNetwork

    from quseccontroller.core import QuSeCCore
    core = QuSeCCore()
    sw = {(r, c): 1 + 3 * r + c for r in range(3) for c in range(3)}
    wiring = {}
    for (r, c), d in sw.items():
        if c < 2:
            wiring[(d, 2)] = (sw[(r, c + 1)], 3)
        if r < 2:
            wiring[(d, 4)] = (sw[(r + 1, c)], 5)
    net = FakeNetwork(wiring)
    for d in sw.values():
        net.apply(core.switch_up(d, [1, 2, 3, 4, 5], 0.0))
    for a, b in sorted(wiring.items()):
        net.apply(core.link_up(a, b, 0.0))
    for d in sw.values():
        net.apply(core.host_seen(f"00:00:00:00:00:{d:02x}", f"10.0.1.{d}", d, 1, 0.0))
    hosts = {(d, 1) for d in sw.values()}
    unwired = {(d, p) for d in sw.values() for p in range(2, 6) if (d, p) not in net.wiring}
    for d in sw.values():
        exits = net.trace(d, 1, dict(eth_type=0x0806, arp_op=1, arp_tpa="10.9.9.9",
                                     eth_src=f"00:00:00:00:00:{d:02x}", arp_spa=f"10.0.1.{d}"))
        # each host once, none twice, and every silent edge port of the border switches once
        assert sorted(exits) == sorted((hosts | unwired) - {(d, 1)})
    for d, p in sorted(unwired):   # a silent port's first packet is for the controller to learn
        assert net.trace(d, p, dict(eth_type=0x0806, arp_op=1, arp_tpa="10.9.9.9")) == [(d, CONTROLLER)]
        for d2 in sw.values():
            if d2 != d:
                ping = dict(eth_type=0x0800, ip_proto=1, ipv4_src=f"10.0.1.{d}", ipv4_dst=f"10.0.1.{d2}")
                assert net.trace(d, 1, ping) == [(d2, 1)]


def _random_switch_net(seed: int, n: int, extra: int):
    """n switches: a random tree plus ``extra`` random cross links; host i on switch i port 1."""
    import random

    from tests.helpers.fakeoftable import FakeNetwork

    from quseccontroller.core import QuSeCCore
    rng = random.Random(seed)
    next_port = {d: 2 for d in range(1, n + 1)}
    wiring = {}
    edges = {(rng.randrange(1, d), d) for d in range(2, n + 1)}
    while extra and len(edges) < n * (n - 1) // 2:
        a, b = sorted(rng.sample(range(1, n + 1), 2))
        if (a, b) not in edges:
            edges.add((a, b))
            extra -= 1
    for a, b in sorted(edges):
        wiring[(a, next_port[a])] = (b, next_port[b])
        next_port[a] += 1
        next_port[b] += 1
    core = QuSeCCore()
    net = FakeNetwork(wiring)
    for d in range(1, n + 1):   # plus one silent edge port per switch (no host seen there)
        net.apply(core.switch_up(d, list(range(1, next_port[d] + 1)), 0.0))
    for a, b in sorted(wiring.items(), key=lambda kv: rng.random()):
        net.apply(core.link_up(a, b, 0.0))
    for d in range(1, n + 1):
        net.apply(core.host_seen(f"02:00:00:00:00:{d:02x}", f"10.0.2.{d}", d, 1, 0.0))
    net.silent = {(d, next_port[d]) for d in range(1, n + 1)}
    return core, net


@pytest.mark.parametrize("seed", range(12))
def test_random_cyclic_networks_flood_once_and_route_loop_free(seed):
    n = 3 + seed % 6
    core, net = _random_switch_net(seed, n, extra=seed % 5 + 1)
    hosts = {(d, 1) for d in range(1, n + 1)}
    for d in range(1, n + 1):
        who_has = dict(eth_type=0x0806, arp_op=1, arp_tpa="10.0.9.9", eth_src=f"02:00:00:00:00:{d:02x}",
                       arp_spa=f"10.0.2.{d}")
        assert sorted(net.trace(d, 1, who_has)) == \
            sorted((hosts | net.silent) - {(d, 1)})
        (silent,) = [p for p in net.silent if p[0] == d]
        assert net.trace(*silent, dict(eth_type=0x0806, arp_op=1, arp_tpa="10.0.9.9")) == \
            [(d, CONTROLLER)]
        for d2 in range(1, n + 1):
            if d2 != d:
                pkt = dict(eth_type=0x0800, ip_proto=6, ipv4_src=f"10.0.2.{d}",
                           ipv4_dst=f"10.0.2.{d2}", tcp_src=5555, tcp_dst=80)
                assert net.trace(d, 1, pkt) == [(d2, 1)]


def test_relay_flows_resent_later_keep_the_authorisation_expiry():
    core, _, net = setup()
    grant(core, net, now=0.0)                      # expires at 60
    net.tables[2].entries.clear()
    net.apply(core.switch_up(2, [1, 2, 3, 4], 40.0))
    relay = [e for e in net.tables[2].entries if e.priority == ofmsgs.PRIORITY_RELAY]
    assert relay and all(e.hard_timeout == 20 and e.idle_timeout == 20 for e in relay)
    assert net.trace(1, 1, relay_pkt(IPS["A"], IPS["B"])) == [(2, 1)]


def test_unchanged_switches_get_no_messages():
    core, _, net = setup(n_switches=4)
    d, acts = core.request_path(PathRequest("A", "B"), 1.0)   # one hop, switches 1 and 2
    assert sorted(a.dpid for a in acts if isinstance(a, FlowMods)) == [1, 2]
    assert core.host_seen("00:00:00:00:00:01", IPS["A"], 1, 1, 2.0) == []   # nothing new


def test_every_message_serialises_as_openflow_1_3():
    import copy

    from os_ken.ofproto import ofproto_protocol, ofproto_v1_3

    from quseccontroller.state import AgentInfo, LinkState
    core, _, net = setup()
    acts = list(core.request_path(PathRequest("A", "D"), 1.0)[1])
    acts += core.agent_registered(AgentInfo("Q", "10.0.0.50:7100", data_ip="10.0.0.50",
                                            links=(LinkState("D-Q", "D", 1e5, 10**6),)), 2.0)
    acts += core.switch_up(3, [1, 2, 3, 4], 3.0) + core.release_path(next(iter(core.paths)), 4.0)
    acts += core.link_down((1, 2), (2, 3), 5.0) + core.port_down(1, 2, 6.0)
    dp = ofproto_protocol.ProtocolDesc(version=ofproto_v1_3.OFP_VERSION)
    kinds = set()
    for a in acts:
        for msg in getattr(a, "msgs", ()):
            bound = copy.copy(msg)
            bound.datapath, bound.xid, bound.buf = dp, 0, None
            bound.serialize()
            assert bound.buf[0] == ofproto_v1_3.OFP_VERSION and len(bound.buf) >= 8
            kinds.add((type(msg).__name__, getattr(msg, "command", None)))
    assert {("OFPFlowMod", 0), ("OFPFlowMod", 3), ("OFPFlowMod", 4), ("OFPPacketOut", None)} <= kinds


def test_a_source_port_equal_to_a_relay_port_is_not_dropped():
    # Relay services may listen on ephemeral ports; another host's connection that happens to
    # use the same number as its source port is ordinary traffic.
    core, _, net = setup()
    web = dict(relay_pkt(STRANGER, IPS["B"], dst_port=443, src_port=RELAY_PORT))
    assert net.trace(3, 4, web) == [(2, 1)]


def test_two_paths_sharing_a_hop_keep_it_open_until_both_are_gone():
    core, _, net = setup()
    d1 = grant(core, net, "A", "C", now=0.0)     # A-B-C, expires 60
    d2 = grant(core, net, "A", "B", now=30.0)    # A-B, expires 90: shares hop A->B
    entries = [e for e in net.tables[1].entries if e.priority == ofmsgs.PRIORITY_RELAY]
    assert entries and all(e.cookie == core.paths[d2.path_ids[0]].cookie for e in entries)
    net.apply(core.release_path(d2.path_ids[0], 31.0))
    assert net.trace(1, 1, relay_pkt(IPS["A"], IPS["B"])) == [(2, 1)]     # still d1's hop
    net.apply(core.release_path(d1.path_ids[0], 32.0))
    assert net.trace(1, 1, relay_pkt(IPS["A"], IPS["B"])) == []


def test_spoofed_relay_traffic_from_a_host_on_a_path_nodes_switch_is_dropped():
    # A stranger on A's switch (port 4) forges A's address toward B's relay port: the relay
    # flows match the port A's vKMS host is attached to, so the forgery is dropped there.
    core, agents = core_with(EDGES)
    net = ring_switches(core, agents, 4, extra_hosts={STRANGER: (1, 4)})
    grant(core, net)
    assert net.trace(1, 1, relay_pkt(IPS["A"], IPS["B"])) == [(2, 1)]
    assert net.trace(1, 4, relay_pkt(IPS["A"], IPS["B"])) == []
    # B's answers still come back (the reverse flow matches B's host port).
    back = relay_pkt(IPS["B"], IPS["A"], dst_port=40000, src_port=RELAY_PORT)
    assert net.trace(2, 1, back) == [(1, 1)]
    assert net.tables[2].lookup(dict(back, in_port=1)).priority == ofmsgs.PRIORITY_RELAY
    assert net.tables[2].lookup(dict(back, in_port=4)).priority != ofmsgs.PRIORITY_RELAY
    # On a transit switch only the inter-switch port toward the sender is accepted: a relay
    # flow never matches a packet entering from a host port there.
    relay = [e for t in net.tables.values() for e in t.entries
             if e.priority == ofmsgs.PRIORITY_RELAY]
    assert relay and all("in_port" in e.match for e in relay)


def test_relay_flows_on_transit_switches_match_the_inter_switch_port():
    # Hop A -> C across switch 2 (ring of 4, A on 1, B on 2, C on 3): switch 2 accepts A's
    # relay packets only from its link toward switch 1 (port 3), C's answers only from port 2.
    core, agents = core_with([("A", "B"), ("A", "C")])
    net = ring_switches(core, agents, 4)
    d, acts = core.request_path(PathRequest("A", "C"), 1.0)
    assert d.granted
    net.apply(acts)
    ins = sorted((e.match["in_port"], e.match.get("tcp_dst"), e.outputs)
                 for e in net.tables[2].entries if e.priority == ofmsgs.PRIORITY_RELAY)
    assert ins == [(2, None, (3,)), (3, RELAY_PORT, (2,))]


def test_a_host_that_never_spoke_receives_arp_and_is_learned_from_its_answer():
    # Ring of 4; only A has spoken. A stranger sits silently on switch 3 port 4.
    core, agents = core_with(EDGES)
    net = ring_switches(core, agents, 4)
    quiet = "10.0.0.77"
    who_has = arp_pkt(IPS["A"], quiet)
    assert (3, 4) in net.trace(1, 1, who_has)            # the request reaches the silent port
    # Its answer (or any first packet) goes to the controller, which learns it ...
    answer = arp_pkt(quiet, IPS["A"], op=2, eth_src="00:00:00:00:02:01")
    assert net.trace(3, 4, answer) == [(3, CONTROLLER)]
    net.apply(core.host_seen("00:00:00:00:02:01", quiet, 3, 4, 1.0))
    # ... and once known, the same packet (re-injected by the app) and unicast are forwarded.
    assert net.trace(3, 4, answer) == [(1, 1)]
    ping = dict(eth_type=0x0800, ip_proto=1, ipv4_src=IPS["A"], ipv4_dst=quiet)
    assert net.trace(1, 1, ping) == [(3, 4)]


def test_arp_before_link_discovery_goes_to_the_controller_not_round_the_ring():
    # Switches up, no LLDP link known yet: every port looks like an edge port. A flood must
    # end at the controller on the neighbouring switches, never loop.
    from tests.helpers.fakeoftable import FakeNetwork

    from quseccontroller.core import QuSeCCore
    core = QuSeCCore()
    wiring = {(d, 2): (d % 4 + 1, 3) for d in range(1, 5)}
    net = FakeNetwork(wiring)
    for d in range(1, 5):
        net.apply(core.switch_up(d, [1, 2, 3], 0.0))
    net.apply(core.host_seen("00:00:00:00:00:01", "10.0.0.1", 1, 1, 0.0))
    exits = net.trace(1, 1, arp_pkt("10.0.0.1", "10.0.0.9", eth_src="00:00:00:00:00:01"))
    assert exits == sorted([(2, CONTROLLER), (4, CONTROLLER)], key=repr)


def test_flow_messages_reuse_their_match_and_still_serialise():
    # os-ken normalises every match field on OFPMatch construction (the largest cost of a path
    # setup): a match is built once per distinct FlowSpec match, shared by later messages.
    import copy

    from os_ken.ofproto import ofproto_protocol, ofproto_v1_3

    fs = ofmsgs.spec(ofmsgs.PRIORITY_RELAY, (2,), ofmsgs.path_cookie(1), 9, 9, in_port=1,
                     eth_type=0x0800, ip_proto=6, ipv4_src="10.7.0.1", ipv4_dst="10.7.0.2",
                     tcp_dst=7123)
    msgs = [ofmsgs.add(fs), ofmsgs.add(fs), ofmsgs.delete_strict(fs)]
    assert msgs[0].match is msgs[1].match is msgs[2].match
    dp = ofproto_protocol.ProtocolDesc(version=ofproto_v1_3.OFP_VERSION)
    bufs = []
    for m in msgs[:2]:
        bound = copy.copy(m)
        bound.datapath, bound.xid, bound.buf = dp, 0, None
        bound.serialize()
        bufs.append(bytes(bound.buf))
    assert bufs[0] == bufs[1] and b"\x0a\x07\x00\x02" in bufs[0]


def test_a_flow_match_is_converted_to_wire_format_once(monkeypatch):
    import copy

    from os_ken.ofproto import ofproto_protocol, ofproto_v1_3
    from os_ken.ofproto import ofproto_v1_3_parser as parser

    fs = ofmsgs.spec(ofmsgs.PRIORITY_RELAY, (3,), ofmsgs.path_cookie(2), 5, 5, in_port=2,
                     eth_type=0x0800, ip_proto=6, ipv4_src="10.7.1.1", ipv4_dst="10.7.1.2",
                     tcp_src=7321)
    dp = ofproto_protocol.ProtocolDesc(version=ofproto_v1_3.OFP_VERSION)

    def wire(msg):
        bound = copy.copy(msg)
        bound.datapath, bound.xid, bound.buf = dp, 7, None
        bound.serialize()
        return bytes(bound.buf)

    first = wire(ofmsgs.add(fs))
    plain = ofmsgs.add(fs)
    plain.match = parser.OFPMatch(**dict(fs.match))
    assert first == wire(plain)                      # same bytes as os-ken's own match
    conversions = []
    real = ofproto_v1_3.oxm_from_user
    monkeypatch.setattr(ofproto_v1_3, "oxm_from_user",
                        lambda *a: conversions.append(a) or real(*a))
    assert wire(ofmsgs.add(fs)) == first and wire(ofmsgs.delete_strict(fs))[1] == 14
    assert conversions == []


def test_flows_do_not_ask_for_flow_removed_messages():
    # The core removes what it installed (by cookie or strictly) and never reads flow-removed
    # messages: asking for one per expiring or deleted relay flow only loads the controller.
    core, _, net = setup()
    d, acts = core.request_path(PathRequest("A", "D"), 1.0)
    acts += core.release_path(d.path_ids[0], 2.0)
    adds = [m for a in acts if isinstance(a, FlowMods) for m in a.msgs
            if type(m).__name__ == "OFPFlowMod" and m.command == 0]
    assert adds and all(m.flags == 0 for m in adds)


def test_a_link_lldp_lost_but_still_cabled_does_not_become_a_flood_or_learning_port():
    # LLDP can time out on a loaded controller while the cable is still there: flooding into
    # it, or learning hosts on it, would carry broadcasts round the ring through the controller.
    core, agents = core_with(EDGES)
    net = ring_switches(core, agents, 4)
    net.apply(core.link_down((1, 2), (2, 3), 5.0))      # LLDP says gone; net still wired
    arp = arp_pkt("10.0.0.1", "10.0.0.200")
    for d in range(1, 5):
        exits = net.trace(d, 1, arp_pkt(f"10.0.0.{d}", "10.0.0.200"))
        assert not [e for e in exits if e[1] == CONTROLLER], exits
        assert {(x, 1) for x in range(1, 5)} - {(d, 1)} <= set(exits)
    assert core.host_seen("00:00:00:00:00:01", IPS["A"], 2, 3, 6.0) == []   # no host there
    assert net.trace(2, 3, arp) == []


def test_a_host_bouncing_between_ports_is_not_moved_at_once():
    # A broadcast that leaks over a not yet discovered link comes back to the controller from
    # the far switch with the sender's address: moving the host there each time would make the
    # controller re-route it around the ring. A move within HOST_MOVE_HOLD_S is ignored.
    from quseccontroller.state import HOST_MOVE_HOLD_S
    core, agents = core_with(EDGES)
    ring_switches(core, agents, 4, now=10.0)
    assert core.host_seen("00:00:00:00:00:01", IPS["A"], 3, 4, 10.0 + HOST_MOVE_HOLD_S / 4) == []
    assert core.state.hosts[IPS["A"]].dpid == 1
    assert core.host_seen("00:00:00:00:00:01", IPS["A"], 3, 4, 11.0 + HOST_MOVE_HOLD_S) != []
    assert (core.state.hosts[IPS["A"]].dpid, core.state.hosts[IPS["A"]].port) == (3, 4)


def test_arp_from_a_host_port_passes_only_with_the_binding_qusec_learned():
    # Stranger X on switch 3 port 4 (10.0.0.99). ARP from a host port passes the ingress table
    # only with that host's MAC and IP: a host cannot answer for, or announce, another's address.
    core, _, net = setup()
    assert net.trace(3, 4, arp_pkt(STRANGER, IPS["A"])) == [(1, 1)]          # its own: passes
    poison = arp_pkt(IPS["B"], IPS["A"], op=2, eth_src=mac_of(STRANGER))     # "B is at X's MAC"
    assert net.trace(3, 4, poison) == []
    assert net.trace(3, 4, arp_pkt(STRANGER, IPS["A"], eth_src="00:00:00:00:0f:0f")) == []
    assert net.trace(3, 4, dict(arp_pkt(IPS["B"], "10.0.0.200"), eth_src=mac_of(STRANGER))) == []
    gratuitous = arp_pkt(IPS["C"], IPS["C"], eth_src=mac_of(IPS["A"]))       # A announces C's IP
    assert net.trace(1, 1, gratuitous) == []
    # A port where no host was learned yet still sends its first packet to the controller.
    assert net.trace(4, 4, arp_pkt("10.0.0.42", IPS["A"])) == [(4, CONTROLLER)]
    # Filtering sits in table 0, forwarding in table 1: a filtered host's ARP stays unicast.
    assert net.trace(1, 1, arp_pkt(IPS["A"], IPS["C"])) == [(3, 1)]
    tables = {e.table for t in net.tables.values() for e in t.entries}
    assert tables == {ofmsgs.TABLE_INGRESS, ofmsgs.TABLE_FORWARD}
    guards = [e for e in net.tables[3].entries if e.table == ofmsgs.TABLE_INGRESS and e.match]
    assert sorted((e.priority, e.match.get("eth_src"), e.match.get("arp_spa")) for e in guards
                  if e.match["in_port"] == 4) == [
        (ofmsgs.PRIORITY_ARP_GUARD, None, None), (ofmsgs.PRIORITY_ARP_BOUND, mac_of(STRANGER), STRANGER)]


def test_a_host_that_moves_takes_its_binding_along():
    from quseccontroller.state import HOST_MOVE_HOLD_S
    core, _, net = setup()
    net.apply(core.host_seen(mac_of(STRANGER), STRANGER, 4, 4, 10.0 + HOST_MOVE_HOLD_S))
    assert net.trace(4, 4, arp_pkt(STRANGER, IPS["A"])) == [(1, 1)]
    assert net.trace(3, 4, arp_pkt(STRANGER, IPS["A"])) == [(3, CONTROLLER)]   # unlearned again


def test_relay_flows_pin_the_senders_mac():
    core, _, net = setup()
    grant(core, net)
    assert net.trace(1, 1, relay_pkt(IPS["A"], IPS["B"])) == [(2, 1)]
    # Another device behind A's port (or A's host under another MAC) is not A's vKMS.
    assert net.trace(1, 1, relay_pkt(IPS["A"], IPS["B"], eth_src="00:00:00:00:0f:0f")) == []
    back = relay_pkt(IPS["B"], IPS["A"], dst_port=40000, src_port=RELAY_PORT)
    assert net.tables[2].lookup(dict(back, in_port=1)).priority == ofmsgs.PRIORITY_RELAY
    forged = dict(back, in_port=1, eth_src="02:02:02:02:02:02")   # ordinary traffic, not the relay's
    assert net.tables[2].lookup(forged).priority != ofmsgs.PRIORITY_RELAY
    relay = [e for t in net.tables.values() for e in t.entries if e.priority == ofmsgs.PRIORITY_RELAY]
    assert relay and all(e.match["eth_src"] in {mac_of(ip) for ip in IPS.values()} for e in relay)


def test_a_relay_port_drop_covers_only_its_node_and_goes_with_it():
    # A node registering relay address X:443 used to drop tcp/443 to every host (every vKMS's
    # ETSI 014 port in Mininet), and the drop outlived the node.
    from quseccontroller.state import AgentInfo, LinkState
    core, _, net = setup()
    web = relay_pkt(STRANGER, IPS["B"], dst_port=443)
    assert net.trace(3, 4, web) == [(2, 1)]
    x = AgentInfo("X", "10.0.0.98:443", data_ip="10.0.0.98", links=(LinkState("D-X", "D", 1e5, 10**6),))
    net.apply(core.agent_registered(x, 1.0))
    net.apply(core.host_seen(mac_of("10.0.0.98"), "10.0.0.98", 4, 4, 1.0))
    assert net.trace(3, 4, web) == [(2, 1)]                                    # B's 443: open
    assert net.trace(3, 4, relay_pkt(STRANGER, "10.0.0.98", dst_port=443)) == []   # X's: dropped
    drops = {(e.match.get("ipv4_dst"), e.match["tcp_dst"]) for e in net.tables[1].entries
             if e.priority == ofmsgs.PRIORITY_RELAY_DROP}
    assert drops == {(ip, RELAY_PORT) for ip in IPS.values()} | {("10.0.0.98", 443)}
    net.apply(core.agent_gone("X", 2.0))
    assert net.trace(3, 4, relay_pkt(STRANGER, "10.0.0.98", dst_port=443)) == [(4, 4)]
    assert ("10.0.0.98", 443) not in {(e.match.get("ipv4_dst"), e.match["tcp_dst"])
                                      for e in net.tables[1].entries
                                      if e.priority == ofmsgs.PRIORITY_RELAY_DROP}
