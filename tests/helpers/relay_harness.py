"""In-process relay network for protocol tests (real SQLite, simulated QKD, gRPC + mutual TLS).

Each node has its KeyStore, its simulated QKD link ends, a gRPC server with the KeyRelay
servicer, a channel pool and a RelayEngine; paths and authorisations are handed out by a
tiny stand-in for QuSeC (``grant``) so the relay protocol can be tested alone."""
from __future__ import annotations

import secrets
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import grpc

from kms_agents import rpc
from kms_agents.channels import PeerChannels
from kms_agents.keystore import KeyStore
from kms_agents.proto import relay_pb2, relay_pb2_grpc
from kms_agents.qkd_module import SimulatedQkdModule
from kms_agents.relay.authz import Authorisation, AuthTable
from kms_agents.relay.engine import RelayEngine
from kms_agents.identity import NodeIdentity
from kms_agents.relay.plan import Hop, PathPlan, PlannedPath
from kms_agents.relay.servicer import KeyRelayServicer
from kms_agents.relay.transport import RelayTransport
from tests.helpers.pki import make_ca, make_cert, write


@dataclass
class Node:
    node_id: str
    store: KeyStore
    authz: AuthTable
    sources: dict[str, SimulatedQkdModule]
    cert: Path
    key: Path
    engine: RelayEngine | None = None
    server: rpc.Server | None = None
    addr: str = ""
    channels: PeerChannels | None = None
    transport: RelayTransport | None = None


@dataclass
class Net:
    root: Path
    ca: Path
    nodes: dict[str, Node] = field(default_factory=dict)
    level: str = "qkd"
    addr_override: dict[str, str] = field(default_factory=dict)
    granted: list[str] = field(default_factory=list)
    routes: dict[str, list[list[str]]] = field(default_factory=dict)  # dst -> paths

    def grant(self, paths: list[list[str]], ttl: float = 60.0, *, src_sae: str = "sae-a",
              dst_saes: tuple[str, ...] = ("sae-e",)) -> PathPlan:
        """What QuSeC does for RequestPath: authorise every node on every path (for ``src_sae`` ->
        ``dst_saes`` at the net's level), then reply."""
        expires = int((time.time() + ttl) * 1000) / 1000
        granted = []
        for i, hops in enumerate(paths, start=1):
            path_id = f"path-{uuid.uuid4().hex[:8]}"
            self.granted.append(path_id)
            for j, node in enumerate(hops):
                prev = hops[j - 1] if j else ""
                nxt = hops[j + 1] if j + 1 < len(hops) else ""
                self.nodes[node].authz.grant(Authorisation(
                    path_id=path_id, prev_hop=prev, next_hop=nxt,
                    prev_hop_addr=self.addr_of(prev) if prev else "",
                    next_hop_addr=self.addr_of(nxt) if nxt else "",
                    expires_at=time.time() + ttl, src_node=hops[0], dst_node=hops[-1],
                    share_index=i, share_count=len(paths), src_sae=src_sae, dst_saes=tuple(dst_saes),
                    security_level=self.level))
            granted.append(PlannedPath(path_id=path_id, share_index=i - 1, hops=tuple(
                Hop(node_id=n, relay_addr=self.addr_of(n)) for n in hops)))
        return PathPlan(paths=tuple(granted), security_level=self.level, expires_at=expires)

    def addr_of(self, node: str) -> str:
        return self.addr_override.get(node, self.nodes[node].addr)

    def close(self) -> None:
        for n in self.nodes.values():
            if n.server:
                n.server.stop(0)
            if n.engine:
                n.engine.close()
            if n.channels:
                n.channels.close()
            n.store.close()


def server_creds(ca: Path, cert: Path, key: Path) -> grpc.ServerCredentials:
    return rpc.server_credentials(ca, cert, key)


def transport(ca: str | Path, cert: str | Path, key: str | Path) -> RelayTransport:
    """A node's way of sending relay messages (its own channel pool), as that node."""
    return RelayTransport(PeerChannels(rpc.channel_credentials(ca, cert, key)))


def build(root: Path, nodes: list[str], links: list[tuple[str, str]], *,
          rate_bps: float = 1e7) -> Net:
    ca = make_ca()
    ca_path = write(*ca, root / "pki", "ca")[0]
    net = Net(root=root, ca=ca_path)
    for n in nodes:
        cert, key = write(*make_cert(ca, n), root / "pki", n)
        net.nodes[n] = Node(n, KeyStore(root / n / "keys.db"), AuthTable(), {}, cert, key)
    # a frozen module clock and a buffer larger than what was released: the link key
    # cursor then moves by exactly what the relay takes (the tests count it)
    frozen = time.time()
    epoch = frozen - 60
    for a, b in links:
        secret = secrets.token_bytes(32)
        link_id = f"{a}-{b}"
        for me, peer in ((a, b), (b, a)):
            net.nodes[me].sources[peer] = SimulatedQkdModule(
                link_id, me, peer, secret, rate_bps, epoch, net.nodes[me].store,
                capacity_bytes=1 << 26, clock=lambda: frozen)
    for node in net.nodes.values():
        node.server = rpc.Server("127.0.0.1:0", server_creds(ca_path, node.cert, node.key))
        node.transport = transport(ca_path, node.cert, node.key)
        node.channels = node.transport.channels
        node.engine = RelayEngine(
            node.node_id, sources=node.sources.get, all_sources=node.sources.values,
            link=lambda lid, _n=node: next((s for s in _n.sources.values() if s.link_id == lid),
                                           None),
            store=node.store, authz=node.authz,
            request_path=lambda req, _net=net: _net.grant(_net.routes[req.dst_node], src_sae=req.src_sae,
                                                          dst_saes=req.slave_saes),
            send=node.transport.relay, send_void=node.transport.void,
            identity=NodeIdentity.load(node.node_id, node.cert, node.key, ca_path))
        node.server.add(relay_pb2_grpc.add_KeyRelayServicer_to_server,
                        KeyRelayServicer(node.engine.receiver),
                        relay_pb2.DESCRIPTOR.services_by_name["KeyRelay"])
        node.server.start()
        node.addr = f"127.0.0.1:{node.server.port}"
    return net
