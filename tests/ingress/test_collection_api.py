"""DELETE /v1/collections/{c} and OpenAI-compatible POST /v1/embeddings over HTTP without Ray (the real routes,
guards and pipeline over in-process stages), the embeddings through the official `openai` client."""

from __future__ import annotations

import asyncio
import json
import subprocess

import httpx
import numpy as np
import openai
import pytest

from deployments.config import AppConfig
from deployments.ingress.auth import hash_key
from deployments.ingress.http_app import app
from deployments.ingress.intents import IntentLog
from deployments.ingress.pipeline import Pipeline
from deployments.vector.edge import EdgeVectorStore
from tests.fakes import FakeStages
from tests.ingress_harness import ingress_client

KEYS = {"reader": ["read"], "writer": ["read", "write"], "admin": ["read", "write", "admin"]}
AUTH = {"auth": {"keys": [{"sha256": hash_key(name), "name": name, "scopes": scopes} for name, scopes in KEYS.items()]}}
INGEST = {
    "collection": "c",
    "documents": [{"id": "d1", "text": "Alice founded Acme."}, {"id": "d2", "text": "Bob joined Acme."}],
}


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


async def test_delete_collection_drops_both_stores_and_then_answers_404(monkeypatch):
    fake = FakeStages()
    with ingress_client(fake.stages(), monkeypatch, AUTH) as client:
        assert (await client.post("/v1/ingest", json=INGEST, headers=bearer("admin"))).status_code == 200
        resp = await client.delete("/v1/collections/c", headers=bearer("admin"))
        assert resp.status_code == 200, resp.text
        assert resp.json() == {"collection": "c", "points": 2, "chunks": 2}
        assert fake.stored == {"vector": set(), "graph": set()}
        again = await client.delete("/v1/collections/c", headers=bearer("admin"))
        assert again.status_code == 404 and "'c' does not exist" in again.json()["detail"]


@pytest.mark.parametrize(
    ("key", "path", "status"),
    [
        ("reader", "/v1/collections/c", 403),  # read scope
        ("writer", "/v1/collections/c", 403),  # write scope: documents yes, a whole collection no
        ("admin", "/v1/collections/bad%20name", 422),
        ("admin", "/v1/collections/" + "x" * 65, 422),
    ],
)
async def test_refused_or_malformed_delete_collection_changes_nothing(monkeypatch, key, path, status):
    fake = FakeStages()
    with ingress_client(fake.stages(), monkeypatch, AUTH) as client:
        await client.post("/v1/ingest", json=INGEST, headers=bearer("admin"))
        resp = await client.delete(path, headers=bearer(key))
        assert resp.status_code == status, resp.text
        assert fake.stored == {"vector": {"d1", "d2"}, "graph": {"d1", "d2"}}


async def test_a_failed_store_is_a_503_naming_it_and_a_retry_finishes_the_drop(monkeypatch):
    fake = FakeStages()
    fake.stored = {"vector": {"d1"}, "graph": {"d1"}}
    stages = fake.stages()

    async def graph_down(collection):
        raise ConnectionError("graph store unreachable")

    stages.graph.drop_collection = graph_down
    with ingress_client(stages, monkeypatch) as client:
        resp = await client.delete("/v1/collections/c")
        assert resp.status_code == 503 and resp.json()["stage"] == "graph" and "retry" in resp.json()["detail"]
        stages.graph.drop_collection = fake.graph_drop
        retried = await client.delete("/v1/collections/c")
        assert retried.status_code == 200 and retried.json() == {"collection": "c", "points": 0, "chunks": 1}
        assert fake.stored == {"vector": set(), "graph": set()}


def _exited_pid() -> int:
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


async def test_a_drop_cut_short_by_a_crash_is_finished_at_the_next_start(tmp_path):
    fake = FakeStages()
    fake.stored = {"vector": {"d1", "d2"}, "graph": {"d1", "d2"}}
    intents = IntentLog(tmp_path / "intents")
    config = AppConfig.from_args({"data_dir": str(tmp_path)})
    stages = fake.stages()
    gate = asyncio.Event()

    async def slow_graph_drop(collection):
        await gate.wait()
        return fake._drop("graph")

    stages.graph.drop_collection = slow_graph_drop
    task = asyncio.create_task(Pipeline(config, stages, intents).drop_collection("c"))
    while fake.stored["vector"]:  # the vector store is dropped, the graph store not yet: kill -9 here
        await asyncio.sleep(0.01)
    [pending] = intents.pending()
    assert (pending.action, pending.collection) == ("drop", "c")
    record = pending.path.read_text()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    pending.path.write_text(
        json.dumps({**json.loads(record), "owner": {**json.loads(record)["owner"], "pid": _exited_pid()}})
    )
    assert fake.stored["graph"] == {"d1", "d2"}

    [done] = await Pipeline(config, fake.stages(), IntentLog(tmp_path / "intents")).recover()
    assert done.action == "drop"
    assert fake.stored == {"vector": set(), "graph": set()} and intents.pending() == []


async def test_edge_store_drop_removes_the_collection_for_good(tmp_path):
    store = EdgeVectorStore(tmp_path)
    for name in ("c", "other"):
        await store.create(name, 4)
    assert await store.drop("c") is True
    assert await store.collections() == ["other"] and not await store.exists("c")
    assert [p.name for p in tmp_path.iterdir()] == ["other"]  # no hidden leftover either
    assert await store.drop("c") is False
    reopened = EdgeVectorStore(tmp_path)
    assert not await reopened.exists("c") and await reopened.exists("other")
    await reopened.create("c", 4)  # the name can be used again
    assert await reopened.count("c") == 0
    await store.aclose()
    await reopened.aclose()


# ---- POST /v1/embeddings --------------------------------------------------------------------------


class Embedding(FakeStages):
    """Each text's vector says which text it was: [its length, 1]."""

    async def embed(self, texts):
        return [[float(len(t)), 1.0] for t in texts]


def openai_client(transport: httpx.AsyncBaseTransport, key: str = "unused") -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(
        base_url="http://ingress/v1", api_key=key, max_retries=0, http_client=httpx.AsyncClient(transport=transport)
    )


@pytest.mark.parametrize("encoding", ["base64", "float"])  # the client asks for base64 unless told otherwise
async def test_the_openai_client_embeds_with_the_served_model(monkeypatch, encoding):
    with ingress_client(Embedding().stages(), monkeypatch) as client:
        oai = openai_client(client._transport)
        options = {} if encoding == "base64" else {"encoding_format": "float"}
        resp = await oai.embeddings.create(input=["one", "three words here"], model="all-MiniLM-L6-v2", **options)
        assert [d.embedding for d in resp.data] == [[3.0, 1.0], [16.0, 1.0]]
        assert [d.index for d in resp.data] == [0, 1] and resp.model == "all-MiniLM-L6-v2"
        assert (resp.usage.prompt_tokens, resp.usage.total_tokens) == (4, 4)
        single = await oai.embeddings.create(input="hello", model="sentence-transformers/all-MiniLM-L6-v2")
        assert np.allclose(single.data[0].embedding, [5.0, 1.0])
        models = await oai.models.list()
        assert "all-MiniLM-L6-v2" in [m.id for m in models.data]


@pytest.mark.parametrize(
    ("body", "status", "says"),
    [
        ({"input": [[1, 2, 3]], "model": "all-MiniLM-L6-v2"}, 422, "token arrays are not accepted"),
        ({"input": [1, 2, 3], "model": "all-MiniLM-L6-v2"}, 422, "token arrays are not accepted"),
        ({"input": [], "model": "all-MiniLM-L6-v2"}, 422, "must not be an empty list"),
        ({"input": ["ok", "  "], "model": "all-MiniLM-L6-v2"}, 422, "input[1] must not be empty"),
        ({"input": "x"}, 422, "model"),
        ({"input": "x", "model": "text-embedding-3-large"}, 404, "the embedding model is 'all-MiniLM-L6-v2'"),
        ({"input": "x", "model": "all-MiniLM-L6-v2", "dimensions": 256}, 400, "only gives its own dimension"),
        ({"input": "x", "model": "all-MiniLM-L6-v2", "encoding_format": "int8"}, 422, "encoding_format"),
    ],
)
async def test_bad_embedding_requests_get_a_clear_error_and_embed_nothing(monkeypatch, body, status, says):
    fake = Embedding()
    calls = []
    stages = fake.stages()

    async def embed(texts):
        calls.append(texts)
        return await fake.embed(texts)

    stages.embedder.embed = embed
    with ingress_client(stages, monkeypatch) as client:
        resp = await client.post("/v1/embeddings", json=body)
        assert resp.status_code == status, resp.text
        assert says in json.dumps(resp.json()), resp.text
        assert calls == []


async def test_embeddings_take_a_read_key_and_refuse_none(monkeypatch):
    with ingress_client(Embedding().stages(), monkeypatch, AUTH) as client:
        with pytest.raises(openai.AuthenticationError):
            await openai_client(client._transport, "wrong").embeddings.create(input="x", model="all-MiniLM-L6-v2")
        resp = await openai_client(client._transport, "reader").embeddings.create(input="x", model="all-MiniLM-L6-v2")
        assert resp.data[0].embedding == [1.0, 1.0]


async def test_a_failed_embedder_is_a_503_naming_it(monkeypatch):
    fake = Embedding()
    fake.fail["embed"] = ConnectionError("refused")
    stages = fake.stages()
    stages.embedder.embed = FakeStages.embed.__get__(fake)  # the failing one
    with ingress_client(stages, monkeypatch) as client:
        resp = await client.post("/v1/embeddings", json={"input": "x", "model": "all-MiniLM-L6-v2"})
        assert resp.status_code == 503 and resp.json()["stage"] == "embed"


def test_the_new_routes_are_in_the_openapi_schema():
    paths = app.openapi()["paths"]
    assert "delete" in paths["/v1/collections/{collection}"] and "post" in paths["/v1/embeddings"]
