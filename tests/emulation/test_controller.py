"""The real controller (osken-manager quseccontroller.app) driving real OVS switches in Mininet.

One ring of four userspace-datapath switches, one host per trusted node (A on qc1, B on qc2,
C on qc3) plus an intruder host X on qc2; test gRPC clients stand in for the vKMS agents.
OpenFlow runs over TLS with the network's PKI (the switches hold the switch certificate),
QuSeC has the network's inventory, and its status is read on the operator interface.
Tests run in file order on one network; the reroute test (which takes a link down) is last.
"""
from __future__ import annotations

import json
import subprocess
import threading
import time
import urllib.request

import grpc
import pytest

from mininet_topos.launch import ovs
from mininet_topos.launch.topos import QuSeCRemote, tx_checksum_off
from mininet_topos.launch.controller import Controller
from mininet_topos.model import Node, Topology
from mininet_topos.provision.pki import build_pki
from quseccontroller import inventory
from quseccontroller.inventory import Inventory, InventoryLink, InventoryNode
from quseccontroller.proto import control_pb2
from tests.helpers.agent_standin import TestAgent, link, status_details

pytestmark = pytest.mark.emulation

RELAY_PORT = 7000
OTHER_PORT = 7001
IPS = {"A": "10.0.0.1", "B": "10.0.0.2", "C": "10.0.0.3", "X": "10.0.0.9"}
# Switch names carry a prefix of their own so their veths never collide with another network's.
ATTACH = {"A": "qc1", "B": "qc2", "C": "qc3", "X": "qc2"}
RING = [("qc1", "qc2"), ("qc2", "qc3"), ("qc3", "qc4"), ("qc4", "qc1")]
POLICY = """
[default]
action = "allow"

[[rules]]
name = "no-forbidden-apps"
match = { application = "forbidden" }
action = "deny"
"""

LISTENER = """
import socket, sys, threading
def serve(port):
    s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("0.0.0.0", port)); s.listen(16)
    while True:
        c, _ = s.accept(); c.sendall(b"ok"); c.close()
for p in sys.argv[1:]:
    threading.Thread(target=serve, args=(int(p),)).start()
"""
POISON = """
import socket, struct, sys
iface, src_mac, dst_mac, spa, tpa = sys.argv[1:6]
mac = lambda s: bytes.fromhex(s.replace(":", ""))
frame = (mac(dst_mac) + mac(src_mac) + b"\\x08\\x06" + struct.pack("!HHBBH", 1, 0x0800, 6, 4, 2)
         + mac(src_mac) + socket.inet_aton(spa) + mac(dst_mac) + socket.inet_aton(tpa))
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
s.bind((iface, 0))
for _ in range(3):
    s.send(frame)
"""
CONNECT = ("import socket,sys\n"
           "try:\n"
           "    c = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=float(sys.argv[3]))\n"
           "    print('open' if c.recv(2) == b'ok' else 'noreply')\n"
           "except OSError as e:\n"
           "    print('blocked', e)\n")


def wait_for(cond, timeout=30.0, what="condition", interval=0.2):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = cond()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what} (last: {last!r})")


@pytest.fixture(scope="module")
def mininet_lock():
    """The shared Mininet lock (an inherited ``flock /tmp/qusec-mininet.lock`` is recognised)."""
    from mininet_topos.launch.lock import mininet_lock as lock
    with lock():
        yield


class Env:
    def __init__(self, net, ctl, pki, tmp):
        self.net, self.ctl, self.pki = net, ctl, pki
        self.agents: dict[str, TestAgent] = {}
        self.connect_script = tmp / "connect.py"
        self.connect_script.write_text(CONNECT)
        self.poison_script = tmp / "poison.py"

    def status(self) -> dict:
        """QuSeC's /status on its operator interface (mutual TLS, the operator certificate)."""
        import ssl
        ctx = ssl.create_default_context(cafile=self.pki.ca_cert)
        ctx.check_hostname = False
        ctx.load_cert_chain(self.pki.operator.cert, self.pki.operator.key)
        with urllib.request.urlopen(self.ctl.https_url + "/status", timeout=5, context=ctx) as r:
            return json.loads(r.read())

    def connect(self, src: str, dst: str, port: int, timeout: float = 1.5) -> str:
        """A TCP connect from host ``src`` to ``dst``:``port``: 'open ...' or 'blocked ...'."""
        h = self.net.get("h" + src)
        return h.cmd("python3", str(self.connect_script), IPS[dst], str(port), str(timeout)).strip()

    def dump_flows(self, sw: str) -> str:
        return subprocess.run(["ovs-ofctl", "-O", "OpenFlow13", "dump-flows", sw],
                              capture_output=True, text=True, check=True).stdout


@pytest.fixture(scope="module")
def env(emulation_host, mininet_lock, tmp_path_factory):
    from mininet.clean import cleanup
    from mininet.net import Mininet
    from mininet.node import OVSSwitch
    from mininet.topo import Topo

    tmp = tmp_path_factory.mktemp("qusec-emu")
    # Node certificates name the addresses the nodes register (their data IPs).
    pki = build_pki(Topology(name="emu", nodes={n: Node(n) for n in "ABC"}, links=[]), tmp / "pki",
                    {n: [IPS[n]] for n in "ABC"})
    inv = Inventory((InventoryLink("AB", "A", "B"), InventoryLink("BC", "B", "C")), "inventory.toml",
                    tuple(InventoryNode(n, 3, (f"sae-{n}",)) for n in "ABC"))
    (tmp / "inventory.toml").write_text(inventory.dumps(inv))
    (tmp / "policy.toml").write_text(POLICY)
    ctl = Controller(tmp / "state", ca_cert=pki.ca_cert, cert=pki.qusec_cert, key=pki.qusec_key,
                     policy=str(tmp / "policy.toml"), inventory=tmp / "inventory.toml",
                     of_listen="127.0.0.1:0", of_tls=(pki.ca_cert, pki.qusec_cert, pki.qusec_key))

    class Ring(Topo):
        def build(self):
            for i in range(1, 5):
                self.addSwitch(f"qc{i}", dpid=f"{i:016x}")
            for a, b in RING:
                self.addLink(a, b)
            for node, sw in ATTACH.items():
                h = self.addHost("h" + node, ip=IPS[node] + "/24")
                self.addLink(h, sw)

    datapath = emulation_host
    net = Mininet(topo=Ring(), build=False, autoSetMacs=True,
                  switch=lambda name, **kw: OVSSwitch(name, datapath=datapath,
                                                      protocols="OpenFlow13", **kw),
                  controller=None)
    ok = False
    e = Env(net, ctl, pki, tmp)
    try:
        ovs.set_ssl(pki.switch.key, pki.switch.cert, pki.ca_cert)
        ctl.start().wait_ready(30)
        net.addController("c0", controller=QuSeCRemote, ip="127.0.0.1", port=ctl.of_port,
                          protocol="ssl")
        net.build()
        net.start()
        for sw in net.switches:  # echo every second, so a stalled controller loop would show
            sw.cmd("ovs-vsctl set controller", sw.name, "inactivity_probe=1000")
        wait_for(lambda: len(e.status()["switches"]) == 4 and e.status()["switch_links"] == 4,
                 what="4 switches and 4 LLDP links")
        tx_checksum_off(net.hosts)  # no announcing: hosts that never spoke must be reachable
        net.get("hB").popen(["python3", "-c", LISTENER, str(RELAY_PORT), str(OTHER_PORT)])
        net.get("hC").popen(["python3", "-c", LISTENER, str(RELAY_PORT)])
        for node, links in (("A", [link("AB", "B")]), ("B", [link("AB", "A"), link("BC", "C")]),
                            ("C", [link("BC", "B")])):
            cert, key = pki.node(node).cert, pki.node(node).key
            e.agents[node] = TestAgent(ctl.grpc_addr, pki.ca_cert, cert, key, node, data_ip=IPS[node],
                                       relay_port=RELAY_PORT, links=links, saes=[f"sae-{node}"]).connect()
            assert e.agents[node].registered.is_set(), e.agents[node].error
        try:   # X and B never sent a packet before: X's ARP floods to B, B is learned
            wait_for(lambda: e.connect("X", "B", OTHER_PORT).startswith("open"), what="listener on hB")
        except AssertionError as exc:
            raise AssertionError(f"{exc}\nX->B: {e.connect('X', 'B', OTHER_PORT)}\n"
                                 f"hX arp: {net.get('hX').cmd('ip neigh')}\n"
                                 f"qc2 flows:\n{e.dump_flows('qc2')}") from None
        wait_for(lambda: e.status()["core"]["hosts"] == 4, what="4 hosts learned")
        yield e
        ok = True
    finally:
        for a in e.agents.values():
            a.close()
        try:
            net.stop()  # QuSeCRemote.stop also ends the controller node's shell
        finally:
            ctl.stop()
            ovs.del_ssl()
            if not ok:
                cleanup()


def test_lldp_topology_matches_mininet(env):
    net = env.net
    want = set()
    for a, b in RING:
        pa, pb = net.topo.port(a, b)
        da, db = int(net.get(a).dpid, 16), int(net.get(b).dpid, 16)
        want.add(frozenset({(da, pa), (db, pb)}))
    got = {frozenset(tuple(end) for end in l) for l in env.status()["links"]}
    assert got == want
    assert env.status()["switches"] == [1, 2, 3, 4]
    # Every switch speaks OpenFlow over TLS with the switch certificate; none was refused.
    # (ovsdb's is_connected is refreshed every few seconds.)
    rows = wait_for(lambda: (lambda r: r if r and all(x["connected"] for x in r) else None)(
        _controller_rows()), timeout=15, what="ovsdb to show every controller connection")
    assert all(r["target"].startswith("ssl:") for r in rows), rows
    assert not env.status()["switches_refused"]


def test_host_ports_accept_only_the_arp_binding_qusec_learned(env):
    # Table 0 of the intruder's switch: ARP from X's port passes only as X (its MAC and IP).
    x_port = env.net.topo.port("qc2", "hX")[0]
    guard = [l for l in env.dump_flows("qc2").splitlines()
             if "table=0" in l and "arp" in l and f"in_port={x_port}" in l]
    assert any("arp_spa=10.0.0.9" in l and "goto_table:1" in l for l in guard), guard
    assert any("actions=drop" in l and "arp_spa" not in l for l in guard), guard
    # X tells A "10.0.0.2 (B) is at X's MAC": the forged reply never reaches A.
    hx, ha, hb = env.net.get("hX"), env.net.get("hA"), env.net.get("hB")
    ha.cmd("ping -c 1 -W 1 10.0.0.2")          # A knows B's MAC now
    time.sleep(1.5)                            # past the kernel's neighbour locktime
    env.poison_script.write_text(POISON)
    hx.cmd("python3", str(env.poison_script), hx.defaultIntf().name, hx.MAC(), ha.MAC(),
           IPS["B"], IPS["A"])
    time.sleep(0.5)
    entry = ha.cmd("ip neigh show 10.0.0.2")
    assert hx.MAC() not in entry and hb.MAC() in entry, entry


def test_path_flows_let_hop_traffic_through_and_drop_everyone_else(env):
    assert env.connect("A", "B", RELAY_PORT).startswith("blocked")  # before any path
    reply = env.agents["A"].request_path("C")
    (path,) = reply.paths
    assert [h.node_id for h in path.hops] == ["A", "B", "C"]
    assert reply.flows_installed > 0
    assert env.agents["B"].authorised[path.path_id].prev_hop == "A"
    # The answer came after the barriers: the flows are on the switches right now.
    s2 = env.dump_flows("qc2")
    relay_lines = [l for l in s2.splitlines() if f"tp_dst={RELAY_PORT}" in l and "priority=30000" in l]
    assert any("nw_src=10.0.0.1" in l and "nw_dst=10.0.0.2" in l for l in relay_lines), s2
    assert any("nw_src=10.0.0.2" in l and "nw_dst=10.0.0.3" in l for l in relay_lines), s2
    assert all("cookie=0x5153" in l and "hard_timeout=" in l for l in relay_lines)
    assert all("dl_src=" in l for l in relay_lines)   # the sender's MAC is pinned too
    assert "priority=20000" in s2 and "actions=drop" in s2
    # Real traffic: each hop's relay connection goes through; the same from X, or skipping
    # the relay node, is dropped; ordinary traffic from X still flows.
    assert env.connect("A", "B", RELAY_PORT).startswith("open")
    assert env.connect("B", "C", RELAY_PORT).startswith("open")
    assert env.connect("X", "B", RELAY_PORT).startswith("blocked")
    assert env.connect("A", "C", RELAY_PORT).startswith("blocked")
    assert env.connect("X", "B", OTHER_PORT).startswith("open")
    assert env.agents["A"].stub.ReleasePath(control_pb2.ReleaseRequest(path_id=path.path_id),
                                            timeout=5).released
    assert f"tp_dst={RELAY_PORT}" not in "".join(l for l in env.dump_flows("qc2").splitlines()
                                                   if "priority=30000" in l)
    assert env.connect("A", "B", RELAY_PORT).startswith("blocked")


def test_refused_request_carries_its_reason(env):
    with pytest.raises(grpc.RpcError) as err:
        env.agents["A"].request_path("C", application="forbidden")
    assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
    (refusal,) = status_details(err.value)
    assert (refusal.reason, refusal.rule) == ("policy_deny", "no-forbidden-apps")
    with pytest.raises(grpc.RpcError) as err:
        env.agents["A"].request_path("Z")
    assert status_details(err.value)[0].reason == "unknown_node"


def _controller_rows() -> list[dict]:
    out = subprocess.run(["ovs-vsctl", "--format=json", "--columns=target,is_connected,status",
                          "list", "controller"], capture_output=True, text=True, check=True).stdout
    rows = []
    for target, connected, status in json.loads(out)["data"]:
        st = dict(status[1]) if status[0] == "map" else {}
        rows.append({"target": target, "connected": connected, "since": int(st.get("sec_since_connect", 0))})
    return rows


def test_openflow_loop_keeps_serving_under_grpc_load(env):
    before = _controller_rows()
    assert before and all(r["connected"] for r in before)
    links_before = env.status()["switch_links"]
    stop = time.monotonic() + 6.0
    done, errors = [], []

    def worker():
        a = env.agents["A"]
        while time.monotonic() < stop:
            try:
                (p,) = a.request_path("C").paths
                a.stub.ReleasePath(control_pb2.ReleaseRequest(path_id=p.path_id), timeout=10)
                done.append(1)
            except grpc.RpcError as exc:
                errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    samples = []
    while any(t.is_alive() for t in threads):
        samples.append(_controller_rows())
        time.sleep(0.3)
    for t in threads:
        t.join()
    assert not errors, errors[:3]
    assert len(done) >= 20, f"only {len(done)} path setups in 6 s"
    # With a 1 s inactivity probe, an unanswered echo would have dropped the connection:
    # every switch stayed connected the whole time and never reconnected.
    assert all(r["connected"] for rows in samples for r in rows)
    after = _controller_rows()
    for b, a in zip(sorted(before, key=lambda r: r["target"]), sorted(after, key=lambda r: r["target"])):
        assert a["since"] >= b["since"] + 5, (b, a)
    assert env.status()["switch_links"] == links_before  # LLDP kept every link alive


def test_link_down_on_the_ring_reroutes_the_relay_flows(env):
    reply = env.agents["A"].request_path("B")
    (path,) = reply.paths
    assert env.connect("A", "B", RELAY_PORT).startswith("open")
    assert "nw_src=10.0.0.1" not in env.dump_flows("qc4")  # qc1-qc2 is the short way
    env.net.configLinkStatus("qc1", "qc2", "down")
    wait_for(lambda: env.status()["switch_links"] == 3, what="link qc1-qc2 removed")
    wait_for(lambda: any("nw_src=10.0.0.1" in l and f"tp_dst={RELAY_PORT}" in l
                         for l in env.dump_flows("qc4").splitlines()),
             what="relay flow of A->B rerouted over qc4")
    wait_for(lambda: env.connect("A", "B", RELAY_PORT).startswith("open"), timeout=15,
             what="relay connection over the long way round")
    assert env.connect("X", "B", RELAY_PORT).startswith("blocked")
    assert env.status()["core"]["paths"][path.path_id]["nodes"] == ["A", "B"]
