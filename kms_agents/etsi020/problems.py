"""RFC 9457 problem details as GS QKD 020 shapes them (``type`` under ETSI's base, ``details`` of strings)."""
from __future__ import annotations

from typing import Any

BASE = "https://qkd.etsi.org/gs020-interop-kms/"
# The official document declares every problem body as application/json (not application/problem+json).
MEDIA_TYPE = "application/json"

TITLES = {
    "missing-parameters": "missing parameters",
    "invalid-parameter": "invalid parameter",
    "key-routing-error": "key routing error",
    "void-request-not-understood": "void request not understood",
    "no-key-ids-or-confirmation": "no key IDs or confirmation",
    "ack-not-understood": "ack not understood",
    "key-not-present": "key not present",
    "unauthorized": "unauthorized",
    "timeout": "timeout",
    "server-side-general-error": "server side general error",
    "insufficient-key-material": "insufficient key material",
    "unsupported-mandatory-extension": "unsupported mandatory extension",
}


class Problem(Exception):
    """A refusal with its HTTP status and problem-details body (``kind``: a type under :data:`BASE`)."""

    def __init__(self, status: int, kind: str, details: dict[str, str] | None = None) -> None:
        if kind not in TITLES:
            raise ValueError(f"unknown problem type {kind!r}")
        self.status, self.kind = status, kind
        self.details = {str(k): str(v)[:4096] for k, v in (details or {}).items()}
        super().__init__(f"{status} {kind}: {self.details}")

    def body(self) -> dict[str, Any]:
        out: dict[str, Any] = {"type": BASE + self.kind, "status": self.status, "title": TITLES[self.kind]}
        if self.details:
            out["details"] = dict(list(self.details.items())[:1024])
        return out


def bad(kind: str, **details: str) -> Problem:
    return Problem(400, kind, details)


def unauthorized(reason: str) -> Problem:
    return Problem(401, "unauthorized", {"unauthorized": reason})


def unavailable(kind: str = "server-side-general-error", **details: str) -> Problem:
    return Problem(503, kind, details or {"server_side_general_error": "the KME cannot serve this request now"})


def timeout(reason: str = "the complete request did not arrive in time") -> Problem:
    return Problem(408, "timeout", {"timeout": reason})
