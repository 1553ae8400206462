"""The parent controller process: ``python -m quseccontroller.parent --config parent.toml``.

A gRPC server (asyncio, mutual TLS, health checking and reflection) with one service,
``qusec.parent.v1.Parent``: domain QuSeCs (certificates of role controller, each configured for
one domain) send their exports and ask for domain chains. The domain of a call is the one the
caller's certificate is configured for; any other certificate is refused. Once bound it writes
``STATE_DIR/parent.json`` (``grpc`` address, ``pid``) and serves until SIGTERM/SIGINT, or until
the launcher that started it (``--parent-pid``) is gone.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any, Callable

import grpc

from quseccontroller import logformat, version
from quseccontroller.gateway.rpc import RpcServer, error_info, maps_errors, require_role, server_credentials
from quseccontroller.identity import CONTROLLER
from quseccontroller.parent import wire
from quseccontroller.parent.chain import NoChain, choose
from quseccontroller.parent.config import ParentConfig, ParentConfigError, load
from quseccontroller.parent.directory import Directory, ExportRefused
from quseccontroller.proto import parent_pb2, parent_pb2_grpc

LOG = logging.getLogger(__name__)
SERVICE = parent_pb2.DESCRIPTOR.services_by_name["Parent"].full_name
MAX_MESSAGE_BYTES = 4 << 20     # one export or request
READY_FILE = "parent.json"

CHAIN_CODES = {
    "unknown_sae": grpc.StatusCode.NOT_FOUND,
    "same_domain": grpc.StatusCode.FAILED_PRECONDITION,
    "ambiguous_sae": grpc.StatusCode.FAILED_PRECONDITION,
    "excluded": grpc.StatusCode.FAILED_PRECONDITION,
    "domain_down": grpc.StatusCode.UNAVAILABLE,
    "no_route": grpc.StatusCode.UNAVAILABLE,
}
EXPORT_CODES = {"stale_seq": grpc.StatusCode.FAILED_PRECONDITION,
                "too_large": grpc.StatusCode.RESOURCE_EXHAUSTED,
                "invalid": grpc.StatusCode.INVALID_ARGUMENT}


def _who(_request: Any, context: Any) -> str:
    return f"peer={context.peer()}"


class ParentServicer(parent_pb2_grpc.ParentServicer):
    def __init__(self, directory: Directory, clock: Callable[[], float] = time.monotonic) -> None:
        self.directory = directory
        self.clock = clock

    def _domain(self, context: Any, what: str) -> str:
        ident = require_role(context, CONTROLLER, what)
        dom = self.directory.domain_of(ident.name)
        if dom is None:
            raise error_info(grpc.StatusCode.PERMISSION_DENIED,
                             f"controller {ident.name!r} runs no domain this parent knows",
                             "UNKNOWN_CONTROLLER", label="unknown_controller", name=ident.name)
        return dom

    @maps_errors(event="export_refused", describe=_who)
    async def Export(self, request: parent_pb2.DomainExport, context: Any) -> parent_pb2.ExportAck:  # noqa: N802
        dom = self._domain(context, "export a domain's topology")
        try:
            self.directory.update(wire.export_of(dom, request), self.clock())
        except ExportRefused as exc:
            raise error_info(EXPORT_CODES[exc.reason], str(exc), exc.reason.upper(), label=exc.reason,
                             domain=dom) from None
        return parent_pb2.ExportAck(seq=request.seq, interval_ms=int(self.directory.interval_s * 1000))

    @maps_errors(event="chain_refused", describe=_who)
    async def ChooseChain(self, request: parent_pb2.ChainRequest, context: Any) -> parent_pb2.Chain:  # noqa: N802
        dom = self._domain(context, "ask for a domain chain")
        req = wire.request_of(dom, request)
        try:
            chain = choose(self.directory.fresh(self.clock()), req)
        except NoChain as exc:
            raise error_info(CHAIN_CODES[exc.reason], str(exc), exc.reason.upper(), label=exc.reason,
                             dst_sae=req.dst_sae) from None
        LOG.info("event=chain src_domain=%s dst_sae=%s dst_domain=%s via=%s security=%s", dom, req.dst_sae,
                 chain.dst_domain, ",".join(x.id for x in chain.crossings), chain.security)
        return wire.chain_pb(chain)


class ParentServer:
    def __init__(self, cfg: ParentConfig) -> None:
        self.directory = Directory(cfg.controllers, cfg.interval_s)
        self.servicer = ParentServicer(self.directory)
        self.rpc = RpcServer(cfg.grpc_listen, server_credentials(cfg.ca_cert, cfg.cert, cfg.key),
                             services=[(parent_pb2_grpc.add_ParentServicer_to_server, self.servicer, SERVICE)],
                             what="[listen] grpc",
                             options=[("grpc.max_receive_message_length", MAX_MESSAGE_BYTES)])

    async def start(self) -> None:
        await self.rpc.start()
        await self.rpc.set_serving(True)

    async def stop(self) -> None:
        await self.rpc.stop()


async def serve(cfg: ParentConfig, state_dir: Path, parent_pid: int = 0) -> int:
    server = ParentServer(cfg)
    await server.start()
    state_dir.mkdir(parents=True, exist_ok=True)
    ready = state_dir / READY_FILE
    tmp = ready.with_suffix(".tmp")
    tmp.write_text(json.dumps({"grpc": server.rpc.addr, "pid": os.getpid()}))
    tmp.replace(ready)
    LOG.info("event=serving grpc=%s domains=%s", server.rpc.addr, ",".join(sorted(cfg.controllers.values())))
    done = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, done.set)
    while not done.is_set():
        try:
            await asyncio.wait_for(done.wait(), 0.5)
        except asyncio.TimeoutError:
            pass
        if parent_pid and os.getppid() != parent_pid:
            LOG.warning("event=launcher_gone pid=%d", parent_pid)
            break
    await server.stop()
    ready.unlink(missing_ok=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m quseccontroller.parent",
                                description="QuSeC parent controller: chooses chains of domains for keys "
                                            "between SAEs of different domains (docs/interworking.md).")
    p.add_argument("--config", required=True, type=Path, help="parent TOML config")
    p.add_argument("--state-dir", type=Path, default=Path("."),
                   help=f"where {READY_FILE} (the bound address) goes (default: .)")
    p.add_argument("--parent-pid", type=int, default=0,
                   help="exit once this process (the launcher) is no longer our parent (default: never)")
    p.add_argument("--version", action="version", version=f"quseccontroller.parent {version()}")
    args = p.parse_args(argv)
    logformat.configure(logging.INFO)
    try:
        cfg = load(args.config)
    except ParentConfigError as exc:
        print("\n".join(exc.problems), file=sys.stderr)
        return 2
    return asyncio.run(serve(cfg, args.state_dir, args.parent_pid))
