"""The ``reports`` op: the reports that waited in the gateway, taken in one call as each would be
alone, a bad one refused alone (the others of its batch still taken), a batch that is not a list
of reports refused whole."""
from __future__ import annotations

import pytest

from quseccontroller import records
from quseccontroller.bridge import BridgeError
from quseccontroller.core import QuSeCCore
from quseccontroller.dispatch import BridgeDispatch
from quseccontroller.events import EventLog
from quseccontroller.proto import control_pb2
from tests.helpers.qusec_net import inventory_for
from tests.unit.controller.test_events_dispatch import SQUARE, RecordingSender, links_of, register


@pytest.fixture
def square():
    log = EventLog()
    d = BridgeDispatch(QuSeCCore(inventory=inventory_for(SQUARE)), RecordingSender(), lambda: {}, log)
    for i, n in enumerate("ABCD", start=1):
        register(d, n, i)
    return d, log


def wire(node: str, status=control_pb2.LINK_STATUS_ACTIVE) -> dict:
    return records.report_to_wire(node, [records.link_to_wire(x) for x in links_of(node, status=status)])


def test_a_batch_is_taken_report_by_report_and_a_bad_one_alone(square):
    d, log = square
    seq = log.seq
    batch = records.reports_to_wire([wire("A", control_pb2.LINK_STATUS_OFF), {"node_id": 7}, wire("C")])
    results = d.handle("reports", batch)["results"]
    assert len(results) == 3
    assert results[0] == {"refused": []} and results[2] == {"refused": []}
    assert results[1]["error"]["code"] == "invalid" and results[1]["error"]["details"] == {"field": "node_id"}
    # A's links went down as if its report had come alone
    assert {e["link"] for e in log.since(seq)["events"] if e["kind"] == "qkd_link_down"} == {"A-B", "A-D"}


@pytest.mark.parametrize("bad", [{}, {"reports": {"node_id": "A"}}, {"reports": ["A"]}])
def test_a_batch_that_is_no_list_of_reports_is_refused(square, bad):
    d, _ = square
    with pytest.raises(BridgeError) as err:
        d.handle("reports", bad)
    assert err.value.code == "invalid" and err.value.details == {"field": "reports"}
