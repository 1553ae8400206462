"""Key delivery logic of one vKMS (no sockets): ETSI 014 semantics, link KMS choice, direct/local/relay.

The HTTP and gRPC front ends translate requests into calls on :class:`KeyService`
and :class:`KeyServiceError` into 400/401/503 answers. Neighbours are reached through
an injected :class:`PeerNotifier` (gRPC in the agent, a direct call in unit tests)
and non-neighbours through ``relayer`` (the agent's relay, :mod:`kms_agents.relay`; the
default refuses with 503). This module never imports the relay: the relay implements
:class:`Relayer` with the types defined here.
"""
from __future__ import annotations

import base64
import logging
import os
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from contextlib import nullcontext as _nullcontext
from dataclasses import dataclass, field
from typing import Any, Protocol

from kms_agents.config import Limits
from kms_agents.keysource import InsufficientKey, KeySource, KeySourceError
from kms_agents.keystore import KeyNotFound, KeyStore, NotAuthorised, StoredKey

log = logging.getLogger(__name__)

MSG_SIZE_MULTIPLE = "size shall be a multiple of 8"
MSG_EXT_UNSUPPORTED = "not all extension_mandatory parameters are supported"
MSG_EXT_UNMET = "not all extension_mandatory request options could be met"
MSG_EXT_OPTIONAL = "not all extension_optional request options handled"
MSG_KEYS_NOT_FOUND = "one or more keys specified are not found on KME"

SECURITY_LEVELS = ("qkd", "hybrid", "pqc")   # strongest first; a request names the weakest it accepts
EXTENSIONS = {"qusec_route_type": ("direct", "indirect", "local"),
              "qusec_security_level": SECURITY_LEVELS,
              "qusec_max_hops": None}      # integer >= 0


class KeyServiceError(Exception):
    """A request the KME must refuse: HTTP status (400/401/503), ETSI message and details."""

    def __init__(self, status: int, message: str = "", details: list[dict] | None = None) -> None:
        super().__init__(message or f"HTTP {status}")
        self.status, self.message, self.details = status, message, details

    def body(self) -> dict | None:
        """The ETSI error body (None for 401, which carries no body)."""
        if self.status == 401:
            return None
        out: dict[str, Any] = {"message": self.message}
        if self.details:
            out["details"] = self.details
        return out


def bad(message: str, **detail: Any) -> KeyServiceError:
    return KeyServiceError(400, message, [detail] if detail else None)


@dataclass
class EncRequest:
    number: int
    size: int
    additional_slaves: list[str] = field(default_factory=list)
    mandatory: dict[str, Any] = field(default_factory=dict)
    optional: dict[str, Any] = field(default_factory=dict)


@dataclass
class RequestOptions:
    """The SAE's ETSI 014 request extensions (qusec_ options), as the relayer must honour them."""
    mandatory: dict[str, Any] = field(default_factory=dict)
    optional: dict[str, Any] = field(default_factory=dict)


@dataclass
class RelayResult:
    """What the relayer reports after the keys reached the destination node.

    ``keys``: what the master gets instead of the keys handed to the relayer (same
    order and number), e.g. hybrid/pqc-derived keys or keys served from a pre-relayed
    buffer under their own IDs; None = the keys as given.
    """
    paths: list[list[str]]
    security_level: str = "qkd"
    keys: list[tuple[str, bytes]] | None = None

    @property
    def hops(self) -> int:
        """Trusted nodes traversed (0 = direct link), the longest path's."""
        return max((len(p) - 2 for p in self.paths), default=0)


class PeerNotifier(Protocol):
    """Reaches a neighbour's vKMS (the agent implements it over gRPC)."""

    def deliver_direct(self, peer_node: str, link_id: str, master_sae: str, slave_saes: list[str],
                       keys: list[tuple[str, list[str], int]], extensions: dict[str, str]) -> None: ...


class Relayer(Protocol):
    def relay(self, *, master_sae: str, slave_saes: list[str], dst_node: str,
              keys: list[tuple[str, bytes]], security_level: str | None,
              extensions: dict[str, Any], options: RequestOptions) -> RelayResult: ...

    def stored_key_count(self, dst_node: str, key_size: int) -> int: ...


class NoRelayer:
    """Default relayer: refuses non-neighbour requests with a clear 503."""

    def __init__(self, node_id: str) -> None:
        self.node_id = node_id

    def _refuse(self, dst_node: str) -> KeyServiceError:
        return KeyServiceError(503, f"node {dst_node} is not a neighbour of node {self.node_id} and key "
                                    "relay across the network is not available on this KME (no relay "
                                    "plugin / QuSeC configured); only SAEs on neighbouring nodes can "
                                    "share keys here",
                               [{"qusec_route_type": "indirect", "qusec_dst_node": dst_node}])

    def relay(self, *, master_sae: str, slave_saes: list[str], dst_node: str,
              keys: list[tuple[str, bytes]], security_level: str | None,
              extensions: dict[str, Any], options: RequestOptions | None = None) -> RelayResult:
        raise self._refuse(dst_node)

    def stored_key_count(self, dst_node: str, key_size: int) -> int:
        raise self._refuse(dst_node)


@dataclass
class Delivered:
    key_id: str
    material: bytes
    extension: dict[str, Any]


class KeyService:
    """ETSI 014 key delivery for the SAEs of one node."""

    def __init__(self, node_id: str, saes: dict[str, str], links: Sequence[KeySource], store: KeyStore,
                 limits: Limits, peer: PeerNotifier | None, relayer: Relayer | None = None, *,
                 clock: Callable[[], float] = time.time) -> None:
        self.node_id = node_id
        self.saes = dict(saes)
        self.links = list(links)
        self.store = store
        self.limits = limits
        self.peer = peer
        self.relayer: Relayer = relayer or NoRelayer(node_id)
        self.clock = clock
        self._take_lock = threading.Lock()

    # -- helpers ------------------------------------------------------------------
    def local_saes(self) -> list[str]:
        return sorted(s for s, n in self.saes.items() if n == self.node_id)

    def neighbours(self) -> list[str]:
        return sorted({lk.peer_node for lk in self.links})

    def links_to(self, node: str) -> list[KeySource]:
        return [lk for lk in self.links if lk.peer_node == node]

    def link(self, link_id: str) -> KeySource | None:
        return next((lk for lk in self.links if lk.link_id == link_id), None)

    def route_type(self, dst_node: str) -> str:
        if dst_node == self.node_id:
            return "local"
        return "direct" if self.links_to(dst_node) else "indirect"

    def route_of(self, dst_nodes: set[str] | list[str]) -> str:
        """How keys for SAEs on ``dst_nodes`` are made: local, direct (one neighbour) or indirect (relay)."""
        remote = {n for n in dst_nodes if n != self.node_id}
        if not remote:
            return "local"
        return "direct" if len(remote) == 1 and self.links_to(next(iter(remote))) else "indirect"

    def _caller_is_local(self, caller: str) -> None:
        if self.saes.get(caller) != self.node_id:
            log.info("refused SAE %r: not an SAE of node %s", caller, self.node_id)
            raise KeyServiceError(401)

    def _slave_node(self, slave: str, what: str = "slave SAE ID") -> str:
        node = self.saes.get(slave)
        if node is None:
            raise bad(f"unknown {what} {slave!r}: no such SAE in this network", parameter=what, value=slave)
        return node

    def _available_keys(self, dst_node: str, key_size: int) -> int:
        if dst_node == self.node_id:
            return self.limits.max_key_count
        links = self.links_to(dst_node)
        if links:
            try:
                return sum(lk.available_bytes() for lk in links) * 8 // key_size
            except KeySourceError as exc:
                raise KeyServiceError(503, f"link KMS toward node {dst_node} unavailable: {exc}") from exc
        return int(self.relayer.stored_key_count(dst_node, key_size))

    def _max_key_count(self, dst_node: str, key_size: int) -> int:
        links = self.links_to(dst_node)
        if links:
            try:
                cap = sum(lk.capacity_bytes() for lk in links) * 8 // key_size
            except KeySourceError:
                cap = self.limits.max_key_count
            return max(1, min(self.limits.max_key_count, cap))
        return self.limits.max_key_count

    # -- ETSI 014: Get status -----------------------------------------------------------
    def status(self, caller: str, slave: str) -> dict:
        self._caller_is_local(caller)
        dst = self._slave_node(slave)
        if slave == caller:
            raise bad("slave SAE ID must differ from the calling (master) SAE", parameter="slave_SAE_ID")
        size = self.limits.key_size
        max_count = self._max_key_count(dst, size)
        stored = min(self._available_keys(dst, size), max_count)
        route = self.route_type(dst)
        ext: dict[str, Any] = {"qusec_route_type": route}
        if route == "direct":
            ext["qusec_links"] = [lk.link_id for lk in self.links_to(dst)]
            ext["qusec_hops"] = 0
        elif route == "indirect":
            buffered = getattr(self.relayer, "buffered_key_count", None)
            if buffered is not None:   # keys already relayed to the slave's node for this pair
                ext["qusec_prerelayed_keys"] = int(buffered(caller, slave, dst, size))
        return {"source_KME_ID": self.node_id, "target_KME_ID": dst, "master_SAE_ID": caller,
                "slave_SAE_ID": slave, "key_size": size, "stored_key_count": stored,
                "max_key_count": max_count, "max_key_per_request": self.limits.max_key_per_request,
                "max_key_size": self.limits.max_key_size, "min_key_size": self.limits.min_key_size,
                "max_SAE_ID_count": self.limits.max_sae_id_count, "status_extension": ext}

    # -- ETSI 014: Get key -------------------------------------------------------------
    def parse_enc_request(self, body: Any) -> EncRequest:
        """Check a Get key request body (None = all defaults); 400 with the spec's messages."""
        lim = self.limits
        if body is None:
            body = {}
        if not isinstance(body, dict):
            raise bad("request body must be a JSON object")
        known = ("number", "size", "additional_slave_SAE_IDs", "extension_mandatory", "extension_optional")
        for k in body:
            if k not in known:
                raise bad(f"unknown request parameter {k!r} (known: {', '.join(known)})", parameter=k)
        number = body.get("number")
        number = 1 if number is None else number
        if isinstance(number, bool) or not isinstance(number, int) or not 1 <= number <= lim.max_key_per_request:
            raise bad(f"number shall be an integer from 1 to max_key_per_request ({lim.max_key_per_request})",
                      parameter="number", value=number)
        size = body.get("size")
        size = lim.key_size if size is None else size
        if isinstance(size, bool) or not isinstance(size, int):
            raise bad("size shall be an integer number of bits", parameter="size", value=size)
        if size % 8:
            raise bad(MSG_SIZE_MULTIPLE)
        if not lim.min_key_size <= size <= lim.max_key_size:
            raise bad(f"size shall be from min_key_size ({lim.min_key_size}) to max_key_size "
                      f"({lim.max_key_size})", parameter="size", value=size)
        extra = body.get("additional_slave_SAE_IDs") or []
        if not isinstance(extra, list) or not all(isinstance(s, str) and s for s in extra):
            raise bad("additional_slave_SAE_IDs shall be an array of SAE IDs", parameter="additional_slave_SAE_IDs")
        if len(extra) > lim.max_sae_id_count:
            raise bad(f"too many additional_slave_SAE_IDs: {len(extra)} > max_SAE_ID_count "
                      f"({lim.max_sae_id_count})", parameter="additional_slave_SAE_IDs")
        return EncRequest(number, size, list(extra), self._extensions(body, "extension_mandatory"),
                          self._extensions(body, "extension_optional"))

    @staticmethod
    def _extensions(body: dict, name: str) -> dict[str, Any]:
        value = body.get(name)
        if value is None:
            return {}
        if not isinstance(value, list) or not all(isinstance(e, dict) for e in value):
            raise bad(f"{name} shall be an array of objects", parameter=name)
        out: dict[str, Any] = {}
        for e in value:
            out.update(e)
        return out

    def enc_keys(self, caller: str, slave: str, body: Any = None) -> dict:
        """Get key: new keys shared by ``caller`` (master) and ``slave`` (+ additional slaves)."""
        self._caller_is_local(caller)
        req = self.parse_enc_request(body)
        self._slave_node(slave)   # an unknown slave SAE is named as such
        slaves = [slave] + req.additional_slaves
        if caller in slaves or len(set(slaves)) != len(slaves):
            raise bad("slave SAE IDs must be distinct and differ from the master SAE",
                      parameter="additional_slave_SAE_IDs")
        dst_nodes = {self._slave_node(s, "additional slave SAE ID") for s in slaves}
        unsupported = [k for k in req.mandatory if k not in EXTENSIONS]
        if unsupported:
            raise bad(MSG_EXT_UNSUPPORTED, unsupported=unsupported)
        level = req.mandatory.get("qusec_security_level", req.optional.get("qusec_security_level"))
        route = self.route_of(dst_nodes)
        if not self._extensions_met(req.mandatory, route, len(dst_nodes)):
            raise bad(MSG_EXT_UNMET, requested=req.mandatory, route_type=route)
        container_ext: dict[str, Any] = {}
        unhandled = [k for k in req.optional if k not in EXTENSIONS]
        if unhandled or not self._extensions_met(
                {k: v for k, v in req.optional.items() if k in EXTENSIONS}, route, len(dst_nodes)):
            container_ext = {"message": MSG_EXT_OPTIONAL, "qusec_unhandled": unhandled}
        ids = [str(uuid.uuid4()) for _ in range(req.number)]
        delivered = self.deliver(caller, slaves, ids, req.size, level,
                                 options=RequestOptions(dict(req.mandatory), dict(req.optional)))
        max_hops = req.optional.get("qusec_max_hops")
        if isinstance(max_hops, int) and not container_ext and \
                any(d.extension.get("qusec_hops", 0) > max_hops for d in delivered):
            container_ext = {"message": MSG_EXT_OPTIONAL, "qusec_unhandled": ["qusec_max_hops"]}
        out: dict[str, Any] = {"keys": [{"key_ID": d.key_id, "key": base64.b64encode(d.material).decode(),
                                         "key_extension": d.extension} for d in delivered]}
        if container_ext:
            out["key_container_extension"] = container_ext
        return out

    @staticmethod
    def _extensions_met(ext: dict[str, Any], route: str, n_dst: int) -> bool:
        for k, v in ext.items():
            allowed = EXTENSIONS[k]
            if allowed is not None and v not in allowed:
                return False
            if k == "qusec_route_type" and v != route:
                return False
            if k == "qusec_max_hops":
                if isinstance(v, bool) or not isinstance(v, int) or v < 0:
                    return False
                if route == "indirect" and v < 1:
                    return False
        return True

    def deliver(self, master: str, slaves: list[str], key_ids: list[str], size_bits: int,
                security_level: str | None = None, extensions: dict[str, str] | None = None,
                options: RequestOptions | None = None) -> list[Delivered]:
        """Make keys shared by ``master`` and ``slaves`` and stored at the slaves' node(s).

        Returns the material for the master. Local: CSPRNG key stored here. Direct: link
        key taken here, the neighbour claims the same link key IDs. Otherwise: fresh key
        relayed by ``self.relayer`` to each destination node.
        """
        dst_nodes = sorted({self.saes[s] for s in slaves})
        n_bytes = size_bits // 8
        if dst_nodes == [self.node_id]:
            keys = [(kid, os.urandom(n_bytes)) for kid in key_ids]
            ext = {"qusec_route_type": "local", "qusec_hops": 0, "qusec_security_level": "qkd"}
            self.store.put([StoredKey(kid, master, slaves, m, self.clock(), dict(ext)) for kid, m in keys])
            return [Delivered(kid, m, dict(ext)) for kid, m in keys]
        remote = [n for n in dst_nodes if n != self.node_id]
        if len(remote) == 1 and self.links_to(remote[0]):
            # one neighbouring node (plus, for multicast, perhaps SAEs here): the key is link key
            delivered = self._deliver_direct(master, [s for s in slaves if self.saes[s] == remote[0]], remote[0],
                                             key_ids, n_bytes, extensions or {})
            here = [s for s in slaves if self.saes[s] == self.node_id]
            if here:
                self.store.put([StoredKey(d.key_id, master, here, d.material, self.clock(), dict(d.extension))
                                for d in delivered])
            return delivered
        keys = [(kid, os.urandom(n_bytes)) for kid in key_ids]
        results = []
        # relays first, this node last: a relay may replace the keys (derived, pre-relayed)
        for dst in sorted(dst_nodes, key=lambda n: n == self.node_id):
            node_slaves = [s for s in slaves if self.saes[s] == dst]
            if dst == self.node_id:
                self.store.put([StoredKey(kid, master, node_slaves, m, self.clock(), {"qusec_route_type": "local"})
                                for kid, m in keys])
                continue
            result = self.relayer.relay(master_sae=master, slave_saes=node_slaves, dst_node=dst, keys=list(keys),
                                        security_level=security_level, extensions=dict(extensions or {}),
                                        options=options or RequestOptions())
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
        return [Delivered(kid, m, dict(ext)) for kid, m in keys]

    def _deliver_direct(self, master: str, slaves: list[str], dst: str, key_ids: list[str], n_bytes: int,
                        extensions: dict[str, str]) -> list[Delivered]:
        if self.peer is None:
            raise KeyServiceError(503, f"no connection to neighbour node {dst} configured")
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

    # -- ETSI 014: Get key with key IDs -----------------------------------------------------------
    def parse_dec_request(self, body: Any) -> list[str]:
        if not isinstance(body, dict):
            raise bad("request body must be a JSON object with key_IDs")
        for k in body:
            if k not in ("key_IDs", "key_IDs_extension"):
                raise bad(f"unknown request parameter {k!r} (known: key_IDs, key_IDs_extension)", parameter=k)
        items = body.get("key_IDs")
        if not isinstance(items, list) or not items:
            raise bad("key_IDs shall be a non-empty array of {\"key_ID\": ...} objects", parameter="key_IDs")
        ids = []
        for item in items:
            if not isinstance(item, dict) or not isinstance(item.get("key_ID"), str) or not item["key_ID"]:
                raise bad("each key_IDs entry shall be an object with a key_ID string", parameter="key_IDs")
            ids.append(item["key_ID"])
        if len(ids) > self.limits.max_key_per_request:
            raise bad(f"at most max_key_per_request ({self.limits.max_key_per_request}) key IDs per request",
                      parameter="key_IDs")
        if len(set(ids)) != len(ids):
            raise bad("key_IDs contains duplicates", parameter="key_IDs")
        return ids

    def dec_keys(self, caller: str, master: str, body: Any) -> dict:
        """Get key with key IDs: ``caller`` (a slave) fetches keys the ``master`` SAE requested."""
        self._caller_is_local(caller)
        ids = self.parse_dec_request(body)
        try:
            keys = self.store.fetch(master, caller, ids)
        except NotAuthorised:
            log.info("SAE %r asked for keys of master %r it was not named for", caller, master)
            raise KeyServiceError(401) from None
        except KeyNotFound:
            raise bad(MSG_KEYS_NOT_FOUND) from None
        return {"keys": [{"key_ID": k.key_id, "key": base64.b64encode(k.material).decode(),
                          "key_extension": {k2: v for k2, v in k.meta.items() if k2.startswith("qusec_")}}
                         for k in keys]}

    # -- from neighbours / the relay -------------------------------------------------------------
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
