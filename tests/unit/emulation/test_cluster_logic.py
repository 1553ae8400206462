"""Cluster mode without servers: the placement (pure), the --cluster checks, the ssh command
lines, and the upstream Python 3 bug our Mininet classes work around (this test fails once
upstream fixes it, so the override can go)."""
from __future__ import annotations

import io
import shlex
from types import SimpleNamespace

import pytest

from mininet_topos import topology
from mininet_topos.launch import servers
from mininet_topos.launch.placement import cut, place
from mininet_topos.synthetic import mesh


def links_of(topo) -> list[tuple[str, str]]:
    return [(a, b) for a, b in topo.classical_graph().edges()]


def sizes(p: dict[str, int], n: int) -> list[int]:
    return [sum(1 for s in p.values() if s == i) for i in range(n)]


# -- placement ------------------------------------------------------------------------------
def test_a_line_is_cut_once_into_halves():
    t = topology.load("linear6")
    p = place(list(t.nodes), links_of(t), 2)
    assert sizes(p, 2) == [3, 3] and cut(p, links_of(t)) == 1
    assert {n for n, s in p.items() if s == 0} in ({"A", "B", "C"}, {"D", "E", "F"})


def test_a_ring_is_cut_twice_and_three_servers_get_two_nodes_each():
    t = topology.load("ring8")
    assert cut(place(list(t.nodes), links_of(t), 2), links_of(t)) == 2
    t = topology.load("linear6")
    p = place(list(t.nodes), links_of(t), 3)
    assert sizes(p, 3) == [2, 2, 2] and cut(p, links_of(t)) == 2


@pytest.mark.parametrize("n,seed", [(30, 1), (50, 7)])
def test_a_mesh_is_balanced_and_cut_far_less_than_round_robin(n, seed):
    t = mesh(n, seed)
    links = links_of(t)
    p = place(list(t.nodes), links, 2)
    assert sorted(sizes(p, 2)) == [n // 2, n - n // 2]
    round_robin = {node: i % 2 for i, node in enumerate(t.nodes)}
    assert cut(p, links) < cut(round_robin, links) / 2
    assert place(list(t.nodes), links, 2) == p          # deterministic


def test_placement_refuses_no_servers_and_more_servers_than_nodes():
    with pytest.raises(ValueError, match="at least one server"):
        place(["A"], [], 0)
    with pytest.raises(ValueError, match="3 servers for 2 nodes"):
        place(["A", "B"], [("A", "B")], 3)


def test_disconnected_parts_are_placed_too():
    p = place(["A", "B", "C", "D"], [("A", "B"), ("C", "D")], 2)
    assert sizes(p, 2) == [2, 2] and cut(p, [("A", "B"), ("C", "D")]) == 0


# -- --cluster checks ---------------------------------------------------------------------------
def test_cluster_spec_problems_are_named():
    t = topology.load("linear6")
    with pytest.raises(servers.ClusterError, match="no empty name"):
        servers.parse("localhost,,b")
    with pytest.raises(servers.ClusterError, match="10.9.9.9 given twice"):
        servers.parse("localhost,10.9.9.9,10.9.9.9")
    assert "not with --local" in servers.problems("localhost,10.9.9.9", t, local=True)[0]
    (first,) = servers.problems("10.255.255.1,10.9.9.9", t)
    assert "the first server (10.255.255.1) must be this machine" in first
    (again,) = servers.problems("localhost,127.0.0.1", t)
    assert "is this machine again" in again
    many = ",".join(["localhost"] + [f"10.9.9.{i}" for i in range(1, 7)])
    assert "7 servers for linear6's 6 nodes" in servers.problems(many, t)[0]
    assert servers.problems("localhost", t) == []


def test_multi_domain_topologies_are_refused():
    t = topology.load("beijing_shanghai3")
    assert "several domains" in servers.problems("localhost,10.9.9.9", t)[0]


def test_qkdnet_up_refuses_a_bad_cluster_before_anything_starts(tmp_path):
    import subprocess
    import sys
    out = subprocess.run([sys.executable, "-m", "mininet_topos.cli", "up", "linear6", "--local",
                          "--cluster", "localhost,10.9.9.9", "--state-dir", str(tmp_path / "s")],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 2 and "--cluster localhost,10.9.9.9: not with --local" in out.stderr
    assert not (tmp_path / "s").exists()


def test_ssh_command_line_quotes_the_remote_command():
    s = servers.Server("b", "10.9.9.9", False)
    argv = servers.ssh_argv(s, "/tmp/cfg", ["sh", "-c", "cat 'x y' && true"])
    assert argv[:3] == ["ssh", "-F", "/tmp/cfg"] and argv[-2] == "10.9.9.9"
    assert shlex.split(argv[-1]) == ["sudo", "-n", "-E", "sh", "-c", "cat 'x y' && true"]


def test_the_record_names_servers_and_hosts(tmp_path):
    ss = [servers.Server("localhost", "10.9.9.1", True), servers.Server("b", "10.9.9.9", False)]
    token = servers.write_record(tmp_path, ss, None, {0: ["qs1"], 1: ["qs2", "B"]})
    rec = servers.read_record(tmp_path)
    assert rec["servers"] == ss and rec["hosts"] == {"0": ["qs1"], "1": ["qs2", "B"]}
    assert rec["token"] == token
    servers.forget(tmp_path)
    assert servers.read_record(tmp_path) is None


# -- upstream's Python 3 bug ----------------------------------------------------------------------
class _Popen:
    """What rpopen returns: a finished process whose pipe gives bytes, as every Popen pipe does."""

    def __init__(self, out: bytes) -> None:
        self.stdout = io.BytesIO(out)
        self.returncode = 0

    def poll(self) -> int:
        return 0

    def communicate(self):
        return self.stdout.read(), None


def test_upstream_rcmd_still_adds_bytes_to_str():
    """When this fails, mininet.examples.cluster's RemoteMixin.rcmd works on Python 3: remove
    _ClusterNode.rcmd (mininet_topos/launch/cluster.py) and this test."""
    from mininet.examples.cluster import RemoteMixin
    node = SimpleNamespace(rpopen=lambda *a, **k: _Popen(b"RTNETLINK answers: File exists\n"))
    with pytest.raises(TypeError, match="bytes"):
        RemoteMixin.rcmd(node, "ip link add x type dummy")


def test_our_rcmd_returns_the_output_as_text():
    from mininet_topos.launch.cluster import _ClusterNode
    node = SimpleNamespace(rpopen=lambda *a, **k: _Popen(b"RTNETLINK answers: File exists\n"))
    assert _ClusterNode.rcmd(node, "ip link add x type dummy") == "RTNETLINK answers: File exists\n"
    node = SimpleNamespace(rpopen=lambda *a, **k: _Popen(b""))
    assert _ClusterNode.rcmd(node, "true") == ""


def test_each_servers_ovs_batch_runs_whole_as_one_process():
    """Upstream typed each server's ovs-vsctl batch into a switch's shell, whose terminal cuts a
    line at 4095 bytes: with more than about six bridges on a server the rest got no controller."""
    from mininet_topos.launch.cluster import ClusterSwitch
    ran = []

    class Proc:
        returncode = 0

        def communicate(self):
            return b"uuid-of-a-controller\n", None

    def switch(name: str, server: str):
        cmd = f"-- --if-exists del-br {name} -- add-br {name} -- " + "x" * 600
        return SimpleNamespace(name=name, server=server, commands=[cmd], intfs={},
                               isOldOVS=lambda: False,
                               rpopen=lambda argv, s=server: ran.append((s, argv)) or Proc())

    switches = [switch(f"qs{i}", "localhost" if i <= 10 else "b") for i in range(1, 21)]
    assert ClusterSwitch.batchStartup(switches) == switches
    assert [s for s, _ in ran] == ["b", "localhost"]
    for server, (sh, c, cmds) in ran:
        assert (sh, c) == ("sh", "-c") and len(cmds) > 4096
        want = range(11, 21) if server == "b" else range(1, 11)
        assert all(f"add-br qs{i} " in cmds for i in want) and cmds.startswith("ovs-vsctl")
