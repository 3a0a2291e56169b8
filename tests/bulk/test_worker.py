"""The cluster bulk path's worker without Ray: rows -> one-chunk documents with the embedder's vectors and the offline
extractor's graph, which /v1/ingest stores as they come (nothing embedded or extracted again on the store node)."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from deployments.bulk.cluster import _batches
from deployments.bulk.worker import SOURCE_ID, ChunkWorker
from deployments.config import AppConfig
from deployments.models import Document
from tests.fakes import FakeEmbedder
from tests.ingress.test_bulk_import import Real, request

SHORT = "Alice Smith founded Acme Corporation in Berlin. Acme Corporation builds robots for factories."
LONG = " ".join(f"Sentence {i} says that Qdrant Edge stores vectors for Ray Serve." for i in range(40))


@pytest.fixture(scope="module")
def worker(tmp_path_factory):
    """The default config's worker: MiniLM through ONNX Runtime (exported into a temporary cache), spaCy."""
    folder = tmp_path_factory.mktemp("bulk")
    w = ChunkWorker(AppConfig.from_args({"data_dir": str(folder), "embedder": {"num_threads": 1}}))
    yield w
    w.close()


def test_a_short_row_keeps_its_id_with_a_vector_of_the_models_dimension_and_its_graph(worker):
    [doc] = worker([{"id": "acme", "text": SHORT, "metadata": {"year": 2020}}])
    assert doc["id"] == "acme" and doc["metadata"] == {"year": 2020}
    dim = worker._loop.run_until_complete(worker.embedder.dimension())
    assert dim == 384 and len(doc["vector"]) == dim
    assert np.isclose(np.linalg.norm(doc["vector"]), 1.0, atol=1e-4)
    entities = {e["key"]: e["type"] for e in doc["extraction"]["entities"]}
    assert entities.get("alice smith") == "PERSON" and "acme corporation" in entities
    assert doc["extraction"]["extractor"] == "spacy"
    Document(**doc)  # what /v1/ingest accepts


def test_a_long_row_becomes_one_document_per_chunk_each_within_one_chunk(worker):
    config = worker.config.chunking
    docs = worker([{"id": "long", "text": LONG}])
    assert len(docs) > 1
    assert [d["id"] for d in docs] == [f"long#{n}" for n in range(len(docs))]
    for d in docs:
        assert d["metadata"] == {SOURCE_ID: "long"}
        assert len(d["text"].split()) <= config.max_words  # else the ingest would refuse the vector (400)
        assert any(e["key"] == "qdrant edge" for e in d["extraction"]["entities"])
        Document(**d)


def test_with_llm_providers_configured_no_extraction_is_sent():
    config = AppConfig.from_args(
        {
            "data_dir": "/tmp/graphrag-unit",
            "graph": {"extraction": {"providers": [{"base_url": "http://127.0.0.1:9/v1", "model": "m"}]}},
        }
    )
    w = ChunkWorker(config, embedder=FakeEmbedder())
    try:
        [doc] = w([{"id": "acme", "text": SHORT}])
    finally:
        w._loop.close()
    assert "extraction" not in doc and doc["vector"]


def test_batches_cover_every_row_once():
    rows = [{"id": str(i)} for i in range(70)]
    batches = list(_batches(rows, 32))
    assert [len(b) for b in batches] == [32, 32, 6] and [r for b in batches for r in b] == rows


async def test_the_workers_documents_are_stored_without_the_graph_stage_extracting(tmp_path, graph_config):
    """The worker's output through Pipeline.ingest (the /v1/ingest path) over the real stores: the graph holds the
    worker's entities, and the graph stage's own extractor is never called."""
    real = Real(tmp_path, graph_config)
    asked: list[str] = []
    real.graph._extract = lambda chunk: asked.append(chunk.chunk_id)
    w = ChunkWorker(AppConfig.from_args({"data_dir": str(tmp_path)}), embedder=FakeEmbedder())
    try:
        rows = [{"id": "acme", "text": SHORT}, {"id": "long", "text": LONG}]
        docs = await asyncio.to_thread(w, rows)  # synchronous: a Ray actor's method
        resp = await real.pipeline().ingest(request(real, [Document(**d) for d in docs]))
        assert asked == [] and resp.chunks == len(docs) and resp.extractors == {"spacy": len(docs)}
        given = {e["key"] for d in docs for e in d["extraction"]["entities"]}
        assert resp.entities == len(given)
        assert (await real.pipeline().verify(real.collection)).consistent
    finally:
        w._loop.close()
        await real.close()
