"""The agent's gRPC and TLS plumbing: servers, credentials, the peer's identity, errors -> status.

Every gRPC server of the agent is a :class:`Server` (thread pool, health, reflection, bound
at once so its real port is known); every servicer method is wrapped by :func:`method`,
which names the caller by its certificate and maps errors to gRPC status. The ETSI 014
HTTPS server takes its TLS context and reads its caller here too (:func:`peer_cn`).
"""
from __future__ import annotations

import functools
import ssl
from collections.abc import Callable
from concurrent import futures
from pathlib import Path
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

GRPC_WORKERS = 32


# -- TLS ------------------------------------------------------------------------------------
def _read(ca_cert: str | Path, cert: str | Path, key: str | Path) -> tuple[bytes, bytes, bytes]:
    return Path(ca_cert).read_bytes(), Path(cert).read_bytes(), Path(key).read_bytes()


def server_credentials(ca_cert: str | Path, cert: str | Path, key: str | Path) -> grpc.ServerCredentials:
    """Mutual TLS: this node's certificate, clients must present one issued by ``ca_cert``."""
    ca, crt, k = _read(ca_cert, cert, key)
    return grpc.ssl_server_credentials([(k, crt)], root_certificates=ca, require_client_auth=True)


def channel_credentials(ca_cert: str | Path, cert: str | Path, key: str | Path) -> grpc.ChannelCredentials:
    """Mutual TLS toward servers whose certificates ``ca_cert`` issued, as this node."""
    ca, crt, k = _read(ca_cert, cert, key)
    return grpc.ssl_channel_credentials(root_certificates=ca, private_key=k, certificate_chain=crt)


def https_server_context(ca_cert: str, cert: str, key: str) -> ssl.SSLContext:
    """TLS 1.2+ server context that requires a client certificate issued by ``ca_cert``."""
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=ca_cert)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.verify_mode = ssl.CERT_REQUIRED
    ctx.load_cert_chain(cert, key)
    return ctx


def peer_cn(peer: grpc.ServicerContext | ssl.SSLSocket) -> str:
    """The common name of the verified client certificate of a gRPC call or a TLS connection
    ('' without one): the calling node or SAE."""
    if isinstance(peer, ssl.SSLSocket):
        for rdn in (peer.getpeercert() or {}).get("subject", ()):
            for name, value in rdn:
                if name == "commonName":
                    return value
        return ""
    names = peer.auth_context().get("x509_common_name") or []
    return names[0].decode() if names else ""


# -- servers --------------------------------------------------------------------------------
class Server:
    """A mutual-TLS gRPC server with health checking and reflection, bound at construction."""

    def __init__(self, listen: str, credentials: grpc.ServerCredentials, *,
                 workers: int = GRPC_WORKERS) -> None:
        self.grpc = grpc.server(futures.ThreadPoolExecutor(max_workers=workers, thread_name_prefix="grpc"))
        self.port = self.grpc.add_secure_port(listen, credentials)
        if self.port == 0:
            raise OSError(f"cannot listen on {listen}")
        self.health = health.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self.grpc)
        self.services: list[str] = []

    def add(self, add_to_server: Callable[[Any, grpc.Server], None], servicer: Any, service: Any) -> None:
        """Serve ``servicer`` (``add_XServicer_to_server`` of the generated module, and the
        service's descriptor, ``pb2.DESCRIPTOR.services_by_name["X"]``, for reflection)."""
        add_to_server(servicer, self.grpc)
        self.services.append(service.full_name)

    def start(self) -> None:
        reflection.enable_server_reflection(
            [*self.services, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
             reflection.SERVICE_NAME], self.grpc)
        self.grpc.start()
        self.health.set("", health_pb2.HealthCheckResponse.SERVING)

    def draining(self) -> None:
        """Tell health checkers the server is going away (before ``stop``)."""
        self.health.enter_graceful_shutdown()

    def stop(self, grace: float = 1.0) -> None:
        self.grpc.stop(grace=grace).wait(grace + 1.0)


# -- servicer methods -----------------------------------------------------------------------
class Abort(Exception):
    """End the current call with this gRPC status (raised by a servicer method body)."""

    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(message)
        self.code, self.message = code, message


ErrorStatus = Callable[[Any, Exception, str], "tuple[grpc.StatusCode, str] | None"]


def method(errors: ErrorStatus | None = None, *,
           unauthenticated: str = "no client certificate") -> Callable[[Callable], Callable]:
    """Make ``fn(self, request, caller)`` the gRPC method ``(self, request, context)``.

    ``caller`` is the CN of the verified client certificate; a call without one ends
    UNAUTHENTICATED with the message ``unauthenticated``. :class:`Abort`, or an exception
    that ``errors(servicer, exc, caller)`` maps to ``(code, message)``, ends the call with
    that status; ``errors`` returns None for what it does not map, which propagates (gRPC
    answers UNKNOWN).
    """
    def wrap(fn: Callable) -> Callable:
        @functools.wraps(fn)
        def call(self: Any, request: Any, context: grpc.ServicerContext) -> Any:
            caller = peer_cn(context)
            if not caller:
                context.abort(grpc.StatusCode.UNAUTHENTICATED, unauthenticated)
            try:
                return fn(self, request, caller)
            except Abort as exc:
                status = exc.code, exc.message
            except Exception as exc:  # noqa: BLE001 - mapped or re-raised
                status = errors(self, exc, caller) if errors is not None else None
                if status is None:
                    raise
            context.abort(*status)
        return call
    return wrap
