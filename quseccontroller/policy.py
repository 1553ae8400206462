"""Policy tables: ordered TOML rules, first match wins, explicit default; validation with clear errors."""
from __future__ import annotations

import fnmatch
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from quseccontroller import tomlfile
from quseccontroller.tomlfile import FileProblems

METRICS = ("key_aware", "hops", "latency")
SECURITY_LEVELS = ("qkd", "hybrid", "pqc")
ACTIONS = ("allow", "deny")
MATCH_FIELDS = ("src_sae", "dst_sae", "src_node", "dst_node", "application")
MAX_PATHS = 8


class PolicyError(FileProblems):
    """A policy file that cannot be used; ``problems`` lists "FILE: rule N (name): field: problem"."""


@dataclass(frozen=True)
class Decision:
    """What a rule (or the default) decides; rules inherit unset fields from [default]."""
    action: str = "allow"
    min_trust: int = 0
    exclude_nodes: tuple[str, ...] = ()
    max_hops: int = 0                 # 0: no limit (hops = QKD links on the path)
    paths: int = 1                    # k node-disjoint paths (multipath secret sharing)
    metric: str = "key_aware"
    security_level: str = "qkd"
    allow_pqc_fallback: bool = False
    rate_limit_bps: float = 0.0       # per (src SAE, dst SAE) pair; 0: no limit
    rate_burst_s: float = 10.0        # bucket depth of the rate limit, in seconds of rate


@dataclass(frozen=True)
class Rule:
    name: str
    index: int                        # 1-based position in the file
    match: dict[str, str]
    decision: Decision

    def matches(self, ctx: dict[str, str]) -> bool:
        return all(fnmatch.fnmatchcase(ctx.get(k, "") or "", pat) for k, pat in self.match.items())


@dataclass(frozen=True)
class Match:
    """Result of PolicyTable.match: the rule that decided (or "default") and its decision."""
    rule: str
    decision: Decision
    index: int = 0


@dataclass(frozen=True)
class PolicyTable:
    rules: tuple[Rule, ...] = ()
    default: Decision = field(default_factory=Decision)
    source: str = "<built-in default>"

    def match(self, *, src_node: str = "", dst_node: str = "", src_sae: str = "",
              dst_sae: str = "", application: str = "") -> Match:
        ctx = dict(src_node=src_node, dst_node=dst_node, src_sae=src_sae, dst_sae=dst_sae,
                   application=application)
        for rule in self.rules:
            if rule.matches(ctx):
                return Match(rule.name, rule.decision, rule.index)
        return Match("default", self.default, 0)


def default_table() -> PolicyTable:
    """Allow everything, one key-aware path, security level qkd."""
    return PolicyTable()


_DECISION_TYPES = {f.name: f.type for f in fields(Decision)}
_CHOICES = {"action": ACTIONS, "metric": METRICS, "security_level": SECURITY_LEVELS}


def _did_you_mean(word: object, known: tuple[str, ...] | list[str]) -> str:
    """The hint " (did you mean 'x'?)" naming the closest known name, as the topology checker says it."""
    close = tomlfile.closest(word, known)
    return f" (did you mean {close!r}?)" if close else ""


def _unknown_field(key: str, known: tuple[str, ...] | list[str]) -> str:
    return f"{key}: unknown field{_did_you_mean(key, known)}"


def _check_decision(raw: dict, base: Decision, where: str, problems: list[str],
                    extra_fields: tuple[str, ...] = ()) -> Decision:
    values: dict[str, Any] = {}
    for key, val in raw.items():
        if key not in _DECISION_TYPES:
            problems.append(f"{where}: {_unknown_field(key, (*_DECISION_TYPES, *extra_fields))}")
            continue
        err = None
        if key in _CHOICES:
            if val not in _CHOICES[key]:
                err = (f"must be one of {', '.join(_CHOICES[key])}, not {val!r}"
                       f"{_did_you_mean(val, _CHOICES[key])}")
        elif key == "allow_pqc_fallback":
            if not isinstance(val, bool):
                err = f"must be true or false, not {val!r}"
        elif key == "exclude_nodes":
            if not isinstance(val, list) or not all(isinstance(x, str) and x for x in val):
                err = "must be a list of node ids or globs"
            else:
                val = tuple(val)
        elif key in ("min_trust", "max_hops", "paths"):
            if isinstance(val, bool) or not isinstance(val, int):
                err = f"must be an integer, not {val!r}"
            elif key == "min_trust" and not 0 <= val <= 5:
                err = f"must be between 0 and 5, not {val}"
            elif key == "max_hops" and val < 0:
                err = f"must be >= 0 (0 = no limit), not {val}"
            elif key == "paths" and not 1 <= val <= MAX_PATHS:
                err = f"must be between 1 and {MAX_PATHS}, not {val}"
        elif key in ("rate_limit_bps", "rate_burst_s"):
            if isinstance(val, bool) or not isinstance(val, (int, float)):
                err = f"must be a number, not {val!r}"
            elif val < 0 or (key == "rate_burst_s" and val == 0):
                err = f"must be {'> 0' if key == 'rate_burst_s' else '>= 0 (0 = no limit)'}, not {val}"
            else:
                val = float(val)
        if err:
            problems.append(f"{where}: {key}: {err}")
        else:
            values[key] = val
    dec = replace(base, **values)
    if dec.security_level == "pqc" and not dec.allow_pqc_fallback and "security_level" in values:
        problems.append(f"{where}: security_level: 'pqc' needs allow_pqc_fallback = true")
    return dec


def parse(data: dict, source: str = "<policy>") -> PolicyTable:
    """Build a PolicyTable from parsed TOML, or raise PolicyError listing every problem."""
    problems: list[str] = []
    for key in data:
        if key not in ("default", "rules"):
            problems.append(f"{source}: top level: {_unknown_field(key, ('default', 'rules'))}"
                            " (expected [default] and [[rules]])")
    raw_default = data.get("default")
    if raw_default is None:
        problems.append(f"{source}: default: missing: a policy file needs an explicit [default] table")
        raw_default = {}
    if not isinstance(raw_default, dict):
        problems.append(f"{source}: default: must be a table")
        raw_default = {}
    raw_default = dict(raw_default)
    raw_default.pop("name", None)
    default = _check_decision(raw_default, Decision(), f"{source}: default", problems)
    raw_rules = data.get("rules", [])
    if not isinstance(raw_rules, list):
        problems.append(f"{source}: rules: must be an array of tables ([[rules]])")
        raw_rules = []
    rules: list[Rule] = []
    seen: dict[str, int] = {}
    for i, raw in enumerate(raw_rules, start=1):
        if not isinstance(raw, dict):
            problems.append(f"{source}: rule {i}: must be a table")
            continue
        name = raw.get("name")
        label = f"{source}: rule {i} ({name})" if isinstance(name, str) and name else f"{source}: rule {i}"
        if not isinstance(name, str) or not name:
            problems.append(f"{label}: name: missing (every rule needs a name)")
            name = f"rule{i}"
        elif name in seen or name == "default":
            problems.append(f"{label}: name: {name!r} already used"
                            + (f" by rule {seen[name]}" if name in seen else ""))
        seen.setdefault(name, i)
        match = raw.get("match", {})
        checked_match: dict[str, str] = {}
        if not isinstance(match, dict):
            problems.append(f"{label}: match: must be a table of glob patterns")
        else:
            for k, v in match.items():
                if k not in MATCH_FIELDS:
                    problems.append(f"{label}: match.{_unknown_field(k, MATCH_FIELDS)}"
                                    f" (one of {', '.join(MATCH_FIELDS)})")
                elif not isinstance(v, str) or not v:
                    problems.append(f"{label}: match.{k}: must be a non-empty glob string")
                else:
                    checked_match[k] = v
        body = {k: v for k, v in raw.items() if k not in ("name", "match")}
        dec = _check_decision(body, default, label, problems, extra_fields=("name", "match"))
        rules.append(Rule(name, i, checked_match, dec))
    if problems:
        raise PolicyError(problems)
    return PolicyTable(tuple(rules), default, source)


def load(path: str | Path) -> PolicyTable:
    """Read and check a policy TOML file."""
    return parse(tomlfile.read(path, PolicyError), str(path))
