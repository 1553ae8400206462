"""The agent's gRPC and TLS plumbing: servers, credentials, the peer's identity, errors -> status.

Every gRPC server of the agent is a :class:`Server` (thread pool) or, for calls that wait
(ETSI 004), an :class:`AioServer` (``grpc.aio`` on its own event loop: a waiting call holds
no thread); both serve health and reflection and are bound at once so the real port is
known. Every servicer method is wrapped by :func:`method`, which reads the caller's
:class:`~kms_agents.identity.Identity` from its verified certificate, checks the role the
service expects and maps errors to gRPC status. The ETSI 014 HTTPS server takes its TLS
context and reads its caller here too (:func:`peer_identity`).
"""
from __future__ import annotations

import asyncio
import functools
import inspect
import logging
import ssl
import threading
from collections.abc import Callable, Coroutine
from concurrent import futures
from pathlib import Path
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from kms_agents import metrics
from kms_agents.identity import Identity, identity_of

__all__ = ["Abort", "AioServer", "Identity", "Server", "channel_credentials", "https_server_context",
           "method", "peer_identity", "server_credentials"]

GRPC_WORKERS = 32
AIO_MAX_CONCURRENT_RPCS = 1024   # the aio server's cap on calls in progress (RESOURCE_EXHAUSTED beyond)

log = logging.getLogger(__name__)


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


# -- who is calling ---------------------------------------------------------------------------
def peer_certificate(peer: Any) -> bytes:
    """The verified client certificate of a gRPC call (PEM) or a TLS connection (DER); b"" without one."""
    if isinstance(peer, (ssl.SSLSocket, ssl.SSLObject)):   # a socket, or asyncio's TLS object
        return peer.getpeercert(binary_form=True) or b""
    pems = peer.auth_context().get("x509_pem_cert") or []
    return pems[0] if pems else b""


def peer_identity(peer: Any) -> Identity | None:
    """The identity (``urn:qusec:ROLE:NAME``) of the verified client certificate of a gRPC call
    (sync or aio context) or a TLS connection; None without a certificate or an identity."""
    cert = peer_certificate(peer)
    return identity_of(cert) if cert else None


ARTICLE = {"node": "a node", "sae": "an SAE", "controller": "a controller", "operator": "an operator",
           "switch": "a switch"}
SERVICES = {"relay": "KeyRelay", "peer": "PeerKms", "manage": "the management API", "etsi004": "the ETSI 004 API", "etsi014": "the ETSI 014 API"}


def check_caller(peer: Any, role: str, server: str, unauthenticated: str
                 ) -> tuple[Identity | None, tuple[grpc.StatusCode, str] | None]:
    """The caller's identity if it has ``role``, else (None, (status, message)), logged and counted."""
    cert = peer_certificate(peer)
    ident = identity_of(cert) if cert else None
    if ident is None:
        message = unauthenticated if not cert else \
            f"{unauthenticated}: the client certificate names no urn:qusec: identity"
        metrics.refused(server, "no_identity", message, logger=log)
        return None, (grpc.StatusCode.UNAUTHENTICATED, message)
    if ident.role != role:
        message = (f"{SERVICES.get(server, server)} needs {ARTICLE.get(role, role)} certificate; "
                   f"the caller's certificate names {ident}")
        metrics.refused(server, "wrong_role", message, logger=log, caller=ident)
        return None, (grpc.StatusCode.PERMISSION_DENIED, message)
    return ident, None


# -- servers --------------------------------------------------------------------------------
NO_REUSEPORT = [("grpc.so_reuseport", 0)]

class Server:
    """A mutual-TLS gRPC server with health checking and reflection, bound at construction."""

    def __init__(self, listen: str, credentials: grpc.ServerCredentials, *,
                 workers: int = GRPC_WORKERS) -> None:
        # No SO_REUSEPORT (gRPC's default): a second server on a port in use must fail to bind,
        # not share it and receive half of another server's connections.
        self.grpc = grpc.server(futures.ThreadPoolExecutor(max_workers=workers, thread_name_prefix="grpc"),
                                options=NO_REUSEPORT)
        try:
            self.port = self.grpc.add_secure_port(listen, credentials)
        except RuntimeError:     # grpcio raises when the address is in use
            self.port = 0
        if self.port == 0:
            raise OSError(f"cannot listen on {listen} (in use?)")
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


class AioServer:
    """The same, on ``grpc.aio`` in an event loop of its own thread: its servicers' methods are
    coroutines, a call that waits holds no thread, and a cancelled call stops waiting at once.
    Blocking work belongs in an executor (``loop.run_in_executor``)."""

    def __init__(self, listen: str, credentials: grpc.ServerCredentials, *,
                 max_concurrent_rpcs: int = AIO_MAX_CONCURRENT_RPCS) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="grpc-aio", daemon=True)
        self._thread.start()
        self.services: list[str] = []

        async def make() -> tuple[Any, int, Any]:
            server = grpc.aio.server(maximum_concurrent_rpcs=max_concurrent_rpcs, options=NO_REUSEPORT)
            port = server.add_secure_port(listen, credentials)
            checker = health.aio.HealthServicer()
            health_pb2_grpc.add_HealthServicer_to_server(checker, server)
            return server, port, checker

        self.grpc, self.port, self.health = self._run(make())
        if self.port == 0:
            self._close_loop()
            raise OSError(f"cannot listen on {listen}")

    def _run(self, coro: Coroutine) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result()

    def add(self, add_to_server: Callable[[Any, Any], None], servicer: Any, service: Any) -> None:
        add_to_server(servicer, self.grpc)
        self.services.append(service.full_name)

    def start(self) -> None:
        async def start() -> None:
            reflection.enable_server_reflection(
                [*self.services, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
                 reflection.SERVICE_NAME], self.grpc)
            await self.grpc.start()
            await self.health.set("", health_pb2.HealthCheckResponse.SERVING)
        self._run(start())

    def draining(self) -> None:
        self._run(self.health.enter_graceful_shutdown())

    def stop(self, grace: float = 1.0) -> None:
        if self.loop.is_closed():
            return
        try:
            asyncio.run_coroutine_threadsafe(self.grpc.stop(grace), self.loop).result(grace + 2.0)
        except (futures.TimeoutError, RuntimeError):
            log.warning("aio gRPC server on port %d did not stop within %.1f s", self.port, grace + 2.0)
        self._close_loop()

    def _close_loop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout=5)
        if not self._thread.is_alive():
            self.loop.close()


# -- servicer methods -----------------------------------------------------------------------
class Abort(Exception):
    """End the current call with this gRPC status (raised by a servicer method body)."""

    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(message)
        self.code, self.message = code, message


ErrorStatus = Callable[[Any, Exception, str], "tuple[grpc.StatusCode, str] | None"]


def method(errors: ErrorStatus | None = None, *, role: str, server: str,
           unauthenticated: str = "no client certificate") -> Callable[[Callable], Callable]:
    """Make ``fn(self, request, caller)`` the gRPC method ``(self, request, context)``; a
    coroutine function makes an aio method.

    ``caller`` is the name in the verified client certificate's identity, which must have
    ``role``: a call without an identity ends UNAUTHENTICATED with the message
    ``unauthenticated``, one of another role PERMISSION_DENIED (both logged and counted as
    refusals of ``server``). :class:`Abort`, or an exception that ``errors(servicer, exc,
    caller)`` maps to ``(code, message)``, ends the call with that status; ``errors`` returns
    None for what it does not map, which propagates (gRPC answers UNKNOWN).
    """
    def status_of(servicer: Any, exc: Exception, caller: str) -> tuple[grpc.StatusCode, str]:
        if isinstance(exc, Abort):
            return exc.code, exc.message
        status = errors(servicer, exc, caller) if errors is not None else None
        if status is None:
            raise exc
        return status

    def wrap(fn: Callable) -> Callable:
        if inspect.iscoroutinefunction(fn):
            @functools.wraps(fn)
            async def acall(self: Any, request: Any, context: Any) -> Any:
                ident, refusal = check_caller(context, role, server, unauthenticated)
                if refusal is not None:
                    await context.abort(*refusal)
                try:
                    return await fn(self, request, ident.name)
                except Exception as exc:  # noqa: BLE001 - mapped or re-raised
                    status = status_of(self, exc, ident.name)
                await context.abort(*status)
            return acall

        @functools.wraps(fn)
        def call(self: Any, request: Any, context: grpc.ServicerContext) -> Any:
            ident, refusal = check_caller(context, role, server, unauthenticated)
            if refusal is not None:
                context.abort(*refusal)
            try:
                return fn(self, request, ident.name)
            except Exception as exc:  # noqa: BLE001 - mapped or re-raised
                status = status_of(self, exc, ident.name)
            context.abort(*status)
        return call
    return wrap
