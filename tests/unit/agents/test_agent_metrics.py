"""The agent's metrics, pure parts: label vocabularies, ETSI 014 endpoints, gRPC codes, level gauges."""
from __future__ import annotations

import base64

import grpc
import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from kms_agents import metrics
from kms_agents.keystore import KeyStore, StoredKey
from kms_agents.relay.messages import Reason


@pytest.mark.parametrize("path, endpoint", [
    ("/api/v1/keys/sae-b1/status", "status"),
    ("/api/v1/keys/sae-b1/enc_keys?number=2&size=256", "enc_keys"),
    ("/api/v1/keys/sae%2Fx/dec_keys?key_ID=0f1e", "dec_keys"),
    ("/api/v1/keys/sae-b1/enc_keys/extra", "other"),
    ("/api/v1/keys//status", "other"),
    ("/api/v1/keys/sae-b1/delete_keys", "other"),
    ("/etc/passwd", "other"),
    ("", "other"),
])
def test_etsi014_endpoint_never_carries_the_sae_id(path: str, endpoint: str) -> None:
    assert metrics.etsi014_endpoint(path) == endpoint


def test_every_relay_reason_has_its_own_result_label() -> None:
    results = {metrics.relay_result(r) for r in Reason}
    assert len(results) == len(Reason) and results <= set(metrics.RELAY_RESULTS[1:])
    assert metrics.relay_result(None) == "ok"
    assert metrics.relay_result(Reason.NO_KEY) == "no_key"
    assert metrics.relay_result("made up") == "failed"
    with pytest.raises(ValueError):
        metrics.relayed("somewhere")


def test_grpc_status_names_enum_int_and_none() -> None:
    assert metrics.grpc_status(grpc.StatusCode.NOT_FOUND) == "NOT_FOUND"
    assert metrics.grpc_status(7) == "PERMISSION_DENIED"
    assert metrics.grpc_status(None) == "OK"
    assert metrics.grpc_status(999) == "UNKNOWN"


@pytest.mark.parametrize("n", [1, 2, 3, 16, 31, 32, 33, 1024])
def test_b64_bits_from_the_length_alone(n: int) -> None:
    assert metrics.b64_bits(base64.b64encode(bytes(n)).decode()) == 8 * n


def test_requests_refuse_labels_that_are_not_fixed_tokens() -> None:
    for api, endpoint, status in [("etsi999", "x", 200), ("etsi014", "/api/v1/keys/sae-a/status", 200),
                                  ("etsi004", "GetKey", "not ok")]:
        with pytest.raises(ValueError):
            metrics.requests(api, endpoint, status)
    with pytest.raises(ValueError):
        metrics.etsi004_answered("GetKey", "key 0f1e not found")


def sample(name: str, labels: dict) -> float:
    return metrics.REGISTRY.get_sample_value(name, labels) or 0.0


def test_etsi014_answer_counts_request_and_delivered_keys() -> None:
    lab = {"api": "etsi014", "endpoint": "enc_keys"}
    before = (sample("qusec_agent_requests_total", {**lab, "status": "200"}),
              sample("qusec_agent_keys_delivered_total", lab), sample("qusec_agent_key_bits_delivered_total", lab))
    body = {"keys": [{"key_ID": "k1", "key": base64.b64encode(bytes(32)).decode()},
                     {"key_ID": "k2", "key": base64.b64encode(bytes(32)).decode()}]}
    metrics.etsi014_answered("/api/v1/keys/sae-b/enc_keys", 200, body)
    metrics.etsi014_answered("/api/v1/keys/sae-b/enc_keys", 400, {"message": "bad", "keys": "no"})
    after = (sample("qusec_agent_requests_total", {**lab, "status": "200"}),
             sample("qusec_agent_keys_delivered_total", lab), sample("qusec_agent_key_bits_delivered_total", lab))
    assert [a - b for a, b in zip(after, before)] == [1, 2, 512]


def test_level_gauges_from_levels() -> None:
    levels = metrics.Levels([metrics.LinkLevel("A-B", 4096, 8192), metrics.LinkLevel("A-C", None, None)],
                            {("sae-a", "sae-b"): (3, 768)})
    registry = CollectorRegistry()

    class One:
        def collect(self):
            return metrics.level_families([levels])

    registry.register(One())
    got = {(s.name, tuple(sorted(s.labels.items()))): s.value
           for f in text_string_to_metric_families(generate_latest(registry).decode()) for s in f.samples}
    assert got == {
        ("qusec_agent_link_up", (("link", "A-B"),)): 1.0,
        ("qusec_agent_link_up", (("link", "A-C"),)): 0.0,
        ("qusec_agent_link_key_available_bits", (("link", "A-B"),)): 4096.0,
        ("qusec_agent_link_key_capacity_bits", (("link", "A-B"),)): 8192.0,
        ("qusec_agent_pending_keys", (("master_sae", "sae-a"), ("slave_sae", "sae-b"))): 3.0,
        ("qusec_agent_pending_key_bits", (("master_sae", "sae-a"), ("slave_sae", "sae-b"))): 768.0,
    }


def test_a_failing_level_source_leaves_the_scrape_whole() -> None:
    def broken() -> metrics.Levels:
        raise RuntimeError("store closed")

    metrics.watch_levels(broken)
    try:
        text = generate_latest(metrics.REGISTRY).decode()
    finally:
        metrics.unwatch_levels(broken)
    assert "# TYPE qusec_agent_pending_keys gauge" in text and "# TYPE qusec_agent_requests_total counter" in text


def test_store_pending_levels_per_sae_pair(tmp_path) -> None:
    store = KeyStore(tmp_path / "keys.db")
    try:
        store.put([StoredKey("k1", "sae-a", ["sae-b"], bytes(32)), StoredKey("k2", "sae-a", ["sae-b", "sae-c"],
                                                                            bytes(64))])
        assert store.pending_levels() == {("sae-a", "sae-b"): (2, 768), ("sae-a", "sae-c"): (1, 512)}
        store.fetch("sae-a", "sae-b", ["k2"])
        assert store.pending_levels() == {("sae-a", "sae-b"): (1, 256), ("sae-a", "sae-c"): (1, 512)}
        store.fetch("sae-a", "sae-b", ["k1"])
        store.fetch("sae-a", "sae-c", ["k2"])
        assert store.pending_levels() == {}
    finally:
        store.close()
