"""QuSeC controller settings: every default (ports, timeouts, paths) in one place.

The os-ken app reads these through oslo.config options in the ``[qusec]`` group
(``osken-manager --config-file qusec.conf quseccontroller.app``); the gateway
takes them as command-line flags; the launcher writes the config file. Change a
default here and every entry point follows.
"""
from __future__ import annotations

import hashlib
import os
import sys
from pathlib import Path

# OpenFlow: osken-manager's own --ofp-listen-host / --ofp-tcp-listen-port decide it.
OF_PORT = 6653
OF_HOST = "0.0.0.0"

# The gateway process (gRPC control API and the HTTP observability port).
GRPC_LISTEN = "0.0.0.0:50051"
HTTP_LISTEN = "127.0.0.1:9301"
# "spawn": the app starts and supervises the gateway; "standalone": run it yourself.
GATEWAY_MODE = "spawn"

STATE_DIR = "/var/lib/qusec"
BRIDGE_SOCKET_NAME = "bridge.sock"
GATEWAY_READY_FILE = "gateway.json"   # the gateway writes its bound addresses here
GATEWAY_LOG = "gateway.log"

# Core / app timing.
PATH_TTL_S = 60.0            # lifetime of a relay authorisation and its flows
EXPIRE_INTERVAL_S = 1.0      # how often the app calls core.expire(now)
BARRIER_TIMEOUT_S = 5.0      # [qusec] barrier_timeout: a switch whose flows a request changed
                             # and that does not confirm them in time fails the request
GATEWAY_RESTART_MIN_S = 0.5  # back-off between gateway restarts, doubling up to the max
GATEWAY_RESTART_MAX_S = 10.0

# Control service behaviour (gateway side).
GONE_GRACE_S = 5.0           # a lost control stream marks the node gone after this
REPORT_INTERVAL_MS = 2000    # asked of agents in Registered
AUTH_ACK_TIMEOUT_S = 5.0     # every Authorise must be acked by its agent within this
BRIDGE_CALL_TIMEOUT_S = 10.0
# gRPC thread pool: every open control stream holds one worker for its lifetime, so this
# bounds agents + concurrent unary calls (threads start lazily; idle ones cost little).
GRPC_WORKERS = 512

# Unix socket paths are limited to 107 bytes; long state dirs get a short alias.
_SUN_PATH_MAX = 100


def bridge_socket_path(state_dir: str | os.PathLike) -> str:
    """The app<->gateway Unix socket for ``state_dir`` (short enough for AF_UNIX)."""
    path = str(Path(state_dir).resolve() / BRIDGE_SOCKET_NAME)
    if len(path.encode()) <= _SUN_PATH_MAX:
        return path
    digest = hashlib.sha1(path.encode()).hexdigest()[:16]
    return f"/tmp/qusec-bridge-{digest}.sock"


def split_hostport(value: str, what: str = "address") -> tuple[str, int]:
    """``host:port`` (``[v6]:port`` too) -> (host, port); ValueError naming ``what``."""
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit():
        raise ValueError(f"{what}: expected host:port, got {value!r}")
    host = host.strip("[]") or "0.0.0.0"
    return host, int(port)


def python() -> str:
    """The interpreter that runs the gateway (the same virtualenv as the app)."""
    return sys.executable
