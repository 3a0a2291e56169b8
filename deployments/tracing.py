"""Where Ray Serve's OpenTelemetry spans go: a JSON-lines file per process, an OTLP collector, or both.

Ray Serve traces every request across deployments (a span per replica call, `request_id` and `deployment` among
its attributes, the trace context carried with each handle call) once its processes know an exporter: the
`tracing_config` of a Serve config file (`serve deploy` / `serve run`) or `RAY_SERVE_TRACING_EXPORTER_IMPORT_PATH`
in the environment of `ray start`. Point either at `deployments.tracing:span_processors`; it reads:

  GRAPHRAG_TRACE_DIR                       one `<host>-<pid>.jsonl` per process under this folder (on each node)
  OTEL_EXPORTER_OTLP_TRACES_ENDPOINT       an OTLP/HTTP collector, e.g. http://otel-collector:4318/v1/traces
  (or OTEL_EXPORTER_OTLP_ENDPOINT)         (headers, timeouts and batching: the standard OTEL_* variables)

With neither set, tracing is on but exports nothing (a warning says so).
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from opentelemetry import propagate
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor, SpanExporter, SpanExportResult
from starlette.types import Receive, Scope, Send

TRACE_DIR_ENV = "GRAPHRAG_TRACE_DIR"
OTLP_ENDPOINT_ENVS = ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT")

log = logging.getLogger("graphrag.tracing")


def span_record(span: ReadableSpan) -> dict[str, Any]:
    """One span as a flat JSON object (ids in the W3C hex form that collectors and `traceparent` use)."""
    ctx = span.get_span_context()
    assert ctx is not None  # an ended span has its context
    return {
        "name": span.name,
        "trace_id": f"{ctx.trace_id:032x}",
        "span_id": f"{ctx.span_id:016x}",
        "parent_span_id": f"{span.parent.span_id:016x}" if span.parent else None,
        "kind": span.kind.name,
        "start_ns": span.start_time,
        "end_ns": span.end_time,
        "status": span.status.status_code.name,
        "attributes": dict(span.attributes or {}),
        "pid": os.getpid(),
    }


class JsonLinesSpanExporter(SpanExporter):
    """Appends each finished span as one JSON line to a file of its own process (no writers share a file)."""

    def __init__(self, directory: str | os.PathLike):
        self.path = Path(directory) / f"{socket.gethostname()}-{os.getpid()}.jsonl"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._file = open(self.path, "a", buffering=1)  # line-buffered: a line is on disk once written

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        lines = "".join(json.dumps(span_record(s), default=str) + "\n" for s in spans)
        with self._lock:
            if self._file.closed:
                return SpanExportResult.FAILURE
            self._file.write(lines)
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        with self._lock:
            if not self._file.closed:
                self._file.close()


def otlp_endpoint() -> str | None:
    return next((os.environ[k] for k in OTLP_ENDPOINT_ENVS if os.environ.get(k)), None)


def span_processors() -> list[SpanProcessor]:
    """Ray Serve's exporter hook (a function without arguments returning span processors): the sinks the
    environment names. The file sink writes each span as it ends; OTLP batches (OTEL_BSP_* tune it)."""
    processors: list[SpanProcessor] = []
    directory = os.environ.get(TRACE_DIR_ENV)
    if directory:
        processors.append(SimpleSpanProcessor(JsonLinesSpanExporter(directory)))
    if otlp_endpoint():
        # Optional dependency (pip install 'graphrag-serve[tracing]'); it reads OTEL_EXPORTER_OTLP_* itself.
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        processors.append(BatchSpanProcessor(OTLPSpanExporter()))
    if not processors:
        log.warning("tracing is on but neither %s nor an OTLP endpoint is set: spans are dropped", TRACE_DIR_ENV)
    return processors


def read_spans(directory: str | os.PathLike) -> list[dict[str, Any]]:
    """Every span written under `directory` by `JsonLinesSpanExporter`, from all processes."""
    spans = []
    for path in sorted(Path(directory).glob("*.jsonl")):
        for line in path.read_text().splitlines():
            if line.strip():
                spans.append(json.loads(line))
    return spans


class FastAPIInServeTrace(FastAPI):
    """FastAPI whose own request spans nest under Ray Serve's span of the ingress replica.

    FastAPI's native telemetry takes a request's parent span from its headers only; without a client `traceparent`
    it would open a second trace beside Serve's, and every stage call made in a route would land in that one. So
    the current span (Serve's, when tracing is on) is handed over as the `traceparent` header. With tracing off
    there is no current span and the headers stay as they came."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] in ("http", "websocket"):
            carrier: dict[str, str] = {}
            propagate.inject(carrier)
            if "traceparent" in carrier:
                keep = [(k, v) for k, v in scope["headers"] if k not in (b"traceparent", b"tracestate")]
                ours = [
                    (k.encode("latin-1"), carrier[k].encode("latin-1"))
                    for k in ("traceparent", "tracestate")
                    if k in carrier
                ]
                scope["headers"] = keep + ours
        await super().__call__(scope, receive, send)
