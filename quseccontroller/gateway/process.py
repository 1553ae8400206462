"""The gateway process: its flags (from the option table), start-up, ready file and shutdown.

``GatewayServer`` puts the QuSeCControl servicer on an asyncio gRPC server (health SERVING
exactly while the controller app is connected over the bridge) next to the plain HTTP port
and the operator's HTTPS port. ``main`` runs the event loop, writes ``STATE_DIR/gateway.json``
once everything is bound, and exits on SIGTERM/SIGINT or when the process that started it
(``--parent-pid``) is gone.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import signal
import sys
from concurrent.futures import ThreadPoolExecutor

import grpc

from quseccontroller import logformat, options, version
from quseccontroller.bridge import bridge_socket_path
from quseccontroller.dashboard.access import DashboardAccessError, check_bind
from quseccontroller.dashboard.web import DashboardServer
from quseccontroller.gateway.control import SERVICE, ControlServicer
from quseccontroller.gateway.httpd import serve_http
from quseccontroller.gateway.rpc import RpcServer, https_context, pending_options, server_credentials
from quseccontroller.proto import control_pb2_grpc

LOG = logging.getLogger(__name__)
LAG_PROBE_S = 0.1   # the loop-lag probe's timer


def _url(scheme: str, server) -> str:
    host, port = server.server_address[:2]
    return f"{scheme}://{'127.0.0.1' if host == '0.0.0.0' else host}:{port}"


class GatewayServer:
    """gRPC server (control + health + reflection), HTTP and operator HTTPS around one
    servicer. Make it, start it and stop it inside the event loop that runs it."""

    def __init__(self, gateway: ControlServicer, grpc_listen: str, http_listen: str,
                 credentials: grpc.ServerCredentials | None, *, operator_listen: str = "",
                 tls_files: tuple[str, str, str] | None = None, dashboard: DashboardServer | None = None):
        self.gateway = gateway
        gateway.bind(asyncio.get_running_loop())
        self.rpc = RpcServer(grpc_listen, credentials, services=[
            (control_pb2_grpc.add_QuSeCControlServicer_to_server, gateway, SERVICE)],
            options=pending_options(gateway.limits.total))
        self.grpc_addr = self.rpc.addr
        # The operator port needs the PKI (mutual TLS); without one (--insecure) there is none.
        self.https = None
        if operator_listen and tls_files:
            self.https = serve_http(gateway, operator_listen, tls=https_context(*tls_files),
                                    what="--operator-listen", dashboard=dashboard.hub if dashboard else None)
        self.https_url = _url("https", self.https) if self.https else ""
        self.http = serve_http(gateway, http_listen, operator_url=self.https_url)
        self.http_url = _url("http", self.http)
        self._watch: asyncio.Task | None = None
        self._lag: asyncio.Task | None = None

    async def start(self) -> None:
        await self.rpc.start()
        self.gateway.bridge.start()
        self._watch = asyncio.ensure_future(self._watch_bridge())
        self._lag = asyncio.ensure_future(self._loop_lag())

    async def _loop_lag(self, period: float = LAG_PROBE_S) -> None:
        """How late the loop runs a timer (``qusec_gateway_loop_lag_seconds``): what every push,
        ack and call waits on a busy gateway."""
        loop = asyncio.get_running_loop()
        while True:
            t = loop.time()
            await asyncio.sleep(period)
            self.gateway.metrics.loop_lag.observe(max(0.0, loop.time() - t - period))

    async def _watch_bridge(self) -> None:
        """SERVING exactly while the controller app is connected."""
        was = None
        while True:
            up = self.gateway.bridge.connected
            if up != was:
                await self.rpc.set_serving(up)
                LOG.info("health: %s", "SERVING" if up else "NOT_SERVING (app not connected)")
                was = up
            await asyncio.sleep(0.1)

    async def stop(self, grace: float = 1.0) -> None:
        for task in (self._watch, self._lag):
            if task is not None:
                task.cancel()
        for s in self.gateway.sessions.snapshot().values():
            s.close()
        await self.rpc.stop(grace)
        for http in (self.http, self.https):
            if http is not None:
                http.shutdown()
        self.gateway.bridge.close()


def parser() -> argparse.ArgumentParser:
    """The gateway's command line: the gateway-side options of the table."""
    p = argparse.ArgumentParser(prog="python -m quseccontroller.gateway",
                                description="QuSeC gRPC gateway: serves the control API for the "
                                            "os-ken app over a Unix-socket bridge.")
    p.add_argument("--version", action="version", version=f"quseccontroller.gateway {version()}")
    return options.add_gateway_flags(p)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    return parser().parse_args(argv)


async def serve(args: argparse.Namespace) -> int:
    """Run the gateway until a signal, or until ``--parent-pid`` is gone."""
    loop = asyncio.get_running_loop()
    # Calls into the app block a thread each while they wait; open streams hold none.
    loop.set_default_executor(ThreadPoolExecutor(max_workers=args.grpc_workers,
                                                 thread_name_prefix="bridge-call"))
    tls = (args.ca_cert, args.cert, args.key)
    state_dir = args.state_dir
    state_dir.mkdir(parents=True, exist_ok=True)
    gateway = ControlServicer(args.bridge_socket or bridge_socket_path(state_dir),
                              gone_grace=args.gone_grace, ack_timeout=args.ack_timeout,
                              register_timeout=args.register_timeout,
                              max_streams_per_identity=args.max_streams_per_identity,
                              max_streams=args.max_streams)
    dashboard = DashboardServer(gateway, state_dir, listen=args.dashboard_listen,
                                remote=args.dashboard_remote, max_streams=args.dashboard_max_streams,
                                max_per_identity=args.dashboard_max_streams_per_identity)
    server = GatewayServer(gateway, args.grpc_listen, args.http_listen,
                           server_credentials(*tls) if all(tls) else None,
                           operator_listen=args.operator_listen, tls_files=tls if all(tls) else None,
                           dashboard=dashboard)
    await server.start()
    await dashboard.start()
    link = None
    if args.parent_controller:
        from quseccontroller.gateway.parentlink import ParentLink
        from quseccontroller.parent.client import ParentClient
        link = ParentLink(gateway, ParentClient(args.parent_controller, args.parent_ca_cert, args.parent_cert,
                                                args.parent_key), args.parent_controller)
        gateway.parent_link = link
        link.start()
    ready = state_dir / options.GATEWAY_READY_FILE
    tmp = ready.with_suffix(".tmp")
    tmp.write_text(json.dumps({"grpc": server.grpc_addr, "http": server.http_url,
                               "https": server.https_url, "dashboard": dashboard.url,
                               "pid": os.getpid()}))
    tmp.replace(ready)
    LOG.info("gateway serving gRPC on %s, HTTP on %s, operator HTTPS on %s, bridge %s",
             server.grpc_addr, server.http_url, server.https_url or "-", gateway.bridge.path)
    done = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, done.set)
    while not done.is_set():
        try:
            await asyncio.wait_for(done.wait(), 0.5)
        except asyncio.TimeoutError:
            pass
        if args.parent_pid and os.getppid() != args.parent_pid:
            LOG.warning("parent %d is gone; exiting", args.parent_pid)
            break
    if link is not None:
        await link.stop()
    await dashboard.stop()
    await server.stop()
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logformat.configure(logging.INFO)   # logfmt lines on stderr, the launcher's gateway.log
    tls = (args.ca_cert, args.cert, args.key)
    if any(tls) and not all(tls):
        print("gateway: --ca-cert, --cert and --key go together", file=sys.stderr)
        return 2
    parent_tls = (args.parent_ca_cert, args.parent_cert, args.parent_key)
    if args.parent_controller and not all(parent_tls):
        print("gateway: --parent-controller needs --parent-ca-cert, --parent-cert and --parent-key "
              "(the parent serves mutual TLS only)", file=sys.stderr)
        return 2
    if args.dashboard_listen:
        try:
            check_bind(options.split_hostport(args.dashboard_listen, "--dashboard-listen")[0],
                       args.dashboard_remote)
        except (DashboardAccessError, ValueError) as exc:
            print(f"gateway: {exc}", file=sys.stderr)
            return 2
    if not all(tls) and not args.insecure:
        print("gateway: mutual TLS needs --ca-cert, --cert and --key (or --insecure)", file=sys.stderr)
        return 2
    return asyncio.run(serve(args))
