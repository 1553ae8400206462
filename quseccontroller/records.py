"""Records across the app <-> gateway boundary: control.proto <-> bridge wire dicts <-> core dataclasses.

The gateway turns the agents' protobuf messages into wire dicts (``*_to_wire`` of a proto) and
the app's answers back into protobuf (``*_proto``); the app turns wire dicts into the core's
dataclasses (``*_from_wire``) and the core's actions and decisions into wire dicts. Every
dict layout that crosses the bridge is written here once. Protobuf only, never grpc: the app
process imports this module too. A malformed wire dict raises ``BridgeError("invalid")``
naming the field.
"""
from __future__ import annotations

from dataclasses import asdict
from typing import TYPE_CHECKING, Any, Iterable

from google.protobuf import json_format

from quseccontroller.actions import Authorise, Handoff, PathDecision, PathRequest, RelayAuthorisation, Revoke
from quseccontroller.bridge import BridgeError
from quseccontroller.proto import control_pb2

if TYPE_CHECKING:
    from quseccontroller.abstract import DomainExport, Reach
    from quseccontroller.registration import LinkRefusal
    from quseccontroller.state import AgentInfo, LinkState

_LINK_STATUS = {"UNSPECIFIED", "ACTIVE", "PASSIVE", "OFF"}
_LINK_STATUS_NAME = {v: k.removeprefix("LINK_STATUS_") for k, v in control_pb2.LinkStatus.items()}


# ------------------------------------------------------------ gateway: protobuf -> wire dict


def link_to_wire(ls: control_pb2.QkdLinkState) -> dict:
    return {"link_id": ls.link_id, "peer_node": ls.peer_node, "skr_bps": ls.skr_bps,
            "stored_bits": int(ls.stored_bits), "consumption_bps": ls.consumption_bps,
            "status": _LINK_STATUS_NAME.get(ls.status, "UNSPECIFIED"), "kms_kind": ls.kms_kind,
            "peer_stored_bits": int(ls.peer_stored_bits), "alarm": ls.alarm, "qber": ls.qber}


def register_to_wire(reg: control_pb2.Register, cert_addresses: Iterable[str] | None = None) -> dict:
    """A Register; ``cert_addresses``: the IP addresses of the registering node's verified
    certificate, which its relay address and data IP must be among."""
    wire = {"node_id": reg.node_id, "relay_addr": reg.relay_addr, "etsi014_url": reg.etsi014_url,
            "etsi004_addr": reg.etsi004_addr, "data_ip": reg.data_ip,
            "trust_level": reg.trust_level, "links": [link_to_wire(x) for x in reg.links],
            "saes": list(reg.saes), "agent_version": reg.agent_version}
    if cert_addresses is not None:
        wire["cert_addresses"] = list(cert_addresses)
    return wire


def report_to_wire(node_id: str, links: list[dict]) -> dict:
    """A LinkReport of ``node_id`` whose links are already wire dicts (``link_to_wire``)."""
    return {"node_id": node_id, "links": links}


def reports_to_wire(reports: list[dict]) -> dict:
    """A batch of ``report_to_wire`` dicts (the ``reports`` op)."""
    return {"reports": reports}


def path_request_to_wire(req: control_pb2.PathRequest) -> dict:
    return {"src_node": req.src_node, "dst_node": req.dst_node, "src_sae": req.src_sae,
            "dst_sae": req.dst_sae, "key_size_bits": req.key_size_bits,
            "key_count": req.key_count, "application": req.application,
            "dst_saes": list(req.dst_saes)}


def release_to_wire(path_id: str, node_id: str) -> dict:
    """A ReleasePath of ``path_id`` asked by ``node_id`` (only a path's source may)."""
    return {"path_id": path_id, "node_id": node_id}


# ------------------------------------------------------------ gateway: wire dict -> protobuf


def registered_proto(node_id: str, report_interval_ms: int) -> control_pb2.ControllerMessage:
    return control_pb2.ControllerMessage(registered=control_pb2.Registered(
        node_id=node_id, report_interval_ms=report_interval_ms))


def authorise_proto(auth: dict) -> control_pb2.ControllerMessage:
    """An ``auth_to_wire`` dict as the message pushed down a control stream."""
    fields = dict(auth)
    handoff = fields.pop("handoff", None)
    msg = control_pb2.RelayAuthorisation(**fields)
    if handoff:
        msg.handoff.CopyFrom(control_pb2.Handoff(**handoff))
    return control_pb2.ControllerMessage(authorise=msg)


def push_proto(push: dict) -> control_pb2.ControllerMessage:
    """An app push (``authorise_to_wire`` / ``revoke_to_wire`` body) as a ControllerMessage."""
    if push["push"] == "authorise":
        return authorise_proto(push["auth"])
    return control_pb2.ControllerMessage(revoke=control_pb2.Revocation(
        path_id=push.get("path_id", ""), reason=push.get("reason", "")))


def refusal_from_wire(result: dict) -> tuple[str, str, str]:
    """(reason, rule, message) of a refused ``decision_to_wire`` result."""
    reason = result.get("refusal") or "policy_deny"
    return reason, result.get("rule", ""), result.get("reason") or reason


def refusal_proto(reason: str, rule: str = "", message: str = "") -> control_pb2.PathRefusal:
    return control_pb2.PathRefusal(reason=reason, rule=rule, message=message)


def path_reply_proto(result: dict) -> control_pb2.PathReply:
    """A granted ``decision_to_wire`` result as the RequestPath answer."""
    reply = control_pb2.PathReply(
        security_level=result.get("security_level", ""), rule=result.get("rule", ""),
        reason=result.get("reason", ""), expires_unix_ms=int(result.get("expires_unix_ms", 0)),
        flows_installed=int(result.get("flows_installed", 0)))
    for p in result.get("paths", []):
        reply.paths.add(path_id=p["path_id"], cost=float(p.get("cost", 0.0)),
                        share_index=int(p.get("share_index", 0)),
                        hops=[control_pb2.Hop(node_id=h["node_id"], relay_addr=h.get("relay_addr", ""))
                              for h in p["hops"]])
    if result.get("handoff"):
        reply.handoff.CopyFrom(control_pb2.Handoff(**result["handoff"]))
    return reply


# --------------------------------------------------------------- app: wire dict -> dataclass


def _str(args: dict, name: str, required: bool = False) -> str:
    value = args.get(name, "")
    if not isinstance(value, str):
        raise BridgeError("invalid", f"{name}: expected a string, got {type(value).__name__}",
                          {"field": name})
    if required and not value:
        raise BridgeError("invalid", f"{name}: required", {"field": name})
    return value


def _int(args: dict, name: str, default: int = 0) -> int:
    value = args.get(name, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
        raise BridgeError("invalid", f"{name}: expected a non-negative number, got {value!r}",
                          {"field": name})
    return int(value)


def _qber(d: dict) -> float:
    value = d.get("qber", 0.0)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value <= 0.5:
        raise BridgeError("invalid", f"qber: expected a number within 0..0.5, got {value!r}",
                          {"field": "qber"})
    return float(value)


def link_state_from_wire(d: dict) -> LinkState:
    # Imported here: the gateway process uses this module too and never needs the core's
    # network state (nor networkx, which it imports).
    from quseccontroller.state import LinkState
    status = str(d.get("status", "ACTIVE")).upper().removeprefix("LINK_STATUS_")
    if status not in _LINK_STATUS:
        raise BridgeError("invalid", f"links: status {d.get('status')!r} unknown", {"field": "status"})
    return LinkState(link_id=_str(d, "link_id", True), peer_node=_str(d, "peer_node", True),
                     skr_bps=float(d.get("skr_bps", 0.0)), stored_bits=_int(d, "stored_bits"),
                     consumption_bps=float(d.get("consumption_bps", 0.0)), status=status,
                     kms_kind=_str(d, "kms_kind") or "simulated",
                     peer_stored_bits=_int(d, "peer_stored_bits"), alarm=_str(d, "alarm"),
                     qber=_qber(d))


def agent_info_from_wire(d: dict) -> AgentInfo:
    from quseccontroller.state import AgentInfo
    links = d.get("links", [])
    saes = d.get("saes", [])
    if not isinstance(links, list) or not isinstance(saes, list):
        raise BridgeError("invalid", "links and saes must be lists")
    return AgentInfo(node_id=_str(d, "node_id", True), relay_addr=_str(d, "relay_addr"),
                     etsi014_url=_str(d, "etsi014_url"), etsi004_addr=_str(d, "etsi004_addr"),
                     data_ip=_str(d, "data_ip"), trust_level=_int(d, "trust_level", 3) or 3,
                     links=tuple(link_state_from_wire(x) for x in links),
                     saes=tuple(str(s) for s in saes), agent_version=_str(d, "agent_version"))


def cert_addresses_from_wire(d: dict) -> tuple[str, ...] | None:
    """The registering node's certificate addresses (None: the gateway sent none)."""
    addrs = d.get("cert_addresses")
    if addrs is None:
        return None
    if not isinstance(addrs, list) or not all(isinstance(a, str) for a in addrs):
        raise BridgeError("invalid", "cert_addresses: expected a list of strings",
                          {"field": "cert_addresses"})
    return tuple(addrs)


def report_from_wire(d: dict) -> tuple[str, list[LinkState]]:
    """(node_id, its links) of a ``report_to_wire`` dict."""
    return _str(d, "node_id", True), [link_state_from_wire(x) for x in d.get("links", [])]


def reports_from_wire(d: dict) -> list[dict]:
    """The ``report_to_wire`` dicts of a ``reports_to_wire`` batch (each read by ``report_from_wire``)."""
    reports = d.get("reports")
    if not isinstance(reports, list) or not all(isinstance(r, dict) for r in reports):
        raise BridgeError("invalid", "reports: expected a list of report objects", {"field": "reports"})
    return reports


def node_id_from_wire(d: dict) -> str:
    return _str(d, "node_id", True)


def release_from_wire(d: dict) -> tuple[str, str]:
    """(path id, the node asking: '' when the gateway releases on its own behalf)."""
    return _str(d, "path_id", True), _str(d, "node_id")


def path_request_from_wire(d: dict) -> PathRequest:
    dst_saes = d.get("dst_saes", [])
    if not isinstance(dst_saes, list) or not all(isinstance(x, str) for x in dst_saes):
        raise BridgeError("invalid", "dst_saes: expected a list of strings", {"field": "dst_saes"})
    # no dst_node: the agent does not know the slave SAE's node (perhaps another domain's)
    return PathRequest(src_node=_str(d, "src_node", True),
                       dst_node=_str(d, "dst_node", not _str(d, "dst_sae")),
                       src_sae=_str(d, "src_sae"), dst_sae=_str(d, "dst_sae"),
                       key_size_bits=_int(d, "key_size_bits", 256) or 256,
                       key_count=_int(d, "key_count", 1) or 1,
                       application=_str(d, "application"), dst_saes=tuple(dst_saes),
                       handoff=handoff_from_wire(d.get("handoff")))


def handoff_from_wire(d: Any) -> Handoff | None:
    """The gateway's handoff of a request_path (None: an ordinary path inside the domain)."""
    if d is None:
        return None
    if not isinstance(d, dict):
        raise BridgeError("invalid", "handoff: expected an object", {"field": "handoff"})
    return Handoff(crossing=_str(d, "crossing", True), kind=_str(d, "kind", True),
                   peer_domain=_str(d, "peer_domain", True), peer_kme=_str(d, "peer_kme", True),
                   exit_node=_str(d, "exit_node", True))


def handoff_to_wire(h: Handoff) -> dict:
    return asdict(h)


# --------------------------------------------------------------- app: dataclass -> wire dict


def auth_to_wire(auth: RelayAuthorisation) -> dict:
    return asdict(auth)


def authorise_to_wire(action: Authorise) -> dict:
    return {"node_id": action.node_id, "auth": auth_to_wire(action.auth)}


def revoke_to_wire(action: Revoke) -> dict:
    return {"node_id": action.node_id, "path_id": action.path_id, "reason": action.reason}


def link_refusal_to_wire(r: LinkRefusal) -> dict:
    return {"link_id": r.link_id, "reason": r.reason, "message": r.message}


def relay_addrs(auths: Iterable[RelayAuthorisation]) -> dict[str, str]:
    """Node -> relay host:port, as the authorisations of a path name their neighbours."""
    out: dict[str, str] = {}
    for a in auths:
        if a.prev_hop and a.prev_hop_addr:
            out[a.prev_hop] = a.prev_hop_addr
        if a.next_hop and a.next_hop_addr:
            out[a.next_hop] = a.next_hop_addr
    return out


def decision_to_wire(decision: PathDecision, held: list[Authorise] | None = None, adds: int = 0,
                     app_ms: float = 0.0) -> dict[str, Any]:
    """The request_path result: the decision, and for a grant its paths (hops with their relay
    addresses), the held-back authorisations the gateway delivers, and the flows installed."""
    reply: dict[str, Any] = {
        "granted": decision.granted, "refusal": decision.refusal, "rule": decision.rule,
        "reason": decision.reason, "security_level": decision.security_level,
        "cost": decision.cost, "expires_unix_ms": int(decision.expires_at * 1000),
        "paths": [], "authorisations": [], "flows_installed": 0, "app_ms": app_ms}
    if not decision.granted:
        return reply
    held = held or []
    addrs = relay_addrs(a.auth for a in held)
    costs = list(decision.costs or [])
    for i, (hops, path_id) in enumerate(zip(decision.paths, decision.path_ids)):
        reply["paths"].append({
            "path_id": path_id, "cost": costs[i] if i < len(costs) else decision.cost,
            "share_index": i,
            "hops": [{"node_id": n, "relay_addr": addrs.get(n, "")} for n in hops]})
    reply["authorisations"] = [authorise_to_wire(a) for a in held]
    reply["flows_installed"] = int(decision.flows_installed or 0) or adds
    return reply


# --------------------------------------------------- the parent API: app <-> gateway wire dicts


def export_seq_from_wire(d: dict) -> int:
    return _int(d, "seq")


def reach_node_from_wire(d: dict) -> str:
    return _str(d, "node", required=True)


def domain_export_to_wire(ex: "DomainExport") -> dict:
    """The export as parent.proto's JSON mapping (the gateway parses it into the message)."""
    from quseccontroller.parent import wire
    return json_format.MessageToDict(wire.export_pb(ex), preserving_proto_field_name=True)


def reaches_to_wire(reaches: dict[str, "Reach"]) -> dict:
    from quseccontroller.parent import wire
    return {node: json_format.MessageToDict(wire.reach_pb(r), preserving_proto_field_name=True)
            for node, r in reaches.items()}



def reaches_from_wire(d: dict) -> dict[str, "Reach"]:
    """The ``reach`` op's answer (``reaches_to_wire``) back as Reach records (the gateway)."""
    from quseccontroller.parent import wire
    from quseccontroller.proto import parent_pb2
    return {node: wire.reach_of(json_format.ParseDict(r, parent_pb2.Reach())) for node, r in d.items()}
