"""The committed generated gRPC modules match their .proto files."""
from pathlib import Path

from quseccontroller import protogen


def test_generated_code_is_fresh(tmp_path: Path) -> None:
    protogen.generate(tmp_path)
    stale = []
    for proto in protogen.proto_files():
        stem = proto[: -len(".proto")]
        for suffix in ("_pb2.py", "_pb2.pyi", "_pb2_grpc.py"):
            fresh = (tmp_path / (stem + suffix)).read_bytes()
            committed = protogen.ROOT / (stem + suffix)
            if not committed.exists() or committed.read_bytes() != fresh:
                stale.append(stem + suffix)
    assert not stale, f"stale generated code (run `make protos`): {stale}"


def test_every_package_is_versioned() -> None:
    for proto in protogen.proto_files():
        text = (protogen.ROOT / proto).read_text()
        assert any(line.startswith("package ") and line.rstrip(";").endswith(".v1")
                   for line in text.splitlines()), proto
