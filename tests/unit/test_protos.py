"""The committed generated gRPC modules match their .proto files (the command `make protos` runs)."""
import subprocess
import sys
from pathlib import Path

from tests.helpers import ROOT

PROTOS = sorted(str(p.relative_to(ROOT)) for d in ("quseccontroller/proto", "kms_agents/proto")
                for p in (ROOT / d).glob("*.proto"))


def test_generated_code_is_fresh(tmp_path: Path) -> None:
    assert len(PROTOS) == 6, PROTOS
    subprocess.run([sys.executable, "-m", "grpc_tools.protoc", "-I.", f"--python_out={tmp_path}",
                    f"--pyi_out={tmp_path}", f"--grpc_python_out={tmp_path}", *PROTOS],
                   cwd=ROOT, check=True)
    stale = []
    for proto in PROTOS:
        stem = proto[: -len(".proto")]
        for suffix in ("_pb2.py", "_pb2.pyi", "_pb2_grpc.py"):
            fresh = (tmp_path / (stem + suffix)).read_bytes()
            committed = ROOT / (stem + suffix)
            if not committed.exists() or committed.read_bytes() != fresh:
                stale.append(stem + suffix)
    assert not stale, f"stale generated code (run `make protos`): {stale}"


def test_every_package_is_versioned() -> None:
    for proto in PROTOS:
        text = (ROOT / proto).read_text()
        assert any(line.startswith("package ") and line.rstrip(";").endswith(".v1")
                   for line in text.splitlines()), proto
