"""GS QKD 020's rules without sockets: container checks, ack grouping, void confirmation, extension
names, problem-details shapes, and the external key's states."""
from __future__ import annotations

import base64
import uuid

import pytest

from kms_agents.etsi020 import rules
from kms_agents.etsi020.model import (EXT_DOMAINS, MAX_ACK_CONTAINERS, MAX_DOMAINS, QUSEC_PEN, RESERVED_PEN,
                                      Bounds, Outcome, ack_calls, domains_of, extension_names, outcomes_of,
                                      parse_acks, parse_ext_keys, parse_void, version_container)
from kms_agents.etsi020.problems import BASE, Problem, bad, timeout, unauthorized, unavailable


def _kid() -> str:
    return str(uuid.uuid4())


def _ext(keys=None, **over):
    body = {"keys": keys if keys is not None else [{"key_id": _kid(), "value": base64.b64encode(b"k" * 32).decode()}],
            "initiator_sae_id": "sae-x", "target_sae_ids": ["sae-b"],
            "ack_callback_url": "https://kme-a.example:8443/ack"}
    body.update(over)
    return body


def _problem(fn, *args) -> Problem:
    with pytest.raises(Problem) as info:
        fn(*args)
    return info.value


def test_a_valid_ext_key_container_parses_in_async_mode():
    req = parse_ext_keys(_ext(), Bounds())
    assert req.callback_url == "https://kme-a.example:8443/ack" and req.targets == ["sae-b"]
    assert req.keys[0].material == b"k" * 32
    assert "k" * 4 not in repr(req.keys[0])        # no material in a repr


def test_no_callback_is_synchronous_mode():
    body = _ext()
    del body["ack_callback_url"]
    assert parse_ext_keys(body, Bounds()).callback_url is None


@pytest.mark.parametrize("missing", ["keys", "initiator_sae_id", "target_sae_ids"])
def test_missing_parameters_are_400_missing_parameters(missing):
    body = _ext()
    del body[missing]
    p = _problem(parse_ext_keys, body, Bounds())
    assert p.status == 400 and p.kind == "missing-parameters" and missing in p.details["missing_parameters"]


@pytest.mark.parametrize("key,detail", [
    ({"key_id": "not-a-uuid", "value": "AAAA"}, "UUID"),
    ({"key_id": str(uuid.uuid4()), "value": "not base64!"}, "base64"),
    ({"key_id": str(uuid.uuid4()), "value": "-_-_"}, "base64"),           # URL-safe alphabet is not RFC 4648 std
    ({"key_id": str(uuid.uuid4()), "value": ""}, "base64"),
    ({"key_id": str(uuid.uuid4()), "value": base64.b64encode(b"x" * 2000).decode()}, "bytes"),
])
def test_bad_keys_are_400_invalid_parameter(key, detail):
    p = _problem(parse_ext_keys, _ext([key]), Bounds(max_key_bytes=1024))
    assert p.status == 400 and p.kind == "invalid-parameter" and detail in p.details["malformed_property"]


def test_unpadded_base64_is_accepted():
    kid = _kid()
    req = parse_ext_keys(_ext([{"key_id": kid, "value": base64.b64encode(b"ab").decode().rstrip("=")}]), Bounds())
    assert req.keys[0].material == b"ab"


def test_a_key_id_twice_and_too_many_keys_are_refused():
    kid = _kid()
    v = base64.b64encode(b"k").decode()
    assert _problem(parse_ext_keys, _ext([{"key_id": kid, "value": v}] * 2), Bounds()).status == 400
    many = [{"key_id": _kid(), "value": v} for _ in range(5)]
    assert "at most 4 keys" in _problem(parse_ext_keys, _ext(many), Bounds(max_keys=4)).details["malformed_property"]


@pytest.mark.parametrize("sae", ["", "x" * 65, "has space", "quote\"", "bad%zz"])
def test_sae_ids_are_1_to_64_uri_characters(sae):
    assert _problem(parse_ext_keys, _ext(initiator_sae_id=sae), Bounds()).status == 400


def test_sae_ids_may_use_every_uri_character():
    req = parse_ext_keys(_ext(initiator_sae_id="a-._~:/?#[]@!$&'()*+,;=%41"), Bounds())
    assert req.initiator.endswith("%41")


def test_more_targets_than_supported_is_503_and_the_initiator_as_target_is_invalid_routing():
    p = _problem(parse_ext_keys, _ext(target_sae_ids=["a", "b", "c"]), Bounds(max_targets=2))
    assert p.status == 503 and "no_route_multiple_targets" in p.details
    p = _problem(parse_ext_keys, _ext(target_sae_ids=["sae-x"]), Bounds())
    assert p.status == 400 and "invalid_routing" in p.details


@pytest.mark.parametrize("url", ["http://kme/ack", "ftp://kme/ack", "https://", "https://h:99999/", "x" * 1025,
                                 "https://kme/a b"])
def test_callback_must_be_an_https_url_of_at_most_1024_characters(url):
    assert _problem(parse_ext_keys, _ext(ack_callback_url=url), Bounds()).status == 400


# -- extensions ---------------------------------------------------------------------------------
@pytest.mark.parametrize("ext", [{"E32473_vendor": "x"}, {"E1_a": 1, "E999999_b": [1]}])
def test_extension_names_follow_e_pen_underscore(ext):
    assert extension_names(ext, "extension") == ext


@pytest.mark.parametrize("ext", [{}, {"vendor": "x"}, {"e32473_x": 1}, {"E_x": 1}, {"E32473": 1},
                                 {"E13019_etsi": 1}, {"E032473_x": 1},
                                 {f"E1_{i}": i for i in range(1025)}])
def test_bad_extension_names_are_refused(ext):
    assert _problem(extension_names, ext, "extension").status == 400


def test_extensions_in_requests_are_checked():
    k = {"key_id": _kid(), "value": "AAAA", "extension": {"vendor": "x"}}
    assert _problem(parse_ext_keys, _ext([k]), Bounds()).status == 400
    assert _problem(parse_ext_keys, _ext(extension_optional={"E13019_x": 1}), Bounds()).status == 400


# -- acks --------------------------------------------------------------------------------------------
def _ack(n_ids=1, status="relayed"):
    return {"key_id_container": [{"key_id": _kid()} for _ in range(n_ids)], "ack_status": status,
            "initiator_sae_id": "sae-x", "target_sae_ids": ["sae-b"]}


def test_acks_allow_1024_containers_of_1024_key_ids_and_no_more():
    assert len(parse_acks([_ack() for _ in range(MAX_ACK_CONTAINERS)])) == MAX_ACK_CONTAINERS
    assert _problem(parse_acks, [_ack() for _ in range(MAX_ACK_CONTAINERS + 1)]).kind == "ack-not-understood"
    assert len(parse_acks([_ack(1024)])[0].key_ids) == 1024
    assert _problem(parse_acks, [_ack(1025)]).status == 400


@pytest.mark.parametrize("body", [[], {}, [{"ack_status": "relayed"}], [_ack(status="delivered")],
                                  [_ack(0)], [{**_ack(), "message": "m" * 4097}],
                                  [{**_ack(), "key_id_container": [{"id": "x"}]}]])
def test_malformed_acks_are_400_ack_not_understood(body):
    p = _problem(parse_acks, body)
    assert p.status == 400 and p.kind == "ack-not-understood"


def test_a_key_acked_twice_in_one_call_is_refused():
    a = _ack()
    assert _problem(parse_acks, [a, {**a, "ack_status": "failed"}]).status == 400


def test_ack_calls_group_by_status_and_split_at_1024():
    outs = [Outcome(_kid(), "relayed", "i", ("t",)) for _ in range(1500)] + [Outcome(_kid(), "failed", "i", ("t",))]
    calls = ack_calls(outs)
    assert len(calls) == 1 and [len(c["key_id_container"]) for c in calls[0]] == [1024, 476, 1]
    assert [c["ack_status"] for c in calls[0]] == ["relayed", "relayed", "failed"]
    parse_acks(calls[0])   # what we send passes our own checks
    many = [Outcome(_kid(), "relayed", "i", (f"t{i}",)) for i in range(MAX_ACK_CONTAINERS + 3)]
    assert [len(c) for c in ack_calls(many)] == [MAX_ACK_CONTAINERS, 3]


def test_an_ack_containers_extension_goes_out_and_comes_back_and_groups_the_containers():
    seg = {EXT_DOMAINS: [{"entry": "T-BJ", "exit": "T-SH", "hops": 5, "level": "qkd"}]}
    one, two, three = _kid(), _kid(), _kid()
    calls = ack_calls([Outcome(one, "relayed", "i", ("t",), None, seg), Outcome(two, "relayed", "i", ("t",), None, seg),
                       Outcome(three, "relayed", "i", ("t",))])
    (call,) = calls
    assert [(len(c["key_id_container"]), c.get("extension")) for c in call] == [(2, seg), (1, None)]
    back = outcomes_of(parse_acks(call))   # our own name passes the naming rule
    assert [(o.key_id, o.extension) for o in back] == [(one, seg), (two, seg), (three, None)]
    assert EXT_DOMAINS.startswith(f"E{QUSEC_PEN}_") and QUSEC_PEN != RESERVED_PEN


@pytest.mark.parametrize("value, why", [
    ("T-BJ", "array"),
    ([{"entry": "T-BJ"}] * (MAX_DOMAINS + 1), "array"),
    (["T-BJ"], "object"),
    ([{"entry": "T-BJ", "inside": ["T-R1"]}], "object"),     # a field the extension does not have
    ([{"entry": "T-BJ", "hops": -1}], "integer"),
    ([{"entry": "T-BJ", "hops": True}], "integer"),
    ([{"entry": "x" * 65}], "string"),
    ([{"domain": 7}], "string"),
])
def test_a_peers_domains_extension_is_checked(value, why):
    with pytest.raises(ValueError, match=why):
        domains_of({EXT_DOMAINS: value})


def test_no_domains_extension_is_none():
    assert domains_of(None) is None and domains_of({"E32473_other": 1}) is None
    assert domains_of({EXT_DOMAINS: [{"entry": "SH-IW", "hops": 2, "level": "qkd"}]}) == \
        [{"entry": "SH-IW", "hops": 2, "level": "qkd"}]


# -- void -------------------------------------------------------------------------------------------
def _void(**over):
    body = {"key_ids": [_kid()], "initiator_sae_id": "sae-x", "target_sae_ids": ["sae-b"]}
    body.update(over)
    return body


def test_an_empty_void_needs_all_confirmation_true():
    for body in (_void(key_ids=[]), _void(key_ids=[], all_confirmation=False)):
        p = _problem(parse_void, body, Bounds())
        assert p.status == 400 and p.kind == "no-key-ids-or-confirmation" and "no_key_ids_or_confirmation" in p.details
    assert parse_void(_void(key_ids=[], all_confirmation=True), Bounds()).all_confirmation is True
    assert _problem(parse_void, _void(key_ids=[], all_confirmation="yes"), Bounds()).status == 400


def test_void_checks_its_key_ids_and_callback():
    assert _problem(parse_void, _void(key_ids=["x"]), Bounds()).kind == "void-request-not-understood"
    assert _problem(parse_void, _void(ack_callback_url="http://x/"), Bounds()).status == 400
    assert parse_void(_void(), Bounds()).callback_url is None


# -- problem details --------------------------------------------------------------------------------
def test_problem_details_have_the_rfc9457_shape():
    for p, status in ((bad("invalid-parameter", malformed_property="x"), 400), (unauthorized("who"), 401),
                      (timeout(), 408), (unavailable(), 503)):
        body = p.body()
        assert body["type"].startswith(BASE) and body["status"] == status and body["title"]
        assert all(isinstance(v, str) for v in body["details"].values()) and 1 <= len(body["details"]) <= 1024
    with pytest.raises(ValueError):
        Problem(400, "made-up")


def test_versions_advertise_sync_mode_only_when_served():
    assert version_container(True) == {"versions": ["v1"], "capabilities": ["synchronous_mode"]}
    assert version_container(False)["capabilities"] == []


# -- states -----------------------------------------------------------------------------------------
def test_sent_keys_settle_by_ack_and_only_relayed_is_releasable():
    assert rules.tx_after_ack(rules.TX_SENT, "relayed") == rules.TX_RELAYED
    assert rules.tx_after_ack(rules.TX_SENT, "failed") == rules.TX_FAILED
    assert rules.tx_after_ack(rules.TX_VOIDING, "key not present") == rules.TX_VOIDED
    assert rules.tx_after_ack(rules.TX_VOIDING, "failed to void") == rules.TX_FAILED_TO_VOID
    assert rules.tx_after_ack(rules.TX_RELAYED, "relayed") == rules.TX_RELAYED      # a repeated ack
    with pytest.raises(rules.AckRefused):
        rules.tx_after_ack(rules.TX_SENT, "failed to void")
    assert [s for s in (rules.TX_SENT, rules.TX_RELAYED, rules.TX_FAILED, rules.TX_VOIDING, rules.TX_VOIDED)
            if rules.releasable(s)] == [rules.TX_RELAYED]


def test_after_a_failure_400_and_401_forget_others_retry_then_void():
    assert rules.after_failure(400, 1, 3) == rules.after_failure(401, 1, 3) == rules.FORGET
    for status in (None, 408, 500, 503):
        assert rules.after_failure(status, 1, 3) == rules.RETRY
        assert rules.after_failure(status, 3, 3) == rules.VOID


def test_void_answers_follow_the_received_keys_state():
    assert rules.void_status(None) == "key not present"
    assert rules.void_status(rules.RX_DELIVERED) == "failed to void"
    for state in (rules.RX_RECEIVED, rules.RX_RELAYED, rules.RX_FAILED, rules.RX_VOIDED):
        assert rules.void_status(state) == "voided"
