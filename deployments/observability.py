"""Request ids in every log line, and per-stage Prometheus metrics through Ray Serve's metrics API.

Request ids: Serve's proxy takes the client's `X-Request-ID` (or generates one), returns it as a response
header, and carries it in the request context of every downstream handle call, so each deployment reads the
same id from `serve.context`. `configure_logging()` (called in every deployment's constructor) stamps it on
the lines of the app's loggers (`graphrag.*`, `deployments.*`).

Metrics (exported by Ray's metrics agent, names prefixed `ray_`; see deployments/README.md, "Observability"):
  graphrag_stage_latency_seconds{stage}          histogram: embed, vector, graph, rerank, chat
  graphrag_stage_degraded_total{stage,reason}    a stage failed and the request went on without it
  graphrag_stage_errors_total{stage,reason}      a required stage failed: the request answered 503
  graphrag_ingest_documents_total / graphrag_ingest_chunks_total / graphrag_ingest_failures_total{stage}
"""

from __future__ import annotations

import logging
import sys
from typing import Any

from deployments.models import IngestResponse, RetrieveResponse

LATENCY_STAGES = ("embed", "vector", "graph", "rerank", "chat")
LATENCY_BUCKETS_S = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 90.0]
APP_LOGGERS = ("graphrag", "deployments")
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s request_id=%(request_id)s %(message)s"


def current_request_id() -> str | None:
    """The id of the request this code runs for, in any deployment; None outside a request (or without Serve)."""
    try:
        from ray.serve.context import _get_serve_request_context
    except ImportError:
        return None
    return _get_serve_request_context().request_id or None


class RequestIdFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if not getattr(record, "request_id", None):
            record.request_id = current_request_id() or "-"
        return True


class _AppHandler(logging.StreamHandler):
    """Marks our handler so configure_logging stays idempotent."""


def configure_logging(level: int = logging.INFO) -> None:
    """Stamps the request id on every line of the app's loggers (to stderr, which Ray keeps in the worker's log)."""
    for name in APP_LOGGERS:
        logger = logging.getLogger(name)
        if any(isinstance(h, _AppHandler) for h in logger.handlers):
            continue
        handler = _AppHandler(sys.stderr)
        handler.setFormatter(logging.Formatter(LOG_FORMAT))
        handler.addFilter(RequestIdFilter())
        logger.addHandler(handler)
        logger.setLevel(level)
        logger.propagate = False


def failure_kind(error: str) -> str:
    """A low-cardinality metric label for a stage failure's reason text."""
    text = error.lower()
    if "timed out" in text or "timeout" in text:
        return "timeout"
    if "backpressure" in text or "overloaded" in text:
        return "overloaded"
    if any(w in text for w in ("unreachable", "connection", "unavailable", "refused", "actor died", "died")):
        return "unavailable"
    if "http 429" in text:
        return "rate_limited"
    return "error"


class StageMetrics:
    """Records metrics from what the pipeline returns (timings, `degraded`), so the pipeline stays metric-free."""

    def __init__(self, metrics: Any = None):
        if metrics is None:
            from ray.serve import metrics as serve_metrics

            metrics = serve_metrics
        self.latency = metrics.Histogram(
            "graphrag_stage_latency_seconds",
            description="Latency of one pipeline stage per request.",
            boundaries=LATENCY_BUCKETS_S,
            tag_keys=("stage",),
        )
        self.degraded = metrics.Counter(
            "graphrag_stage_degraded_total",
            description="Stage failures the request survived (listed in `degraded`).",
            tag_keys=("stage", "reason"),
        )
        self.errors = metrics.Counter(
            "graphrag_stage_errors_total",
            description="Failures of a required stage (the request answered 503).",
            tag_keys=("stage", "reason"),
        )
        self.ingest_documents = metrics.Counter("graphrag_ingest_documents_total", description="Documents ingested.")
        self.ingest_chunks = metrics.Counter(
            "graphrag_ingest_chunks_total", description="Chunks written to the vector store."
        )
        self.ingest_failures = metrics.Counter(
            "graphrag_ingest_failures_total", description="Ingest requests rolled back.", tag_keys=("stage",)
        )

    def record_retrieval(self, resp: RetrieveResponse) -> None:
        for stage in LATENCY_STAGES:
            timing = getattr(resp.timings, stage, None)
            if timing is not None:
                self.latency.observe(timing.duration_ms / 1000, tags={"stage": stage})
        for d in resp.degraded:
            self.degraded.inc(tags={"stage": d.stage, "reason": failure_kind(d.error)})

    def record_error(self, stage: str, reason: str, path: str) -> None:
        if path == "/v1/ingest":
            self.ingest_failures.inc(tags={"stage": stage})
        else:
            self.errors.inc(tags={"stage": stage, "reason": failure_kind(reason)})

    def record_ingest(self, resp: IngestResponse) -> None:
        self.ingest_documents.inc(resp.documents)
        self.ingest_chunks.inc(resp.chunks)
