"""bench interdomain's breakdown: where a crossing's time goes, read from the lines the agents and
gateways log (the exit KME's handoff of a key less its peer's onward relay of the same key; the
source node's path setups), on log files written as the processes write them."""
from __future__ import annotations

from types import SimpleNamespace

from mininet_topos.bench.interdomain import breakdown

K1, K2 = "6f1c0d2e-0000-4000-8000-000000000001", "6f1c0d2e-0000-4000-8000-000000000002"


def _log(path, *msgs):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f'ts=2026-12-01T17:00:00.000Z level=info logger=x msg="{m}"\n' for m in msgs))


def test_the_exchange_is_the_handoff_less_the_onward_relay_of_the_same_key(tmp_path):
    bj, tr = tmp_path / "beijing", tmp_path / "trunk"
    _log(bj / "BJ-IW" / "agent.log",
         f"event=etsi020_handoff key={K1} keys=1 peer=T-BJ crossing=bj-site ms=40.00",
         f"event=etsi020_handoff key={K2} keys=1 peer=T-BJ crossing=bj-site ms=45.50",
         "stored 1 relayed key(s) elsewhere")
    _log(tr / "T-BJ" / "agent.log",
         f"event=etsi020_onward key={K1} keys=1 peer=BJ-IW targets=sae-sh1 ms=36.00 path=T-BJ,T-R1,T-SH",
         f"event=etsi020_onward key={K2} keys=1 peer=BJ-IW targets=sae-sh1 ms=40.50 path=T-BJ,T-R1,T-SH")
    _log(tr / "T-SH" / "agent.log",   # the same key at the next site: its own crossing
         f"event=etsi020_handoff key={K1} keys=1 peer=SH-IW crossing=sh-site ms=12.00")
    _log(tmp_path / "shanghai" / "SH-IW" / "agent.log",
         f"event=etsi020_onward key={K1} keys=1 peer=T-SH targets=sae-sh1 ms=9.00 path=SH-IW,SH2,SH1")
    _log(bj / "qusec" / "gateway.log",
         "event=path_granted src=BJ1 dst= app= paths=qp1:BJ1>BJ2>BJ-IW rule=default flows=0 ms=5.0 app_ms=0.8 auth_ms=1.5",
         "event=path_granted src=BJ3 dst=BJ1 app= paths=qp2:BJ3>BJ1 rule=default flows=0 ms=2.0 app_ms=0.5 auth_ms=1.0")
    md = SimpleNamespace(domains={"beijing": SimpleNamespace(state_dir=bj, agents={"BJ-IW": {}, "BJ1": {}}),
                                  "trunk": SimpleNamespace(state_dir=tr, agents={"T-BJ": {}, "T-SH": {}}),
                                  "shanghai": SimpleNamespace(state_dir=tmp_path / "shanghai", agents={"SH-IW": {}})})
    got = breakdown(md, "BJ1")
    assert got["exchange"] == {"bj-site": [4.0, 5.0], "sh-site": [3.0]}
    assert got["paths"] == [(5.0, 0.8, 1.5)]     # BJ1's own setups only


def test_a_handoff_whose_onward_line_is_missing_is_left_out(tmp_path):
    _log(tmp_path / "X" / "agent.log", f"event=etsi020_handoff key={K1} keys=1 peer=Y crossing=s ms=3.00")
    md = SimpleNamespace(domains={"d": SimpleNamespace(state_dir=tmp_path, agents={"X": {}, "gone": {}})})
    assert breakdown(md, "A") == {"exchange": {}, "paths": []}
