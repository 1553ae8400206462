"""The gateway process: its flags (from the option table), start-up, ready file and shutdown.

``GatewayServer`` puts the QuSeCControl servicer on a gRPC server (health SERVING exactly
while the controller app is connected over the bridge) next to the HTTP port. ``main`` writes
``STATE_DIR/gateway.json`` once both are bound, and exits on SIGTERM/SIGINT or when the
process that started it (``--parent-pid``) is gone.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import threading

import grpc

from quseccontroller import options
from quseccontroller.bridge import bridge_socket_path
from quseccontroller.gateway.control import SERVICE, ControlServicer
from quseccontroller.gateway.httpd import serve_http
from quseccontroller.gateway.rpc import RpcServer, server_credentials
from quseccontroller.proto import control_pb2_grpc

LOG = logging.getLogger(__name__)


class GatewayServer:
    """gRPC server (control + health + reflection) and HTTP server around one servicer."""

    def __init__(self, gateway: ControlServicer, grpc_listen: str, http_listen: str,
                 credentials: grpc.ServerCredentials | None,
                 workers: int = options.default("grpc_workers")):
        self.gateway = gateway
        self.rpc = RpcServer(grpc_listen, credentials, workers=workers, services=[
            (control_pb2_grpc.add_QuSeCControlServicer_to_server, gateway, SERVICE)])
        self.grpc_addr = self.rpc.addr
        self.http = serve_http(gateway, http_listen)
        http_host, http_port = self.http.server_address[:2]
        self.http_url = f"http://{'127.0.0.1' if http_host == '0.0.0.0' else http_host}:{http_port}"
        self._stop = threading.Event()

    def start(self) -> None:
        self.rpc.start()
        self.gateway.bridge.start()
        threading.Thread(target=self._watch_bridge, name="health", daemon=True).start()

    def _watch_bridge(self) -> None:
        """SERVING exactly while the controller app is connected."""
        was = None
        while not self._stop.is_set():
            up = self.gateway.bridge.connected
            if up != was:
                self.rpc.set_serving(up)
                LOG.info("health: %s", "SERVING" if up else "NOT_SERVING (app not connected)")
                was = up
            self._stop.wait(0.1)

    def stop(self, grace: float = 1.0) -> None:
        self._stop.set()
        for s in self.gateway.sessions.snapshot().values():
            s.close()
        self.rpc.stop(grace)
        self.http.shutdown()
        self.gateway.bridge.close()


def parser() -> argparse.ArgumentParser:
    """The gateway's command line: the gateway-side options of the table."""
    p = argparse.ArgumentParser(prog="python -m quseccontroller.gateway",
                                description="QuSeC gRPC gateway: serves the control API for the "
                                            "os-ken app over a Unix-socket bridge.")
    return options.add_gateway_flags(p)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    return parser().parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    tls = (args.ca_cert, args.cert, args.key)
    if any(tls) and not all(tls):
        print("gateway: --ca-cert, --cert and --key go together", file=sys.stderr)
        return 2
    if not all(tls) and not args.insecure:
        print("gateway: mutual TLS needs --ca-cert, --cert and --key (or --insecure)", file=sys.stderr)
        return 2
    state_dir = args.state_dir
    state_dir.mkdir(parents=True, exist_ok=True)
    gateway = ControlServicer(args.bridge_socket or bridge_socket_path(state_dir),
                              gone_grace=args.gone_grace, ack_timeout=args.ack_timeout)
    server = GatewayServer(gateway, args.grpc_listen, args.http_listen,
                           server_credentials(*tls) if all(tls) else None, args.grpc_workers)
    server.start()
    ready = state_dir / options.GATEWAY_READY_FILE
    tmp = ready.with_suffix(".tmp")
    tmp.write_text(json.dumps({"grpc": server.grpc_addr, "http": server.http_url,
                               "pid": os.getpid()}))
    tmp.replace(ready)
    LOG.info("gateway serving gRPC on %s, HTTP on %s, bridge %s", server.grpc_addr,
             server.http_url, gateway.bridge.path)
    done = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: done.set())
    while not done.wait(0.5):
        if args.parent_pid and os.getppid() != args.parent_pid:
            LOG.warning("parent %d is gone; exiting", args.parent_pid)
            break
    server.stop()
    return 0
