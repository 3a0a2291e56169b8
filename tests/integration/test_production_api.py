"""The production face of the real app over HTTP: API keys, the OpenAI-compatible API (through the official
`openai` client, chat and embeddings), streamed answers, cancellation reaching the chat provider, the request
timeout (504), body limits (413), request ids in every deployment's log lines, the provider fallback chain,
Prometheus metrics; the MCP server through the official `mcp` client, the Python client, dropping a collection."""

from __future__ import annotations

import json
import time
from pathlib import Path

import httpx
import numpy as np
import openai
import pytest
import ray

from deployments.ingress.auth import hash_key
from tests.fakes import sample_documents
from tests.local_app import local_app
from tests.openai_server import OpenAIProtocolServer

pytestmark = pytest.mark.integration

KEY = "itest-key-5f1c"
READER = "itest-reader-9a2e"  # the read scope only
COLLECTION = "prod"
QUESTION = "What does Qdrant Edge embed inside an application process?"
BODY_LIMIT = 1_000_000
REQUEST_TIMEOUT_S = 15


@pytest.fixture(scope="module")
def llms():
    with OpenAIProtocolServer() as primary, OpenAIProtocolServer(model_suffix="-fallback") as fallback:
        yield primary, fallback


@pytest.fixture(scope="module")
def base_url(tmp_path_factory, llms):
    primary, fallback = llms
    args = {
        "data_dir": str(tmp_path_factory.mktemp("graphrag-prod")),
        # Timeouts nest (AppConfig validates it): the chat budget ends before the pipeline's, which ends before the request's.
        "chat": {
            "base_url": primary.base_url,
            "model": "primary",
            "max_attempts": 2,
            "backoff_base_s": 0.05,
            "timeout_s": 10,
            "fallbacks": [{"base_url": fallback.base_url, "model": "second"}],
        },
        "retrieval": {"chat_timeout_s": 12},
        "auth": {
            "api_key_hashes": [hash_key(KEY)],
            "keys": [{"sha256": hash_key(READER), "name": "reader", "scopes": ["read"]}],
        },
        "limits": {"max_body_bytes": BODY_LIMIT, "request_timeout_s": REQUEST_TIMEOUT_S},
    }
    with local_app(args, "graphrag-prod-itest") as base:
        yield base


@pytest.fixture(scope="module")
def api(base_url):
    with httpx.Client(base_url=base_url, timeout=120, headers={"Authorization": f"Bearer {KEY}"}) as client:
        resp = client.post("/v1/ingest", json={"collection": COLLECTION, "documents": sample_documents()})
        assert resp.status_code == 200, resp.text
        yield client


@pytest.fixture
def clean(llms):
    for s in llms:
        s.reset()
    yield llms
    for s in llms:
        s.reset()


def test_api_key_required_except_health(base_url, api):
    with httpx.Client(base_url=base_url, timeout=30) as anon:
        for path in ("/v1/models", "/openapi.json", "/v1/collections/prod", "/v1/no-such-route"):
            resp = anon.get(path)
            assert resp.status_code == 401 and "missing API key" in resp.json()["detail"], (path, resp.text)
        resp = anon.post("/v1/retrieve", json={"query": "q"}, headers={"Authorization": "Bearer wrong"})
        assert resp.status_code == 401 and resp.json()["detail"] == "invalid API key"
        assert anon.get("/v1/models", headers={"X-API-Key": KEY}).status_code == 200
        assert anon.get("/healthz").status_code == 200
        assert anon.get("/readyz").status_code in (200, 503)
    schema = api.get("/openapi.json").json()
    assert schema["paths"]["/v1/retrieve"]["post"]["security"] and "security" not in schema["paths"]["/healthz"]["get"]


def test_openai_client_chat_completion_with_citations(base_url, api, clean):
    client = openai.OpenAI(base_url=f"{base_url}/v1", api_key=KEY, max_retries=0)
    assert [m.id for m in client.models.list()] == ["graphrag", "all-MiniLM-L6-v2"]  # and the embedding model
    resp = client.chat.completions.create(
        model="graphrag",
        messages=[{"role": "system", "content": "be brief"}, {"role": "user", "content": QUESTION}],
        extra_body={"collection": COLLECTION},
    )
    content = resp.choices[0].message.content
    assert resp.model == "primary-testdouble" and "[1]" in content and "Sources:" in content
    extra = resp.model_extra
    assert extra["citations"] and extra["citations"][0]["n"] == 1
    assert extra["references"][0]["chunk_id"] == extra["citations"][0]["chunk_id"]
    prompt = clean[0].requests("chat")[-1].body["messages"][-1]["content"]
    assert " ".join(extra["references"][0]["text"].split())[:60] in prompt  # the LLM saw the passage it cites


def test_openai_client_streams_references_before_the_first_token(base_url, api, clean):
    client = openai.OpenAI(base_url=f"{base_url}/v1", api_key=KEY, max_retries=0)
    stream = client.chat.completions.create(
        model="graphrag",
        messages=[{"role": "user", "content": QUESTION}],
        stream=True,
        extra_body={"collection": COLLECTION},
    )
    chunks = list(stream)
    assert chunks[0].model_extra["references"] and not chunks[0].choices[0].delta.content
    text = "".join(c.choices[0].delta.content or "" for c in chunks)
    assert len([c for c in chunks if c.choices[0].delta.content]) > 3  # really in pieces
    assert "[1]" in text and "Sources:" in text
    assert chunks[-1].choices[0].finish_reason == "stop" and chunks[-1].model_extra["citations"]
    assert clean[0].requests("chat")[-1].body["stream"] is True


def sse_events(resp: httpx.Response) -> list:
    return [line[len("data: ") :] for line in resp.iter_lines() if line.startswith("data: ")]


def test_answer_streams_references_pieces_and_done(api, clean):
    with api.stream("POST", "/v1/answer", json={"collection": COLLECTION, "query": QUESTION, "stream": True}) as resp:
        assert resp.status_code == 200 and resp.headers["content-type"].startswith("text/event-stream")
        raw = sse_events(resp)
    assert raw[-1] == "[DONE]"
    events = [json.loads(e) for e in raw[:-1]]
    assert events[0]["type"] == "references" and events[0]["hits"] and events[0]["model"] == "primary-testdouble"
    deltas = [e["content"] for e in events if e["type"] == "delta"]
    done = events[-1]
    assert done["type"] == "done" and "".join(deltas) == done["answer"] and done["citations"]
    assert done["timings"]["chat"]["duration_ms"] > 0


def test_streamed_unknown_collection_is_still_404(api):
    resp = api.post("/v1/answer", json={"collection": "never_ingested", "query": "q", "stream": True})
    assert resp.status_code == 404 and "never_ingested" in resp.json()["detail"]


def wait_disconnected(llm: OpenAIProtocolServer, timeout: float = 20) -> float:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        calls = llm.requests("chat")
        if calls and calls[-1].disconnected:
            return time.monotonic()
        time.sleep(0.1)
    raise AssertionError(f"the chat provider never saw the request cancelled: {llm.requests('chat')}")


@pytest.mark.parametrize("stream", [False, True])
def test_client_disconnect_cancels_the_chat_call(base_url, api, clean, stream):
    primary, _ = clean
    primary.fault("chat", delay=60)  # the provider hangs; only a cancellation ends its request early
    with httpx.Client(base_url=base_url, timeout=4, headers={"X-API-Key": KEY}) as impatient:
        with pytest.raises(httpx.ReadTimeout):
            impatient.post("/v1/answer", json={"collection": COLLECTION, "query": QUESTION, "stream": stream})
    wait_disconnected(primary)
    assert len(primary.requests("chat")) == 1


def test_body_over_the_limit_is_413(api):
    big = {"collection": COLLECTION, "documents": [{"id": "big", "text": "word " * (BODY_LIMIT // 5 + 10)}]}
    resp = api.post("/v1/ingest", json=big)
    assert resp.status_code == 413 and "max_body_bytes" in resp.json()["detail"]
    chunked = api.post(
        "/v1/ingest", content=iter([json.dumps(big).encode()]), headers={"content-type": "application/json"}
    )
    assert chunked.status_code == 413 and "max_body_bytes" in chunked.json()["detail"]


def test_fallback_provider_answers_when_the_first_fails(api, clean):
    primary, fallback = clean
    primary.fault("chat", status=500, times=2)
    resp = api.post("/v1/answer", json={"collection": COLLECTION, "query": QUESTION})
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["model"] == "second-fallback" and body["degraded"] == [] and body["citations"]
    assert [c.status for c in primary.requests("chat")] == [500, 500] and len(fallback.requests("chat")) == 1


def test_request_id_reaches_every_deployment_log_line(api, clean):
    primary, fallback = clean
    rid = f"itest-rid-{time.time_ns()}"
    primary.fault("chat", status=500, times=2)
    fallback.fault("chat", status=500, times=2)
    resp = api.post("/v1/answer", json={"collection": COLLECTION, "query": QUESTION}, headers={"X-Request-ID": rid})
    assert resp.status_code == 200 and resp.headers["x-request-id"] == rid
    assert [d["stage"] for d in resp.json()["degraded"]] == ["chat"] and resp.json()["model"] == "extractive"
    logs = Path(ray._private.worker._global_node.get_logs_dir_path())
    deadline = time.monotonic() + 30
    while True:
        lines = [
            line
            for f in logs.rglob("*")
            if f.is_file() and f.suffix in (".log", ".err", ".out")
            for line in f.read_text(errors="replace").splitlines()
            if rid in line
        ]
        chat_lines = [line for line in lines if "deployments.chat" in line]
        ingress_lines = [line for line in lines if "graphrag.pipeline" in line]
        if (chat_lines and ingress_lines) or time.monotonic() > deadline:
            break
        time.sleep(1)
    # The chat replica (its retries and the provider chain) and the ingress (the degraded stage) both logged it.
    assert chat_lines and ingress_lines, lines
    assert all(f"request_id={rid}" in line for line in chat_lines + ingress_lines)
    assert not any(
        KEY in f.read_text(errors="replace")
        for f in logs.rglob("*")
        if f.is_file() and f.suffix in (".log", ".err", ".out")
    )


def test_stage_metrics_are_exported_for_prometheus(api):
    assert api.post("/v1/retrieve", json={"collection": COLLECTION, "query": QUESTION}).status_code == 200
    port = ray._private.worker._global_node.metrics_export_port
    deadline = time.monotonic() + 90
    wanted = [
        "graphrag_stage_latency_seconds_bucket{",
        'stage="vector"',
        'stage="rerank"',
        "graphrag_ingest_documents_total",
    ]
    while True:
        text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
        latency = [line for line in text.splitlines() if line.startswith("ray_graphrag_")]
        if all(any(w in line for line in latency) for w in wanted) or time.monotonic() > deadline:
            break
        time.sleep(2)
    assert all(any(w in line for line in latency) for w in wanted), "\n".join(latency)[:3000]


def _listeners() -> dict[int, tuple[str, str]]:
    """Listening TCP sockets on this machine: inode → (local address in /proc/net hex, owner's command line)."""
    sockets = {}
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for row in Path(table).read_text().splitlines()[1:]:
            fields = row.split()
            if fields[3] == "0A":  # LISTEN
                sockets[int(fields[9])] = fields[1].rsplit(":", 1)[0]
    owners = {}
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmd = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            for fd in (proc / "fd").iterdir():
                target = str(fd.readlink())
                if target.startswith("socket:[") and int(target[8:-1]) in sockets:
                    owners[int(target[8:-1])] = (sockets[int(target[8:-1])], cmd)
        except OSError:
            continue
    return owners


def test_every_listener_of_the_app_binds_loopback(api):
    """The fast path (HAProxy ingress, gRPC between replicas) is on, and none of Ray's, Serve's or HAProxy's
    listeners takes every interface: Ray 2.60 binds replica gRPC to [::] and HAProxy's stats/metrics to *."""
    ours = {
        inode: (addr, cmd)
        for inode, (addr, cmd) in _listeners().items()
        if any(k in cmd for k in ("ray", "haproxy", "arcadedb"))
    }
    assert any("haproxy" in cmd for _, cmd in ours.values()), "HAProxy ingress is not running"
    everywhere = {"00000000", "00000000000000000000000000000000"}
    assert not [cmd[:80] for addr, cmd in ours.values() if addr in everywhere]


# ---- integrations: embeddings, MCP, the Python client, dropping a collection ----------------------


def test_openai_client_embeds_with_the_served_model(base_url, api):
    client = openai.OpenAI(base_url=f"{base_url}/v1", api_key=READER, max_retries=0)
    resp = client.embeddings.create(
        input=["Qdrant is a vector database.", "Qdrant stores vectors.", "A cat sat."], model="all-MiniLM-L6-v2"
    )
    vectors = [np.asarray(d.embedding) for d in resp.data]
    assert [len(v) for v in vectors] == [384] * 3 and np.allclose([np.linalg.norm(v) for v in vectors], 1.0, atol=1e-4)
    assert vectors[0] @ vectors[1] > vectors[0] @ vectors[2] + 0.2  # the model's meaning, not noise
    assert resp.usage.prompt_tokens > 12
    with pytest.raises(openai.UnprocessableEntityError) as bad:
        client.embeddings.create(input=[[101, 2023]], model="all-MiniLM-L6-v2")
    assert "token arrays are not accepted" in bad.value.response.text
    with pytest.raises(openai.NotFoundError):
        client.embeddings.create(input="x", model="text-embedding-3-large")


async def test_mcp_client_calls_each_tool_on_the_running_app(base_url, api, clean):
    import httpx2
    from mcp import ClientSession
    from mcp.client.streamable_http import streamable_http_client

    async def session_calls(key: str, calls: list[tuple[str, dict]]) -> tuple[list[str], list]:
        http = httpx2.AsyncClient(headers={"Authorization": f"Bearer {key}"}, timeout=120)
        async with (
            http,
            streamable_http_client(f"{base_url}/mcp", http_client=http) as (read, write),
            ClientSession(read, write) as session,
        ):
            await session.initialize()
            names = [t.name for t in (await session.list_tools()).tools]
            return names, [await session.call_tool(name, arguments) for name, arguments in calls]

    names, (found, answered, listed, bad) = await session_calls(
        KEY,
        [
            ("retrieve", {"query": QUESTION, "collection": COLLECTION, "top_k": 3}),
            ("answer", {"query": QUESTION, "collection": COLLECTION}),
            ("list_collections", {}),
            ("retrieve", {"query": "", "collection": COLLECTION}),
        ],
    )
    assert {"retrieve", "answer", "graph_entity", "list_collections", "ingest"} <= set(names)
    assert (
        not found.is_error and len(found.structured_content["hits"]) == 3 and found.structured_content["degraded"] == []
    )
    assert (
        not answered.is_error
        and answered.structured_content["citations"]
        and "[1]" in answered.structured_content["answer"]
    )
    assert COLLECTION in [c["collection"] for c in listed.structured_content["collections"]]
    assert bad.is_error and "query" in bad.content[0].text
    node = found.structured_content["graph"]["nodes"][0]["name"]
    _, (entity, refused) = await session_calls(
        READER,
        [
            ("graph_entity", {"name": node, "collection": COLLECTION}),
            ("ingest", {"collection": COLLECTION, "documents": [{"id": "mcp-doc", "text": "Written through MCP."}]}),
        ],
    )
    assert not entity.is_error and entity.structured_content["doc_ids"]
    assert refused.is_error and "'write' scope" in refused.content[0].text
    assert "mcp-doc" not in [
        d["doc_id"] for d in api.get(f"/v1/collections/{COLLECTION}/documents").json()["documents"]
    ]


def test_python_client_ingests_retrieves_and_drops_a_collection(base_url, api):
    from deployments.client import GraphRAGClient, NotFoundError, PermissionDeniedError

    docs = [
        {"id": "drop-1", "text": "Marie Curie discovered polonium in Paris."},
        {"id": "drop-2", "text": "Pierre Curie worked with Marie Curie."},
    ]
    with GraphRAGClient(base_url, api_key=KEY) as client, GraphRAGClient(base_url, api_key=READER) as reader:
        before = client.collection_stats(COLLECTION)
        assert client.ingest(docs, collection="dropme").documents == 2
        assert {h.doc_id for h in client.retrieve("Who discovered polonium?", collection="dropme").hits} == {
            "drop-1",
            "drop-2",
        }
        with pytest.raises(PermissionDeniedError):
            reader.delete_collection("dropme")
        dropped = client.delete_collection("dropme")
        assert dropped.points == 2 and dropped.chunks == 2
        with pytest.raises(NotFoundError):
            client.retrieve("Who discovered polonium?", collection="dropme")
        assert "dropme" not in [c.collection for c in client.collections().collections]
        with pytest.raises(NotFoundError):
            client.delete_collection("dropme")
        assert client.collection_stats(COLLECTION) == before  # the other collection untouched
        assert client.ingest(docs[:1], collection="dropme").chunks == 1  # the name is free again
        assert {h.doc_id for h in client.retrieve("Who discovered polonium?", collection="dropme").hits} == {"drop-1"}
