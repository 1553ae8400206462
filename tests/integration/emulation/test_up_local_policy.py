"""``qkdnet up --local --policy FILE``: QuSeC runs with that policy file (and --no-cli is accepted)."""
from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

QKDNET = str(Path(sys.executable).with_name("qkdnet"))
TOPO = """[network]
name = "pair"
[[nodes]]
id = "A"
[[nodes]]
id = "B"
[[links]]
a = "A"
b = "B"
length_km = 5
[[saes]]
id = "sae-a"
node = "A"
[[saes]]
id = "sae-b"
node = "B"
"""
POLICY = '[default]\naction = "allow"\npaths = 1\n\n[[rules]]\nname = "no-b"\nmatch = { dst_node = "B" }\naction = "deny"\n'


def test_local_up_runs_qusec_with_the_given_policy(tmp_path):
    (tmp_path / "pair.toml").write_text(TOPO)
    (tmp_path / "policy.toml").write_text(POLICY)
    state = tmp_path / "state"
    proc = subprocess.Popen([QKDNET, "up", str(tmp_path / "pair.toml"), "--local", "--no-cli",
                             "--policy", str(tmp_path / "policy.toml"), "--state-dir", str(state)],
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)
    try:
        deadline = time.monotonic() + 60
        while not (state / "network.json").exists():
            assert proc.poll() is None, proc.stdout.read()
            assert time.monotonic() < deadline, "no network.json after 60 s"
            time.sleep(0.2)
        doc = json.loads((state / "network.json").read_text())
        assert doc["qusec"]["http"], "QuSeC did not start"
        from mininet_topos.launch.operator import OperatorClient
        st = OperatorClient.of_network(doc).status()   # /status is the operator's
        assert st["core"]["policy"] == str((tmp_path / "policy.toml").resolve())
    finally:
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0, out
    assert "stopped every process" in out
