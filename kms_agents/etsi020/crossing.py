"""An interworking KME's two roles at its site: keys leaving this network, and keys coming in.

* **Leaving** (:meth:`Crossing.hand_off`, the relay destination's handoff step): a key relayed
  to this node for another domain's SAE goes to the peer KME over ETSI GS QKD 020 (the
  synchronous mode, whose answer carries the acks, unless ``[etsi020] handoff_sync = false``:
  then the asynchronous mode), and the call returns only once the peer acknowledged it
  ``relayed`` (in the answer, or at :meth:`Crossing.settled`, the node's ``on_settled`` hook
  that the ack callback reaches); any other outcome, a refusal or no
  ack in time fails it (and a key without an ack is voided toward the peer). It is never stored
  here.
* **Coming in** (:meth:`Crossing.onward`, the node's ``relay_onward`` hook): keys the peer passed
  for SAEs elsewhere in this network go on through the relay engine under the same key IDs, one
  attempt at the qkd level; QuSeC finds the SAE, in this domain or (a handoff again) beyond it.

Blocking calls for the agent's threads; nothing here holds key material after a call returns.
"""
from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

from kms_agents.etsi020 import rules
from kms_agents.etsi020.kme import Onward, SendRefused
from kms_agents.etsi020.model import EXT_DOMAINS, ExtKey, Outcome, domains_of
from kms_agents.relay.messages import Reason, RelayFailure

log = logging.getLogger(__name__)

KIND = "etsi020"
MAX_REMEMBERED = 4096   # onward relays remembered (key ID -> paths), for a void from the peer


class _Wait:
    """The outcomes of a handoff's keys as the peer's acks settle them."""

    def __init__(self, ids: Sequence[str]) -> None:
        self.ids = set(ids)
        self.states: dict[str, str] = {}
        self.done = threading.Event()

    def settle(self, key_id: str, state: str) -> None:
        self.states[key_id] = state
        if self.ids <= set(self.states):
            self.done.set()


def domains_after(handoff: Any, outcomes: Sequence[Outcome] | None) -> list[dict]:
    """The domains keys handed over ``handoff`` went on through, from the peer's ack
    (:data:`EXT_DOMAINS`): the first is the peer's own, named here from the handoff QuSeC
    granted (its domain id and the crossing), not from what the peer says; those beyond are as
    each domain's exit KME named them. Empty (and logged) when the ack said nothing usable."""
    ext = next((o.extension for o in outcomes or () if o.extension), None)
    try:
        got = domains_of(ext)
    except ValueError as exc:
        log.warning("etsi020: KME %s acknowledged keys with an unusable %s: %s", handoff.peer_kme,
                    EXT_DOMAINS, exc)
        got = None
    if not got:
        return []
    first = dict(got[0], domain=handoff.peer_domain, crossing=handoff.crossing, entry=handoff.peer_kme)
    return [first] + got[1:]


class Crossing:
    """Hand keys to peer KMEs and relay the peers' keys onward (``node``: the Etsi020Node,
    ``engine``: the relay engine, ``saes``: SAE -> node of this network)."""

    def __init__(self, node_id: str, saes: dict[str, str]) -> None:
        self.node_id = node_id
        self.saes = dict(saes)
        self.node: Any = None      # kms_agents.etsi020.node.Etsi020Node, set once built
        self.engine: Any = None    # kms_agents.relay.engine.RelayEngine
        self._waiting: dict[str, _Wait] = {}
        self._onward: OrderedDict[str, tuple] = OrderedDict()   # key id -> (paths, group's key ids)
        self._lock = threading.Lock()

    # -- leaving: the relay's handoff step -----------------------------------------------------
    def hand_off(self, handoff: Any, initiator: str, targets: Sequence[str],
                 keys: Sequence[tuple[str, bytes]], timeout_s: float) -> list[dict]:
        """Pass ``keys`` to ``handoff.peer_kme``; returns once all are acknowledged relayed,
        else raises RelayFailure (keys not acknowledged in ``timeout_s`` are voided there).
        Returns the domains the keys went on through (:func:`domains_after`; empty when the
        peer's ack did not say)."""
        peer = handoff.peer_kme
        if handoff.kind != KIND or self.node is None:
            raise RelayFailure(Reason.UNMET, f"node {self.node_id} cannot hand keys over "
                               f"{handoff.kind} crossing {handoff.crossing}", "no_handoff")
        ids = [kid for kid, _ in keys]
        wait, outcomes, t0 = _Wait(ids), None, time.perf_counter()
        with self._lock:
            for kid in ids:
                self._waiting[kid] = wait
        try:
            try:
                # synchronous mode (both KMEs are ours and serve it): the peer answers with the
                # acks once its onward relay is done, a round trip less than an ack callback
                outcomes = self.node.send_keys(peer, [ExtKey(kid, m) for kid, m in keys], initiator,
                                               list(targets), sync=self.node.cfg.handoff_sync)
                for o in outcomes or ():   # the answer's acks (else they come later, at the callback)
                    wait.settle(o.key_id, rules.tx_after_ack(rules.TX_SENT, o.status))
            except SendRefused as exc:   # 400/401: the peer kept nothing
                raise RelayFailure(Reason.DENIED, f"KME {peer} of {handoff.peer_domain} refused the "
                                   f"keys ({exc.status}): {exc.body}") from None
            except ValueError as exc:
                raise RelayFailure(Reason.UNMET, f"node {self.node_id}: {exc}", "no_handoff") from None
            if not wait.done.wait(max(0.0, timeout_s)):
                self._void(peer, ids)
                raise RelayFailure(Reason.TIMEOUT, f"KME {peer} of {handoff.peer_domain} did not "
                                   f"acknowledge the keys relayed within {timeout_s:.1f} s")
        finally:
            with self._lock:
                for kid in ids:
                    self._waiting.pop(kid, None)
        failed = {kid: st for kid, st in wait.states.items() if st != rules.TX_RELAYED}
        if failed:
            raise RelayFailure(Reason.FAILED, f"KME {peer} of {handoff.peer_domain} acknowledged "
                               f"{len(failed)} key(s) {sorted(set(failed.values()))}, not relayed")
        # what bench interdomain reads: this and the peer's event=etsi020_onward of the same key
        log.info("event=etsi020_handoff key=%s keys=%d peer=%s crossing=%s ms=%.2f", ids[0], len(ids), peer,
                 handoff.crossing, (time.perf_counter() - t0) * 1000)
        return domains_after(handoff, outcomes)

    def settled(self, before: Any, state: str) -> None:
        """The node's ``on_settled`` hook (on its event loop: quick)."""
        with self._lock:
            wait = self._waiting.get(before.key_id)
        if wait is not None:
            wait.settle(before.key_id, state)

    def void(self, handoff: Any, key_ids: Sequence[str]) -> None:
        """The relay's void reached this exit KME: void the keys handed to the peer too."""
        self._void(handoff.peer_kme, list(key_ids))

    def _void(self, peer: str, key_ids: list[str]) -> None:
        try:
            self.node.void_sent(peer, key_ids)
        except Exception as exc:  # noqa: BLE001 - the node retries voids it owes on its own
            log.warning("etsi020: void of %d handed-off key(s) toward KME %s failed: %s",
                        len(key_ids), peer, exc)

    # -- coming in: the node's relay_onward hook ----------------------------------------------------
    def onward(self, req: Onward, *, level: str = "qkd") -> dict:
        """Relay keys the peer passed (for SAEs not on this node) on into this network under
        their own IDs; returns once they are relayed (the extension for their acks: this
        domain's segment and those beyond it), raises to fail them. ``level``: the keys' level
        so far (``pqc`` when they came over a post-quantum link), told to the slave SAE's node."""
        if self.engine is None:
            raise RelayFailure(Reason.UNMET, f"node {self.node_id} has no relay toward QuSeC")
        nodes = {self.saes.get(t, "") for t in req.targets}
        if len(nodes) != 1:
            raise RelayFailure(Reason.UNMET, "target SAEs on several nodes: not relayed on")
        keys = [(k.key_id, k.material) for k in req.keys]

        def qkd_only(policy: str) -> str:
            if (policy or "qkd") != "qkd":
                raise RelayFailure(Reason.UNMET, f"keys from another domain go on at the qkd level "
                                                 f"only, not {policy}")
            return "qkd"
        t0 = time.perf_counter()
        relayed, plan, _level = self.engine.relay_keys(
            master_sae=req.initiator, slave_saes=list(req.targets), dst_node=nodes.pop(), keys=keys,
            level_for=qkd_only, retry=False, keep_handoff=True,
            told_level="" if level == "qkd" else level)
        if [(k.key_id, k.key) for k in relayed] != keys:   # cannot happen at the qkd level
            raise RelayFailure(Reason.INTERNAL, "the onward relay changed the keys")
        ids = tuple(kid for kid, _ in keys)
        with self._lock:
            for kid in ids:
                self._onward[kid] = (plan.paths, ids)
            while len(self._onward) > MAX_REMEMBERED:
                self._onward.popitem(last=False)
        log.info("event=etsi020_onward key=%s keys=%d peer=%s targets=%s ms=%.2f path=%s", ids[0], len(keys),
                 req.peer, ",".join(req.targets), (time.perf_counter() - t0) * 1000,
                 "|".join(",".join(p) for p in plan.hops()))
        return {EXT_DOMAINS: [self.segment(plan)] + list(relayed[0].meta.get("qusec_domains") or ())}

    def segment(self, plan: Any) -> dict:
        """This domain's part of an onward relay, as the acks report it: where the keys entered
        (this KME) and left it (the exit KME of a handoff), its relay hops and level. No node
        inside the domain: what a domain exports (docs/interworking.md)."""
        seg = {"entry": self.node_id, "hops": max(len(p) - 1 for p in plan.hops()),
               "level": plan.security_level or "qkd"}
        if plan.handoff is not None:
            seg["exit"] = plan.handoff.exit_node
        return seg

    def voided(self, peer: str, key_ids: list[str]) -> None:
        """The node's ``on_voided`` hook: the peer voided keys it passed us; those relayed on are
        voided along their paths too (at a handoff, on toward the next peer)."""
        groups: dict[tuple, tuple] = {}
        with self._lock:
            for kid in key_ids:
                got = self._onward.pop(kid, None)
                if got is not None:
                    groups[got[1]] = got[0]
        for ids, paths in groups.items():
            self.engine.void(list(paths), ids[0], f"voided by KME {peer}",
                             key_ids=ids if len(ids) > 1 else ())
        if groups:
            log.info("voided %d key group(s) relayed on for KME %s", len(groups), peer)
