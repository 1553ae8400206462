"""Policy typos get a "did you mean" (fields, match fields, values), also through qkdnet check."""
from __future__ import annotations

import pytest

from mininet_topos.cli.check import check
from quseccontroller.policy import PolicyError, parse


def _problems(data: dict) -> list[str]:
    with pytest.raises(PolicyError) as exc:
        parse(data, "p.toml")
    return exc.value.problems


@pytest.mark.parametrize("data,problem", [
    ({"default": {"metirc": "hops"}}, "p.toml: default: metirc: unknown field (did you mean 'metric'?)"),
    ({"default": {}, "rules": [{"name": "r", "max_hop": 2}]},
     "p.toml: rule 1 (r): max_hop: unknown field (did you mean 'max_hops'?)"),
    ({"default": {}, "rules": [{"name": "r", "mach": {}}]},
     "p.toml: rule 1 (r): mach: unknown field (did you mean 'match'?)"),
    ({"default": {}, "rule": []}, "p.toml: top level: rule: unknown field (did you mean 'rules'?)"),
    ({"default": {}, "rules": [{"name": "r", "match": {"src_node_": "A"}}]},
     "p.toml: rule 1 (r): match.src_node_: unknown field (did you mean 'src_node'?) (one of "),
    ({"default": {"metric": "hop"}},
     "p.toml: default: metric: must be one of key_aware, hops, latency, not 'hop' (did you mean 'hops'?)"),
    ({"default": {"action": "alow"}},
     "p.toml: default: action: must be one of allow, deny, not 'alow' (did you mean 'allow'?)"),
    ({"default": {"security_level": "hybird"}},
     "p.toml: default: security_level: must be one of qkd, hybrid, pqc, not 'hybird' (did you mean 'hybrid'?)"),
])
def test_typo_gets_the_closest_name(data, problem):
    problems = _problems(data)
    assert any(p.startswith(problem) for p in problems), problems


@pytest.mark.parametrize("data", [
    {"default": {"colour": "red"}},          # nothing close
    {"default": {"metric": "fastest"}},
    {"default": {"metric": 3}},              # not a string: no guess
])
def test_no_suggestion_when_nothing_is_close(data):
    problems = _problems(data)
    assert problems and not any("did you mean" in p for p in problems), problems


def test_qkdnet_check_shows_the_suggestion(tmp_path, capsys):
    path = tmp_path / "policy.toml"
    path.write_text('[default]\naction = "allow"\n\n[[rules]]\nname = "video"\nmetirc = "hops"\n'
                    'security_level = "hybird"\nallow_pqc_fallback = true\n')
    assert check([str(path)]) == 1
    out = capsys.readouterr().out
    assert f"{path}: rule 1 (video): metirc: unknown field (did you mean 'metric'?)" in out
    assert "not 'hybird' (did you mean 'hybrid'?)" in out
