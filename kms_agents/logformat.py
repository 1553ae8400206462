"""The agent's log line format, logfmt: the same lines as QuSeC's processes write.

Every line starts ``ts=2026-12-01T14:22:22.123Z level=info logger=NAME`` (UTC, milliseconds);
a message made of ``key=value`` pairs (values bare, "double" or 'single' quoted as ``%r`` writes
them) keeps them as fields, any other message is ``msg="..."``; ``extra={...}`` adds fields; an
exception is one ``exc="..."`` field. logfmter quotes and escapes (newlines as ``\\n``), so a
record is always one line. QuSeC has the same formatter (``quseccontroller/logformat.py``: the
two packages import nothing of each other); tests/unit/test_logformat.py holds both to it.
"""
from __future__ import annotations

import ast
import logging
import re
import time

from logfmter import Logfmter

# a key is a plain name (a control character or other odd text makes the message prose)
_PAIR = re.compile(r"""([A-Za-z_][A-Za-z0-9_.:-]*)=("(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|[^\s"'=]*)(?:\s+|$)""")
_HEAD = ("ts", "level", "logger")
_WIDE_SPACE = re.compile(r"[^\S\x00-\x7f]")   # non-ASCII spaces and line breaks (U+0085, U+2028)


def message_fields(message: str) -> dict[str, str] | None:
    """The message's ``key=value`` pairs, or None when it is prose (or repeats a key or a head key)."""
    fields: dict[str, str] = {}
    text, pos = message.strip(), 0
    while pos < len(text):
        m = _PAIR.match(text, pos)
        if m is None or m.group(1) in fields or m.group(1) in _HEAD:
            return None
        key, value = m.groups()
        if value[:1] in ("'", '"'):
            try:
                value = ast.literal_eval(value)
            except (ValueError, SyntaxError):
                return None
        fields[key] = value
        pos = m.end()
    return fields or None


class LogfmtFormatter(Logfmter):
    """One record, one logfmt line (its format is fixed: any arguments are ignored)."""

    def __init__(self, *_args: object, **_kwargs: object) -> None:
        super().__init__()

    @classmethod
    def format_string(cls, value: str) -> str:
        """logfmter's quoting, and no bare non-ASCII space or line break (str.splitlines splits there)."""
        text = super().format_string(value)
        if not _WIDE_SPACE.search(text):
            return text
        if not text.startswith('"'):
            text = '"' + text.replace("\\", "\\\\") + '"'
        return _WIDE_SPACE.sub(lambda m: "\\u%04x" % ord(m.group()), text)

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + ".%03dZ" % record.msecs

    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage()
        fields: dict[str, object] = {"ts": self.formatTime(record), "level": record.levelname.lower(),
                                     "logger": record.name}
        fields.update(message_fields(message) or {"msg": message.rstrip("\n")})
        fields.update((k, v) for k, v in self.get_extra(record).items() if k not in fields)
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            fields["exc"] = record.exc_text
        if record.stack_info:
            fields["stack"] = self.formatStack(record.stack_info)
        return self.format_params(fields)


def configure(level: int | str = logging.INFO) -> None:
    """``logging.basicConfig`` on stderr in this format (nothing when logging is set up already)."""
    if logging.getLogger().handlers:
        return
    handler = logging.StreamHandler()
    handler.setFormatter(LogfmtFormatter())
    logging.basicConfig(level=level, handlers=[handler])
    logging.captureWarnings(True)

