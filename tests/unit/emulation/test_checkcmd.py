"""``qkdnet check``: accepts every shipped file, rejects each broken kind with FILE: ENTRY: problem."""
from __future__ import annotations

import argparse
import io
import sys
from pathlib import Path

import pytest

from tests.helpers import ROOT

from mininet_topos import topology
from mininet_topos.cli import check as checkcmd

GOOD = (ROOT / "mininet_topos" / "topologies" / "linear6.toml").read_text()


def run(*specs: str) -> tuple[int, list[str]]:
    out = io.StringIO()
    rc = checkcmd.check(list(specs), out=out)
    return rc, out.getvalue().splitlines()


def write(tmp_path: Path, name: str, text: str) -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def test_every_shipped_topology_is_ok() -> None:
    files = [str(p) for p in topology.shipped().values()]
    rc, lines = run(*files)
    assert rc == 0
    assert lines == [f"{f}: ok ({topology.summary(topology.load(f))})" for f in files]
    assert f"{files[0]}: ok (" in lines[0] and " nodes, " in lines[0] and " SAEs)" in lines[0]


def test_shipped_name_and_mesh_spec() -> None:
    rc, lines = run("metro8", "mesh:100:3")
    assert rc == 0
    assert lines == ["metro8: ok (8 nodes, 11 links, 4 SAEs)", f"mesh:100:3: ok ({lines[1].split('(')[1]}"]


BROKEN = {
    "unknown-node": (GOOD.replace('b = "F"', 'b = "Z"', 1), "link 5 (E-Z): b: unknown node 'Z'"),
    "duplicate": (GOOD + '\n[[nodes]]\nid = "C"\n', "node 7 (C): id: duplicate node id 'C'"),
    "negative": (GOOD.replace("length_km = 8", "length_km = -8"), "link 3 (C-D): length_km: must be positive"),
    "plob": (GOOD.replace("length_km = 20", "length_km = 20\nrate_bps = 1e12"),
             "link 4 (D-E): rate_bps: 1e+12 b/s is above the PLOB bound for 20 km"),
    "disconnected": (GOOD.replace('a = "C"\nb = "D"\nlength_km = 8', 'a = "C"\nb = "B"\nid = "X"\nlength_km = 8'),
                     "graph: QKD graph is disconnected: 2 components: {A, B, C}; {D, E, F}"),
    "self-loop": (GOOD.replace('a = "E"\nb = "F"', 'a = "E"\nb = "E"'), "link 5 (E-E): self-loop"),
    "typo": (GOOD.replace('node = "A"', 'nod = "A"'), "sae 1 (sae-a): nod: unknown key (did you mean 'node'?)"),
    "trust": (GOOD.replace('id = "B"', 'id = "B"\ntrust = 7'), "node 2 (B): trust: must be an integer 1..5, got 7"),
    "syntax": (GOOD.replace('id = "C"', 'id = C'), "TOML syntax error"),
}


@pytest.mark.parametrize("kind", sorted(BROKEN))
def test_broken_files_rejected(tmp_path: Path, kind: str) -> None:
    text, expected = BROKEN[kind]
    f = write(tmp_path, f"{kind}.toml", text)
    rc, lines = run(f)
    assert rc == 1
    assert any(line.startswith(f + ": ") and expected in line for line in lines), lines
    assert not any(": ok (" in line for line in lines)


def test_syntax_error_names_the_line(tmp_path: Path) -> None:
    f = write(tmp_path, "s.toml", GOOD.replace('id = "C"', 'id = C'))
    line = GOOD.splitlines().index('id = "C"') + 1
    assert run(f)[1] == [f"{f}: line {line}: TOML syntax error: Invalid value"]


def test_mixed_good_and_bad_exit_non_zero(tmp_path: Path) -> None:
    bad = write(tmp_path, "bad.toml", BROKEN["negative"][0])
    rc, lines = run("linear6", bad, str(tmp_path / "missing.toml"), str(tmp_path))
    assert rc == 1
    assert lines[0].startswith("linear6: ok")
    assert f"{tmp_path / 'missing.toml'}: file: not found" in lines
    assert f"{tmp_path}: file: is a directory" in lines
    assert lines[-1] == "3 of 4 files have problems"


POLICY_GOOD = """
[default]
action = "allow"

[[rules]]
name = "deny-guests"
match = { src_node = "guest*" }
action = "deny"
"""


def test_policy_files(tmp_path: Path) -> None:
    pytest.importorskip("quseccontroller.policy")
    good = write(tmp_path, "p.toml", POLICY_GOOD)
    assert run(good) == (0, [f"{good}: ok (policy, 1 rules and a default)"])
    bad = write(tmp_path, "q.toml", POLICY_GOOD.replace('action = "deny"', 'action = "deny"\nfoo = 1'))
    rc, lines = run(bad)
    assert rc == 1 and any(line.startswith(f"{bad}: rule 1 (deny-guests): foo") for line in lines), lines
    shipped = sorted((ROOT / "quseccontroller" / "policies").glob("*.toml"))
    assert shipped and run(*map(str, shipped))[0] == 0


def test_inventory_files(tmp_path: Path) -> None:
    from mininet_topos import topology as topo_mod
    from mininet_topos.provision import inventory
    good = inventory.write(topo_mod.load("linear6"), tmp_path / "inventory.toml")
    assert run(str(good)) == (0, [f"{good}: ok (QuSeC inventory, 6 nodes, 5 links)"])
    bad = write(tmp_path, "bad-inventory.toml",
                '[[nodes]]\nid = "A"\ntrust = 9\nsaes = []\n\n[[links]]\nid = "A-B"\na = "A"\nb = "B"\nlatency_ms = 1\n')
    rc, lines = run(bad)
    assert rc == 1 and any("trust" in line for line in lines) and any("'B'" in line for line in lines), lines
    assert all(line.startswith(f"{bad}: ") for line in lines), lines


def test_is_policy_classification() -> None:
    assert checkcmd.is_policy({"rules": []}) and checkcmd.is_policy({"policy": {}})
    assert checkcmd.is_policy({"default": {}})
    assert not checkcmd.is_policy({"nodes": [], "rules": []})
    assert not checkcmd.is_policy({"network": {}})


def test_parser_wiring(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    parser = argparse.ArgumentParser()
    checkcmd.add_parser(parser.add_subparsers())
    args = parser.parse_args(["check", "ring8", write(tmp_path, "b.toml", BROKEN["typo"][0])])
    assert args.func(args) == 1
    out = capsys.readouterr().out
    assert "ring8: ok (8 nodes, 8 links, 3 SAEs)" in out and "nod: unknown key" in out


def test_console_command(tmp_path: Path) -> None:
    import subprocess
    bad = write(tmp_path, "bad.toml", BROKEN["self-loop"][0])
    proc = subprocess.run([sys.executable, "-m", "mininet_topos.cli", "check", "metro8", bad],
                          capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert proc.returncode == 1, proc.stderr
    assert "metro8: ok (8 nodes, 11 links, 4 SAEs)" in proc.stdout
    assert f"{bad}: link 5 (E-E): self-loop" in proc.stdout
