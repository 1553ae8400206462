"""Key delivery of one vKMS (no sockets): local, direct-link and relayed keys, and a neighbour's direct keys.

Neighbours are reached through an injected :class:`PeerNotifier` (gRPC in the agent, a
direct call in unit tests) and non-neighbours through a
:class:`~kms_agents.relayer.Relayer` (the default, :class:`~kms_agents.relayer.NoRelayer`,
refuses with 503). Failures are :class:`~kms_agents.keyrequest.KeyServiceError` (503).
"""
from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Sequence
from contextlib import nullcontext as _nullcontext
from dataclasses import dataclass
from typing import Any, Protocol

from kms_agents.keyrequest import SECURITY_LEVELS, KeyServiceError
from kms_agents.keysource import InsufficientKey, KeySource, KeySourceError
from kms_agents.keystore import KeyStore, StoredKey
from kms_agents.relayer import NoRelayer, Relayer, RequestOptions

log = logging.getLogger(__name__)


class PeerNotifier(Protocol):
    """Reaches a neighbour's vKMS (the agent implements it over gRPC)."""

    def deliver_direct(self, peer_node: str, link_id: str, master_sae: str, slave_saes: list[str],
                       keys: list[tuple[str, list[str], int]], extensions: dict[str, str]) -> None: ...


@dataclass
class Delivered:
    """One key for the master: its ID, material and ``key_extension``."""
    key_id: str
    material: bytes
    extension: dict[str, Any]


class KeyDelivery:
    """Makes the keys SAEs of one node share, and stores those neighbours made for its SAEs."""

    def __init__(self, node_id: str, saes: dict[str, str], links: Sequence[KeySource], store: KeyStore,
                 peer: PeerNotifier | None, relayer: Relayer | None = None, *,
                 clock: Callable[[], float] = time.time) -> None:
        self.node_id = node_id
        self.saes = saes
        self.links = list(links)
        self.store = store
        self.peer = peer
        self.relayer: Relayer = relayer or NoRelayer(node_id)
        self.clock = clock
        self._take_lock = threading.Lock()

    # -- links and routes ------------------------------------------------------------------------
    def neighbours(self) -> list[str]:
        return sorted({lk.peer_node for lk in self.links})

    def links_to(self, node: str) -> list[KeySource]:
        return [lk for lk in self.links if lk.peer_node == node]

    def link(self, link_id: str) -> KeySource | None:
        return next((lk for lk in self.links if lk.link_id == link_id), None)

    def route_of(self, dst_nodes: set[str] | list[str]) -> str:
        """How keys for SAEs on ``dst_nodes`` are made: local, direct (one neighbour) or indirect (relay)."""
        remote = {n for n in dst_nodes if n != self.node_id}
        if not remote:
            return "local"
        return "direct" if len(remote) == 1 and self.links_to(next(iter(remote))) else "indirect"

    # -- making keys -----------------------------------------------------------------------------
    def deliver(self, master: str, slaves: list[str], key_ids: list[str], size_bits: int,
                security_level: str | None = None, extensions: dict[str, str] | None = None,
                options: RequestOptions | None = None) -> list[Delivered]:
        """Make keys shared by ``master`` and ``slaves`` and stored at the slaves' node(s).

        Returns the material for the master. Local: CSPRNG key stored here. Direct: link
        key taken here, the neighbour claims the same link key IDs. Otherwise: fresh key
        relayed by ``self.relayer`` to each destination node.
        """
        # "": an SAE the config does not name (another domain's; the relayer asks QuSeC)
        dst_nodes = sorted({self.saes.get(s, "") for s in slaves})
        n_bytes = size_bits // 8
        if dst_nodes == [self.node_id]:
            keys = [(kid, os.urandom(n_bytes)) for kid in key_ids]
            ext = {"qusec_route_type": "local", "qusec_hops": 0, "qusec_security_level": "qkd"}
            self.store.put([StoredKey(kid, master, slaves, m, self.clock(), dict(ext)) for kid, m in keys])
            return [Delivered(kid, m, dict(ext)) for kid, m in keys]
        remote = [n for n in dst_nodes if n != self.node_id]
        opts = options or RequestOptions()
        if len(remote) == 1 and self.links_to(remote[0]) and self._relay_instead(remote[0], n_bytes * len(key_ids),
                                                                                 opts):
            log.info("event=direct_short node=%s peer=%s bits=%d msg=%r", self.node_id, remote[0],
                     n_bytes * len(key_ids) * 8, "the direct link holds too little key: relaying instead")
            return self._deliver_relayed(master, slaves, dst_nodes, key_ids, n_bytes, security_level,
                                         extensions or {}, opts)
        if len(remote) == 1 and self.links_to(remote[0]):
            # one neighbouring node (plus, for multicast, perhaps SAEs here): the key is link key
            delivered = self._deliver_direct(master, [s for s in slaves if self.saes[s] == remote[0]], remote[0],
                                             key_ids, n_bytes, extensions or {})
            here = [s for s in slaves if self.saes[s] == self.node_id]
            if here:
                self.store.put([StoredKey(d.key_id, master, here, d.material, self.clock(), dict(d.extension))
                                for d in delivered])
            return delivered
        return self._deliver_relayed(master, slaves, dst_nodes, key_ids, n_bytes, security_level,
                                     extensions or {}, options or RequestOptions())

    def _relay_instead(self, dst: str, need_bytes: int, options: RequestOptions) -> bool:
        """Whether keys for a neighbour go around: its direct link(s) hold less key than the
        request needs now, a relayer (QuSeC) can find another way, and the request does not
        insist on the direct route (``qusec_route_type`` or a ``qusec_max_hops`` of 0)."""
        if not getattr(self.relayer, "routes_foreign", False):   # no QuSeC to ask for another way
            return False
        asked = {**options.optional, **options.mandatory}
        if "qusec_route_type" in asked or asked.get("qusec_max_hops") == 0:
            return False
        try:
            return max(lk.available_bytes() for lk in self.links_to(dst)) < need_bytes
        except KeySourceError:
            return True

    def _deliver_relayed(self, master: str, slaves: list[str], dst_nodes: list[str], key_ids: list[str],
                         n_bytes: int, security_level: str | None, extensions: dict[str, str],
                         options: RequestOptions) -> list[Delivered]:
        keys = [(kid, os.urandom(n_bytes)) for kid in key_ids]
        results = []
        # relays first, this node last: a relay may replace the keys (derived, pre-relayed)
        for dst in sorted(dst_nodes, key=lambda n: n == self.node_id):
            node_slaves = [s for s in slaves if self.saes.get(s, "") == dst]
            if dst == self.node_id:
                self.store.put([StoredKey(kid, master, node_slaves, m, self.clock(), {"qusec_route_type": "local"})
                                for kid, m in keys])
                continue
            result = self.relayer.relay(master_sae=master, slave_saes=node_slaves, dst_node=dst, keys=list(keys),
                                        security_level=security_level, extensions=dict(extensions),
                                        options=options)
            if result.keys is not None and list(result.keys) != keys:
                # the relayer decides what the master gets (derived / pre-relayed keys)
                if len(result.keys) != len(keys) or any(len(m) != n_bytes for _, m in result.keys):
                    raise KeyServiceError(503, f"relay to node {dst} returned {len(result.keys)} keys "
                                               f"for {len(keys)} of {n_bytes} bytes")
                if results:   # another node has the earlier keys already
                    done = [n for n in dst_nodes if n != self.node_id][:len(results)]
                    raise KeyServiceError(503, f"relay to node {dst} replaced keys already relayed to "
                                               f"node(s) {', '.join(done)}: one key "
                                               "cannot be derived or pre-relayed per node for SAEs on "
                                               "several nodes")
                keys = list(result.keys)
            results.append(result)
        # the key is only as strong as its weakest path
        level = max((r.security_level for r in results), default="qkd",
                    key=lambda lv: SECURITY_LEVELS.index(lv) if lv in SECURITY_LEVELS else len(SECURITY_LEVELS))
        ext = {"qusec_route_type": "indirect", "qusec_hops": max((r.hops for r in results), default=0),
               "qusec_security_level": level, "qusec_paths": [p for r in results for p in r.paths]}
        domains = [d for r in results for d in (r.domains or ())]
        if domains:   # the slave SAE is another domain's: the domains beyond the first (docs/interworking.md)
            ext["qusec_domains"] = domains
        return [Delivered(kid, m, dict(ext)) for kid, m in keys]

    def _deliver_direct(self, master: str, slaves: list[str], dst: str, key_ids: list[str], n_bytes: int,
                        extensions: dict[str, str]) -> list[Delivered]:
        if self.peer is None:
            raise KeyServiceError(503, f"no connection to neighbour node {dst} configured")
        # every take durable in one commit (not one per key) before the neighbour hears of them
        with self.store.deferred():
            with self._take_lock:   # one link per request, chosen by the key it holds
                try:
                    links = self.links_to(dst)
                    if len(links) > 1:   # parallel links: the one holding the most key
                        links = sorted(links, key=lambda lk: -lk.available_bytes())
                except KeySourceError as exc:
                    raise KeyServiceError(503, f"link KMS toward node {dst} unavailable: {exc}") from exc
                link = links[0]
                need = n_bytes * len(key_ids)
                taken = []
                try:
                    for kid in key_ids:
                        taken.append((kid, link.take(n_bytes)))
                except InsufficientKey as exc:
                    # already-taken link key is burned, never reused
                    raise KeyServiceError(503, f"not enough key on QKD link {link.link_id} to node {dst}: "
                                               f"{need * 8} bits requested ({exc})",
                                          [{"qusec_link_id": link.link_id, "qusec_requested_bits": need * 8}]) from exc
                except KeySourceError as exc:
                    raise KeyServiceError(503, f"link KMS of link {link.link_id} unavailable: {exc}") from exc
        try:
            self.peer.deliver_direct(dst, link.link_id, master, slaves,
                                     [(kid, lk.key_ids, n_bytes * 8) for kid, lk in taken], extensions)
        except Exception as exc:  # noqa: BLE001 - any failure to reach the peer is a 503
            log.warning("direct delivery to %s over %s failed: %s", dst, link.link_id, exc)
            raise KeyServiceError(503, f"neighbour node {dst} did not accept the keys: {exc}") from exc
        ext = {"qusec_route_type": "direct", "qusec_hops": 0, "qusec_security_level": "qkd",
               "qusec_link_id": link.link_id}
        return [Delivered(kid, lk.material, dict(ext)) for kid, lk in taken]

    # -- the neighbour's side of a direct delivery ---------------------------------------------------
    def accept_direct(self, from_node: str, link_id: str, master: str, slaves: list[str],
                      keys: list[tuple[str, list[str], int]], extensions: dict[str, str] | None = None) -> int:
        """A neighbour took link key for these keys: claim the same link key here and store it.

        Raises ValueError when the request is inconsistent (wrong link, SAEs not on this node).
        """
        link = self.link(link_id)
        if link is None or link.peer_node != from_node:
            raise ValueError(f"no QKD link {link_id!r} between node {self.node_id} and node {from_node}")
        if self.saes.get(master) != from_node:
            raise ValueError(f"master SAE {master!r} is not attached to node {from_node}")
        if not slaves or any(self.saes.get(s) != self.node_id for s in slaves):
            raise ValueError(f"slave SAEs {slaves} are not all attached to node {self.node_id}")
        ext = {"qusec_route_type": "direct", "qusec_hops": 0, "qusec_security_level": "qkd",
               "qusec_link_id": link_id, **{k: v for k, v in (extensions or {}).items() if k.startswith("qusec_")}}
        for kid, _, size_bits in keys:
            if size_bits <= 0 or size_bits % 8:
                raise ValueError(f"key {kid}: bad size {size_bits}")
        # claim + store in one transaction: a crash leaves either both or neither
        tx = self.store.transaction() if getattr(link, "kind", "") == "simulated" else _nullcontext()
        with tx:
            stored = [StoredKey(kid, master, slaves, link.claim(link_ids, size_bits // 8), self.clock(), dict(ext))
                      for kid, link_ids, size_bits in keys]
            short = [k.key_id for k, (_, _, bits) in zip(stored, keys) if k.size_bits != bits]
            if short:   # the link key IDs do not carry as many bits as announced: store nothing
                raise ValueError(f"keys {short}: fewer link key bits than their size")
            self.store.put(stored)
        return len(stored)
