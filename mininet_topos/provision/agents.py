"""Agent configs for every node of a topology, and the shared secrets of simulated QKD links."""
from __future__ import annotations

import json
import os
import secrets
import time
from pathlib import Path
from typing import Any

from kms_agents.config import AgentConfig, LinkConfig, PeerConfig, TlsConfig
from mininet_topos.model import Topology

GRAPH_MAX_NODES = 200    # configs carry the QKD graph (for key-stream events) up to this size


def link_secret(state_root: Path, link_id: str) -> tuple[Path, float]:
    """The shared secret file of a simulated link (created once: the stand-in quantum channel)."""
    d = state_root / "links"
    d.mkdir(parents=True, exist_ok=True)
    path = d / ("".join(c if c.isalnum() or c in "-_." else "_" for c in link_id) + ".json")
    if not path.exists():
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump({"link": link_id, "secret": secrets.token_hex(32), "epoch": time.time()}, f)
    return path, float(json.loads(path.read_text())["epoch"])


def configs_for_topology(topology: Topology, pki: Any, state_root: str | Path,
                         addresses: dict[str, str | list[str]] | None = None,
                         qusec_addr: str | None = None, *,
                         ports: dict[str, int] | None = None) -> dict[str, AgentConfig]:
    """Configs of every node of ``topology``; state under ``state_root/NODE``.

    ``addresses`` maps node -> the IP (or list, first used) its services listen on
    (default 127.0.0.1). ``ports`` fixes the etsi014/etsi004/relay ports (default 0:
    the agent picks, writes agent.json, and neighbours find it there).
    """
    root = Path(state_root).resolve()
    addresses = addresses or {}
    ports = {"etsi014": 0, "etsi004": 0, "relay": 0, **(ports or {})}

    def host(node: str) -> str:
        a = addresses.get(node, "127.0.0.1")
        return (a[0] if a else "127.0.0.1") if isinstance(a, list) else a

    saes = {s.id: s.node for s in topology.saes.values()}
    graph: dict[str, list[str]] = {}
    if len(topology.nodes) <= GRAPH_MAX_NODES:   # lets key-stream events find non-neighbours
        for link in topology.links:
            graph.setdefault(link.a, []).append(link.b)
            graph.setdefault(link.b, []).append(link.a)
        graph = {n: sorted(set(v)) for n, v in sorted(graph.items())}
    out: dict[str, AgentConfig] = {}
    for node_id, node in topology.nodes.items():
        tls = TlsConfig(pki.ca_cert, pki.nodes[node_id].cert, pki.nodes[node_id].key)
        h = host(node_id)
        cfg = AgentConfig(node_id=node_id, state_dir=str(root / node_id), tls=tls,
                          listen_etsi014=f"{h}:{ports['etsi014']}", listen_etsi004=f"{h}:{ports['etsi004']}",
                          listen_relay=f"{h}:{ports['relay']}", qusec_addr=qusec_addr or "",
                          trust=node.trust, saes=dict(saes), graph=graph, source=f"<{topology.name}:{node_id}>")
        for link in topology.links_of(node_id):
            peer = link.peer(node_id)
            lc = LinkConfig(id=link.id, peer=peer, rate_bps=float(link.rate_bps), kind=link.kms)
            if link.kms == "etsi014":
                urls = (link.kms_url or "").split(",")
                lc.kms_url = urls[0] if node_id == link.a or len(urls) == 1 else urls[1]
            else:
                lc.secret_file, lc.epoch = str(link_secret(root, link.id)[0]), link_secret(root, link.id)[1]
            cfg.links.append(lc)
            if peer not in cfg.peers:
                cfg.peers[peer] = (PeerConfig(peer, relay_addr=f"{host(peer)}:{ports['relay']}")
                                   if ports["relay"] else
                                   PeerConfig(peer, agent_json=str(root / peer / "agent.json")))
        out[node_id] = cfg
    return out
