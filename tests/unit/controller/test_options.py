"""The option table is the one source of the app's [qusec] options, the gateway's flags, the
gateway command line the app spawns and what the launcher writes and starts."""
from __future__ import annotations

import configparser
import inspect
import os
from pathlib import Path

import pytest
from oslo_config import cfg as oslo

from mininet_topos.launch.controller import Controller
from quseccontroller import app as app_mod
from quseccontroller import options
from quseccontroller.bridge import bridge_socket_path
from quseccontroller.gateway import process

# Today's names and defaults: config files, service units and scripts depend on them.
APP_DEFAULTS = {"state_dir": "/var/lib/qusec", "policy": "", "inventory": "", "gateway": "spawn",
                "grpc_listen": "0.0.0.0:50051", "http_listen": "127.0.0.1:9301", "ca_cert": "",
                "cert": "", "key": "", "bridge_socket": "", "path_ttl": 60.0,
                "expire_interval": 1.0, "barrier_timeout": 5.0, "gone_grace": 5.0, "parent_pid": 0,
                "operator_listen": "127.0.0.1:9302", "register_timeout": 5.0,
                "max_streams_per_identity": 2, "max_streams": 10000, "parent_controller": "",
                "parent_ca_cert": "", "parent_cert": "", "parent_key": "",
                "dashboard_listen": "127.0.0.1:9303", "dashboard_remote": "refuse",
                "dashboard_max_streams": 16, "dashboard_max_streams_per_identity": 4}
GATEWAY_FLAGS = {"--bridge", "--state-dir", "--grpc-listen", "--http-listen", "--ca-cert", "--cert",
                 "--key", "--gone-grace", "--ack-timeout", "--grpc-workers", "--parent-pid",
                 "--insecure", "--operator-listen", "--register-timeout",
                 "--max-streams-per-identity", "--max-streams", "--parent-controller",
                 "--parent-ca-cert", "--parent-cert", "--parent-key", "--dashboard-listen",
                 "--dashboard-remote", "--dashboard-max-streams",
                 "--dashboard-max-streams-per-identity"}


def _gateway_defaults() -> dict:
    return {o.name: Path(o.default) if o.type is Path else o.default
            for o in options.gateway_options()}


def test_the_apps_oslo_options_are_the_tables() -> None:
    registered = {o.dest: o.default for o in app_mod.OPTS}
    assert registered == {o.name: o.default for o in options.app_options()} == APP_DEFAULTS
    assert set(app_mod.CONF.qusec) == set(APP_DEFAULTS)   # nothing registered by hand besides
    choices = {o.dest: list(o.type.choices) for o in app_mod.OPTS if getattr(o.type, "choices", None)}
    assert choices == {"gateway": ["spawn", "standalone"], "dashboard_remote": ["refuse", "allow"]}


def test_the_gateways_flags_are_the_tables() -> None:
    p = process.parser()
    flags = {a.option_strings[0]: a.dest for a in p._actions if a.dest not in ("help", "version")}
    assert set(flags) == GATEWAY_FLAGS
    assert set(flags.values()) == {o.name for o in options.gateway_options()}
    assert vars(process.parse_args([])) == _gateway_defaults()
    # An option both processes read has one default on both sides.
    shared = [o for o in options.OPTIONS if o.side == options.BOTH]
    assert {o.name for o in shared} <= set(APP_DEFAULTS)
    for o in shared:
        assert str(vars(process.parse_args([]))[o.name]) == str(APP_DEFAULTS[o.name]), o.name


def test_the_spawned_gateway_gets_the_apps_shared_options(tmp_path: Path) -> None:
    conf = oslo.ConfigOpts()
    options.register(conf)
    conf([], project="qusec", default_config_files=[])
    conf.set_override("state_dir", str(tmp_path), group="qusec")
    conf.set_override("ca_cert", "/etc/qusec/ca.pem", group="qusec")
    cfg = options.AppConfig.from_conf(conf)
    argv = cfg.gateway_argv()
    assert argv[1:3] == ["-m", "quseccontroller.gateway"]
    args = vars(process.parse_args(argv[3:]))
    for o in options.OPTIONS:
        if o.side == options.BOTH and o.name != "parent_pid":
            assert str(args[o.name]) == str(getattr(cfg, o.name)), o.name
    assert args["parent_pid"] == os.getpid()   # the app itself: the gateway exits with it
    assert args["bridge_socket"] == cfg.bridge_socket and args["state_dir"] == tmp_path.resolve()


def test_the_launcher_writes_every_app_option_and_starts_the_gateway_from_the_table(tmp_path: Path) -> None:
    sig = inspect.signature(Controller).parameters
    for name in ("path_ttl", "gone_grace", "barrier_timeout", "gateway", "register_timeout",
                 "max_streams_per_identity", "max_streams"):
        assert sig[name].default == options.default(name), name
    c = Controller(tmp_path / "qusec", ca_cert="ca.pem", cert="qusec.pem", key="qusec.key",
                   grpc_listen="127.0.0.1:50051", http_listen="127.0.0.1:9301",
                   of_listen="127.0.0.1:6653", operator_listen="127.0.0.1:9302",
                   dashboard_listen="127.0.0.1:9303")
    c.state_dir.mkdir()
    path = c.write_config()
    ini = configparser.ConfigParser(interpolation=None)
    ini.read(path)
    assert set(ini["qusec"]) == set(APP_DEFAULTS)
    conf = oslo.ConfigOpts()
    options.register(conf)
    conf(["--config-file", str(path)], project="qusec", default_config_files=[])
    cfg = options.AppConfig.from_conf(conf)
    assert cfg.state_dir == c.state_dir and cfg.grpc_listen == "127.0.0.1:50051"
    assert (cfg.ca_cert, cfg.cert, cfg.key) == (c.ca_cert, c.cert, c.key)
    assert cfg.parent_pid == os.getpid()
    for name in ("path_ttl", "gone_grace", "barrier_timeout", "expire_interval", "gateway", "policy"):
        assert getattr(cfg, name) == APP_DEFAULTS[name], name
    args = vars(process.parse_args(c.gateway_argv()[3:]))
    assert c.gateway_argv()[1:3] == ["-m", "quseccontroller.gateway"]
    assert args["state_dir"] == c.state_dir and args["grpc_listen"] == "127.0.0.1:50051"
    assert args["http_listen"] == "127.0.0.1:9301" and args["parent_pid"] == os.getpid()
    assert (args["ca_cert"], args["cert"], args["key"]) == (c.ca_cert, c.cert, c.key)
    assert args["gone_grace"] == c.gone_grace
    assert args["operator_listen"] == c.https_url.removeprefix("https://")
    assert args["dashboard_listen"] == "127.0.0.1:9303"
    # No bridge flag: both sides then use the one default next to the state dir.
    assert args["bridge_socket"] == "" and cfg.bridge_socket == bridge_socket_path(c.state_dir)


def test_config_text_refuses_unknown_options() -> None:
    with pytest.raises(ValueError, match="grpc_workers"):
        options.config_text({"grpc_workers": 4})   # a gateway-only option


def test_the_launcher_serves_openflow_over_tls_with_the_switch_ca(tmp_path: Path) -> None:
    ports = dict(grpc_listen="127.0.0.1:50051", http_listen="127.0.0.1:9301",
                 operator_listen="127.0.0.1:9302", of_listen="127.0.0.1:6653",
                 dashboard_listen="127.0.0.1:9303")
    c = Controller(tmp_path / "qusec", ca_cert="ca.pem", cert="qusec.pem", key="qusec.key",
                   of_tls=("ca.pem", "qusec.pem", "qusec.key"), **ports)
    c.state_dir.mkdir()
    argv = c.argv()
    flag = {argv[i]: argv[i + 1] for i in range(1, len(argv) - 1) if argv[i].startswith("--ctl")
            or argv[i] in ("--ca-certs", "--ofp-ssl-listen-port")}
    assert flag == {"--ofp-ssl-listen-port": "6653", "--ctl-privkey": c.key, "--ctl-cert": c.cert,
                    "--ca-certs": c.ca_cert}
    assert "--ofp-tcp-listen-port" not in argv
    plain = Controller(tmp_path / "plain", ca_cert="ca.pem", cert="qusec.pem", key="qusec.key",
                       **ports)
    plain.state_dir.mkdir()
    assert "--ofp-tcp-listen-port" in plain.argv() and "--ctl-cert" not in plain.argv()
