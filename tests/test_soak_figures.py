"""The soak's per-window figures on records and samples made by hand."""

import pytest

from benchmarks.reliability.soak import WINDOW_S, drift, figures, warmup_figures


def test_drift_is_the_largest_move_from_the_first_window_either_way():
    assert drift([100.0, 110.0, 80.0]) == pytest.approx(0.2)
    assert drift([100.0, 100.0]) == 0.0


def test_windows_carry_the_machine_probe_and_its_drift_next_to_the_p95s():
    started = 1_000.0
    records, samples = [], []
    for w, (latency_s, probe_ms) in enumerate([(0.10, 10.0), (0.13, 13.0), (0.10, 10.0)]):
        lo = started + w * WINDOW_S
        records += [(lo + i, "retrieve", 200, latency_s) for i in range(40)]
        records.append((lo + 50, "ingest", 200, 9.0))  # writes are not in the reads' p95
        samples += [
            {
                "t": lo + i * 20,
                "machine_probe_ms": probe_ms,
                "bolt_connections": 1,
                "replicas": {"Vector#1": {"rss_mb": 100.0, "fds": 10, "cpu_s": 10.0 * w + i}},  # 1 CPU-s per sample
            }
            for i in range(3)
        ]
    out = figures(records, samples, started)
    assert [w["p95_ms"] for w in out["p95_windows_reads"]] == [100.0, 130.0, 100.0]
    assert [w["machine_probe_ms_p50"] for w in out["p95_windows_reads"]] == [10.0, 13.0, 10.0]
    assert out["p95_drift_vs_first_window"] == pytest.approx(0.3)
    assert out["machine_probe_drift_vs_first_window"] == pytest.approx(0.3)
    assert out["p95_machine_correlation"] == pytest.approx(1.0)
    # 2 CPU-seconds between a window's first and last sample (40 s apart), 40 requests started in between
    assert [w["app_cpu_ms_per_request"] for w in out["p95_windows_reads"]] == [50.0, 50.0, 50.0]


def test_minutes_show_the_reads_p95_minute_by_minute_from_the_start():
    started = 1_000.0
    records = [(started - 30 + i * 0.5, "retrieve", 200, 5.0) for i in range(40)]  # warm-up: not in the minutes
    for m, latency_s in enumerate([0.3, 0.1, 0.1]):
        records += [(started + 60 * m + i, "answer", 200, latency_s) for i in range(30)]
    records += [(started + 10, "ingest", 200, 9.0), (started + 11, "retrieve", 503, 0.01)]  # neither is a read's p95
    records += [(started + 60 * 3 + i, "retrieve", 200, 0.1) for i in range(5)]  # too few to give a p95
    out = figures([r for r in records if r[0] >= started], [], started)
    assert out["p95_minutes_reads"] == [300.0, 100.0, 100.0, None]
    warm = warmup_figures(records, started)
    assert warm == {"requests": 40, "failed": 0, "p95_ms_reads": 5000.0}
