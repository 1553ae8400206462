"""The agent's refusals: one log line and one counter per refused call, served on plain HTTP /metrics.

Every check that turns a caller away goes through :func:`refused`, which logs
``event=refused server=SERVER reason=REASON key=value ... msg='...'`` and counts
``qusec_agent_refusals_total{server, reason}``. Labels are fixed vocabularies (server
names and reason codes): no SAE id, node id, path id or key id is ever a label, so
``/metrics`` can be scraped without an operator certificate. The log line may name the caller.
"""
from __future__ import annotations

import logging
from typing import Any

from prometheus_client import CollectorRegistry, Counter, start_http_server

REGISTRY = CollectorRegistry()
REFUSALS = Counter("qusec_agent_refusals", "Calls an agent server refused, by server and reason",
                   ["server", "reason"], registry=REGISTRY)

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


def serve(listen: str) -> tuple[Any, int]:
    """Serve /metrics over plain HTTP on ``host:port`` (port 0: any); returns (server, port)."""
    host, _, port = listen.rpartition(":")
    httpd, _thread = start_http_server(int(port), addr=host.strip("[]"), registry=REGISTRY)
    return httpd, httpd.server_address[1]
