"""Clients for the vKMS: ETSI GS QKD 014 (HTTPS, mutual TLS, keep-alive) and the 004-style gRPC API.

Given ``kme_node="A"``, a client checks after every TLS handshake that the server's
certificate is node A's (its ``urn:qusec:node:A`` identity), not merely one the CA issued
for "some address of this machine": on a loopback network every node listens on
127.0.0.1, so only the identity tells them apart.
"""
from __future__ import annotations

import base64
import http.client
import json
import socket
import ssl
import threading
import urllib.parse
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kms_agents.identity import identity_of


class Etsi014Error(Exception):
    """A non-200 answer from a KME: HTTP status and the ETSI error body (None for 401)."""

    def __init__(self, status: int, body: dict | None, url: str = "") -> None:
        self.status, self.body, self.url = status, body, url
        msg = (body or {}).get("message", "") if isinstance(body, dict) else ""
        super().__init__(f"HTTP {status} from {url}: {msg}".rstrip(": "))


@dataclass(frozen=True)
class Key:
    key_id: str
    key: bytes
    key_id_extension: dict | None = None
    key_extension: dict | None = None


class PeerIdentityError(ConnectionError):
    """The server's certificate is not the KME's the client was made for."""


def check_kme(sock: ssl.SSLSocket, kme_node: str, where: str) -> None:
    """Close ``sock`` and raise PeerIdentityError unless its server certificate names node ``kme_node``."""
    ident = identity_of(sock.getpeercert(binary_form=True) or b"")
    if ident is None or (ident.role, ident.name) != ("node", kme_node):
        sock.close()
        raise PeerIdentityError(f"the KME at {where} presented the certificate of "
                                f"{ident or 'no urn:qusec identity'}, not of node:{kme_node}: refusing to talk to it")


class _KmeConnection(http.client.HTTPSConnection):
    """An HTTPS connection that checks the KME's identity on every (re)connect."""

    def __init__(self, host: str, port: int, *, kme_node: str | None, **kwargs: Any) -> None:
        super().__init__(host, port, **kwargs)
        self.kme_node = kme_node

    def connect(self) -> None:
        super().connect()
        if self.kme_node:
            check_kme(self.sock, self.kme_node, f"https://{self.host}:{self.port}")


def client_ssl_context(ca_cert: str | Path, cert: str | Path, key: str | Path) -> ssl.SSLContext:
    """TLS 1.2+ client context that checks the server against ``ca_cert`` and presents ``cert``."""
    ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(ca_cert))
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(str(cert), str(key))
    return ctx


class Etsi014Client:
    """ETSI GS QKD 014 client for one KME, one keep-alive connection per thread; ``kme_node``
    (the KME's node id) makes every connection check the server is that node."""

    def __init__(self, base_url: str, ca_cert: str | Path, cert: str | Path, key: str | Path,
                 *, timeout: float = 10.0, context: ssl.SSLContext | None = None,
                 kme_node: str | None = None) -> None:
        parsed = urllib.parse.urlsplit(base_url)
        if parsed.scheme != "https" or not parsed.hostname:
            raise ValueError(f"ETSI 014 URL must be https://host:port, got {base_url!r}")
        self.base_url = base_url.rstrip("/")
        self._host, self._port = parsed.hostname, parsed.port or 443
        self._prefix = parsed.path.rstrip("/")
        self._ctx = context or client_ssl_context(ca_cert, cert, key)
        self._timeout = timeout
        self.kme_node = kme_node
        self._local = threading.local()

    def close(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None

    def __enter__(self) -> "Etsi014Client":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _conn(self) -> http.client.HTTPSConnection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = _KmeConnection(self._host, self._port, context=self._ctx, timeout=self._timeout,
                                  kme_node=self.kme_node)
            self._local.conn = conn
        return conn

    def request(self, method: str, path: str, body: Any = None, *,
                raw_body: bytes | None = None, headers: dict | None = None) -> tuple[int, Any]:
        """Send one request; returns (HTTP status, parsed JSON body or None). Retries once on a stale connection."""
        data = raw_body if raw_body is not None else (None if body is None else json.dumps(body).encode())
        hdrs = {"Accept": "application/json"}
        if data is not None:
            hdrs["Content-Type"] = "application/json"
        hdrs.update(headers or {})
        for attempt in (0, 1):
            conn = self._conn()
            try:
                conn.request(method, self._prefix + path, body=data, headers=hdrs)
                resp = conn.getresponse()
                payload = resp.read()
                if resp.getheader("Connection", "").lower() == "close":
                    self.close()
                break
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError,
                    http.client.CannotSendRequest, http.client.BadStatusLine):
                self.close()
                if attempt:
                    raise
        parsed = None
        if payload:
            try:
                parsed = json.loads(payload)
            except ValueError:
                parsed = {"message": payload.decode(errors="replace")}
        return resp.status, parsed

    def _call(self, method: str, path: str, body: Any = None) -> dict:
        status, parsed = self.request(method, path, body)
        if status != 200:
            raise Etsi014Error(status, parsed, self.base_url + path)
        return parsed

    @staticmethod
    def _sae(sae_id: str) -> str:
        return urllib.parse.quote(sae_id, safe="")

    def status(self, slave_sae: str) -> dict:
        """Get status (called by the master SAE)."""
        return self._call("GET", f"/api/v1/keys/{self._sae(slave_sae)}/status")

    def enc_keys(self, slave_sae: str, number: int | None = None, size: int | None = None, *,
                 additional_slave_sae_ids: list[str] | None = None,
                 extension_mandatory: list[dict] | None = None,
                 extension_optional: list[dict] | None = None, method: str = "POST") -> list[Key]:
        """Get key (master SAE): new keys shared with ``slave_sae``."""
        path = f"/api/v1/keys/{self._sae(slave_sae)}/enc_keys"
        if method == "GET":
            q = {k: v for k, v in (("number", number), ("size", size)) if v is not None}
            return _keys(self._call("GET", path + ("?" + urllib.parse.urlencode(q) if q else "")))
        body: dict[str, Any] = {}
        if number is not None:
            body["number"] = number
        if size is not None:
            body["size"] = size
        if additional_slave_sae_ids:
            body["additional_slave_SAE_IDs"] = additional_slave_sae_ids
        if extension_mandatory:
            body["extension_mandatory"] = extension_mandatory
        if extension_optional:
            body["extension_optional"] = extension_optional
        return _keys(self._call("POST", path, body))

    def enc_keys_container(self, slave_sae: str, body: dict) -> dict:
        """POST enc_keys with a raw request body; returns the whole key container."""
        return self._call("POST", f"/api/v1/keys/{self._sae(slave_sae)}/enc_keys", body)

    def dec_keys(self, master_sae: str, key_ids: list[str], *, method: str = "POST") -> list[Key]:
        """Get key with key IDs (slave SAE); the path names the MASTER SAE."""
        path = f"/api/v1/keys/{self._sae(master_sae)}/dec_keys"
        if method == "GET":
            if len(key_ids) != 1:
                raise ValueError("GET dec_keys carries exactly one key_ID")
            return _keys(self._call("GET", path + "?" + urllib.parse.urlencode({"key_ID": key_ids[0]})))
        return _keys(self._call("POST", path, {"key_IDs": [{"key_ID": k} for k in key_ids]}))


def _keys(container: dict) -> list[Key]:
    return [Key(k["key_ID"], base64.b64decode(k["key"]), k.get("key_ID_extension"), k.get("key_extension"))
            for k in container.get("keys", [])]


class Etsi004Client:
    """Client of the 004-style gRPC API (qusec.etsi004.v1.KeyDelivery) over mutual TLS.

    ``kme_node``: the channel accepts only a server certificate naming that node (TLS target
    name = node id, which only that node's certificate carries), and the first call checks its
    ``urn:qusec:node:`` identity with a clear error."""

    def __init__(self, addr: str, ca_cert: str | Path, cert: str | Path, key: str | Path,
                 *, timeout: float = 10.0, server_name: str | None = None, kme_node: str | None = None) -> None:
        import grpc   # here: the ETSI 014 client needs no gRPC

        from kms_agents import rpc
        from kms_agents.proto import etsi004_pb2_grpc
        creds = rpc.channel_credentials(ca_cert, cert, key)
        name = kme_node or server_name
        opts = [("grpc.ssl_target_name_override", name)] if name else []
        self._channel = grpc.secure_channel(addr, creds, options=opts)
        self._stub = etsi004_pb2_grpc.KeyDeliveryStub(self._channel)
        self._timeout = timeout
        self.addr, self.kme_node = addr, kme_node
        self._tls = (ca_cert, cert, key)
        self._checked = not kme_node
        self._check_lock = threading.Lock()

    def check_kme(self) -> None:
        """Handshake once with the server and check it is node ``kme_node`` (PeerIdentityError if not)."""
        with self._check_lock:
            if self._checked:
                return
            ctx = client_ssl_context(*self._tls)
            ctx.check_hostname = False   # the identity is checked below, not the address
            host, _, port = self.addr.rpartition(":")
            with socket.create_connection((host.strip("[]"), int(port)), timeout=self._timeout) as raw, \
                    ctx.wrap_socket(raw) as sock:
                check_kme(sock, self.kme_node, self.addr)
            self._checked = True

    def close(self) -> None:
        self._channel.close()

    def __enter__(self) -> "Etsi004Client":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def open_connect(self, source: str, destination: str, *, key_stream_id: str = "",
                     key_chunk_size: int = 32, timeout_ms: int = 0, **qos: Any):
        from kms_agents.proto import etsi004_pb2 as pb
        q = pb.QoS(key_chunk_size=key_chunk_size, timeout=timeout_ms,
                   metadata_mimetype=qos.pop("metadata_mimetype", "application/json"), **qos)
        req = pb.OpenConnectRequest(source=source, destination=destination, qos=q, key_stream_id=key_stream_id)
        self.check_kme()
        return self._stub.OpenConnect(req, timeout=self._timeout + timeout_ms / 1000)

    def get_key(self, key_stream_id: str, index: int, *, metadata_size: int = 1024):
        from kms_agents.proto import etsi004_pb2 as pb
        req = pb.GetKeyRequest(key_stream_id=key_stream_id, index=index,
                               metadata=pb.Metadata(size=metadata_size, mimetype="application/json"))
        self.check_kme()
        return self._stub.GetKey(req, timeout=self._timeout)

    def close_stream(self, key_stream_id: str):
        from kms_agents.proto import etsi004_pb2 as pb
        self.check_kme()
        return self._stub.Close(pb.CloseRequest(key_stream_id=key_stream_id), timeout=self._timeout)
