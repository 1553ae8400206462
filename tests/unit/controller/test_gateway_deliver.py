"""The gateway's authorisation fan-out (ControlServicer._deliver) on its real sessions: every
authorisation pushed down its node's stream, the answer once the last ack is in, the nodes that
did not ack named, and nothing left waiting for them afterwards."""
from __future__ import annotations

import asyncio

import grpc
import pytest

from quseccontroller.gateway.control import ControlServicer
from quseccontroller.gateway.rpc import Abort, PathRefused
from quseccontroller.gateway.sessions import AgentSession


def auth(node: str, path_id: str) -> dict:
    return {"node_id": node, "auth": {"path_id": path_id, "src_node": "N0", "dst_node": "N9"}}


async def agent(session: AgentSession, silent: set[str] = frozenset()) -> None:
    """Acks every authorisation its stream carries (none for the paths in ``silent``)."""
    while True:
        msg = await session.out.get()
        if msg is None:
            return
        if msg.authorise.path_id not in silent:
            await asyncio.sleep(0.001)
            session.acked(msg.authorise.path_id)


def servicer(tmp_path, nodes, ack_timeout=0.3):
    s = ControlServicer(str(tmp_path / "none.sock"), ack_timeout=ack_timeout)
    sessions = {n: AgentSession(n, {}) for n in nodes}
    for x in sessions.values():
        s.sessions.open(x)
    return s, sessions


def test_every_ack_answers_the_delivery_and_leaves_nothing_waiting(tmp_path) -> None:
    async def run():
        nodes = [f"N{i}" for i in range(10)]
        s, sessions = servicer(tmp_path, nodes)
        agents = [asyncio.ensure_future(agent(x)) for x in sessions.values()]
        # two shares of a multipath grant: the source and destination hold one of each
        auths = [auth(n, "p1") for n in nodes] + [auth("N0", "p2"), auth("N9", "p2")]
        await asyncio.wait_for(s._deliver(auths), 2)
        for a in agents:
            a.cancel()
        return sessions
    sessions = asyncio.run(run())
    assert all(not x.acks for x in sessions.values())


def test_a_missing_ack_names_its_node_and_is_no_longer_waited_for(tmp_path) -> None:
    async def run():
        s, sessions = servicer(tmp_path, ["A", "B", "C"])
        agents = [asyncio.ensure_future(agent(x, silent={"p1"} if n == "B" else set()))
                  for n, x in sessions.items()]
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        with pytest.raises(Abort) as err:
            await s._deliver([auth(n, "p1") for n in "ABC"])
        took = loop.time() - t0
        for a in agents:
            a.cancel()
        return sessions, err.value, took
    sessions, err, took = asyncio.run(run())
    assert err.code == grpc.StatusCode.DEADLINE_EXCEEDED and "by B" in err.message
    assert 0.25 <= took < 1.0
    assert all(not x.acks for x in sessions.values())   # B's late ack finds nothing to wake


def test_a_node_without_a_stream_is_refused_before_anything_is_pushed(tmp_path) -> None:
    async def run():
        s, sessions = servicer(tmp_path, ["A"])
        with pytest.raises(PathRefused) as err:
            await s._deliver([auth("A", "p1"), auth("Z", "p1")])
        return sessions, err.value
    sessions, err = asyncio.run(run())
    assert err.reason == "disconnected" and "Z" in err.summary
    assert sessions["A"].out.empty() and not sessions["A"].acks
