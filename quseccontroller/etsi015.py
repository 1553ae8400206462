"""QuSeC's view as ETSI GS QKD 015 V2.1.1 data: one ``etsi-qkd-sdn-node`` document per node.

Each document is RFC 7951 JSON instance data of the YANG modules in ``quseccontroller/yang/``
(``etsi-qkd-sdn-node`` and QuSeC's augment ``qusec-etsi-qkd-node-ext``, listed in
``yang-library.json``): module-qualified top-level member, identities prefixed with their module,
uint32 leaves as numbers, uint64 leaves as strings, absent leaves left out (never null).
``tests/unit/controller/test_etsi015.py`` validates it against those modules with yangson.
"""
from __future__ import annotations

import datetime as _dt
import uuid
import zlib
from typing import Mapping
from urllib.parse import quote

from quseccontroller.grants import ActivePath
from quseccontroller.identity import SAE, URI_PREFIX
from quseccontroller.state import LINK_ACTIVE, LINK_OFF, LINK_PASSIVE, NetworkState

NS = uuid.UUID("6d1c0a52-5f0e-4c61-9d5a-51e5ec0000de")  # namespace of QuSeC's name-based UUIDs
TYPES = "etsi-qkd-node-types:"       # RFC 7951 prefixes an identity with its module's name
EXT = "qusec-etsi-qkd-node-ext:"     # QuSeC's augment: leaves 015 has no place for
ROOT = "etsi-qkd-sdn-node:qkd_node"
VERSION = "QuSeC 0.1 (ETSI GS QKD 015 V2.1.1)"
U32 = 2**32 - 1
_LINK_STATUS = {LINK_ACTIVE: "ACTIVE", LINK_PASSIVE: "PASSIVE", LINK_OFF: "OFF"}
_URI_SAFE = "-._~!$&'()*+,;=:@"      # RFC 3986 pchar less percent-encoding


def qkdn_id(node: str) -> str:
    return str(uuid.uuid5(NS, "node:" + node))


def qkdl_id(link_or_path: str) -> str:
    return str(uuid.uuid5(NS, "link:" + link_or_path))


def app_id(path_id: str) -> str:
    return str(uuid.uuid5(NS, "app:" + path_id))


def sae_uri(sae: str) -> str:
    """An SAE's id as the ``inet:uri`` 015 wants: the URI its certificate carries."""
    return f"{URI_PREFIX}{SAE}:{quote(sae, safe=_URI_SAFE)}"


def interface_ids(st: NetworkState, node: str) -> dict[str, int]:
    """{link id: qkdi_id} for ``node``'s QKD links: a uint32 from the link's name (the same at
    every export while the name exists), made locally unique by probing upward on a clash."""
    out: dict[str, int] = {}
    for lid in sorted(l for l, r in st.links.items() if node in (r.a, r.b)):
        n = zlib.crc32(lid.encode())
        while n in out.values():
            n = (n + 1) & U32
        out[lid] = n
    return out


def _u32(x: float) -> int:
    return min(max(int(x), 0), U32)


def _iso(t: float) -> str:
    return _dt.datetime.fromtimestamp(t, _dt.timezone.utc).isoformat().replace("+00:00", "Z")


def _phys_link(st: NetworkState, node: str, lid: str, ifaces: Mapping[str, dict[str, int]]) -> dict:
    r = st.links[lid]
    peer = r.b if node == r.a else r.a
    status = _LINK_STATUS[r.overall_status()]
    cons = r.consumption_from(node)
    return {
        "qkdl_id": qkdl_id(lid),
        "qkdl_status": TYPES + status,
        "qkdl_enable": status != "OFF",
        "qkdl_local": {"qkdn_id": qkdn_id(node), "qkdi_id": ifaces[node][lid]},
        "qkdl_remote": {"qkdn_id": qkdn_id(peer), "qkdi_id": ifaces[peer][lid]},
        "qkdl_type": TYPES + "PHYS",
        "qkdl_performance": {"skr": _u32(r.skr_bps), "eskr": _u32(r.skr_bps - cons),
                             "expected_consumption": _u32(cons)},
        EXT + "link_name": lid,
        EXT + "stored_bits": str(max(int(r.stored_from(node)), 0)),       # uint64: a string
        EXT + "reserved_bits": str(max(int(st.reserved.get((lid, node), 0)), 0)),
    }


def _virt_link(node: str, pid: str, ap: ActivePath, bps: int) -> dict:
    i = ap.nodes.index(node)
    link = {
        "qkdl_id": qkdl_id(pid),
        "qkdl_status": TYPES + "ACTIVE",
        "qkdl_enable": True,
        "qkdl_local": {"qkdn_id": qkdn_id(ap.nodes[0])},     # source and destination of the
        "qkdl_remote": {"qkdn_id": qkdn_id(ap.nodes[-1])},   # path, the same at every hop
        "qkdl_type": TYPES + "VIRT",
        "qkdl_performance": {"expected_consumption": bps},
        EXT + "virt_bandwidth": bps,
        EXT + "path_id": pid,
        EXT + "hops": list(ap.nodes),
        EXT + "rule": ap.rule,
        EXT + "security_level": ap.security_level,
        EXT + "share": f"{ap.share_index + 1}/{ap.share_count}",
    }
    # 015's own virt_* leaves sit under a `when` that never holds (see the augment module).
    if i > 0:
        link[EXT + "virt_prev_hop"] = qkdn_id(ap.nodes[i - 1])
    if i + 1 < len(ap.nodes):
        link[EXT + "virt_next_hop"] = [qkdn_id(ap.nodes[i + 1])]
    if i in (0, len(ap.nodes) - 1):
        link["qkdl_applications"] = [app_id(pid)]
    return link


def _app(node: str, pid: str, ap: ActivePath, bps: int) -> dict:
    """The QKD application a path serves, at either end. 015's ``server_app_id`` is the entity
    that asked for it (the master SAE), ``client_app_id`` the targets it shares keys with."""
    req = ap.request
    targets = tuple(dict.fromkeys(((req.dst_sae,) if req.dst_sae else ()) + tuple(req.dst_saes)))
    app = {
        "app_id": app_id(pid),
        "app_status": TYPES + "ON",
        "app_type": TYPES + "CLIENT",
        "app_priority": 0,
        "creation_time": _iso(ap.granted_at),
        "expiration_time": _iso(ap.expires_at),
        "app_qos": {"max_bandwidth": bps, "min_bandwidth": 0,
                    "ttl": _u32(ap.expires_at - ap.granted_at)},
        "backing_qkdl_id": [qkdl_id(pid)],
        "local_qkdn_id": qkdn_id(node),
        "remote_qkdn_id": qkdn_id(ap.nodes[-1] if node == ap.nodes[0] else ap.nodes[0]),
    }
    if req.src_sae:
        app["server_app_id"] = sae_uri(req.src_sae)
    if targets:
        app["client_app_id"] = [sae_uri(s) for s in targets]
    return app


def export(st: NetworkState, paths: Mapping[str, ActivePath], path_ttl_s: float) -> dict:
    """{node name: {"etsi-qkd-sdn-node:qkd_node": {...}}}: per node its PHYS links, a VIRT link
    per active path through it and, at a path's ends, its application (``path_ttl_s``: the
    grant lifetime a path's key bits are spread over for its bandwidth)."""
    ifaces = {n: interface_ids(st, n) for n in {e for r in st.links.values() for e in (r.a, r.b)}}
    out: dict = {}
    for node in sorted(st.qkd):
        agent = st.agents.get(node)
        mine = ifaces.get(node, {})
        links = [_phys_link(st, node, lid, ifaces) for lid in mine]
        apps = []
        for pid in sorted(paths):
            ap = paths[pid]
            if node not in ap.nodes:
                continue
            bps = _u32(ap.request.bits / max(path_ttl_s, 1e-9))
            links.append(_virt_link(node, pid, ap, bps))
            if node in (ap.nodes[0], ap.nodes[-1]):
                apps.append(_app(node, pid, ap, bps))
        out[node] = {ROOT: {
            "qkdn_id": qkdn_id(node),
            "qkdn_status": TYPES + ("OPERATING" if node in st.online else ("DOWN" if agent else "NEW")),
            "qkdn_version": VERSION,
            "qkdn_location_id": node,
            "qkdn_capabilities": {"link_stats_support": True, "application_stats_support": True,
                                  "key_relay_mode_enable": True},
            "qkd_applications": {"qkd_app": apps},
            "qkd_interfaces": {"qkd_interface": [
                {"qkdi_id": n, "qkdi_model": st.links[lid].kms_kind,
                 "qkdi_status": TYPES + ("DISABLED" if st.links[lid].status.get(node) == LINK_OFF
                                         else "ENABLED")}
                for lid, n in mine.items()]},
            "qkd_links": {"qkd_link": links},
        }}
    return out
