"""The relay's edges: relay.proto <-> dataclasses, reasons <-> gRPC status, and what the core imports."""
from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import grpc
import pytest

from kms_agents.proto import relay_pb2
from kms_agents.relay import crypto, wire
from kms_agents.relay.messages import Ack, AckStatus, Reason, RelayFailure, RelayMessage, VoidMessage

PACKAGE = Path(__file__).resolve().parents[3] / "kms_agents"


def header(**kw) -> crypto.RelayHeader:
    fields = dict(path_id="p1", seq=7, key_id="k", from_node="A", src_node="A", dst_node="C",
                  share_index=1, share_count=2, size_bits=256, security_level="qkd", link_id="A-B",
                  pad_key_ids=("x",), mac_key_ids=(), initiator_sae_id="sae-a",
                  target_sae_ids=("sae-c",), extensions=(("qusec_path", "A,B,C"),),
                  key_ids=("k1", "k2"))
    fields.update(kw)
    return crypto.RelayHeader(**fields)


def test_every_reason_is_one_grpc_status_and_back() -> None:
    codes = {wire.status_of(r) for r in Reason}
    assert len(codes) == len(Reason)
    assert all(wire.reason_of(wire.status_of(r)) is r for r in Reason)
    assert all(wire.status_of(r).name == r.value for r in Reason)   # the name SAEs are told
    assert wire.reason_of(grpc.StatusCode.CANCELLED) is Reason.FAILED


def test_relay_message_round_trip() -> None:
    msg = RelayMessage(header(), b"\x01" * 64, b"\x02" * 16)
    req = wire.to_request(msg)
    assert isinstance(req, relay_pb2.RelayRequest) and req.version == crypto.VERSION
    assert wire.message_of(relay_pb2.RelayRequest.FromString(req.SerializeToString())) == msg


def test_received_message_with_another_version_or_a_bad_header_is_invalid() -> None:
    req = wire.to_request(RelayMessage(header(), b"\x01" * 64, b"\x02" * 16))
    req.version = "qusec-relay/0"
    with pytest.raises(RelayFailure, match="version 'qusec-relay/0' not supported") as info:
        wire.message_of(req)
    assert info.value.reason is Reason.INVALID
    req.version, req.seq = crypto.VERSION, 0
    with pytest.raises(RelayFailure, match="seq 0 out of range") as info:
        wire.message_of(req)
    assert info.value.reason is Reason.INVALID


def test_void_and_ack_round_trip() -> None:
    void = VoidMessage(path_id="p1", key_id="k", reason="tampered", from_node="B", key_ids=("k1", "k2"))
    assert wire.void_of(wire.void_to_request(void)) == void
    ack = Ack(AckStatus.RELAYED, key_id="k", extensions={"qusec_hybrid_answer": "xyz"})
    assert wire.ack_of(wire.ack_to_proto(ack)) == ack
    assert wire.ack_of(relay_pb2.RelayAck(status=relay_pb2.KEY_NOT_PRESENT)).status is AckStatus.KEY_NOT_PRESENT


def _imports(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            names |= {node.module, *(f"{node.module}.{a.name}" for a in node.names)}
    return names


@pytest.mark.parametrize("module", ["engine", "hop", "prerelay", "plan", "messages", "links",
                                    "authz", "crypto", "shares", "hybrid", "network"])
def test_relay_core_knows_neither_grpc_nor_protobuf(module: str) -> None:
    names = _imports(PACKAGE / "relay" / f"{module}.py")
    assert not {n for n in names if n.split(".")[0] in ("grpc", "google", "quseccontroller")
                or n.rpartition(".")[2].endswith(("_pb2", "_pb2_grpc"))}, names


def test_only_the_control_client_imports_the_controller() -> None:
    users = {p.relative_to(PACKAGE).as_posix() for p in PACKAGE.rglob("*.py") if "_pb2" not in p.name
             and any(n.split(".")[0] == "quseccontroller" for n in _imports(p))}
    assert users == {"control_client.py"}


def test_importing_the_relay_core_does_not_load_grpc() -> None:
    code = ("import sys, kms_agents.relay.engine, kms_agents.relay.hop, kms_agents.relay.prerelay; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] == 'grpc' or m.endswith('_pb2')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=PACKAGE.parent)
    assert out.stdout.strip() == "[]"
