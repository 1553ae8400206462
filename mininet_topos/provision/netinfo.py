"""``network.json``: where a running QKD network's services are (docs/emulation.md), written and read here."""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from mininet_topos.model import Topology


class NetworkInfoError(Exception):
    """network.json is missing or does not say what is needed."""


def network_document(topology: Topology, pki: Any, agents: dict[str, dict],
                     qusec: dict[str, str] | None = None, **extra: Any) -> dict:
    """The network.json content: CA, QuSeC endpoints, every node's endpoints and SAEs, every SAE's files.

    ``pki`` is a :class:`mininet_topos.provision.pki.Pki`; ``agents`` maps node id -> its agent.json content.
    """
    doc: dict[str, Any] = {
        "topology": topology.name,
        "ca_cert": str(Path(pki.ca_cert).resolve()),
        "qusec": {k: (qusec or {}).get(k, "") for k in ("grpc", "http", "https")},
        "nodes": {},
        "saes": {},
    }
    operator = getattr(pki, "operators", {}).get("operator")
    if operator is not None:   # QuSeC's operator interface (/status, /etsi015) asks for it
        doc["operator"] = {"cert": str(Path(operator.cert).resolve()),
                           "key": str(Path(operator.key).resolve())}
    for node_id in topology.nodes:
        info = agents.get(node_id, {})
        doc["nodes"][node_id] = {
            "etsi014_url": info.get("etsi014_url", ""),
            "etsi004_addr": info.get("etsi004_addr", ""),
            "relay_addr": info.get("relay_addr", ""),
            "saes": sorted(s.id for s in topology.saes_of(node_id)),
        }
    for sae in topology.saes.values():
        doc["saes"][sae.id] = {"node": sae.node, "cert": str(Path(pki.saes[sae.id].cert).resolve()),
                               "key": str(Path(pki.saes[sae.id].key).resolve())}
    doc.update(extra)
    return doc


def write_network_json(path: str | Path, topology: Topology, pki: Any, agents: dict[str, dict],
                       qusec: dict[str, str] | None = None, **extra: Any) -> Path:
    """Write network.json atomically (readers never see a half-written file)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(network_document(topology, pki, agents, qusec, **extra), indent=2) + "\n")
    os.replace(tmp, path)
    return path


def load_network(path: str | Path) -> dict:
    """Read network.json, checking the fields clients rely on."""
    path = Path(path)
    try:
        doc = json.loads(path.read_text())
    except OSError as exc:
        raise NetworkInfoError(f"{path}: cannot read ({exc.strerror}); is the network up "
                               "(qkdnet up TOPOLOGY [--local] --state-dir DIR writes "
                               "DIR/network.json)?") from exc
    except ValueError as exc:
        raise NetworkInfoError(f"{path}: not valid JSON: {exc}") from exc
    if isinstance(doc.get("domains"), dict) and "nodes" not in doc:
        # a network of several domains (launch/domains.py): each domain has its own network.json
        raise NetworkInfoError(f"{path}: a network of {len(doc['domains'])} domains "
                               f"({', '.join(doc['domains'])}), each with its own network.json: pass one, "
                               + ", ".join(str(d.get("network", "")) for d in doc["domains"].values()))
    for key in ("ca_cert", "nodes", "saes"):
        if key not in doc:
            raise NetworkInfoError(f"{path}: missing {key!r}")
    return doc


def sae_endpoint(doc: dict, sae: str, source: str = "network.json") -> tuple[dict, dict]:
    """(SAE entry, its node's entry) of network.json, with a clear error for an unknown SAE."""
    entry = doc["saes"].get(sae)
    if entry is None:
        raise NetworkInfoError(f"{source}: saes: unknown SAE {sae!r} (known: {', '.join(sorted(doc['saes']))})")
    node = doc["nodes"].get(entry["node"])
    if node is None:
        raise NetworkInfoError(f"{source}: nodes: SAE {sae!r} is on node {entry['node']!r}, which is not listed")
    return entry, node
