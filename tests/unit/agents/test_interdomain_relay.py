"""The relay's handoff step at an interworking KME (kms_agents.relay.hop, .engine) and the KME's
crossing (kms_agents.etsi020.crossing), on a chain of engines wired in process (no sockets): a
key for another domain's SAE is handed over, never stored at the exit, and the hop is
acknowledged only when the next domain acknowledged the key relayed."""
from __future__ import annotations

import os
import secrets
import threading
import time
import uuid

import pytest

from kms_agents.config import Etsi020Config
from kms_agents.etsi020.crossing import Crossing
from kms_agents.etsi020.kme import Onward, SendRefused
from kms_agents.etsi020.model import EXT_DOMAINS, ExtKey, Outcome
from kms_agents.keystore import KeyStore
from kms_agents.qkd_module import SimulatedQkdModule
from kms_agents.relay.authz import Authorisation, AuthTable
from kms_agents.relay.engine import RelayEngine
from kms_agents.relay.messages import Reason, RelayFailure
from kms_agents.relay.plan import Handoff, Hop, PathPlan, PlannedPath

HANDOFF = Handoff("s1", "etsi020", "east", "Y", "X")


class Chain:
    """Nodes A - B - X of domain west (X its site's KME); QuSeC's stand-in grants A -> X with the
    handoff for an SAE it does not know, or an ordinary path for one it does."""

    def __init__(self, root) -> None:
        nodes = ("A", "B", "X")
        self.stores = {n: KeyStore(root / f"{n}.db") for n in nodes}
        self.authz = {n: AuthTable() for n in nodes}
        self.grants: list[str] = []
        self.foreign_ok = True   # QuSeC vouches for a foreign master SAE (the source is a site's KME)
        links: dict[str, dict] = {n: {} for n in nodes}
        frozen = time.time()
        for a, b in zip(nodes, nodes[1:]):
            secret = secrets.token_bytes(32)
            for me, peer in ((a, b), (b, a)):
                links[me][peer] = SimulatedQkdModule(f"{a}-{b}", me, peer, secret, 1e7, frozen - 60,
                                                     self.stores[me], capacity_bytes=1 << 20,
                                                     clock=lambda: frozen)
        saes = {"sae-a": "A", "sae-x": "X"}
        self.engines = {n: RelayEngine(n, sources=links[n].get, all_sources=links[n].values,
                                       store=self.stores[n], authz=self.authz[n],
                                       request_path=self.grant, release_path=lambda pid: None,
                                       send=self._sender(n, "relay"), send_void=self._sender(n, "void"),
                                       sae_node=saes.get)
                        for n in nodes}

    def _sender(self, me, what):
        def send(peer, _addr, msg, _timeout):
            receiver = self.engines[peer].receiver
            return receiver.handle_void(msg, me) if what == "void" else receiver.handle_relay(msg, me)
        return send

    def grant(self, req):
        handoff = HANDOFF if not req.dst_node else None
        hops = ["A", "B", "X"]
        pid = f"p-{uuid.uuid4().hex[:8]}"
        self.grants.append(pid)
        for i, n in enumerate(hops):
            self.authz[n].grant(Authorisation(
                path_id=pid, prev_hop=hops[i - 1] if i else "", next_hop=hops[i + 1] if i < 2 else "",
                prev_hop_addr="x" if i else "", next_hop_addr="x" if i < 2 else "",
                expires_at=time.time() + 60, src_node="A", dst_node="X", src_sae=req.src_sae,
                dst_saes=req.slave_saes, security_level="qkd", handoff=handoff if i == 2 else None,
                foreign_src_sae=req.src_sae not in ("sae-a", "sae-x") and self.foreign_ok))
        return PathPlan(paths=(PlannedPath(pid, tuple(Hop(n, "x") for n in hops)),), security_level="qkd",
                        expires_at=time.time() + 60, handoff=handoff)

    def held(self, key_id):
        return [n for n, s in self.stores.items() if s.peek(key_id) is not None]

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


def relay(chain, slave="sae-far", dst=""):
    keys = [(str(uuid.uuid4()), os.urandom(32))]
    return keys, chain.engines["A"].relay_keys(master_sae="sae-a", slave_saes=[slave], dst_node=dst, keys=keys)


def test_the_exit_hands_the_key_over_and_stores_nothing(chain):
    handed = []
    chain.engines["X"].receiver.handoff = lambda h, ini, tgt, keys, t: handed.append((h, ini, tgt, keys, t))
    keys, (out, plan, level) = relay(chain)
    assert [(k.key_id, k.key) for k in out] == keys and level == "qkd" and plan.handoff == HANDOFF
    (h, initiator, targets, got, timeout), = handed
    assert (h, initiator, targets, got) == (HANDOFF, "sae-a", ("sae-far",), keys) and timeout > 0.8
    assert chain.held(keys[0][0]) == []
    relay(chain)   # a chain is chosen afresh for every request: never a cached plan
    assert len(chain.grants) == 2


def test_the_domains_the_exit_reports_reach_the_source_with_the_ack(chain):
    beyond = [{"domain": "east", "crossing": "s1", "entry": "Y", "hops": 2, "level": "qkd"}]
    chain.engines["X"].receiver.handoff = lambda *_a: beyond
    _keys, (out, _plan, _level) = relay(chain)
    assert out[0].meta["qusec_domains"] == beyond and out[0].meta["qusec_paths"] == [["A", "B", "X"]]
    chain.engines["X"].receiver.handoff = lambda *_a: []      # the peer said nothing: none named
    _keys, (out, _plan, _level) = relay(chain)
    assert "qusec_domains" not in out[0].meta


def test_an_entry_kmes_onward_segment_is_reused_while_it_lives_and_dropped_when_it_fails(chain):
    ok = {"yes": True}

    def hand(*_a):
        if not ok["yes"]:
            raise RelayFailure(Reason.FAILED, "KME Y acknowledged 1 key(s) ['failed'], not relayed")
        return []
    chain.engines["X"].receiver.handoff = hand
    engine = chain.engines["A"]
    for _ in range(2):   # keys that came in over ETSI 020: the chain was chosen at their source
        engine.relay_keys(master_sae="sae-far", slave_saes=["sae-farther"], dst_node="",
                          keys=[(str(uuid.uuid4()), os.urandom(32))], retry=False, keep_handoff=True)
    assert len(chain.grants) == 1
    ok["yes"] = False
    with pytest.raises(RelayFailure):
        engine.relay_keys(master_sae="sae-far", slave_saes=["sae-farther"], dst_node="",
                          keys=[(str(uuid.uuid4()), os.urandom(32))], retry=False, keep_handoff=True)
    ok["yes"] = True
    engine.relay_keys(master_sae="sae-far", slave_saes=["sae-farther"], dst_node="",
                      keys=[(str(uuid.uuid4()), os.urandom(32))], retry=False, keep_handoff=True)
    assert len(chain.grants) == 2   # after the failure QuSeC was asked afresh


def test_a_failed_handoff_fails_the_relay_and_nothing_is_kept(chain):
    voided = []

    def refuse(*_a):
        raise RelayFailure(Reason.FAILED, "KME Y acknowledged 1 key(s) ['failed'], not relayed")
    chain.engines["X"].receiver.handoff = refuse
    chain.engines["X"].receiver.handoff_void = lambda h, ids: voided.append((h.peer_kme, ids))
    with pytest.raises(RelayFailure) as err:
        relay(chain)
    assert "not relayed" in str(err.value) and len(chain.grants) == 1   # one attempt: no retry
    assert voided and voided[0][0] == "Y"    # the source's void reached the exit: voided over there


def test_an_exit_without_etsi020_refuses_the_handoff(chain):
    with pytest.raises(RelayFailure) as err:
        relay(chain)
    assert "hands no keys to other domains" in str(err.value)


def test_without_a_handoff_a_key_for_an_sae_not_at_the_end_is_never_stored(chain):
    with pytest.raises(RelayFailure) as err:
        relay(chain, slave="sae-far", dst="X")     # an ordinary grant to X for a foreign SAE
    assert "not attached to node X" in str(err.value)


# -- the KME's crossing ---------------------------------------------------------------------------
class PeerStandIn:
    """The Etsi020Node as the crossing uses it: ``send_keys`` records, the peer's ack comes later
    (from another thread, as the node's event loop calls ``on_settled``)."""

    def __init__(self, crossing, state="relayed", refuse=False, ack=True, sync=True):
        self.crossing, self.state, self.refuse, self.ack = crossing, state, refuse, ack
        self.cfg = Etsi020Config(handoff_sync=sync)
        self.sent, self.voided, self.modes = [], [], []

    def send_keys(self, kme_id, keys, initiator, targets, *, sync=False):
        self.modes.append(sync)
        if self.refuse:
            raise SendRefused(400, {"details": {"target_sae_id_not_recognized": "x"}})
        self.sent.append((kme_id, [k.key_id for k in keys], initiator, targets))
        if self.ack:
            for k in keys:
                threading.Timer(0.05, self.crossing.settled,
                                args=(type("Sent", (), {"key_id": k.key_id})(), self.state)).start()

    def void_sent(self, kme_id, ids):
        self.voided.append((kme_id, list(ids)))


class SyncPeer:
    """The Etsi020Node answering in the synchronous mode: the outcomes come back with the call,
    their ack container's extension as the peer wrote it."""

    def __init__(self, extension):
        self.extension, self.voided = extension, []
        self.cfg = Etsi020Config()

    def send_keys(self, kme_id, keys, initiator, targets, *, sync=False):
        return [Outcome(k.key_id, "relayed", initiator, tuple(targets), None, self.extension) for k in keys]

    def void_sent(self, kme_id, ids):
        self.voided.append((kme_id, list(ids)))


def test_the_peers_domain_is_named_from_the_handoff_not_from_what_the_peer_says():
    crossing = Crossing("X", {"sae-x": "X"})
    crossing.node = SyncPeer({EXT_DOMAINS: [
        {"domain": "west", "entry": "A", "exit": "Z", "hops": 4, "level": "qkd"},     # lies about itself
        {"domain": "north", "crossing": "s2", "entry": "N1", "hops": 1, "level": "qkd"}]})
    got = crossing.hand_off(HANDOFF, "sae-a", ("sae-far",), [(str(uuid.uuid4()), os.urandom(32))], 2.0)
    assert got == [{"domain": "east", "crossing": "s1", "entry": "Y", "exit": "Z", "hops": 4, "level": "qkd"},
                   {"domain": "north", "crossing": "s2", "entry": "N1", "hops": 1, "level": "qkd"}]


def test_an_unusable_domains_extension_is_left_out_and_the_keys_still_go(caplog):
    crossing = Crossing("X", {"sae-x": "X"})
    crossing.node = SyncPeer({EXT_DOMAINS: [{"entry": "Y", "inside": ["Y2", "Y3"]}]})
    assert crossing.hand_off(HANDOFF, "sae-a", ("sae-far",), [(str(uuid.uuid4()), os.urandom(32))], 2.0) == []
    assert "unusable" in caplog.text


@pytest.mark.parametrize("sync", [True, False], ids=["sync", "async"])
@pytest.mark.parametrize("state, refuse, ack, error", [
    ("relayed", False, True, None),
    ("failed", False, True, "not relayed"),
    ("relayed", True, True, "refused the keys (400)"),
    ("relayed", False, False, "did not acknowledge"),
])
def test_a_handoff_returns_only_once_the_peer_acknowledged_relayed(state, refuse, ack, error, sync):
    """In either mode (``handoff_sync``): the acks in the answer or at the callback."""
    crossing = Crossing("X", {"sae-x": "X"})
    peer = crossing.node = PeerStandIn(crossing, state, refuse, ack, sync)
    keys = [(str(uuid.uuid4()), os.urandom(32)), (str(uuid.uuid4()), os.urandom(32))]
    if error is None:
        crossing.hand_off(HANDOFF, "sae-a", ("sae-far",), keys, 2.0)
        assert peer.sent == [("Y", [k for k, _ in keys], "sae-a", ["sae-far"])] and not peer.voided
    else:
        with pytest.raises(RelayFailure) as err:
            crossing.hand_off(HANDOFF, "sae-a", ("sae-far",), keys, 0.3)
        assert error in str(err.value)
        assert bool(peer.voided) == (not ack)    # no ack in time: voided toward the peer
    assert peer.modes == [sync]
    assert crossing._waiting == {}


def test_keys_from_the_peer_go_on_under_their_own_ids(chain):
    crossing = Crossing("A", {"sae-a": "A", "sae-x": "X"})
    crossing.engine = chain.engines["A"]
    kid = str(uuid.uuid4())
    ext = crossing.onward(Onward("Z", "sae-far", ("sae-x",), (ExtKey(kid, b"k" * 32),)))
    assert ext == {EXT_DOMAINS: [{"entry": "A", "hops": 2, "level": "qkd"}]}   # no node inside: B is not named
    stored = chain.stores["X"].peek(kid)
    assert stored is not None and stored.material == b"k" * 32 and stored.master_sae == "sae-far"
    with pytest.raises(RelayFailure):   # targets on several nodes are not relayed on
        crossing.onward(Onward("Z", "sae-far", ("sae-x", "sae-a"), (ExtKey(str(uuid.uuid4()), b"k" * 32),)))
    chain.foreign_ok = False   # without QuSeC's word the destination takes no unknown master SAE
    with pytest.raises(RelayFailure, match="master SAE 'sae-other' is not attached to node A"):
        crossing.onward(Onward("Z", "sae-other", ("sae-x",), (ExtKey(str(uuid.uuid4()), b"k" * 32),)))


def test_a_void_from_the_peer_voids_the_keys_relayed_on(chain):
    crossing = Crossing("A", {"sae-a": "A", "sae-x": "X"})
    crossing.engine = chain.engines["A"]
    one, two = str(uuid.uuid4()), str(uuid.uuid4())
    crossing.onward(Onward("Z", "sae-far", ("sae-x",), (ExtKey(one, b"k" * 32),)))
    crossing.onward(Onward("Z", "sae-far", ("sae-x",), (ExtKey(two, b"j" * 32),)))
    assert chain.held(one) == ["X"] and chain.held(two) == ["X"]
    crossing.voided("Z", [one, str(uuid.uuid4())])   # an ID it never relayed on is ignored
    assert chain.held(one) == [] and chain.held(two) == ["X"]
    crossing.voided("Z", [one])                       # twice: nothing left to do
    assert chain.held(two) == ["X"]
