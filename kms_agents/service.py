"""The ETSI 014 key service of one vKMS (no sockets): Get status, Get key and Get key with key IDs.

The HTTPS front end (:mod:`kms_agents.etsi014`) translates requests into calls on
:class:`KeyService` and :class:`~kms_agents.keyrequest.KeyServiceError` into 400/401/503
answers. Requests are checked by :mod:`kms_agents.keyrequest`; keys are made by
:class:`~kms_agents.delivery.KeyDelivery` (``KeyService.delivery``).
"""
from __future__ import annotations

import base64
import logging
import time
from collections.abc import Callable, Sequence
from typing import Any

from kms_agents import metrics
from kms_agents.config import Limits
from kms_agents.delivery import KeyDelivery, PeerNotifier
from kms_agents.keyrequest import (MSG_EXT_OPTIONAL, MSG_KEYS_NOT_FOUND, KeyServiceError, bad, check_extensions,
                                   parse_dec_request, parse_enc_request)
from kms_agents.keysource import KeySource, KeySourceError
from kms_agents.keystore import KeyNotFound, KeyStore, NotAuthorised, new_key_ids
from kms_agents.relayer import Relayer, RequestOptions

log = logging.getLogger(__name__)


class KeyService:
    """ETSI 014 key delivery for the SAEs of one node."""

    def __init__(self, node_id: str, saes: dict[str, str], links: Sequence[KeySource], store: KeyStore,
                 limits: Limits, peer: PeerNotifier | None, relayer: Relayer | None = None, *,
                 clock: Callable[[], float] = time.time) -> None:
        self.node_id = node_id
        self.saes = dict(saes)
        self.store = store
        self.limits = limits
        self.delivery = KeyDelivery(node_id, self.saes, links, store, peer, relayer, clock=clock)

    # -- checks ---------------------------------------------------------------------------------
    def _caller_is_local(self, caller: str) -> None:
        if self.saes.get(caller) != self.node_id:
            metrics.refused("etsi014", "not_local_sae", f"SAE {caller!r} is not an SAE of node {self.node_id}",
                            logger=log, level=logging.INFO, caller=f"sae:{caller}")
            raise KeyServiceError(401)

    def _slave_node(self, slave: str, what: str = "slave SAE ID", foreign_ok: bool = False) -> str:
        """The node of ``slave``; "" for an SAE this network's config does not name, when
        ``foreign_ok`` and the relayer can ask QuSeC (another domain's SAE, perhaps: QuSeC knows,
        and refuses an SAE no domain has, which is then this 400)."""
        node = self.saes.get(slave)
        if node is None and foreign_ok and getattr(self.delivery.relayer, "routes_foreign", False):
            return ""
        if node is None:
            raise bad(f"unknown {what} {slave!r}: no such SAE in this network", parameter=what, value=slave)
        return node

    def _available_keys(self, dst_node: str, key_size: int) -> int:
        if dst_node == self.node_id:
            return self.limits.max_key_count
        links = self.delivery.links_to(dst_node)
        if links:
            try:
                return sum(lk.available_bytes() for lk in links) * 8 // key_size
            except KeySourceError as exc:
                raise KeyServiceError(503, f"link KMS toward node {dst_node} unavailable: {exc}") from exc
        return int(self.delivery.relayer.stored_key_count(dst_node, key_size))

    def _max_key_count(self, dst_node: str, key_size: int) -> int:
        links = self.delivery.links_to(dst_node)
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
        route = self.delivery.route_of([dst])
        ext: dict[str, Any] = {"qusec_route_type": route}
        if route == "direct":
            ext["qusec_links"] = [lk.link_id for lk in self.delivery.links_to(dst)]
            ext["qusec_hops"] = 0
        elif route == "indirect":
            buffered = getattr(self.delivery.relayer, "buffered_key_count", None)
            if buffered is not None:   # keys already relayed to the slave's node for this pair
                ext["qusec_prerelayed_keys"] = int(buffered(caller, slave, dst, size))
        return {"source_KME_ID": self.node_id, "target_KME_ID": dst, "master_SAE_ID": caller,
                "slave_SAE_ID": slave, "key_size": size, "stored_key_count": stored,
                "max_key_count": max_count, "max_key_per_request": self.limits.max_key_per_request,
                "max_key_size": self.limits.max_key_size, "min_key_size": self.limits.min_key_size,
                "max_SAE_ID_count": self.limits.max_sae_id_count, "status_extension": ext}

    # -- ETSI 014: Get key -------------------------------------------------------------
    def enc_keys(self, caller: str, slave: str, body: Any = None) -> dict:
        """Get key: new keys shared by ``caller`` (master) and ``slave`` (+ additional slaves)."""
        self._caller_is_local(caller)
        req = parse_enc_request(body, self.limits)
        foreign_ok = not req.additional_slaves   # one slave SAE of another domain, perhaps
        self._slave_node(slave, foreign_ok=foreign_ok)   # an unknown slave SAE is named as such
        slaves = [slave] + req.additional_slaves
        if caller in slaves or len(set(slaves)) != len(slaves):
            raise bad("slave SAE IDs must be distinct and differ from the master SAE",
                      parameter="additional_slave_SAE_IDs")
        dst_nodes = {self._slave_node(s, "additional slave SAE ID", foreign_ok) for s in slaves}
        container_ext = check_extensions(req, self.delivery.route_of(dst_nodes), len(dst_nodes))
        ids = new_key_ids(req.number)
        delivered = self.delivery.deliver(caller, slaves, ids, req.size, req.security_level,
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

    # -- ETSI 014: Get key with key IDs -----------------------------------------------------------
    def dec_keys(self, caller: str, master: str, body: Any) -> dict:
        """Get key with key IDs: ``caller`` (a slave) fetches keys the ``master`` SAE requested."""
        self._caller_is_local(caller)
        ids = parse_dec_request(body, self.limits)
        try:
            keys = self.store.fetch(master, caller, ids)
        except NotAuthorised:
            metrics.refused("etsi014", "not_named_slave", f"SAE {caller!r} asked for keys of master "
                            f"{master!r} it was not named for", logger=log, level=logging.INFO,
                            caller=f"sae:{caller}")
            raise KeyServiceError(401) from None
        except KeyNotFound:
            raise bad(MSG_KEYS_NOT_FOUND) from None
        return {"keys": [{"key_ID": k.key_id, "key": base64.b64encode(k.material).decode(),
                          "key_extension": {k2: v for k2, v in k.meta.items() if k2.startswith("qusec_")}}
                         for k in keys]}
