"""bench control's pure parts: what a row misses of the targets, and its plot."""
from __future__ import annotations

from pathlib import Path

from mininet_topos.bench.control import plot, verdicts

GOOD = {"nodes": 10000, "registered": 10000, "registered_s": 40.0, "report_backlog": 0.0,
        "path_p50_ms": 12.0, "path_p99_ms": 80.0, "rss_mib": 900.0, "reports_sent_per_s": 5000.0,
        "reports_done_per_s": 5000.0, "app_cpu_pct": 90.0}


def test_a_row_meeting_every_target_misses_nothing() -> None:
    assert verdicts(GOOD) == []


def test_each_target_missed_is_named() -> None:
    bad = dict(GOOD, registered=9000, registered_s=75.0, report_backlog=0.2, path_p50_ms=30.0,
               path_p99_ms=150.0, rss_mib=3000.0)
    assert verdicts(bad) == ["only 9000/10000 registered", "registered in 75.0 s > 60 s", "report backlog 20%",
                             "path_p50_ms 30.0 > 25", "path_p99_ms 150.0 > 100", "memory 3000.0 MiB > 2 GiB"]


def test_plot_writes_a_png(tmp_path: Path) -> None:
    out = plot([dict(GOOD, nodes=100), GOOD], tmp_path / "img" / "p.png")
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
