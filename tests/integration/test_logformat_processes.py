"""Every line the real processes write is logfmt with ts, level and logger: three agents, QuSeC's
os-ken process (os-ken's own lines included) and its gateway, through start, a relayed key, a
refused caller and shutdown; and no key byte is in any of them."""
from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

from kms_agents.client import Etsi014Client
from mininet_topos.launch.local import LocalNetwork
from tests.helpers.kmsnet import Saes, node_cert, small_topology
from tests.helpers.logfmt import parse_record

pytestmark = pytest.mark.integration


def records(path: Path) -> list[dict[str, str]]:
    lines = path.read_text(errors="strict").split("\n")
    assert lines[-1] == "", f"{path}: last line not finished"
    out = []
    for n, line in enumerate(lines[:-1], start=1):
        try:
            out.append(parse_record(line))
        except ValueError as exc:
            raise AssertionError(f"{path}:{n}: {exc}") from None
    return out


def test_every_line_of_every_process_log_is_logfmt(tmp_path) -> None:
    state = tmp_path / "net"
    secrets: list[str] = []
    with LocalNetwork(small_topology(), state, with_qusec=True) as net:
        assert net.controller is not None, (state / "qusec" / "osken.log").read_text(errors="replace")
        doc = json.loads(net.network_json.read_text())
        saes = Saes(doc)
        keys = saes.kme("sae-a1").enc_keys("sae-c1", 2, 256)      # relayed A -> B -> C via QuSeC
        got = saes.kme("sae-c1").dec_keys("sae-a1", [k.key_id for k in keys])
        assert [k.key for k in got] == [k.key for k in keys]
        secrets += [v for k in keys for v in (base64.b64encode(k.key).decode(), k.key.hex())]
        saes.close()
        # A node's certificate is no SAE's: refused, and the refusal logged.
        cert, key = node_cert(state, "B")
        with Etsi014Client(doc["nodes"]["A"]["etsi014_url"], doc["ca_cert"], cert, key,
                           kme_node="A") as intruder:
            with pytest.raises(Exception):
                intruder.status("sae-c1")

    logs = {p.relative_to(state): records(p) for p in
            [state / n / "agent.log" for n in ("A", "B", "C")]
            + [state / "qusec" / "osken.log", state / "qusec" / "gateway.log"]}
    for path, recs in logs.items():
        assert recs, f"{path}: empty"
    every = [r for recs in logs.values() for r in recs]
    loggers = {r["logger"] for r in every}
    # os-ken's own first line, QuSeC's app, the gateway and the agents all wrote in this format
    assert {"os_ken.base.app_manager", "quseccontroller.app", "quseccontroller.gateway.process",
            "kms_agents.agent"} <= loggers, loggers
    osken = logs[Path("qusec/osken.log")]
    assert osken[0]["logger"] == "os_ken.base.app_manager" and osken[0]["msg"].startswith("loading app")
    # key=value messages keep their fields: the refusal of the node certificate at A
    refusals = [r for r in logs[Path("A/agent.log")] if r.get("event") == "refused"]
    assert refusals and all(r["server"] and r["reason"] and r["msg"] for r in refusals), refusals
    # keys are never logged
    text = "\n".join(json.dumps(r) for r in every)
    assert not [s for s in secrets if s in text]
