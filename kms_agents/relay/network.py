"""The key service's relayer backed by the relay engine: SAE options, security level, errors as HTTP."""
from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import Any

from kms_agents.keyrequest import MSG_EXT_UNMET, KeyServiceError
from kms_agents.relay.engine import RelayEngine
from kms_agents.relay.messages import OptionUnmet, Reason, RelayFailure
from kms_agents.relay.plan import PathPlan
from kms_agents.relay.prerelay import PreRelay
from kms_agents.relayer import RelayResult, RequestOptions


def effective_level(policy_level: str, requested: str | None) -> str:
    """The security level a relay uses: the policy's, upgraded to hybrid when the SAE asks for it.

    ``pqc`` is only ever used when the policy says so (a fallback, never a request).
    """
    policy_level = policy_level or "qkd"
    if not requested or requested == policy_level:
        return policy_level
    if requested == "hybrid" and policy_level == "qkd":
        return "hybrid"  # strictly stronger: HKDF over the QKD key and an ML-KEM secret
    raise RelayFailure(Reason.UNMET, f"security level {requested!r} requested but the matched "
                                     f"policy gives {policy_level!r}")


def max_hops_check(max_hops: int) -> Callable[[PathPlan], None]:
    """A path check refusing granted paths that cross more than ``max_hops`` trusted nodes."""
    def check(plan: PathPlan) -> None:
        paths = plan.hops()
        hops = max((len(p) - 2 for p in paths), default=0)
        if hops > max_hops:
            raise OptionUnmet(f"QuSeC's path {' | '.join('-'.join(p) for p in paths)} crosses {hops} "
                              f"trusted relay nodes; qusec_max_hops is {max_hops}",
                              {"qusec_max_hops": max_hops, "qusec_hops": hops, "qusec_paths": paths})
    return check


class NetworkRelayer:
    """The agent's relayer (kms_agents.relayer.Relayer protocol) backed by a RelayEngine."""

    def __init__(self, engine: RelayEngine, *, prerelay: PreRelay | None = None,
                 routes_foreign: bool = False) -> None:
        self.engine = engine
        self.prerelay = prerelay
        # with QuSeC: a slave SAE this node does not know goes to QuSeC (dst_node ""), which
        # finds it in this domain or, under a parent controller, in another
        self.routes_foreign = routes_foreign
        # ID tuples of key lists rewritten with derived (hybrid/pqc) keys, recently
        self._derived: deque[tuple[str, ...]] = deque(maxlen=256)

    def relay(self, *, master_sae: str, slave_saes: list[str], dst_node: str,
              keys: list[tuple[str, bytes]], security_level: str | None,
              extensions: dict[str, Any], options: RequestOptions | None = None) -> RelayResult:
        """Relay ``keys``; the result's ``keys`` replace them for hybrid/pqc or buffered keys.

        ``options``: a mandatory ``qusec_max_hops`` is enforced on the granted path before
        any link key is spent (400 "not all extension_mandatory request options could be
        met" otherwise). The service relays one list to each destination node of a
        multi-node request; once a hybrid/pqc relay has replaced its keys by derived ones,
        no other node could derive the same, so such a second relay is refused rather than
        giving SAEs different keys under one ID.
        """
        ids = tuple(kid for kid, _ in keys)
        mandatory = dict(getattr(options, "mandatory", None) or {})
        max_hops = mandatory.get("qusec_max_hops")
        try:
            if ids in self._derived:
                raise RelayFailure(Reason.UNMET, "hybrid/pqc keys are agreed between two end nodes; "
                                                 "they cannot be shared with SAEs on several nodes")
            if self.prerelay is not None and not security_level and max_hops is None and dst_node:
                got = self.prerelay.take(master_sae, slave_saes, dst_node, keys)
                if got is not None:
                    return got
            relayed, plan, level = self.engine.relay_keys(
                master_sae=master_sae, slave_saes=slave_saes, dst_node=dst_node, keys=keys,
                level_for=lambda policy: effective_level(policy, security_level),
                check_path=None if max_hops is None else max_hops_check(int(max_hops)))
        except OptionUnmet as exc:
            raise KeyServiceError(400, MSG_EXT_UNMET, [dict(exc.detail, reason=exc.message)]) from None
        except RelayFailure as exc:
            if not dst_node and exc.reason is Reason.UNKNOWN_NODE:   # no domain has the SAE
                raise KeyServiceError(400, f"unknown slave SAE ID {slave_saes[0]!r}: no such SAE in "
                                           f"this network (nor in any it interworks with)",
                                      [{"parameter": "slave SAE ID", "value": slave_saes[0]}]) from None
            where = f"node {dst_node}" if dst_node else f"SAE {slave_saes[0]} (another domain's)"
            raise KeyServiceError(503, f"relay to {where} failed: {exc.message}",
                                  [{"qusec_route_type": "indirect", "qusec_dst_node": dst_node,
                                    "qusec_relay_status": exc.reason.value}]) from None
        if self.prerelay is not None and dst_node:
            self.prerelay.observe(master_sae, slave_saes, dst_node, len(keys), len(keys[0][1]))
        if level != "qkd":   # the IDs the master gets (a retry's are fresh)
            self._derived.append(tuple(k.key_id for k in relayed))
        # the master gets what the slave gets: the derived key for hybrid/pqc
        return RelayResult(paths=plan.hops(), security_level=level,
                           keys=[(k.key_id, k.key) for k in relayed],
                           domains=relayed[0].meta.get("qusec_domains") if relayed else None)

    def stored_key_count(self, dst_node: str, key_size: int) -> int:
        """Keys of ``key_size`` bits that could be relayed now (bounded by this node's links)."""
        if self.prerelay is not None:
            buffered = self.prerelay.count(dst_node, key_size)
            if buffered:
                return buffered
        return self.engine.relayable_keys(key_size)

    def buffered_key_count(self, master_sae: str, slave_sae: str, dst_node: str, key_size: int) -> int:
        """Keys of ``key_size`` bits pre-relayed to ``dst_node`` for this SAE pair, ready to serve."""
        if self.prerelay is None:
            return 0
        return self.prerelay.count(dst_node, key_size, master_sae, slave_sae)
