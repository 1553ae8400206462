"""A strict logfmt reader for the tests, written apart from the formatters it checks.

A line is ``key=value`` pairs separated by one space; a value is bare (no space, ``=``, ``"`` or
control character) or double-quoted with JSON's escapes (``\\"``, ``\\\\``, ``\\n``, ``\\uXXXX``);
a key appears once. Anything else raises ValueError naming the place.
"""
from __future__ import annotations

import json
import re

_PAIR = re.compile(r'([^\s="\x00-\x1f\x7f]+)=("(?:[^"\\\x00-\x1f\x7f]|\\.)*"|[^\s="\x00-\x1f\x7f]*)(?: (?=\S)|$)')
TS = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z")
LEVELS = ("debug", "info", "warning", "error", "critical")


def parse_line(line: str) -> dict[str, str]:
    """The fields of one logfmt line, in order."""
    fields: dict[str, str] = {}
    pos = 0
    while pos < len(line):
        m = _PAIR.match(line, pos)
        if m is None:
            raise ValueError(f"not logfmt at column {pos}: {line!r}")
        key, value = m.groups()
        if key in fields:
            raise ValueError(f"key {key!r} twice: {line!r}")
        fields[key] = json.loads(value) if value.startswith('"') else value
        pos = m.end()
    if not fields:
        raise ValueError(f"empty line: {line!r}")
    return fields


def parse_record(line: str) -> dict[str, str]:
    """One line of a QuSeC log: logfmt that starts with ts (UTC, ms), level and logger."""
    fields = parse_line(line)
    head = list(fields)[:3]
    if head != ["ts", "level", "logger"]:
        raise ValueError(f"line does not start with ts, level, logger: {line!r}")
    if not TS.fullmatch(fields["ts"]) or fields["level"] not in LEVELS or not fields["logger"]:
        raise ValueError(f"bad ts, level or logger: {line!r}")
    return fields
