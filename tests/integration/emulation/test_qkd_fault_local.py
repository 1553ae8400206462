"""QKD link faults on a real --local network (QuSeC, agents, TLS): the operator raises a link's
QBER over the agents' management API, QuSeC shows the link OFF with the alarm within ~3 s and
relays the next key over the other side; a node or SAE certificate is refused; ``qkdnet
qlink`` from a shell sets, clears and refuses what it must."""
from __future__ import annotations

import json
import subprocess
import sys
import time

import grpc
import pytest

from kms_agents.manage import ManageClient, ManageError
from mininet_topos import topology
from mininet_topos.launch.keypair import client_pair
from mininet_topos.launch.local import LocalNetwork
from mininet_topos.launch.operator import OperatorClient

pytestmark = [pytest.mark.integration, pytest.mark.slow]
QKDNET = [sys.executable, "-m", "mininet_topos.cli"]
# a square: A-B-C and A-D-C
TOPO = """[network]
name = "square"
""" + "".join(f'[[nodes]]\nid = "{n}"\n' for n in "ABCD") + "".join(
    f'[[links]]\na = "{a}"\nb = "{b}"\nrate_bps = 1e6\n' for a, b in ("AB", "BC", "AD", "DC")) + """
[[saes]]
id = "sae-a"
node = "A"
[[saes]]
id = "sae-c"
node = "C"
"""


@pytest.fixture(scope="module")
def net(tmp_path_factory):
    root = tmp_path_factory.mktemp("qkdfault")
    (root / "square.toml").write_text(TOPO)
    (root / "policy.toml").write_text('[default]\naction = "allow"\npaths = 1\nmetric = "hops"\n')
    n = LocalNetwork(topology.load(str(root / "square.toml")), root / "state", policy=root / "policy.toml")
    try:
        n.start()
        yield n, json.loads(n.network_json.read_text())
    finally:
        n.stop()


def qkdnet(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([*QKDNET, *args], capture_output=True, text=True, timeout=60)


def link_between(doc: dict, a: str, b: str) -> str:
    links = OperatorClient.of_network(doc).status()["core"]["links"]
    return next(lid for lid, x in links.items() if {x["a"], x["b"]} == {a, b})


def wait_link(doc: dict, lid: str, cond, timeout: float) -> dict:
    op = OperatorClient.of_network(doc)
    deadline = time.monotonic() + timeout
    while True:
        link = op.status()["core"]["links"][lid]
        if cond(link):
            return link
        if time.monotonic() > deadline:
            raise AssertionError(f"link {lid} after {timeout} s: {link}")
        time.sleep(0.1)


def manage(doc: dict, node: str, cert: str | None = None, key: str | None = None) -> ManageClient:
    return ManageClient(doc["nodes"][node]["relay_addr"], doc["ca_cert"],
                        cert or doc["operator"]["cert"], key or doc["operator"]["key"])


def test_manage_is_served_with_health_and_reflection(net):
    from grpc_health.v1 import health_pb2, health_pb2_grpc
    from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
    from kms_agents import rpc
    _, doc = net
    creds = rpc.channel_credentials(doc["ca_cert"], doc["operator"]["cert"], doc["operator"]["key"])
    with grpc.secure_channel(doc["nodes"]["A"]["relay_addr"], creds) as ch:
        assert health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(), timeout=5).status == \
            health_pb2.HealthCheckResponse.SERVING
        refl = reflection_pb2_grpc.ServerReflectionStub(ch)
        resp = next(refl.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")]),
                                              timeout=5))
        assert "qusec.manage.v1.Manage" in {s.name for s in resp.list_services_response.service}


def test_a_node_or_sae_certificate_may_not_set_a_fault(net):
    n, doc = net
    lid = link_between(doc, "A", "B")
    node_cert = [str(n.state_dir / "pki" / "nodes" / f"B.{x}") for x in ("pem", "key")]
    sae = doc["saes"]["sae-a"]
    for cert, key in (node_cert, (sae["cert"], sae["key"])):
        with manage(doc, "A", cert, key) as client:
            for call in (lambda: client.set_fault(lid, "down"), client.faults):
                with pytest.raises(ManageError) as err:
                    call()
                assert err.value.code == grpc.StatusCode.PERMISSION_DENIED
                assert "operator certificate" in str(err.value)
    with manage(doc, "A") as client:      # nothing changed
        assert all(f.alarm == "" and f.skr_bps == f.nominal_skr_bps for f in client.faults())


def test_an_alarm_over_the_management_api_excludes_the_link_and_the_key_goes_round(net):
    _, doc = net
    first = client_pair(doc, "sae-a", "sae-c", 1, fresh=True)
    assert first["ok"], first
    relay = first["path"][1]
    other = "D" if relay == "B" else "B"
    lid = link_between(doc, "A", relay)
    t0 = time.monotonic()
    for end in ("A", relay):            # the operator sets both ends of the link
        with manage(doc, end) as client:
            got = client.set_fault(lid, "qber", 0.2)
        assert got.alarm == "qber_above_threshold" and got.skr_bps == 0.0 and got.nominal_skr_bps == 1e6
    link = wait_link(doc, lid, lambda x: x["status"] == "OFF" and x.get("alarm"), 3.0)
    assert time.monotonic() - t0 < 3.0
    assert link["alarm"] == "qber_above_threshold" and link["qber"] == pytest.approx(0.2)
    events = OperatorClient.of_network(doc).events()["events"]
    alarms = [e for e in events if e["kind"] == "qkd_alarm" and e["link"] == lid]
    assert sorted(e["node"] for e in alarms) == sorted(["A", relay])
    assert all(e["state"] == "raised" and e["qber"] == pytest.approx(0.2) for e in alarms)
    second = client_pair(doc, "sae-a", "sae-c", 1, fresh=True)
    assert second["ok"], second
    assert second["path"] == ["A", other, "C"]
    for end in ("A", relay):
        with manage(doc, end) as client:
            assert client.set_fault(lid, "up").alarm == ""
    link = wait_link(doc, lid, lambda x: x["status"] != "OFF", 5.0)
    assert link["alarm"] == "" and link["qber"] == 0.0


def test_qkdnet_qlink_sets_clears_and_refuses(net):
    _, doc = net
    nj = str(net[0].network_json)
    lid = link_between(doc, "A", "B")
    r = qkdnet("qlink", "sae-a", "B", "qber", "0.05", "--network", nj)
    assert r.returncode == 0, r.stderr
    assert f"link {lid} at A (toward B): qber 0.05: key rate" in r.stdout
    assert f"link {lid} at B (toward A): qber 0.05" in r.stdout
    link = wait_link(doc, lid, lambda x: x.get("qber") == pytest.approx(0.05), 5.0)
    assert link["status"] != "OFF" and link["alarm"] == ""
    r = qkdnet("qlink", "A", "B", "down", "--network", nj, "--json")
    assert r.returncode == 0, r.stderr
    ends = json.loads(r.stdout)
    assert [(e["node"], e["alarm"]) for e in ends] == [("A", "link_down"), ("B", "link_down")]
    wait_link(doc, lid, lambda x: x["status"] == "OFF" and x["alarm"] == "link_down", 3.0)
    assert "ALARM link_down" in qkdnet("links", "--network", nj).stdout
    r = qkdnet("qlink", "A", "B", "up", "--network", nj)
    assert r.returncode == 0 and r.stdout.count(": up: key rate 1000000 of 1000000 b/s") == 2, r
    wait_link(doc, lid, lambda x: x["status"] != "OFF" and x["alarm"] == "", 5.0)
    for args, message in ((("A", "C", "down"), "nodes A and C are not neighbours (no QKD link "
                                                "between them); A's QKD neighbours: B, D"),
                          (("A", "Z", "down"), "unknown node or SAE 'Z'; nodes: A, B, C, D"),
                          (("A", "B", "qber", "0.7"), "QBER 0.7 is outside 0..0.5"),
                          (("A", "B", "qber"), "qber takes one value"),
                          (("A", "B", "sideways"), "the fault must be down, up or qber X"),
                          (("A", "B", "down", "--link", "X-Y"), f"link 'X-Y' does not join A and B; "
                                                              f"their links: {lid}")):
        r = qkdnet("qlink", *args, "--network", nj)
        assert r.returncode == 1 and message in r.stderr, (args, r.stderr)
        assert r.stderr.startswith("qkdnet qlink: ") and len(r.stderr.strip().splitlines()) == 1
