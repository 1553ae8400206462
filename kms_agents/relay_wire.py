"""Relay messages on the wire: errors, keys handed back, bulk grouping, header <-> RelayRequest."""
from __future__ import annotations

from dataclasses import dataclass

import grpc

from kms_agents import relay_crypto
from kms_agents.proto import relay_pb2
from quseccontroller.proto import control_pb2

MAX_BULK_BYTES = 256 * 1024  # largest ciphertext of one bulk relay message
EXT_PATH = "qusec_path"      # relay request extension: the path's node ids, comma-separated


class RelayFailure(Exception):
    """A relay could not be completed; ``code`` is the gRPC status the edge reports."""

    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class OptionUnmet(RelayFailure):
    """A mandatory request option (e.g. ``qusec_max_hops``) cannot be met on the granted path."""

    def __init__(self, message: str, detail: dict) -> None:
        super().__init__(grpc.StatusCode.FAILED_PRECONDITION, message)
        self.detail = detail


@dataclass
class RelayedKey:
    """An end-to-end key the source hands back to the master SAE."""

    key_id: str
    key: bytes
    meta: dict


def hops_of(reply: control_pb2.PathReply) -> list[list[str]]:
    """Node ids of each path of a PathReply."""
    return [[h.node_id for h in p.hops] for p in reply.paths]


def bulk_groups(keys: list[tuple[str, bytes]], level: str,
                max_bytes: int | None = None) -> list[list[tuple[str, bytes]]]:
    """Keys of a request cut into bulk messages (one ML-KEM exchange each for hybrid/pqc)."""
    if not keys:
        return []
    per = max(1, (max_bytes or MAX_BULK_BYTES) // max(1, len(keys[0][1])))
    if level != "qkd":
        # spread the ML-KEM work over the worker pool. Not for qkd: every message costs a
        # durable link-store commit at each hop end, which costs more than pipelining saves
        per = min(per, max(1, -(-len(keys) // 4)))
    return [keys[i:i + per] for i in range(0, len(keys), per)]


def to_request(h: relay_crypto.RelayHeader, ciphertext: bytes, tag: bytes) -> relay_pb2.RelayRequest:
    """The wire message for a sealed hop."""
    return relay_pb2.RelayRequest(
        version=h.version, path_id=h.path_id, share_index=h.share_index,
        share_count=h.share_count, seq=h.seq, key_id=h.key_id,
        initiator_sae_id=h.initiator_sae_id, target_sae_ids=list(h.target_sae_ids),
        src_node=h.src_node, dst_node=h.dst_node, from_node=h.from_node, link_id=h.link_id,
        pad_key_ids=list(h.pad_key_ids), mac_key_ids=list(h.mac_key_ids), ciphertext=ciphertext,
        tag=tag, size_bits=h.size_bits, security_level=h.security_level,
        extensions=dict(h.extensions), key_ids=list(h.key_ids))


def header_of(req: relay_pb2.RelayRequest) -> relay_crypto.RelayHeader:
    """The authenticated header fields of a received message (raises RelayCryptoError)."""
    return relay_crypto.RelayHeader(
        path_id=req.path_id, seq=req.seq, key_id=req.key_id, from_node=req.from_node,
        src_node=req.src_node, dst_node=req.dst_node, share_index=req.share_index,
        share_count=req.share_count, size_bits=req.size_bits, security_level=req.security_level,
        link_id=req.link_id, pad_key_ids=tuple(req.pad_key_ids),
        mac_key_ids=tuple(req.mac_key_ids), initiator_sae_id=req.initiator_sae_id,
        target_sae_ids=tuple(req.target_sae_ids), extensions=tuple(sorted(req.extensions.items())),
        version=req.version, key_ids=tuple(req.key_ids))
