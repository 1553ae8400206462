"""The gateway's HTTP port: /metrics (Prometheus), /etsi015, /healthz and /status."""
from __future__ import annotations

import json
import logging
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from quseccontroller.bridge import BridgeError
from quseccontroller.gateway.control import ControlServicer
from quseccontroller.options import split_hostport

LOG = logging.getLogger(__name__)


class HttpHandler(BaseHTTPRequestHandler):
    """/metrics, /etsi015, /healthz (and /status) on the gateway's HTTP port."""

    gateway: ControlServicer  # set on the subclass made by serve_http

    def do_GET(self) -> None:  # noqa: N802 - stdlib name
        path = self.path.split("?", 1)[0]
        gw = self.gateway
        if path == "/metrics":
            gw.refresh_gauges()
            self._send(200, generate_latest(gw.metrics.registry), CONTENT_TYPE_LATEST)
        elif path == "/etsi015":
            try:
                body = gw.bridge.call("state", {}, timeout=5.0)
            except BridgeError as exc:
                self._json(503, {"message": f"controller app unavailable: {exc.message}"})
                return
            self._json(200, body)
        elif path == "/healthz":
            status = gw.refresh_gauges() if gw.bridge.connected else {}
            ok = bool(status)
            self._json(200 if ok else 503, {"status": "SERVING" if ok else "NOT_SERVING",
                                            "app_connected": gw.bridge.connected,
                                            "nodes": gw.sessions.nodes(),
                                            "switches": len(status.get("switches", []))})
        elif path == "/status":
            status = gw.refresh_gauges()
            self._json(200 if status else 503, status or {"message": "controller app unavailable"})
        else:
            self._json(404, {"message": f"no such resource {path}; try /metrics, /etsi015, /healthz"})

    def _json(self, code: int, body: Any) -> None:
        self._send(code, json.dumps(body, indent=1, default=str).encode(), "application/json")

    def _send(self, code: int, body: bytes, ctype: str) -> None:
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, fmt: str, *args: Any) -> None:
        LOG.debug("http %s " + fmt, self.client_address[0], *args)


def serve_http(gateway: ControlServicer, listen: str) -> ThreadingHTTPServer:
    """Serve ``gateway``'s HTTP side on ``listen`` (port 0: any) in a daemon thread."""
    host, port = split_hostport(listen, "--http-listen")
    handler = type("BoundHttpHandler", (HttpHandler,), {"gateway": gateway})
    server = ThreadingHTTPServer((host, port), handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="http", daemon=True).start()
    return server
