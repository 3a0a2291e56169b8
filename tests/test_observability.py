"""Request ids on log lines and the per-stage metrics (deployments/observability.py), without Ray."""

from __future__ import annotations

import logging

from deployments.models import Degraded, IngestResponse, RetrieveResponse, StageTiming, Subgraph, Timings
from deployments.observability import RequestIdFilter, StageMetrics, failure_kind
from tests.fakes import RecordingMetrics


def test_failure_reasons_map_to_few_labels():
    assert failure_kind("timed out after 5s") == "timeout"
    assert failure_kind("overloaded: BackPressureError") == "overloaded"
    assert failure_kind("cannot reach bolt://127.0.0.1:7687: connection refused") == "unavailable"
    assert failure_kind("openai:http://llm answered HTTP 429") == "rate_limited"
    assert failure_kind("Neo.ClientError.Statement.SyntaxError: bad") == "error"


def test_retrieval_records_latency_per_stage_and_degraded_reasons():
    metrics = StageMetrics(RecordingMetrics)
    resp = RetrieveResponse(
        query="q",
        collection="c",
        hits=[],
        graph=Subgraph(),
        mode="hybrid",
        timings=Timings(
            vector=StageTiming(start_ms=0, duration_ms=250), rerank=StageTiming(start_ms=250, duration_ms=50)
        ),
        degraded=[Degraded(stage="graph", error="timed out after 5s")],
    )
    metrics.record_retrieval(resp)
    assert metrics.latency.values == [(0.25, {"stage": "vector"}), (0.05, {"stage": "rerank"})]
    assert metrics.degraded.values == [(1, {"stage": "graph", "reason": "timeout"})]


def test_errors_of_ingest_and_of_other_routes_are_counted_apart():
    metrics = StageMetrics(RecordingMetrics)
    metrics.record_error("graph", "connection refused", "/v1/ingest")
    metrics.record_error("chat", "timed out after 90s", "/v1/answer")
    assert metrics.ingest_failures.values == [(1, {"stage": "graph"})]
    assert metrics.errors.values == [(1, {"stage": "chat", "reason": "timeout"})]
    metrics.record_ingest(IngestResponse(collection="c", documents=2, chunks=5, entities=0, relations=0, timings={}))
    assert metrics.ingest_documents.values == [(2, {})] and metrics.ingest_chunks.values == [(5, {})]


def test_log_lines_carry_a_request_id_or_a_dash():
    record = logging.LogRecord("graphrag.test", logging.INFO, __file__, 1, "hello", None, None)
    assert RequestIdFilter().filter(record) and record.request_id == "-"  # outside a request
    record.request_id = "rid-1"
    RequestIdFilter().filter(record)
    assert record.request_id == "rid-1"  # an id already set stays
