"""The app <-> gateway bridge: frame codec, request checks, and the gateway-side client."""
from __future__ import annotations

import asyncio
import socket
import threading

import pytest

from quseccontroller import bridge
from quseccontroller.bridge import (BridgeError, BridgeProtocolError, BridgeUnavailable, FrameDecoder,
                                    GatewayBridgeClient, check_request, encode)


def test_frames_round_trip_in_any_chunking():
    msgs = [{"id": i, "op": "ping", "args": {"x": "é" * i}} for i in range(20)]
    stream = b"".join(encode(m) for m in msgs)
    for chunk in (1, 3, 7, 64, len(stream)):
        dec, out = FrameDecoder(), []
        for i in range(0, len(stream), chunk):
            out += dec.feed(stream[i:i + chunk])
        assert out == msgs and dec.pending == 0


def test_decoder_rejects_oversize_non_json_and_non_objects():
    with pytest.raises(BridgeProtocolError, match="exceeds"):
        FrameDecoder().feed((bridge.MAX_FRAME + 1).to_bytes(4, "big"))
    with pytest.raises(BridgeProtocolError, match="not JSON"):
        FrameDecoder().feed((3).to_bytes(4, "big") + b"{x}")
    with pytest.raises(BridgeProtocolError, match="JSON list"):
        FrameDecoder().feed((2).to_bytes(4, "big") + b"[]")
    with pytest.raises(ValueError):
        encode({"x": float("nan")})


def test_check_request_names_the_problem():
    assert check_request({"id": 1, "op": "state"}) == (1, "state", {})
    with pytest.raises(BridgeProtocolError, match="integer id"):
        check_request({"op": "state"})
    with pytest.raises(BridgeError, match="unknown op 'nope'"):
        check_request({"id": 2, "op": "nope"})
    with pytest.raises(BridgeError, match="args must be an object"):
        check_request({"id": 3, "op": "state", "args": [1]})


def test_bridge_socket_path_is_short_enough(tmp_path):
    assert bridge.bridge_socket_path(tmp_path).endswith("bridge.sock")
    deep = tmp_path / ("d" * 120)
    path = bridge.bridge_socket_path(deep)
    assert len(path) < 108 and path == bridge.bridge_socket_path(deep)


class ScriptedApp:
    """A stand-in for the app's end of the socket (the real one runs on os-ken's hub and is
    covered by the integration tests): answers ops and sends pushes."""

    def __init__(self, path: str):
        self.srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.srv.bind(path)
        self.srv.listen(4)
        self.conns: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                conn, _ = self.srv.accept()
            except OSError:
                return
            self.conns.append(conn)
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn):
        dec = FrameDecoder()
        while True:
            try:
                data = conn.recv(4096)
            except OSError:
                return
            if not data:
                return
            for msg in dec.feed(data):
                if msg["op"] == "ping":
                    conn.sendall(encode({"push": "revoke", "node_id": "A", "path_id": "p1",
                                         "reason": "test"}))
                    conn.sendall(encode({"id": msg["id"], "ok": True, "result": {"pong": True}}))
                elif msg["op"] == "release":
                    conn.sendall(encode({"id": msg["id"], "ok": False, "error": {
                        "code": "not_found", "message": "no such path", "details": {"path_id": "x"}}}))
                elif msg["op"] == "state":
                    conn.close()  # the app dies mid-call
                    return
                # "status": never answered

    def close(self):
        self.srv.close()
        for c in self.conns:
            c.close()


def test_client_calls_pushes_errors_and_reconnects(tmp_path):
    path = str(tmp_path / "b.sock")
    pushes, connects = [], []
    client = GatewayBridgeClient(path, pushes.append, lambda: connects.append(1), retry_s=0.05)
    with pytest.raises(BridgeUnavailable):
        client.call("ping")
    client.start()
    app = ScriptedApp(path)
    try:
        assert client.wait_connected(5)
        assert client.call("ping", timeout=5) == {"pong": True}
        assert pushes == [{"push": "revoke", "node_id": "A", "path_id": "p1", "reason": "test"}]
        with pytest.raises(BridgeError) as err:
            client.call("release", {"path_id": "x"}, timeout=5)
        assert (err.value.code, err.value.message, err.value.details) == \
            ("not_found", "no such path", {"path_id": "x"})
        with pytest.raises(BridgeError) as err:
            client.call("status", timeout=0.2)
        assert err.value.code == "timeout"
        with pytest.raises(BridgeUnavailable):
            client.call("state", timeout=5)
        # The client reconnects by itself and on_connect runs again.
        assert client.wait_connected(5)
        assert client.call("ping", timeout=5) == {"pong": True}
        assert len(connects) >= 2
        with pytest.raises(ValueError):
            client.call("nope")
    finally:
        client.close()
        app.close()


def test_async_calls_hold_no_thread_and_fail_as_the_threaded_ones(tmp_path):
    """``acall`` from the gateway's loop: a thousand calls in flight at once (the old client held
    a thread each), their replies, an error, a timeout, and the app dying mid-call."""
    path = str(tmp_path / "b.sock")
    client = GatewayBridgeClient(path, lambda msg: None, retry_s=0.05)
    client.start()
    app = ScriptedApp(path)

    async def run():
        before = threading.active_count()
        replies = await asyncio.gather(*(client.acall("ping", timeout=10) for _ in range(1000)))
        assert replies == [{"pong": True}] * 1000
        assert threading.active_count() <= before + 1
        with pytest.raises(BridgeError) as err:
            await client.acall("release", {"path_id": "x"}, timeout=5)
        assert err.value.code == "not_found"
        with pytest.raises(BridgeError) as err:
            await client.acall("status", timeout=0.2)
        assert err.value.code == "timeout"
        with pytest.raises(BridgeUnavailable):
            await client.acall("state", timeout=5)
    try:
        assert client.wait_connected(5)
        asyncio.run(run())
        with client._pending_lock:
            assert not client._pending     # nothing left behind
    finally:
        client.close()
        app.close()


def test_a_frame_the_socket_cannot_take_at_once_goes_out_whole_and_in_order(tmp_path):
    """A call's frame goes out from the caller when the socket takes it whole; one larger than
    the socket's buffer is finished by the writer thread, and the calls after it queue behind."""
    path = str(tmp_path / "b.sock")
    client = GatewayBridgeClient(path, lambda msg: None, retry_s=0.05)
    client.start()
    app = ScriptedApp(path)

    async def run():
        big = client.acall("ping", {"blob": "x" * 4_000_000}, timeout=20)
        small = [client.acall("ping", {"n": i}, timeout=20) for i in range(50)]
        assert await asyncio.gather(big, *small) == [{"pong": True}] * 51
    try:
        assert client.wait_connected(5)
        asyncio.run(run())
    finally:
        client.close()
        app.close()
