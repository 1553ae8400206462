"""``qkdnet up --local`` and ``qkdnet key`` as a user runs them: network.json, keys, SIGTERM stops everything."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration
QKDNET = [sys.executable, "-m", "mininet_topos.cli"]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:   # a zombie (exited, not yet reaped by its parent) counts as gone
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return False


def test_up_local_writes_network_json_serves_keys_and_stops_on_sigterm(tmp_path: Path) -> None:
    state = tmp_path / "net"
    proc = subprocess.Popen([*QKDNET, "up", "linear6", "--local", "--no-qusec", "--state-dir", str(state)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 90
        while not (state / "network.json").exists():
            assert proc.poll() is None, proc.stdout.read()
            assert time.monotonic() < deadline, "network.json not written"
            time.sleep(0.2)
        doc = json.loads((state / "network.json").read_text())
        assert set(doc) >= {"ca_cert", "qusec", "nodes", "saes"} and set(doc["qusec"]) == {"grpc", "http", "https"}
        assert set(doc["nodes"]) == set("ABCDEF")
        for node in doc["nodes"].values():
            assert node["etsi014_url"].startswith("https://") and ":" in node["etsi004_addr"]
        assert doc["saes"]["sae-c"]["node"] == "C" and Path(doc["saes"]["sae-c"]["key"]).is_file()
        pids = [json.loads((state / n / "agent.json").read_text())["pid"] for n in "ABCDEF"]

        out = subprocess.run([*QKDNET, "key", "--network", str(state / "network.json"), "sae-c", "sae-d",
                              "-n", "2", "--json"], capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stderr
        result = json.loads(out.stdout)
        assert result["ok"] and len(result["keys"]) == 2
        assert all("key" not in k and "slave_key" not in k for k in result["keys"])   # no key bytes by default
        shown = subprocess.run([*QKDNET, "key", "--network", str(state / "network.json"), "sae-c", "sae-d",
                                "--show-keys"], capture_output=True, text=True, timeout=60)
        assert shown.returncode == 0 and "match" in shown.stdout
        bad = subprocess.run([*QKDNET, "key", "--network", str(state / "network.json"), "sae-c", "nobody"],
                             capture_output=True, text=True, timeout=60)
        assert bad.returncode == 2 and "nobody" in bad.stderr
    finally:
        proc.send_signal(signal.SIGTERM)
        output, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0, output
    assert "stopped every process" in output and "[6/6]" in output
    deadline = time.monotonic() + 10
    while any(_alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(_alive(p) for p in pids)


def test_key_without_a_network_is_a_clear_error(tmp_path: Path) -> None:
    out = subprocess.run([*QKDNET, "key", "--network", str(tmp_path / "network.json"), "a", "b"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 2 and "network.json" in out.stderr and "qkdnet up" in out.stderr
