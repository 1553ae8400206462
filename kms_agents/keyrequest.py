"""ETSI 014 key requests (no sockets): the body checks, the spec's error messages and the qusec_ extensions.

A request the KME refuses raises :class:`KeyServiceError`, which the HTTP and gRPC
front ends turn into 400/401/503 with the ETSI error body.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from kms_agents.config import Limits

MSG_SIZE_MULTIPLE = "size shall be a multiple of 8"
MSG_EXT_UNSUPPORTED = "not all extension_mandatory parameters are supported"
MSG_EXT_UNMET = "not all extension_mandatory request options could be met"
MSG_EXT_OPTIONAL = "not all extension_optional request options handled"
MSG_KEYS_NOT_FOUND = "one or more keys specified are not found on KME"

SECURITY_LEVELS = ("qkd", "hybrid", "pqc")   # strongest first; a request names the weakest it accepts
EXTENSIONS = {"qusec_route_type": ("direct", "indirect", "local"),
              "qusec_security_level": SECURITY_LEVELS,
              "qusec_max_hops": None}      # integer >= 0

ENC_PARAMETERS = ("number", "size", "additional_slave_SAE_IDs", "extension_mandatory", "extension_optional")


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
    """A 400 with the ETSI message and, if given, one detail object."""
    return KeyServiceError(400, message, [detail] if detail else None)


@dataclass
class EncRequest:
    """A checked Get key request."""
    number: int
    size: int
    additional_slaves: list[str] = field(default_factory=list)
    mandatory: dict[str, Any] = field(default_factory=dict)
    optional: dict[str, Any] = field(default_factory=dict)

    @property
    def security_level(self) -> str | None:
        """The weakest security level the SAE accepts (mandatory before optional), None if unnamed."""
        return self.mandatory.get("qusec_security_level", self.optional.get("qusec_security_level"))


def parse_enc_request(body: Any, lim: Limits) -> EncRequest:
    """Check a Get key request body (None = all defaults); 400 with the spec's messages."""
    if body is None:
        body = {}
    if not isinstance(body, dict):
        raise bad("request body must be a JSON object")
    for k in body:
        if k not in ENC_PARAMETERS:
            raise bad(f"unknown request parameter {k!r} (known: {', '.join(ENC_PARAMETERS)})", parameter=k)
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
    return EncRequest(number, size, list(extra), _extensions(body, "extension_mandatory"),
                      _extensions(body, "extension_optional"))


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


def extensions_met(ext: dict[str, Any], route: str, n_dst: int) -> bool:
    """Whether known extensions ``ext`` hold for keys made by ``route`` for ``n_dst`` nodes."""
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


def check_extensions(req: EncRequest, route: str, n_dst: int) -> dict[str, Any]:
    """Refuse unsupported or unmet mandatory extensions (400); the container extension for optional ones.

    Returns ``{}`` when every optional extension is known and met, otherwise the
    ``key_container_extension`` saying which were not handled (the request still succeeds).
    """
    unsupported = [k for k in req.mandatory if k not in EXTENSIONS]
    if unsupported:
        raise bad(MSG_EXT_UNSUPPORTED, unsupported=unsupported)
    if not extensions_met(req.mandatory, route, n_dst):
        raise bad(MSG_EXT_UNMET, requested=req.mandatory, route_type=route)
    unhandled = [k for k in req.optional if k not in EXTENSIONS]
    if unhandled or not extensions_met({k: v for k, v in req.optional.items() if k in EXTENSIONS}, route, n_dst):
        return {"message": MSG_EXT_OPTIONAL, "qusec_unhandled": unhandled}
    return {}


def parse_dec_request(body: Any, lim: Limits) -> list[str]:
    """Check a Get key with key IDs request body; returns the key IDs (400 with the spec's messages)."""
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
    if len(ids) > lim.max_key_per_request:
        raise bad(f"at most max_key_per_request ({lim.max_key_per_request}) key IDs per request",
                  parameter="key_IDs")
    if len(set(ids)) != len(ids):
        raise bad("key_IDs contains duplicates", parameter="key_IDs")
    return ids
