"""A domain QuSeC's side of the parent API: send exports, ask for chains (``grpc.aio``)."""
from __future__ import annotations

from pathlib import Path

import grpc
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from quseccontroller.abstract import DomainExport
from quseccontroller.parent import wire
from quseccontroller.parent.chain import Chain, ChainRequest
from quseccontroller.proto import parent_pb2, parent_pb2_grpc


class ParentRefused(Exception):
    """The parent refused a call: ``code`` (gRPC), ``reason`` (its ErrorInfo reason, lower case)."""

    def __init__(self, code: grpc.StatusCode, reason: str, message: str) -> None:
        super().__init__(message)
        self.code, self.reason = code, reason


def _refused(exc: grpc.aio.AioRpcError) -> ParentRefused:
    reason = exc.code().name.lower()
    status = rpc_status.from_call(exc)
    for d in (status.details if status else ()):
        info = error_details_pb2.ErrorInfo()
        if d.Unpack(info):
            reason = info.reason.lower()
    return ParentRefused(exc.code(), reason, exc.details() or "")


class ParentClient:
    """Calls to the parent at ``addr`` as the domain QuSeC whose certificate and key are given."""

    def __init__(self, addr: str, ca_cert: str | Path, cert: str | Path, key: str | Path,
                 *, timeout: float = 2.0) -> None:
        creds = grpc.ssl_channel_credentials(Path(ca_cert).read_bytes(), Path(key).read_bytes(),
                                             Path(cert).read_bytes())
        self.channel = grpc.aio.secure_channel(addr, creds)
        self.stub = parent_pb2_grpc.ParentStub(self.channel)
        self.timeout = timeout

    async def export(self, ex: DomainExport) -> float:
        """Send ``ex`` (its domain is the certificate's); the interval (s) the parent expects."""
        return await self.send_export(wire.export_pb(ex))

    async def send_export(self, msg: parent_pb2.DomainExport) -> float:
        try:
            ack = await self.stub.Export(msg, timeout=self.timeout)
        except grpc.aio.AioRpcError as exc:
            raise _refused(exc) from None
        return ack.interval_ms / 1000

    async def choose(self, req: ChainRequest) -> Chain:
        try:
            return wire.chain_of(await self.stub.ChooseChain(wire.request_pb(req), timeout=self.timeout))
        except grpc.aio.AioRpcError as exc:
            raise _refused(exc) from None

    async def close(self) -> None:
        await self.channel.close()
