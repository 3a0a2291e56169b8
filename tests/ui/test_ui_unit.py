"""The web page's server side without Ray: the stage window, replica counts, static files and which paths need a key."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from deployments.config import LimitsConfig
from deployments.ingress.auth import ApiKeyAuth, hash_key
from deployments.ingress.http_guards import HttpGuards
from deployments.models import Degraded, RetrieveResponse, StageTiming, Subgraph, Timings
from deployments.ui.paths import STATIC_DIR, STATIC_FILES
from deployments.ui.routes import add_ui
from deployments.ui.stats import RollingStageStats, WindowedStageMetrics, percentile, replicas_from_details

UI_DIR = Path(STATIC_DIR).parent


class Clock:
    def __init__(self, now: float = 1_000_000.0):
        self.now = now

    def __call__(self) -> float:
        return self.now


def response(
    vector_ms: float, graph_ms: float | None = None, degraded: list[Degraded] | None = None
) -> RetrieveResponse:
    timings = Timings(
        vector=StageTiming(start_ms=0, duration_ms=vector_ms), total=StageTiming(start_ms=0, duration_ms=vector_ms + 5)
    )
    if graph_ms is not None:
        timings.graph = StageTiming(start_ms=0.5, duration_ms=graph_ms)
    return RetrieveResponse(
        query="q", collection="c", hits=[], graph=Subgraph(), timings=timings, degraded=degraded or []
    )


def test_percentile_is_nearest_rank():
    values = sorted(float(v) for v in range(1, 101))
    assert percentile(values, 95) == 95.0 and percentile(values, 50) == 50.0 and percentile(values, 100) == 100.0
    assert percentile([7.0], 95) == 7.0 and percentile([], 95) is None


def test_window_rates_percentiles_buckets_and_expiry():
    clock = Clock()
    stats = RollingStageStats(window_s=300, bucket_s=10, clock=clock, rate_window_s=60)
    for i in range(20):  # 20 requests, 100 s ago: in the window, not in the last minute
        stats.record_retrieval(response(vector_ms=float(i + 1)))
    clock.now += 100
    for i in range(30):  # 30 requests now, with a graph stage, one of them degraded
        degraded = [Degraded(stage="graph", error="timed out")] if i == 0 else []
        stats.record_retrieval(response(vector_ms=100.0 + i, graph_ms=50.0, degraded=degraded))
    snap = stats.snapshot()
    vector, graph = snap["stages"]["vector"], snap["stages"]["graph"]
    assert vector["count"] == 50 and graph["count"] == 30 and graph["degraded"] == 1
    assert vector["rate_per_s"] == pytest.approx(30 / 60)
    assert vector["p95_ms"] == 127.0 and vector["max_ms"] == 129.0 and graph["p50_ms"] == 50.0
    assert snap["stages"]["chat"]["count"] == 0 and snap["stages"]["chat"]["p95_ms"] is None
    buckets = vector["buckets"]
    assert len(buckets) == 30 and buckets[-1]["count"] == 30 and buckets[-11]["count"] == 20
    assert buckets[-11]["p95_ms"] == 19.0 and buckets[-1]["p95_ms"] == 128.0
    assert sum(b["count"] for b in buckets) == 50
    clock.now += 250  # the first 20 leave the window
    assert stats.snapshot()["stages"]["vector"]["count"] == 30
    clock.now += 100
    assert stats.snapshot()["stages"]["vector"]["count"] == 0


def test_the_window_holds_only_its_own_samples_when_nobody_reads_it():
    # The soak found the ingress's RSS growing for its first ~15 minutes: samples left only when the page took a
    # snapshot, so with nobody looking the deque filled to max_samples (tracemalloc: ui/stats.py's append).
    clock = Clock()
    stats = RollingStageStats(window_s=300, clock=clock)
    for _ in range(1000):  # 10 requests a second for 1,000 s, 3 samples each (vector, graph and the total)
        for _ in range(10):
            stats.record_retrieval(response(vector_ms=5.0, graph_ms=7.0))
        clock.now += 1
    held = len(stats)
    assert held <= 301 * 10 * 3
    assert sum(s["count"] for s in stats.snapshot()["stages"].values()) == 300 * 10 * 3  # the last 300 s, all there


def test_a_stage_that_failed_before_it_was_timed_is_counted_as_degraded():
    stats = RollingStageStats(clock=Clock())
    stats.record_retrieval(response(vector_ms=10, degraded=[Degraded(stage="rerank", error="unavailable")]))
    rerank = stats.snapshot()["stages"]["rerank"]
    assert rerank["count"] == 1 and rerank["degraded"] == 1 and rerank["p95_ms"] is None


class FakeMetrics:
    """Ray Serve's metrics API, recording what is observed."""

    def __init__(self):
        self.observed: list[tuple[float, dict]] = []
        outer = self

        class Histogram:
            def __init__(self, *a, **k):
                pass

            def observe(self, value, tags=None):
                outer.observed.append((value, tags))

        class Counter:
            def __init__(self, *a, **k):
                pass

            def inc(self, value=1, tags=None):
                pass

        self.Histogram, self.Counter = Histogram, Counter


def test_windowed_metrics_feed_prometheus_and_the_window():
    fake = FakeMetrics()
    metrics = WindowedStageMetrics(fake, RollingStageStats(clock=Clock()))
    metrics.record_retrieval(response(vector_ms=12, graph_ms=30))
    assert sorted(tags["stage"] for _, tags in fake.observed) == ["graph", "vector"]
    assert metrics.window.snapshot()["stages"]["graph"]["count"] == 1


def test_replicas_from_serve_details():
    from ray.serve._private.common import ReplicaState  # Serve's details hold its enums, not their names

    details = {
        "applications": {
            "graphrag": {
                "deployments": {
                    "Vector": {
                        "status": "UPSCALING",
                        "target_num_replicas": 3,
                        "message": "scaling up",
                        "replicas": [
                            {"state": ReplicaState.RUNNING},
                            {"state": "RUNNING"},
                            {"state": ReplicaState.STARTING},
                        ],
                        "deployment_config": {
                            "autoscaling_config": {"min_replicas": 1, "max_replicas": 4, "target_ongoing_requests": 2}
                        },
                    },
                    "Chat": {
                        "status": "HEALTHY",
                        "target_num_replicas": 1,
                        "replicas": [{"state": "RUNNING"}],
                        "deployment_config": {},
                    },
                }
            },
            "other": {"deployments": {"X": {}}},
        }
    }
    rows = replicas_from_details(details, "graphrag")
    assert [r["deployment"] for r in rows] == ["Chat", "Vector"]
    vector = rows[1]
    assert vector["running"] == 2 and vector["target"] == 3 and vector["states"] == {"RUNNING": 2, "STARTING": 1}
    assert vector["autoscaling"] == {"min_replicas": 1, "max_replicas": 4, "target_ongoing_requests": 2}
    assert rows[0]["autoscaling"] is None and rows[0]["status"] == "HEALTHY"
    assert replicas_from_details({}, "graphrag") == []


@pytest.fixture()
def guarded_client():
    app = FastAPI()
    app.add_middleware(HttpGuards)
    add_ui(app)
    app.state.guards = (ApiKeyAuth([hash_key("k1")]), LimitsConfig())
    app.state.metrics = WindowedStageMetrics(FakeMetrics(), RollingStageStats(clock=Clock()))
    with TestClient(app) as client:
        yield client


def test_the_page_loads_without_a_key_and_nothing_else_does(guarded_client):
    for path, (name, media_type) in STATIC_FILES.items():
        resp = guarded_client.get(path)
        assert resp.status_code == 200, path
        assert resp.headers["content-type"] == media_type
        assert resp.content == (STATIC_DIR / name).read_bytes()
        assert "script-src 'self'" in resp.headers["content-security-policy"]
        assert resp.headers["x-content-type-options"] == "nosniff"
    redirect = guarded_client.get("/ui", follow_redirects=False)
    assert redirect.status_code == 307 and redirect.headers["location"] == "/ui/"
    # Everything else still needs the key: the stats, other files under /ui/, the API.
    for path in ("/v1/stats", "/ui/app.js.map", "/ui/static/index.html", "/ui/../v1/stats", "/docs"):
        assert guarded_client.get(path).status_code == 401, path
    assert guarded_client.get("/ui/nothing-here", headers={"X-API-Key": "k1"}).status_code == 404


def test_stats_endpoint_with_the_key(guarded_client, monkeypatch):
    from deployments.ui import routes

    async def fake_fetch():
        return {"app": "graphrag", "deployments": [{"deployment": "Vector", "running": 2}], "error": None}

    monkeypatch.setattr(routes.ReplicaCounts, "_fetch", staticmethod(fake_fetch))
    guarded_client.app.state.metrics.record_retrieval(response(vector_ms=12, graph_ms=30))
    body = guarded_client.get("/v1/stats", headers={"Authorization": "Bearer k1"}).json()
    assert body["replicas"]["deployments"][0]["running"] == 2
    assert body["stages"]["stages"]["graph"]["count"] == 1 and body["stages"]["stages"]["graph"]["p95_ms"] == 30.0


def test_replica_counts_outside_serve_say_why():
    import asyncio

    from deployments.ui.routes import ReplicaCounts

    body = asyncio.run(ReplicaCounts().get())
    assert body["deployments"] == [] and body["error"].startswith("replica counts unavailable")


def test_the_page_uses_only_vendored_files_and_the_vendored_library_matches_the_lockfile():
    html = (STATIC_DIR / "index.html").read_text()
    assert not re.search(r"(src|href)=\"(https?:)?//", html), "no CDN: every file is served by the ingress"
    for ref in re.findall(r"(?:src|href)=\"([^\"#]+)\"", html):
        assert f"/ui/{ref}" in STATIC_FILES, ref
    lock = json.loads((UI_DIR / "package-lock.json").read_text())
    version = lock["packages"]["node_modules/cytoscape"]["version"]
    assert json.loads((UI_DIR / "package.json").read_text())["dependencies"]["cytoscape"] == version
    head = (STATIC_DIR / "vendor" / "cytoscape.min.js").read_text()
    assert f'"{version}"' in head or f"'{version}'" in head, "static/vendor/cytoscape.min.js is not the locked version"


def test_the_script_never_puts_the_key_in_a_url_or_renders_html():
    js = (STATIC_DIR / "app.js").read_text()
    assert "innerHTML" not in js and "insertAdjacentHTML" not in js
    assert "sessionStorage" in js and "localStorage" not in js
    assert not re.search(r"[?&](api_?key|key)=", js)
