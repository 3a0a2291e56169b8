"""What the web page's Stages view shows: each stage's request rate and latency percentiles over the last minutes,
and the replicas of each deployment.

The ingress already measures every stage per request (`timings`); `RollingStageStats` keeps those measurements
for a short window in the ingress replica itself, so the page needs no Prometheus. Each ingress replica keeps its
own window: with several ingress replicas, `GET /v1/stats` describes the requests of the replica that answers it.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from deployments.models import RetrieveResponse
from deployments.observability import StageMetrics

STAGES = ("embed", "vector", "graph", "rerank", "chat", "total")
WINDOW_S = 300.0
BUCKET_S = 10.0
RATE_WINDOW_S = 60.0  # the rate is over the last minute: it follows an autoscaling experiment more closely
MAX_SAMPLES = 200_000  # a bound on memory at any request rate (~25 MB); below it, the window's requests bound it


def percentile(sorted_values: list[float], q: float) -> float | None:
    """The nearest-rank percentile (q in 0..100) of already sorted values; None for none."""
    if not sorted_values:
        return None
    rank = max(1, math.ceil(q / 100 * len(sorted_values)))
    return sorted_values[rank - 1]


class RollingStageStats:
    """Per-stage durations of the last `window_s` seconds: rate, p50/p95 overall and per `bucket_s` bucket."""

    def __init__(
        self,
        window_s: float = WINDOW_S,
        bucket_s: float = BUCKET_S,
        clock: Callable[[], float] = time.time,
        max_samples: int = MAX_SAMPLES,
        rate_window_s: float = RATE_WINDOW_S,
    ):
        self.window_s = window_s
        self.rate_window_s = min(rate_window_s, window_s)
        self.bucket_s = bucket_s
        self.clock = clock
        # (when, stage, duration_ms, degraded); appended in time order, so old samples leave from the left.
        self._samples: deque[tuple[float, str, float, bool]] = deque(maxlen=max_samples)
        self._lock = threading.Lock()  # snapshots may be taken from another thread than the one recording

    def record_retrieval(self, resp: RetrieveResponse) -> None:
        """Every stage of one response, at one clock reading and under one lock (this runs on every request)."""
        failed = {d.stage for d in resp.degraded}
        rows: list[tuple[str, float | None, bool]] = []
        for stage in STAGES:
            timing = getattr(resp.timings, stage, None)
            if timing is not None:
                rows.append((stage, timing.duration_ms, stage in failed))
            elif stage in failed:  # failed before it could be timed: counted, no duration
                rows.append((stage, None, True))
        self._add(rows)

    def __len__(self) -> int:
        """Samples held."""
        return len(self._samples)

    def _add(self, rows: list[tuple[str, float | None, bool]]) -> None:
        now = self.clock()
        with self._lock:
            self._drop_older_than(now - self.window_s)  # held: the window's samples, whether the page reads or not
            self._samples.extend((now, stage, math.nan if ms is None else ms, degraded) for stage, ms, degraded in rows)

    def _drop_older_than(self, cutoff: float) -> None:
        while self._samples and self._samples[0][0] < cutoff:
            self._samples.popleft()

    def _recent(self, now: float) -> list[tuple[float, str, float, bool]]:
        with self._lock:
            self._drop_older_than(now - self.window_s)
            return list(self._samples)

    def snapshot(self) -> dict[str, Any]:
        """{window_s, bucket_s, rate_window_s, now, stages: {stage: {count, degraded, rate_per_s, p50_ms, p95_ms,
        max_ms, buckets: [{start, count, p95_ms}]}}}: counts and percentiles over the window, the rate over the last
        `rate_window_s`; bucket start times are epoch seconds, oldest first."""
        now = self.clock()
        samples = self._recent(now)
        n_buckets = max(1, math.ceil(self.window_s / self.bucket_s))
        first_bucket = math.floor(now / self.bucket_s) - n_buckets + 1
        stages: dict[str, Any] = {}
        for stage in STAGES:
            mine = [s for s in samples if s[1] == stage]
            durations = sorted(s[2] for s in mine if not math.isnan(s[2]))
            per_bucket: list[list[float]] = [[] for _ in range(n_buckets)]
            counts = [0] * n_buckets
            for when, _, ms, _ in mine:
                i = math.floor(when / self.bucket_s) - first_bucket
                if 0 <= i < n_buckets:
                    counts[i] += 1
                    if not math.isnan(ms):
                        per_bucket[i].append(ms)
            stages[stage] = {
                "count": len(mine),
                "degraded": sum(1 for s in mine if s[3]),
                "rate_per_s": sum(1 for s in mine if s[0] >= now - self.rate_window_s) / self.rate_window_s,
                "p50_ms": percentile(durations, 50),
                "p95_ms": percentile(durations, 95),
                "max_ms": durations[-1] if durations else None,
                "buckets": [
                    {
                        "start": (first_bucket + i) * self.bucket_s,
                        "count": counts[i],
                        "p95_ms": percentile(sorted(per_bucket[i]), 95),
                    }
                    for i in range(n_buckets)
                ],
            }
        return {
            "window_s": self.window_s,
            "bucket_s": self.bucket_s,
            "rate_window_s": self.rate_window_s,
            "now": now,
            "stages": stages,
        }


class WindowedStageMetrics(StageMetrics):
    """The ingress's Prometheus metrics, plus the rolling window the page reads (`window`)."""

    def __init__(self, metrics: Any = None, window: RollingStageStats | None = None):
        super().__init__(metrics)
        self.window = window or RollingStageStats()

    def record_retrieval(self, resp: RetrieveResponse) -> None:
        super().record_retrieval(resp)
        self.window.record_retrieval(resp)


def _enum_name(value: Any, default: str) -> str:
    """Serve's details hold its enums (ReplicaState.RUNNING, ...), whose str() is the qualified name."""
    if value is None:
        return default
    return str(getattr(value, "value", value))


def replicas_from_details(details: dict[str, Any], app_name: str) -> list[dict[str, Any]]:
    """Per deployment of one application, from Serve's controller details (`serve.status` in full): its status,
    replicas per state, running and target replicas, and the autoscaling bounds when it autoscales."""
    app = (details.get("applications") or {}).get(app_name) or {}
    rows = []
    for name, dep in (app.get("deployments") or {}).items():
        states: dict[str, int] = {}
        for replica in dep.get("replicas") or []:
            state = _enum_name(replica.get("state"), "UNKNOWN")
            states[state] = states.get(state, 0) + 1
        config = dep.get("deployment_config") or {}
        autoscaling = config.get("autoscaling_config") or None
        rows.append(
            {
                "deployment": name,
                "status": _enum_name(dep.get("status"), "UNKNOWN"),
                "running": states.get("RUNNING", 0),
                "target": dep.get("target_num_replicas"),
                "states": states,
                "autoscaling": {
                    "min_replicas": autoscaling.get("min_replicas"),
                    "max_replicas": autoscaling.get("max_replicas"),
                    "target_ongoing_requests": autoscaling.get("target_ongoing_requests"),
                }
                if autoscaling
                else None,
                "message": dep.get("message") or "",
            }
        )
    return sorted(rows, key=lambda r: r["deployment"])
