"""The gateway hands link reports to the app without holding up the agent's stream: while a
batch is with the app a newer report replaces the one of the same node waiting, the stream goes
on (acks behind a report are read at once), and what waited goes to the app in one call. Found
by bench control: at 1,000 agents every authorisation ack waited behind reports and every path
setup timed out; at 5,000 one bridge call (and one thread) per report kept the gateway at a
full core."""
from __future__ import annotations

import asyncio

from quseccontroller.gateway.control import ControlServicer
from quseccontroller.gateway.reports import ReportQueue
from quseccontroller.gateway.sessions import AgentSession


def report(node: str, bits: int) -> list[dict]:
    return [{"link_id": f"{node}-Z", "peer_node": "Z", "stored_bits": bits}]


def test_reports_waiting_for_the_app_are_replaced_and_go_in_one_batch(tmp_path) -> None:
    async def run():
        gw = ControlServicer(str(tmp_path / "bridge.sock"))
        gw.bind(asyncio.get_running_loop())
        release = asyncio.Event()
        calls: list[tuple[str, list[tuple[str, int]]]] = []

        async def call(op, args=None):
            calls.append((op, [(r["node_id"], r["links"][0]["stored_bits"]) for r in args["reports"]]))
            await release.wait()          # the app is busy
            release.clear()
            return {"results": [{"refused": []} for _ in args["reports"]]}
        gw.call = call
        a, b = AgentSession("A", {}), AgentSession("B", {})
        gw._take_report(a, report("A", 1))     # returns at once: the stream is not held
        await asyncio.sleep(0.05)
        assert calls == [("reports", [("A", 1)])]   # with the app, which is busy
        for bits in (2, 3, 4):
            gw._take_report(a, report("A", bits))   # each returns at once; 4 waits, 2 and 3 replaced
        gw._take_report(b, report("B", 7))
        await asyncio.sleep(0.05)
        assert len(calls) == 1
        release.set()
        await asyncio.sleep(0.05)
        assert calls[1] == ("reports", [("A", 4), ("B", 7)])   # what waited: one call
        release.set()
        await asyncio.sleep(0.05)
        assert len(gw.reports) == 0
        assert gw.metrics.registry.get_sample_value("qusec_reports_replaced_total") == 2
        assert gw.metrics.registry.get_sample_value("qusec_reports_total") == 3
        assert a.links["A-Z"]["stored_bits"] == 4 and b.links["B-Z"]["stored_bits"] == 7
    asyncio.run(run())


def test_a_batch_holds_at_most_its_size_and_a_refused_report_stays_alone(tmp_path) -> None:
    async def run():
        gw = ControlServicer(str(tmp_path / "bridge.sock"))
        gw.bind(asyncio.get_running_loop())
        gw.reports = ReportQueue(gw._send_reports, gw.metrics.reports_replaced.inc, batch=3)
        sizes: list[int] = []

        async def call(op, args=None):
            sizes.append(len(args["reports"]))
            return {"results": [{"error": {"code": "invalid", "message": "unknown link"}}
                                if r["node_id"] == "N1" else {"refused": []} for r in args["reports"]]}
        gw.call = call
        sessions = [AgentSession(f"N{i}", {}) for i in range(7)]
        for s in sessions:
            gw._take_report(s, report(s.node_id, 5))
        await asyncio.sleep(0.05)
        assert sizes == [3, 3, 1]
        assert gw.metrics.registry.get_sample_value("qusec_reports_total") == 6   # N1's refused
        assert not sessions[1].links and sessions[2].links
    asyncio.run(run())


def test_a_gone_node_s_waiting_report_is_not_handed_over(tmp_path) -> None:
    async def run():
        q_sent: list[str] = []
        gate = asyncio.Event()

        async def send(taken):
            q_sent.extend(s.node_id for s, _ in taken)
            await gate.wait()
        q = ReportQueue(send)
        q.put(AgentSession("A", {}), report("A", 1))
        await asyncio.sleep(0.01)
        q.put(AgentSession("B", {}), report("B", 1))
        q.drop("B")
        gate.set()
        await asyncio.sleep(0.01)
        assert q_sent == ["A"]
    asyncio.run(run())
