"""Record benchmark results in docs/benchmarks.md, one section per benchmark.

Every ``qkdnet bench NAME`` run replaces its own section (between
``<!-- bench:NAME -->`` markers) with the table it measured, stamped with the
machine and the date. Numbers in that file are only ever written here.
"""
from __future__ import annotations

import datetime as _dt
import os
import platform
import re
from pathlib import Path

DOC = Path(__file__).resolve().parents[2] / "docs" / "benchmarks.md"   # the repository's docs/
HEADER = """# Benchmarks

Written by `qkdnet bench NAME`; do not edit by hand. Each section is replaced by the
latest run of its benchmark. These machines are shared and noisy: compare a result
with the baseline measured in the same run, not with another section's date.
"""


def machine() -> str:
    """One line naming the machine the numbers were measured on."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = ""
    try:
        kb = int(Path("/proc/meminfo").read_text().split()[1])
        mem = f", {kb / 2**20:.0f} GiB"
    except (OSError, ValueError, IndexError):
        pass
    return f"{cpu}, {os.cpu_count()} cores{mem}, Python {platform.python_version()}, {platform.system()} {platform.release()}"


def table(rows: list[dict], columns: list[str] | None = None) -> str:
    """A Markdown table of ``rows`` (dicts), columns in the given or first-seen order."""
    if not rows:
        return "(no rows)\n"
    cols = columns or list(dict.fromkeys(k for row in rows for k in row))

    def cell(v: object) -> str:
        if isinstance(v, float):
            return f"{v:.4g}"
        return str(v)

    out = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    out += ["| " + " | ".join(cell(row.get(c, "")) for c in cols) + " |" for row in rows]
    return "\n".join(out) + "\n"


def record(name: str, title: str, body: str, command: str, doc: Path | None = None) -> Path:
    """Replace the section of benchmark ``name`` in docs/benchmarks.md.

    ``body`` is Markdown (tables, target checks); ``command`` is the command line
    that produced it, shown so that anyone can rerun it.
    """
    doc = doc or DOC
    now = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    section = (f"<!-- bench:{name} -->\n## {title}\n\n"
               f"Measured {now} on {machine()}.  \nCommand: `{command}`\n\n"
               f"{body.rstrip()}\n<!-- /bench:{name} -->\n")
    text = doc.read_text() if doc.exists() else HEADER
    pattern = re.compile(rf"<!-- bench:{re.escape(name)} -->.*?<!-- /bench:{re.escape(name)} -->\n?", re.S)
    if pattern.search(text):
        text = pattern.sub(lambda _m: section, text)
    else:
        text = text.rstrip() + "\n\n" + section
    doc.parent.mkdir(parents=True, exist_ok=True)
    doc.write_text(text)
    return doc
