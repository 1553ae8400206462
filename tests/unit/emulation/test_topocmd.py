"""``qkdnet topo`` (list / mesh / show) and the topology benchmark on small sizes."""
from __future__ import annotations

import argparse
import re
import json
from pathlib import Path

import pytest

from mininet_topos import topology
from mininet_topos.bench import topology as bench_topology
from mininet_topos.bench import doc as benchdoc
from mininet_topos.cli import topo as topocmd


def cli(*argv: str) -> int:
    parser = argparse.ArgumentParser()
    topocmd.add_parser(parser.add_subparsers())
    args = parser.parse_args(list(argv))
    return args.func(args)


def test_list(capsys: pytest.CaptureFixture) -> None:
    assert cli("topo", "list") == 0
    out = capsys.readouterr().out
    assert re.search(r"^metro8 +8 nodes, 11 links, 4 SAEs \(default\)$", out, re.M), out
    assert re.search(r"^beijing_shanghai3 +14 nodes, 13 links, 4 SAEs; 3 domains, 2 interworking sites, "
                     r"1 PQC link$", out, re.M), out
    for name in topology.shipped():
        assert name in out
    assert "mesh:N[:SEED]" in out


def test_mesh_to_file_and_stdout(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out_file = tmp_path / "m.toml"
    assert cli("topo", "mesh", "120", "--seed", "4", "-o", str(out_file)) == 0
    assert capsys.readouterr().out.startswith(f"{out_file}: wrote 120 nodes, ")
    topo = topology.load(out_file)
    assert len(topo.nodes) == 120 and topo.links == topology.load("mesh:120:4").links
    assert cli("topo", "mesh", "10") == 0
    assert topology.loads(capsys.readouterr().out).name == "mesh10-s1"


def test_mesh_bad_size(capsys: pytest.CaptureFixture) -> None:
    assert cli("topo", "mesh", "2") == 2
    assert "mesh size must be 4..100000 nodes, got 2" in capsys.readouterr().err


def test_show(capsys: pytest.CaptureFixture, tmp_path: Path) -> None:
    assert cli("topo", "show", "tokyo2010") == 0
    out = capsys.readouterr().out
    assert out.startswith("tokyo2010: 4 nodes, 5 links, 3 SAEs")
    assert "Koganei-Otemachi#loop" in out and "304 kb/s" in out and "Sasaki" in out
    bad = tmp_path / "b.toml"
    bad.write_text("[[nodes]]\nid = 1\n")
    assert cli("topo", "show", str(bad)) == 1
    assert f"{bad}: node 1: id: must be a string" in capsys.readouterr().err


def test_bench_measures_and_reports(tmp_path: Path) -> None:
    rows = [bench_topology.measure(50, seed=2, repeat=1, workdir=tmp_path)]
    row = rows[0]
    assert row["nodes"] == 50 and row["links"] > 50 and row["file_MB"] > 0
    assert row["load_total_s"] == pytest.approx(row["parse_s"] + row["validate_s"] + row["graph_s"])
    body = bench_topology.report(rows, 2, 1)
    assert "| nodes | links |" in body and "not load time" in body
    doc = benchdoc.record("topology", "t", body, "qkdnet bench topology", doc=tmp_path / "b.md")
    assert "<!-- bench:topology -->" in doc.read_text()


def test_bench_json(capsys: pytest.CaptureFixture) -> None:
    parser = argparse.ArgumentParser()
    bench_topology.add_parser(parser.add_subparsers())
    args = parser.parse_args(["topology", "--sizes", "30", "--repeat", "1", "--json", "--no-record"])
    assert args.func(args) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["bench"] == "topology" and data["rows"][0]["nodes"] == 30 and data["ok"] is True


def test_benchmarks_record_into_the_repositorys_docs() -> None:
    from tests.helpers import ROOT
    assert benchdoc.DOC == ROOT / "docs" / "benchmarks.md" and benchdoc.DOC.exists()
