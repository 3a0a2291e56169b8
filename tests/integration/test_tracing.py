"""Ray Serve's OpenTelemetry tracing through our exporter (`deployments/tracing.py`): one `/v1/answer` request
yields spans in every stage's deployment under one trace id carrying our request id, written to files and sent
to an OTLP/HTTP collector (an in-process one here). The exporter's pieces are tested without Ray first."""

from __future__ import annotations

import os
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor

from deployments import tracing
from tests.fakes import sample_documents
from tests.local_app import local_app

STAGES = {"Ingress", "Vector", "Embedder", "Graph", "Reranker", "Chat"}


class OTLPCollector:
    """A minimal OTLP/HTTP trace receiver: decodes each protobuf export request into span dicts."""

    def __init__(self) -> None:
        self.spans: list[dict] = []
        collector = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                request = ExportTraceServiceRequest.FromString(body)
                for resource in request.resource_spans:
                    for scope in resource.scope_spans:
                        for span in scope.spans:
                            attributes = {a.key: a.value.string_value for a in span.attributes}
                            collector.spans.append(
                                {"name": span.name, "trace_id": span.trace_id.hex(), "attributes": attributes}
                            )
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.endpoint = f"http://127.0.0.1:{self._server.server_address[1]}/v1/traces"

    def __enter__(self) -> OTLPCollector:
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc) -> None:
        self._server.shutdown()
        self._server.server_close()


@contextmanager
def environment(**values: str) -> Iterator[None]:
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def test_jsonl_exporter_writes_parent_and_trace_ids(tmp_path):
    provider = TracerProvider()
    exporter = tracing.JsonLinesSpanExporter(tmp_path)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("test")
    with tracer.start_as_current_span("outer") as outer:
        with tracer.start_as_current_span("inner", attributes={"request_id": "r-1"}):
            pass
    provider.shutdown()
    spans = {s["name"]: s for s in tracing.read_spans(tmp_path)}
    assert set(spans) == {"outer", "inner"}
    assert spans["inner"]["trace_id"] == spans["outer"]["trace_id"] == f"{outer.get_span_context().trace_id:032x}"
    assert spans["inner"]["parent_span_id"] == spans["outer"]["span_id"] and spans["outer"]["parent_span_id"] is None
    assert spans["inner"]["attributes"] == {"request_id": "r-1"} and spans["inner"]["pid"] == os.getpid()


def test_span_processors_follow_the_environment(tmp_path, monkeypatch):
    for key in (tracing.TRACE_DIR_ENV, *tracing.OTLP_ENDPOINT_ENVS):
        monkeypatch.delenv(key, raising=False)
    assert tracing.span_processors() == []
    monkeypatch.setenv(tracing.TRACE_DIR_ENV, str(tmp_path))
    (only_file,) = tracing.span_processors()
    assert isinstance(only_file, SimpleSpanProcessor) and isinstance(
        only_file.span_exporter, tracing.JsonLinesSpanExporter
    )
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4318")
    file_sink, otlp_sink = tracing.span_processors()
    assert isinstance(otlp_sink, BatchSpanProcessor) and isinstance(otlp_sink.span_exporter, OTLPSpanExporter)
    for processor in (file_sink, otlp_sink):
        processor.shutdown()


@pytest.mark.integration
def test_one_answer_is_one_trace_across_every_stage(tmp_path):
    trace_dir = tmp_path / "spans"
    with (
        OTLPCollector() as collector,
        environment(
            # Read by every Ray process started below (the replicas inherit the raylet's environment).
            RAY_SERVE_TRACING_EXPORTER_IMPORT_PATH="deployments.tracing:span_processors",
            RAY_SERVE_TRACING_SAMPLING_RATIO="1.0",
            GRAPHRAG_TRACE_DIR=str(trace_dir),
            OTEL_EXPORTER_OTLP_TRACES_ENDPOINT=collector.endpoint,
            OTEL_BSP_SCHEDULE_DELAY="200",
        ),
    ):
        with local_app({"data_dir": str(tmp_path / "data")}, "graphrag-tracing-itest") as base:
            with httpx.Client(base_url=base, timeout=120) as client:
                resp = client.post("/v1/ingest", json={"collection": "traced", "documents": sample_documents()})
                assert resp.status_code == 200, resp.text
                rid = f"trace-{uuid.uuid4().hex[:12]}"
                resp = client.post(
                    "/v1/answer",
                    json={"collection": "traced", "query": "Which engine is written in Rust?", "mode": "hybrid+graph"},
                    headers={"X-Request-ID": rid},
                )
                assert resp.status_code == 200 and resp.headers["x-request-id"] == rid, resp.text
                assert resp.json()["degraded"] == []

                def ours(spans: list[dict]) -> list[dict]:
                    return [s for s in spans if s["attributes"].get("request_id") == rid]

                deadline = time.monotonic() + 60
                while time.monotonic() < deadline:
                    written, received = ours(tracing.read_spans(trace_dir)), ours(collector.spans)
                    if STAGES <= {s["attributes"].get("deployment") for s in written} and STAGES <= {
                        s["attributes"].get("deployment") for s in received
                    }:
                        break
                    time.sleep(0.5)

    for sink, spans in (("file", written), ("otlp", received)):
        assert STAGES <= {s["attributes"].get("deployment") for s in spans}, (sink, spans)
        assert len({s["trace_id"] for s in spans}) == 1, (sink, spans)
    assert {s["trace_id"] for s in written} == {s["trace_id"] for s in received}
    # One tree: Serve's span of the ingress replica is the only root; FastAPI's request span hangs under it.
    (trace_id,) = {s["trace_id"] for s in written}
    tree = [s for s in tracing.read_spans(trace_dir) if s["trace_id"] == trace_id]
    by_id = {s["span_id"]: s for s in tree}
    roots = [s for s in tree if s["parent_span_id"] not in by_id]
    assert len(roots) == 1 and roots[0]["attributes"]["deployment"] == "Ingress", roots
    assert roots[0]["attributes"]["request_id"] == rid
    assert any(s["name"] == "POST /v1/answer" and s["parent_span_id"] == roots[0]["span_id"] for s in tree), tree
