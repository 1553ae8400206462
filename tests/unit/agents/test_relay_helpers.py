"""Pure helpers of the relay: security level choice, link states, failures."""
from __future__ import annotations

import pytest

from kms_agents.relay.engine import bulk_groups
from kms_agents.relay.links import ConsumptionMeter, LinkStatus, link_states
from kms_agents.relay.messages import Reason, RelayFailure
from kms_agents.relay.network import effective_level


def test_effective_level() -> None:
    assert effective_level("", None) == "qkd"
    assert effective_level("qkd", "hybrid") == "hybrid"
    assert effective_level("hybrid", None) == "hybrid"
    with pytest.raises(RelayFailure, match="'pqc' requested but the matched policy gives 'qkd'"):
        effective_level("qkd", "pqc")


def test_no_controller_configured_gives_a_clear_refusal(tmp_path) -> None:
    from kms_agents.keystore import KeyStore
    from kms_agents.relay.authz import AuthTable
    from kms_agents.relay.engine import RelayEngine
    eng = RelayEngine("A", sources=lambda p: None, store=KeyStore(tmp_path / "k.db"),
                      authz=AuthTable(), request_path=None, send=None, send_void=None)
    with pytest.raises(RelayFailure, match="no QuSeC controller configured") as info:
        eng.relay_keys(master_sae="sae-a", slave_saes=["sae-e"], dst_node="E",
                       keys=[("k", bytes(32))])
    assert info.value.reason == Reason.UNREACHABLE and info.value.reason.value == "UNAVAILABLE"
    eng.close()


class Src:
    def __init__(self, avail: int | Exception) -> None:
        self.link_id, self.peer_node, self.rate_bps, self.kind = "A-B", "B", 1e6, "simulated"
        self._avail = avail

    def available_bytes(self) -> int:
        if isinstance(self._avail, Exception):
            raise self._avail
        return self._avail


def test_link_states_report_level_and_failures() -> None:
    up, empty, broken = link_states([Src(100), Src(0), Src(OSError("vendor KMS down"))])
    assert (up.stored_bits, up.status) == (800, LinkStatus.ACTIVE)
    assert empty.status == LinkStatus.PASSIVE
    assert (broken.stored_bits, broken.status) == (0, LinkStatus.OFF)
    assert up.peer_stored_bits == 0             # a source that cannot tell: 0, not known


class PeerSrc(Src):
    def peer_available_bytes(self) -> int:
        return 40


def test_link_states_carry_what_this_end_sees_for_the_peer() -> None:
    from kms_agents.control_client import link_to_proto
    (state,) = link_states([PeerSrc(100)])
    assert (state.stored_bits, state.peer_stored_bits) == (800, 320)
    assert link_to_proto(state).peer_stored_bits == 320


def test_bulk_groups() -> None:
    keys = [(str(i), bytes(1024)) for i in range(128)]
    groups = bulk_groups(keys, "qkd")
    assert [len(g) for g in groups] == [128]                  # one message: one commit per hop end
    assert [k for g in groups for k in g] == keys
    assert [len(g) for g in bulk_groups(keys[:8], "hybrid")] == [2, 2, 2, 2]
    assert bulk_groups([], "qkd") == []
    assert [len(g) for g in bulk_groups(keys, "qkd", max_bytes=10 * 1024)] == [10] * 12 + [8]
    assert [len(g) for g in bulk_groups(keys + keys, "qkd")] == [256]


def test_consumption_inferred_from_key_level() -> None:
    m = ConsumptionMeter(half_life_s=1e-9)  # no smoothing: the last interval only
    assert m.update("l", 0.0, 10_000, 2000.0) == 0.0
    # 1 s: produced 1000 bits (half of 2000 b/s), level fell by 500 -> 1500 b/s consumed
    assert m.update("l", 1.0, 9_500, 2000.0) == pytest.approx(1500.0)
    # level rose by all it produced: nothing consumed
    assert m.update("l", 2.0, 10_500, 2000.0) == pytest.approx(0.0)
    # a full buffer produced nothing new: a flat level means nothing consumed
    assert m.update("l", 3.0, 10_500, 2000.0, capacity_bits=10_500) == pytest.approx(0.0)
    smooth = ConsumptionMeter(half_life_s=10.0)
    smooth.update("l", 0.0, 10_000, 0.0)
    assert 0 < smooth.update("l", 1.0, 9_000, 0.0) <= 1000.0


def test_link_states_carry_consumption() -> None:
    m = ConsumptionMeter(half_life_s=1e-9)
    src = Src(1000)
    src.capacity_bytes = lambda: 10**9
    link_states([src], m, now=0.0)
    src._avail = 900
    (state,) = link_states([src], m, now=1.0)
    # 1e6 b/s link: 500 kbit produced in 1 s, level fell 800 bits -> 500.8 kbit/s consumed
    assert state.consumption_bps == pytest.approx(500_800.0)


def test_gather_waits_for_every_future_and_keeps_the_first_failure() -> None:
    from concurrent.futures import ThreadPoolExecutor

    from kms_agents.relay.engine import gather

    def boom() -> None:
        raise KeyError("bug")

    def refused() -> None:
        raise RelayFailure(Reason.DENIED, "no authorisation")

    with ThreadPoolExecutor(2) as pool:
        results, failure = gather([pool.submit(lambda: 1), pool.submit(boom), pool.submit(refused)])
        assert results == [1] and failure.reason == Reason.INTERNAL and "bug" in failure.message
        results, failure = gather([pool.submit(refused), pool.submit(lambda: 2)])
        assert results == [2] and failure.reason == Reason.DENIED


def test_a_path_moved_further_along_is_not_reused_from_the_cache(tmp_path) -> None:
    """QuSeC moves A-B-C to A-B-E-C under the same path id: the source's next hop is still B,
    but its authorisation was granted anew, so the cached A-B-C plan (and what the SAE is told
    of the path) is stale: the next request asks QuSeC again."""
    import time

    from kms_agents.keystore import KeyStore
    from kms_agents.relay.authz import AuthTable, Authorisation
    from kms_agents.relay.engine import RelayEngine
    from kms_agents.relay.plan import Hop, PathPlan, PlannedPath
    authz = AuthTable()
    routes = [("A", "B", "C"), ("A", "B", "E", "C")]
    asked = []

    def auth_at_a(route) -> Authorisation:
        return Authorisation("p1", "", route[1], "", "x:1", time.time() + 60, "A", "C")

    def request_path(query):
        route = routes[min(len(asked), 1)]
        asked.append(query)
        authz.grant(auth_at_a(route))      # QuSeC pushes the authorisation before it answers
        return PathPlan(paths=(PlannedPath("p1", tuple(Hop(n) for n in route)),),
                        expires_at=time.time() + 60)

    eng = RelayEngine("A", sources=lambda p: None, store=KeyStore(tmp_path / "k.db"), authz=authz,
                      request_path=request_path, send=None, send_void=None)
    first = eng.path_for("C", "sae-a", ["sae-c"], 256, 1)
    assert eng.path_for("C", "sae-a", ["sae-c"], 256, 1) is first and len(asked) == 1   # reused
    authz.grant(auth_at_a(routes[1]))      # the move: same next hop B, granted anew
    moved = eng.path_for("C", "sae-a", ["sae-c"], 256, 1)
    assert len(asked) == 2 and [h.node_id for h in moved.paths[0].hops] == ["A", "B", "E", "C"]
    assert eng.path_for("C", "sae-a", ["sae-c"], 256, 1) is moved                        # reused again
    eng.close()
