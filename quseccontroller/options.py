"""QuSeC's option table: every controller option once, with the entry points derived from it.

Each ``Option`` says which process reads it: the os-ken app (oslo.config, ``[qusec]`` group of
``osken-manager --config-file qusec.conf quseccontroller.app``), the gateway (argparse flags of
``python -m quseccontroller.gateway``) or both. From the table come the app's oslo options
(``register``), its resolved ``AppConfig``, the gateway's flags (``add_gateway_flags``), the
gateway command line the app (spawn mode) or a launcher (standalone) builds (``gateway_argv``),
and the config file a launcher writes (``config_text``). Add an option here and every entry
point follows.
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from quseccontroller.bridge import bridge_socket_path

APP, GATEWAY, BOTH = "app", "gateway", "both"


@dataclass(frozen=True)
class Option:
    """One option: ``[qusec] name`` in the app's config file, ``--name-with-dashes`` (or
    ``flag``) on the gateway's command line."""
    name: str
    type: type            # str, Path, int, float or bool (bool: a store_true flag)
    default: Any
    help: str
    side: str             # APP, GATEWAY or BOTH
    choices: tuple[str, ...] = ()
    flag: str = ""

    @property
    def cli_flag(self) -> str:
        return self.flag or "--" + self.name.replace("_", "-")

    @property
    def in_app(self) -> bool:
        return self.side in (APP, BOTH)

    @property
    def in_gateway(self) -> bool:
        return self.side in (GATEWAY, BOTH)


OPTIONS: tuple[Option, ...] = (
    Option("state_dir", Path, "/var/lib/qusec",
           "directory for the bridge socket, gateway log and ready file (gateway.json)", BOTH),
    Option("policy", str, "", "policy TOML file (empty: allow all, one key-aware path)", APP),
    Option("inventory", str, "",
           "inventory TOML file: the nodes that may join (trust level, SAEs), their QKD links and "
           "the latency of their relay hops (empty: none; registrations are then taken as they "
           "come and policy metric \"latency\" ranks paths like \"hops\")", APP),
    Option("gateway", str, "spawn",
           "spawn: start and supervise the gRPC gateway; standalone: it is run separately", APP,
           choices=("spawn", "standalone")),
    Option("grpc_listen", str, "0.0.0.0:50051", "gateway gRPC host:port (port 0: any)", BOTH),
    Option("http_listen", str, "127.0.0.1:9301",
           "gateway plain HTTP host:port: /metrics and /healthz only (port 0: any)", BOTH),
    Option("operator_listen", str, "127.0.0.1:9302",
           "gateway operator HTTPS host:port, mutual TLS with an operator certificate: /status, "
           "/etsi015, /healthz (port 0: any)", BOTH),
    # The dashboard (docs/dashboard.md): on the operator port for operator certificates, and on
    # this loopback listener for a browser with the run's token (STATE_DIR/dashboard.token).
    Option("dashboard_listen", str, "127.0.0.1:9303",
           "dashboard token listener host:port (loopback only unless dashboard_remote = allow; "
           "port 0: any): /dashboard/ for a browser given the run's token", BOTH),
    Option("dashboard_remote", str, "refuse",
           "refuse: the dashboard token listener binds and answers loopback only; allow: any "
           "address (the token is then the only protection: prefer ssh -L)", BOTH,
           choices=("refuse", "allow")),
    Option("dashboard_max_streams", int, 16, "open dashboard streams in all; more are refused (429)",
           BOTH),
    Option("dashboard_max_streams_per_identity", int, 4,
           "open dashboard streams one operator certificate (or the token) may hold", BOTH),
    Option("ca_cert", str, "", "CA certificate the agents' client certificates chain to", BOTH),
    Option("cert", str, "", "gateway server certificate (PEM)", BOTH),
    Option("key", str, "", "gateway server private key (PEM)", BOTH),
    Option("bridge_socket", str, "",
           "Unix socket between the app and the gateway (default: STATE_DIR/bridge.sock)", BOTH,
           flag="--bridge"),
    Option("path_ttl", float, 60.0, "relay authorisation lifetime (s)", APP),
    Option("expire_interval", float, 1.0, "expiry sweep period (s)", APP),
    Option("barrier_timeout", float, 5.0,
           "seconds every switch whose flows a request changed has to confirm them with a "
           "barrier reply; a switch that does not fails the request", APP),
    Option("gone_grace", float, 5.0,
           "seconds before a node with a lost control stream is marked gone", BOTH),
    Option("ack_timeout", float, 5.0,
           "seconds every node on a granted path has to acknowledge its authorisation", GATEWAY),
    Option("register_timeout", float, 5.0,
           "seconds a new control stream has to send its Register before it is closed", BOTH),
    Option("max_streams_per_identity", int, 2,
           "open control streams one certificate may hold; a newer one closes the oldest (a "
           "reconnecting agent replaces its old stream)", BOTH),
    Option("max_streams", int, 10000,
           "open control streams in all; more are refused (RESOURCE_EXHAUSTED)", BOTH),
    # The gRPC server runs on asyncio and its calls into the app are awaited on the loop (an
    # open stream or a call in flight holds no thread); these threads do the gateway's blocking
    # work: notes to the app's event log, the dashboard's polls (started lazily).
    Option("grpc_workers", int, 64, "threads for the gateway's blocking work (event-log notes, "
           "dashboard polls); gRPC calls and open streams hold none", GATEWAY),
    Option("parent_pid", int, 0,
           "exit when this process is gone (a launcher; for a spawned gateway, the app); "
           "0: run until stopped", BOTH),
    Option("insecure", bool, False, "allow serving without TLS (testing)", GATEWAY),
    # A domain under a parent controller (its inventory names the [domain] and its [[borders]]).
    Option("parent_controller", str, "",
           "the parent controller's gRPC host:port; empty: no parent (this QuSeC runs a network "
           "of its own)", BOTH),
    Option("parent_ca_cert", str, "", "CA certificate of the parent's server certificate", BOTH),
    Option("parent_cert", str, "",
           "this QuSeC's client certificate for the parent (urn:qusec:controller:NAME, the name the "
           "parent's [[domains]] gives this domain)", BOTH),
    Option("parent_key", str, "", "the private key of --parent-cert", BOTH),
)
BY_NAME: dict[str, Option] = {o.name: o for o in OPTIONS}

# Fixed values, not options.
GATEWAY_READY_FILE = "gateway.json"   # the gateway writes its bound addresses here
GATEWAY_LOG = "gateway.log"
GATEWAY_RESTART_MIN_S = 0.5           # back-off between gateway restarts, doubling up to the max
GATEWAY_RESTART_MAX_S = 10.0
REPORT_INTERVAL_MS = 2000             # asked of agents in Registered (the shortest; the app
                                      # asks less often of a large network: QuSeCCore.report_interval_ms)
BRIDGE_CALL_TIMEOUT_S = 10.0


def default(name: str) -> Any:
    """The table's default of option ``name``."""
    return BY_NAME[name].default


def app_options() -> list[Option]:
    return [o for o in OPTIONS if o.in_app]


def gateway_options() -> list[Option]:
    return [o for o in OPTIONS if o.in_gateway]


def split_hostport(value: str, what: str = "address") -> tuple[str, int]:
    """``host:port`` (``[v6]:port`` too) -> (host, port); ValueError naming ``what``."""
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit():
        raise ValueError(f"{what}: expected host:port, got {value!r}")
    host = host.strip("[]") or "0.0.0.0"
    return host, int(port)


# ------------------------------------------------------------------------- the app (oslo)


def register(conf: Any, group: str = "qusec") -> list:
    """Register the app-side options on an oslo.config ``ConfigOpts``; returns them."""
    from oslo_config import cfg   # only the app process reads oslo options
    kinds = {str: cfg.StrOpt, Path: cfg.StrOpt, int: cfg.IntOpt, float: cfg.FloatOpt,
             bool: cfg.BoolOpt}
    opts = []
    for o in app_options():
        extra = {"choices": list(o.choices)} if o.choices else {}
        opts.append(kinds[o.type](o.name, default=o.default, help=o.help, **extra))
    conf.register_opts(opts, group=group)
    return opts


def _app_config_from_conf(cls: type, conf: Any, group: str = "qusec") -> Any:
    """The ``[qusec]`` options of ``conf``, resolved (state_dir absolute, bridge socket set)."""
    section = getattr(conf, group)
    values = {o.name: getattr(section, o.name) for o in app_options()}
    values["state_dir"] = Path(values["state_dir"]).resolve()
    values["policy"] = values["policy"] or ""
    values["inventory"] = values["inventory"] or ""
    values["bridge_socket"] = values["bridge_socket"] or bridge_socket_path(values["state_dir"])
    return cls(**values)


def _app_config_gateway_argv(self: Any) -> list[str]:
    """Command line of the companion gateway process this app spawns (its parent: us)."""
    return gateway_argv(dataclasses.asdict(self), parent_pid=os.getpid())


# The resolved [qusec] options, one field per app-side option of the table.
AppConfig = dataclasses.make_dataclass(
    "AppConfig", [(o.name, o.type, dataclasses.field(default=o.default)) for o in app_options()],
    frozen=True,
    namespace={"__module__": __name__, "__doc__": "The [qusec] options of the os-ken app, resolved.",
               "from_conf": classmethod(_app_config_from_conf),
               "gateway_argv": _app_config_gateway_argv})


# ---------------------------------------------------------------------- the gateway (flags)


def add_gateway_flags(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """The gateway-side options as argparse flags (``dest`` is the option name)."""
    for o in gateway_options():
        if o.type is bool:
            parser.add_argument(o.cli_flag, dest=o.name, action="store_true", default=o.default,
                                help=o.help)
        else:
            parser.add_argument(o.cli_flag, dest=o.name, type=o.type, default=o.default,
                                choices=o.choices or None, help=o.help)
    return parser


def gateway_argv(values: Mapping[str, Any], *, parent_pid: int) -> list[str]:
    """``python -m quseccontroller.gateway`` with the shared options of ``values`` (the app's
    resolved config, or a launcher's); options left empty take the gateway's defaults."""
    argv = [sys.executable, "-m", "quseccontroller.gateway"]
    for o in OPTIONS:
        if o.side != BOTH:
            continue
        value = parent_pid if o.name == "parent_pid" else values.get(o.name, o.default)
        if value in ("", None):
            continue
        argv += [o.cli_flag, str(value)]
    return argv


# ------------------------------------------------------------------- the launcher (config)


def config_text(values: Mapping[str, Any], group: str = "qusec") -> str:
    """The oslo.config file ``osken-manager --config-file`` reads: every app-side option,
    from ``values`` or the table's default. Unknown names are refused."""
    unknown = sorted(set(values) - {o.name for o in app_options()})
    if unknown:
        raise ValueError(f"not [{group}] options: {', '.join(unknown)}")
    lines = [f"[{group}]"]
    for o in app_options():
        value = values.get(o.name, o.default)
        lines.append(f"{o.name} = {str(value).lower() if o.type is bool else value}".rstrip())
    return "\n".join(lines) + "\n"

