"""Policy tables: first-match semantics, inheritance from [default], and every validation error."""
from __future__ import annotations

from pathlib import Path

import pytest

from quseccontroller import policy
from quseccontroller.policy import PolicyError, parse

SHIPPED = Path(policy.__file__).parent / "policies"


def test_shipped_policies_load():
    default = policy.load(SHIPPED / "default.toml")
    assert default.rules == () and default.default == policy.Decision()
    example = policy.load(SHIPPED / "example.toml")
    assert [r.name for r in example.rules] == ["payments-multipath", "no-guest-relays", "video"]


def test_built_in_default_allows_one_key_aware_qkd_path():
    m = policy.default_table().match(src_node="A", dst_node="B")
    assert m.rule == "default"
    assert (m.decision.action, m.decision.paths, m.decision.metric, m.decision.security_level) == \
        ("allow", 1, "key_aware", "qkd")


def test_first_match_wins_and_rules_inherit_default():
    t = parse({
        "default": {"min_trust": 2, "max_hops": 6},
        "rules": [
            {"name": "deny-lab", "match": {"src_node": "lab-*"}, "action": "deny"},
            {"name": "pay", "match": {"src_sae": "bank-*", "application": "pay*"}, "paths": 2},
            {"name": "catch-lab-dst", "match": {"dst_node": "lab-?"}, "metric": "hops"},
        ]}, "p.toml")
    assert t.match(src_node="lab-1", src_sae="bank-1", application="payments").rule == "deny-lab"
    m = t.match(src_node="A", dst_node="lab-1", src_sae="bank-9", application="payments")
    assert m.rule == "pay" and m.index == 2
    assert (m.decision.paths, m.decision.min_trust, m.decision.max_hops) == (2, 2, 6)
    assert t.match(src_node="A", dst_node="lab-2").rule == "catch-lab-dst"
    assert t.match(src_node="A", dst_node="lab-22").rule == "default"
    # A rule's glob needs a value: no SAE given means "" which "bank-*" does not match.
    assert t.match(src_node="A", application="payments").rule == "default"
    # Globs are case sensitive.
    assert t.match(src_node="LAB-1").rule == "default"


@pytest.mark.parametrize("data,problem", [
    ({}, "p.toml: default: missing: a policy file needs an explicit [default] table"),
    ({"default": {}, "rule": []}, "p.toml: top level: rule: unknown field"),
    ({"default": {"colour": "red"}}, "p.toml: default: colour: unknown field"),
    ({"default": {"action": "maybe"}}, "p.toml: default: action: must be one of allow, deny"),
    ({"default": {"metric": "fastest"}}, "p.toml: default: metric: must be one of key_aware, hops, latency"),
    ({"default": {"security_level": "rot13"}}, "p.toml: default: security_level: must be one of qkd, hybrid, pqc"),
    ({"default": {"security_level": "pqc"}}, "p.toml: default: security_level: 'pqc' needs allow_pqc_fallback = true"),
    ({"default": {"allow_pqc_fallback": "yes"}}, "p.toml: default: allow_pqc_fallback: must be true or false"),
    ({"default": {"min_trust": 9}}, "p.toml: default: min_trust: must be between 0 and 5, not 9"),
    ({"default": {"min_trust": "high"}}, "p.toml: default: min_trust: must be an integer"),
    ({"default": {"max_hops": -1}}, "p.toml: default: max_hops: must be >= 0"),
    ({"default": {"paths": 0}}, "p.toml: default: paths: must be between 1 and 8, not 0"),
    ({"default": {"paths": True}}, "p.toml: default: paths: must be an integer"),
    ({"default": {"exclude_nodes": "B"}}, "p.toml: default: exclude_nodes: must be a list of node ids"),
    ({"default": {"rate_limit_bps": -5}}, "p.toml: default: rate_limit_bps: must be >= 0"),
    ({"default": {"rate_burst_s": 0}}, "p.toml: default: rate_burst_s: must be > 0"),
    ({"default": {"rate_limit_bps": "fast"}}, "p.toml: default: rate_limit_bps: must be a number"),
    ({"default": [1]}, "p.toml: default: must be a table"),
    ({"default": {}, "rules": {"name": "x"}}, "p.toml: rules: must be an array of tables"),
    ({"default": {}, "rules": [{"match": {}}]}, "p.toml: rule 1: name: missing"),
    ({"default": {}, "rules": [{"name": "a"}, {"name": "a"}]}, "p.toml: rule 2 (a): name: 'a' already used by rule 1"),
    ({"default": {}, "rules": [{"name": "default"}]}, "p.toml: rule 1 (default): name: 'default' already used"),
    ({"default": {}, "rules": [{"name": "r", "match": {"src_ip": "1.2.3.4"}}]},
     "p.toml: rule 1 (r): match.src_ip: unknown field"),
    ({"default": {}, "rules": [{"name": "r", "match": {"src_sae": 5}}]},
     "p.toml: rule 1 (r): match.src_sae: must be a non-empty glob string"),
    ({"default": {}, "rules": [{"name": "r", "match": "all"}]}, "p.toml: rule 1 (r): match: must be a table"),
    ({"default": {}, "rules": [{"name": "ok"}, {"name": "r", "paths": 99}]},
     "p.toml: rule 2 (r): paths: must be between 1 and 8, not 99"),
    ({"default": {}, "rules": [{"name": "r", "priority": 1}]}, "p.toml: rule 1 (r): priority: unknown field"),
    ({"default": {}, "rules": ["x"]}, "p.toml: rule 1: must be a table"),
])
def test_every_validation_error_names_file_rule_and_field(data, problem):
    with pytest.raises(PolicyError) as exc:
        parse(data, "p.toml")
    assert any(p.startswith(problem) for p in exc.value.problems), exc.value.problems


def test_all_problems_reported_at_once():
    with pytest.raises(PolicyError) as exc:
        parse({"default": {"paths": 0}, "rules": [{"name": "a", "metric": "x", "colour": 1}]}, "p.toml")
    assert len(exc.value.problems) == 3
    assert str(exc.value).count("p.toml") == 3


def test_load_reports_syntax_and_missing_file(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("[default\naction = 'allow'\n")
    with pytest.raises(PolicyError) as exc:
        policy.load(bad)
    assert exc.value.problems[0].startswith(f"{bad}: TOML syntax:")
    with pytest.raises(PolicyError) as exc:
        policy.load(tmp_path / "nope.toml")
    assert exc.value.problems[0].startswith(f"{tmp_path / 'nope.toml'}: cannot read")
    good = tmp_path / "good.toml"
    good.write_text('[default]\n\n[[rules]]\nname = "r"\nmatch = { application = "x" }\naction = "deny"\n')
    t = policy.load(good)
    assert t.source == str(good) and t.match(application="x").decision.action == "deny"
