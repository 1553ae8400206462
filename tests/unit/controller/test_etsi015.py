"""ETSI GS QKD 015-shaped export: field names, PHYS link performance, VIRT links for active paths."""
from __future__ import annotations

import json
import uuid

from tests.helpers.qusec_net import core_with

from quseccontroller.actions import PathRequest
from quseccontroller.etsi015 import ROOT, qkdn_id
from quseccontroller.state import LINK_OFF, LinkState

EDGES = [("A", "B"), ("B", "C")]


def links_of(export, node, kind):
    return [l for l in export[node][ROOT]["qkd_links"]["qkd_link"]
            if l["qkdl_type"] == f"etsi-qkd-node-types:{kind}"]


def test_node_fields_and_phys_links():
    core, _ = core_with(EDGES, rate=2e5, stored=5000)
    core.agent_report("B", [LinkState("B-C", "C", 2e5, 4000, consumption_bps=5e4)], 1.0)
    out = core.export_etsi015()
    json.dumps(out)   # serialisable
    node = out["B"][ROOT]
    assert uuid.UUID(node["qkdn_id"]) and node["qkdn_id"] == qkdn_id("B")
    assert node["qkdn_status"] == "etsi-qkd-node-types:OPERATING"
    assert set(node["qkdn_capabilities"]) == {"link_stats_support", "application_stats_support",
                                             "key_relay_mode_enable"}
    phys = {l["qusec_link_name"]: l for l in links_of(out, "B", "PHYS")}
    assert set(phys) == {"A-B", "B-C"}
    bc = phys["B-C"]
    assert bc["qkdl_status"] == "etsi-qkd-node-types:ACTIVE" and bc["qkdl_enable"] is True
    assert bc["qkdl_local"]["qkdn_id"] == qkdn_id("B") and bc["qkdl_remote"]["qkdn_id"] == qkdn_id("C")
    assert bc["qkdl_performance"] == {"skr": 200000, "eskr": 150000, "expected_consumption": 50000}
    assert bc["qusec_stored_bits"] == 4000
    # Same link id at both ends.
    assert {l["qkdl_id"] for l in links_of(out, "C", "PHYS")} == {bc["qkdl_id"]}


def test_virt_link_per_active_path_with_prev_and_next_hop():
    core, _ = core_with(EDGES)
    d, _ = core.request_path(PathRequest("A", "C", "sae-a", "sae-c"), 1000.0)
    out = core.export_etsi015()
    v = {n: links_of(out, n, "VIRT") for n in "ABC"}
    assert all(len(x) == 1 for x in v.values())
    assert len({x[0]["qkdl_id"] for x in v.values()}) == 1
    assert v["A"][0]["virt_prev_hop"] is None and v["A"][0]["virt_next_hop"] == [qkdn_id("B")]
    assert v["B"][0]["virt_prev_hop"] == qkdn_id("A") and v["B"][0]["virt_next_hop"] == [qkdn_id("C")]
    assert v["C"][0]["virt_prev_hop"] == qkdn_id("B") and v["C"][0]["virt_next_hop"] == []
    assert v["B"][0]["qkdl_local"]["qkdn_id"] == qkdn_id("A")
    assert v["B"][0]["qkdl_remote"]["qkdn_id"] == qkdn_id("C")
    assert v["B"][0]["qusec_path_id"] == d.path_ids[0]
    apps = out["A"][ROOT]["qkd_applications"]["qkd_app"]
    assert len(apps) == 1 and apps[0]["server_app_id"] == "sae-c" and apps[0]["client_app_id"] == ["sae-a"]
    assert apps[0]["backing_qkdl_id"] == [v["A"][0]["qkdl_id"]]
    assert apps[0]["app_status"] == "etsi-qkd-node-types:ON" and apps[0]["app_qos"]["ttl"] == 60
    assert apps[0]["local_qkdn_id"] == qkdn_id("A") and apps[0]["remote_qkdn_id"] == qkdn_id("C")
    assert out["B"][ROOT]["qkd_applications"]["qkd_app"] == []
    core.release_path(d.path_ids[0], 1001.0)
    assert not links_of(core.export_etsi015(), "B", "VIRT")


def test_down_node_and_off_link():
    core, _ = core_with(EDGES)
    core.agent_report("A", [LinkState("A-B", "B", 1e5, 0, status=LINK_OFF)], 1.0)
    core.agent_gone("C", 2.0)
    out = core.export_etsi015()
    assert out["C"][ROOT]["qkdn_status"] == "etsi-qkd-node-types:DOWN"
    ab = links_of(out, "A", "PHYS")[0]
    assert ab["qkdl_status"] == "etsi-qkd-node-types:OFF" and ab["qkdl_enable"] is False
    (iface,) = out["A"][ROOT]["qkd_interfaces"]["qkd_interface"]
    assert iface["qkdi_id"] == "A-B@A" and iface["qkdi_status"] == "etsi-qkd-node-types:DOWN"
    assert iface["qkdi_att_point"] == {"device": "A", "port": "A-B"}
    (b_iface, _) = out["B"][ROOT]["qkd_interfaces"]["qkd_interface"]
    assert b_iface["qkdi_status"] == "etsi-qkd-node-types:UP"   # B's end still reports ACTIVE
