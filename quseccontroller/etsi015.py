"""Export of QuSeC's view as ETSI GS QKD 015-shaped (etsi-qkd-sdn-node) JSON, one object per node."""
from __future__ import annotations

import datetime as _dt
import uuid
from typing import Mapping

from quseccontroller.grants import ActivePath
from quseccontroller.state import LINK_ACTIVE, LINK_OFF, LINK_PASSIVE, NetworkState

NS = uuid.UUID("6d1c0a52-5f0e-4c61-9d5a-51e5ec0000de")  # namespace of QuSeC's name-based UUIDs
TYPES = "etsi-qkd-node-types:"
ROOT = "etsi-qkd-sdn-node:qkd_node"
VERSION = "QuSeC 0.1 (ETSI GS QKD 015 V2.1.1 shape)"


def qkdn_id(node: str) -> str:
    return str(uuid.uuid5(NS, "node:" + node))


def qkdl_id(link_or_path: str) -> str:
    return str(uuid.uuid5(NS, "link:" + link_or_path))


def _iso(t: float) -> str:
    return _dt.datetime.fromtimestamp(t, _dt.timezone.utc).isoformat().replace("+00:00", "Z")


def export(st: NetworkState, paths: Mapping[str, ActivePath], path_ttl_s: float) -> dict:
    """{node id: {"etsi-qkd-sdn-node:qkd_node": {...}}} with PHYS links and a VIRT link per
    active path (``path_ttl_s``: the grant lifetime its bandwidth is spread over)."""
    out: dict = {}
    for node in sorted(st.qkd):
        agent = st.agents.get(node)
        links = []
        for lid in sorted(l for l, r in st.links.items() if node in (r.a, r.b)):
            r = st.links[lid]
            peer = r.b if node == r.a else r.a
            status = {LINK_ACTIVE: "ACTIVE", LINK_PASSIVE: "PASSIVE", LINK_OFF: "OFF"}[r.overall_status()]
            cons = r.consumption_from(node)
            links.append({
                "qkdl_id": qkdl_id(lid),
                "qkdl_status": TYPES + status,
                "qkdl_enable": status != "OFF",
                "qkdl_local": {"qkdn_id": qkdn_id(node), "qkdi_id": f"{lid}@{node}"},
                "qkdl_remote": {"qkdn_id": qkdn_id(peer), "qkdi_id": f"{lid}@{peer}"},
                "qkdl_type": TYPES + "PHYS",
                "qkdl_performance": {
                    "skr": int(r.skr_bps), "eskr": int(max(r.skr_bps - cons, 0.0)),
                    "expected_consumption": int(cons),
                },
                "qusec_stored_bits": int(r.stored_from(node)),
                "qusec_reserved_bits": int(st.reserved.get((lid, node), 0)),
                "qusec_link_name": lid,
            })
        apps = []
        for pid in sorted(paths):
            ap = paths[pid]
            if node not in ap.nodes:
                continue
            i = ap.nodes.index(node)
            bps = ap.request.bits / max(path_ttl_s, 1e-9)
            links.append({
                "qkdl_id": qkdl_id(pid),
                "qkdl_status": TYPES + "ACTIVE",
                "qkdl_enable": True,
                "qkdl_local": {"qkdn_id": qkdn_id(ap.nodes[0])},
                "qkdl_remote": {"qkdn_id": qkdn_id(ap.nodes[-1])},
                "qkdl_type": TYPES + "VIRT",
                "virt_prev_hop": qkdn_id(ap.nodes[i - 1]) if i > 0 else None,
                "virt_next_hop": [qkdn_id(ap.nodes[i + 1])] if i + 1 < len(ap.nodes) else [],
                "virt_bandwidth": int(bps),
                "qkdl_performance": {"expected_consumption": int(bps)},
                "qusec_path_id": pid,
                "qusec_hops": list(ap.nodes),
            })
            if i in (0, len(ap.nodes) - 1):
                apps.append({
                    "app_id": str(uuid.uuid5(NS, "app:" + pid)),
                    "app_status": TYPES + "ON",
                    "app_type": TYPES + "CLIENT",
                    "server_app_id": ap.request.dst_sae,
                    "client_app_id": [ap.request.src_sae] if ap.request.src_sae else [],
                    "app_priority": 0,
                    "creation_time": _iso(ap.granted_at),
                    "expiration_time": _iso(ap.expires_at),
                    "app_qos": {"max_bandwidth": int(bps), "min_bandwidth": 0,
                                "ttl": int(max(ap.expires_at - ap.granted_at, 0))},
                    "backing_qkdl_id": [qkdl_id(pid)],
                    "local_qkdn_id": qkdn_id(node),
                    "remote_qkdn_id": qkdn_id(ap.nodes[-1] if i == 0 else ap.nodes[0]),
                })
        online = node in st.online
        out[node] = {ROOT: {
            "qkdn_id": qkdn_id(node),
            "qkdn_status": TYPES + ("OPERATING" if online else ("DOWN" if agent else "NEW")),
            "qkdn_version": VERSION,
            "qkdn_location_id": node,
            "qkdn_capabilities": {"link_stats_support": True, "application_stats_support": True,
                                  "key_relay_mode_enable": True},
            "qkd_applications": {"qkd_app": apps},
            "qkd_interfaces": {"qkd_interface": [
                {"qkdi_id": f"{lid}@{node}",
                 "qkdi_model": st.links[lid].kms_kind,
                 "qkdi_type": TYPES + "DV-QKD",
                 "qkdi_att_point": {"device": node, "port": lid},
                 "qkdi_status": TYPES + ("DOWN" if st.links[lid].status.get(node) == LINK_OFF else "UP")}
                for lid in sorted(l for l, r in st.links.items() if node in (r.a, r.b))]},
            "qkd_links": {"qkd_link": links},
        }}
    return out
