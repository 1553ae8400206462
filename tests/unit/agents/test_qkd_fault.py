"""QKD link faults in the simulated module: down, up, QBER; the BB84 rate; the alarm at 11 %."""
from __future__ import annotations

from pathlib import Path

import pytest

from kms_agents import qkd_module as qm
from kms_agents.keysource import Etsi014KeySource, FaultsNotSupported, KeySource
from kms_agents.keystore import KeyStore
from kms_agents.relay.links import LinkStatus, link_states

SECRET = bytes(range(32))
RATE = 256 * 2 * 10.0   # 10 blocks/s per direction


class Clock:
    def __init__(self, t: float) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def module(tmp_path: Path, clock: Clock, local: str = "A", peer: str = "B") -> qm.SimulatedQkdModule:
    return qm.SimulatedQkdModule("L1", local, peer, SECRET, RATE, 1000.0,
                                 KeyStore(tmp_path / f"{local}.db"), clock=clock)


def test_binary_entropy_and_the_bb84_rate() -> None:
    assert qm.binary_entropy(0.0) == 0.0 and qm.binary_entropy(0.5) == pytest.approx(1.0)
    assert qm.binary_entropy(0.11) == pytest.approx(0.4999, abs=1e-3)
    assert qm.bb84_rate(1000.0, 0.0) == 1000.0
    # 1 - 2 h(0.02) = 0.7171...
    assert qm.bb84_rate(1000.0, 0.02) == pytest.approx(717.1, abs=0.5)
    # relative to a nominal QBER: the configured rate holds there
    assert qm.bb84_rate(1000.0, 0.02, qber0=0.02) == pytest.approx(1000.0)
    assert qm.bb84_rate(1000.0, 0.05, qber0=0.02) == pytest.approx(
        1000.0 * (1 - 2 * qm.binary_entropy(0.05)) / (1 - 2 * qm.binary_entropy(0.02)))
    # it falls with the QBER and is 0 from the threshold on
    rates = [qm.bb84_rate(1000.0, q / 100) for q in range(0, 12)]
    assert rates == sorted(rates, reverse=True)
    assert qm.bb84_rate(1000.0, qm.QBER_THRESHOLD) == 0.0 and qm.bb84_rate(1000.0, 0.3) == 0.0
    assert 0.0 < qm.bb84_rate(1000.0, 0.109) < 10.0  # the BB84 bound is ~11.0 %
    for bad in (-0.01, 0.51):
        with pytest.raises(ValueError, match="QBER"):
            qm.bb84_rate(1000.0, bad)


def test_fault_states_and_their_alarms() -> None:
    assert qm.LinkFault().alarm == "" and qm.LinkFault().rate(100.0) == 100.0
    assert qm.LinkFault("down").alarm == qm.ALARM_DOWN and qm.LinkFault("down").rate(100.0) == 0.0
    assert qm.LinkFault("qber", 0.05).alarm == ""
    assert qm.LinkFault("qber", 0.11).alarm == qm.ALARM_QBER
    assert qm.LinkFault("qber", 0.2).rate(100.0) == 0.0
    with pytest.raises(ValueError, match="one of up, down, qber"):
        qm.LinkFault("broken")
    for bad in (-0.1, 0.6, "0.1"):
        with pytest.raises(ValueError, match="QBER"):
            qm.LinkFault("qber", bad)


def test_down_stops_production_and_up_resumes_it(tmp_path: Path) -> None:
    clock = Clock(1001.0)
    a = module(tmp_path, clock)
    assert a.available_bytes() == 10 * 32
    a.set_fault(qm.LinkFault("down"))
    assert a.available_bytes() == 0 and a.rate_bps == 0.0
    with pytest.raises(qm.LinkAlarm, match="link_down"):
        a.take(32)
    clock.t = 1011.0          # ten seconds down: nothing made meanwhile
    a.set_fault(qm.LinkFault("up"))
    assert a.available_bytes() == 10 * 32 and a.rate_bps == RATE
    clock.t = 1012.0
    assert a.available_bytes() == 20 * 32
    a.take(64)
    assert a.available_bytes() == 18 * 32


def test_qber_below_the_threshold_lowers_the_rate(tmp_path: Path) -> None:
    clock = Clock(1000.0)
    a = module(tmp_path, clock)
    a.set_fault(qm.LinkFault("qber", 0.05))
    assert a.rate_bps == pytest.approx(RATE * (1 - 2 * qm.binary_entropy(0.05)))
    clock.t = 1100.0
    # 100 s at 10 blocks/s x 0.4272: 427 blocks, not 1000
    assert a.available_bytes() == int(100 * 10 * (1 - 2 * qm.binary_entropy(0.05))) * 32
    assert a.take(32).key_ids


def test_qber_above_the_threshold_raises_the_alarm_and_keeps_claims_working(tmp_path: Path) -> None:
    clock = Clock(1001.0)
    a, b = module(tmp_path, clock), module(tmp_path, clock, "B", "A")
    taken = a.take(64)        # before the fault: in flight toward B
    for end in (a, b):        # the quantum channel is shared: both ends see the fault
        end.set_fault(qm.LinkFault("qber", 0.2))
    assert a.fault().alarm == b.fault().alarm == qm.ALARM_QBER
    assert a.available_bytes() == b.available_bytes() == 0
    with pytest.raises(qm.LinkAlarm):
        b.take(32)
    assert b.claim(taken.key_ids, 64) == taken.material


def test_the_link_end_reports_off_with_the_alarm_and_qber(tmp_path: Path) -> None:
    clock = Clock(1001.0)
    a = module(tmp_path, clock)
    assert link_states([a])[0].status == LinkStatus.ACTIVE and link_states([a])[0].alarm == ""
    a.set_fault(qm.LinkFault("qber", 0.04))
    state = link_states([a])[0]
    assert state.status == LinkStatus.ACTIVE and state.qber == pytest.approx(0.04) and state.alarm == ""
    assert state.skr_bps == pytest.approx(a.rate_bps) and state.skr_bps < RATE
    a.set_fault(qm.LinkFault("qber", 0.15))
    state = link_states([a])[0]
    assert (state.status, state.alarm, state.qber) == (LinkStatus.OFF, qm.ALARM_QBER, pytest.approx(0.15))
    a.set_fault(qm.LinkFault("down"))
    assert link_states([a])[0].alarm == qm.ALARM_DOWN
    a.set_fault(qm.LinkFault("up"))
    state = link_states([a])[0]
    assert (state.status, state.alarm, state.qber) == (LinkStatus.ACTIVE, "", 0.0)


def test_a_vendor_kms_link_refuses_faults(tmp_path: Path) -> None:
    src = Etsi014KeySource.__new__(Etsi014KeySource)
    src.link_id, src.kind = "L9", "etsi014"
    assert isinstance(src, KeySource) and src.fault().alarm == ""
    with pytest.raises(FaultsNotSupported, match="etsi014"):
        src.set_fault(qm.LinkFault("down"))
