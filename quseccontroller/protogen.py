"""Regenerate the committed gRPC/protobuf modules from the repo's .proto files.

Run from anywhere: ``python -m quseccontroller.protogen`` (``make protos``).
Protos sit at their package path and are compiled from the repo root with
``-I.``, so generated imports work without rewriting.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROTO_DIRS = ("quseccontroller/proto", "kms_agents/proto")


def proto_files(root: Path = ROOT) -> list[str]:
    """Repo-relative paths of every .proto file, sorted."""
    return sorted(str(p.relative_to(root)) for d in PROTO_DIRS for p in (root / d).glob("*.proto"))


def generate(out_dir: Path, root: Path = ROOT) -> None:
    """Compile every proto into ``out_dir`` (the repo root for a real regeneration)."""
    from grpc_tools import protoc  # test/dev dependency only
    import grpc_tools

    include = str(Path(grpc_tools.__file__).parent / "_proto")
    args = ["protoc", "-I.", f"-I{include}", f"--python_out={out_dir}",
            f"--pyi_out={out_dir}", f"--grpc_python_out={out_dir}", *proto_files(root)]
    import os
    cwd = os.getcwd()
    os.chdir(root)
    try:
        rc = protoc.main(args)
    finally:
        os.chdir(cwd)
    if rc != 0:
        raise RuntimeError(f"protoc failed with exit code {rc}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT, help="output root (default: the repo)")
    args = parser.parse_args(argv)
    generate(args.out.resolve())
    print(f"generated {len(proto_files())} protos into {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
