"""Pre-relayed key buffers: a few keys per active SAE pair, relayed ahead so enc_keys need not wait.

Demand is observed per (master SAE, slave SAE, destination node, key size) as an
exponentially weighted key rate. A background loop tops each active pair's
buffer up to ``rate x horizon`` keys (at least ``min_keys`` once the pair has asked
twice, never more than ``max_keys``) whenever half of it is used, in one bulk
relay through the normal relay
path with the policy's default security level. Buffered keys wait at the
destination under their own key IDs (which only the source knows until it hands
them to the master). A pair idle for ``idle_s`` has its buffer voided at the
destination, so little link key is ever stranded.
"""
from __future__ import annotations

import logging
import math
import os
import threading
import time
from collections import deque
from dataclasses import dataclass, field

from kms_agents.keystore import new_key_ids
from kms_agents.relay.engine import RelayEngine
from kms_agents.relay.messages import RelayFailure
from kms_agents.relayer import RelayResult

log = logging.getLogger(__name__)

Pair = tuple[str, str, str, int]  # master SAE, slave SAE, destination node, key size (bytes)


@dataclass
class _Buffer:
    keys: deque = field(default_factory=deque)   # (key_id, material, paths, level, planned paths)
    rate: float = 0.0                            # keys/s, EWMA
    last_demand: float = 0.0
    requests: int = 0


def target_size(rate_kps: float, requests: int, *, horizon_s: float, min_keys: int,
                max_keys: int) -> int:
    """How many keys a pair's buffer should hold for its observed demand."""
    if requests < 2:
        return 0  # one request is not a pattern
    return max(min_keys, min(max_keys, math.ceil(rate_kps * horizon_s)))


class PreRelay:
    """Per-pair buffers of keys already relayed to the slave's node."""

    def __init__(self, engine: RelayEngine, *, max_keys: int = 64, min_keys: int = 4,
                 horizon_s: float = 2.0, idle_s: float = 30.0, half_life_s: float = 5.0,
                 tick_s: float = 0.05, clock=time.monotonic) -> None:
        self.engine = engine
        self.max_keys, self.min_keys = max_keys, min_keys
        self.horizon_s, self.idle_s, self.half_life_s = horizon_s, idle_s, half_life_s
        self.tick_s = tick_s
        self._clock = clock
        self._buffers: dict[Pair, _Buffer] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self.hits = 0
        self.misses = 0

    # -- the relayer's side ------------------------------------------------------------------
    def observe(self, master: str, slaves: list[str], dst_node: str, n: int, size: int) -> None:
        """Record that ``master`` asked for ``n`` keys of ``size`` bytes for ``slaves``."""
        if len(slaves) != 1:
            return
        now = self._clock()
        with self._lock:
            buf = self._buffers.setdefault((master, slaves[0], dst_node, size), _Buffer())
            if buf.last_demand:
                dt = max(now - buf.last_demand, 1e-3)
                alpha = 1 - 0.5 ** (dt / self.half_life_s)
                buf.rate = (1 - alpha) * buf.rate + alpha * (n / dt)
            buf.last_demand = now
            buf.requests += 1
        self._wake.set()

    def take(self, master: str, slaves: list[str], dst_node: str,
             keys: list[tuple[str, bytes]]) -> RelayResult | None:
        """A RelayResult whose ``keys`` are buffered ones in place of ``keys``; None if it cannot."""
        if len(slaves) != 1 or not keys:
            return None
        size = len(keys[0][1])
        pair = (master, slaves[0], dst_node, size)
        with self._lock:
            buf = self._buffers.get(pair)
            if buf is None or len(buf.keys) < len(keys):
                self.misses += 1
                return None
            got = [buf.keys.popleft() for _ in keys]
            self.hits += 1
        self.observe(master, slaves, dst_node, len(keys), size)
        return RelayResult(paths=got[0][2], security_level=got[0][3],
                           keys=[(kid, material) for kid, material, *_ in got])

    def count(self, dst_node: str, key_size_bits: int, master: str | None = None,
              slave: str | None = None) -> int:
        """Buffered keys toward ``dst_node`` of that size (of one pair if given; for ETSI 014 status)."""
        with self._lock:
            return sum(len(b.keys) for (m, s, d, size), b in self._buffers.items()
                       if d == dst_node and size * 8 == key_size_bits
                       and master in (None, m) and slave in (None, s))

    # -- the refill loop -----------------------------------------------------------------------
    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="prerelay", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread:
            self._thread.join(timeout=5)
        with self._lock:
            pairs = list(self._buffers.items())
            self._buffers.clear()
        for _pair, buf in pairs:
            self._void(buf.keys, "vKMS stopping")

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self.tick_s)
            self._wake.clear()
            try:
                self.refill_once()
            except Exception:  # keep the loop alive; direct relays still work
                log.exception("pre-relay refill failed")

    def refill_once(self) -> int:
        """One pass: void idle buffers, top up active ones; returns keys relayed."""
        now = self._clock()
        todo: list[tuple[Pair, int]] = []
        idle: list[deque] = []
        with self._lock:
            for pair, buf in list(self._buffers.items()):
                if now - buf.last_demand > self.idle_s:
                    idle.append(buf.keys)
                    del self._buffers[pair]
                    continue
                want = target_size(buf.rate, buf.requests, horizon_s=self.horizon_s,
                                   min_keys=self.min_keys, max_keys=self.max_keys)
                # refill in one bulk relay once half is used, not a relay per key taken:
                # far fewer link-store writes on the nodes of the path
                if len(buf.keys) <= want // 2 and len(buf.keys) < want:
                    todo.append((pair, want - len(buf.keys)))
        for keys in idle:
            self._void(keys, "pair idle")
        relayed = 0
        for (master, slave, dst, size), n in todo:
            batch = [(kid, os.urandom(size)) for kid in new_key_ids(n)]
            try:
                out, plan, level = self.engine.relay_keys(
                    master_sae=master, slave_saes=[slave], dst_node=dst, keys=batch,
                    level_for=lambda policy: "qkd" if policy == "qkd" else policy)
            except RelayFailure as exc:
                log.info("pre-relay %s->%s not refilled: %s", master, slave, exc.message)
                continue
            paths = plan.hops()
            entries = [(k.key_id, k.key, paths, level, plan.paths) for k in out]
            with self._lock:
                buf = self._buffers.get((master, slave, dst, size))
                if buf is not None:
                    buf.keys.extend(entries)
            if buf is None:  # the pair went idle (or we are stopping) meanwhile
                self._void(entries, "pair idle")
            relayed += len(out)
        return relayed

    def _void(self, entries, reason: str) -> None:
        for kid, _material, _paths, _level, path_msgs in entries:
            self.engine.void(path_msgs, kid, reason)
