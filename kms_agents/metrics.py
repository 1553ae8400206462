"""The agent's metrics: refusals, API requests, deliveries, relays, key store levels; plain HTTP /metrics.

Every check that turns a caller away goes through :func:`refused`, which logs
``event=refused server=SERVER reason=REASON key=value ... msg='...'`` and counts
``qusec_agent_refusals_total{server, reason}``. Every answered API call goes through
:func:`requests` (ETSI 014 through :func:`etsi014_answered`), every relay through
:func:`relayed` and :func:`hop_latency`; the key store and link levels are read at scrape
time by :class:`StoreLevels` from the sources the agent registers (:func:`watch_levels`).

Labels are fixed vocabularies (server, API, endpoint, status and reason codes), except
the link ids and SAE ids of the level gauges, which are the node's own configuration: no
key id, path id or key material is ever a label or a value, so ``/metrics`` can be scraped
without an operator certificate (it stays on the management address). The log line may
name the caller.
"""
from __future__ import annotations

import logging
import re
import threading
import urllib.parse
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, start_http_server
from prometheus_client.core import GaugeMetricFamily, Metric

REGISTRY = CollectorRegistry()
REFUSALS = Counter("qusec_agent_refusals", "Calls an agent server refused, by server and reason",
                   ["server", "reason"], registry=REGISTRY)
REQUESTS = Counter("qusec_agent_requests", "API requests answered, by API, endpoint and status "
                   "(ETSI 014: HTTP status; ETSI 004: gRPC status code)",
                   ["api", "endpoint", "status"], registry=REGISTRY)
KEYS_DELIVERED = Counter("qusec_agent_keys_delivered", "Keys handed to SAEs, by API and endpoint",
                         ["api", "endpoint"], registry=REGISTRY)
KEY_BITS_DELIVERED = Counter("qusec_agent_key_bits_delivered", "Bits of key handed to SAEs, by API and endpoint",
                             ["api", "endpoint"], registry=REGISTRY)
ETSI004_ANSWERS = Counter("qusec_agent_etsi004_answers", "ETSI 004 answers (gRPC OK) by method and the "
                          "ETSI 004 status they carry", ["endpoint", "status"], registry=REGISTRY)
RELAYS = Counter("qusec_agent_relays", "Key relays by role (source: relays this node started for its SAEs; "
                 "hop: relay messages received from a neighbour) and result (ok or the failure reason)",
                 ["role", "result"], registry=REGISTRY)
# 0.5 ms (a loopback hop) .. 10 s (the default hop timeout)
HOP_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
HOP_SECONDS = Histogram("qusec_agent_relay_hop_seconds", "Seconds from sending a relay message to the next "
                        "hop to its ack (the chain behind that hop included)", buckets=HOP_BUCKETS,
                        registry=REGISTRY)

# the fixed vocabularies of the labels above
APIS = ("etsi014", "etsi004", "etsi020")
ETSI014_ENDPOINTS = ("status", "enc_keys", "dec_keys", "other")
ETSI014_PREFIX = "/api/v1/keys/"
RELAY_ROLES = ("source", "hop")
# "ok", or the failure's kms_agents.relay.messages.Reason member name, lower case
RELAY_RESULTS = ("ok", "invalid", "denied", "duplicate", "not_authentic", "unmet", "no_key", "unreachable",
                 "timeout", "unknown_node", "unsupported", "internal", "failed")
_TOKEN = re.compile(r"^[A-Za-z0-9_]{1,40}$")

log = logging.getLogger(__name__)


def refused(server: str, reason: str, message: str, *, logger: logging.Logger | None = None,
            level: int = logging.WARNING, **fields: Any) -> None:
    """Log and count one refusal (``fields``: who and what, e.g. caller="node:B" path="p1")."""
    REFUSALS.labels(server, reason).inc()
    detail = "".join(f" {k}={v}" for k, v in fields.items() if v not in (None, ""))
    (logger or log).log(level, "event=refused server=%s reason=%s%s msg=%r", server, reason, detail, message)


def refusals(server: str, reason: str) -> float:
    """How many refusals were counted (in this process) for ``server`` and ``reason``."""
    return REGISTRY.get_sample_value("qusec_agent_refusals_total", {"server": server, "reason": reason}) or 0.0


# -- API requests ----------------------------------------------------------------------------
def requests(api: str, endpoint: str, status: str | int, *, keys: int = 0, key_bits: int = 0) -> None:
    """Count one answered request of ``api`` (ETSI 014, 004, 020): its ``endpoint`` (a name from the
    API's fixed list: never a path with ids in it) and ``status`` (HTTP status or gRPC code name);
    ``keys`` / ``key_bits``: what the answer handed to the SAE."""
    status = str(status)
    if api not in APIS or not _TOKEN.match(endpoint) or not _TOKEN.match(status):
        raise ValueError(f"metrics: request labels must be fixed tokens, got {api!r} {endpoint!r} {status!r}")
    REQUESTS.labels(api, endpoint, status).inc()
    if keys:
        KEYS_DELIVERED.labels(api, endpoint).inc(keys)
        KEY_BITS_DELIVERED.labels(api, endpoint).inc(key_bits)


def etsi014_endpoint(path: str) -> str:
    """The endpoint label of an ETSI 014 request path: status, enc_keys, dec_keys, or other."""
    path = urllib.parse.urlsplit(path or "").path
    if path.startswith(ETSI014_PREFIX):
        segs = path[len(ETSI014_PREFIX):].split("/")
        if len(segs) == 2 and segs[0] and segs[1] in ETSI014_ENDPOINTS[:3]:
            return segs[1]
    return "other"


def b64_bits(text: str) -> int:
    """Bits of data a base64 text holds (from its length: the key is never decoded here)."""
    return (len(text) // 4 * 3 - text[-2:].count("=")) * 8 if text else 0


def etsi014_answered(path: str, status: int, body: Any) -> None:
    """Count one ETSI 014 answer (the one call of the HTTP server: ``path`` as requested, the status
    sent, the JSON body sent); the keys of a 200 Get key answer count as delivered."""
    endpoint = etsi014_endpoint(path)
    keys = body.get("keys") if status == 200 and isinstance(body, dict) else None
    delivered = [k.get("key", "") for k in keys if isinstance(k, dict)] if isinstance(keys, list) else []
    requests("etsi014", endpoint, status, keys=len(delivered),
             key_bits=sum(b64_bits(k) for k in delivered if isinstance(k, str)))


def etsi004_answered(method: str, status: str) -> None:
    """Count the ETSI 004 status (the proto's ``Status`` name, e.g. INSUFFICIENT_KEY) of an answer."""
    if not _TOKEN.match(method) or not _TOKEN.match(status):
        raise ValueError(f"metrics: ETSI 004 labels must be fixed tokens, got {method!r} {status!r}")
    ETSI004_ANSWERS.labels(method, status).inc()


def grpc_status(code: Any) -> str:
    """The status label of a gRPC call: the StatusCode's name ("OK" for None); an int code by value."""
    if code is None:
        return "OK"
    name = getattr(code, "name", None)
    if name:
        return str(name)
    import grpc
    for c in grpc.StatusCode:
        if c.value[0] == code:
            return c.name
    return "UNKNOWN"


# -- relay -----------------------------------------------------------------------------------
def relay_result(reason: Any | None) -> str:
    """The result label of a relay: "ok" (None) or the failure's reason in the fixed vocabulary
    (a :class:`~kms_agents.relay.messages.Reason`; anything else is "failed")."""
    if reason is None:
        return "ok"
    name = str(getattr(reason, "name", "")).lower()
    return name if name in RELAY_RESULTS[1:] else "failed"


def relayed(role: str, reason: Any | None = None) -> None:
    """Count one relay: ``role`` source or hop, ``reason`` None on success."""
    if role not in RELAY_ROLES:
        raise ValueError(f"metrics: relay role must be one of {RELAY_ROLES}, got {role!r}")
    RELAYS.labels(role, relay_result(reason)).inc()


def hop_latency(seconds: float) -> None:
    """Observe one relay hop, send to ack."""
    HOP_SECONDS.observe(seconds)


# -- key store levels (read at scrape time) ------------------------------------------------
@dataclass
class LinkLevel:
    """One QKD link end: link key ready here and the most it holds (None: its source did not answer)."""
    link_id: str
    available_bits: int | None
    capacity_bits: int | None


@dataclass
class Levels:
    """What one agent holds now: its links and the end-to-end keys waiting per (master, slave) SAE pair."""
    links: list[LinkLevel] = field(default_factory=list)
    pending: dict[tuple[str, str], tuple[int, int]] = field(default_factory=dict)   # -> (keys, bits)


def level_families(levels: Iterable[Levels]) -> list[Metric]:
    """The gauge families of the agents' levels (pure: a test builds Levels by hand)."""
    up = GaugeMetricFamily("qusec_agent_link_up", "1 if the link's key source answered the scrape, else 0",
                           labels=["link"])
    avail = GaugeMetricFamily("qusec_agent_link_key_available_bits", "Bits of link key ready at this end",
                              labels=["link"])
    cap = GaugeMetricFamily("qusec_agent_link_key_capacity_bits", "Most bits of link key this end holds ready",
                            labels=["link"])
    keys = GaugeMetricFamily("qusec_agent_pending_keys", "End-to-end keys stored here waiting for the slave SAE "
                             "to fetch them, by master and slave SAE", labels=["master_sae", "slave_sae"])
    bits = GaugeMetricFamily("qusec_agent_pending_key_bits", "Bits of the end-to-end keys waiting here, by "
                             "master and slave SAE", labels=["master_sae", "slave_sae"])
    for lv in levels:
        for lk in lv.links:
            up.add_metric([lk.link_id], 0 if lk.available_bits is None else 1)
            if lk.available_bits is not None:
                avail.add_metric([lk.link_id], lk.available_bits)
            if lk.capacity_bits is not None:
                cap.add_metric([lk.link_id], lk.capacity_bits)
        for (master, slave), (n, b) in sorted(lv.pending.items()):
            keys.add_metric([master, slave], n)
            bits.add_metric([master, slave], b)
    return [up, avail, cap, keys, bits]


class StoreLevels:
    """A collector reading each watched agent's :class:`Levels` at scrape time (no counting in the
    key paths). A source that fails is logged and left out of that scrape."""

    def __init__(self) -> None:
        self._sources: list[Callable[[], Levels]] = []
        self._lock = threading.Lock()

    def add(self, source: Callable[[], Levels]) -> None:
        with self._lock:
            self._sources.append(source)

    def remove(self, source: Callable[[], Levels]) -> None:
        with self._lock:
            if source in self._sources:
                self._sources.remove(source)

    def describe(self) -> list[Metric]:
        return level_families(())

    def collect(self) -> Iterator[Metric]:
        with self._lock:
            sources = list(self._sources)
        levels = []
        for source in sources:
            try:
                levels.append(source())
            except Exception:  # noqa: BLE001 - a scrape must not fail for one store
                log.warning("key store levels not read for /metrics", exc_info=True)
        yield from level_families(levels)


LEVELS = StoreLevels()
REGISTRY.register(LEVELS)


def watch_levels(source: Callable[[], Levels]) -> None:
    """Serve ``source()`` (an agent's levels) on /metrics from now on."""
    LEVELS.add(source)


def unwatch_levels(source: Callable[[], Levels]) -> None:
    LEVELS.remove(source)


def serve(listen: str) -> tuple[Any, int]:
    """Serve /metrics over plain HTTP on ``host:port`` (port 0: any); returns (server, port)."""
    host, _, port = listen.rpartition(":")
    httpd, _thread = start_http_server(int(port), addr=host.strip("[]"), registry=REGISTRY)
    return httpd, httpd.server_address[1]
