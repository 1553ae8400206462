"""The real controller (osken-manager + app + gateway process, no switches) over mutual TLS."""
from __future__ import annotations

import json
import os
import signal
import time
import urllib.error
import urllib.request

import grpc
import pytest

from tests.helpers import ROOT
from google.rpc import error_details_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from mininet_topos.launch.controller import Controller
from quseccontroller.proto import control_pb2, control_pb2_grpc
from tests.helpers.agent_standin import TestAgent, channel, link, status_details
from tests.helpers.etsi015_yang import validate_export
from tests.helpers.pki import make_pki

pytestmark = pytest.mark.integration

NODES = ["A", "B", "C", "D"] + [f"S{i}" for i in range(40)]


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    return make_pki(tmp_path_factory.mktemp("pki"), NODES)


@pytest.fixture(scope="module")
def ctl(tmp_path_factory, pki):
    c = Controller(tmp_path_factory.mktemp("qusec"), ca_cert=pki.ca_cert, cert=pki.qusec_cert,
                   key=pki.qusec_key, gone_grace=0.5)
    with c:                     # started, ready; stopped however the tests end
        yield c


def agent(ctl, pki, node, **kw) -> TestAgent:
    cert, key = pki.node(node)
    return TestAgent(ctl.grpc_addr, pki.ca_cert, cert, key, node, **kw)


def wait_for(cond, timeout=10.0, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = cond()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def http(ctl, path):
    try:
        with urllib.request.urlopen(ctl.http_url + path, timeout=5) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def https(ctl, pki, path, cert_key=None):
    """GET on the operator interface with ``cert_key`` (default: the network's operator)."""
    import ssl
    ctx = ssl.create_default_context(cafile=pki.ca_cert)
    ctx.check_hostname = False   # the controller certificate names qusec and its addresses
    ctx.load_cert_chain(*(cert_key or pki.operator))
    try:
        with urllib.request.urlopen(ctl.https_url + path, timeout=5, context=ctx) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def test_health_and_reflection(ctl, pki):
    cert, key = pki.node("A")
    with channel(ctl.grpc_addr, pki.ca_cert, cert, key) as ch:
        for svc in ("", "qusec.control.v1.QuSeCControl"):
            resp = health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(service=svc), timeout=5)
            assert resp.status == health_pb2.HealthCheckResponse.SERVING
        stub = reflection_pb2_grpc.ServerReflectionStub(ch)
        (resp,) = list(stub.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(
            list_services="")]), timeout=5))
        names = {s.name for s in resp.list_services_response.service}
        assert {"qusec.control.v1.QuSeCControl", "grpc.health.v1.Health"} <= names


def test_unauthenticated_and_foreign_ca_clients_are_refused(ctl, pki, tmp_path):
    with channel(ctl.grpc_addr, pki.ca_cert) as ch:  # no client certificate
        with pytest.raises(grpc.RpcError) as err:
            health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(), timeout=5)
        assert err.value.code() == grpc.StatusCode.UNAVAILABLE
    other = make_pki(tmp_path / "other", ["A"])
    cert, key = other.node("A")
    with channel(ctl.grpc_addr, pki.ca_cert, cert, key) as ch:  # right CN, wrong CA
        with pytest.raises(grpc.RpcError) as err:
            control_pb2_grpc.QuSeCControlStub(ch).RequestPath(
                control_pb2.PathRequest(src_node="A", dst_node="B"), timeout=5)
        assert err.value.code() == grpc.StatusCode.UNAVAILABLE


def test_agent_cannot_register_as_another_node_and_controller_keeps_serving(ctl, pki):
    cert, key = pki.node("A")
    impostor = TestAgent(ctl.grpc_addr, pki.ca_cert, cert, key, "B").connect()
    try:
        assert impostor.closed.wait(5) and not impostor.registered.is_set()
        assert impostor.error.code() == grpc.StatusCode.PERMISSION_DENIED
        assert "may not register as node 'B'" in impostor.error.details()
        (info,) = status_details(impostor.error)
        assert info.reason == "NODE_ID_MISMATCH" and info.metadata["cn"] == "A"
    finally:
        impostor.close()
    # First message not a Register: INVALID_ARGUMENT with a BadRequest naming the field.
    bad = agent(ctl, pki, "C").connect(first=control_pb2.AgentMessage(
        report=control_pb2.LinkReport()))
    try:
        assert bad.closed.wait(5)
        assert bad.error.code() == grpc.StatusCode.INVALID_ARGUMENT
        (br,) = status_details(bad.error)
        assert br.field_violations[0].field == "register"
    finally:
        bad.close()
    good = agent(ctl, pki, "A").connect()
    try:
        assert good.registered.is_set(), good.error
        assert good.received[0].registered.node_id == "A"
    finally:
        good.close()
    assert http(ctl, "/healthz")[0] == 200


def test_bad_and_refused_path_requests_carry_details(ctl, pki):
    a = agent(ctl, pki, "A", links=[link("AB", "B")]).connect()
    try:
        assert a.registered.is_set()
        with pytest.raises(grpc.RpcError) as err:
            a.stub.RequestPath(control_pb2.PathRequest(src_node="A"), timeout=5)
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        (br,) = status_details(err.value)
        assert br.field_violations[0].field == "dst_node"
        with pytest.raises(grpc.RpcError) as err:
            a.request_path("nowhere")
        assert err.value.code() == grpc.StatusCode.NOT_FOUND
        (refusal,) = status_details(err.value)
        assert isinstance(refusal, control_pb2.PathRefusal) and refusal.reason == "unknown_node"
        assert "nowhere" in refusal.message and refusal.rule == "default"
        with pytest.raises(grpc.RpcError) as err:  # A's certificate asking on behalf of C
            a.stub.RequestPath(control_pb2.PathRequest(src_node="C", dst_node="A"), timeout=5)
        assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
        assert isinstance(status_details(err.value)[0], error_details_pb2.ErrorInfo)
        with pytest.raises(grpc.RpcError) as err:
            a.stub.ReleasePath(control_pb2.ReleaseRequest(), timeout=5)
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert a.stub.ReleasePath(control_pb2.ReleaseRequest(path_id="nope"), timeout=5).released is False
    finally:
        a.close()
    status, body = http(ctl, "/metrics")
    assert status == 200
    assert 'qusec_paths_refused_total{reason="unknown_node"}' in body
    assert 'qusec_paths_refused_total{reason="invalid_argument"}' in body


def test_granted_path_is_answered_after_every_authorisation_is_acked(ctl, pki):
    a = agent(ctl, pki, "A", links=[link("AB", "B")]).connect()
    b = agent(ctl, pki, "B", links=[link("AB", "A"), link("BD", "D")]).connect()
    d = agent(ctl, pki, "D", links=[link("BD", "B")]).connect()
    try:
        assert a.registered.is_set() and b.registered.is_set() and d.registered.is_set()
        reply, call = a.request_path_with_call("D")
        (path,) = reply.paths
        assert [h.node_id for h in path.hops] == ["A", "B", "D"]
        assert [h.relay_addr for h in path.hops] == ["127.0.0.1:7000"] * 3
        # Every node on the path had its authorisation before the answer came back.
        for ag, prev, nxt in ((a, "", "B"), (b, "A", "D"), (d, "B", "")):
            auth = ag.authorised[path.path_id]
            assert (auth.prev_hop, auth.next_hop) == (prev, nxt)
            assert (auth.src_node, auth.dst_node) == ("A", "D")
        assert reply.expires_unix_ms > time.time() * 1000 and reply.rule == "default"
        trailers = dict(call.trailing_metadata())
        assert float(trailers["qusec-gateway-ms"]) >= float(trailers["qusec-app-ms"]) >= 0
        status, body = https(ctl, pki, "/etsi015")   # an operator's: see test_attacks_controller.py
        assert status == 200
        validate_export(etsi := json.loads(body))      # RFC 7951 data of the vendored YANG
        assert {l.get("qusec-etsi-qkd-node-ext:path_id") for l in
                etsi["B"]["etsi-qkd-sdn-node:qkd_node"]["qkd_links"]["qkd_link"]} >= {path.path_id}
        assert a.stub.ReleasePath(control_pb2.ReleaseRequest(path_id=path.path_id), timeout=5).released
        wait_for(lambda: path.path_id in b.revoked, what="revocation at B")
        assert b.revoked[path.path_id] == "released"
        status, body = http(ctl, "/metrics")
        granted = [float(line.split()[-1]) for line in body.splitlines()
                   if line.startswith("qusec_paths_granted_total ")]
        assert granted and granted[0] >= 1
        assert "qusec_path_setup_seconds_count" in body and "qusec_paths_active" in body
        assert 'qusec_link_key_bits{link="BD",node="D"} 1e+08' in body
        status, body = https(ctl, pki, "/etsi015")
        assert status == 200
        validate_export(json.loads(body))
        # A report that takes BD down: new requests avoid it.
        d.report([link("BD", "B", stored_bits=0, status=control_pb2.LINK_STATUS_OFF)])
        def refused():
            try:
                a.request_path("D", timeout=5)
            except grpc.RpcError as e:
                return e
        err = wait_for(refused, what="refusal over a link that is OFF")
        assert status_details(err)[0].reason in ("disconnected", "no_key")
    finally:
        for ag in (a, b, d):
            ag.close()


def test_lost_stream_marks_node_gone_after_grace(ctl, pki):
    a = agent(ctl, pki, "A", links=[link("AC", "C")]).connect()
    c = agent(ctl, pki, "C", links=[link("AC", "A")]).connect()
    try:
        assert a.request_path("C").paths
        c.close()
        def gone():
            try:
                a.request_path("C", timeout=5)
            except grpc.RpcError as e:
                return e.code() == grpc.StatusCode.NOT_FOUND
        assert wait_for(gone, timeout=10, what="node C marked gone")
        assert "C" not in json.loads(http(ctl, "/healthz")[1])["nodes"]
    finally:
        a.close()


def test_many_open_control_streams_leave_room_for_calls(ctl, pki):
    """Every open stream holds a gRPC worker: 40 agents (more than a small pool) and still
    path requests are answered."""
    agents = [agent(ctl, pki, f"S{i}", links=[link(f"SL{i}", f"S{(i + 1) % 40}"),
                                              link(f"SL{(i - 1) % 40}", f"S{(i - 1) % 40}")])
              for i in range(40)]
    try:
        for a in agents:
            a.connect()
        assert all(a.registered.is_set() for a in agents)
        reply = agents[0].request_path("S3")
        assert [h.node_id for h in reply.paths[0].hops] == ["S0", "S1", "S2", "S3"]
        assert len(json.loads(http(ctl, "/healthz")[1])["nodes"]) >= 40
    finally:
        for a in agents:
            a.close()


def test_gateway_crash_is_restarted_by_the_app(ctl, pki):
    old = ctl.gateway_info()["pid"]
    os.kill(old, signal.SIGKILL)
    wait_for(lambda: ctl.gateway_info().get("pid") != old and ctl.grpc_serving(), timeout=20,
             what="gateway restart")
    a = agent(ctl, pki, "A").connect()
    try:
        assert a.registered.is_set()
    finally:
        a.close()
    assert ctl.proc.poll() is None and ctl.of_listening()


def test_standalone_gateway_survives_an_app_restart(tmp_path, pki):
    c = Controller(tmp_path / "standalone", ca_cert=pki.ca_cert, cert=pki.qusec_cert,
                   key=pki.qusec_key, gateway="standalone")
    c.start()
    a = b = None
    try:
        c.wait_ready(30)
        a = agent(c, pki, "A", links=[link("AB", "B")]).connect()
        b = agent(c, pki, "B", links=[link("AB", "A")]).connect()
        assert a.request_path("B").paths
        gw_pid = c.gateway_proc.pid
        c.stop_app()
        wait_for(lambda: not c.grpc_serving(), what="NOT_SERVING while the app is away")
        with pytest.raises(grpc.RpcError) as err:
            a.request_path("B")
        assert err.value.code() == grpc.StatusCode.UNAVAILABLE
        assert "not connected" in err.value.details()
        c.start().wait_ready(30)
        assert c.gateway_proc.pid == gw_pid
        # The agents' streams stayed open; the gateway registered them again with the new app.
        reply = wait_for(lambda: _try(lambda: a.request_path("B")), what="path after app restart")
        assert [h.node_id for h in reply.paths[0].hops] == ["A", "B"]
        assert not a.closed.is_set() and not b.closed.is_set()
    finally:
        for ag in (a, b):
            if ag is not None:
                ag.close()
        c.stop()


def _try(fn):
    try:
        return fn()
    except grpc.RpcError:
        return None


LAUNCHER = """
import json, os, sys
from mininet_topos.launch.controller import Controller
c = Controller(sys.argv[1], ca_cert=sys.argv[2], cert=sys.argv[3], key=sys.argv[4])
c.start().wait_ready(30)
print(json.dumps({"app": c.proc.pid, "gateway": c.gateway_info()["pid"]}), flush=True)
os._exit(0)  # the launcher dies without stopping anything
"""


def test_controller_does_not_outlive_a_crashed_launcher(tmp_path, pki):
    import subprocess
    import sys
    out = subprocess.run([sys.executable, "-c", LAUNCHER, str(tmp_path / "orphan"), pki.ca_cert,
                          pki.qusec_cert, pki.qusec_key], capture_output=True, text=True, timeout=60,
                         cwd=ROOT)
    pids = json.loads(out.stdout.strip().splitlines()[-1])

    def gone(pid):
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split()[2] == "Z"

    wait_for(lambda: gone(pids["app"]) and gone(pids["gateway"]), timeout=15,
             what="osken-manager and gateway to exit after their launcher died")


def test_policy_file_is_reloaded_and_a_bad_one_is_rejected(tmp_path, pki):
    policy = tmp_path / "policy.toml"
    policy.write_text('[default]\naction = "allow"\n')
    c = Controller(tmp_path / "pol", ca_cert=pki.ca_cert, cert=pki.qusec_cert, key=pki.qusec_key,
                   policy=str(policy))
    c.start()
    a = b = None
    try:
        c.wait_ready(30)
        a = agent(c, pki, "A", links=[link("AB", "B")]).connect()
        b = agent(c, pki, "B", links=[link("AB", "A")]).connect()
        assert a.request_path("B").rule == "default"
        policy.write_text('[default]\naction = "allow"\n\n[[rules]]\nname = "no-b"\n'
                          'match = { dst_node = "B" }\naction = "deny"\n')
        os.utime(policy, (time.time() + 5, time.time() + 5))  # a new mtime even within 1 s

        def refused_by_new_rule():
            try:
                a.request_path("B")
            except grpc.RpcError as e:
                return status_details(e)[0].rule == "no-b"
        wait_for(refused_by_new_rule, what="the reloaded policy")
        policy.write_text('[default]\naction = "sometimes"\n')  # invalid: old table stays
        os.utime(policy, (time.time() + 10, time.time() + 10))
        wait_for(lambda: "policy reload rejected" in c.log_file.read_text(), what="rejection logged")
        assert "action" in c.log_file.read_text().split("policy reload rejected")[-1]
        with pytest.raises(grpc.RpcError) as err:
            a.request_path("B")
        assert status_details(err.value)[0].reason == "policy_deny"
    finally:
        for ag in (a, b):
            if ag is not None:
                ag.close()
        c.stop()
