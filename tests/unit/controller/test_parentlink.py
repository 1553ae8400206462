"""A domain QuSeC's parent link (quseccontroller.gateway.parentlink): which slave SAEs are certainly
another domain's (those its last export did not offer), and the reach from a source node to the
borders asked of the app at most once an export interval. The app and the parent are stand-ins
for what their own tests cover; the link's bookkeeping is the thing under test."""
from __future__ import annotations

import asyncio

from quseccontroller import records
from quseccontroller.abstract import Reach
from quseccontroller.gateway.parentlink import ParentLink


class App:
    """The gateway's ``call`` into the app: an export offering ``saes``, and reaches (counted)."""

    def __init__(self, saes):
        self.saes, self.reach_calls = saes, []

    async def call(self, op, args):
        if op == "export":
            return {"seq": args["seq"], "saes": [{"sae": s} for s in self.saes]}
        assert op == "reach"
        self.reach_calls.append(args["node"])
        return records.reaches_to_wire({"BJ-IW": Reach(1e5, 4096, len(self.reach_calls))})


class Parent:
    def __init__(self, interval_s):
        self.interval_s, self.asked = interval_s, []

    async def send_export(self, msg):
        return self.interval_s

    async def choose(self, req):
        self.asked.append(req)
        return "chain"

    async def close(self):
        pass


def test_only_an_sae_the_last_export_did_not_offer_is_foreign():
    async def run():
        link = ParentLink(App(["sae-bj1", "sae-bj3"]), Parent(2.0), "parent:1")
        assert not link.foreign("sae-sh1")    # no export yet: the app is asked first, as before
        await link.export_once()
        assert not link.foreign("sae-bj1") and link.foreign("sae-sh1")
    asyncio.run(run())


def test_reaches_are_asked_once_an_interval_and_afresh_after_each_export():
    async def run():
        app, parent = App(["sae-bj1"]), Parent(30.0)
        link = ParentLink(app, parent, "parent:1")
        await link.export_once()
        assert await link.choose("BJ1", "sae-sh1", 256) == "chain"
        await link.choose("BJ1", "sae-sh1", 256)
        await link.choose("BJ3", "sae-sh1", 256)
        assert app.reach_calls == ["BJ1", "BJ3"]
        assert [r.src_reach["BJ-IW"].hops for r in parent.asked] == [1, 1, 2]
        assert [(r.src_domain, r.dst_sae, r.need_bits) for r in parent.asked][0] == ("", "sae-sh1", 256)
        await link.export_once()              # a new export: what the parent knows moved on
        await link.choose("BJ1", "sae-sh1", 256)
        assert app.reach_calls == ["BJ1", "BJ3", "BJ1"]
        link.interval_s = 0.0                 # an interval gone by: asked again
        await link.choose("BJ1", "sae-sh1", 256)
        assert app.reach_calls[-1] == "BJ1" and len(app.reach_calls) == 4
    asyncio.run(run())
