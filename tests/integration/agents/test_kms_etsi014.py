"""ETSI GS QKD 014 against real agent processes (mutual TLS, SQLite): every call and every error."""
from __future__ import annotations

import base64
import json
import ssl
import http.client
import uuid

import pytest

from kms_agents.client import Etsi014Error
from kms_agents import keyrequest
from mininet_topos.launch.local import LocalNetwork
from tests.helpers.kmsnet import Saes, small_topology

pytestmark = pytest.mark.integration

STATUS_FIELDS = {"source_KME_ID", "target_KME_ID", "master_SAE_ID", "slave_SAE_ID", "key_size",
                 "stored_key_count", "max_key_count", "max_key_per_request", "max_key_size",
                 "min_key_size", "max_SAE_ID_count"}


@pytest.fixture(scope="module")
def net(tmp_path_factory):
    with LocalNetwork(small_topology(), tmp_path_factory.mktemp("kms014"), with_qusec=False) as n:
        yield n


@pytest.fixture(scope="module")
def saes(net):
    s = Saes(json.loads(net.network_json.read_text()))
    yield s
    s.close()


def err(fn, *args, **kwargs) -> Etsi014Error:
    with pytest.raises(Etsi014Error) as info:
        fn(*args, **kwargs)
    return info.value


def test_network_json_matches_the_design(net, saes) -> None:
    doc = saes.doc
    assert set(doc) >= {"ca_cert", "qusec", "nodes", "saes"}
    assert set(doc["qusec"]) == {"grpc", "http", "https"}
    assert doc["nodes"]["A"]["etsi014_url"].startswith("https://127.0.0.1:")
    assert doc["nodes"]["A"]["saes"] == ["sae-a1", "sae-a2"]
    assert doc["saes"]["sae-b1"]["node"] == "B"
    assert all(p.startswith("/") for p in (doc["ca_cert"], doc["saes"]["sae-b1"]["cert"]))


def test_get_status_fields_and_limits(saes) -> None:
    st = saes.kme("sae-a1").status("sae-b1")
    assert STATUS_FIELDS <= set(st)
    assert (st["source_KME_ID"], st["target_KME_ID"], st["master_SAE_ID"], st["slave_SAE_ID"]) == \
        ("A", "B", "sae-a1", "sae-b1")
    assert st["key_size"] == 256 and st["min_key_size"] <= 256 <= st["max_key_size"]
    assert 0 < st["stored_key_count"] <= st["max_key_count"]
    assert st["max_SAE_ID_count"] >= 1
    assert st["status_extension"]["qusec_route_type"] == "direct"
    assert all(k.startswith("qusec_") for k in st["status_extension"])


def test_status_errors(saes) -> None:
    e = err(saes.kme("sae-a1").status, "no-such-sae")
    assert e.status == 400 and "no-such-sae" in e.body["message"]
    assert err(saes.kme("sae-a1").status, "sae-a1").status == 400
    e = err(saes.kme("sae-b1", node="A").status, "sae-a1")    # not an SAE of node A
    assert e.status == 401 and e.body is None


def test_enc_keys_post_defaults_then_dec_keys_byte_identical_then_gone(saes) -> None:
    keys = saes.kme("sae-a1").enc_keys("sae-b1")
    assert len(keys) == 1 and len(keys[0].key) == 32
    uuid.UUID(keys[0].key_id)
    assert keys[0].key_extension["qusec_route_type"] == "direct"
    assert keys[0].key_extension["qusec_hops"] == 0
    got = saes.kme("sae-b1").dec_keys("sae-a1", [keys[0].key_id])
    assert got[0].key == keys[0].key and got[0].key_id == keys[0].key_id
    e = err(saes.kme("sae-b1").dec_keys, "sae-a1", [keys[0].key_id])
    assert e.status == 400 and e.body["message"] == keyrequest.MSG_KEYS_NOT_FOUND


def test_get_methods_with_query(saes) -> None:
    keys = saes.kme("sae-a2").enc_keys("sae-b2", number=3, size=512, method="GET")
    assert len(keys) == 3 and all(len(k.key) == 64 for k in keys)
    assert len({k.key_id for k in keys}) == 3
    for k in keys:
        assert saes.kme("sae-b2").dec_keys("sae-a2", [k.key_id], method="GET")[0].key == k.key


def test_both_directions_at_once(saes) -> None:
    ab = saes.kme("sae-a1").enc_keys("sae-b1", number=2)
    ba = saes.kme("sae-b1").enc_keys("sae-a1", number=2)
    assert [k.key for k in saes.kme("sae-a1").dec_keys("sae-b1", [k.key_id for k in ba])] == [k.key for k in ba]
    assert [k.key for k in saes.kme("sae-b1").dec_keys("sae-a1", [k.key_id for k in ab])] == [k.key for k in ab]


@pytest.mark.parametrize("body,message", [
    ({"size": 100}, keyrequest.MSG_SIZE_MULTIPLE),
    ({"size": 8}, "min_key_size"),
    ({"size": 1 << 20}, "max_key_size"),
    ({"number": 0}, "number"),
    ({"number": 10_000}, "max_key_per_request"),
    ({"number": "3"}, "number"),
    ({"nmber": 3}, "nmber"),
    ({"additional_slave_SAE_IDs": "sae-b2"}, "additional_slave_SAE_IDs"),
    ({"additional_slave_SAE_IDs": ["ghost"]}, "ghost"),
    ({"additional_slave_SAE_IDs": [f"x{i}" for i in range(50)]}, "max_SAE_ID_count"),
    ({"extension_mandatory": [{"abc_route_type": "direct"}]}, keyrequest.MSG_EXT_UNSUPPORTED),
    ({"extension_mandatory": [{"qusec_route_type": "indirect"}]}, keyrequest.MSG_EXT_UNMET),
    ({"extension_mandatory": [{"qusec_security_level": "classical"}]}, keyrequest.MSG_EXT_UNMET),
    ({"extension_mandatory": [{"qusec_max_hops": "two"}]}, keyrequest.MSG_EXT_UNMET),
    ({"extension_mandatory": "qusec_route_type"}, "extension_mandatory"),
    ([1, 2], "JSON object"),
])
def test_enc_keys_400_with_etsi_body(saes, body, message) -> None:
    e = err(saes.kme("sae-a1").enc_keys_container, "sae-b1", body)
    assert e.status == 400
    assert set(e.body) <= {"message", "details"} and message in e.body["message"]


def test_exact_spec_messages(saes) -> None:
    c = saes.kme("sae-a1")
    assert err(c.enc_keys, "sae-b1", size=12).body == {"message": "size shall be a multiple of 8"}
    assert err(c.enc_keys_container, "sae-b1", {"extension_mandatory": [{"vendor_x": 1}]}).body["message"] == \
        "not all extension_mandatory parameters are supported"
    assert err(c.enc_keys_container, "sae-b1", {"extension_mandatory": [{"qusec_route_type": "indirect"}]}) \
        .body["message"] == "not all extension_mandatory request options could be met"


def test_supported_extensions_and_unhandled_optional(saes) -> None:
    c = saes.kme("sae-a1")
    out = c.enc_keys_container("sae-b1", {"extension_mandatory": [{"qusec_route_type": "direct"},
                                                                   {"qusec_max_hops": 0},
                                                                   {"qusec_security_level": "hybrid"}],
                                          "extension_optional": [{"abc_priority": 3}]})
    assert len(out["keys"]) == 1
    assert out["key_container_extension"]["message"] == keyrequest.MSG_EXT_OPTIONAL
    assert out["key_container_extension"]["qusec_unhandled"] == ["abc_priority"]
    saes.kme("sae-b1").dec_keys("sae-a1", [out["keys"][0]["key_ID"]])


def test_another_sae_cannot_read_the_keys_401(saes) -> None:
    keys = saes.kme("sae-a1").enc_keys("sae-b1", number=2)
    ids = [k.key_id for k in keys]
    e = err(saes.kme("sae-b2").dec_keys, "sae-a1", ids)
    assert e.status == 401 and e.body is None
    e = err(saes.kme("sae-a2", node="B").dec_keys, "sae-a1", ids)   # an SAE of another node
    assert e.status == 401
    # the named slave still gets them, and they are gone afterwards
    assert [k.key for k in saes.kme("sae-b1").dec_keys("sae-a1", ids)] == [k.key for k in keys]


def test_dec_keys_errors(saes) -> None:
    c = saes.kme("sae-b1")
    e = err(c.dec_keys, "sae-a1", [str(uuid.uuid4())])
    assert (e.status, e.body["message"]) == (400, keyrequest.MSG_KEYS_NOT_FOUND)
    keys = saes.kme("sae-a1").enc_keys("sae-b1")
    e = err(c.dec_keys, "sae-a2", [keys[0].key_id])   # wrong master SAE in the path
    assert (e.status, e.body["message"]) == (400, keyrequest.MSG_KEYS_NOT_FOUND)
    for body in ({}, {"key_IDs": []}, {"key_IDs": ["x"]}, {"key_IDs": [{"key_ID": 5}]}, {"keys": []}):
        status, out = c.request("POST", "/api/v1/keys/sae-a1/dec_keys", body)
        assert status == 400 and "message" in out, body
    status, out = c.request("GET", "/api/v1/keys/sae-a1/dec_keys")
    assert status == 400 and "key_ID" in out["message"]
    assert c.dec_keys("sae-a1", [keys[0].key_id])[0].key == keys[0].key   # all-or-none: still there


def test_multicast_additional_slaves(saes) -> None:
    out = saes.kme("sae-a1").enc_keys("sae-b1", number=2, additional_slave_sae_ids=["sae-b2"])
    ids = [k.key_id for k in out]
    assert [k.key for k in saes.kme("sae-b2").dec_keys("sae-a1", ids)] == [k.key for k in out]
    assert [k.key for k in saes.kme("sae-b1").dec_keys("sae-a1", ids)] == [k.key for k in out]
    e = err(saes.kme("sae-a1").enc_keys, "sae-b1", additional_slave_sae_ids=["sae-a1"])
    assert e.status == 400


def test_same_node_pair(saes) -> None:
    keys = saes.kme("sae-a1").enc_keys("sae-a2", number=2)
    assert keys[0].key_extension["qusec_route_type"] == "local"
    assert [k.key for k in saes.kme("sae-a2").dec_keys("sae-a1", [k.key_id for k in keys])] == [k.key for k in keys]


def test_non_neighbour_is_503_with_message(saes) -> None:
    e = err(saes.kme("sae-a1").enc_keys, "sae-c1")
    assert e.status == 503 and "C" in e.body["message"]
    try:   # without a relay: 503; with the relay (no QuSeC here): an indirect status
        st = saes.kme("sae-a1").status("sae-c1")
    except Etsi014Error as exc:
        assert exc.status == 503 and exc.body["message"]
    else:
        assert st["target_KME_ID"] == "C" and st["status_extension"]["qusec_route_type"] == "indirect"
        assert st["stored_key_count"] <= st["max_key_count"]


def test_exhausted_link_is_503_and_stored_count_bounded(saes) -> None:
    c = saes.kme("sae-b1")
    st = c.status("sae-c1")
    assert st["stored_key_count"] <= st["max_key_count"]
    e = err(c.enc_keys, "sae-c1", number=st["max_key_per_request"], size=st["max_key_size"])
    assert e.status == 503 and "not enough key" in e.body["message"]
    assert c.status("sae-c1")["stored_key_count"] <= st["max_key_count"]


def test_http_level_errors(saes) -> None:
    c = saes.kme("sae-a1")
    assert c.request("GET", "/api/v1/keys/sae-b1/nothing")[0] == 404
    assert c.request("GET", "/")[0] == 404
    status, _ = c.request("POST", "/api/v1/keys/sae-b1/status", {})
    assert status == 405
    status, out = c.request("POST", "/api/v1/keys/sae-b1/enc_keys", raw_body=b"{not json")
    assert status == 400 and "JSON" in out["message"]
    status, out = c.request("GET", "/api/v1/keys/sae-b1/enc_keys?number=2&colour=red")
    assert status == 400 and "colour" in out["message"]
    status, out = c.request("GET", "/api/v1/keys/sae-b1/enc_keys?number=-1")
    assert status == 400
    # keep-alive: errors do not close the connection; the same socket serves on
    sock = c._conn().sock
    assert len(c.enc_keys("sae-b1")) == 1
    assert c._conn().sock is sock and sock.fileno() >= 0


def test_mutual_tls_is_required(saes) -> None:
    url = saes.doc["nodes"]["A"]["etsi014_url"]
    host, port = url[len("https://"):].rsplit(":", 1)
    ctx = ssl.create_default_context(cafile=saes.doc["ca_cert"])
    conn = http.client.HTTPSConnection(host, int(port), context=ctx, timeout=5)
    with pytest.raises((ssl.SSLError, ConnectionError, http.client.RemoteDisconnected, OSError)):
        conn.request("GET", "/api/v1/keys/sae-b1/status")
        conn.getresponse().read()
    conn.close()


def test_base64_and_uuid_format(saes) -> None:
    status, out = saes.kme("sae-a1").request("POST", "/api/v1/keys/sae-b1/enc_keys", {"number": 2, "size": 64})
    assert status == 200 and len(out["keys"]) == 2
    for k in out["keys"]:
        assert len(base64.b64decode(k["key"], validate=True)) == 8
        assert str(uuid.UUID(k["key_ID"])) == k["key_ID"]
    saes.kme("sae-b1").dec_keys("sae-a1", [k["key_ID"] for k in out["keys"]])
