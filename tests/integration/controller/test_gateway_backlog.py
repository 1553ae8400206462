"""Thousands of calls reaching the gateway while its event loop is busy (agents opening their
control streams at once) all get in: gRPC core's pending queue is sized for the capped streams.

With gRPC's own bound (1,000 pending calls, every one past 3,000 dropped) a burst of 3,500
calls arriving while the loop is held is partly cancelled inside gRPC core: the client sees a
bare CANCELLED, the servicer never sees the call (``qkdnet bench control``: 32,476 retried
control streams at 10,000 agents). Real grpc.aio server (the gateway's ``GatewayServer``), real
clients over TCP; the loop is held by a blocking sleep, as a loop busy registering agents is.
"""
from __future__ import annotations

import asyncio
import threading
import time

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from quseccontroller.gateway.control import ControlServicer
from quseccontroller.gateway.process import GatewayServer
from quseccontroller.gateway.rpc import RpcServer

pytestmark = pytest.mark.integration

BURST = 3500       # past gRPC's default hard limit (3,000 pending)
CHANNELS = 10      # the burst over several connections, as many agents' are
HOLD_S = 3.0       # how long the server's loop is held while the burst arrives


class LoopThread:
    """An asyncio loop on its own thread, running the server ``make()`` builds on it."""

    def __init__(self, make):
        self.loop = asyncio.new_event_loop()
        self.ready = threading.Event()
        self.thread = threading.Thread(target=self._run, args=(make,), daemon=True)
        self.thread.start()
        assert self.ready.wait(10), "server did not start"

    def _run(self, make) -> None:
        asyncio.set_event_loop(self.loop)

        async def start():
            self.server = make()
            await self.server.start()
            self.ready.set()
        self.loop.run_until_complete(start())
        self.loop.run_forever()

    def hold(self, seconds: float) -> None:
        """Block the server's loop (nothing is taken off gRPC's pending queue meanwhile)."""
        self.loop.call_soon_threadsafe(time.sleep, seconds)

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self.server.stop(0), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


def burst(addr: str, srv: LoopThread) -> dict[str, int]:
    """BURST health checks sent while the server's loop is held; their outcomes by status."""
    channels = [grpc.insecure_channel(addr) for _ in range(CHANNELS)]
    try:
        stubs = [health_pb2_grpc.HealthStub(ch) for ch in channels]
        for s in stubs:   # connected before the burst: only the calls are in question
            s.Check(health_pb2.HealthCheckRequest(), timeout=10)
        srv.hold(HOLD_S)
        time.sleep(0.2)
        futures = [stubs[i % CHANNELS].Check.future(health_pb2.HealthCheckRequest(), timeout=60)
                   for i in range(BURST)]
        out: dict[str, int] = {}
        for f in futures:
            try:
                f.result()
                code = "OK"
            except grpc.RpcError as exc:
                code = exc.code().name
            out[code] = out.get(code, 0) + 1
        return out
    finally:
        for ch in channels:
            ch.close()


def test_grpc_default_pending_queue_drops_a_burst():
    """The failure the gateway avoids, on a plain server with gRPC's defaults (so the burst
    below is known to be big enough to overflow it)."""
    srv = LoopThread(lambda: RpcServer("127.0.0.1:0", None, services=[]))
    try:
        out = burst(srv.server.addr, srv)
    finally:
        srv.stop()
    assert out.get("CANCELLED", 0) >= BURST - 3000 - 100, out


def test_gateway_takes_a_burst_of_calls_while_its_loop_is_busy(tmp_path):
    def make():
        gateway = ControlServicer(str(tmp_path / "no-app.sock"), max_streams=5000)
        return GatewayServer(gateway, "127.0.0.1:0", "127.0.0.1:0", None)
    srv = LoopThread(make)
    try:
        out = burst(srv.server.grpc_addr, srv)
        lag = srv.server.gateway.metrics.registry.get_sample_value
        held = asyncio.run_coroutine_threadsafe(asyncio.sleep(0), srv.loop)
        held.result(10)
        time.sleep(0.3)   # the probe's next turn has seen the hold
    finally:
        srv.stop()
    assert out == {"OK": BURST}, out
    # the held loop shows in qusec_gateway_loop_lag_seconds (the probe's timer ran that late)
    assert lag("qusec_gateway_loop_lag_seconds_sum") >= 0.8 * HOLD_S
    assert lag("qusec_gateway_loop_lag_seconds_bucket", {"le": "0.5"}) < lag("qusec_gateway_loop_lag_seconds_count")
