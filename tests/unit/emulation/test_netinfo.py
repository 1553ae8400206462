"""network.json: its shape, atomic write, and clear errors when reading it."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from mininet_topos.provision.pki import CertPair, Pki
from mininet_topos.model import Node, QkdLink, Sae, Topology
from mininet_topos.provision.netinfo import NetworkInfoError, load_network, sae_endpoint, write_network_json


def test_network_json_shape_and_errors(tmp_path: Path) -> None:
    topo = Topology("t", {"A": Node("A"), "B": Node("B")}, [QkdLink("A-B", "A", "B", 1e6)],
                    {"sae-a": Sae("sae-a", "A")})
    pki = Pki(str(tmp_path), str(tmp_path / "ca.pem"), "", CertPair("q", "q"), {},
              {"sae-a": CertPair(str(tmp_path / "sae-a.pem"), str(tmp_path / "sae-a.key"))},
              {"operator": CertPair(str(tmp_path / "op.pem"), str(tmp_path / "op.key"))})
    agents = {"A": {"etsi014_url": "https://127.0.0.1:1", "etsi004_addr": "127.0.0.1:2", "relay_addr": "x:3"}}
    path = write_network_json(tmp_path / "network.json", topo, pki, agents,
                              {"grpc": "h:1", "http": "http://h:2", "https": "https://h:3"})
    doc = json.loads(path.read_text())
    assert doc["ca_cert"] == str(tmp_path / "ca.pem")
    assert doc["qusec"] == {"grpc": "h:1", "http": "http://h:2", "https": "https://h:3"}
    assert doc["operator"] == {"cert": str(tmp_path / "op.pem"), "key": str(tmp_path / "op.key")}
    assert doc["nodes"]["A"] == {"etsi014_url": "https://127.0.0.1:1", "etsi004_addr": "127.0.0.1:2",
                                 "relay_addr": "x:3", "saes": ["sae-a"]}
    assert doc["saes"]["sae-a"] == {"node": "A", "cert": str(tmp_path / "sae-a.pem"),
                                    "key": str(tmp_path / "sae-a.key")}
    assert not list(tmp_path.glob("*.tmp"))
    entry, node = sae_endpoint(load_network(path), "sae-a")
    assert node["etsi014_url"].endswith(":1")
    with pytest.raises(NetworkInfoError, match="unknown SAE 'zz'"):
        sae_endpoint(doc, "zz")
    with pytest.raises(NetworkInfoError, match="cannot read"):
        load_network(tmp_path / "missing.json")
    (tmp_path / "bad.json").write_text("{}")
    with pytest.raises(NetworkInfoError, match="missing 'ca_cert'"):
        load_network(tmp_path / "bad.json")


def test_up_without_local_uses_the_mininet_launcher(monkeypatch, capsys) -> None:
    import os
    import sys

    from mininet_topos.cli import build_parser, up
    called = {}
    monkeypatch.setattr(up, "run_mininet", lambda topo, state, args: called.update(
        topo=topo.name, state=state) or 0)
    args = build_parser().parse_args(["up", "linear6", "--state-dir", "/tmp/x"])
    assert args.func(args) == 0 and called == {"topo": "linear6", "state": Path("/tmp/x")}
    monkeypatch.undo()
    # Without Mininet installed (the emulation extra), the launcher says so instead of a traceback.
    monkeypatch.setitem(sys.modules, "mininet", None)
    for name in [m for m in sys.modules if m.startswith("mininet.") or m in (
            "mininet_topos.launch.mininet", "mininet_topos.launch.topos")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    assert up.run(args) == 2
    assert "Mininet is not installed" in capsys.readouterr().err
