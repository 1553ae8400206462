"""Relay attempts in time (kms_agents.relay.attempts): deadlines, each hop's share, the one retry."""
from __future__ import annotations

import pytest

from kms_agents.relay import attempts
from kms_agents.relay.attempts import EXT_BUDGET, attempt_s, budget_of, forward_s, should_retry, with_budget
from kms_agents.relay.messages import Reason


def test_an_attempt_is_well_under_the_path_deadline_and_two_fit_in_it():
    assert attempt_s(10.0, 32) == pytest.approx(attempts.ATTEMPT_S + attempts.HOP_MARGIN_S, abs=0.001)
    assert 2 * attempt_s(10.0, 32, hops=4) < 2.0  # two small attempts on metro8 answer within 2 s
    assert attempt_s(10.0, 32, hops=17) > attempt_s(10.0, 32, hops=4)   # long paths get their margins
    assert attempt_s(10.0, 256 * 1024) > attempt_s(10.0, 32)   # bulk payloads get their time
    assert attempt_s(1.0, 10_000_000) == 0.5      # never more than half the path deadline


@pytest.mark.parametrize("reason", [Reason.TIMEOUT, Reason.UNREACHABLE, Reason.DENIED,
                                    Reason.UNKNOWN_NODE])
def test_failures_a_fresh_path_or_connection_may_cure_are_retried(reason):
    assert should_retry(reason)


@pytest.mark.parametrize("reason", [Reason.NO_KEY, Reason.NOT_AUTHENTIC, Reason.DUPLICATE,
                                    Reason.INVALID, Reason.UNMET, Reason.INTERNAL, Reason.FAILED])
def test_failures_that_would_repeat_are_not_retried(reason):
    assert not should_retry(reason)


@pytest.mark.parametrize("hops", [1, 7, 17, 40])
def test_each_hop_forwards_with_less_than_it_got_so_the_stalled_hop_times_out_first(hops):
    budget = attempt_s(30.0, 32, hops)
    chain = [budget]
    for _ in range(hops - 1):                      # no time spent anywhere
        chain.append(forward_s(chain[-1], 0.0, 30.0))
    assert all(b > a for a, b in zip(chain[1:], chain))
    # even the last hop of a long path has about an attempt's time (a 9-hop line once starved)
    assert chain[-1] >= attempts.ATTEMPT_S
    # time spent at a node comes off what it forwards with; the hop timeout caps it
    assert forward_s(1.0, 0.3, 10.0) == pytest.approx(1.0 - 0.3 - attempts.HOP_MARGIN_S)
    assert forward_s(30.0, 0.0, 10.0) == 10.0
    assert forward_s(0.5, 0.5, 10.0) < attempts.MIN_HOP_S   # spent: neither forward nor store


def test_a_sender_without_a_budget_gets_the_hop_timeout():
    assert forward_s(None, 5.0, 10.0) == 10.0
    for ext in ({}, {EXT_BUDGET: "soon"}, {EXT_BUDGET: "0"}, {EXT_BUDGET: "-5"}):
        assert budget_of(ext) is None, ext


def test_the_budget_in_the_header_is_this_hops_and_replaces_the_one_received():
    got = with_budget((("qusec_path", "A,B,C"), (EXT_BUDGET, "800")), 0.72)
    assert got == tuple(sorted((("qusec_path", "A,B,C"), (EXT_BUDGET, "720"))))
    assert budget_of(dict(got)) == pytest.approx(0.72)
    assert dict(with_budget((), 0.0001))[EXT_BUDGET] == "1"    # never 0 (= none)


# -- the source's retry, on a chain of engines wired in process (no sockets) ---------------------
class Chain:
    """Nodes A-B-C-D, each a RelayEngine (real SQLite, simulated QKD links); a hop's send calls
    the next node's receiver directly. ``stall`` names hops (a, b) whose next relay hangs for
    its whole deadline and then fails as a transport timeout; the hung message is kept."""

    def __init__(self, root, nodes=("A", "B", "C", "D")) -> None:
        import secrets
        import time

        from kms_agents.keystore import KeyStore
        from kms_agents.qkd_module import SimulatedQkdModule
        from kms_agents.relay.authz import AuthTable
        from kms_agents.relay.engine import RelayEngine

        self.path = list(nodes)
        self.stall: set[tuple[str, str]] = set()
        self.hung: list[tuple[str, str, object]] = []
        self.released: list[str] = []
        self.granted: list[str] = []
        self.stores, self.authz, self.engines, links = {}, {}, {}, {}
        frozen = time.time()
        for n in nodes:
            self.stores[n] = KeyStore(root / f"{n}.db")
            self.authz[n] = AuthTable()
            links[n] = {}
        for a, b in zip(nodes, nodes[1:]):
            secret = secrets.token_bytes(32)
            for me, peer in ((a, b), (b, a)):
                links[me][peer] = SimulatedQkdModule(f"{a}-{b}", me, peer, secret, 1e7, frozen - 60,
                                                     self.stores[me], capacity_bytes=1 << 20,
                                                     clock=lambda: frozen)
        saes = {"sae-a": nodes[0], "sae-d": nodes[-1]}
        for n in nodes:
            self.engines[n] = RelayEngine(
                n, sources=links[n].get, all_sources=links[n].values, store=self.stores[n],
                authz=self.authz[n], request_path=self.grant, release_path=self.release,
                send=self._sender(n, "relay"), send_void=self._sender(n, "void"),
                sae_node=saes.get)

    def _sender(self, me: str, what: str):
        import time

        from kms_agents.relay.messages import RelayFailure

        def send(peer, _addr, msg, timeout):
            receiver = self.engines[peer].receiver
            if what == "void":
                return receiver.handle_void(msg, me)
            if (me, peer) in self.stall:
                self.stall.discard((me, peer))
                self.hung.append((me, peer, msg))
                time.sleep(timeout)
                raise RelayFailure(Reason.TIMEOUT, f"next hop {peer} did not answer within {timeout:.2f} s")
            return receiver.handle_relay(msg, me)
        return send

    def grant(self, req):
        import time
        import uuid

        from kms_agents.relay.authz import Authorisation
        from kms_agents.relay.plan import Hop, PathPlan, PlannedPath
        pid = f"p-{uuid.uuid4().hex[:8]}"
        self.granted.append(pid)
        hops = self.path
        for i, n in enumerate(hops):
            self.authz[n].grant(Authorisation(
                path_id=pid, prev_hop=hops[i - 1] if i else "", next_hop=hops[i + 1] if i + 1 < len(hops) else "",
                prev_hop_addr="x" if i else "", next_hop_addr="x" if i + 1 < len(hops) else "",
                expires_at=time.time() + 60, src_node=hops[0], dst_node=hops[-1], share_index=1,
                share_count=1, src_sae=req.src_sae, dst_saes=req.slave_saes, security_level="qkd"))
        return PathPlan(paths=(PlannedPath(pid, tuple(Hop(n, "x") for n in hops)),),
                        security_level="qkd", expires_at=time.time() + 60)

    def release(self, pid):
        self.released.append(pid)
        for table in self.authz.values():
            table.revoke(pid, "released")

    def close(self):
        for e in self.engines.values():
            e.close()
        for s in self.stores.values():
            s.close()


@pytest.fixture
def chain(tmp_path):
    c = Chain(tmp_path)
    yield c
    c.close()


def wait(cond, timeout=5.0):
    import time
    end = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < end, "timed out"
        time.sleep(0.01)


def test_a_stalled_hop_costs_one_attempt_then_fresh_keys_go_over_a_fresh_path(chain):
    import os
    import time
    chain.stall.add(("B", "C"))                   # B's connection to C hangs (once)
    asked = [("k-first", os.urandom(32))]
    t = time.monotonic()
    out, plan, _ = chain.engines["A"].relay_keys(master_sae="sae-a", slave_saes=["sae-d"],
                                                 dst_node="D", keys=asked)
    took = time.monotonic() - t
    # B timed out first (its budget is less than A's), so A retried within its own deadline
    assert took < 2 * attempts.ATTEMPT_S, took
    assert len(chain.granted) == 2 and plan.paths[0].path_id == chain.granted[1]
    (key,) = out
    assert key.key_id != "k-first" and key.key != asked[0][1]   # fresh ID, fresh material
    stored = chain.stores["D"].peek(key.key_id)
    assert stored is not None and stored.material == key.key
    assert chain.stores["D"].peek("k-first") is None
    # the first attempt is voided and its path released, in the background
    wait(lambda: chain.released == [chain.granted[0]])
    # its hung message, arriving late, is refused: nothing of the first attempt is delivered
    ((me, peer, late),) = chain.hung
    from kms_agents.relay.messages import RelayFailure
    with pytest.raises(RelayFailure) as exc:
        chain.engines[peer].receiver.handle_relay(late, me)
    assert exc.value.reason is Reason.DENIED
    assert chain.stores["D"].peek("k-first") is None


def test_a_hop_stalling_twice_fails_the_request_quickly_with_both_causes(chain):
    import os
    import time
    from kms_agents.relay.messages import RelayFailure
    chain.stall.add(("B", "C"))
    real = chain._sender("B", "relay")

    def stall_again(peer, addr, msg, timeout):     # the retry's hop B -> C hangs too
        chain.stall.add(("B", "C"))
        return real(peer, addr, msg, timeout)
    chain.engines["B"].sender._send = stall_again
    t = time.monotonic()
    with pytest.raises(RelayFailure) as exc:
        chain.engines["A"].relay_keys(master_sae="sae-a", slave_saes=["sae-d"], dst_node="D",
                                      keys=[("k1", os.urandom(32))])
    assert time.monotonic() - t < 2 * attempts.ATTEMPT_S + 0.3
    assert exc.value.reason is Reason.TIMEOUT
    assert exc.value.message.count("next hop C did not answer") == 2, exc.value.message
    assert all(chain.stores["D"].peek(k) is None for k in ("k1",))


def test_a_refusal_that_would_repeat_is_not_retried(chain):
    import os
    from kms_agents.relay.messages import RelayFailure
    chain.engines["C"].sender._sources = lambda peer: None   # C lost its link to D: no retry
    with pytest.raises(RelayFailure) as exc:
        chain.engines["A"].relay_keys(master_sae="sae-a", slave_saes=["sae-d"], dst_node="D",
                                      keys=[("k1", os.urandom(32))])
    assert exc.value.reason is Reason.UNMET and len(chain.granted) == 1


def test_a_channel_whose_call_timed_out_is_replaced_and_closed_after_a_grace(monkeypatch):
    import threading

    import grpc

    from kms_agents import channels
    from kms_agents.channels import PeerChannels
    closed = threading.Event()
    monkeypatch.setattr(channels, "DISCARD_GRACE_S", 0.05)
    pool = PeerChannels(grpc.ssl_channel_credentials())
    try:
        first = pool.key_relay("B", "127.0.0.1:9")
        assert pool.key_relay("B", "127.0.0.1:9") is first
        old = pool._channels[("B", "127.0.0.1:9")].channel
        monkeypatch.setattr(old, "close", closed.set)
        pool.discard("B", "127.0.0.1:9")
        assert pool.key_relay("B", "127.0.0.1:9") is not first   # the next call: a new channel
        assert closed.wait(2)                                      # the old one closed, later
        pool.discard("B", "127.0.0.1:10")                          # nothing there: nothing to do
    finally:
        pool.close()


def test_only_the_callers_own_deadline_drops_its_channel(monkeypatch):
    import grpc

    from kms_agents.relay import wire
    from kms_agents.relay.messages import RelayFailure
    from kms_agents.relay.transport import RelayTransport

    class Expired(grpc.RpcError):
        def __init__(self, code, details):
            self._code, self._details = code, details

        def code(self):
            return self._code

        def details(self):
            return self._details

    class Pool:
        def __init__(self, error, wait):
            self.error, self.wait, self.discarded = error, wait, []

        def key_relay(self, node, addr):
            pool = self

            class Stub:
                def Relay(self, req, timeout):
                    import time
                    time.sleep(pool.wait)
                    raise pool.error
            return Stub()

        def discard(self, node, addr):
            self.discarded.append((node, addr))

    monkeypatch.setattr(wire, "to_request", lambda msg: None)   # the stub never reads it
    own = Pool(Expired(grpc.StatusCode.DEADLINE_EXCEEDED, "Deadline Exceeded"), 0.1)
    with pytest.raises(RelayFailure, match="next hop B did not answer within 0.10 s") as exc:
        RelayTransport(own).relay("B", "addr-b", None, 0.1)
    assert exc.value.reason is Reason.TIMEOUT and own.discarded == [("B", "addr-b")]
    # B's report that its own next hop timed out: B's channel is fine, it stays
    told = Pool(Expired(grpc.StatusCode.DEADLINE_EXCEEDED, "next hop C did not answer"), 0.0)
    with pytest.raises(RelayFailure, match="next hop C did not answer") as exc:
        RelayTransport(told).relay("B", "addr-b", None, 1.0)
    assert exc.value.reason is Reason.TIMEOUT and told.discarded == []
