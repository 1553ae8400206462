"""The relay node's table of live authorisations from QuSeC."""
from __future__ import annotations

import dataclasses
import time

import pytest

from kms_agents.control_client import authorisation_of
from kms_agents.relay.authz import Authorisation, AuthTable, NotAuthorised, granted_levels
from quseccontroller.proto import control_pb2


def auth(path_id: str = "p1", prev: str = "A", nxt: str = "C", exp: float = 100.0,
         share: tuple[int, int] = (1, 1)) -> Authorisation:
    return Authorisation(path_id=path_id, prev_hop=prev, next_hop=nxt, prev_hop_addr="a:1",
                         next_hop_addr="c:1", expires_at=exp, src_node="A", dst_node="E",
                         share_index=share[0], share_count=share[1], src_sae="sae-a",
                         dst_saes=("sae-e",), security_level="qkd")


def check(t: AuthTable, path_id: str = "p1", frm: str = "A", now: float = 10.0, **kw):
    kw.setdefault("src_node", "A")
    kw.setdefault("dst_node", "E")
    kw.setdefault("src_sae", "sae-a")
    kw.setdefault("dst_saes", ("sae-e",))
    kw.setdefault("security_level", "qkd")
    return t.check(path_id, from_node=frm, now=now, **kw)


def test_live_authorisation_for_path_and_hop() -> None:
    t = AuthTable()
    t.grant(auth())
    assert check(t).next_hop == "C"


def test_refusals_name_the_failed_check() -> None:
    t = AuthTable()
    with pytest.raises(NotAuthorised, match="no authorisation from QuSeC"):
        check(t)
    t.grant(auth())
    with pytest.raises(NotAuthorised, match="previous hop is A, message came from X"):
        check(t, frm="X")
    with pytest.raises(NotAuthorised, match="expired"):
        check(t, now=100.0)
    with pytest.raises(NotAuthorised, match="authorised for A->E, message is A->F"):
        check(t, dst_node="F")
    with pytest.raises(NotAuthorised, match="share 1/1, message carries 1/2"):
        check(t, share_count=2)
    with pytest.raises(NotAuthorised, match="no authorisation") as info:
        check(t, path_id="p2")
    assert info.value.path_id == "p2"


def test_revoke_and_expire() -> None:
    t = AuthTable()
    t.grant(auth("p1"))
    t.grant(auth("p2", exp=5.0))
    assert t.expire(now=10.0, grace=10.0) == []  # still known for late Voids
    assert t.expire(now=10.0) == ["p2"]
    assert t.revoke("p1", "link down") is True
    with pytest.raises(NotAuthorised, match=r"revoked \(link down\)"):
        check(t)
    assert t.revoke("p1") is False
    t.grant(auth("p1"))  # re-granted after a reroute
    check(t)
    t.clear()
    assert len(t) == 0


def test_source_has_no_previous_hop() -> None:
    t = AuthTable()
    t.grant(auth(prev=""))
    assert check(t, frm="").prev_hop == ""
    with pytest.raises(NotAuthorised, match=r"\(none: source\)"):
        check(t, frm="A")


def test_authorisation_from_control_message() -> None:
    msg = control_pb2.RelayAuthorisation(path_id="p", prev_hop="A", next_hop="C",
                                         expires_unix_ms=12_500, src_node="A", dst_node="E",
                                         src_sae="sae-a", dst_saes=["sae-e", "sae-f"], security_level="hybrid")
    a = authorisation_of(msg)
    assert a.expires_at == 12.5 and (a.share_index, a.share_count) == (1, 1)
    assert (a.src_sae, a.dst_saes, a.security_level) == ("sae-a", ("sae-e", "sae-f"), "hybrid")
    msg.share_index, msg.share_count = 1, 2  # the wire counts shares from 0
    assert (authorisation_of(msg).share_index, 2) == (2, 2)


def test_unknown_path_is_refused_at_once() -> None:
    # QuSeC answers the source only once every hop acked its authorisation: nothing to wait for
    t = AuthTable()
    t0 = time.monotonic()
    with pytest.raises(NotAuthorised, match="no authorisation from QuSeC") as info:
        check(t, path_id="never")
    assert time.monotonic() - t0 < 0.05 and info.value.check == "unknown_path"
    t.grant(auth("late"))
    assert check(t, path_id="late").path_id == "late"


def test_the_saes_and_level_must_be_those_granted() -> None:
    t = AuthTable()
    t.grant(auth())
    assert check(t, dst_saes=["sae-e"]).path_id == "p1"
    with pytest.raises(NotAuthorised, match="authorised for SAE sae-a -> sae-e, message is sae-a -> sae-x") as e:
        check(t, dst_saes=("sae-x",))                 # a relay rewrote the target SAE
    assert e.value.check == "wrong_saes"
    with pytest.raises(NotAuthorised, match="message is sae-b -> sae-e"):
        check(t, src_sae="sae-b")
    with pytest.raises(NotAuthorised, match="wrong|message is sae-a -> sae-e,sae-x"):
        check(t, dst_saes=("sae-e", "sae-x"))         # an extra slave
    with pytest.raises(NotAuthorised, match="message is sae-a -> sae-e,sae-e"):
        check(t, dst_saes=("sae-e", "sae-e"))
    # the level: as granted, or hybrid on a qkd grant (stronger; an SAE may ask for it), never pqc
    assert check(t, security_level="hybrid").path_id == "p1"
    assert check(t, security_level="").path_id == "p1"
    with pytest.raises(NotAuthorised, match="authorised for security level qkd, message is pqc") as e:
        check(t, security_level="pqc")
    assert e.value.check == "wrong_level"
    t.grant(dataclasses.replace(auth(), security_level="hybrid"))
    with pytest.raises(NotAuthorised, match="level hybrid, message is qkd"):
        check(t, security_level="qkd")
    assert granted_levels("") == granted_levels("qkd") == ("qkd", "hybrid")
    assert granted_levels("pqc") == ("pqc",)
