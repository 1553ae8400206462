"""The one log line format (logfmt) of QuSeC's and the agent's formatters: prose, key=value
messages, quoting, exceptions, timestamps; both packages' formatters write the same lines."""
from __future__ import annotations

import logging
import logging.handlers
import sys

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kms_agents import logformat as agent_logformat
from quseccontroller import logformat as qusec_logformat
from tests.helpers.logfmt import parse_line, parse_record

MODULES = [qusec_logformat, agent_logformat]


def record(msg: str, *args, level: int = logging.INFO, name: str = "kms_agents.agent",
           exc_info=None, extra: dict | None = None, created: float | None = None) -> logging.LogRecord:
    rec = logging.LogRecord(name, level, __file__, 1, msg, args, exc_info)
    for k, v in (extra or {}).items():
        setattr(rec, k, v)
    if created is not None:
        rec.created, rec.msecs = created, (created - int(created)) * 1000
    return rec


@pytest.fixture(params=MODULES, ids=["quseccontroller", "kms_agents"])
def fmt(request) -> logging.Formatter:
    return request.param.LogfmtFormatter()


def test_prose_becomes_msg_after_ts_level_logger(fmt) -> None:
    line = fmt.format(record("node %s serving", "A", created=1796134942.123456))
    assert line == ('ts=2026-12-01T14:22:22.123Z level=info logger=kms_agents.agent '
                    'msg="node A serving"')


def test_timestamp_is_utc_with_milliseconds(fmt) -> None:
    assert fmt.format(record("x", created=0.007)).startswith("ts=1970-01-01T00:00:00.007Z ")
    assert fmt.format(record("x", created=59.9999)).startswith("ts=1970-01-01T00:00:59.999Z ")


@pytest.mark.parametrize("level,name", [(logging.DEBUG, "debug"), (logging.WARNING, "warning"),
                                        (logging.ERROR, "error"), (logging.CRITICAL, "critical")])
def test_level_is_lower_case(fmt, level, name) -> None:
    assert parse_record(fmt.format(record("x", level=level)))["level"] == name


def test_key_value_message_keeps_its_fields(fmt) -> None:
    fields = parse_record(fmt.format(record("event=stream_closed node=%s gone_in_s=%.1f", "F", 5.0)))
    assert list(fields)[3:] == ["event", "node", "gone_in_s"] and "msg" not in fields
    assert (fields["event"], fields["node"], fields["gone_in_s"]) == ("stream_closed", "F", "5.0")


def test_refusal_line_with_a_repr_message_keeps_its_fields(fmt) -> None:
    # kms_agents.metrics.refused: "event=refused server=%s reason=%s%s msg=%r"
    message = 'caller\'s SAE "sae-x" is not\nof this node'
    line = fmt.format(record("event=refused server=%s reason=%s%s msg=%r", "etsi014", "role",
                             " caller=sae:sae-x path=/api", message, level=logging.WARNING))
    fields = parse_record(line)
    assert fields["event"] == "refused" and fields["server"] == "etsi014" and fields["reason"] == "role"
    assert fields["caller"] == "sae:sae-x" and fields["path"] == "/api"
    assert fields["msg"] == message and "\n" not in line


@pytest.mark.parametrize("message", [
    "event=no_inventory: registrations are taken as they come",     # a colon ends the pairs
    "level=debug node=A",                                           # would hide the record's level
    "node=A node=B",                                                # a key twice
    "a=b c",                                                        # a word that is no pair
    "k='unterminated",
    "k=\"raw\nnewline\"",
])
def test_anything_else_is_prose(fmt, message) -> None:
    fields = parse_record(fmt.format(record(message)))
    assert fields["msg"] == message and list(fields) == ["ts", "level", "logger", "msg"]


@pytest.mark.parametrize("message", [
    'say "hi"', "back\\slash and space", "tab\there", "cr\rlf\n2nd line", "bell\x07", "del\x7f",
    "unicode: Schlüssel ✓", "=", "a=", "", " ", '"', "\\", "key=\"a b\" plain",
])
def test_quotes_escapes_and_control_characters_round_trip(fmt, message) -> None:
    line = fmt.format(record(message))
    assert "\n" not in line and "\r" not in line
    fields = parse_record(line)
    assert fields.get("msg", message) == message.rstrip("\n")


def test_exception_is_one_exc_field(fmt) -> None:
    try:
        raise ValueError('bad "value"\nsecond line')
    except ValueError:
        rec = record("expiry sweep failed", level=logging.ERROR, exc_info=sys.exc_info())
    line = fmt.format(rec)
    assert "\n" not in line
    fields = parse_record(line)
    assert fields["msg"] == "expiry sweep failed"
    assert fields["exc"].startswith("Traceback (most recent call last):\n")
    assert fields["exc"].endswith('ValueError: bad "value"\nsecond line')


def test_extra_adds_fields(fmt) -> None:
    fields = parse_record(fmt.format(record("node %s serving", "A", extra={"node": "A", "port": 8443})))
    assert (fields["msg"], fields["node"], fields["port"]) == ("node A serving", "A", "8443")


def test_extra_never_replaces_the_head(fmt) -> None:
    fields = parse_record(fmt.format(record("x", extra={"ts": "then", "level": "fake", "logger": "me"})))
    assert fields["level"] == "info" and fields["logger"] == "kms_agents.agent" and fields["ts"] != "then"


@given(st.text(max_size=200))
def test_any_message_is_one_parsable_line(message) -> None:
    for module in MODULES:
        line = module.LogfmtFormatter().format(record(message))
        assert "\n" not in line
        fields = parse_record(line)
        if "msg" in fields and len(fields) == 4:
            assert fields["msg"] == message.rstrip("\n")


@pytest.mark.parametrize("message,args", [
    ("node %s serving", ("A",)), ("event=refused server=%s msg=%r", ("etsi014", "it's")),
    ("x=1 y='two words'", ()), ("tab\t\"q\"", ()),
])
def test_both_packages_write_the_same_line(message, args) -> None:
    lines = {m.LogfmtFormatter().format(record(message, *args, created=1.5)) for m in MODULES}
    assert len(lines) == 1, lines


def test_parser_refuses_what_is_not_logfmt() -> None:
    for bad in ['msg="open', "msg=a b", 'k="x" k=y', "ts=1 level=info", "novalue", 'k="\\q"']:
        with pytest.raises(ValueError):
            parse_record(bad) if bad.startswith("ts") else parse_line(bad)


def test_adopt_osken_handlers_formats_os_kens_handlers_only(monkeypatch) -> None:
    root = logging.getLogger()
    osken = logging.StreamHandler(sys.stderr)            # what os-ken's init_log adds
    other = type("RunnerHandler", (logging.StreamHandler,), {})()
    monkeypatch.setattr(root, "handlers", [osken, other])
    monkeypatch.setattr(logging, "captureWarnings", lambda capture: None)
    qusec_logformat.adopt_osken_handlers()
    assert isinstance(osken.formatter, qusec_logformat.LogfmtFormatter)
    assert other.formatter is None


def test_osken_log_config_names_the_formatter() -> None:
    import configparser
    cp = configparser.ConfigParser()
    cp.read_string(qusec_logformat.OSKEN_LOG_CONFIG)
    cls = cp["formatter_logfmt"]["class"]
    module, _, name = cls.rpartition(".")
    assert getattr(sys.modules[module], name) is qusec_logformat.LogfmtFormatter
    # logging.config.fileConfig makes it as Formatter(fmt, datefmt, style)
    assert isinstance(qusec_logformat.LogfmtFormatter(None, None, "%"), logging.Formatter)


@pytest.mark.parametrize("message", ["\x1b=", "a\x00b=1", "\u00e9=x"])
def test_a_message_whose_keys_are_not_plain_names_is_prose(message) -> None:
    from quseccontroller.logformat import message_fields
    assert message_fields(message) is None
