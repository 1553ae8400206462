"""`pip install .` gives the controller and the agent without Mininet (the `emulation` extra).

The processes run with an import hook that makes every `mininet` import fail, as it would in a
virtualenv without the extra: the agent's and the gateway's commands and `osken-manager
quseccontroller.app` still start, and `qkdnet` says what it needs instead of a traceback."""
from __future__ import annotations

import configparser
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.helpers import ROOT

pytestmark = pytest.mark.integration

BIN = Path(sys.executable).parent
BLOCKER = '''import sys
class _NoMininet:
    def find_spec(self, name, path=None, target=None):
        if name == "mininet" or name.startswith("mininet."):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None
sys.meta_path.insert(0, _NoMininet())
'''


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    (tmp_path / "sitecustomize.py").write_text(BLOCKER)
    return {**os.environ, "PYTHONPATH": str(tmp_path)}


def run(argv: list[str], env: dict[str, str], **kw) -> subprocess.CompletedProcess:
    return subprocess.run(argv, env=env, capture_output=True, text=True, timeout=60, **kw)


def test_mininet_is_only_an_extra() -> None:
    cfg = configparser.ConfigParser()
    cfg.read(ROOT / "setup.cfg")
    assert "mininet" not in cfg["options"]["install_requires"]
    assert "mininet" in cfg["options.extras_require"]["emulation"]


def test_the_blocker_really_blocks(env) -> None:
    proc = run([sys.executable, "-c", "import mininet.net"], env)
    assert proc.returncode == 1 and "No module named 'mininet" in proc.stderr


def test_agent_and_gateway_commands_without_mininet(env) -> None:
    agent = run([str(BIN / "kms-agent"), "--help"], env)
    assert agent.returncode == 0 and "--config" in agent.stdout, agent.stderr
    gateway = run([sys.executable, "-m", "quseccontroller.gateway", "--help"], env)
    assert gateway.returncode == 0 and "--grpc-listen" in gateway.stdout, gateway.stderr
    code = ("import sys, kms_agents.agent, quseccontroller.app; "
            "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('mininet', 'mininet_topos')); "
            "print(bad); sys.exit(bool(bad))")
    proc = run([sys.executable, "-c", code], env)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_osken_manager_runs_the_app_without_mininet(env, tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    conf = tmp_path / "qusec.conf"
    conf.write_text(f"[qusec]\nstate_dir = {tmp_path / 'state'}\ngateway = standalone\n")
    log = open(tmp_path / "osken.log", "wb")
    proc = subprocess.Popen([str(BIN / "osken-manager"), "--config-file", str(conf),
                             "--ofp-listen-host", "127.0.0.1", "--ofp-tcp-listen-port", str(port),
                             "quseccontroller.app"], env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                time.sleep(0.2)
        assert proc.poll() is None, (tmp_path / "osken.log").read_text()
        socket.create_connection(("127.0.0.1", port), timeout=2).close()   # OpenFlow is served
    finally:
        proc.terminate()
        proc.wait(10)
        log.close()
    assert "QuSeC app started" in (tmp_path / "osken.log").read_text()


def test_qkdnet_without_mininet_says_what_it_needs(env) -> None:
    assert run([str(BIN / "qkdnet"), "check", "metro8"], env).returncode == 0
    up = run([str(BIN / "qkdnet"), "up", "linear6", "--no-cli", "--state-dir", "/nonexistent/x"], env)
    if os.geteuid() == 0:
        assert up.returncode == 2 and "Mininet is not installed" in up.stderr, up.stderr
    else:
        assert up.returncode == 2 and "needs root" in up.stderr, up.stderr
