"""Smoke test of the os-ken shim: instantiate QuSeCApp and drive every handler with fake events."""
from __future__ import annotations

import subprocess
import sys
import time
from types import SimpleNamespace

import pytest
from os_ken.controller.handler import DEAD_DISPATCHER, MAIN_DISPATCHER
from os_ken.lib.packet import arp, ethernet, ether_types, ipv4, packet, tcp
from os_ken.ofproto import ofproto_v1_3 as ofp
from os_ken.ofproto import ofproto_v1_3_parser as parser

from quseccontroller import app as app_mod
from quseccontroller import ofmsgs, options
from quseccontroller.bridge import BridgeError

RELAY_PORT = 7000


class FakeDatapath:
    """Records what the app sends; answers barriers the way a switch would."""

    def __init__(self, app: app_mod.QuSeCApp, dpid: int, ports: list[int]):
        self.app, self.id = app, dpid
        self.ofproto, self.ofproto_parser = ofp, parser
        self.ports = {p: SimpleNamespace(port_no=p) for p in ports}
        self.ports[ofp.OFPP_LOCAL] = SimpleNamespace(port_no=ofp.OFPP_LOCAL)
        self.xid = 0
        self.sent: list = []
        self.answer_barriers = True

    def set_xid(self, msg):
        self.xid += 1
        msg.set_xid(self.xid)
        return self.xid

    def send_msg(self, msg):
        assert msg.datapath is self, "message not bound to this datapath"
        if msg.xid is None:
            self.set_xid(msg)
        msg.serialize()  # what a real datapath does: fails on a malformed message
        self.sent.append(msg)
        if isinstance(msg, parser.OFPBarrierRequest) and self.answer_barriers:
            reply = parser.OFPBarrierReply(self)
            reply.xid = msg.xid
            self.app.barrier_reply_handler(SimpleNamespace(msg=reply))
        return True

    def flow_mods(self, command=None):
        return [m for m in self.sent if isinstance(m, parser.OFPFlowMod)
                and (command is None or m.command == command)]


def _ev(**kw):
    return SimpleNamespace(**kw)


def _packet_in(dp, in_port, data):
    msg = parser.OFPPacketIn(dp, buffer_id=ofp.OFP_NO_BUFFER, match=parser.OFPMatch(in_port=in_port),
                             data=bytes(data))
    return _ev(msg=msg)


def _arp(mac, ip, target):
    p = packet.Packet()
    p.add_protocol(ethernet.ethernet("ff:ff:ff:ff:ff:ff", mac, ether_types.ETH_TYPE_ARP))
    p.add_protocol(arp.arp(opcode=arp.ARP_REQUEST, src_mac=mac, src_ip=ip, dst_ip=target))
    p.serialize()
    return p.data


def _lldp_like(mac):
    p = packet.Packet()
    p.add_protocol(ethernet.ethernet("01:80:c2:00:00:0e", mac, ether_types.ETH_TYPE_LLDP))
    p.serialize()
    return bytes(p.data) + b"\x00" * 20


def _tcp(src_mac, src, dst):
    p = packet.Packet()
    p.add_protocol(ethernet.ethernet("00:00:00:00:00:99", src_mac, ether_types.ETH_TYPE_IP))
    p.add_protocol(ipv4.ipv4(src=src, dst=dst, proto=6))
    p.add_protocol(tcp.tcp(src_port=40000, dst_port=RELAY_PORT, bits=tcp.TCP_SYN))
    p.serialize()
    return p.data


def _link(a, b):
    return _ev(link=SimpleNamespace(src=SimpleNamespace(dpid=a[0], port_no=a[1]),
                                    dst=SimpleNamespace(dpid=b[0], port_no=b[1])))


def _register(node, ip, links):
    return {"node_id": node, "relay_addr": f"{ip}:{RELAY_PORT}", "data_ip": ip, "trust_level": 3,
            "etsi014_url": f"https://{ip}:8443", "etsi004_addr": f"{ip}:9004", "saes": [f"sae-{node}"],
            "links": [{"link_id": lid, "peer_node": peer, "skr_bps": 1e6, "stored_bits": 10**7,
                       "consumption_bps": 0.0, "status": "ACTIVE", "kms_kind": "simulated"}
                      for lid, peer in links], "agent_version": "test"}


@pytest.fixture
def app(tmp_path):
    app_mod.CONF.set_override("state_dir", str(tmp_path), group="qusec")
    app_mod.CONF.set_override("gateway", "standalone", group="qusec")
    try:
        a = app_mod.QuSeCApp()
        pushes = []
        a.bridge.push = lambda kind, body: pushes.append((kind, body)) or 1
        a.pushes = pushes
        yield a
    finally:
        app_mod.CONF.clear_override("state_dir", group="qusec")
        app_mod.CONF.clear_override("gateway", group="qusec")


def _line(app):
    """Three switches in a line, hosts A, B, C on port 1 of s1, s2, s3."""
    dps = {d: FakeDatapath(app, d, [1, 2, 3]) for d in (1, 2, 3)}
    for dp in dps.values():
        app.switch_features_handler(_ev(msg=SimpleNamespace(datapath=dp)))
        app.state_change_handler(_ev(datapath=dp, state=MAIN_DISPATCHER))
    app.link_add_handler(_link((1, 2), (2, 2)))
    app.link_add_handler(_link((2, 2), (1, 2)))  # reverse direction: deduplicated
    app.link_add_handler(_link((2, 3), (3, 2)))
    for node, ip, links in (("A", "10.0.0.1", [("AB", "B")]),
                            ("B", "10.0.0.2", [("AB", "A"), ("BC", "C")]),
                            ("C", "10.0.0.3", [("BC", "B")])):
        app.handle_bridge("register", _register(node, ip, links))
    for d, ip in ((1, "10.0.0.1"), (2, "10.0.0.2"), (3, "10.0.0.3")):
        app.packet_in_handler(_packet_in(dps[d], 1, _arp(f"00:00:00:00:00:0{d}", ip, "10.0.0.254")))
    return dps


def test_switch_up_installs_table_miss_and_relay_drop(app):
    dp = FakeDatapath(app, 1, [1, 2])
    app.switch_features_handler(_ev(msg=SimpleNamespace(datapath=dp)))
    app.state_change_handler(_ev(datapath=dp, state=MAIN_DISPATCHER))
    adds = dp.flow_mods(ofp.OFPFC_ADD)
    assert any(m.priority == ofmsgs.PRIORITY_MISS and len(m.match.fields) == 0 for m in adds)
    assert all(m.cookie & ofmsgs.COOKIE_APP_MASK == ofmsgs.COOKIE_APP for m in dp.flow_mods())
    assert isinstance(dp.sent[-1], parser.OFPBarrierRequest)
    assert app.status()["switches"] == [1]
    app.handle_bridge("register", _register("A", "10.0.0.1", []))
    drops = [m for m in dp.flow_mods(ofp.OFPFC_ADD) if m.priority == ofmsgs.PRIORITY_RELAY_DROP]
    assert drops and all(not m.instructions for m in drops)


def test_topology_packet_in_and_path_lifecycle(app):
    dps = _line(app)
    assert app.status()["switch_links"] == 2
    assert app.core.status()["hosts"] == 3
    # The first ARP is sent back through the table once the host is known.
    assert any(isinstance(m, parser.OFPPacketOut) for m in dps[1].sent)
    n_out = sum(isinstance(m, parser.OFPPacketOut) for m in dps[1].sent)
    app.packet_in_handler(_packet_in(dps[1], 1, _arp("00:00:00:00:00:01", "10.0.0.1", "10.0.0.254")))
    assert sum(isinstance(m, parser.OFPPacketOut) for m in dps[1].sent) == n_out  # no loop
    # LLDP and packets on a switch-to-switch port never teach a host.
    app.packet_in_handler(_packet_in(dps[1], 1, _lldp_like("00:00:00:00:00:aa")))
    app.packet_in_handler(_packet_in(dps[1], 2, _tcp("00:00:00:00:00:bb", "10.0.0.9", "10.0.0.3")))
    assert app.core.status()["hosts"] == 3

    reply = app.handle_bridge("request_path", {"src_node": "A", "dst_node": "C", "key_size_bits": 256,
                                               "key_count": 1})
    assert reply["granted"], reply
    (path,) = reply["paths"]
    assert [h["node_id"] for h in path["hops"]] == ["A", "B", "C"]
    assert [h["relay_addr"] for h in path["hops"]] == [f"10.0.0.{i}:{RELAY_PORT}" for i in (1, 2, 3)]
    assert {a["node_id"] for a in reply["authorisations"]} == {"A", "B", "C"}
    assert reply["flows_installed"] > 0 and reply["app_ms"] >= 0
    relay = [m for d in dps.values() for m in d.flow_mods(ofp.OFPFC_ADD)
             if m.priority == ofmsgs.PRIORITY_RELAY]
    assert relay and all(m.cookie & ofmsgs.KIND_PATH for m in relay)
    assert {m.hard_timeout for m in relay} <= set(range(1, int(app.cfg.path_ttl) + 2))

    released = app.handle_bridge("release", {"path_id": path["path_id"]})
    assert released == {"released": True}
    assert ("revoke", {"node_id": "B", "path_id": path["path_id"], "reason": "released"}) in app.pushes
    assert any(m.command == ofp.OFPFC_DELETE and m.cookie & ofmsgs.KIND_PATH
               for d in dps.values() for m in d.flow_mods())
    assert app.handle_bridge("release", {"path_id": path["path_id"]}) == {"released": False}


def test_refusal_and_bad_requests(app):
    _line(app)
    reply = app.handle_bridge("request_path", {"src_node": "A", "dst_node": "Z"})
    assert not reply["granted"] and reply["refusal"] == "unknown_node"
    with pytest.raises(BridgeError) as err:
        app.handle_bridge("request_path", {"src_node": "A"})
    assert err.value.code == "invalid" and err.value.details == {"field": "dst_node"}
    with pytest.raises(BridgeError) as err:
        app.handle_bridge("register", {"node_id": "X", "links": [{"link_id": "L", "peer_node": "Y",
                                                                  "status": "BROKEN"}]})
    assert "status" in err.value.message
    with pytest.raises(BridgeError):
        app.handle_bridge("report", {"node_id": 5})
    with pytest.raises(BridgeError):
        app.handle_bridge("frobnicate", {})


def test_unconfirmed_flows_fail_the_request_and_release_it(app):
    dps = _line(app)
    dps[2].answer_barriers = False
    app.sender.barrier_timeout = 0.2   # the [qusec] barrier_timeout
    t0 = time.monotonic()
    with pytest.raises(BridgeError) as err:
        app.handle_bridge("request_path", {"src_node": "A", "dst_node": "C"})
    assert err.value.code == "unavailable" and "0000000000000002" in err.value.message
    assert "0.2s" in err.value.message and time.monotonic() - t0 < 2.0
    assert app.core.status()["paths"] == {}


def test_barrier_timeout_is_a_qusec_option(app):
    assert app.cfg.barrier_timeout == app.sender.barrier_timeout == options.default("barrier_timeout")
    app_mod.CONF.set_override("barrier_timeout", 1.5, group="qusec")
    try:
        assert options.AppConfig.from_conf(app_mod.CONF).barrier_timeout == 1.5
    finally:
        app_mod.CONF.clear_override("barrier_timeout", group="qusec")


def test_only_switches_whose_flows_change_get_a_barrier(app):
    dps = _line(app)
    for dp in dps.values():
        dp.sent.clear()
    # A one-hop path A-B changes flows on s1 and s2 only: s3 is neither barriered nor waited on.
    reply = app.handle_bridge("request_path", {"src_node": "A", "dst_node": "B"})
    assert reply["granted"]
    barriered = {d for d, dp in dps.items()
                 if any(isinstance(m, parser.OFPBarrierRequest) for m in dp.sent)}
    assert barriered == {1, 2}
    # An expiry sweep that only ARP-probes a quiet vKMS host sends packet-outs, no barrier.
    app.handle_bridge("register", _register("Q", "10.0.0.50", [("QA", "A")]))
    for dp in dps.values():
        dp.sent.clear()
    app.sender.execute(app.core.expire(time.time() + 10))
    sent = [m for dp in dps.values() for m in dp.sent]
    assert any(isinstance(m, parser.OFPPacketOut) for m in sent)
    assert not any(isinstance(m, parser.OFPBarrierRequest) for m in sent)


def test_port_link_switch_down_and_reroute_events(app):
    dps = _line(app)
    reply = app.handle_bridge("request_path", {"src_node": "A", "dst_node": "C"})
    assert reply["granted"]
    down = parser.OFPPort(port_no=3, hw_addr="00:00:00:00:00:00", name=b"s2-eth3", config=0,
                          state=ofp.OFPPS_LINK_DOWN, curr=0, advertised=0, supported=0, peer=0,
                          curr_speed=0, max_speed=0)
    app.port_status_handler(_ev(msg=parser.OFPPortStatus(dps[2], reason=ofp.OFPPR_MODIFY, desc=down)))
    assert app.status()["switch_links"] == 1
    app.link_delete_handler(_link((1, 2), (2, 2)))
    app.link_delete_handler(_link((1, 2), (2, 2)))  # already gone: ignored
    assert app.status()["switch_links"] == 0
    app.error_msg_handler(_ev(msg=SimpleNamespace(datapath=dps[1], type=1, code=2, xid=1)))
    app.handle_bridge("report", {"node_id": "B", "links": [
        {"link_id": "BC", "peer_node": "C", "status": "OFF", "stored_bits": 0}]})
    assert ("revoke" in {k for k, _ in app.pushes})
    app.handle_bridge("gone", {"node_id": "C"})
    app.switch_enter_handler(_ev(switch=SimpleNamespace(dp=FakeDatapath(app, 4, [1]))))
    assert 4 in app.status()["switches"]
    app.switch_leave_handler(_ev(switch=SimpleNamespace(dp=dps[3])))
    app.state_change_handler(_ev(datapath=dps[1], state=DEAD_DISPATCHER))
    assert app.status()["switches"] == [2, 4]
    assert isinstance(app.handle_bridge("state", {}), dict)
    assert app.handle_bridge("ping", {}) == {"pong": True}
    app.sender.execute(app.core.expire(10**12))  # everything expired: nothing left to revoke twice
    assert app.core.status()["paths"] == {}


def test_gateway_argv_and_config(app, tmp_path):
    argv = app.cfg.gateway_argv()
    assert argv[1:3] == ["-m", "quseccontroller.gateway"]
    assert "--parent-pid" in argv and app.cfg.bridge_socket in argv
    assert app.cfg.state_dir == tmp_path.resolve()


def test_reconnected_switch_survives_the_stale_events_of_its_old_connection(app):
    old = FakeDatapath(app, 7, [1, 2])
    app.switch_features_handler(_ev(msg=SimpleNamespace(datapath=old)))
    app.state_change_handler(_ev(datapath=old, state=MAIN_DISPATCHER))
    new = FakeDatapath(app, 7, [1, 2])
    app.switch_features_handler(_ev(msg=SimpleNamespace(datapath=new)))
    app.state_change_handler(_ev(datapath=new, state=MAIN_DISPATCHER))
    # The new connection got the full base flows again, starting with a delete of our own.
    first = new.flow_mods()[0]
    assert first.command == ofp.OFPFC_DELETE and first.cookie == ofmsgs.COOKIE_APP
    app.switch_leave_handler(_ev(switch=SimpleNamespace(dp=old)))
    app.state_change_handler(_ev(datapath=old, state=DEAD_DISPATCHER))
    assert app.status()["switches"] == [7] and app.datapaths[7] is new


def test_importing_the_app_does_not_import_grpc():
    """grpcio would freeze the eventlet hub: the app process must never load it."""
    code = ("import sys, quseccontroller.app; "
            "bad = sorted(m for m in sys.modules if m.split('.')[0].startswith('grpc')); "
            "print(bad); sys.exit(bool(bad))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr


class FakeTlsSocket:
    """An accepted OpenFlow TLS connection: the switch's verified certificate (DER) or none."""

    def __init__(self, der: bytes | None):
        self.der = der

    def getpeercert(self, binary_form: bool = False):
        return self.der


def _tls_datapath(app, dpid: int, der: bytes | None) -> FakeDatapath:
    dp = FakeDatapath(app, dpid, [1, 2])
    dp.socket, dp.address, dp.closed = FakeTlsSocket(der), ("127.0.0.1", 40000 + dpid), False
    dp.close = lambda: setattr(dp, "closed", True)
    return dp


def test_only_a_switch_certificate_may_be_a_switch(app, caplog):
    """Over OpenFlow TLS, a vKMS (or any non-switch) certificate of the network's CA is refused:
    the connection is closed and logged before the app takes the datapath."""
    from cryptography.hazmat.primitives.serialization import Encoding
    from os_ken.controller.handler import HANDSHAKE_DISPATCHER

    from tests.helpers.pki import make_ca, make_cert
    ca = make_ca()
    der = {role: make_cert(ca, name, role=role)[0].public_bytes(Encoding.DER)
           for role, name in (("node", "A"), ("switch", "ovs"))}
    impostor, switch, bare = (_tls_datapath(app, 8, der["node"]), _tls_datapath(app, 9, der["switch"]),
                              _tls_datapath(app, 10, None))
    for dp in (impostor, switch, bare):
        app.state_change_handler(_ev(datapath=dp, state=HANDSHAKE_DISPATCHER))
        app.switch_features_handler(_ev(msg=SimpleNamespace(datapath=dp)))
        app.state_change_handler(_ev(datapath=dp, state=MAIN_DISPATCHER))
        app.switch_enter_handler(_ev(switch=SimpleNamespace(dp=dp)))
    assert app.status()["switches"] == [9] and set(app.datapaths) == {9}
    assert impostor.closed and bare.closed and not switch.closed
    assert not impostor.flow_mods() and not bare.flow_mods() and switch.flow_mods()
    assert app.status()["switches_refused"] == {"role": 1, "no_identity": 1}
    assert "event=switch_refused peer=127.0.0.1:40008 dpid=0000000000000008 identity=node:A reason=role" \
        in caplog.text
    # A packet from a refused connection teaches nothing.
    app.packet_in_handler(_packet_in(impostor, 1, _arp("00:00:00:00:00:08", "10.0.0.8", "10.0.0.1")))
    assert app.core.status()["hosts"] == 0
