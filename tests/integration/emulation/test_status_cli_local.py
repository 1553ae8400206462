"""qkdnet status|links|paths|events against a real --local network (QuSeC, agents, TLS): the
tables and the exact JSON, a refused request and a rejected policy reload in /events, /status
and /metrics, and one clear line with status 1 for a wrong certificate or an unreachable QuSeC."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request

import pytest

from mininet_topos import topology
from mininet_topos.launch.keypair import client_pair
from mininet_topos.launch.local import LocalNetwork
from mininet_topos.launch.operator import OperatorClient
from tests.helpers.agent_standin import TestAgent

pytestmark = [pytest.mark.integration, pytest.mark.slow]
QKDNET = [sys.executable, "-m", "mininet_topos.cli"]
TOPO = """[network]
name = "line3"
[[nodes]]
id = "A"
[[nodes]]
id = "B"
[[nodes]]
id = "C"
[[links]]
a = "A"
b = "B"
length_km = 5
[[links]]
a = "B"
b = "C"
length_km = 5
[[saes]]
id = "sae-a"
node = "A"
[[saes]]
id = "sae-b"
node = "B"
[[saes]]
id = "sae-c"
node = "C"
"""
POLICY = ('[default]\naction = "allow"\npaths = 1\n\n[[rules]]\nname = "no-a"\n'
          'match = { dst_node = "A" }\naction = "deny"\n')


@pytest.fixture(scope="module")
def net(tmp_path_factory):
    root = tmp_path_factory.mktemp("statuscli")
    (root / "line3.toml").write_text(TOPO)
    (root / "policy.toml").write_text(POLICY)
    n = LocalNetwork(topology.load(str(root / "line3.toml")), root / "state",
                     policy=root / "policy.toml")
    try:
        n.start()
        yield n, json.loads(n.network_json.read_text()), root
    finally:
        n.stop()


def qkdnet(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([*QKDNET, *args], capture_output=True, text=True, timeout=60)


def metrics(doc: dict) -> str:
    with urllib.request.urlopen(doc["qusec"]["http"] + "/metrics", timeout=5) as r:
        return r.read().decode()


def wait_for(cond, what: str, timeout: float = 20.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = cond()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def test_status_links_and_paths_readable_and_json(net):
    n, doc, _ = net
    assert client_pair(doc, "sae-a", "sae-c", 1)["ok"]          # relayed A -> B -> C
    nj = str(n.network_json)
    r = qkdnet("status", "--network", nj)
    assert r.returncode == 0, r.stderr
    assert "3/3 registered" in r.stdout and "2/2 up" in r.stdout and doc["qusec"]["https"] in r.stdout
    r = qkdnet("status", "--network", str(n.state_dir), "--json")   # the state dir works too
    assert r.returncode == 0, r.stderr
    st = json.loads(r.stdout)
    assert sorted(st["core"]["nodes"]) == ["A", "B", "C"] and "policy_reload" in st
    links = json.loads(qkdnet("links", "--network", nj, "--json").stdout)
    assert links == OperatorClient.of_network(doc).status()["core"]["links"] or \
        set(links) == set(st["core"]["links"])      # stored bits move on; the links do not
    table = qkdnet("links", "--network", nj).stdout
    assert all(lid in table for lid in links) and "ACTIVE" in table
    paths = json.loads(qkdnet("paths", "--network", nj, "--json").stdout)
    assert [p["nodes"] for p in paths.values()] == [["A", "B", "C"]]
    assert "A -> B -> C  rule=default" in qkdnet("paths", "--network", nj).stdout


def test_a_refused_request_and_a_refused_stream_appear_in_events(net):
    n, doc, _ = net
    op = OperatorClient.of_network(doc)
    seq = op.events()["last_seq"]
    assert not client_pair(doc, "sae-c", "sae-a", 1)["ok"]          # rule no-a denies it
    cert, key = (str(n.state_dir / "pki" / "nodes" / f"B.{x}") for x in ("pem", "key"))
    intruder = TestAgent(doc["qusec"]["grpc"], doc["ca_cert"], cert, key, "A").connect()
    assert intruder.wait_closed() is not None                      # B may not register as A
    intruder.close()
    r = qkdnet("events", "--network", str(n.network_json), "--since", str(seq), "--json")
    assert r.returncode == 0, r.stderr
    events = json.loads(r.stdout)["events"]
    refused = [e for e in events if e["kind"] == "path_refused"]
    assert refused and refused[0]["reason"] == "policy_deny" and refused[0]["rule"] == "no-a"
    assert refused[0]["src"] == "C" and refused[0]["dst_sae"] == "sae-a"
    stream = [e for e in events if e["kind"] == "registration_refused"]
    assert stream and stream[0]["reason"] == "node_id_mismatch" and stream[0]["node"] == "B"
    assert stream[0]["source"] == "gateway"
    assert all(e["seq"] > seq for e in events)
    assert not any("key" in k for e in events for k in e)
    text = qkdnet("events", "--network", str(n.network_json), "--since", str(seq)).stdout
    assert "path_refused" in text and "reason=policy_deny" in text
    assert "reason=policy_deny" in qkdnet("status", "--network", str(n.network_json)).stdout
    grants = [e for e in op.events()["events"] if e["kind"] == "path_granted"]
    assert grants and grants[0]["paths"] == [["A", "B", "C"]] and grants[0]["rule"] == "default"
    assert [e["kind"] for e in op.events()["events"]].count("agent_registered") >= 3


def test_events_query_is_checked(net):
    _, doc, _ = net
    op = OperatorClient.of_network(doc)
    for bad in ("?since=x", "?since=-1", "?limit=1.5", "?sinse=1"):
        with pytest.raises(OSError, match="HTTP 400"):
            op.get("/events" + bad)
    with pytest.raises(urllib.error.HTTPError) as err:               # not on the plain port
        urllib.request.urlopen(doc["qusec"]["http"] + "/events", timeout=5)
    assert err.value.code == 404
    assert len(op.events(0, limit=2)["events"]) == 2


def test_a_rejected_policy_reload_shows_in_status_metrics_and_events(net):
    n, doc, root = net
    op = OperatorClient.of_network(doc)
    policy = root / "policy.toml"
    policy.write_text('[default]\naction = "perhaps"\n')
    st = os.stat(policy)
    os.utime(policy, ns=(st.st_atime_ns, st.st_mtime_ns + 2_000_000_000))
    last = wait_for(lambda: (op.status()["policy_reload"]["last"] or {}).get("result") == "rejected"
                    and op.status()["policy_reload"]["last"], "the rejected reload in /status")
    assert not last["ok"] and last["problems"] and "perhaps" in " ".join(last["problems"])
    text = metrics(doc)
    assert 'qusec_policy_reloads_total{result="rejected"} 1.0' in text
    assert "qusec_policy_last_reload_ok 0.0" in text
    assert "qusec_policy_last_reload_timestamp_seconds" in text
    assert "sae-" not in text and "no-a" not in text                 # plain port: no SAE, no rule
    events = op.events()["events"]
    assert events[-1]["kind"] == "policy_rejected" or any(e["kind"] == "policy_rejected" for e in events)
    out = qkdnet("status", "--network", str(n.network_json)).stdout
    assert "REJECTED" in out and "perhaps" in out
    assert not client_pair(doc, "sae-c", "sae-a", 1)["ok"]           # the old table stays
    policy.write_text(POLICY)
    os.utime(policy, ns=(st.st_atime_ns, st.st_mtime_ns + 4_000_000_000))
    wait_for(lambda: (op.status()["policy_reload"]["last"] or {}).get("ok"), "the good reload")
    assert "qusec_policy_last_reload_ok 1.0" in metrics(doc)
    assert 'qusec_policy_reloads_total{result="ok"} 1.0' in metrics(doc)


def test_wrong_certificate_and_unreachable_qusec_are_one_clear_line(net, tmp_path):
    n, doc, _ = net
    sae = doc["saes"]["sae-a"]
    wrong = dict(doc, operator={"cert": sae["cert"], "key": sae["key"]})
    (tmp_path / "wrong.json").write_text(json.dumps(wrong))
    r = qkdnet("status", "--network", str(tmp_path / "wrong.json"))
    assert r.returncode == 1 and r.stdout == ""
    assert r.stderr.count("\n") == 1 and "refused the operator certificate" in r.stderr
    assert sae["cert"] in r.stderr and "Traceback" not in r.stderr
    import socket
    with socket.socket() as s:      # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    away = dict(doc, qusec=dict(doc["qusec"], https=f"https://127.0.0.1:{port}"))
    (tmp_path / "away.json").write_text(json.dumps(away))
    r = qkdnet("events", "--network", str(tmp_path / "away.json"))
    assert r.returncode == 1 and r.stderr.count("\n") == 1 and "unreachable" in r.stderr, r.stderr
    r = qkdnet("links", "--network", str(tmp_path / "missing.json"))
    assert r.returncode == 1 and "missing.json" in r.stderr and r.stderr.count("\n") == 1
