"""The gateway's path to another domain's SAE (ControlServicer._path_result): an SAE the domain's
last export did not offer goes to the parent first, without the app's refusal before it; while the
parent chooses, the app grants toward the last chain's exit, used when the chain leaves there again
and released (never delivered) when it moved or the parent refused; an SAE the domain keeps from
other domains still gets the app's own answer. The app and the parent are stand-ins recording
what the gateway asks of them; the gateway's logic is the thing under test."""
from __future__ import annotations

import asyncio

import grpc
import pytest

from quseccontroller.gateway.control import ControlServicer
from quseccontroller.gateway.parentlink import ParentLink
from quseccontroller.gateway.rpc import PathRefused
from quseccontroller.parent.chain import Chain, Crossing, Segment
from quseccontroller.parent.client import ParentRefused
from quseccontroller.proto import control_pb2

SITE1 = Crossing("s1", "etsi020", "west", "X", "east", "Y")
SITE2 = Crossing("s2", "etsi020", "west", "W", "east", "V")


def chain(x: Crossing) -> Chain:
    return Chain("east", (Segment("west", "", x.from_node), Segment("east", x.to_node, "")), (x,), "qkd", 3.0)


class Parent:
    """Answers ChooseChain with ``self.next`` (a Chain, or a ParentRefused to raise) after a while."""

    def __init__(self, log):
        self.log, self.next = log, chain(SITE1)

    async def send_export(self, msg):
        return 30.0

    async def choose(self, req):
        self.log.append(("choose", req.dst_sae))
        await asyncio.sleep(0.02)
        self.log.append(("chosen", req.dst_sae))
        if isinstance(self.next, Exception):
            raise self.next
        return self.next

    async def close(self):
        pass


def gateway(tmp_path, own_saes=("sae-a",), kept=()):
    """A gateway under a parent, its app granting every handoff and ordinary paths to its own
    SAEs (``kept``: SAEs of this domain it does not offer others: a handoff for one is refused)."""
    log: list = []
    gw = ControlServicer(str(tmp_path / "bridge.sock"))
    n = {"paths": 0}

    async def call(op, args=None):
        if op == "export":
            return {"seq": args["seq"], "saes": [{"sae": s} for s in own_saes]}
        if op == "reach":
            return {}
        if op == "release":
            log.append(("release", args["path_id"]))
            return {"released": True}
        assert op == "request_path", op
        h = args.get("handoff")
        log.append(("grant", h["exit_node"] if h else "-"))
        mine = args["dst_sae"] in own_saes or args["dst_sae"] in kept
        if h and mine or not h and not mine:
            return {"granted": False, "refusal": "unknown_sae" if not mine else "policy_deny", "message": "no"}
        n["paths"] += 1
        return {"granted": True, "paths": [{"path_id": f"p{n['paths']}"}], "authorisations": []}
    gw.call = call
    parent = Parent(log)
    gw.parent_link = ParentLink(gw, parent, "parent:1")
    return gw, parent, log


def request(sae="sae-far"):
    return control_pb2.PathRequest(src_node="A", dst_sae=sae, key_size_bits=256, key_count=1)


def test_an_sae_not_offered_goes_to_the_parent_and_the_next_grant_runs_while_it_chooses(tmp_path):
    async def run():
        gw, _parent, log = gateway(tmp_path)
        await gw.parent_link.export_once()
        first = await gw._path_result(request(), {"src_node": "A", "dst_sae": "sae-far"})
        assert first["granted"] and first["handoff"]["exit_node"] == "X"
        assert log == [("choose", "sae-far"), ("chosen", "sae-far"), ("grant", "X")]   # no plain request first
        log.clear()
        second = await gw._path_result(request(), {"src_node": "A", "dst_sae": "sae-far"})
        assert second["granted"] and second["paths"][0]["path_id"] == "p2"
        assert log == [("choose", "sae-far"), ("grant", "X"), ("chosen", "sae-far")]   # granted while it chose
    asyncio.run(run())


def test_an_early_grant_the_chain_did_not_take_is_released(tmp_path):
    async def run():
        gw, parent, log = gateway(tmp_path)
        await gw.parent_link.export_once()
        await gw._path_result(request(), {"src_node": "A", "dst_sae": "sae-far"})
        parent.next = chain(SITE2)     # X's site is out of favour now: the chain leaves at W
        log.clear()
        got = await gw._path_result(request(), {"src_node": "A", "dst_sae": "sae-far"})
        assert got["handoff"]["exit_node"] == "W" and got["paths"][0]["path_id"] == "p3"
        assert log == [("choose", "sae-far"), ("grant", "X"), ("chosen", "sae-far"), ("release", "p2"),
                       ("grant", "W")]
        parent.next = ParentRefused(grpc.StatusCode.UNAVAILABLE, "unavailable", "parent down")
        log.clear()
        with pytest.raises(PathRefused) as err:
            await gw._path_result(request(), {"src_node": "A", "dst_sae": "sae-far"})
        assert err.value.reason == "parent_unavailable" and "parent controller" in err.value.message
        assert ("release", "p4") in log   # the early grant toward W never left the gateway
    asyncio.run(run())


def test_an_sae_the_domain_keeps_from_others_gets_the_apps_own_answer(tmp_path):
    async def run():
        gw, _parent, log = gateway(tmp_path, kept=("sae-kept",))
        await gw.parent_link.export_once()
        got = await gw._path_result(request("sae-kept"), {"src_node": "A", "dst_sae": "sae-kept"})
        assert got["granted"] and "handoff" not in got      # the ordinary path, asked after the handoff failed
        assert log == [("choose", "sae-kept"), ("chosen", "sae-kept"), ("grant", "X"), ("grant", "-")]
        log.clear()
        own = await gw._path_result(request("sae-a"), {"src_node": "A", "dst_sae": "sae-a"})
        assert own["granted"] and log == [("grant", "-")]  # an SAE the export offers: the app only
    asyncio.run(run())
