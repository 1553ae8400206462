"""``qkdnet topo show FILE --svg OUT``: the picture of a topology file, and the shipped ones in
docs/img are what the command draws today."""
from __future__ import annotations

import argparse
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from mininet_topos import synthetic, topology
from mininet_topos.cli import topo as topocmd
from mininet_topos.render import render_svg

DOCS_IMG = Path(__file__).resolve().parents[3] / "docs" / "img"
NS = "{http://www.w3.org/2000/svg}"


def cli(*argv: str) -> int:
    parser = argparse.ArgumentParser()
    topocmd.add_parser(parser.add_subparsers())
    args = parser.parse_args(list(argv))
    return args.func(args)


def drawn(svg: str) -> tuple[list, list]:
    root = ET.fromstring(svg)
    nodes = [e for e in root.iter() if e.tag in (NS + "circle", NS + "rect") and e.find(NS + "title") is not None]
    qkd = [e for e in root.iter(NS + "line") if e.get("stroke") == "#2f9e44"]
    return nodes, qkd


@pytest.mark.parametrize("name", sorted(topology.shipped()))
def test_the_shipped_pictures_are_up_to_date(name: str) -> None:
    svg = render_svg(topology.load(name))
    path = DOCS_IMG / f"topo-{name}.svg"
    assert path.exists() and path.read_text() == svg, (
        f"{path} is not what `qkdnet topo show {name} --svg {path}` draws now: run it")


def test_every_node_and_link_is_drawn_with_its_rate() -> None:
    topo = topology.load("metro8")
    svg = render_svg(topo)
    nodes, qkd = drawn(svg)
    assert len(nodes) == len(topo.nodes) and len(qkd) == len(topo.links)
    assert "at their locations" in svg
    for link in topo.links:
        assert f"{link.id}: " in svg
    assert "15.1 Mb/s · 8 km" in svg    # B-C: its rate and fibre length as the label


def test_domains_sites_and_pqc_links_are_drawn() -> None:
    svg = render_svg(topology.load("beijing_shanghai3"))
    for dom in ("beijing", "trunk", "shanghai"):
        assert f"domain {dom}<" in svg
    assert "interworking site bj-site" in svg and "PQC pqc-wan" in svg
    assert "the locations would stack nodes" in svg


def test_a_large_mesh_is_drawn_without_labels_the_same_way_twice() -> None:
    topo = synthetic.mesh(120, 3)
    svg = render_svg(topo)
    nodes, qkd = drawn(svg)
    assert len(nodes) == 120 and len(qkd) == len(topo.links)
    assert "Mb/s ·" not in svg and render_svg(synthetic.mesh(120, 3)) == svg


def test_the_command_writes_the_file(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "metro8.svg"
    assert cli("topo", "show", "metro8", "--svg", str(out)) == 0
    assert out.read_text() == render_svg(topology.load("metro8"))
    assert f"{out}: metro8, 8 nodes" in capsys.readouterr().out
    assert cli("topo", "show", "metro8", "--svg", str(tmp_path / "no" / "dir.svg")) == 1
    assert "cannot write" in capsys.readouterr().err
