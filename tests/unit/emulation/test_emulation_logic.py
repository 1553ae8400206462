"""Pure parts of the emulation: demo pair choice, checks, flow and CLI formatting, key paths."""
from __future__ import annotations

from mininet_topos import topology
from mininet_topos.cli.demo import Check, far_pairs, short_flow
from mininet_topos.launch.keypair import KeySeen, key_path
from mininet_topos.cli.mncli import format_key_result, format_links, format_paths
from mininet_topos.model import Node, QkdLink, Sae, Topology


def test_far_pairs_are_at_least_three_hops_apart_farthest_first():
    metro = topology.load("metro8")
    assert far_pairs(metro) == [("sae-a", "sae-b", 4)]
    nodes = {n: Node(n) for n in "ABCDE"}
    links = [QkdLink(f"{a}{b}", a, b, 1e6) for a, b in ("AB", "BC", "CD", "DE")]
    saes = {s: Sae(s, n) for s, n in (("s-a", "A"), ("s-b", "B"), ("s-d", "D"), ("s-e", "E"))}
    line = Topology("line", nodes, links, saes)
    # s-a..s-e is 4 hops; then s-b..? (s-b..s-e = 3) but s-e is taken; each SAE used once.
    assert far_pairs(line) == [("s-a", "s-e", 4)]
    assert far_pairs(line, min_hops=2, limit=3) == [("s-a", "s-e", 4), ("s-b", "s-d", 2)]
    assert far_pairs(line, min_hops=5) == []


def test_check_is_ok_only_when_every_check_held():
    said: list[str] = []
    check = Check(said.append)
    assert not check.ok                       # no checks made is not success
    assert check("keys match", True, "3/3")
    assert check.ok
    assert not check("reroute", False, "timeout")
    assert not check.ok
    assert said == ["  [ok] keys match: 3/3", "  [FAILED] reroute: timeout"]
    assert [c["ok"] for c in check.items] == [True, False]


def test_short_flow_names_nodes_and_ports():
    line = ("cookie=0x5153020000000001, duration=0.4s, table=0, n_packets=1, n_bytes=74, "
            "idle_timeout=60, hard_timeout=60, send_flow_rem priority=30000,tcp,nw_src=10.0.0.1,"
            "nw_dst=10.0.0.2,tp_dst=7000 actions=output:3")
    names = {"10.0.0.1": "A", "10.0.0.2": "B"}
    assert short_flow(line, names) == "A->B:7000 out 3"
    back = line.replace("nw_src=10.0.0.1,nw_dst=10.0.0.2,tp_dst=7000", "nw_src=10.0.0.2,nw_dst=10.0.0.1,tp_src=7000")
    assert short_flow(back, names) == "B->A from :7000 out 3"
    assert short_flow("priority=0 actions=CONTROLLER:65535") == "priority=0 actions=CONTROLLER:65535"


def test_key_path_from_the_qusec_extension():
    def seen(ext):
        return [KeySeen("k", "00", 256, ext)]
    assert key_path(seen({"qusec_paths": [["A", "B", "C"]]})) == ["A", "B", "C"]
    assert key_path(seen({"qusec_path": "A,B,C"})) == ["A", "B", "C"]
    assert key_path(seen({"qusec_path": ["A", "C"], "qusec_paths": [["A", "B", "C"]]})) == ["A", "C"]
    assert key_path(seen({})) == []
    assert key_path([]) == []


def test_cli_formatting_never_shows_key_material():
    r = {"master": "sae-a", "slave": "sae-b", "keys_requested": 2, "keys_matched": 2,
         "key_IDs": ["id-1", "id-2"], "path": ["A", "B", "H"], "seconds": 0.5,
         "extension": {"qusec_hops": 1}}
    text = format_key_result(r)
    assert text.splitlines()[0] == "sae-a -> sae-b: 2/2 keys match; path A -> B -> H (0.50 s)"
    assert "id-2" in text and "sha256" not in text
    assert "FAILED" in format_key_result({"master": "a", "slave": "b", "error": {"status": 503}})
    status = {"core": {"paths": {"qp1": {"nodes": ["A", "B"], "rule": "default", "share": "1/1", "flows": 4}},
                       "links": {"A-B": {"a": "A", "b": "B", "skr_bps": 1e6, "stored_bits": {"A": 10, "B": 20},
                                         "status": "active"}}}}
    assert format_paths(status) == "qp1: A -> B  rule=default share=1/1 flows=4"
    assert "A=10, B=20" in format_links(status)
    assert format_paths({}) == "no active relay paths"
    assert format_links({}) == "no QKD links reported yet"


# -- `qkdnet up` input checks: a broken topology or policy stops everything before it starts --------
def _up(argv: list[str], capsys) -> tuple[int, str]:
    from mininet_topos.cli import main
    code = main(["up", *argv])
    return code, capsys.readouterr().err


def test_up_refuses_a_broken_topology_before_anything_starts(tmp_path, capsys):
    bad = tmp_path / "bad.toml"
    bad.write_text('[network]\nname = "bad"\n[[nodes]]\nid = "A"\n[[links]]\na = "A"\nb = "Z"\nlength_km = 5\n')
    for mode in ([], ["--local"], ["--no-cli"]):
        state = tmp_path / f"state{len(mode)}"
        code, err = _up([str(bad), "--state-dir", str(state), *mode], capsys)
        assert code == 2
        assert str(bad) in err and "Z" in err          # the checker's message names file and entry
        assert not state.exists()                        # nothing was created, nothing started


def test_up_refuses_a_broken_policy_with_the_rule_and_field(tmp_path, capsys):
    pol = tmp_path / "policy.toml"
    pol.write_text('[default]\naction = "allow"\n\n[[rules]]\nname = "r1"\nmatch = { src_sae = "a*" }\n'
                   'pathz = 2\n')
    for mode in ([], ["--local"]):
        state = tmp_path / f"state{len(mode)}"
        code, err = _up(["linear6", "--policy", str(pol), "--state-dir", str(state), *mode], capsys)
        assert code == 2
        assert f"{pol}: rule 1 (r1): pathz: unknown field" in err
        assert not state.exists()
    code, err = _up(["linear6", "--policy", str(tmp_path / "missing.toml"),
                     "--state-dir", str(tmp_path / "s"), "--local"], capsys)
    assert code == 2 and "missing.toml: cannot read" in err


def test_up_help_documents_no_cli_and_policy(capsys):
    import pytest
    from mininet_topos.cli import main
    with pytest.raises(SystemExit):
        main(["up", "--help"])
    out = capsys.readouterr().out
    assert "--no-cli" in out and "SIGTERM" in out
    assert "--policy FILE" in out and "code 2" in out


def test_demo_summary_names_the_outcome_keys_reroute_and_time():
    from mininet_topos.cli.demo import summary
    ok = {"ok": True, "checks": [{"check": "a", "ok": True, "detail": ""}] * 6, "flows_installed": 42,
          "pairs": [{"src_sae": "sae-a", "dst_sae": "sae-b", "keys_matched": 3, "keys_requested": 3}],
          "reroute": {"reroute_s": 0.61, "path_after": ["A", "E", "F"]}, "bringup_s": 5.3, "total_s": 21.04}
    text = summary(ok)
    assert text.splitlines()[0] == "DEMO OK: 6/6 checks held"
    assert "sae-a->sae-b 3/3" in text and "(base + relay, all switches): 42" in text
    assert "0.61 s after the failure, path A -> E -> F" in text
    assert "total 21.0 s, bring-up 5.3 s" in text
    bad = {"ok": False, "checks": [{"check": "keys", "ok": False, "detail": "503 no key"}],
           "error": "EmulationError: boom", "total_s": 3.0}
    text = summary(bad)
    assert text.startswith("DEMO FAILED: 0/1 checks held")
    assert "failed: keys: 503 no key" in text and "error: EmulationError: boom" in text


def test_demo_refuses_a_broken_topology_with_exit_code_2(tmp_path, capsys):
    from mininet_topos.cli import main
    code = main(["demo", str(tmp_path / "nope.toml"), "--state-dir", str(tmp_path / "s")])
    assert code == 2 and "nope.toml" in capsys.readouterr().err
    assert not (tmp_path / "s").exists()


def test_the_demo_says_which_failure_it_causes():
    from mininet_topos.cli.demo import FAILURES, STEPS
    assert STEPS[2].format(failure=FAILURES["link_down"]) == "[3/5] a link on the path fails: rerouting"
    assert STEPS[2].format(failure=FAILURES["node_down"]) == "[3/5] a relay node's agent stops: rerouting"
