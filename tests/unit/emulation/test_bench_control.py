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


def test_a_baseline_run_is_recorded_beside_this_one(tmp_path: Path, monkeypatch) -> None:
    """--baseline: the rows of a run of other code (its --json output) get their own table in the
    section and their own line in the plot; this run's rows stay the first table."""
    import argparse
    import json

    from mininet_topos.bench import control, doc
    before = dict(GOOD, path_p50_ms=5000.0)
    base = tmp_path / "before.json"
    base.write_text(json.dumps({"rows": [before]}))
    monkeypatch.setattr(doc, "DOC", tmp_path / "benchmarks.md")
    monkeypatch.setattr(control, "measure", lambda n, *a, **k: dict(GOOD, nodes=n))
    args = argparse.Namespace(nodes=[10000], seed=1, window=15.0, path_rate=20.0, workers=3,
                              register_timeout=60.0, json=False, no_record=False, baseline=base,
                              baseline_label="commit abc")
    assert control.run(args) == 0
    text = (tmp_path / "benchmarks.md").read_text()
    mine, theirs = text.index("| 10000 |"), text.index("Before, commit abc")
    assert mine < theirs and "| 5000 |" in text[theirs:]
    assert "--baseline before.json --baseline-label 'commit abc'" in text
    assert (tmp_path / "img" / "bench-control.png").read_bytes()[:4] == b"\x89PNG"
