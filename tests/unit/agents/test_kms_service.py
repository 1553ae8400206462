"""KeyService without sockets: two nodes wired in-process, real SQLite stores and simulated links."""
from __future__ import annotations

import base64
from pathlib import Path

import pytest

from kms_agents import keyrequest
from kms_agents.config import Limits
from kms_agents.keyrequest import KeyServiceError
from kms_agents.keystore import KeyStore
from kms_agents.qkd_module import SimulatedQkdModule
from kms_agents.relayer import RelayResult
from kms_agents.service import KeyService

SECRET = b"s" * 32
SAES = {"m": "A", "m2": "A", "s": "B", "s2": "B", "far": "C"}


class Direct:
    """PeerNotifier that calls the neighbour's service directly (what the gRPC servicer does)."""

    def __init__(self) -> None:
        self.services: dict[str, KeyService] = {}
        self.fail = False

    def deliver_direct(self, peer_node, link_id, master_sae, slave_saes, keys, extensions) -> None:
        if self.fail:
            raise ConnectionError("peer down")
        self.services[peer_node].delivery.accept_direct(self._me, link_id, master_sae, slave_saes, keys, extensions)


def make(tmp_path: Path, clock=lambda: 2000.0, rate=1e6, limits: Limits | None = None):
    services = {}
    for node, peer in (("A", "B"), ("B", "A")):
        store = KeyStore(tmp_path / f"{node}.db")
        link = SimulatedQkdModule("A-B", node, peer, SECRET, rate, 1000.0, store, clock=clock)
        notifier = Direct()
        notifier._me = node
        services[node] = KeyService(node, SAES, [link], store, limits or Limits(), notifier)
    for s in services.values():
        s.delivery.peer.services = services
    return services["A"], services["B"]


def keys_of(container: dict) -> list[tuple[str, bytes]]:
    return [(k["key_ID"], base64.b64decode(k["key"])) for k in container["keys"]]


def status_of(exc_info) -> tuple[int, str]:
    return exc_info.value.status, exc_info.value.message


def test_direct_keys_match_and_are_deleted(tmp_path: Path) -> None:
    a, b = make(tmp_path)
    sent = keys_of(a.enc_keys("m", "s", {"number": 2, "size": 128}))
    got = keys_of(b.dec_keys("s", "m", {"key_IDs": [{"key_ID": k} for k, _ in sent]}))
    assert got == sent and all(len(m) == 16 for _, m in sent)
    with pytest.raises(KeyServiceError) as e:
        b.dec_keys("s", "m", {"key_IDs": [{"key_ID": sent[0][0]}]})
    assert status_of(e) == (400, keyrequest.MSG_KEYS_NOT_FOUND)


def test_only_named_slaves_and_local_saes(tmp_path: Path) -> None:
    a, b = make(tmp_path)
    kid = keys_of(a.enc_keys("m", "s"))[0][0]
    for caller in ("s2", "m", "nobody"):
        with pytest.raises(KeyServiceError) as e:
            b.dec_keys(caller, "m", {"key_IDs": [{"key_ID": kid}]})
        assert e.value.status == 401 and e.value.body() is None
    with pytest.raises(KeyServiceError) as e:
        a.enc_keys("s", "m")     # s is not an SAE of node A
    assert e.value.status == 401


def test_defaults_and_status(tmp_path: Path) -> None:
    a, _ = make(tmp_path)
    st = a.status("m", "s")
    assert st["key_size"] == 256 and st["stored_key_count"] <= st["max_key_count"]
    assert st["target_KME_ID"] == "B" and st["status_extension"]["qusec_route_type"] == "direct"
    (kid, material), = keys_of(a.enc_keys("m", "s", None))
    assert len(material) == 32


def test_stored_key_count_never_exceeds_max(tmp_path: Path) -> None:
    a, _ = make(tmp_path, clock=lambda: 10**9, limits=Limits(max_key_count=7))
    st = a.status("m", "s")
    assert st["max_key_count"] == 7 and st["stored_key_count"] == 7


def test_insufficient_key_is_503_and_taken_key_is_burned(tmp_path: Path) -> None:
    t = [1000.5]
    a, b = make(tmp_path, clock=lambda: t[0], rate=256 * 2 * 4)   # 4 blocks/s per direction
    with pytest.raises(KeyServiceError) as e:
        a.enc_keys("m", "s", {"number": 3})
    assert e.value.status == 503 and "not enough key" in e.value.message
    assert e.value.body()["details"][0]["qusec_link_id"] == "A-B"
    assert a.delivery.links[0].available_bytes() == 0    # the two blocks taken before the failure are not reused


def test_peer_down_is_503(tmp_path: Path) -> None:
    a, _ = make(tmp_path)
    a.delivery.peer.fail = True
    with pytest.raises(KeyServiceError) as e:
        a.enc_keys("m", "s")
    assert e.value.status == 503 and "B" in e.value.message


def test_non_neighbour_uses_the_relayer(tmp_path: Path) -> None:
    a, _ = make(tmp_path)
    with pytest.raises(KeyServiceError) as e:
        a.enc_keys("m", "far")
    assert e.value.status == 503 and "not a neighbour" in e.value.message
    assert "key relay across the network needs QuSeC and this KME has none configured" in e.value.message
    assert e.value.details == [{"qusec_route_type": "indirect", "qusec_dst_node": "C"}]

    class Recorder:
        def __init__(self):
            self.calls = []

        def relay(self, **kw):
            self.calls.append(kw)
            return RelayResult([["A", "B", "C"]], "qkd")

        def stored_key_count(self, dst_node, key_size):
            return 5

    a.delivery.relayer = Recorder()
    (kid, material), = keys_of(out := a.enc_keys("m", "far", {"size": 512}))
    call = a.delivery.relayer.calls[0]
    assert call["dst_node"] == "C" and call["keys"] == [(kid, material)] and call["slave_saes"] == ["far"]
    assert out["keys"][0]["key_extension"]["qusec_hops"] == 1
    assert out["keys"][0]["key_extension"]["qusec_route_type"] == "indirect"
    assert a.status("m", "far")["stored_key_count"] == 5


def test_relayer_replaces_the_masters_keys_and_gets_the_request_options(tmp_path: Path) -> None:
    a, _ = make(tmp_path)
    seen = []

    class Replacing:
        def relay(self, *, keys, options, **kw):
            seen.append((list(keys), options))
            return RelayResult([["A", "B", "X", "Y", "C"]], "hybrid", keys=[(k, bytes(len(m))) for k, m in keys])

        def stored_key_count(self, dst_node, key_size):
            return 1

    a.delivery.relayer = Replacing()
    out = a.enc_keys("m", "far", {"number": 2, "size": 64,
                                  "extension_mandatory": [{"qusec_max_hops": 5}],
                                  "extension_optional": [{"qusec_max_hops": 2}]})
    (given, options), = seen
    assert keys_of(out) == [(k, bytes(8)) for k, _ in given]      # the relayer's keys, not ours
    assert options.mandatory == {"qusec_max_hops": 5} and options.optional == {"qusec_max_hops": 2}
    assert out["keys"][0]["key_extension"]["qusec_security_level"] == "hybrid"
    # 3 trusted nodes > the optional 2: delivered, and said so
    assert out["key_container_extension"]["qusec_unhandled"] == ["qusec_max_hops"]

    class Short(Replacing):
        def relay(self, *, keys, options, **kw):
            return RelayResult([["A", "B", "C"]], keys=list(keys)[:1])

    a.delivery.relayer = Short()
    with pytest.raises(KeyServiceError) as e:
        a.enc_keys("m", "far", {"number": 2})
    assert e.value.status == 503 and "returned 1 keys for 2" in e.value.message


def test_multi_node_request_keys_replaced_once_before_any_other_node_has_them(tmp_path: Path) -> None:
    a, _ = make(tmp_path)
    a.saes.update({"far2": "D", "here": "A"})
    calls = []

    class ReplaceAt:
        def __init__(self, node):
            self.node = node

        def relay(self, *, dst_node, keys, **kw):
            calls.append(dst_node)
            if dst_node == self.node:
                return RelayResult([["A", "B", dst_node]], "qkd", keys=[(k, bytes(len(m))) for k, m in keys])
            return RelayResult([["A", "B", dst_node]], "qkd")

        def stored_key_count(self, dst_node, key_size):
            return 1

    # the first relay replaces: the local SAE (stored last) and the second node get the new keys
    a.delivery.relayer = ReplaceAt("C")
    out = a.enc_keys("m", "far", {"number": 1, "size": 64, "additional_slave_SAE_IDs": ["far2", "here"]})
    assert calls == ["C", "D"] and keys_of(out)[0][1] == bytes(8)
    kid = keys_of(out)[0][0]
    assert a.dec_keys("here", "m", {"key_IDs": [{"key_ID": kid}]})["keys"][0]["key"] == \
        base64.b64encode(bytes(8)).decode()
    # a later relay cannot replace what an earlier node already has
    a.delivery.relayer = ReplaceAt("D")
    with pytest.raises(KeyServiceError) as e:
        a.enc_keys("m", "far", {"number": 1, "additional_slave_SAE_IDs": ["far2"]})
    assert e.value.status == 503 and "already relayed to node(s) C" in e.value.message


@pytest.mark.parametrize("body,status,message", [
    ({"size": 7}, 400, keyrequest.MSG_SIZE_MULTIPLE),
    ({"number": True}, 400, "number"),
    ({"size": 2.5}, 400, "size"),
    ({"extension_mandatory": [{"x_y": 1}]}, 400, keyrequest.MSG_EXT_UNSUPPORTED),
    ({"extension_mandatory": [{"qusec_max_hops": -1}]}, 400, keyrequest.MSG_EXT_UNMET),
    ({"additional_slave_SAE_IDs": ["s", "s"]}, 400, "distinct"),
    ("text", 400, "JSON object"),
])
def test_request_validation(tmp_path: Path, body, status, message) -> None:
    a, _ = make(tmp_path)
    with pytest.raises(KeyServiceError) as e:
        a.enc_keys("m", "s", body)
    assert e.value.status == status and message in e.value.message


def test_accept_direct_rejects_inconsistent_deliveries(tmp_path: Path) -> None:
    a, b = make(tmp_path)
    with pytest.raises(ValueError, match="no QKD link"):
        b.delivery.accept_direct("C", "A-B", "m", ["s"], [])
    with pytest.raises(ValueError, match="master SAE"):
        b.delivery.accept_direct("A", "A-B", "s2", ["s"], [])
    with pytest.raises(ValueError, match="slave SAEs"):
        b.delivery.accept_direct("A", "A-B", "m", ["m2"], [])


def test_parallel_links_the_one_with_key_serves(tmp_path: Path) -> None:
    t = [1001.0]
    clock = lambda: t[0]   # noqa: E731
    services = {}
    for node, peer in (("A", "B"), ("B", "A")):
        store = KeyStore(tmp_path / f"p{node}.db")
        slow = SimulatedQkdModule("A-B#slow", node, peer, b"1" * 32, 256 * 2 * 2, 1000.0, store, clock=clock)
        fast = SimulatedQkdModule("A-B#fast", node, peer, b"2" * 32, 256 * 2 * 50, 1000.0, store, clock=clock)
        notifier = Direct()
        notifier._me = node
        services[node] = KeyService(node, SAES, [slow, fast], store, Limits(), notifier)
    for s in services.values():
        s.delivery.peer.services = services
    a, b = services["A"], services["B"]
    used = set()
    for _ in range(10):
        out = a.enc_keys("m", "s")
        used.add(out["keys"][0]["key_extension"]["qusec_link_id"])
        kid = out["keys"][0]["key_ID"]
        assert keys_of(b.dec_keys("s", "m", {"key_IDs": [{"key_ID": kid}]})) == keys_of(out)
    assert "A-B#fast" in used
    assert a.status("m", "s")["status_extension"]["qusec_links"] == ["A-B#slow", "A-B#fast"]


def test_status_fields_match_the_openapi_schema(tmp_path: Path) -> None:
    import json

    from kms_agents import etsi014
    schema = json.loads((Path(etsi014.__file__).parent / "openapi" / "etsi014.json").read_text())
    status_schema = schema["components"]["schemas"]["Status"]
    a, _ = make(tmp_path)
    st = a.status("m", "s")
    assert set(status_schema["required"]) <= set(st) <= set(status_schema["properties"])


def test_multicast_to_a_neighbour_and_this_node(tmp_path: Path) -> None:
    a, b = make(tmp_path)
    out = a.enc_keys("m", "s", {"number": 2, "additional_slave_SAE_IDs": ["m2", "s2"]})
    ids = {"key_IDs": [{"key_ID": k["key_ID"]} for k in out["keys"]]}
    assert keys_of(b.dec_keys("s", "m", ids)) == keys_of(out) == keys_of(b.dec_keys("s2", "m", ids))
    assert keys_of(a.dec_keys("m2", "m", ids)) == keys_of(out)
    assert out["keys"][0]["key_extension"]["qusec_route_type"] == "direct"


def test_accept_direct_checks_sizes_and_claims_each_link_key_once(tmp_path: Path) -> None:
    a, b = make(tmp_path)
    lk = a.delivery.links[0].take(32)
    with pytest.raises(ValueError, match="fewer link key bits"):
        b.delivery.accept_direct("A", "A-B", "m", ["s"], [("k1", lk.key_ids, 512)])
    # rolled back: still claimable
    assert b.delivery.accept_direct("A", "A-B", "m", ["s"], [("k1", lk.key_ids, 256)]) == 1
    from kms_agents.keysource import UnknownKeyIds
    with pytest.raises(UnknownKeyIds):
        b.delivery.accept_direct("A", "A-B", "m", ["s"], [("k2", lk.key_ids, 256)])


def test_a_neighbour_whose_direct_link_runs_dry_is_reached_around_it(tmp_path: Path) -> None:
    """The direct link holds less key than asked: with QuSeC (a relayer) the keys go around it,
    no link key is taken (and burned) on the short link; without one, or when the request insists
    on the direct route, the direct link answers as before (503 when short)."""
    now = [1000.5]   # the links started at 1000.0: 0.5 s of key at 64 b/s is 16 bits each way
    a, b = make(tmp_path, clock=lambda: now[0], rate=64)
    link = a.delivery.links[0]
    before = link.available_bytes()
    with pytest.raises(KeyServiceError) as e:
        a.enc_keys("m", "s", {"size": 256})                # no relayer: the direct link or nothing
    assert e.value.status == 503 and "not enough key on QKD link A-B" in e.value.message

    class Around:
        routes_foreign = True   # it has a QuSeC to ask, as the agent's relayer with one does

        def __init__(self):
            self.calls = []

        def relay(self, **kw):
            self.calls.append(kw)
            return RelayResult([["A", "C", "B"]], "qkd")

        def stored_key_count(self, dst_node, key_size):
            return 0

    a.delivery.relayer = Around()
    out = a.enc_keys("m", "s", {"size": 256})
    (call,) = a.delivery.relayer.calls
    assert call["dst_node"] == "B" and call["slave_saes"] == ["s"]
    assert out["keys"][0]["key_extension"]["qusec_route_type"] == "indirect"
    assert link.available_bytes() >= before                 # nothing taken from the dry link
    with pytest.raises(KeyServiceError) as e:               # the SAE asked for the direct route
        a.enc_keys("m", "s", {"size": 256, "extension_mandatory": [{"qusec_route_type": "direct"}]})
    assert e.value.status == 503 and len(a.delivery.relayer.calls) == 1
    now[0] = 1100.0                                          # the link has key again: direct
    out = a.enc_keys("m", "s", {"size": 256})
    assert out["keys"][0]["key_extension"]["qusec_route_type"] == "direct"
    assert len(a.delivery.relayer.calls) == 1
