"""The gateway's gRPC edge: the server, TLS credentials, the caller's identity, and the one
mapping from errors to gRPC status that every servicer method goes through (``maps_errors``).

Servicers raise ``Abort`` (a status with rich ``google.rpc`` details), ``PathRefused`` (the
core, or the gateway, refused a path: a ``PathRefusal`` detail) or let a ``BridgeError`` from
the app through; the decorator turns each into its status, counts it and logs it.
"""
from __future__ import annotations

import functools
import inspect
import logging
import time
from concurrent import futures
from pathlib import Path
from typing import Any, Callable, Iterable

import grpc
from google.protobuf import any_pb2
from google.rpc import error_details_pb2, status_pb2
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from grpc_status import rpc_status

from quseccontroller import records
from quseccontroller.bridge import BridgeError
from quseccontroller.options import split_hostport
from quseccontroller.proto import control_pb2

LOG = logging.getLogger(__name__)

# Core refusal reason -> gRPC status (control.proto documents the mapping).
REFUSAL_CODES = {
    "policy_deny": grpc.StatusCode.PERMISSION_DENIED,
    "trust": grpc.StatusCode.PERMISSION_DENIED,
    "unknown_node": grpc.StatusCode.NOT_FOUND,
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
    """A gRPC error with rich details (google.rpc.Status)."""

    def __init__(self, code: grpc.StatusCode, message: str, *details: Any):
        super().__init__(message)
        self.code, self.message, self.details = code, message, details

    @property
    def label(self) -> str:
        """The metric label: a path refusal's reason, else the status code's name."""
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


def error_info(code: grpc.StatusCode, message: str, reason: str, **metadata: str) -> Abort:
    """An Abort with a ``google.rpc.ErrorInfo{reason, domain: qusec, metadata}`` detail."""
    return Abort(code, message, error_details_pb2.ErrorInfo(reason=reason, domain="qusec",
                                                            metadata=metadata))


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
                describe: Callable[[Any, grpc.ServicerContext], str] | None = None,
                level: int = logging.INFO) -> Callable:
    """Decorate a servicer method (unary or response-streaming): its Abort, PathRefused and
    BridgeError end the call with their status and details. ``count`` names the counter in the
    servicer's ``metrics`` that counts them by ``Abort.label``; ``event`` logs
    ``event=EVENT <describe(request, context)> reason=... code=... ms=... msg=...`` on the
    servicer module's logger."""

    def failed(servicer: Any, request: Any, context: grpc.ServicerContext, exc: Exception,
               t0: float, log: logging.Logger) -> None:
        abort = to_abort(exc)
        if count:
            getattr(servicer.metrics, count).labels(abort.label).inc()
        if event:
            log.log(level, "event=%s %s reason=%s code=%s ms=%.1f msg=%r", event,
                    describe(request, context) if describe else "", abort.label, abort.code.name,
                    (time.monotonic() - t0) * 1000, abort.message)
        context.abort_with_status(abort.status())
        raise AssertionError("unreachable")  # abort_with_status raises

    def wrap(method: Callable) -> Callable:
        log = logging.getLogger(method.__module__)   # the servicer's own log
        if inspect.isgeneratorfunction(method):
            @functools.wraps(method)
            def streaming(self: Any, request: Any, context: grpc.ServicerContext) -> Iterable:
                t0 = time.monotonic()
                try:
                    yield from method(self, request, context)
                except _MAPPED as exc:
                    failed(self, request, context, exc, t0, log)
            return streaming

        @functools.wraps(method)
        def unary(self: Any, request: Any, context: grpc.ServicerContext) -> Any:
            t0 = time.monotonic()
            try:
                return method(self, request, context)
            except _MAPPED as exc:
                failed(self, request, context, exc, t0, log)
        return unary
    return wrap


def peer_cn(context: grpc.ServicerContext) -> str:
    """The Common Name of the caller's verified client certificate ('' without one)."""
    names = context.auth_context().get("x509_common_name") or []
    return names[0].decode() if names else ""


def server_credentials(ca_cert: str, cert: str, key: str) -> grpc.ServerCredentials:
    """Mutual TLS: our certificate and key, clients must present one signed by ``ca_cert``."""
    return grpc.ssl_server_credentials(
        [(Path(key).read_bytes(), Path(cert).read_bytes())],
        root_certificates=Path(ca_cert).read_bytes(), require_client_auth=True)


_HEALTH = health_pb2.DESCRIPTOR.services_by_name["Health"].full_name


class RpcServer:
    """A gRPC server with health checking and reflection, bound to ``listen`` (port 0: any;
    ``addr`` is the address bound). ``services``: (add_XServicer_to_server, servicer,
    full service name)."""

    def __init__(self, listen: str, credentials: grpc.ServerCredentials | None, *, workers: int,
                 services: Iterable[tuple[Callable, Any, str]], what: str = "--grpc-listen"):
        self.health = health.HealthServicer()
        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=workers),
                                  options=[("grpc.so_reuseport", 0)])
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

    def set_serving(self, up: bool) -> None:
        """Health of the server ('') and of every service."""
        st = (health_pb2.HealthCheckResponse.SERVING if up
              else health_pb2.HealthCheckResponse.NOT_SERVING)
        for name in ("",) + self.services:
            self.health.set(name, st)

    def start(self) -> None:
        self.set_serving(False)
        self.server.start()

    def stop(self, grace: float = 1.0) -> None:
        self.health.enter_graceful_shutdown()
        self.server.stop(grace).wait()
