"""Relay messages on the wire: relay.proto <-> the relay's dataclasses, reasons <-> gRPC status."""
from __future__ import annotations

import grpc

from kms_agents.proto import relay_pb2
from kms_agents.relay import crypto
from kms_agents.relay.messages import Ack, AckStatus, Reason, RelayFailure, RelayMessage, VoidMessage

_STATUS = {reason: grpc.StatusCode[reason.value] for reason in Reason}
_REASON = {code: reason for reason, code in _STATUS.items()}


def status_of(reason: Reason) -> grpc.StatusCode:
    """The gRPC status a relay failure is reported with."""
    return _STATUS[reason]


def reason_of(code: grpc.StatusCode) -> Reason:
    """The reason of a peer's gRPC status (codes the relay does not tell apart: FAILED)."""
    return _REASON.get(code, Reason.FAILED)


def to_request(msg: RelayMessage) -> relay_pb2.RelayRequest:
    """The wire message of a sealed hop."""
    h = msg.header
    return relay_pb2.RelayRequest(
        version=h.version, path_id=h.path_id, share_index=h.share_index,
        share_count=h.share_count, seq=h.seq, key_id=h.key_id,
        initiator_sae_id=h.initiator_sae_id, target_sae_ids=h.target_sae_ids,
        src_node=h.src_node, dst_node=h.dst_node, from_node=h.from_node, link_id=h.link_id,
        pad_key_ids=h.pad_key_ids, mac_key_ids=h.mac_key_ids, ciphertext=msg.ciphertext,
        tag=msg.tag, size_bits=h.size_bits, security_level=h.security_level,
        extensions=dict(h.extensions), key_ids=h.key_ids)


def message_of(req: relay_pb2.RelayRequest) -> RelayMessage:
    """A received hop; raises RelayFailure (INVALID) for another protocol version or a bad header."""
    if req.version != crypto.VERSION:
        raise RelayFailure(Reason.INVALID, f"relay protocol version {req.version!r} not supported "
                                           f"(this node speaks {crypto.VERSION})")
    try:
        header = crypto.RelayHeader(
            path_id=req.path_id, seq=req.seq, key_id=req.key_id, from_node=req.from_node,
            src_node=req.src_node, dst_node=req.dst_node, share_index=req.share_index,
            share_count=req.share_count, size_bits=req.size_bits,
            security_level=req.security_level, link_id=req.link_id,
            pad_key_ids=tuple(req.pad_key_ids), mac_key_ids=tuple(req.mac_key_ids),
            initiator_sae_id=req.initiator_sae_id, target_sae_ids=tuple(req.target_sae_ids),
            extensions=tuple(sorted(req.extensions.items())), version=req.version,
            key_ids=tuple(req.key_ids))
    except crypto.RelayCryptoError as exc:
        raise RelayFailure(Reason.INVALID, str(exc)) from None
    return RelayMessage(header, req.ciphertext, req.tag)


def void_to_request(msg: VoidMessage) -> relay_pb2.VoidRequest:
    return relay_pb2.VoidRequest(version=msg.version, path_id=msg.path_id, key_id=msg.key_id,
                                 reason=msg.reason, from_node=msg.from_node, key_ids=msg.key_ids)


def void_of(req: relay_pb2.VoidRequest) -> VoidMessage:
    return VoidMessage(path_id=req.path_id, key_id=req.key_id, reason=req.reason,
                       from_node=req.from_node, key_ids=tuple(req.key_ids), version=req.version)


def ack_to_proto(ack: Ack) -> relay_pb2.RelayAck:
    return relay_pb2.RelayAck(status=ack.status.value, key_id=ack.key_id, message=ack.message,
                              extensions=ack.extensions)


def ack_of(msg: relay_pb2.RelayAck) -> Ack:
    try:
        status = AckStatus(msg.status)
    except ValueError:  # a status this node does not know yet
        status = AckStatus.UNSPECIFIED
    return Ack(status, key_id=msg.key_id, message=msg.message, extensions=dict(msg.extensions))
