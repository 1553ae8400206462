"""The gateway's network edge: the gRPC server (asyncio), TLS credentials, the caller's identity,
and the one mapping from errors to gRPC status that every servicer method goes through
(``maps_errors``).

Servicers raise ``Abort`` (a status with rich ``google.rpc`` details), ``PathRefused`` (the
core, or the gateway, refused a path: a ``PathRefusal`` detail) or let a ``BridgeError`` from
the app through; the decorator turns each into its status, counts it and logs it. Callers are
who their verified certificate says (``peer_identity``: ``urn:qusec:ROLE:NAME``, parsed by
``quseccontroller.identity``), and each method names the role it serves (``require_role``).
The server runs on ``grpc.aio``: an open stream costs a coroutine, not a thread.
"""
from __future__ import annotations

import functools
import inspect
import logging
import ssl
import time
from pathlib import Path
from typing import Any, Callable, Iterable

import grpc
from google.protobuf import any_pb2
from google.rpc import error_details_pb2, status_pb2
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from grpc_status import rpc_status

from quseccontroller import identity, records
from quseccontroller.bridge import BridgeError
from quseccontroller.identity import Identity, NoIdentity
from quseccontroller.options import split_hostport
from quseccontroller.proto import control_pb2

LOG = logging.getLogger(__name__)

# Core refusal reason -> gRPC status (control.proto documents the mapping).
REFUSAL_CODES = {
    "policy_deny": grpc.StatusCode.PERMISSION_DENIED,
    "trust": grpc.StatusCode.PERMISSION_DENIED,
    "unknown_node": grpc.StatusCode.NOT_FOUND,
    "unknown_sae": grpc.StatusCode.NOT_FOUND,
    "no_key": grpc.StatusCode.RESOURCE_EXHAUSTED,
    "rate_limit": grpc.StatusCode.RESOURCE_EXHAUSTED,
    "disconnected": grpc.StatusCode.UNAVAILABLE,
    "max_hops": grpc.StatusCode.UNAVAILABLE,
}
# Bridge error code (quseccontroller.bridge.ERROR_CODES) -> gRPC status.
BRIDGE_CODES = {
    "invalid": grpc.StatusCode.INVALID_ARGUMENT,
    "not_found": grpc.StatusCode.NOT_FOUND,
    "permission": grpc.StatusCode.PERMISSION_DENIED,
    "unavailable": grpc.StatusCode.UNAVAILABLE,
    "timeout": grpc.StatusCode.DEADLINE_EXCEEDED,
    "internal": grpc.StatusCode.INTERNAL,
}


class Abort(Exception):
    """A gRPC error with rich details (google.rpc.Status); ``label`` names the refusal in
    metrics and logs when the status code alone would not say enough."""

    def __init__(self, code: grpc.StatusCode, message: str, *details: Any, label: str = ""):
        super().__init__(message)
        self.code, self.message, self.details = code, message, details
        self._label = label

    @property
    def label(self) -> str:
        """The metric label: the given label, a path refusal's reason, else the status code's name."""
        if self._label:
            return self._label
        return next((d.reason for d in self.details if isinstance(d, control_pb2.PathRefusal)),
                    self.code.name.lower())

    def status(self) -> grpc.Status:
        packed = []
        for d in self.details:
            a = any_pb2.Any()
            a.Pack(d)
            packed.append(a)
        return rpc_status.to_status(status_pb2.Status(code=self.code.value[0], message=self.message,
                                                       details=packed))


class PathRefused(Exception):
    """A path was refused for ``reason`` (a core refusal reason); ``summary`` is the status
    message, ``message`` and ``rule`` go into the PathRefusal detail."""

    def __init__(self, reason: str, summary: str, *, rule: str = "", message: str = ""):
        super().__init__(summary)
        self.reason, self.summary, self.rule, self.message = reason, summary, rule, message


def bad_request(field: str, problem: str) -> Abort:
    return Abort(grpc.StatusCode.INVALID_ARGUMENT, f"{field}: {problem}",
                 error_details_pb2.BadRequest(field_violations=[
                     error_details_pb2.BadRequest.FieldViolation(field=field, description=problem)]))


def error_info(code: grpc.StatusCode, message: str, reason: str, /, *, label: str = "",
               **metadata: str) -> Abort:
    """An Abort with a ``google.rpc.ErrorInfo{reason, domain: qusec, metadata}`` detail
    (``metadata`` may carry a "reason" of its own: the refusal's, next to the error's)."""
    return Abort(code, message, error_details_pb2.ErrorInfo(reason=reason, domain="qusec",
                                                            metadata=metadata), label=label)


def to_abort(exc: Exception) -> Abort:
    """The status of a servicer's error (Abort, PathRefused or BridgeError)."""
    if isinstance(exc, Abort):
        return exc
    if isinstance(exc, PathRefused):
        return Abort(REFUSAL_CODES.get(exc.reason, grpc.StatusCode.FAILED_PRECONDITION), exc.summary,
                     records.refusal_proto(exc.reason, exc.rule, exc.message))
    assert isinstance(exc, BridgeError)
    details: list[Any] = [error_details_pb2.ErrorInfo(reason=exc.code.upper(), domain="qusec",
                                                      metadata={k: str(v) for k, v in exc.details.items()})]
    if exc.code == "invalid" and "field" in exc.details:
        details.append(error_details_pb2.BadRequest(field_violations=[
            error_details_pb2.BadRequest.FieldViolation(field=str(exc.details["field"]),
                                                        description=exc.message)]))
    return Abort(BRIDGE_CODES.get(exc.code, grpc.StatusCode.INTERNAL), exc.message, *details)


_MAPPED = (Abort, PathRefused, BridgeError)


def maps_errors(*, count: str = "", event: str = "",
                describe: Callable[[Any, Any], str] | None = None,
                level: int = logging.INFO) -> Callable:
    """Decorate an async servicer method (unary, or an async generator for a response stream):
    its Abort, PathRefused and BridgeError end the call with their status and details.
    ``count`` names the counter in the servicer's ``metrics`` that counts them by
    ``Abort.label``; ``event`` logs ``event=EVENT <describe(request, context)> reason=...
    code=... ms=... msg=...`` on the servicer module's logger."""

    async def failed(servicer: Any, request: Any, context: Any, exc: Exception,
                     t0: float, log: logging.Logger) -> None:
        abort = to_abort(exc)
        if count:
            getattr(servicer.metrics, count).labels(abort.label).inc()
        if event:
            log.log(level, "event=%s %s reason=%s code=%s ms=%.1f msg=%r", event,
                    describe(request, context) if describe else "", abort.label, abort.code.name,
                    (time.monotonic() - t0) * 1000, abort.message)
        status = abort.status()
        await context.abort(status.code, status.details, status.trailing_metadata)
        raise AssertionError("unreachable")  # abort raises

    def wrap(method: Callable) -> Callable:
        log = logging.getLogger(method.__module__)   # the servicer's own log
        if inspect.isasyncgenfunction(method):
            @functools.wraps(method)
            async def streaming(self: Any, request: Any, context: Any) -> Any:
                t0 = time.monotonic()
                try:
                    async for item in method(self, request, context):
                        yield item
                except _MAPPED as exc:
                    await failed(self, request, context, exc, t0, log)
            return streaming

        @functools.wraps(method)
        async def unary(self: Any, request: Any, context: Any) -> Any:
            t0 = time.monotonic()
            try:
                return await method(self, request, context)
            except _MAPPED as exc:
                await failed(self, request, context, exc, t0, log)
        return unary
    return wrap


# -------------------------------------------------------------------------------- identities


def peer_identity(context: Any) -> Identity:
    """Who the caller's verified client certificate names; UNAUTHENTICATED without one."""
    pems = context.auth_context().get("x509_pem_cert") or []
    if not pems:
        raise error_info(grpc.StatusCode.UNAUTHENTICATED, "no verified client certificate",
                         "NO_IDENTITY", label="no_identity")
    try:
        return identity.from_pem(pems[0])
    except NoIdentity as exc:
        raise error_info(grpc.StatusCode.UNAUTHENTICATED, f"the client certificate names no QuSeC "
                         f"identity: {exc}", "NO_IDENTITY", label="no_identity") from None


def require_role(context: Any, role: str, what: str) -> Identity:
    """The caller's identity, which must be in ``role``; PERMISSION_DENIED (label "role")
    naming who may ``what`` otherwise."""
    ident = peer_identity(context)
    if ident.role != role:
        raise error_info(grpc.StatusCode.PERMISSION_DENIED,
                         f"a {ident.role} certificate ({ident}) may not {what}: only role {role} may",
                         "ROLE_NOT_ALLOWED", label="role", role=ident.role, name=ident.name,
                         required=role)
    return ident


def tls_peer_identity(sock: Any) -> Identity:
    """Who the verified client certificate of a server-side TLS socket names (NoIdentity)."""
    return identity.of_tls_socket(sock)


# ------------------------------------------------------------------------------ credentials


def server_credentials(ca_cert: str, cert: str, key: str) -> grpc.ServerCredentials:
    """Mutual TLS: our certificate and key, clients must present one signed by ``ca_cert``."""
    return grpc.ssl_server_credentials(
        [(Path(key).read_bytes(), Path(cert).read_bytes())],
        root_certificates=Path(ca_cert).read_bytes(), require_client_auth=True)


def https_context(ca_cert: str, cert: str, key: str) -> ssl.SSLContext:
    """A TLS server context for mutual TLS: clients must present a certificate of ``ca_cert``."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(cert, key)
    ctx.load_verify_locations(ca_cert)
    ctx.verify_mode = ssl.CERT_REQUIRED
    return ctx


# ---------------------------------------------------------------------------------- server


_HEALTH = health_pb2.DESCRIPTOR.services_by_name["Health"].full_name

# gRPC core keeps the calls that arrived but that the server has not taken yet (grpc.aio takes
# one per turn of the event loop) in a pending queue, and past 1,000 of them it cancels new ones
# at random, every one past 3,000 (its backlog protector): the client sees a bare CANCELLED, and
# nothing reaches the servicer, so no log says why. Thousands of agents opening their control
# streams at once (a start, a gateway restart) overflow it while the loop registers them.
PENDING_BASE = 1000   # gRPC's own soft bound, kept on top of the streams


def pending_options(max_streams: int) -> list[tuple[str, int]]:
    """Server options whose pending queue holds every capped control stream opening at once,
    with gRPC's own room on top for the other calls (the servicer's caps still apply once
    taken: this only stops gRPC core dropping calls before them)."""
    soft = max(0, int(max_streams)) + PENDING_BASE
    return [("grpc.server.max_pending_requests", soft),
            ("grpc.server.max_pending_requests_hard_limit", 2 * soft)]


class RpcServer:
    """An asyncio gRPC server with health checking and reflection, bound to ``listen`` (port 0:
    any; ``addr`` is the address bound). ``services``: (add_XServicer_to_server, servicer,
    full service name). Make it inside the event loop that will run it."""

    def __init__(self, listen: str, credentials: grpc.ServerCredentials | None, *,
                 services: Iterable[tuple[Callable, Any, str]], what: str = "--grpc-listen",
                 options: Iterable[tuple[str, Any]] = ()):
        self.health = health.aio.HealthServicer()
        self.server = grpc.aio.server(options=[("grpc.so_reuseport", 0), *options])
        names = []
        for add, servicer, name in services:
            add(servicer, self.server)
            names.append(name)
        self.services = tuple(names)
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self.server)
        reflection.enable_server_reflection(self.services + (_HEALTH, reflection.SERVICE_NAME),
                                            self.server)
        host, _ = split_hostport(listen, what)
        if credentials is None:
            LOG.warning("serving gRPC WITHOUT TLS on %s (no --cert/--key/--ca-cert)", listen)
            port = self.server.add_insecure_port(listen)
        else:
            port = self.server.add_secure_port(listen, credentials)
        if not port:
            raise OSError(f"cannot bind gRPC on {listen}")
        self.addr = f"{'127.0.0.1' if host in ('0.0.0.0', '') else host}:{port}"

    async def set_serving(self, up: bool) -> None:
        """Health of the server ('') and of every service."""
        st = (health_pb2.HealthCheckResponse.SERVING if up
              else health_pb2.HealthCheckResponse.NOT_SERVING)
        for name in ("",) + self.services:
            await self.health.set(name, st)

    async def start(self) -> None:
        await self.set_serving(False)
        await self.server.start()

    async def stop(self, grace: float = 1.0) -> None:
        await self.health.enter_graceful_shutdown()
        await self.server.stop(grace)
