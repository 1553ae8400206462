"""Link key sources: the one interface behind which a link KMS gets its key (simulated or vendor).

One :class:`KeySource` per QKD link end. ``take(n)`` at the initiating end returns fresh
link key and the IDs the far end claims it by; ``claim(ids)`` at the far end returns the
same bytes. Both remove the key; a key is never handed out twice; each direction uses
its own disjoint part of the link's key so both ends can initiate at once.

Implementations: :class:`~kms_agents.qkd_module.SimulatedQkdModule` (kind ``simulated``)
and :class:`Etsi014KeySource` (kind ``etsi014``: a vendor KMS reached as an ETSI 014 SAE,
``enc_keys`` at this end, ``dec_keys`` by key ID at the far end).
"""
from __future__ import annotations

import logging
import math
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

from kms_agents.qkd_module import (NO_FAULT, InsufficientKey, KeySourceError, KeySourceUnavailable,
                                   LinkAlarm, LinkFault, LinkKey, SimulatedQkdModule, UnknownKeyIds)

if TYPE_CHECKING:
    from kms_agents.config import LinkConfig, TlsConfig
    from kms_agents.keystore import KeyStore

__all__ = ["KeySource", "LinkKey", "KeySourceError", "InsufficientKey", "UnknownKeyIds",
           "KeySourceUnavailable", "LinkAlarm", "LinkFault", "FaultsNotSupported", "SimulatedQkdModule", "Etsi014KeySource", "make_key_source"]

log = logging.getLogger(__name__)


class FaultsNotSupported(KeySourceError):
    """This key source's faults are its own (a vendor KMS): they cannot be set here."""


class KeySource(ABC):
    """One end of one QKD link, as the vKMS sees it."""

    link_id: str
    local_node: str
    peer_node: str
    rate_bps: float
    kind: str

    @abstractmethod
    def take(self, n_bytes: int) -> LinkKey:
        """Fresh link key for this end to hand out (raises InsufficientKey)."""

    @abstractmethod
    def claim(self, key_ids: Iterable[str], n_bytes: int | None = None) -> bytes:
        """The key the peer took, by its IDs (raises UnknownKeyIds); ``n_bytes`` truncates."""

    @abstractmethod
    def available_bytes(self) -> int:
        """Key this end could take now."""

    @abstractmethod
    def capacity_bytes(self) -> int:
        """Most key this end can hold ready."""

    def peer_available_bytes(self) -> int:
        """Key this end sees available for hops the peer initiates (0: not known)."""
        return 0

    def fault(self) -> LinkFault:
        """This end's fault state (``kms_agents.qkd_module.LinkFault``; up when none)."""
        return NO_FAULT

    def set_fault(self, fault: LinkFault) -> LinkFault:
        """Set this end's fault (simulated modules only); returns the previous one."""
        raise FaultsNotSupported(f"link {self.link_id}: a {self.kind} key source reports its own "
                                 "faults; they cannot be set here")

    def close(self) -> None:
        """Release connections."""


KeySource.register(SimulatedQkdModule)


class Etsi014KeySource(KeySource):
    """A vendor KMS reached over ETSI 014 as the SAE ``local_sae`` (default: this node's id)."""

    kind = "etsi014"

    def __init__(self, link_id: str, local_node: str, peer_node: str, url: str, rate_bps: float, *,
                 ca_cert: str | Path, cert: str | Path, key: str | Path,
                 local_sae: str | None = None, peer_sae: str | None = None, timeout: float = 5.0) -> None:
        from kms_agents.client import Etsi014Client
        self.link_id, self.local_node, self.peer_node = link_id, local_node, peer_node
        self.rate_bps = float(rate_bps)
        self.local_sae = local_sae or local_node
        self.peer_sae = peer_sae or peer_node
        self._client = Etsi014Client(url, ca_cert, cert, key, timeout=timeout)
        self._status: dict | None = None
        self._status_at = 0.0
        self._lock = threading.Lock()

    def _call(self, fn, *args, **kwargs):
        from kms_agents.client import Etsi014Error
        try:
            return fn(*args, **kwargs)
        except Etsi014Error as exc:
            if exc.status == 503:
                raise InsufficientKey(f"link {self.link_id}: vendor KMS: {exc}") from exc
            if exc.status == 400 and fn.__name__ == "dec_keys":
                raise UnknownKeyIds(f"link {self.link_id}: vendor KMS: {exc}") from exc
            raise KeySourceError(f"link {self.link_id}: vendor KMS: {exc}") from exc
        except OSError as exc:
            raise KeySourceUnavailable(f"link {self.link_id}: vendor KMS {self._client.base_url}: {exc}") from exc

    def status(self, max_age: float = 1.0) -> dict:
        with self._lock:
            if self._status is None or time.monotonic() - self._status_at > max_age:
                self._status = self._call(self._client.status, self.peer_sae)
                self._status_at = time.monotonic()
            return self._status

    def available_bytes(self) -> int:
        st = self.status()
        return int(st.get("stored_key_count", 0)) * int(st.get("key_size", 0)) // 8

    def peer_available_bytes(self) -> int:
        """A vendor KMS keeps one stock of key per SAE pair: what it stores for us is the peer's too."""
        return self.available_bytes()

    def capacity_bytes(self) -> int:
        st = self.status(max_age=60)
        return int(st.get("max_key_count", 0)) * int(st.get("key_size", 0)) // 8

    def take(self, n_bytes: int) -> LinkKey:
        if n_bytes <= 0:
            raise ValueError(f"n_bytes must be positive, got {n_bytes}")
        st = self.status(max_age=60)
        lo, hi = int(st.get("min_key_size", 8)), int(st.get("max_key_size", 8 * n_bytes))
        bits = max(lo, n_bytes * 8)
        number = 1
        if bits > hi:
            bits = hi - hi % 8
            number = math.ceil(n_bytes * 8 / bits)
        keys = self._call(self._client.enc_keys, self.peer_sae, number, bits)
        with self._lock:
            self._status = None
        return LinkKey(key_ids=[k.key_id for k in keys], material=b"".join(k.key for k in keys)[:n_bytes])

    def claim(self, key_ids: Iterable[str], n_bytes: int | None = None) -> bytes:
        ids = list(key_ids)
        if not ids:
            raise UnknownKeyIds(f"link {self.link_id}: no key IDs given")
        keys = self._call(self._client.dec_keys, self.peer_sae, ids)
        by_id = {k.key_id: k.key for k in keys}
        if set(by_id) != set(ids):
            raise UnknownKeyIds(f"link {self.link_id}: vendor KMS returned other key IDs")
        material = b"".join(by_id[i] for i in ids)
        return material if n_bytes is None else material[:n_bytes]

    def close(self) -> None:
        self._client.close()


def make_key_source(link: "LinkConfig", node_id: str, store: "KeyStore", tls: "TlsConfig") -> KeySource:
    """The key source a link entry of the agent config describes."""
    if link.kind == "simulated":
        import json
        secret = bytes.fromhex(json.loads(Path(link.secret_file).read_text())["secret"])
        return SimulatedQkdModule(link.id, node_id, link.peer, secret, link.rate_bps, link.epoch, store,
                                  capacity_bytes=link.capacity_bytes)
    if link.kind == "etsi014":
        return Etsi014KeySource(link.id, node_id, link.peer, link.kms_url, link.rate_bps,
                                ca_cert=link.kms_ca_cert or tls.ca_cert, cert=link.kms_cert or tls.cert,
                                key=link.kms_key or tls.key, local_sae=link.kms_sae_id,
                                peer_sae=link.kms_peer_sae_id)
    raise KeySourceError(f"link {link.id}: unknown key source kind {link.kind!r}")
