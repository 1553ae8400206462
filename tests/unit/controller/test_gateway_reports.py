"""The gateway hands link reports to the app without holding up the agent's stream: while one
is with the app a newer one replaces the one waiting, and the stream goes on (acks behind a
report are read at once). Found by bench control: at 1,000 agents every authorisation ack
waited behind reports and every path setup timed out."""
from __future__ import annotations

import asyncio

from quseccontroller.gateway.control import ControlServicer
from quseccontroller.gateway.sessions import AgentSession


def test_a_report_waiting_for_the_app_is_replaced_by_the_newer_one(tmp_path) -> None:
    async def run():
        gw = ControlServicer(str(tmp_path / "bridge.sock"))
        gw.bind(asyncio.get_running_loop())
        release = asyncio.Event()
        taken: list[int] = []

        async def call(op, args=None):
            assert op == "report"
            taken.append(args["links"][0]["stored_bits"])
            await release.wait()          # the app is busy
            return {"refused": []}
        gw.call = call
        s = AgentSession("A", {})

        def report(bits: int) -> list[dict]:
            return [{"link_id": "A-B", "peer_node": "B", "stored_bits": bits}]
        gw._take_report(s, report(1))          # returns at once: the stream is not held
        await asyncio.sleep(0.05)
        assert taken == [1]                    # with the app, which is busy
        for bits in (2, 3, 4):
            gw._take_report(s, report(bits))   # each returns at once; 4 waits, 2 and 3 replaced
        await asyncio.sleep(0.05)
        assert taken == [1]
        release.set()
        await asyncio.sleep(0.05)
        assert taken == [1, 4] and s.next_report is None
        assert gw.metrics.registry.get_sample_value("qusec_reports_replaced_total") == 2
        assert gw.metrics.registry.get_sample_value("qusec_reports_total") == 2
        assert s.links["A-B"]["stored_bits"] == 4
    asyncio.run(run())
