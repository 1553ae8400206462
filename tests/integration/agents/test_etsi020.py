"""The vKMS's GS QKD 020 endpoints driven over real TLS 1.3 with mutual certificates by an independent
peer (tests/helpers/etsi020_peer.py, written from the spec): every status code, the asynchronous ack
flow, synchronous mode, void, refusals that keep nothing, restart, retries and voids of keys we sent.
Every answer body is checked against the official OpenAPI document's schemas."""
from __future__ import annotations

import base64
import socket
import ssl
import threading
import time
import uuid
from pathlib import Path

import pytest

from kms_agents.agent import Agent
from kms_agents.client import Etsi014Client, Etsi014Error
from kms_agents.config import parse_config
from kms_agents.etsi020 import rules
from kms_agents.etsi020.model import ExtKey
from tests.helpers.etsi020_peer import CallbackServer, Schemas, SpecClient, client_context
from tests.helpers.pki import make_ca, make_cert, write

pytestmark = pytest.mark.integration

SCHEMAS = Schemas()
INITIATOR = "sae-y1"        # an SAE of the peer's network


class World:
    """Network X's agent B (with [etsi020]), and network Y's KME Y1 (its own CA) as the test's peer."""

    def __init__(self, tmp: Path, **etsi020) -> None:
        self.tmp = tmp
        x_ca, y_ca = make_ca("net-x"), make_ca("net-y")
        self.x_ca, _ = write(*x_ca, tmp / "pki", "x-ca")
        self.y_ca, _ = write(*y_ca, tmp / "pki", "y-ca")
        self.b = write(*make_cert(x_ca, "B"), tmp / "pki", "B")
        self.sae_b1 = write(*make_cert(x_ca, "sae-b1", role="sae"), tmp / "pki", "sae-b1")
        self.y1 = write(*make_cert(y_ca, "Y1"), tmp / "pki", "Y1")
        self.y2 = write(*make_cert(y_ca, "Y2"), tmp / "pki", "Y2")                     # not a configured peer
        self.y1_sae = write(*make_cert(y_ca, "Y1", role="sae"), tmp / "pki", "Y1-sae")  # the wrong role
        self.callback = CallbackServer(str(self.x_ca), str(self.y1[0]), str(self.y1[1]))
        self.etsi020 = {"ca_certs": [str(self.y_ca)], "request_s": 2.0, "ack_timeout_s": 1.0, "retry_s": 0.2,
                        "max_attempts": 2, "call_timeout_s": 3.0,
                        "peers": [{"kme_id": "Y1", "url": self.callback.url, "identity": "urn:qusec:node:Y1"}],
                        **etsi020}
        self.agent = self.start()

    def config(self):
        return parse_config({"node_id": "B", "state_dir": str(self.tmp / "B"),
                             "tls": {"ca_cert": str(self.x_ca), "cert": str(self.b[0]), "key": str(self.b[1])},
                             "saes": {"sae-b1": "B", "sae-b2": "B", "sae-c1": "C"}, "etsi020": self.etsi020})

    def start(self) -> Agent:
        agent = Agent(self.config())
        agent.start()
        return agent

    def restart(self) -> None:
        self.agent.stop()
        self.agent = self.start()

    @property
    def url(self) -> str:
        return self.agent.endpoints["etsi020_url"]

    def peer(self, cert=None, **kw) -> SpecClient:
        cert = cert or self.y1
        return SpecClient(self.url, client_context(str(self.x_ca), str(cert[0]), str(cert[1]), **kw))

    def sae(self) -> Etsi014Client:
        return Etsi014Client(self.agent.endpoints["etsi014_url"], self.x_ca, *self.sae_b1, kme_node="B")

    def counts(self) -> dict[str, int]:
        c = self.agent.etsi020.ext_store.counts()
        c["e2e"] = len(self.agent.store.pending_ids(INITIATOR, "sae-b1"))
        return c

    def close(self) -> None:
        self.agent.stop()
        self.callback.close()


@pytest.fixture
def world(tmp_path: Path):
    w = World(tmp_path)
    yield w
    w.close()


def _keys(n=1, size=32):
    return [{"key_id": str(uuid.uuid4()), "value": base64.b64encode(bytes(range(size))).decode()} for _ in range(n)]


def _ext(keys, callback: str | None, targets=("sae-b1",)):
    body = {"keys": keys, "initiator_sae_id": INITIATOR, "target_sae_ids": list(targets)}
    if callback:
        body["ack_callback_url"] = callback
    return body


def _checked(reply, path: str, method: str = "POST"):
    """The reply's body, checked against the schema the official document names for its status."""
    name = SCHEMAS.response_schema(path, method, reply.status)
    if name is None:
        assert reply.body is None, reply.body
    else:
        assert reply.content_type.startswith("application/json")
        SCHEMAS.validate(name, reply.body)
    return reply.body


EXT, ACK, VOID = "/kmapi/v1/ext_keys", "/kmapi/v1/ext_keys/ack", "/kmapi/v1/ext_keys/void"


# -- versions ---------------------------------------------------------------------------------------
def test_versions_name_v1_and_the_synchronous_mode(world):
    r = world.peer().versions()
    assert r.status == 200
    assert _checked(r, "/kmapi/versions", "GET") == {"versions": ["v1"], "capabilities": ["synchronous_mode"]}


# -- ext_keys: asynchronous and synchronous ---------------------------------------------------------
def test_async_ext_keys_is_202_then_an_ack_relayed_to_the_callback_and_the_sae_gets_the_key(world):
    keys = _keys(3)
    r = world.peer().ext_keys(_ext(keys, world.callback.ack_url()))
    assert r.status == 202 and _checked(r, EXT) is None
    [got] = world.callback.wait(1, path_suffix="/ack")
    SCHEMAS.validate("ack_containers", got.body)
    assert got.body[0]["ack_status"] == "relayed" and got.body[0]["initiator_sae_id"] == INITIATOR
    assert {k["key_id"] for k in got.body[0]["key_id_container"]} == {k["key_id"] for k in keys}
    from kms_agents.identity import identity_of
    assert str(identity_of(got.peer_cert)) == "node:B"          # the ack came from B over mutual TLS
    with world.sae() as sae:
        fetched = sae.dec_keys(INITIATOR, [k["key_id"] for k in keys])
    assert [base64.b64encode(k.key).decode() for k in fetched] == [k["value"] for k in keys]


def test_sync_ext_keys_answers_200_with_the_acks(world):
    keys = _keys(2)
    r = world.peer().ext_keys(_ext(keys, None))
    assert r.status == 200
    body = _checked(r, EXT)
    assert body[0]["ack_status"] == "relayed" and len(body[0]["key_id_container"]) == 2
    assert world.callback.got == []


def test_a_retry_of_the_same_keys_is_acked_again_and_stored_once(world):
    keys = _keys(1)
    assert world.peer().ext_keys(_ext(keys, None)).status == 200
    r = world.peer().ext_keys(_ext(keys, None))
    assert r.status == 200 and _checked(r, EXT)[0]["ack_status"] == "relayed"
    assert world.counts()["e2e"] == 1
    other = [{"key_id": keys[0]["key_id"], "value": base64.b64encode(b"other").decode()}]
    assert world.agent.etsi020.ext_store.sent([keys[0]["key_id"]]) == []
    # the key was relayed (its material left the table), so a changed value cannot be told apart: same ack
    assert world.peer().ext_keys(_ext(other, None)).status == 200


@pytest.mark.parametrize("body,kind", [
    ({"keys": [], "initiator_sae_id": INITIATOR, "target_sae_ids": ["sae-b1"]}, "invalid-parameter"),
    ({"initiator_sae_id": INITIATOR, "target_sae_ids": ["sae-b1"]}, "missing-parameters"),
    ({"keys": [{"key_id": "1", "value": "AAAA"}], "initiator_sae_id": INITIATOR, "target_sae_ids": ["sae-b1"]},
     "invalid-parameter"),
    ({"keys": [{"key_id": str(uuid.uuid4()), "value": "***"}], "initiator_sae_id": INITIATOR,
      "target_sae_ids": ["sae-b1"]}, "invalid-parameter"),
    ({"keys": _keys(1), "initiator_sae_id": INITIATOR, "target_sae_ids": ["nobody"]}, "key-routing-error"),
    ({"keys": _keys(1), "initiator_sae_id": "sae-b2", "target_sae_ids": ["sae-b1"]}, "key-routing-error"),
    ({"keys": _keys(1), "initiator_sae_id": INITIATOR, "target_sae_ids": ["sae-b1"],
      "ack_callback_url": "http://127.0.0.1/ack"}, "invalid-parameter"),
    ([1, 2], "missing-parameters"),
])
def test_bad_ext_keys_are_400_with_problem_details_and_nothing_is_kept(world, body, kind):
    before = world.counts()
    r = world.peer().ext_keys(body)
    assert r.status == 400, r.body
    assert _checked(r, EXT)["type"].endswith("/" + kind)
    assert world.counts() == before
    time.sleep(0.3)
    assert world.callback.got == []


def test_a_body_that_is_not_json_or_too_big_is_400(world):
    r = world.peer().call("POST", EXT, raw=b"{not json")
    assert r.status == 400 and _checked(r, EXT)
    r = world.peer().call("POST", EXT, raw=b" " * (2 << 20))
    assert r.status == 400 and "at most" in r.body["details"]["malformed_property"]


def test_a_target_elsewhere_in_the_network_has_no_route_yet_503(world):
    r = world.peer().ext_keys(_ext(_keys(1), world.callback.ack_url(), targets=("sae-c1",)))
    assert r.status == 503 and "no_known_route" in _checked(r, EXT)["details"]
    assert world.counts()["rx"] == 0


def test_an_unsupported_mandatory_extension_is_503_and_nothing_is_kept(world):
    body = _ext(_keys(1), world.callback.ack_url())
    body["extension_mandatory"] = {"E32473_route": "x"}
    r = world.peer().ext_keys(body)
    assert r.status == 503 and "unsupported_mandatory_extension" in _checked(r, EXT)["details"]
    assert world.counts()["rx"] == 0


def test_an_incomplete_request_is_408(world):
    ctx = client_context(str(world.x_ca), str(world.y1[0]), str(world.y1[1]))
    port = int(world.url.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        with ctx.wrap_socket(raw, server_hostname="127.0.0.1") as s:
            s.sendall(b"POST /kmapi/v1/ext_keys HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                      b"Content-Length: 500\r\n\r\n{\"keys\": [")
            data = b""
            while b"\r\n\r\n" not in data or not data.rstrip().endswith(b"}"):
                chunk = s.recv(4096)
                if not chunk:
                    break
                data += chunk
    head, _, payload = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 408"), head
    import json
    SCHEMAS.validate("problem_details", json.loads(payload))
    assert world.counts()["rx"] == 0


# -- who may call ------------------------------------------------------------------------------------
def test_a_certificate_not_in_the_peer_list_is_401_and_nothing_is_kept(world):
    before = world.counts()
    r = world.peer(world.y2).ext_keys(_ext(_keys(1), world.callback.ack_url()))
    assert r.status == 401 and _checked(r, EXT)["type"].endswith("/unauthorized")
    assert world.peer(world.y2).versions().status == 401
    assert world.counts() == before


def test_a_certificate_of_the_wrong_role_is_401(world):
    r = world.peer(world.y1_sae).ext_keys(_ext(_keys(1), world.callback.ack_url()))
    assert r.status == 401 and "node certificate" in _checked(r, EXT)["details"]["unauthorized"]
    assert world.counts()["rx"] == 0


def test_tls_1_2_is_refused(world):
    with pytest.raises((ssl.SSLError, ConnectionError)):
        world.peer(tls12=True).versions()


def test_a_client_without_certificate_is_refused_at_the_handshake(world):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_verify_locations(str(world.x_ca))
    with pytest.raises((ssl.SSLError, ConnectionError)):
        SpecClient(world.url, ctx).versions()


def test_acks_never_go_to_a_callback_that_is_not_the_requesting_kme(world):
    stranger = CallbackServer(str(world.x_ca), str(world.y2[0]), str(world.y2[1]))
    try:
        r = world.peer().ext_keys(_ext(_keys(1), stranger.ack_url()))
        assert r.status == 202
        time.sleep(1.5)
        assert stranger.got == []
    finally:
        stranger.close()


# -- ack ---------------------------------------------------------------------------------------------
def _ack(ids, status="relayed", targets=("sae-y2",)):
    return [{"key_id_container": [{"key_id": k} for k in ids], "ack_status": status,
             "initiator_sae_id": "sae-b1", "target_sae_ids": list(targets)}]


def _send(world, n=2):
    keys = [ExtKey(str(uuid.uuid4()), bytes([i]) * 32) for i in range(n)]
    assert world.agent.etsi020.send_keys("Y1", keys, "sae-b1", ["sae-y2"]) is None
    [sent] = world.callback.wait(1, path_suffix="/ext_keys")
    return keys, sent


def test_keys_we_send_are_released_only_once_acked_relayed(world):
    keys, sent = _send(world)
    SCHEMAS.validate("ext_key_container", sent.body)
    assert sent.body["ack_callback_url"].startswith(world.url)
    store = world.agent.etsi020.ext_store
    assert {s.state for s in store.sent([k.key_id for k in keys])} == {rules.TX_SENT}
    r = world.peer().ack(_ack([k.key_id for k in keys]))
    assert r.status == 200 and _checked(r, ACK) is None
    after = store.sent([k.key_id for k in keys])
    assert {s.state for s in after} == {rules.TX_RELAYED} and all(s.material is None for s in after)
    assert world.peer().ack(_ack([k.key_id for k in keys])).status == 200      # a repeated ack is harmless


def test_acks_for_unknown_keys_or_malformed_are_400(world):
    r = world.peer().ack(_ack([str(uuid.uuid4())]))
    assert r.status == 400 and _checked(r, ACK)["type"].endswith("/key-not-present")
    r = world.peer().ack([{"ack_status": "relayed"}])
    assert r.status == 400 and _checked(r, ACK)["type"].endswith("/ack-not-understood")
    too_many = [_ack([str(uuid.uuid4())])[0] for _ in range(1025)]
    assert world.peer().ack(too_many).status == 400


def test_another_kme_cannot_ack_our_keys(world, tmp_path):
    keys, _ = _send(world, 1)
    # Y2 is trusted by nobody here: 401; and a peer can only settle keys we sent to it
    assert world.peer(world.y2).ack(_ack([keys[0].key_id])).status == 401
    assert {s.state for s in world.agent.etsi020.ext_store.sent([keys[0].key_id])} == {rules.TX_SENT}


def test_unacked_sent_keys_are_retried_then_voided(world):
    world.callback.status = 503
    keys = [ExtKey(str(uuid.uuid4()), b"k" * 32)]
    world.agent.etsi020.send_keys("Y1", keys, "sae-b1", ["sae-y2"])
    posts = world.callback.wait(2, timeout=20, path_suffix="/ext_keys")       # the first try and one retry
    assert posts[0].body["keys"] == posts[1].body["keys"]                     # same IDs and values
    [void] = world.callback.wait(1, timeout=20, path_suffix="/void")
    SCHEMAS.validate("void_container", void.body)
    assert void.body["key_ids"] == [keys[0].key_id]
    world.callback.status = None
    r = world.peer().ack(_ack([keys[0].key_id], status="voided"))
    assert r.status == 200
    [s] = world.agent.etsi020.ext_store.sent([keys[0].key_id])
    assert s.state == rules.TX_VOIDED and s.material is None


def test_a_400_answer_to_our_ext_keys_forgets_the_keys(world):
    from kms_agents.etsi020.kme import SendRefused
    world.callback.status = 400
    keys = [ExtKey(str(uuid.uuid4()), b"k" * 32)]
    with pytest.raises(SendRefused):
        world.agent.etsi020.send_keys("Y1", keys, "sae-b1", ["sae-y2"])
    assert world.agent.etsi020.ext_store.sent([keys[0].key_id]) == []


def test_we_never_send_keys_to_a_server_that_is_not_the_configured_peer(tmp_path):
    w = World(tmp_path)
    impostor = CallbackServer(str(w.x_ca), str(w.y2[0]), str(w.y2[1]))
    try:
        w.etsi020["peers"][0]["url"] = impostor.url
        w.restart()
        w.agent.etsi020.send_keys("Y1", [ExtKey(str(uuid.uuid4()), b"k" * 32)], "sae-b1", ["sae-y2"])
        time.sleep(1.0)
        assert impostor.got == []          # the handshake showed Y2: not a byte of the request was sent
    finally:
        impostor.close()
        w.close()


# -- void --------------------------------------------------------------------------------------------
def _void(ids, callback=None, **extra):
    body = {"key_ids": ids, "initiator_sae_id": INITIATOR, "target_sae_ids": ["sae-b1"], **extra}
    if callback:
        body["ack_callback_url"] = callback
    return body


def test_an_empty_void_without_all_confirmation_is_400(world):
    keys = _keys(1)
    assert world.peer().ext_keys(_ext(keys, None)).status == 200
    for extra in ({}, {"all_confirmation": False}):
        r = world.peer().void(_void([], world.callback.ack_url(), **extra))
        assert r.status == 400 and _checked(r, VOID)["type"].endswith("/no-key-ids-or-confirmation")
    assert world.counts()["e2e"] == 1


def test_void_all_with_confirmation_voids_every_key_between_the_saes_async(world):
    keys = _keys(3)
    assert world.peer().ext_keys(_ext(keys, None)).status == 200
    r = world.peer().void(_void([], world.callback.ack_url(), all_confirmation=True))
    assert r.status == 202 and _checked(r, VOID) is None
    [got] = world.callback.wait(1, path_suffix="/ack")
    SCHEMAS.validate("ack_containers", got.body)
    assert got.body[0]["ack_status"] == "voided" and len(got.body[0]["key_id_container"]) == 3
    with world.sae() as sae, pytest.raises(Etsi014Error) as e:
        sae.dec_keys(INITIATOR, [keys[0]["key_id"]])
    assert e.value.status == 400
    assert world.agent.store.peek(keys[0]["key_id"]) is None


def test_sync_void_answers_voided_failed_to_void_and_key_not_present(world):
    keys = _keys(2)
    assert world.peer().ext_keys(_ext(keys, None)).status == 200
    with world.sae() as sae:
        sae.dec_keys(INITIATOR, [keys[0]["key_id"]])          # delivered: too late to void
    unknown = str(uuid.uuid4())
    r = world.peer().void(_void([keys[0]["key_id"], keys[1]["key_id"], unknown]))
    assert r.status == 200
    status = {k["key_id"]: c["ack_status"] for c in _checked(r, VOID) for k in c["key_id_container"]}
    assert status == {keys[0]["key_id"]: "failed to void", keys[1]["key_id"]: "voided", unknown: "key not present"}


def test_malformed_void_is_400(world):
    r = world.peer().void({"key_ids": ["x"], "initiator_sae_id": INITIATOR, "target_sae_ids": ["sae-b1"]})
    assert r.status == 400 and _checked(r, VOID)["type"].endswith("/void-request-not-understood")


# -- bounds, restart, the never-before-relayed rule ---------------------------------------------------
def test_a_peer_with_too_much_waiting_gets_503(tmp_path):
    w = World(tmp_path, max_pending_per_peer=3)
    try:
        w.callback.status = 503                                  # its acks pile up
        assert w.peer().ext_keys(_ext(_keys(2), w.callback.ack_url())).status == 202
        w.callback.wait(1, path_suffix="/ack")
        r = w.peer().ext_keys(_ext(_keys(3), w.callback.ack_url()))
        assert r.status == 503 and _checked(r, EXT)
    finally:
        w.close()


def test_restart_keeps_a_key_whose_ack_was_not_delivered(tmp_path):
    w = World(tmp_path, max_attempts=50)
    try:
        w.callback.status = 503                                  # the peer cannot take acks now
        keys = _keys(1)
        assert w.peer().ext_keys(_ext(keys, w.callback.ack_url())).status == 202
        w.callback.wait(1, path_suffix="/ack")
        w.restart()
        assert w.counts()["outbox"] == 1
        w.callback.got.clear()
        w.callback.status = None
        [got] = w.callback.wait(1, timeout=20, path_suffix="/ack")
        assert got.body[0]["ack_status"] == "relayed"
        with w.sae() as sae:
            assert base64.b64encode(sae.dec_keys(INITIATOR, [keys[0]["key_id"]])[0].key).decode() == keys[0]["value"]
    finally:
        w.close()


def test_a_key_is_not_deliverable_before_its_relay_is_done(tmp_path):
    """With targets here and further into the network, the key reaches the local SAE only once the
    onward relay finished and the key is relayed."""
    from kms_agents.config import Etsi020Peer
    from kms_agents.etsi020.node import Etsi020Node
    from kms_agents.keystore import KeyStore
    w = World(tmp_path)
    w.agent.stop()
    gate, seen = threading.Event(), []

    def onward(batch):
        seen.append(batch)
        assert gate.wait(10)

    cfg = w.config()
    cfg.etsi020.peers = [Etsi020Peer("Y1", w.callback.url, "urn:qusec:node:Y1")]
    store = KeyStore(tmp_path / "direct.db")
    node = Etsi020Node(cfg.etsi020, cfg.tls, "B", cfg.saes, store, relay_onward=onward)
    node.start()
    try:
        keys = _keys(1)
        client = SpecClient(node.url, client_context(str(w.x_ca), str(w.y1[0]), str(w.y1[1])))
        assert client.ext_keys(_ext(keys, w.callback.ack_url(), targets=("sae-b1", "sae-c1"))).status == 202
        deadline = time.monotonic() + 10
        while not seen and time.monotonic() < deadline:
            time.sleep(0.02)
        assert seen and seen[0].targets == ("sae-c1",)
        assert store.peek(keys[0]["key_id"]) is None and w.callback.got == []
        gate.set()
        [got] = w.callback.wait(1, path_suffix="/ack")
        assert got.body[0]["ack_status"] == "relayed"
        assert store.fetch(INITIATOR, "sae-b1", [keys[0]["key_id"]])[0].material == bytes(range(32))
    finally:
        gate.set()
        node.stop()
        store.close()
        w.callback.close()


def test_an_ack_that_cannot_be_delivered_is_retried_then_the_keys_are_voided_both_sides(world):
    world.callback.status = 503                                   # the peer never takes our acks
    keys = _keys(1)
    assert world.peer().ext_keys(_ext(keys, world.callback.ack_url())).status == 202
    acks = world.callback.wait(2, timeout=20, path_suffix="/ack")          # the first try and one retry
    assert acks[0].body == acks[1].body
    [void] = world.callback.wait(1, timeout=20, path_suffix="/void")       # toward the KME that sent them
    SCHEMAS.validate("void_container", void.body)
    assert void.body["key_ids"] == [keys[0]["key_id"]] and void.body["initiator_sae_id"] == INITIATOR
    assert world.agent.store.peek(keys[0]["key_id"]) is None               # no SAE can have it now


def test_without_sync_mode_the_capability_is_not_advertised_and_sync_requests_are_400(tmp_path):
    w = World(tmp_path, sync_mode=False)
    try:
        r = w.peer().versions()
        assert _checked(r, "/kmapi/versions", "GET")["capabilities"] == []
        r = w.peer().ext_keys(_ext(_keys(1), None))
        assert r.status == 400 and "asynchronous mode only" in _checked(r, EXT)["details"]["missing_parameters"]
        assert w.counts()["rx"] == 0
    finally:
        w.close()


def test_an_idle_or_half_sent_connection_is_closed(tmp_path):
    w = World(tmp_path, request_s=1.0)
    try:
        ctx = client_context(str(w.x_ca), str(w.y1[0]), str(w.y1[1]))
        port = int(w.url.rsplit(":", 1)[1])
        for payload in (b"", b"POST /kmapi/v1/ext_keys HTTP/1.1\r\nHost: x\r\n"):
            with socket.create_connection(("127.0.0.1", port), timeout=20) as raw, \
                    ctx.wrap_socket(raw, server_hostname="127.0.0.1") as s:
                start = time.monotonic()
                if payload:
                    s.sendall(payload)
                assert s.recv(100) == b"" and time.monotonic() - start < 10
    finally:
        w.close()


def test_answers_and_refusals_are_counted(world):
    from kms_agents import metrics

    def count(endpoint, status):
        return metrics.REGISTRY.get_sample_value("qusec_agent_requests_total",
                                                 {"api": "etsi020", "endpoint": endpoint, "status": str(status)}) or 0
    before, refused = count("versions", 200), metrics.refusals("etsi020", "wrong_role")
    world.peer().versions()
    world.peer(world.y1_sae).versions()
    assert count("versions", 200) == before + 1
    assert metrics.refusals("etsi020", "wrong_role") == refused + 1


def test_a_sync_void_of_all_keys_when_there_are_none_is_an_empty_ack_list(world):
    r = world.peer().void(_void([], all_confirmation=True))
    assert r.status == 200 and _checked(r, VOID) == []
