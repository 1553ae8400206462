"""Attacks on QuSeC by a party holding a certificate of the network's CA, each against the real
controller (osken-manager + app + gateway, mutual TLS) and each refused with a reason the
operator can read: a log line ``event=... reason=...`` and a metric.

The network: nodes A, B, C, D, F in QuSeC's inventory (B trust 2, the others 3), QKD links
A-B, B-D, A-C, C-D, D-F; SAEs sae-a .. sae-f on their nodes.
"""
from __future__ import annotations

import json
import socket
import ssl
import time
import urllib.error
import urllib.request
from pathlib import Path

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from mininet_topos.launch.controller import Controller
from quseccontroller import inventory
from quseccontroller.inventory import Inventory, InventoryLink, InventoryNode
from quseccontroller.proto import control_pb2, control_pb2_grpc
from tests.helpers.agent_standin import TestAgent, channel, link, status_details
from tests.helpers.pki import make_cert, make_pki, write

pytestmark = pytest.mark.integration

NODES = ["A", "B", "C", "D", "F"]
TRUST = {"B": 2}
LINKS = [("A-B", "A", "B"), ("B-D", "B", "D"), ("A-C", "A", "C"), ("C-D", "C", "D"), ("D-F", "D", "F")]
POLICY = """
[default]
action = "allow"

[[rules]]
name = "trusted-relays"
match = { application = "secure" }
min_trust = 3
"""


def sae(node: str) -> str:
    return f"sae-{node.lower()}"


def links_of(node: str, stored: dict[str, int] | None = None, view: dict[str, int] | None = None):
    return [link(lid, b if a == node else a, (stored or {}).get(lid, 10**8),
                 peer_stored_bits=(view or {}).get(lid, 10**8))
            for lid, a, b in LINKS if node in (a, b)]


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    return make_pki(tmp_path_factory.mktemp("pki"), NODES)


def issue(pki, tmp: Path, name: str, role: str) -> tuple[str, str]:
    """A certificate of the network's CA made to order: ``name`` in ``role``."""
    ca_dir = Path(pki.ca_cert).parent
    ca = (x509.load_pem_x509_certificate(Path(pki.ca_cert).read_bytes()),
          serialization.load_pem_private_key((ca_dir / "ca.key").read_bytes(), None))
    cert, key = make_cert(ca, name, role=role)
    return tuple(str(p) for p in write(cert, key, tmp, f"{role}-{name}"))


@pytest.fixture(scope="module")
def ctl(tmp_path_factory, pki):
    tmp = tmp_path_factory.mktemp("qusec")
    inv = Inventory(tuple(InventoryLink(*x) for x in LINKS), "inventory.toml",
                    tuple(InventoryNode(n, TRUST.get(n, 3), (sae(n),)) for n in NODES))
    (tmp / "inventory.toml").write_text(inventory.dumps(inv))
    (tmp / "policy.toml").write_text(POLICY)
    c = Controller(tmp / "state", ca_cert=pki.ca_cert, cert=pki.qusec_cert, key=pki.qusec_key,
                   inventory=tmp / "inventory.toml", policy=str(tmp / "policy.toml"), gone_grace=0.5)
    with c:                     # started, ready; stopped however the tests end
        yield c


@pytest.fixture
def net(ctl, pki):
    """Every node registered honestly; closed after the test."""
    agents = {n: node_agent(ctl, pki, n).connect() for n in NODES}
    assert all(a.registered.is_set() for a in agents.values()), {n: a.error for n, a in agents.items()}
    yield agents
    for a in agents.values():
        a.close()
    time.sleep(0.6)   # past gone_grace: the next test starts from nodes that are gone


def node_agent(ctl, pki, node: str, *, cert_key=None, register_as: str | None = None,
               **kw) -> TestAgent:
    cert, key = cert_key or pki.node(node)
    kw.setdefault("links", links_of(node))
    kw.setdefault("saes", [sae(node)])
    a = TestAgent(ctl.grpc_addr, pki.ca_cert, cert, key, register_as or node, **kw)
    a.register.trust_level = TRUST.get(node, 3)
    return a


def metric(ctl, name: str, **labels) -> float:
    with urllib.request.urlopen(ctl.http_url + "/metrics", timeout=5) as r:
        body = r.read().decode()
    want = name + ("{" + ",".join(f'{k}="{v}"' for k, v in sorted(labels.items())) + "}" if labels else "")
    for line in body.splitlines():
        if line.startswith(want + " "):
            return float(line.split()[-1])
    return 0.0


def gateway_log(ctl) -> str:
    return ctl.gateway_log.read_text(errors="replace")


def refusal(agent: TestAgent):
    """(status code, ErrorInfo) of a control stream QuSeC refused."""
    err = agent.wait_closed(10)
    assert err is not None and not agent.registered.is_set(), "QuSeC took the registration"
    (info,) = [d for d in status_details(err) if hasattr(d, "metadata")]
    return err.code(), info


def test_sae_certificate_cannot_register_as_node(ctl, pki, net, tmp_path):
    # The issue's attack: sae-c's certificate, Register{node_id: "sae-c", trust 5, saes: [sae-f],
    # links full of key}. Today: refused for its role, before anything it says is read.
    before = metric(ctl, "qusec_registrations_refused_total", reason="role")
    cert_key = issue(pki, tmp_path, "sae-c", "sae")
    fake = node_agent(ctl, pki, "C", cert_key=cert_key, register_as="sae-c", saes=["sae-f"],
                      links=[link("sae-c-D", "D", 10**12), link("A-sae-c", "A", 10**12)])
    fake.register.trust_level = 5
    try:
        code, info = refusal(fake.connect())
        assert code == grpc.StatusCode.PERMISSION_DENIED
        assert info.reason == "ROLE_NOT_ALLOWED" and dict(info.metadata) == {
            "role": "sae", "name": "sae-c", "required": "node"}
        assert "a sae certificate (sae:sae-c) may not open a control stream" in fake.error.details()
    finally:
        fake.close()
    assert metric(ctl, "qusec_registrations_refused_total", reason="role") == before + 1
    assert "event=registration_refused" in gateway_log(ctl) and "reason=role" in gateway_log(ctl)
    # sae-f is still F's: a key for it is relayed to F.
    reply = net["A"].request_path("F", src_sae="sae-a", dst_sae="sae-f")
    assert [h.node_id for h in reply.paths[0].hops][-1] == "F"


def test_sae_certificate_named_like_a_node_cannot_register_as_that_node(ctl, pki, tmp_path):
    # An SAE certificate whose CN is a node id ("A"): the CN is not the identity, the role is.
    fake = node_agent(ctl, pki, "A", cert_key=issue(pki, tmp_path, "A", "sae")).connect()
    try:
        code, info = refusal(fake)
        assert (code, info.reason) == (grpc.StatusCode.PERMISSION_DENIED, "ROLE_NOT_ALLOWED")
    finally:
        fake.close()


@pytest.mark.parametrize("role, name", [("operator", "operator"), ("controller", "qusec"),
                                        ("switch", "ovs")])
def test_operator_controller_or_switch_certificate_cannot_register_as_node(ctl, pki, tmp_path, role, name):
    cert_key = pki.operator if role == "operator" else \
        (pki.qusec_cert, pki.qusec_key) if role == "controller" else issue(pki, tmp_path, name, role)
    fake = node_agent(ctl, pki, "A", cert_key=cert_key, register_as=name).connect()
    try:
        code, info = refusal(fake)
        assert code == grpc.StatusCode.PERMISSION_DENIED and info.metadata["role"] == role
    finally:
        fake.close()


def test_node_not_in_the_inventory_cannot_register(ctl, pki, tmp_path):
    before = metric(ctl, "qusec_registrations_refused_total", reason="unknown_node")
    fake = node_agent(ctl, pki, "Z", cert_key=issue(pki, tmp_path, "Z", "node"),
                      links=[link("Z-D", "D")], saes=["sae-z"]).connect()
    try:
        code, info = refusal(fake)
        assert code == grpc.StatusCode.PERMISSION_DENIED and info.reason == "REGISTRATION_REFUSED"
        assert info.metadata["reason"] == "unknown_node" and info.metadata["node_id"] == "Z"
        assert "'Z' is not in QuSeC's inventory" in fake.error.details()
    finally:
        fake.close()
    assert metric(ctl, "qusec_registrations_refused_total", reason="unknown_node") == before + 1


def test_node_cannot_register_as_another_node(ctl, pki):
    fake = node_agent(ctl, pki, "A", register_as="D", links=links_of("D")).connect()
    try:
        code, info = refusal(fake)
        assert info.reason == "NODE_ID_MISMATCH" and "may not register as node 'D'" in fake.error.details()
    finally:
        fake.close()


def test_node_cannot_raise_its_own_trust_level(ctl, pki, net):
    # B (trust 2) claims 5 to pass a rule's min_trust 3: refused; its honest stream stays up
    # and the rule's paths avoid it.
    liar = node_agent(ctl, pki, "B")
    liar.register.trust_level = 5
    try:
        code, info = refusal(liar.connect())
        assert info.metadata["reason"] == "trust_level"
        assert (info.metadata["claimed"], info.metadata["inventory"]) == ("5", "2")
    finally:
        liar.close()
    reply = net["A"].request_path("D", application="secure")
    assert [h.node_id for h in reply.paths[0].hops] == ["A", "C", "D"]


def test_node_cannot_claim_another_nodes_sae(ctl, pki, net):
    thief = node_agent(ctl, pki, "C", saes=["sae-c", "sae-f"])
    try:
        code, info = refusal(thief.connect())
        assert info.metadata["reason"] == "sae" and info.metadata["saes"] == "sae-f"
        assert "'sae-f' (of node 'F')" in thief.error.details()
    finally:
        thief.close()
    reply = net["A"].request_path("F", src_sae="sae-a", dst_sae="sae-f")
    assert [h.node_id for h in reply.paths[0].hops][-1] == "F"


@pytest.mark.parametrize("fake, reason", [
    (link("C-F", "F", 10**12), "'C-F' is not in QuSeC's inventory"),
    (link("B-D", "D", 10**12), "joins B and D, not node 'C'"),
    (link("A-C", "B", 10**12), "leads to 'A', not 'B'"),
])
def test_node_cannot_register_links_the_inventory_does_not_give_it(ctl, pki, fake, reason):
    liar = node_agent(ctl, pki, "C", links=links_of("C") + [fake])
    try:
        code, info = refusal(liar.connect())
        assert info.metadata["reason"] == "link" and reason in liar.error.details()
    finally:
        liar.close()


def test_node_cannot_register_a_relay_address_its_certificate_does_not_name(ctl, pki, net):
    # A relay address x:443 once installed a drop of tcp/443 on every switch; now the address
    # must be the node's own (its certificate's IP SANs: 127.0.0.1 on loopback).
    liar = node_agent(ctl, pki, "C")
    liar.register.relay_addr = "10.0.0.4:443"
    try:
        code, info = refusal(liar.connect())
        assert info.metadata["reason"] == "address" and info.metadata["value"] == "10.0.0.4"
        assert "which its certificate does not name (its addresses: 127.0.0.1)" in liar.error.details()
    finally:
        liar.close()
    liar = node_agent(ctl, pki, "C", data_ip="10.0.0.4")
    liar.register.relay_addr = "127.0.0.1:7000"
    try:
        assert refusal(liar.connect())[1].metadata["field"] == "data_ip"
    finally:
        liar.close()


def test_node_cannot_claim_more_key_than_its_peer_sees(ctl, pki, net):
    # Honest: A-B-D (B-D has more key than C-D). C claims 10^12 bits on C-D to draw A->D
    # through itself; D sees 10^6 of C's direction: the link is disputed and not used.
    for node in ("B", "D"):
        stored = {"B-D": 10**9} if node == "B" else {}
        net[node].report(links_of(node, stored=stored, view={"C-D": 10**6, "B-D": 10**9}))
    net["C"].report(links_of("C", stored={"C-D": 10**6}))
    time.sleep(0.3)
    assert [h.node_id for h in net["A"].request_path("D").paths[0].hops] == ["A", "B", "D"]
    net["C"].report(links_of("C", stored={"C-D": 10**12}))
    deadline = time.monotonic() + 5
    while metric(ctl, "qusec_qkd_links_disputed") < 1 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert metric(ctl, "qusec_qkd_links_disputed") == 1
    assert "event=link_disputed link=C-D" in ctl.log_file.read_text()
    for _ in range(3):
        assert [h.node_id for h in net["A"].request_path("D").paths[0].hops] == ["A", "B", "D"]
    with pytest.raises(grpc.RpcError) as err:   # C-D is down: nothing goes A-C-D
        net["A"].request_path("D", application="secure")
    assert status_details(err.value)[0].reason in ("disconnected", "trust")
    net["C"].report(links_of("C", stored={"C-D": 10**6}))   # honest again: agreed, up
    deadline = time.monotonic() + 5
    while metric(ctl, "qusec_qkd_links_disputed") > 0 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert [h.node_id for h in net["A"].request_path("D", application="secure").paths[0].hops] == \
        ["A", "C", "D"]


def test_link_reported_by_one_end_only_carries_no_path(ctl, pki, net):
    # F keeps reporting D-F full of key; D registers again without it: the link is F's word
    # alone, and a QKD link is up only while both its ends report it.
    assert [h.node_id for h in net["A"].request_path("F").paths[0].hops][-2:] == ["D", "F"]
    net["F"].report([link("D-F", "D", 10**12)])
    d = node_agent(ctl, pki, "D", links=[x for x in links_of("D") if x.link_id != "D-F"]).connect()
    try:
        assert d.registered.is_set()
        with pytest.raises(grpc.RpcError) as err:
            net["A"].request_path("F", timeout=5)
        assert status_details(err.value)[0].reason == "disconnected"
    finally:
        d.close()


def test_report_for_a_link_the_inventory_does_not_give_the_node_is_dropped(ctl, pki, net):
    before = metric(ctl, "qusec_reports_refused_total", reason="link")
    net["B"].report(links_of("B") + [link("B-F", "F", 10**12)])
    deadline = time.monotonic() + 5
    while metric(ctl, "qusec_reports_refused_total", reason="link") == before and time.monotonic() < deadline:
        time.sleep(0.1)
    assert metric(ctl, "qusec_reports_refused_total", reason="link") == before + 1
    assert "event=report_refused node=B link=B-F reason=link" in gateway_log(ctl)
    assert not net["B"].closed.is_set()   # the stream stays: only the entry is dropped
    assert metric(ctl, "qusec_link_key_bits", link="B-F", node="B") == 0.0


def test_unknown_source_sae_cannot_request_a_path(ctl, pki, net):
    with pytest.raises(grpc.RpcError) as err:
        net["A"].request_path("D", src_sae="sae-nobody", dst_sae="sae-d")
    assert err.value.code() == grpc.StatusCode.NOT_FOUND
    (r,) = status_details(err.value)
    assert r.reason == "unknown_sae" and "source SAE 'sae-nobody' is not an SAE of node 'A'" in r.message
    with pytest.raises(grpc.RpcError) as err:   # another node's SAE
        net["A"].request_path("D", src_sae="sae-c", dst_sae="sae-d")
    assert status_details(err.value)[0].reason == "unknown_node"
    assert "attached to node 'C'" in status_details(err.value)[0].message
    assert metric(ctl, "qusec_paths_refused_total", reason="unknown_sae") >= 1


def test_sae_certificate_cannot_request_a_path(ctl, pki, net, tmp_path):
    cert, key = issue(pki, tmp_path, "sae-a", "sae")
    with channel(ctl.grpc_addr, pki.ca_cert, cert, key) as ch:
        with pytest.raises(grpc.RpcError) as err:
            control_pb2_grpc.QuSeCControlStub(ch).RequestPath(control_pb2.PathRequest(
                src_node="A", dst_node="D", src_sae="sae-a"), timeout=5)
    assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert status_details(err.value)[0].reason == "ROLE_NOT_ALLOWED"


def test_other_node_cannot_release_a_path(ctl, pki, net, tmp_path):
    (path,) = net["A"].request_path("D").paths
    before = metric(ctl, "qusec_releases_refused_total", reason="not_source")
    for other in ("B", "D"):   # a node on the path, the destination: neither may release it
        with pytest.raises(grpc.RpcError) as err:
            net[other].stub.ReleasePath(control_pb2.ReleaseRequest(path_id=path.path_id), timeout=5)
        assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
        (info,) = status_details(err.value)
        assert info.reason == "NOT_PATH_SOURCE" and "only its source node 'A'" in err.value.details()
    assert metric(ctl, "qusec_releases_refused_total", reason="not_source") == before + 2
    assert "event=release_refused" in gateway_log(ctl)
    assert path.path_id not in net["B"].revoked       # nothing was released
    cert, key = issue(pki, tmp_path, "sae-a", "sae")   # nor by an SAE of the source node
    with channel(ctl.grpc_addr, pki.ca_cert, cert, key) as ch:
        with pytest.raises(grpc.RpcError) as err:
            control_pb2_grpc.QuSeCControlStub(ch).ReleasePath(
                control_pb2.ReleaseRequest(path_id=path.path_id), timeout=5)
    assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert net["A"].stub.ReleasePath(control_pb2.ReleaseRequest(path_id=path.path_id),
                                     timeout=5).released


def operator_get(ctl, pki, path: str, cert_key=None):
    ctx = ssl.create_default_context(cafile=pki.ca_cert)
    ctx.check_hostname = False
    if cert_key != ():
        ctx.load_cert_chain(*(cert_key or pki.operator))
    try:
        with urllib.request.urlopen(ctl.https_url + path, timeout=5, context=ctx) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def test_status_and_etsi015_need_an_operator_certificate(ctl, pki, net, tmp_path):
    (path,) = net["A"].request_path("D", src_sae="sae-a", dst_sae="sae-d").paths
    for resource in ("/status", "/etsi015"):
        # Not on the plain port any more: path ids and SAE pairs are for operators.
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(ctl.http_url + resource, timeout=5)
        assert err.value.code == 404 and ctl.https_url in err.value.read().decode()
        before = metric(ctl, "qusec_operator_refused_total", reason="role")
        status, body = operator_get(ctl, pki, resource, pki.node("A"))   # a node's certificate
        assert status == 403 and "needs an operator certificate" in body["message"]
        assert metric(ctl, "qusec_operator_refused_total", reason="role") == before + 1
        with pytest.raises((ssl.SSLError, urllib.error.URLError, ConnectionError)):
            operator_get(ctl, pki, resource, ())                       # no certificate at all
        status, body = operator_get(ctl, pki, resource)                # the operator
        assert status == 200
    assert path.path_id in operator_get(ctl, pki, "/status")[1]["core"]["paths"]
    assert "event=operator_refused" in gateway_log(ctl)
    # An operator certificate issued later (qkdnet pki --add-operator) works the same.
    assert operator_get(ctl, pki, "/healthz", issue(pki, tmp_path, "alice", "operator"))[0] == 200


def test_metrics_carry_no_path_or_sae_ids(ctl, pki, net):
    (path,) = net["A"].request_path("D", src_sae="sae-a", dst_sae="sae-d").paths
    with urllib.request.urlopen(ctl.http_url + "/metrics", timeout=5) as r:
        body = r.read().decode()
    assert "qusec_paths_active" in body
    assert path.path_id not in body and "sae-" not in body and path.path_id.split("-")[0] not in body
    with urllib.request.urlopen(ctl.http_url + "/healthz", timeout=5) as r:
        health = r.read().decode()
    assert path.path_id not in health and "sae-" not in health


# ----------------------------------------------------------------------------------- limits


@pytest.fixture(scope="module")
def limited(tmp_path_factory, pki):
    """A QuSeC with a short Register timeout, small stream caps and OpenFlow over TLS."""
    c = Controller(tmp_path_factory.mktemp("limited"), ca_cert=pki.ca_cert, cert=pki.qusec_cert,
                   key=pki.qusec_key, register_timeout=2.0, max_streams_per_identity=2,
                   max_streams=6, of_tls=(pki.ca_cert, pki.qusec_cert, pki.qusec_key))
    with c:                     # started, ready; stopped however the tests end
        yield c


def silent(ctl, pki, node: str, **kw) -> TestAgent:
    """A control stream that never sends its Register."""
    cert, key = pki.node(node)
    a = TestAgent(ctl.grpc_addr, pki.ca_cert, cert, key, node, **kw)
    a._call = a.stub.Connect(a._requests())
    import threading
    threading.Thread(target=a._read, daemon=True).start()
    return a


def test_silent_stream_is_closed_after_the_register_timeout(limited, pki):
    t0 = time.monotonic()
    a = silent(limited, pki, "A")
    try:
        err = a.wait_closed(10)
        assert err is not None and err.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        assert "no Register within 2 s" in err.details()
        assert 1.8 < time.monotonic() - t0 < 8
    finally:
        a.close()
    assert metric(limited, "qusec_registrations_refused_total", reason="register_timeout") >= 1


def test_a_certificate_holds_at_most_two_streams_and_a_newer_one_replaces_the_oldest(limited, pki):
    first = silent(limited, pki, "B")
    time.sleep(0.3)                  # the streams reach QuSeC in this order, on a loaded machine too
    second = silent(limited, pki, "B")
    time.sleep(0.3)
    third = silent(limited, pki, "B")
    try:
        err = first.wait_closed(1.9)   # replaced (ABORTED), before its Register timeout could end it
        assert err is not None and err.code() == grpc.StatusCode.ABORTED, err
        assert "replaced by a newer control stream of node:B" in err.details()
        assert not second.closed.is_set() and not third.closed.is_set()
    finally:
        for a in (first, second, third):
            a.close()
    # A reconnecting agent always gets in: its new stream registers and replaces the old one.
    old = node_agent(limited, pki, "C", links=[]).connect()
    new = node_agent(limited, pki, "C", links=[]).connect()
    try:
        assert old.registered.is_set() and new.registered.is_set()
        old.closed.wait(5)
        assert old.closed.is_set() and not new.closed.is_set()
    finally:
        old.close()
        new.close()


def test_the_total_of_open_streams_is_capped(limited, pki):
    time.sleep(2.5)   # earlier tests' silent streams timed out
    streams = [silent(limited, pki, n) for n in ("A", "A", "B", "B", "D", "D")]
    try:
        time.sleep(0.3)
        over = silent(limited, pki, "F")
        err = over.wait_closed(5)
        assert err is not None and err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "maximum of 6 control streams" in err.details()
        over.close()
    finally:
        for a in streams:
            a.close()
    assert metric(limited, "qusec_registrations_refused_total", reason="stream_limit") >= 1


def _openflow_tls(ctl, pki, cert_key) -> bytes:
    """Connect to QuSeC's OpenFlow TLS port with ``cert_key``; what it sends within 3 s (b'' at
    the end when QuSeC closed the connection)."""
    ctx = ssl.create_default_context(cafile=pki.ca_cert)
    ctx.check_hostname = False
    ctx.load_cert_chain(*cert_key)
    got = b""
    with socket.create_connection(("127.0.0.1", ctl.of_port), timeout=5) as raw:
        with ctx.wrap_socket(raw) as s:
            s.settimeout(3)
            try:
                while True:
                    data = s.recv(4096)
                    if not data:
                        return got + b"<closed>"
                    got += data
            except (socket.timeout, TimeoutError):
                return got
            except (ssl.SSLError, ConnectionError):
                return got + b"<closed>"


def test_a_vkms_certificate_cannot_pose_as_an_openflow_switch(limited, pki, tmp_path):
    # OpenFlow over TLS with the network's CA: os-ken takes any certificate of it; QuSeC takes
    # only role switch. A node's certificate is greeted (HELLO) and then disconnected.
    assert _openflow_tls(limited, pki, pki.node("A")).endswith(b"<closed>")
    deadline = time.monotonic() + 5
    while "event=switch_refused" not in limited.log_file.read_text() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert "identity=node:A reason=role" in limited.log_file.read_text()
    assert metric(limited, "qusec_switches_refused", reason="role") >= 1
    # A switch certificate stays connected (and is asked for its features).
    assert not _openflow_tls(limited, pki, issue(pki, tmp_path, "ovs", "switch")).endswith(b"<closed>")


SILENT = 1000


def _hold_silent_streams(addr: str, pki, n: int, ready, stop) -> None:
    """Open ``n`` Connect streams with A's certificate that never send a thing (grpc.aio, so
    the attacker side holds no thread per stream either), until ``stop`` is set."""
    import asyncio
    from pathlib import Path as P

    async def main() -> None:
        cert, key = pki.node("A")
        creds = grpc.ssl_channel_credentials(P(pki.ca_cert).read_bytes(), P(key).read_bytes(),
                                             P(cert).read_bytes())
        channels = [grpc.aio.secure_channel(addr, creds) for _ in range(10)]
        never = asyncio.Event()

        async def nothing():
            await never.wait()
            yield control_pb2.AgentMessage()

        calls = [control_pb2_grpc.QuSeCControlStub(channels[i % len(channels)]).Connect(nothing())
                 for i in range(n)]
        ready.set()
        while not stop.is_set():
            await asyncio.sleep(0.05)
        for c in calls:
            c.cancel()
        for ch in channels:
            await ch.close()
    asyncio.run(main())


@pytest.fixture(scope="module")
def roomy(tmp_path_factory, pki):
    """A QuSeC that lets silent streams stay long and one certificate hold many."""
    c = Controller(tmp_path_factory.mktemp("roomy"), ca_cert=pki.ca_cert, cert=pki.qusec_cert,
                   key=pki.qusec_key, register_timeout=120, max_streams_per_identity=SILENT + 10)
    with c:                     # started, ready; stopped however the tests end
        yield c


def test_silent_streams_do_not_freeze_qusec(roomy, pki):
    # 520 silent streams once held every gateway worker: health checks and RequestPath timed
    # out. On grpc.aio a stream holds no thread: with 1,000 open, both answer within 100 ms.
    import statistics
    import threading

    from grpc_health.v1 import health_pb2, health_pb2_grpc
    b = TestAgent(roomy.grpc_addr, pki.ca_cert, *pki.node("B"), "B", links=[link("B-D", "D")]).connect()
    d = TestAgent(roomy.grpc_addr, pki.ca_cert, *pki.node("D"), "D", links=[link("B-D", "B")]).connect()
    ready, stop = threading.Event(), threading.Event()
    holder = threading.Thread(target=_hold_silent_streams, args=(roomy.grpc_addr, pki, SILENT, ready, stop),
                              daemon=True)
    holder.start()
    try:
        assert b.registered.is_set() and d.registered.is_set()
        assert ready.wait(30)
        deadline = time.monotonic() + 30
        while metric(roomy, "qusec_control_streams") < SILENT + 2 and time.monotonic() < deadline:
            time.sleep(0.2)
        assert metric(roomy, "qusec_control_streams") >= SILENT + 2
        health, paths = [], []
        with channel(roomy.grpc_addr, pki.ca_cert, *pki.node("B")) as ch:
            stub = health_pb2_grpc.HealthStub(ch)
            stub.Check(health_pb2.HealthCheckRequest(), timeout=5)   # the connection is up
            for _ in range(20):
                t0 = time.monotonic()
                resp = stub.Check(health_pb2.HealthCheckRequest(), timeout=5)
                health.append(time.monotonic() - t0)
                assert resp.status == health_pb2.HealthCheckResponse.SERVING
        b.request_path("D")                                       # warm the channel
        for _ in range(20):
            t0 = time.monotonic()
            (p,) = b.request_path("D", timeout=5).paths
            paths.append(time.monotonic() - t0)
            b.stub.ReleasePath(control_pb2.ReleaseRequest(path_id=p.path_id), timeout=5)
        print(f"with {SILENT} silent streams: health median {statistics.median(health) * 1000:.1f} ms "
              f"max {max(health) * 1000:.1f} ms; RequestPath median {statistics.median(paths) * 1000:.1f} "
              f"ms max {max(paths) * 1000:.1f} ms")
        assert statistics.median(health) < 0.1 and statistics.median(paths) < 0.1
        assert sorted(health)[-2] < 0.1 and sorted(paths)[-2] < 0.1   # all but a stray one
        assert metric(roomy, "qusec_control_streams") >= SILENT + 2  # still all open
    finally:
        stop.set()
        holder.join(15)
        b.close()
        d.close()
