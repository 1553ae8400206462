"""The checks a demo makes, printed as they are made (``qkdnet demo``, single- and multi-domain)."""
from __future__ import annotations

from typing import Callable


class Check:
    """The list of checks the demo makes; ``ok`` only when all held."""

    def __init__(self, say: Callable[[str], None]) -> None:
        self.items: list[dict] = []
        self.say = say

    def __call__(self, name: str, ok: bool, detail: str = "") -> bool:
        self.items.append({"check": name, "ok": bool(ok), "detail": detail})
        self.say(f"  [{'ok' if ok else 'FAILED'}] {name}{': ' + detail if detail else ''}")
        return bool(ok)

    @property
    def ok(self) -> bool:
        return bool(self.items) and all(i["ok"] for i in self.items)


def closing_lines(result: dict) -> list[str]:
    """A demo summary's last lines: the checks that failed, the error, the times."""
    lines = [f"  failed: {c['check']}: {c['detail']}" for c in result.get("checks", []) if not c["ok"]]
    if result.get("error"):
        lines.append(f"  error: {result['error']}")
    times = [f"total {result['total_s']:.1f} s"] if "total_s" in result else []
    if result.get("bringup_s"):
        times.append(f"bring-up {result['bringup_s']:.1f} s")
    if times:
        lines.append("  time: " + ", ".join(times))
    return lines
