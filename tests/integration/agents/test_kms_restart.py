"""kill -9 and restart: undelivered keys survive, nothing is handed out twice, link key stays in step."""
from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from kms_agents.client import Etsi014Error
from mininet_topos.launch.local import LocalNetwork
from tests.helpers.kmsnet import Saes, small_topology

pytestmark = pytest.mark.integration


def test_kill_9_and_restart_keeps_keys_and_stays_in_step(tmp_path: Path) -> None:
    with LocalNetwork(small_topology(), tmp_path, with_qusec=False) as net:
        saes = Saes(json.loads(net.network_json.read_text()))
        pending = saes.kme("sae-a1").enc_keys("sae-b1", number=3)
        delivered = saes.kme("sae-a1").enc_keys("sae-b1")
        assert saes.kme("sae-b1").dec_keys("sae-a1", [delivered[0].key_id])[0].key == delivered[0].key
        saes.close()

        # the slave's node dies hard; its undelivered keys are on disk
        net.restart_agent("B", kill=True)
        saes = Saes(json.loads(net.network_json.read_text()))
        got = saes.kme("sae-b1").dec_keys("sae-a1", [k.key_id for k in pending])
        assert [k.key for k in got] == [k.key for k in pending]
        with pytest.raises(Etsi014Error) as e:       # delivered before the crash: still gone
            saes.kme("sae-b1").dec_keys("sae-a1", [delivered[0].key_id])
        assert e.value.status == 400

        # the master's node dies hard; link key IDs stay in step in both directions
        net.restart_agent("A", kill=True)
        saes.close()
        saes = Saes(json.loads(net.network_json.read_text()))
        fresh = saes.kme("sae-a1").enc_keys("sae-b1", number=4)
        assert not {k.key_id for k in fresh} & {k.key_id for k in pending + delivered}
        assert not {k.key for k in fresh} & {k.key for k in pending + delivered}
        got = saes.kme("sae-b1").dec_keys("sae-a1", [k.key_id for k in fresh])
        assert [k.key for k in got] == [k.key for k in fresh]
        back = saes.kme("sae-b1").enc_keys("sae-a1", number=2)
        assert [k.key for k in saes.kme("sae-a1").dec_keys("sae-b1", [k.key_id for k in back])] == \
            [k.key for k in back]
        saes.close()
    assert all(p.returncode == 0 for p in net.procs.values())   # SIGTERM: a clean stop

    # WAL + synchronous=FULL on the real files
    db = sqlite3.connect(tmp_path / "B" / "keys.db")
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert db.execute("SELECT COUNT(*) FROM e2e_key").fetchone()[0] == 0   # everything was delivered


def test_neighbour_down_is_503_and_link_key_is_not_reused(tmp_path: Path) -> None:
    with LocalNetwork(small_topology(), tmp_path, with_qusec=False) as net:
        saes = Saes(json.loads(net.network_json.read_text()))
        before = saes.kme("sae-a1").enc_keys("sae-b1")
        net.procs["B"].kill()
        net.procs["B"].wait()
        with pytest.raises(Etsi014Error) as e:
            saes.kme("sae-a1").enc_keys("sae-b1")
        assert e.value.status == 503 and "B" in e.value.body["message"]
        net.restart_agent("B", kill=True)
        saes.close()
        saes = Saes(json.loads(net.network_json.read_text()))
        after = saes.kme("sae-a1").enc_keys("sae-b1")
        assert saes.kme("sae-b1").dec_keys("sae-a1", [after[0].key_id])[0].key == after[0].key
        assert saes.kme("sae-b1").dec_keys("sae-a1", [before[0].key_id])[0].key == before[0].key
        saes.close()


def test_a_second_agent_on_the_same_state_dir_refuses_to_start(tmp_path: Path) -> None:
    import subprocess
    import sys
    with LocalNetwork(small_topology(), tmp_path, with_qusec=False) as net:
        out = subprocess.run([sys.executable, "-m", "kms_agents.agent", "--config", str(tmp_path / "A" / "agent.toml")],
                             capture_output=True, text=True, timeout=60)
        assert out.returncode == 3 and "another agent" in out.stderr and str(net.agents["A"]["pid"]) in out.stderr
        assert (tmp_path / "A" / "agent.json").exists()     # the running agent is untouched
