"""The ingress's routes over HTTP without Ray: Ingress.over_stages (in-process fake stages), served by the same
FastAPI app (its guards, exception handlers and response models) through httpx's ASGI transport."""

from __future__ import annotations

import inspect
import json

import httpx
import pytest

from deployments.config import AppConfig
from deployments.errors import CollectionNotFound, StageUnavailable
from deployments.ingress.deployment import Ingress
from deployments.observability import StageMetrics
from tests.fakes import FakeStages, RecordingMetrics


def _servable_dependency(app):
    """Serve's class-based view gave each route's `self` a FastAPI dependency (Depends) as its default: the
    dependency a test overrides with its own routes object. Read from a route of the app Serve serves."""

    def endpoints(routes):
        for route in routes:
            yield from endpoints(getattr(getattr(route, "original_router", None), "routes", []))  # included routers
            if getattr(route, "path", None) == "/v1/retrieve":
                yield route.endpoint

    return inspect.signature(next(endpoints(app.router.routes))).parameters["self"].default.dependency


@pytest.fixture
async def served():
    """(fake stages, client, routes) with the ingress's routes over those stages; the app left as it was."""
    fake = FakeStages()
    config = AppConfig.from_args({"data_dir": "/tmp/graphrag-unit", "retrieval.mode": "hybrid+graph"})
    routes = Ingress.func_or_class.over_stages(config, fake.stages(), StageMetrics(RecordingMetrics))
    app = routes.served_app  # the app Serve would serve (a frozen copy of the module's), with its guards set
    dependency = _servable_dependency(app)
    app.dependency_overrides[dependency] = lambda: routes
    try:
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://ingress") as client:
            yield fake, client, routes
    finally:
        app.dependency_overrides.pop(dependency, None)
        for name in ("guards", "metrics"):
            if hasattr(app.state, name):
                delattr(app.state, name)


async def test_retrieve_answers_with_fused_hits_and_records_metrics(served):
    fake, client, routes = served
    resp = await client.post("/v1/retrieve", json={"query": "q", "top_k": 3})
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert {h["chunk_id"] for h in body["hits"]} == {"a#0", "b#0", "c#0"} and body["reranker"] == "test-scorer"
    assert {tags["stage"] for _, tags in routes.metrics.latency.values} >= {"vector", "graph", "rerank"}


async def test_answer_whole_and_streamed(served):
    _, client, _ = served
    whole = (await client.post("/v1/answer", json={"query": "q"})).json()
    assert whole["model"] == "test-llm" and [c["n"] for c in whole["citations"]] == [1, 2]
    streamed = await client.post("/v1/answer", json={"query": "q", "stream": True})
    assert streamed.headers["content-type"].startswith("text/event-stream")
    events = [line[len("data: ") :] for line in streamed.text.splitlines() if line.startswith("data: ")]
    assert events[-1] == "[DONE]"
    kinds = [json.loads(e)["type"] for e in events[:-1]]
    assert kinds[0] == "references" and kinds[-1] == "done" and "delta" in kinds


async def test_openai_compatible_route_and_models(served):
    _, client, _ = served
    resp = await client.post("/v1/chat/completions", json={"messages": [{"role": "user", "content": "q"}]})
    assert resp.status_code == 200 and resp.json()["object"] == "chat.completion"
    # the answering "model", and the embedding model POST /v1/embeddings serves
    assert [m["id"] for m in (await client.get("/v1/models")).json()["data"]] == ["graphrag", "all-MiniLM-L6-v2"]


async def test_stage_errors_become_404_503_and_422(served):
    fake, client, _ = served
    fake.fail["vector"] = CollectionNotFound("nope")
    assert (await client.post("/v1/retrieve", json={"query": "q", "collection": "nope"})).status_code == 404
    fake.fail["vector"] = StageUnavailable("vector", "qdrant down")
    fake.fail["graph"] = StageUnavailable("graph", "bolt down")
    resp = await client.post("/v1/retrieve", json={"query": "q"})
    assert resp.status_code == 503 and resp.json()["stage"] == "vector+graph" and resp.headers["retry-after"] == "1"
    bad = await client.post("/v1/retrieve", json={"query": ""})
    assert bad.status_code == 422 and "query" in bad.text


async def test_ingest_stats_delete_and_readiness(served):
    fake, client, _ = served
    ingest = await client.post("/v1/ingest", json={"documents": [{"id": "d1", "text": "One. Two."}]})
    assert ingest.status_code == 200 and ingest.json()["chunks"] == 1
    assert (await client.get("/v1/collections/default")).json()["points"] == 1
    assert (await client.delete("/v1/documents/d1")).json()["doc_id"] == "d1"
    ready = await client.get("/readyz")
    assert ready.status_code == 503 and not ready.json()["stages"]["graph"]["ok"]  # the fake graph's ping fails
    assert (await client.get("/healthz")).json() == {"status": "ok"}


async def test_unexpected_errors_are_500_with_an_id_and_no_trace(served):
    fake, client, _ = served
    fake.stored = {"graph": set()}  # the fake vector stage's count now fails with a KeyError: a bug, not a stage error
    resp = await client.get("/v1/collections/default")
    body = resp.json()
    assert resp.status_code == 500 and body["detail"] == f"internal error (request id {body['request_id']})"
    assert resp.headers["x-request-id"] == body["request_id"]
    assert "KeyError" not in resp.text and "Traceback" not in resp.text
