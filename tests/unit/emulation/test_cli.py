"""The qkdnet dispatcher: every sub-command and benchmark is registered and documented."""
import subprocess
import sys

import pytest

from mininet_topos import cli
from mininet_topos.cli import bench as benchcmd


def _choices(parser, dest):
    action = next(a for a in parser._actions if getattr(a, "dest", None) == dest)
    return action.choices


def test_contract_subcommands_exist() -> None:
    commands = _choices(cli.build_parser(), "command")
    for name in ("up", "demo", "check", "bench", "pki", "key", "topo", "clean"):
        assert name in commands, name
        assert commands[name].format_help().strip()


def test_every_benchmark_is_registered() -> None:
    benches = _choices(_choices(cli.build_parser(), "command")["bench"], "bench")
    assert set(benches) >= {"topology", "routing", "setup", "latency", "throughput", "scale"}
    assert len(benches) == len(benchcmd.BENCH_MODULES) + 1  # mininet_topos.bench.kms has two


def test_no_command_prints_help_and_fails(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main([]) == 2
    assert "COMMAND" in capsys.readouterr().out


def test_unknown_command_is_a_usage_error() -> None:
    proc = subprocess.run([sys.executable, "-m", "mininet_topos.cli", "frobnicate"],
                          capture_output=True, text=True)
    assert proc.returncode == 2
    assert "invalid choice: 'frobnicate'" in proc.stderr


def test_qkdnet_mn_runs_this_environments_mn_with_the_qkd_topologies(monkeypatch):
    import os
    import sys
    from pathlib import Path

    from mininet_topos.cli import mn
    ran = []
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    monkeypatch.setattr(os, "execv", lambda path, argv: ran.append(argv))
    assert cli.main(["-v", "mn", "--topo", "qkdlinear,4", "--test", "pingall", "x"]) == 1
    assert ran == [[sys.executable, str(Path(sys.executable).with_name("mn")), "--custom",
                    str(mn.qkdtopos()), "--topo", "qkdlinear,4", "--test", "pingall", "x"]]
    assert mn.qkdtopos().name == "qkdtopos.py" and mn.qkdtopos().exists()
