"""/metrics of real agents (processes, QuSeC, mutual TLS) after real calls: the exact samples that moved,
the store levels read at scrape time, and no key id, path id or key byte in any scrape."""
from __future__ import annotations

import base64
import json
import urllib.request

import grpc
import pytest
from prometheus_client.parser import text_string_to_metric_families

from kms_agents import rpc
from kms_agents.client import Etsi014Error
from kms_agents.proto import etsi004_pb2 as pb
from kms_agents.proto import relay_pb2, relay_pb2_grpc
from mininet_topos.launch.local import LocalNetwork
from tests.helpers.kmsnet import Saes, node_cert, small_topology

pytestmark = pytest.mark.integration

SECRETS: list[str] = []      # every key id, key (base64 and hex) and path id the tests saw


@pytest.fixture(scope="module")
def net(tmp_path_factory):
    with LocalNetwork(small_topology(), tmp_path_factory.mktemp("metrics"), with_qusec=True) as n:
        if n.controller is None:
            pytest.skip("QuSeC could not start here (see its log under the state dir)")
        yield n


@pytest.fixture(scope="module")
def saes(net):
    s = Saes(json.loads(net.network_json.read_text()))
    yield s
    s.close()


class Scrape:
    """One /metrics scrape of an agent: its text and every sample by (name, labels)."""

    def __init__(self, agent: dict) -> None:
        with urllib.request.urlopen(agent["metrics_url"], timeout=5) as r:
            self.text = r.read().decode()
        self.samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
                        for f in text_string_to_metric_families(self.text) for s in f.samples}

    def __call__(self, name: str, **labels: str) -> float:
        return self.samples.get((name, tuple(sorted(labels.items()))), 0.0)


def scrape(net, node: str) -> Scrape:
    return Scrape(net.agents[node])


def moved(before: Scrape, after: Scrape) -> dict:
    """The samples whose value changed (new ones included), as {(name, labels): delta}; the
    histogram's sum (seconds) and the _created times are left out."""
    keys = set(before.samples) | set(after.samples)
    return {k: after.samples.get(k, 0.0) - before.samples.get(k, 0.0) for k in keys
            if after.samples.get(k, 0.0) != before.samples.get(k, 0.0) and not k[0].endswith(("_sum", "_created"))}


def remember(keys) -> None:
    for k in keys:
        SECRETS.extend([k.key_id, base64.b64encode(k.key).decode(), k.key.hex()])
        for pid in (k.key_extension or {}).get("qusec_path_ids") or []:
            SECRETS.append(pid)


def lab(**labels: str) -> tuple:
    return tuple(sorted(labels.items()))


def test_etsi014_calls_count_by_endpoint_and_status_and_move_the_pair_level(net, saes) -> None:
    a0, b0 = scrape(net, "A"), scrape(net, "B")
    keys = saes.kme("sae-a1").enc_keys("sae-b1", 2, 256)        # 200, two keys to the master
    remember(keys)
    with pytest.raises(Etsi014Error) as e:
        saes.kme("sae-a1").status("no-such-sae")                # 400
    assert e.value.status == 400
    with pytest.raises(Etsi014Error) as e:
        saes.kme("sae-b1", node="A").status("sae-a1")           # 401: not an SAE of node A
    assert e.value.status == 401
    a1, b1 = scrape(net, "A"), scrape(net, "B")
    assert {k: v for k, v in moved(a0, a1).items() if not k[0].startswith("qusec_agent_link_")} == {
        ("qusec_agent_requests_total", lab(api="etsi014", endpoint="enc_keys", status="200")): 1,
        ("qusec_agent_requests_total", lab(api="etsi014", endpoint="status", status="400")): 1,
        ("qusec_agent_requests_total", lab(api="etsi014", endpoint="status", status="401")): 1,
        ("qusec_agent_refusals_total", lab(server="etsi014", reason="not_local_sae")): 1,
        ("qusec_agent_keys_delivered_total", lab(api="etsi014", endpoint="enc_keys")): 2,
        ("qusec_agent_key_bits_delivered_total", lab(api="etsi014", endpoint="enc_keys")): 512,
    }
    # the keys wait at B for sae-b1
    assert b1("qusec_agent_pending_keys", master_sae="sae-a1", slave_sae="sae-b1") == \
        b0("qusec_agent_pending_keys", master_sae="sae-a1", slave_sae="sae-b1") + 2
    assert b1("qusec_agent_pending_key_bits", master_sae="sae-a1", slave_sae="sae-b1") == \
        b0("qusec_agent_pending_key_bits", master_sae="sae-a1", slave_sae="sae-b1") + 512

    got = saes.kme("sae-b1").dec_keys("sae-a1", [k.key_id for k in keys])
    assert [g.key for g in got] == [k.key for k in keys]
    b2 = scrape(net, "B")
    assert b2("qusec_agent_requests_total", api="etsi014", endpoint="dec_keys", status="200") == \
        b1("qusec_agent_requests_total", api="etsi014", endpoint="dec_keys", status="200") + 1
    assert b2("qusec_agent_keys_delivered_total", api="etsi014", endpoint="dec_keys") == \
        b1("qusec_agent_keys_delivered_total", api="etsi014", endpoint="dec_keys") + 2
    assert b2("qusec_agent_pending_keys", master_sae="sae-a1", slave_sae="sae-b1") == \
        b0("qusec_agent_pending_keys", master_sae="sae-a1", slave_sae="sae-b1")


def test_etsi004_calls_count_by_method_and_grpc_code(net, saes) -> None:
    a0, b0 = scrape(net, "A"), scrape(net, "B")
    app_a, app_b = saes.app("sae-a1"), saes.app("sae-b1")
    r = app_a.open_connect("qkd://sae-a1", "qkd://sae-b1", key_chunk_size=32)
    assert r.status == pb.Status.PEER_NOT_CONNECTED
    app_b.open_connect("qkd://sae-a1", "qkd://sae-b1", key_stream_id=r.key_stream_id, key_chunk_size=32,
                       timeout_ms=2000)
    chunk = app_a.get_key(r.key_stream_id, 0)
    assert chunk.status == pb.Status.SUCCESSFUL
    SECRETS.extend([r.key_stream_id, base64.b64encode(chunk.key_buffer).decode(), chunk.key_buffer.hex()])
    with pytest.raises(grpc.RpcError) as e:
        app_a.get_key("no-such-stream", 0)
    assert e.value.code() == grpc.StatusCode.NOT_FOUND
    app_a.close_stream(r.key_stream_id)
    app_a.close(), app_b.close()
    a1, b1 = scrape(net, "A"), scrape(net, "B")
    mine = {k: v for k, v in moved(a0, a1).items() if k[0] in ("qusec_agent_requests_total",
                                                                "qusec_agent_keys_delivered_total",
                                                                "qusec_agent_key_bits_delivered_total",
                                                                "qusec_agent_etsi004_answers_total")}
    assert mine == {
        ("qusec_agent_requests_total", lab(api="etsi004", endpoint="OpenConnect", status="OK")): 1,
        ("qusec_agent_requests_total", lab(api="etsi004", endpoint="GetKey", status="OK")): 1,
        ("qusec_agent_requests_total", lab(api="etsi004", endpoint="GetKey", status="NOT_FOUND")): 1,
        ("qusec_agent_requests_total", lab(api="etsi004", endpoint="Close", status="OK")): 1,
        ("qusec_agent_keys_delivered_total", lab(api="etsi004", endpoint="GetKey")): 1,
        ("qusec_agent_key_bits_delivered_total", lab(api="etsi004", endpoint="GetKey")): 256,
        ("qusec_agent_etsi004_answers_total", lab(endpoint="OpenConnect", status="PEER_NOT_CONNECTED")): 1,
        ("qusec_agent_etsi004_answers_total", lab(endpoint="GetKey", status="SUCCESSFUL")): 1,
        ("qusec_agent_etsi004_answers_total", lab(endpoint="Close", status="SUCCESSFUL")): 1,
    }
    assert b1("qusec_agent_requests_total", api="etsi004", endpoint="OpenConnect", status="OK") == \
        b0("qusec_agent_requests_total", api="etsi004", endpoint="OpenConnect", status="OK") + 1


def test_a_relayed_key_counts_at_every_node_with_its_hop_latency(net, saes) -> None:
    before = {n: scrape(net, n) for n in "ABC"}
    keys = saes.kme("sae-a1").enc_keys("sae-c1", 1, 256)       # A -> B -> C
    remember(keys)
    assert keys[0].key_extension["qusec_hops"] == 1
    after = {n: scrape(net, n) for n in "ABC"}
    relays = {n: {k: v for k, v in moved(before[n], after[n]).items()
                  if k[0].startswith("qusec_agent_relay")} for n in "ABC"}
    assert relays["A"][("qusec_agent_relays_total", lab(role="source", result="ok"))] == 1
    assert relays["A"][("qusec_agent_relay_hop_seconds_count", ())] == 1
    assert relays["B"][("qusec_agent_relays_total", lab(role="hop", result="ok"))] == 1
    assert relays["B"][("qusec_agent_relay_hop_seconds_count", ())] == 1
    assert relays["C"] == {("qusec_agent_relays_total", lab(role="hop", result="ok")): 1}
    # A waited at least as long for its ack as B did for C's
    assert after["A"]("qusec_agent_relay_hop_seconds_sum") - before["A"]("qusec_agent_relay_hop_seconds_sum") >= \
        after["B"]("qusec_agent_relay_hop_seconds_sum") - before["B"]("qusec_agent_relay_hop_seconds_sum") > 0
    for n in "AB":   # one hop observed, in a bucket of 10 s or less
        assert after[n]("qusec_agent_relay_hop_seconds_bucket", le="10.0") - \
            before[n]("qusec_agent_relay_hop_seconds_bucket", le="10.0") == 1
    assert after["C"]("qusec_agent_pending_keys", master_sae="sae-a1", slave_sae="sae-c1") == \
        before["C"]("qusec_agent_pending_keys", master_sae="sae-a1", slave_sae="sae-c1") + 1
    saes.kme("sae-c1").dec_keys("sae-a1", [keys[0].key_id])


def test_refused_relays_count_by_reason(net, saes) -> None:
    a0 = scrape(net, "A")
    # at the source: 64 KiB of key through B-C, which makes 512 B/s (a few KiB since it started)
    with pytest.raises(Etsi014Error) as e:
        saes.kme("sae-a1").enc_keys("sae-c1", 64, 8192)
    assert e.value.status == 503
    assert e.value.body["details"][0]["qusec_relay_status"] == "RESOURCE_EXHAUSTED"
    # at a hop: node B (A's neighbour, its real certificate) relays on a path never granted
    ch = grpc.secure_channel(saes.doc["nodes"]["A"]["relay_addr"],
                             rpc.channel_credentials(saes.doc["ca_cert"], *node_cert(net.state_dir, "B")),
                             options=[("grpc.ssl_target_name_override", "A")])
    bogus_path = "bogus-path-7d1f"
    SECRETS.append(bogus_path)
    with pytest.raises(grpc.RpcError) as e:
        relay_pb2_grpc.KeyRelayStub(ch).Relay(relay_pb2.RelayRequest(
            version="qusec-relay/1", path_id=bogus_path, share_index=1, share_count=1, seq=1, key_id="k-bogus",
            from_node="B", src_node="B", dst_node="C", link_id="A-B", size_bits=256, pad_key_ids=["x"],
            ciphertext=bytes(32), tag=bytes(16), security_level="qkd", initiator_sae_id="sae-b1",
            target_sae_ids=["sae-c1"]), timeout=5)
    assert e.value.code() == grpc.StatusCode.PERMISSION_DENIED
    ch.close()
    a1 = scrape(net, "A")
    assert {k: v for k, v in moved(a0, a1).items() if k[0].startswith(("qusec_agent_relay",
                                                                      "qusec_agent_refusals"))} == {
        ("qusec_agent_relays_total", lab(role="source", result="no_key")): 1,
        ("qusec_agent_relays_total", lab(role="hop", result="denied")): 1,
        ("qusec_agent_refusals_total", lab(server="relay", reason="unknown_path")): 1,
    }
    assert a1("qusec_agent_requests_total", api="etsi014", endpoint="enc_keys", status="503") == \
        a0("qusec_agent_requests_total", api="etsi014", endpoint="enc_keys", status="503") + 1


def test_link_levels_are_the_nodes_own_links(net) -> None:
    links = {"A": {"A-B"}, "B": {"A-B", "B-C"}, "C": {"B-C"}}
    for node, ids in links.items():
        s = scrape(net, node)
        got = {dict(labels)["link"] for (name, labels) in s.samples if name == "qusec_agent_link_up"}
        assert got == ids
        for link in ids:
            assert s("qusec_agent_link_up", link=link) == 1
            assert 0 <= s("qusec_agent_link_key_available_bits", link=link) <= \
                s("qusec_agent_link_key_capacity_bits", link=link)
            assert s("qusec_agent_link_key_capacity_bits", link=link) > 0


def test_no_key_id_key_or_path_id_in_any_scrape(net) -> None:
    assert len(SECRETS) >= 10, "the tests above ran first and remembered what they saw"
    labels = set()
    for node in "ABC":
        s = scrape(net, node)
        for secret in SECRETS:
            assert secret not in s.text, f"{secret!r} in the /metrics of node {node}"
        labels |= {k for _, lbls in s.samples for k, _ in lbls}
    assert labels <= {"server", "reason", "api", "endpoint", "status", "role", "result", "le", "link",
                      "master_sae", "slave_sae"}
