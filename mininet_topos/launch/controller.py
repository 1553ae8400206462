"""Start and stop a QuSeC controller: ``osken-manager quseccontroller.app`` and its gateway.

``Controller(state_dir, ca_cert=..., cert=..., key=...)`` writes ``STATE_DIR/qusec.conf``
(the app's ``[qusec]`` options, from ``quseccontroller.options``), runs ``osken-manager`` as a subprocess (which starts the
gRPC gateway), and ``wait_ready()`` returns once the OpenFlow port accepts connections and
the gateway's gRPC health check says SERVING. ``of_tls=(ca, cert, key)`` serves OpenFlow over
TLS (switches then need a certificate of role switch). Logs go to ``STATE_DIR/osken.log`` and
``STATE_DIR/gateway.log``. Used by the local and the Mininet launchers, tests and benches.
"""
from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from quseccontroller import logformat, options

LOG = logging.getLogger(__name__)


class ControllerError(RuntimeError):
    """The controller did not come up (the message names the log to read)."""


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nothing listens on right now (for services that cannot report port 0)."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def _resolve(listen: str, what: str) -> tuple[str, int]:
    host, port = options.split_hostport(listen, what)
    return host, port or free_port("127.0.0.1" if host in ("0.0.0.0", "") else host)


def _connect_host(host: str) -> str:
    return "127.0.0.1" if host in ("0.0.0.0", "", "::") else host


def osken_manager() -> str:
    """The osken-manager next to this interpreter (the virtualenv's), else on PATH."""
    local = Path(sys.executable).with_name("osken-manager")
    if local.exists():
        return str(local)
    found = shutil.which("osken-manager")
    if not found:
        raise ControllerError("osken-manager not found (pip install 'os-ken>=3.1,<4')")
    return found


class Controller:
    """A running QuSeC: osken-manager with the app, plus the gateway it supervises."""

    def __init__(self, state_dir: str | os.PathLike, *, ca_cert: str, cert: str, key: str,
                 policy: str | None = None, inventory: str | os.PathLike | None = None,
                 grpc_listen: str = "127.0.0.1:0",
                 http_listen: str = "127.0.0.1:0", of_listen: str = "127.0.0.1:0",
                 operator_listen: str = "127.0.0.1:0", dashboard_listen: str = "127.0.0.1:0",
                 observe_links: bool = True, path_ttl: float = options.default("path_ttl"),
                 gone_grace: float = options.default("gone_grace"),
                 extra_args: list[str] | None = None, gateway: str = options.default("gateway"),
                 barrier_timeout: float = options.default("barrier_timeout"),
                 of_tls: tuple[str, str, str] | None = None,
                 register_timeout: float = options.default("register_timeout"),
                 max_streams_per_identity: int = options.default("max_streams_per_identity"),
                 max_streams: int = options.default("max_streams"),
                 parent: tuple[str, str, str, str] | None = None):
        self.state_dir = Path(state_dir).resolve()
        # A domain under a parent controller: (its gRPC address, its CA, this QuSeC's cert, key).
        self.parent = (parent[0], *(str(Path(p).resolve()) for p in parent[1:])) if parent else None
        self.ca_cert, self.cert, self.key = (str(Path(p).resolve()) for p in (ca_cert, cert, key))
        # OpenFlow over TLS: (CA the switches' certificates chain to, QuSeC's cert, its key).
        self.of_tls = tuple(str(Path(p).resolve()) for p in of_tls) if of_tls else None
        self.policy = str(Path(policy).resolve()) if policy else ""
        self.inventory = str(Path(inventory).resolve()) if inventory else ""
        # Fixed ports (port 0 resolved now) so a restarted gateway comes back on the same address.
        self._grpc = _resolve(grpc_listen, "grpc_listen")
        self._http = _resolve(http_listen, "http_listen")
        self._of = _resolve(of_listen, "of_listen")
        self._https = _resolve(operator_listen, "operator_listen")
        self._dashboard = _resolve(dashboard_listen, "dashboard_listen")
        self.observe_links = observe_links
        self.path_ttl = path_ttl
        self.gone_grace = gone_grace
        self.barrier_timeout = barrier_timeout
        self.register_timeout = register_timeout
        self.max_streams_per_identity = max_streams_per_identity
        self.max_streams = max_streams
        self.extra_args = list(extra_args or [])
        if gateway not in options.BY_NAME["gateway"].choices:
            raise ValueError(f"gateway: expected 'spawn' or 'standalone', got {gateway!r}")
        # "spawn": the app starts and supervises the gateway; "standalone": this launcher runs
        # it as a separate process that outlives app restarts.
        self.gateway = gateway
        self.proc: subprocess.Popen | None = None
        self.gateway_proc: subprocess.Popen | None = None
        self._log = None
        self._gw_log = None

    # -- addresses ---------------------------------------------------------------------------
    @property
    def grpc_addr(self) -> str:
        return f"{_connect_host(self._grpc[0])}:{self._grpc[1]}"

    @property
    def http_url(self) -> str:
        return f"http://{_connect_host(self._http[0])}:{self._http[1]}"

    @property
    def https_url(self) -> str:
        """QuSeC's operator interface (mutual TLS, an operator certificate): /status, /etsi015."""
        return f"https://{_connect_host(self._https[0])}:{self._https[1]}"

    @property
    def dashboard_url(self) -> str:
        """The dashboard on the loopback token listener, with the run's token ("" before the
        gateway wrote it): what a browser on this machine opens."""
        from quseccontroller.dashboard.access import read_token
        token = read_token(self.state_dir)
        base = f"http://{_connect_host(self._dashboard[0])}:{self._dashboard[1]}/dashboard/"
        return f"{base}?token={token}" if token else ""

    @property
    def of_port(self) -> int:
        return self._of[1]

    @property
    def of_host(self) -> str:
        return self._of[0]

    @property
    def config_file(self) -> Path:
        return self.state_dir / "qusec.conf"

    @property
    def log_file(self) -> Path:
        return self.state_dir / "osken.log"

    @property
    def gateway_log(self) -> Path:
        return self.state_dir / options.GATEWAY_LOG

    def option_values(self) -> dict[str, Any]:
        """This controller's [qusec] option values (the others keep the table's defaults);
        ``parent_pid`` is this launcher, so neither process outlives it."""
        return {"state_dir": self.state_dir, "policy": self.policy, "inventory": self.inventory,
                "gateway": self.gateway,
                "grpc_listen": f"{self._grpc[0]}:{self._grpc[1]}",
                "http_listen": f"{self._http[0]}:{self._http[1]}",
                "operator_listen": f"{self._https[0]}:{self._https[1]}",
                "dashboard_listen": f"{self._dashboard[0]}:{self._dashboard[1]}",
                "ca_cert": self.ca_cert, "cert": self.cert, "key": self.key,
                "path_ttl": self.path_ttl, "gone_grace": self.gone_grace,
                "barrier_timeout": self.barrier_timeout, "register_timeout": self.register_timeout,
                "max_streams_per_identity": self.max_streams_per_identity,
                "max_streams": self.max_streams, "parent_pid": os.getpid(),
                **(dict(zip(("parent_controller", "parent_ca_cert", "parent_cert", "parent_key"), self.parent))
                   if self.parent else {})}

    def write_config(self) -> Path:
        """The oslo.config file osken-manager reads (``--config-file``)."""
        self.config_file.write_text(options.config_text(self.option_values()))
        return self.config_file

    def argv(self) -> list[str]:
        log_config = self.state_dir / "osken-logging.ini"   # logfmt from os-ken's first line on
        log_config.write_text(logformat.OSKEN_LOG_CONFIG)
        argv = [osken_manager(), "--config-file", str(self.write_config()),
                "--log-config-file", str(log_config), "--ofp-listen-host", self._of[0]]
        if self.of_tls:   # osken-manager's own flags: TLS only, switch certificates required
            ca, cert, key = self.of_tls
            argv += ["--ofp-ssl-listen-port", str(self._of[1]), "--ctl-privkey", key,
                     "--ctl-cert", cert, "--ca-certs", ca]
        else:
            argv += ["--ofp-tcp-listen-port", str(self._of[1])]
        if self.observe_links:
            argv.append("--observe-links")
        return argv + self.extra_args + ["quseccontroller.app"]

    def gateway_argv(self) -> list[str]:
        """The standalone gateway's command line (the app builds its own in spawn mode)."""
        return options.gateway_argv(self.option_values(), parent_pid=os.getpid())

    # -- lifecycle ---------------------------------------------------------------------------
    def start(self) -> "Controller":
        """Start osken-manager (and, standalone, the gateway unless it is still running)."""
        if self.proc is not None and self.proc.poll() is None:
            raise ControllerError("controller already running")
        self.state_dir.mkdir(parents=True, exist_ok=True)
        if self.gateway == "spawn" or self.gateway_proc is None or self.gateway_proc.poll() is not None:
            (self.state_dir / options.GATEWAY_READY_FILE).unlink(missing_ok=True)
        if self.gateway == "standalone" and (self.gateway_proc is None
                                             or self.gateway_proc.poll() is not None):
            self._gw_log = open(self.gateway_log, "ab")
            self.gateway_proc = subprocess.Popen(self.gateway_argv(), stdout=self._gw_log,
                                                 stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                                 cwd=self.state_dir, start_new_session=True)
        argv = self.argv()
        self._log = open(self.log_file, "ab")
        warnings = ",".join(filter(None, (os.environ.get("PYTHONWARNINGS"), logformat.OSKEN_PYTHONWARNINGS)))
        env = dict(os.environ, PYTHONUNBUFFERED="1", PYTHONWARNINGS=warnings)
        LOG.info("starting QuSeC: %s", " ".join(argv))
        self.proc = subprocess.Popen(argv, stdout=self._log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, env=env, cwd=self.state_dir,
                                     start_new_session=True)
        return self

    def _check_alive(self) -> None:
        if self.proc is None:
            raise ControllerError("controller not started")
        if self.proc.poll() is not None:
            raise ControllerError(f"osken-manager exited with {self.proc.returncode}; "
                                  f"see {self.log_file}:\n{self.tail(self.log_file)}")
        if self.gateway_proc is not None and self.gateway_proc.poll() is not None:
            raise ControllerError(f"gateway exited with {self.gateway_proc.returncode}; "
                                  f"see {self.gateway_log}:\n{self.tail(self.gateway_log)}")

    @staticmethod
    def tail(path: Path, lines: int = 25) -> str:
        try:
            return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def of_listening(self) -> bool:
        try:
            with socket.create_connection((_connect_host(self.of_host), self.of_port), timeout=0.5):
                return True
        except OSError:
            return False

    def grpc_serving(self, timeout: float = 1.0) -> bool:
        """The gateway's gRPC health check says SERVING (mutual TLS with the QuSeC cert)."""
        import grpc
        from grpc_health.v1 import health_pb2, health_pb2_grpc
        creds = grpc.ssl_channel_credentials(Path(self.ca_cert).read_bytes(),
                                             Path(self.key).read_bytes(), Path(self.cert).read_bytes())
        try:
            with grpc.secure_channel(self.grpc_addr, creds) as ch:
                resp = health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(service=""),
                                                            timeout=timeout)
                return resp.status == health_pb2.HealthCheckResponse.SERVING
        except grpc.RpcError:
            return False

    def wait_ready(self, timeout: float = 30.0) -> "Controller":
        """Block until OpenFlow listens and gRPC health is SERVING; ControllerError otherwise."""
        deadline = time.monotonic() + timeout
        of_ok = grpc_ok = False
        while time.monotonic() < deadline:
            self._check_alive()
            of_ok = of_ok or self.of_listening()
            if of_ok and (self.state_dir / options.GATEWAY_READY_FILE).exists():
                grpc_ok = self.grpc_serving()
                if grpc_ok:
                    return self
            time.sleep(0.1)
        raise ControllerError(
            f"controller not ready within {timeout:.0f}s (OpenFlow listening: {of_ok}, gRPC "
            f"SERVING: {grpc_ok}); see {self.log_file} and {self.gateway_log}:\n"
            f"{self.tail(self.log_file)}\n--- gateway ---\n{self.tail(self.gateway_log)}")

    def gateway_info(self) -> dict:
        """What the running gateway wrote to STATE_DIR/gateway.json (pid, addresses)."""
        return json.loads((self.state_dir / options.GATEWAY_READY_FILE).read_text())

    def stop_app(self, timeout: float = 10.0) -> None:
        """Stop osken-manager only (a standalone gateway keeps serving and waits for it)."""
        proc, self.proc = self.proc, None
        _terminate(proc, timeout)

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM osken-manager (a spawned gateway exits with it) and a standalone gateway,
        then SIGKILL what is left."""
        gw, self.gateway_proc = self.gateway_proc, None
        _terminate(gw, timeout)
        if self._gw_log is not None:
            self._gw_log.close()
            self._gw_log = None
        proc, self.proc = self.proc, None
        gw_pid = None
        try:
            gw_pid = self.gateway_info().get("pid")
        except (OSError, ValueError):
            pass
        _terminate(proc, timeout)
        if gw_pid:
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline and _alive(gw_pid):
                time.sleep(0.05)
            if _alive(gw_pid):
                os.kill(gw_pid, signal.SIGKILL)
        if self._log is not None:
            self._log.close()
            self._log = None

    def __enter__(self) -> "Controller":
        """Started and ready; a controller that does not become ready is stopped again."""
        self.start()
        try:
            return self.wait_ready()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _terminate(proc: subprocess.Popen | None, timeout: float) -> None:
    """SIGTERM a child we started, SIGKILL it if it is still there after ``timeout``."""
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie child of someone else still answers kill(0); check its state.
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except (OSError, IndexError):
        return False
