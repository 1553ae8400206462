"""``--version`` on every command prints ``NAME VERSION`` from the installed qusec distribution."""
from __future__ import annotations

import importlib.metadata
import subprocess
import sys
from pathlib import Path

import pytest

import kms_agents
import quseccontroller

BIN = Path(sys.executable).parent
VERSION = importlib.metadata.version("qusec")


def run(argv: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run(argv, capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)


@pytest.mark.parametrize("argv,name", [
    ([str(BIN / "qkdnet"), "--version"], "qkdnet"),
    ([str(BIN / "qkdnet"), "check", "--version"], "qkdnet"),            # a sub-command
    ([str(BIN / "qkdnet"), "bench", "latency", "--version"], "qkdnet"),  # a sub-sub-command
    ([str(BIN / "kms-agent"), "--version"], "kms-agent"),
    ([sys.executable, "-m", "quseccontroller.gateway", "--version"], "quseccontroller.gateway"),
])
def test_version_names_the_command_and_the_installed_version(argv, name) -> None:
    r = run(argv)
    assert (r.returncode, r.stdout) == (0, f"{name} {VERSION}\n"), r.stderr


def test_osken_manager_prints_os_kens_version() -> None:
    r = run([str(BIN / "osken-manager"), "--version"])
    assert (r.returncode, r.stdout.strip()) == (0, f"osken-manager {importlib.metadata.version('os-ken')}"), \
        r.stderr


@pytest.mark.parametrize("package", [quseccontroller, kms_agents])
def test_version_without_the_installed_distribution_is_unknown(package, monkeypatch) -> None:
    assert package.version() == VERSION

    def missing(name: str) -> str:
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(importlib.metadata, "version", missing)
    assert package.version() == "unknown"
