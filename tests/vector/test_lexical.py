"""Lexical (BM25 sparse) retrieval in both Qdrant engines: encoding, IDF-weighted search, hybrid search in the
vector service, and collections created before the sparse vector existed."""

from __future__ import annotations

import uuid
from types import SimpleNamespace

import numpy as np
import pytest

from deployments.config import EmbedderConfig, VectorConfig
from deployments.embedder.backends import SentenceTransformerEmbedder
from deployments.errors import StageError
from deployments.models import Chunk
from deployments.vector.edge import EdgeVectorStore
from deployments.vector.lexical import LexicalEncoder
from deployments.vector.server import ServerVectorStore
from deployments.vector.service import VectorService
from deployments.vector.store import StoredPoint, chunk_payload, no_lexical_index, point_id

DIM = 8
TEXTS = {
    "p53": "The tumour suppressor p53 regulates apoptosis in damaged cells.",
    "insulin": "Insulin resistance in muscle cells precedes type 2 diabetes.",
    "mito": "Mitochondria of muscle cells produce ATP; cells need ATP.",
}


def test_encoder_stems_drops_stop_words_and_weights_terms():
    enc = LexicalEncoder()
    assert enc.query("running").indices == enc.query("runs").indices  # Snowball stemmer
    assert enc.query("the of and").indices == []  # stop words only
    assert enc.query("Apoptosis").indices == enc.query("apoptosis").indices  # lower-cased
    q = enc.query("cells cells apoptosis")
    assert len(q.indices) == 2 and q.values == [1.0, 1.0]  # a query counts each term once
    doc = enc.document("cells cells apoptosis")
    weights = dict(zip(doc.indices, doc.values))
    cells = enc.query("cells").indices[0]
    apoptosis = enc.query("apoptosis").indices[0]
    assert weights[cells] > weights[apoptosis] > 0  # term frequency saturates but still counts


def lexical_points(collection: str, enc: LexicalEncoder, metadata: dict | None = None) -> list[StoredPoint]:
    out = []
    for i, (doc, text) in enumerate(TEXTS.items()):
        chunk = Chunk(chunk_id=f"{doc}#0", doc_id=doc, index=0, text=text, metadata=metadata or {"n": i})
        vec = np.full(DIM, 0.01, dtype=np.float32)
        vec[i] = 1.0
        out.append(StoredPoint(point_id(collection, chunk.chunk_id), (vec / np.linalg.norm(vec)).tolist(),
                               chunk_payload(collection, chunk), enc.document(text)))  # fmt: skip
    return out


@pytest.fixture(params=["edge", "qdrant-local"])
async def store(request, tmp_path):
    s = EdgeVectorStore(tmp_path / "qdrant") if request.param == "edge" else ServerVectorStore(":memory:")
    yield s
    await s.aclose()


async def test_bm25_search_weights_rare_terms_by_idf(store):
    enc = LexicalEncoder()
    await store.create("lex", DIM)
    assert await store.has_lexical("lex")
    await store.replace_documents("lex", list(TEXTS), lexical_points("lex", enc))
    # "cells" is in every document (IDF near 0); "ATP" only in one: it decides the ranking.
    hits = await store.search_lexical("lex", enc.query("cells producing ATP"), 10, {})
    assert hits[0].doc_id == "mito" and hits[0].score > hits[-1].score
    hits = await store.search_lexical("lex", enc.query("muscle"), 10, {})
    assert {h.doc_id for h in hits} == {"insulin", "mito"}  # no match, no hit
    assert await store.search_lexical("lex", enc.query("the"), 10, {}) == []
    assert [h.doc_id for h in await store.search_lexical("lex", enc.query("muscle"), 10, {"n": 1})] == ["insulin"]
    # Dense search and stored vectors are unchanged by the sparse vector beside them.
    assert (await store.search("lex", lexical_points("lex", enc)[2].vector, 1, {}))[0].doc_id == "mito"
    vectors = await store.vectors("lex", ["p53#0"])
    assert len(vectors["p53#0"]) == DIM and isinstance(vectors["p53#0"][0], float)


async def test_deleting_a_document_removes_it_from_lexical_search(store):
    enc = LexicalEncoder()
    await store.create("del", DIM)
    await store.replace_documents("del", list(TEXTS), lexical_points("del", enc))
    await store.delete_documents("del", ["mito"])
    assert {h.doc_id for h in await store.search_lexical("del", enc.query("muscle ATP"), 10, {})} == {"insulin"}


async def make_legacy(store, collection: str, dim: int = DIM) -> None:
    """A collection as created before lexical retrieval: one unnamed dense vector, no sparse vector."""
    if isinstance(store, EdgeVectorStore):
        import qdrant_edge as qe

        directory = store.path / collection
        directory.parent.mkdir(parents=True, exist_ok=True)
        config = qe.EdgeConfig(vectors=qe.EdgeVectorParams(size=dim, distance=qe.Distance.Cosine))
        qe.EdgeShard.create(str(directory), config).close()
    else:
        from qdrant_client import models

        await store._get_client().create_collection(
            collection, vectors_config=models.VectorParams(size=dim, distance=models.Distance.COSINE)
        )


async def test_legacy_collection_without_sparse_vector_is_dense_only(store):
    enc = LexicalEncoder()
    await make_legacy(store, "old")
    assert await store.exists("old") and not await store.has_lexical("old")
    # Ingest still works (dense only): the sparse part is dropped, not a failure.
    assert await store.replace_documents("old", list(TEXTS), lexical_points("old", enc)) == 3
    assert (await store.search("old", lexical_points("old", enc)[0].vector, 1, {}))[0].doc_id == "p53"
    assert len((await store.vectors("old", ["p53#0"]))["p53#0"]) == DIM


# ---- VectorService with the real MiniLM embedder ------------------------------------------------


@pytest.fixture(scope="module")
async def minilm():
    emb = SentenceTransformerEmbedder(EmbedderConfig())
    yield emb
    await emb.aclose()


@pytest.fixture
async def service(store, minilm):
    calls: list[list[str]] = []

    async def embed(texts: list[str]) -> list[list[float]]:
        calls.append(texts)
        return await minilm.embed(texts)

    svc = VectorService(VectorConfig(), SimpleNamespace(embed=embed, dimension=minilm.dimension), store=store)
    svc.embed_calls = calls
    yield svc


def chunks() -> list[Chunk]:
    return [Chunk(chunk_id=f"{d}#0", doc_id=d, index=0, text=t) for d, t in TEXTS.items()]


async def test_service_search_returns_what_the_mode_asks(service):
    await service.upsert("kb", chunks())
    service.embed_calls.clear()
    lexical = await service.search("kb", "ATP production", 3, {}, "lexical")
    assert lexical.hits == [] and [h.doc_id for h in lexical.lexical_hits] == ["mito"]
    assert service.embed_calls == [] and lexical.embed is None and lexical.query_vector is None  # no embedding
    dense = await service.search("kb", "programmed cell death", 3, {}, "dense")
    assert dense.hits[0].doc_id == "p53" and dense.lexical_hits is None and dense.query_vector
    hybrid = await service.search("kb", "ATP in muscle", 3, {}, "hybrid")
    assert len(hybrid.hits) == 3 and {h.doc_id for h in hybrid.lexical_hits} == {"insulin", "mito"}
    assert hybrid.lexical_error is None


async def test_service_reports_a_collection_without_lexical_vector(service):
    await make_legacy(service.store, "old", dim=384)
    # Re-ingest into the old collection keeps it dense-only and searchable.
    assert await service.upsert("old", chunks()) == 3
    hybrid = await service.search("old", "ATP in muscle", 3, {}, "hybrid")
    assert hybrid.hits and hybrid.lexical_hits is None
    assert "without the lexical" in hybrid.lexical_error and "re-ingest" in hybrid.lexical_error
    with pytest.raises(StageError, match="re-ingest"):
        await service.search("old", "ATP", 3, {}, "lexical")
    assert no_lexical_index("old") == hybrid.lexical_error


def test_point_ids_stay_uuids():
    assert uuid.UUID(point_id("c", "d#0"))


async def test_service_search_returns_the_hits_stored_vectors_when_asked(service, monkeypatch):
    await service.upsert("kb", chunks())
    plain = await service.search("kb", "ATP in muscle", 3, {}, "hybrid")
    assert plain.hit_vectors is None  # off unless configured (the app turns it on for the embedded reranker)
    service.config = VectorConfig(hit_vectors=True)
    lookup = service.store.vectors

    async def no_second_lookup(*args):
        raise AssertionError("the vectors are read with the hits, not looked up again")

    monkeypatch.setattr(service.store, "vectors", no_second_lookup)
    hybrid = await service.search("kb", "ATP in muscle", 3, {}, "hybrid")
    monkeypatch.setattr(service.store, "vectors", lookup)
    found = {h.chunk_id for h in [*hybrid.hits, *hybrid.lexical_hits]}
    carried = hybrid.hit_vectors.unpack()
    assert set(carried) == found  # dense and BM25-only hits alike
    stored = await service.store.vectors("kb", sorted(found))
    for chunk_id, vector in carried.items():
        assert np.allclose(vector, stored[chunk_id], atol=1e-6)
