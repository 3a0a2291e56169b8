"""The real app over real HTTP: Ray Serve, MiniLM, Qdrant Edge, ArcadeDB's Bolt server, and a local
OpenAI-protocol server (a test double) for the chat stage."""

from __future__ import annotations

import os
import signal
import time

import httpx
import pytest
from ray import serve

from tests.fakes import sample_documents
from tests.local_app import local_app
from tests.openai_server import OpenAIProtocolServer

pytestmark = pytest.mark.integration

COLLECTION = "itest"


@pytest.fixture(scope="module")
def llm():
    with OpenAIProtocolServer() as server:
        yield server


@pytest.fixture(scope="module")
def api(tmp_path_factory, llm):
    args = {
        "data_dir": str(tmp_path_factory.mktemp("graphrag-data")),
        "chat": {"base_url": llm.base_url, "api_key": "test-key", "model": "test-model", "backoff_base_s": 0.1},
        "deployments": {"bolt_server": {"num_replicas": 1, "health_check_period_s": 1.0}},
    }
    with local_app(args, "graphrag-itest") as base, httpx.Client(base_url=base, timeout=120) as client:
        yield client


@pytest.fixture(scope="module")
def ingested(api):
    resp = api.post("/v1/ingest", json={"collection": COLLECTION, "documents": sample_documents()})
    assert resp.status_code == 200, resp.text
    return resp.json()


def wait_ready(api: httpx.Client, stage: str, timeout: float = 120) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        body = api.get("/readyz").json()
        if body["stages"][stage]["ok"]:
            return body
        time.sleep(1)
    raise AssertionError(f"stage {stage} did not become ready: {body}")


def test_health_and_readiness(api):
    assert api.get("/healthz").json() == {"status": "ok"}
    body = wait_ready(api, "graph")
    assert body["ready"] is True, body
    assert set(body["stages"]) == {"embedder", "vector", "graph", "reranker", "chat"}


def test_ingest_retrieve_answer_with_citations(api, ingested, llm):
    docs = sample_documents()
    assert ingested["documents"] == len(docs) and ingested["chunks"] >= len(docs)
    assert ingested["entities"] > 0 and ingested["relations"] > 0

    query = {"collection": COLLECTION, "query": "Which database ships a Bolt protocol plugin?", "top_k": 5}
    resp = api.post("/v1/retrieve", json=query)  # the default mode: hybrid+graph
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["mode"] == "hybrid+graph" and body["timings"]["graph"] is not None
    assert body["degraded"] == [] and len(body["hits"]) == 5
    assert body["hits"][0]["doc_id"] == "arcadedb"
    assert body["reranker"] == "embedded-dense-lexical"
    body = api.post("/v1/retrieve", json={**query, "mode": "hybrid+graph"}).json()
    assert body["degraded"] == [] and {"arcadedb", "neo4j"} <= {h["doc_id"] for h in body["hits"][:2]}
    assert any("graph" in h["sources"] for h in body["hits"]) and body["graph"]["nodes"]

    resp = api.post(
        "/v1/answer",
        json={"collection": COLLECTION, "query": "What does Qdrant Edge embed inside an application process?"},
    )
    assert resp.status_code == 200, resp.text
    answer = resp.json()
    assert answer["model"] == "test-model-testdouble" and answer["citations"], answer
    chunk_ids = {h["chunk_id"]: h["doc_id"] for h in answer["hits"]}
    ingested_docs = {d["id"] for d in docs}
    for c in answer["citations"]:
        assert chunk_ids[c["chunk_id"]] == c["doc_id"] and c["doc_id"] in ingested_docs
    # The LLM saw the passages it cites: the prompt holds the cited chunk's text.
    prompt = str(llm.requests("chat")[-1].body)
    cited = next(h for h in answer["hits"] if h["chunk_id"] == answer["citations"][0]["chunk_id"])
    assert cited["text"][:60] in prompt


def test_stores_verify_consistent_and_the_roll_back_ran(api, ingested):
    assert api.get("/readyz").json()["recovery"] == "done"
    report = api.get(f"/v1/collections/{COLLECTION}/verify").json()
    assert report["consistent"], report
    assert (
        report["documents"] == len(sample_documents())
        and report["vector_chunks"] == report["graph_chunks"] == ingested["chunks"]
    )


def test_reingest_replaces_not_duplicates(api, ingested):
    before = api.get(f"/v1/collections/{COLLECTION}").json()
    assert before["points"] == ingested["chunks"] and before["entities"] > 0
    again = api.post("/v1/ingest", json={"collection": COLLECTION, "documents": sample_documents()})
    assert again.status_code == 200, again.text
    assert api.get(f"/v1/collections/{COLLECTION}").json() == before


def test_with_the_embedded_store_the_graph_follows_the_vector_stage(api, ingested):
    """retrieval.graph_seeds auto: one Vector replica owns the embedded store, so the ingress calls the graph stage
    once the vector's dense hits are in and sends them as its seeds (the concurrent path: tests/ingress)."""
    query = {"collection": COLLECTION, "query": "How does Ray Serve scale each deployment?", "mode": "hybrid+graph"}
    body = api.post("/v1/retrieve", json=query).json()
    assert body["degraded"] == [] and body["hits"]
    t = body["timings"]
    vector = (t["vector"]["start_ms"], t["vector"]["start_ms"] + t["vector"]["duration_ms"])
    graph = (t["graph"]["start_ms"], t["graph"]["start_ms"] + t["graph"]["duration_ms"])
    embed = (t["embed"]["start_ms"], t["embed"]["start_ms"] + t["embed"]["duration_ms"])
    assert vector[1] <= graph[0] + 1, t
    # the ingress embeds the query once, then sends its vector on
    assert embed[1] <= vector[0], t
    assert t["rerank"]["start_ms"] >= graph[1] - 1, t


def test_chat_429_then_success_honours_retry_after(api, ingested, llm):
    llm.fault("chat", status=429, retry_after=1)
    before = len(llm.requests("chat"))
    resp = api.post("/v1/answer", json={"collection": COLLECTION, "query": "What is GraphRAG?"})
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["model"] == "test-model-testdouble" and body["degraded"] == []
    calls = llm.requests("chat")[before:]
    assert [c.status for c in calls] == [429, 200]
    assert calls[1].mono - calls[0].mono >= 1.0


@pytest.mark.parametrize(
    "path,body,needle",
    [
        ("/v1/retrieve", {"query": ""}, "query"),
        ("/v1/retrieve", {"query": "   "}, "empty"),
        ("/v1/retrieve", {"query": "q", "top_k": 0}, "top_k"),
        ("/v1/retrieve", {"query": "q", "top_k": 1000}, "top_k"),
        ("/v1/retrieve", {"query": "q", "collection": "bad name!"}, "collection"),
        ("/v1/answer", {"query": "q", "max_hops": 9}, "max_hops"),
        ("/v1/ingest", {"documents": []}, "documents"),
        ("/v1/ingest", {"documents": [{"id": "d", "text": "x" * 200_001}]}, "text"),
        ("/v1/ingest", {"documents": [{"id": f"d{i}", "text": "x"} for i in range(257)]}, "documents"),
        ("/v1/ingest", {"collection": "x" * 65, "documents": [{"id": "d", "text": "x"}]}, "collection"),
    ],
)
def test_bad_input_is_422_with_message(api, path, body, needle):
    resp = api.post(path, json=body)
    assert resp.status_code == 422, resp.text
    assert needle in resp.text and "Traceback" not in resp.text


def test_unknown_collection_is_404(api):
    resp = api.post("/v1/retrieve", json={"query": "anything", "collection": "never_ingested"})
    assert resp.status_code == 404 and "never_ingested" in resp.json()["detail"]


def test_graph_store_stopped_degrades_then_recovers(api, ingested):
    before = api.get(f"/v1/collections/{COLLECTION}").json()
    bolt = serve.get_deployment_handle("BoltServer", app_name="graphrag-itest")
    pid = bolt.info.remote().result()["pid"]
    os.kill(pid, signal.SIGKILL)
    query = {"collection": COLLECTION, "query": "Which database ships a Bolt protocol plugin?", "mode": "hybrid+graph"}
    resp = api.post("/v1/retrieve", json=query)
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert [d["stage"] for d in body["degraded"]] == ["graph"], body["degraded"]
    assert body["hits"] and all("graph" not in h["sources"] for h in body["hits"])
    # Serve's health check notices the dead server and restarts it on the same port and data folder.
    wait_ready(api, "graph")
    assert api.get(f"/v1/collections/{COLLECTION}").json() == before  # nothing lost


def test_retrieval_modes_over_http(api, ingested):
    query = "Which engine is written in Rust?"
    for mode, allowed in {"dense": {"vector"}, "lexical": {"lexical"}, "hybrid": {"vector", "lexical"}}.items():
        body = api.post("/v1/retrieve", json={"collection": COLLECTION, "query": query, "mode": mode}).json()
        assert body["mode"] == mode and body["hits"] and body["degraded"] == [], body
        assert set().union(*(h["sources"] for h in body["hits"])) <= allowed, mode
        assert body["timings"]["graph"] is None and body["graph"] == {"nodes": [], "edges": []}  # never called
    assert (
        api.post("/v1/retrieve", json={"collection": COLLECTION, "query": query}).json()["mode"] == "hybrid+graph"
    )  # the default
    resp = api.post("/v1/retrieve", json={"collection": COLLECTION, "query": query, "mode": "semantic"})
    assert resp.status_code == 422 and "mode" in resp.text


def test_graph_mode_searches_the_replicas_index_kept_current_on_ingest_and_delete(api, ingested):
    """hybrid+graph on the real engines: the Graph replica's in-memory index answers, and an ingested (then
    deleted) document is found (then gone) through the graph source within the index's check interval."""
    query = {
        "collection": COLLECTION,
        "query": "Which company makes the Zorblax quantum toaster?",
        "mode": "hybrid+graph",
        "top_k": 8,
    }
    doc = {
        "id": "zorblax",
        "text": "Zorblax Industries makes the Quantum Toaster. Zorblax Industries is based in Oslo.",
        "metadata": {},
    }
    assert api.post("/v1/ingest", json={"collection": COLLECTION, "documents": [doc]}).status_code == 200

    def graph_docs() -> set[str]:
        body = api.post("/v1/retrieve", json=query).json()
        assert body["degraded"] == [] and body["mode"] == "hybrid+graph", body
        return {h["doc_id"] for h in body["hits"] if "graph" in h["sources"]}

    deadline = time.monotonic() + 30  # the check interval is 0.2 s; a loaded machine gets slack
    while "zorblax" not in graph_docs() and time.monotonic() < deadline:
        time.sleep(0.3)
    assert "zorblax" in graph_docs()
    assert api.delete("/v1/documents/zorblax", params={"collection": COLLECTION}).status_code == 200
    deadline = time.monotonic() + 30
    while "zorblax" in graph_docs() and time.monotonic() < deadline:
        time.sleep(0.3)
    assert "zorblax" not in graph_docs()
