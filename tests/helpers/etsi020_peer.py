"""An independent GS QKD 020 peer for tests, written from the spec: a client that drives a KME's
endpoints and a callback server that receives its acks (the standard library only: http.client,
http.server, ssl), and the official OpenAPI document's schemas to check every body against
(PyYAML, jsonschema). Nothing here imports kms_agents."""
from __future__ import annotations

import http.client
import json
import ssl
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from tests.helpers import ROOT

# The official ETSI document stays outside the repository, in shared/standards/ beside it (or
# beside a folder above it: a clean clone elsewhere on this machine), or where
# QUSEC_ETSI020_YAML says.
_NAME = "etsi-gs-qkd-020-v1.1.1.yaml"


def _official_yaml() -> Path:
    import os
    if os.environ.get("QUSEC_ETSI020_YAML"):
        return Path(os.environ["QUSEC_ETSI020_YAML"])
    places = [d / "shared" / "standards" / _NAME for d in ROOT.resolve().parents]
    places.append(Path("/work/shared/standards") / _NAME)
    return next((p for p in places if p.is_file()), places[0])


OFFICIAL_YAML = _official_yaml()


# -- the official schemas ----------------------------------------------------------------------
class Schemas:
    """Validators of the official document's component schemas (OpenAPI 3.1 = JSON Schema 2020-12)."""

    def __init__(self, path: Path = OFFICIAL_YAML) -> None:
        import yaml
        from jsonschema import Draft202012Validator, FormatChecker
        from referencing import Registry, Resource
        from referencing.jsonschema import DRAFT202012
        self.doc = yaml.safe_load(path.read_text())
        resource = Resource.from_contents(self.doc, default_specification=DRAFT202012)
        self._registry = Registry().with_resource("urn:etsi020", resource)
        self._validator, self._format = Draft202012Validator, FormatChecker()

    def validate(self, name: str, instance: Any) -> None:
        """Raise jsonschema.ValidationError unless ``instance`` is a valid ``name`` (a component schema)."""
        schema = {"$ref": f"urn:etsi020#/components/schemas/{name}"}
        self._validator(schema, registry=self._registry, format_checker=self._format).validate(instance)

    def response_schema(self, path: str, method: str, status: int) -> str | None:
        """The component schema the document names for an answer (None: no body)."""
        op = self.doc["paths"][path][method.lower()]
        resp = op["responses"][str(status)]
        if "$ref" in resp:
            resp = self.doc["components"]["responses"][resp["$ref"].rsplit("/", 1)[1]]
        content = resp.get("content")
        if not content:
            return None
        return content["application/json"]["schema"]["$ref"].rsplit("/", 1)[1]


# -- TLS ------------------------------------------------------------------------------------------
def client_context(ca: str, cert: str, key: str, *, tls12: bool = False) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_verify_locations(ca)
    ctx.load_cert_chain(cert, key)
    if tls12:
        ctx.minimum_version = ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    else:
        ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    return ctx


@dataclass
class Reply:
    status: int
    content_type: str
    body: Any


class SpecClient:
    """A GS QKD 020 client: one HTTPS connection per call, HTTP/1.1, JSON bodies."""

    def __init__(self, base_url: str, ctx: ssl.SSLContext, timeout: float = 15.0) -> None:
        from urllib.parse import urlsplit
        u = urlsplit(base_url)
        self.host, self.port, self.ctx, self.timeout = u.hostname, u.port, ctx, timeout

    def call(self, method: str, path: str, body: Any = None, *, raw: bytes | None = None,
             headers: dict | None = None) -> Reply:
        conn = http.client.HTTPSConnection(self.host, self.port, context=self.ctx, timeout=self.timeout)
        try:
            data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
            hdrs = {"Content-Type": "application/json; charset=UTF-8", **(headers or {})}
            conn.request(method, path, body=data, headers=hdrs)
            resp = conn.getresponse()
            payload = resp.read()
            return Reply(resp.status, resp.getheader("Content-Type") or "",
                         json.loads(payload) if payload else None)
        finally:
            conn.close()

    def versions(self) -> Reply:
        return self.call("GET", "/kmapi/versions")

    def ext_keys(self, body: Any) -> Reply:
        return self.call("POST", "/kmapi/v1/ext_keys", body)

    def ack(self, body: Any) -> Reply:
        return self.call("POST", "/kmapi/v1/ext_keys/ack", body)

    def void(self, body: Any) -> Reply:
        return self.call("POST", "/kmapi/v1/ext_keys/void", body)


# -- the peer's own server: acks (and voids) the KME sends us -----------------------------------------
@dataclass
class Received:
    path: str
    body: Any
    peer_cert: bytes


@dataclass
class CallbackServer:
    """HTTPS server of the peer KME: records every POST; answers ``status`` (by default 200 to acks,
    202 to ext_keys and voids: the asynchronous mode)."""
    ca: str
    cert: str
    key: str
    status: int | None = None
    got: list[Received] = field(default_factory=list)

    def __post_init__(self) -> None:
        outer = self
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_3
        ctx.verify_mode = ssl.CERT_REQUIRED
        ctx.load_verify_locations(outer.ca)
        ctx.load_cert_chain(outer.cert, outer.key)

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:
                pass

            def do_POST(self) -> None:
                n = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(n) or b"null")
                outer.got.append(Received(self.path, body, self.connection.getpeercert(binary_form=True)))
                status = outer.status or (200 if self.path.endswith("/ack") else 202)
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.socket = ctx.wrap_socket(self.httpd.socket, server_side=True)
        self.port = self.httpd.server_address[1]
        self._thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    def ack_url(self) -> str:
        return self.url + "/kmapi/v1/ext_keys/ack"

    def wait(self, n: int = 1, timeout: float = 15.0, path_suffix: str = "") -> list[Received]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            hits = [r for r in self.got if r.path.endswith(path_suffix)]
            if len(hits) >= n:
                return hits
            time.sleep(0.02)
        raise AssertionError(f"expected {n} POSTs ending {path_suffix!r}, got {[r.path for r in self.got]}")

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
