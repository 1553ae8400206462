"""GS QKD 020 containers as dataclasses, and every check of the spec's constraints (no sockets).

A body is parsed into a request dataclass or refused with a :class:`~.problems.Problem`
(400) that names the parameter; the constraints are the official document's schemas and
its prose rules the schemas leave out (SAE ID characters, ``https://`` callbacks, base64
values, one key ID once per request). Bounds of our own (keys per request, key size,
targets) are passed in as :class:`Bounds`.
"""
from __future__ import annotations

import base64
import binascii
import json
import re
import urllib.parse
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from kms_agents.etsi020.problems import Problem, bad

VERSION = "v1"
CAPABILITY_SYNC = "synchronous_mode"
ACK_STATUSES = ("relayed", "failed", "voided", "failed to void", "key not present")
MAX_ACK_CONTAINERS = 1024        # per ext_keys/ack call
MAX_KEY_IDS_PER_CONTAINER = 1024
MAX_SAE_ID = 64
MAX_CALLBACK_URL = 1024
MAX_MESSAGE = 4096
MAX_EXTENSION_PROPERTIES = 1024
RESERVED_PEN = 13019             # ETSI's own enterprise number: never for extensions
# The extensions QuSeC sends are named under IANA's documentation PEN (RFC 5612: assigned to no
# organisation, the one the spec's own examples use) until the project registers a PEN of its own
QUSEC_PEN = 32473
EXT_DOMAINS = f"E{QUSEC_PEN}_qusec_domains"   # ack container: the domains the keys went on through
MAX_DOMAINS = 16                 # entries of EXT_DOMAINS taken from a peer
_DOMAIN_FIELDS = {"domain": str, "crossing": str, "entry": str, "exit": str, "hops": int, "level": str}

_UUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
_SAE_ID = re.compile(r"^(?:[A-Za-z0-9\-._~:/?#\[\]@!$&'()*+,;=]|%[0-9A-Fa-f]{2})+$")
_EXTENSION_NAME = re.compile(r"^E([1-9][0-9]*)_.+$")


@dataclass(frozen=True)
class Bounds:
    """What one request may carry here (the spec sets no maximum of keys, key size or targets)."""
    max_keys: int = 1024
    max_key_bytes: int = 1024
    max_targets: int = 8


@dataclass(frozen=True)
class ExtKey:
    key_id: str          # lower-case canonical UUID
    material: bytes
    extension: dict[str, Any] | None = None

    def __repr__(self) -> str:   # never the material
        return f"ExtKey({self.key_id}, {len(self.material)} bytes)"


@dataclass(frozen=True)
class ExtKeyRequest:
    keys: list[ExtKey]
    initiator: str
    targets: list[str]
    callback_url: str | None = None            # None: synchronous mode
    extension_mandatory: dict[str, Any] | None = None
    extension_optional: dict[str, Any] | None = None


@dataclass(frozen=True)
class AckContainer:
    key_ids: list[str]
    status: str
    initiator: str
    targets: list[str]
    message: str | None = None
    extension: dict[str, Any] | None = None


@dataclass(frozen=True)
class VoidRequest:
    key_ids: list[str]
    initiator: str
    targets: list[str]
    callback_url: str | None = None
    all_confirmation: bool = False
    extension: dict[str, Any] | None = None


# -- checks of single values -------------------------------------------------------------------
def _object(body: Any, kind: str, what: str) -> dict:
    if not isinstance(body, dict):
        raise bad(kind, malformed_property=f"the body must be a JSON object ({what})")
    return body


def _require(body: dict, names: Iterable[str], kind: str) -> None:
    missing = [n for n in names if n not in body]
    if missing:
        raise bad(kind, missing_parameters="missing: " + ", ".join(missing))


def key_id(value: Any, where: str, kind: str = "invalid-parameter") -> str:
    if not isinstance(value, str) or not _UUID.match(value):
        raise bad(kind, malformed_property=f"{where} must be a UUID (RFC 9562)")
    return value.lower()


def sae_id(value: Any, where: str, kind: str = "invalid-parameter") -> str:
    if not isinstance(value, str) or not 1 <= len(value) <= MAX_SAE_ID:
        raise bad(kind, malformed_property=f"{where} must be a string of 1 to {MAX_SAE_ID} characters")
    if not _SAE_ID.match(value):
        raise bad(kind, invalid_character=f"{where} may hold only URI characters (RFC 3986)")
    return value


def sae_ids(value: Any, where: str, max_targets: int, kind: str = "invalid-parameter") -> list[str]:
    if not isinstance(value, list) or not value:
        raise bad(kind, malformed_property=f"{where} must be a non-empty array of SAE IDs")
    if len(value) > max_targets:
        raise Problem(503, "key-routing-error",
                      {"no_route_multiple_targets": f"this KME relays to at most {max_targets} targets"})
    out = [sae_id(v, f"{where}[{i}]", kind) for i, v in enumerate(value)]
    if len(set(out)) != len(out):
        raise bad(kind, malformed_property=f"{where} names an SAE twice")
    return out


def callback_url(value: Any, kind: str = "invalid-parameter") -> str:
    if not isinstance(value, str) or not value or len(value) > MAX_CALLBACK_URL:
        raise bad(kind, malformed_property=f"ack_callback_url must be a URL of at most {MAX_CALLBACK_URL} characters")
    parsed = urllib.parse.urlsplit(value)
    try:
        parsed.port
    except ValueError:
        raise bad(kind, malformed_property="ack_callback_url has an invalid port") from None
    if parsed.scheme != "https" or not parsed.hostname or any(c.isspace() for c in value):
        raise bad(kind, malformed_property="ack_callback_url must be an https:// URL")
    return value


def extension_names(obj: Any, where: str, kind: str = "invalid-parameter") -> dict[str, Any]:
    """An extension object: 1..1024 properties, each named ``E<IANA PEN>_...`` (PEN 13019 is ETSI's)."""
    if not isinstance(obj, dict) or not 1 <= len(obj) <= MAX_EXTENSION_PROPERTIES:
        raise bad(kind, malformed_property=f"{where} must be an object of 1 to {MAX_EXTENSION_PROPERTIES} properties")
    for name in obj:
        m = _EXTENSION_NAME.match(name)
        if not m:
            raise bad(kind, malformed_property=f"{where}: extension name {name[:64]!r} must be E<IANA PEN>_NAME")
        if int(m.group(1)) == RESERVED_PEN:
            raise bad(kind, malformed_property=f"{where}: PEN {RESERVED_PEN} is reserved by ETSI")
    return obj


def _optional_extension(body: dict, name: str, where: str, kind: str) -> dict[str, Any] | None:
    return extension_names(body[name], where, kind) if name in body else None


def key_value(value: Any, where: str, max_bytes: int) -> bytes:
    """A key's base64 value (RFC 4648 standard alphabet, ``=`` padding optional)."""
    if not isinstance(value, str) or not value:
        raise bad("invalid-parameter", malformed_property=f"{where} must be a non-empty base64 string")
    if len(value) > (max_bytes + 2) // 3 * 4:
        raise bad("invalid-parameter", malformed_property=f"{where}: keys of at most {max_bytes} bytes")
    padded = value + "=" * (-len(value) % 4) if "=" not in value else value
    try:
        material = base64.b64decode(padded, validate=True)
    except (binascii.Error, ValueError):
        raise bad("invalid-parameter", malformed_property=f"{where} is not base64 (RFC 4648)") from None
    if not material or len(material) > max_bytes:
        raise bad("invalid-parameter", malformed_property=f"{where}: keys of 1 to {max_bytes} bytes")
    return material


def encode_key(material: bytes) -> str:
    return base64.b64encode(material).decode()


# -- requests ---------------------------------------------------------------------------------
def parse_ext_keys(body: Any, bounds: Bounds) -> ExtKeyRequest:
    """A checked ``ext_key_container``; raises :class:`Problem` (400, or 503 for too many targets)."""
    body = _object(body, "missing-parameters", "ext_key_container")
    _require(body, ("keys", "initiator_sae_id", "target_sae_ids"), "missing-parameters")
    initiator = sae_id(body["initiator_sae_id"], "initiator_sae_id")
    targets = sae_ids(body["target_sae_ids"], "target_sae_ids", bounds.max_targets)
    if initiator in targets:
        raise bad("key-routing-error", invalid_routing="the initiator SAE is also a target")
    keys_in = body["keys"]
    if not isinstance(keys_in, list) or not keys_in:
        raise bad("invalid-parameter", malformed_property="keys must be a non-empty array")
    if len(keys_in) > bounds.max_keys:
        raise bad("invalid-parameter", malformed_property=f"at most {bounds.max_keys} keys per request here")
    keys, seen = [], set()
    for i, k in enumerate(keys_in):
        if not isinstance(k, dict):
            raise bad("invalid-parameter", malformed_property=f"keys[{i}] must be an object")
        _require(k, ("key_id", "value"), "missing-parameters")
        kid = key_id(k["key_id"], f"keys[{i}].key_id")
        if kid in seen:
            raise bad("invalid-parameter", malformed_property=f"keys[{i}].key_id appears twice")
        seen.add(kid)
        keys.append(ExtKey(kid, key_value(k["value"], f"keys[{i}].value", bounds.max_key_bytes),
                           _optional_extension(k, "extension", f"keys[{i}].extension", "invalid-parameter")))
    url = callback_url(body["ack_callback_url"]) if "ack_callback_url" in body else None
    return ExtKeyRequest(keys, initiator, targets, url,
                         _optional_extension(body, "extension_mandatory", "extension_mandatory", "invalid-parameter"),
                         _optional_extension(body, "extension_optional", "extension_optional", "invalid-parameter"))


def parse_acks(body: Any) -> list[AckContainer]:
    """Checked ``ack_containers`` (1..1024 containers of 1..1024 key IDs); raises :class:`Problem` 400."""
    kind = "ack-not-understood"
    if not isinstance(body, list) or not body:
        raise bad(kind, ack_not_understood="the body must be a non-empty array of ack containers")
    if len(body) > MAX_ACK_CONTAINERS:
        raise bad(kind, ack_not_understood=f"at most {MAX_ACK_CONTAINERS} ack containers per call")
    out = []
    for i, c in enumerate(body):
        if not isinstance(c, dict):
            raise bad(kind, ack_not_understood=f"[{i}] must be an object")
        _require(c, ("key_id_container", "ack_status", "initiator_sae_id", "target_sae_ids"), kind)
        ids_in = c["key_id_container"]
        if not isinstance(ids_in, list) or not ids_in or len(ids_in) > MAX_KEY_IDS_PER_CONTAINER:
            raise bad(kind, ack_not_understood=f"[{i}].key_id_container must hold 1 to "
                                               f"{MAX_KEY_IDS_PER_CONTAINER} key IDs")
        ids = []
        for j, item in enumerate(ids_in):
            if not isinstance(item, dict) or "key_id" not in item:
                raise bad(kind, ack_not_understood=f"[{i}].key_id_container[{j}] must be an object with key_id")
            ids.append(key_id(item["key_id"], f"[{i}].key_id_container[{j}].key_id", kind))
            if "extension" in item:
                extension_names(item["extension"], f"[{i}].key_id_container[{j}].extension", kind)
        status = c["ack_status"]
        if status not in ACK_STATUSES:
            raise bad(kind, ack_not_understood=f"[{i}].ack_status must be one of {', '.join(ACK_STATUSES)}")
        message = c.get("message")
        if message is not None and (not isinstance(message, str) or len(message) > MAX_MESSAGE):
            raise bad(kind, ack_not_understood=f"[{i}].message must be a string of at most {MAX_MESSAGE} characters")
        out.append(AckContainer(ids, status, sae_id(c["initiator_sae_id"], f"[{i}].initiator_sae_id", kind),
                                sae_ids(c["target_sae_ids"], f"[{i}].target_sae_ids", 1 << 30, kind), message,
                                _optional_extension(c, "extension", f"[{i}].extension", kind)))
    seen = [k for c in out for k in c.key_ids]
    if len(set(seen)) != len(seen):
        raise bad(kind, ack_not_understood="a key ID is acknowledged twice in one call")
    return out


def parse_void(body: Any, bounds: Bounds) -> VoidRequest:
    """A checked ``void_container``; an empty ``key_ids`` needs ``all_confirmation: true`` (else 400)."""
    kind = "void-request-not-understood"
    body = _object(body, kind, "void_container")
    _require(body, ("key_ids", "initiator_sae_id", "target_sae_ids"), kind)
    ids_in = body["key_ids"]
    if not isinstance(ids_in, list):
        raise bad(kind, void_request_not_understood="key_ids must be an array of key IDs")
    if len(ids_in) > bounds.max_keys:
        raise bad(kind, void_request_not_understood=f"at most {bounds.max_keys} key IDs per void here")
    ids = [key_id(v, f"key_ids[{i}]", kind) for i, v in enumerate(ids_in)]
    if len(set(ids)) != len(ids):
        raise bad(kind, void_request_not_understood="a key ID appears twice")
    confirm = body.get("all_confirmation", False)
    if not isinstance(confirm, bool):
        raise bad(kind, void_request_not_understood="all_confirmation must be true or false")
    if not ids and confirm is not True:
        raise bad("no-key-ids-or-confirmation",
                  no_key_ids_or_confirmation="an empty key_ids voids every key between the SAEs "
                                             "and needs all_confirmation: true")
    url = callback_url(body["ack_callback_url"], kind) if "ack_callback_url" in body else None
    return VoidRequest(ids, sae_id(body["initiator_sae_id"], "initiator_sae_id", kind),
                       sae_ids(body["target_sae_ids"], "target_sae_ids", 1 << 30, kind), url, confirm,
                       _optional_extension(body, "extension", "extension", kind))


# -- bodies we send ------------------------------------------------------------------------------
def version_container(sync: bool) -> dict[str, Any]:
    return {"versions": [VERSION], "capabilities": [CAPABILITY_SYNC] if sync else []}


def ext_key_body(keys: list[ExtKey], initiator: str, targets: list[str], callback: str | None) -> dict[str, Any]:
    out: dict[str, Any] = {"keys": [{"key_id": k.key_id, "value": encode_key(k.material),
                                     **({"extension": k.extension} if k.extension else {})} for k in keys],
                           "initiator_sae_id": initiator, "target_sae_ids": list(targets)}
    if callback:
        out["ack_callback_url"] = callback
    return out


def void_body(key_ids: list[str], initiator: str, targets: list[str], callback: str | None,
              all_confirmation: bool = False) -> dict[str, Any]:
    out: dict[str, Any] = {"key_ids": list(key_ids), "initiator_sae_id": initiator, "target_sae_ids": list(targets)}
    if callback:
        out["ack_callback_url"] = callback
    if all_confirmation:
        out["all_confirmation"] = True
    return out


@dataclass(frozen=True)
class Outcome:
    """What became of one key: its ack status, the SAEs it was for, and the ack container's
    ``extension`` (e.g. :data:`EXT_DOMAINS`)."""
    key_id: str
    status: str
    initiator: str
    targets: tuple[str, ...]
    message: str | None = None
    extension: dict[str, Any] | None = field(default=None, compare=False)


def ack_calls(outcomes: Iterable[Outcome]) -> list[list[dict[str, Any]]]:
    """``ack_containers`` bodies for outcomes: one container per (status, initiator, targets, message)
    of at most 1024 key IDs, at most 1024 containers per call."""
    groups: dict[tuple, list[str]] = {}
    for o in outcomes:
        ext = json.dumps(o.extension, sort_keys=True) if o.extension else ""
        groups.setdefault((o.status, o.initiator, tuple(o.targets), o.message, ext), []).append(o.key_id)
    containers = []
    for (status, initiator, targets, message, ext), ids in groups.items():
        for i in range(0, len(ids), MAX_KEY_IDS_PER_CONTAINER):
            c: dict[str, Any] = {"key_id_container": [{"key_id": k} for k in ids[i:i + MAX_KEY_IDS_PER_CONTAINER]],
                                 "ack_status": status, "initiator_sae_id": initiator,
                                 "target_sae_ids": list(targets)}
            if message:
                c["message"] = message[:MAX_MESSAGE]
            if ext:
                c["extension"] = json.loads(ext)
            containers.append(c)
    return [containers[i:i + MAX_ACK_CONTAINERS] for i in range(0, len(containers), MAX_ACK_CONTAINERS)]


def outcomes_of(containers: list[AckContainer]) -> list[Outcome]:
    return [Outcome(k, c.status, c.initiator, tuple(c.targets), c.message, c.extension)
            for c in containers for k in c.key_ids]


def domains_of(extension: dict[str, Any] | None) -> list[dict[str, Any]] | None:
    """The :data:`EXT_DOMAINS` entries of an ack container's extension, checked: at most
    :data:`MAX_DOMAINS` objects of the known fields only (strings of 1 to 64 characters, ``hops``
    0 to 1024). None when absent; ValueError naming what is wrong."""
    if not extension or EXT_DOMAINS not in extension:
        return None
    value = extension[EXT_DOMAINS]
    if not isinstance(value, list) or len(value) > MAX_DOMAINS:
        raise ValueError(f"{EXT_DOMAINS} must be an array of at most {MAX_DOMAINS} objects")
    out = []
    for i, d in enumerate(value):
        if not isinstance(d, dict) or not set(d) <= set(_DOMAIN_FIELDS):
            raise ValueError(f"{EXT_DOMAINS}[{i}] must be an object of {', '.join(_DOMAIN_FIELDS)}")
        for name, v in d.items():
            kind = _DOMAIN_FIELDS[name]
            if kind is int and (not isinstance(v, int) or isinstance(v, bool) or not 0 <= v <= 1024):
                raise ValueError(f"{EXT_DOMAINS}[{i}].{name} must be an integer of 0 to 1024")
            if kind is str and (not isinstance(v, str) or not 1 <= len(v) <= MAX_SAE_ID):
                raise ValueError(f"{EXT_DOMAINS}[{i}].{name} must be a string of 1 to {MAX_SAE_ID} characters")
        out.append(dict(d))
    return out

