import asyncio
import json
import time

import numpy as np
import pytest
from ray import serve

from deployments.config import AppConfig, EmbedderConfig, VectorConfig
from deployments.embedder.backends import SentenceTransformerEmbedder
from deployments.embedder.deployment import Embedder
from deployments.errors import CollectionNotFound, StageError, StageUnavailable
from deployments.models import Chunk
from deployments.vector.deployment import Vector
from deployments.vector.edge import EdgeVectorStore
from deployments.vector.server import ServerVectorStore
from deployments.vector.service import VectorService, make_vector_store
from deployments.vector.store import StoredPoint, chunk_payload, point_id
from tests.fakes import FAKE_DIM, FakeEmbedder

DIM = FAKE_DIM


def unit(*hot: float) -> list[float]:
    """A DIM-d unit vector from its first coordinates."""
    v = np.zeros(DIM, dtype=np.float32)
    v[: len(hot)] = hot
    return (v / np.linalg.norm(v)).tolist()


def points(collection: str, doc_id: str, n: int, metadata: dict | None = None, axis: int = 0) -> list[StoredPoint]:
    out = []
    for i in range(n):
        chunk = Chunk(
            chunk_id=f"{doc_id}#{i}", doc_id=doc_id, index=i, text=f"{doc_id} chunk {i}", metadata=metadata or {}
        )
        vec = np.full(DIM, 0.01, dtype=np.float32)
        vec[axis] = 1.0
        vec[(axis + 1 + i) % DIM] += 0.1 * (i + 1)  # distinct vectors per chunk
        out.append(
            StoredPoint(
                point_id(collection, chunk.chunk_id),
                (vec / np.linalg.norm(vec)).tolist(),
                chunk_payload(collection, chunk),
            )
        )
    return out


@pytest.fixture(params=["edge", "qdrant-local"])
async def store(request, tmp_path):
    s = EdgeVectorStore(tmp_path / "qdrant") if request.param == "edge" else ServerVectorStore(":memory:")
    yield s
    await s.aclose()


# ---- the VectorStore contract, on both engines --------------------------------------------------


async def test_missing_collection_is_reported_not_empty(store):
    assert await store.exists("nothing") is False
    with pytest.raises(CollectionNotFound):
        await store.search("nothing", unit(1), 5, {})
    with pytest.raises(CollectionNotFound):
        await store.count("nothing")
    assert await store.delete_documents("nothing", ["d"]) == 0  # deleting from nowhere is a no-op
    with pytest.raises(ValueError):
        await store.exists("../escape")


async def test_upsert_search_payload_and_scores(store):
    await store.create("c", DIM)
    assert await store.exists("c")
    written = await store.replace_documents(
        "c", ["a", "b"], points("c", "a", 3, {"lang": "en"}, axis=0) + points("c", "b", 2, {"lang": "de"}, axis=4)
    )
    assert written == 5 and await store.count("c") == 5
    hits = await store.search("c", unit(0, 0, 0, 0, 1), 3, {})
    assert [h.doc_id for h in hits[:2]] == ["b", "b"]
    assert hits[0].score > hits[-1].score and 0.9 < hits[0].score <= 1.0001
    top = hits[0]
    assert top.chunk_id.startswith("b#") and top.text.startswith("b chunk") and top.metadata == {"lang": "de"}
    assert len(await store.search("c", unit(1), 100, {})) == 5


async def test_stored_vectors_by_chunk_id(store):
    await store.create("c", DIM)
    written = points("c", "a", 2)
    await store.replace_documents("c", ["a"], written)
    got = await store.vectors("c", ["a#1", "a#0", "missing#0"])
    assert set(got) == {"a#0", "a#1"}
    assert np.allclose(got["a#1"], written[1].vector, atol=1e-5)


async def test_stored_chunks_with_their_texts_and_vectors(store):
    await store.create("c", DIM)
    written = points("c", "a", 2, {"lang": "de"})
    await store.replace_documents("c", ["a"], written)
    got = await store.chunks("c", ["a#1", "missing#0"])
    assert set(got) == {"a#1"}
    found, vector = got["a#1"]
    assert (found.doc_id, found.text, found.metadata, found.score) == ("a", "a chunk 1", {"lang": "de"}, 0.0)
    assert np.allclose(vector, written[1].vector, atol=1e-5)


async def test_metadata_filter_matches_by_equality(store):
    await store.create("f", DIM)
    await store.replace_documents(
        "f",
        ["x", "y", "z"],
        (
            points("f", "x", 2, {"lang": "en", "year": 2020, "draft": True, "score": 0.5, "tags": ["ai", "graphs"]})
            + points("f", "y", 2, {"lang": "de", "year": 2021, "draft": False, "score": 1.5, "tags": ["ai"]})
            + points("f", "z", 1, {})
        ),
    )
    q = unit(1)

    async def docs(flt):
        return {h.doc_id for h in await store.search("f", q, 10, flt)}

    assert await docs({"lang": "en"}) == {"x"}
    assert await docs({"year": 2021}) == {"y"}
    assert await docs({"draft": True}) == {"x"}
    assert await docs({"score": 1.5}) == {"y"}
    assert await docs({"tags": "graphs"}) == {"x"}  # a list matches when it contains the value
    assert await docs({"tags": "ai", "lang": "de"}) == {"y"}  # conditions combine with AND
    assert await docs({"lang": "fr"}) == set()
    assert await docs({}) == {"x", "y", "z"}


async def test_reupsert_replaces_and_shrinking_doc_leaves_no_stale_chunks(store):
    await store.create("r", DIM)
    await store.replace_documents("r", ["a", "b"], points("r", "a", 4) + points("r", "b", 2, axis=3))
    await store.replace_documents("r", ["a"], points("r", "a", 4))
    assert await store.count("r") == 6  # same ids: replaced, not duplicated
    await store.replace_documents("r", ["a"], points("r", "a", 1))  # document a shrank to one chunk
    assert await store.count("r") == 3
    chunk_ids = {h.chunk_id for h in await store.search("r", unit(1), 10, {})}
    assert chunk_ids == {"a#0", "b#0", "b#1"}


async def test_refused_replacement_keeps_the_previous_version(store):
    await store.create("v", DIM)
    await store.replace_documents("v", ["a"], points("v", "a", 2))
    wrong = [StoredPoint(point_id("v", "a#0"), [1.0] * (DIM + 1), {"doc_id": "a"})]
    with pytest.raises((StageError, ValueError), match="dimension"):
        await store.replace_documents("v", ["a"], wrong)
    assert await store.count("v") == 2
    assert {h.chunk_id for h in await store.search("v", unit(1), 5, {})} == {"a#0", "a#1"}


async def test_delete_documents_counts_removed_points(store):
    await store.create("d", DIM)
    await store.replace_documents("d", ["a", "b", "c"], points("d", "a", 3) + points("d", "b", 2) + points("d", "c", 1))
    assert await store.delete_documents("d", ["a", "c", "never-ingested"]) == 4
    assert await store.count("d") == 2
    assert {h.doc_id for h in await store.search("d", unit(1), 10, {})} == {"b"}
    assert await store.delete_documents("d", ["a"]) == 0


async def test_create_never_recreates_an_existing_collection(store):
    await store.create("k", DIM)
    await store.replace_documents("k", ["a"], points("k", "a", 2))
    await store.create("k", DIM)
    assert await store.count("k") == 2
    assert "qdrant" in await store.ping()


async def test_dimension_is_the_collections_own_or_none(store):
    assert await store.dimension("c") is None
    await store.create("c", DIM + 3)
    assert await store.dimension("c") == DIM + 3
    service = VectorService(VectorConfig(), FakeEmbedder(), store=store)
    assert (await service.dimension("c"), await service.dimension("new")) == (DIM + 3, DIM)  # new: the embedder's


def test_point_ids_are_deterministic_per_collection():
    assert point_id("c", "doc#1") == point_id("c", "doc#1")
    assert point_id("c", "doc#1") != point_id("other", "doc#1")


# ---- engine specifics ---------------------------------------------------------------------------


async def test_edge_store_persists_across_reopen(tmp_path):
    s = EdgeVectorStore(tmp_path)
    await s.create("p", DIM)
    await s.replace_documents("p", ["a"], points("p", "a", 3))
    await s.aclose()
    reopened = EdgeVectorStore(tmp_path)
    try:
        assert await reopened.exists("p") and await reopened.count("p") == 3
        assert (await reopened.search("p", unit(1), 1, {}))[0].doc_id == "a"
        assert "1 collections" in await reopened.ping()
    finally:
        await reopened.aclose()


async def test_edge_store_builds_hnsw_after_enough_writes(tmp_path):
    s = EdgeVectorStore(tmp_path, optimize_every_points=100, indexing_threshold_kb=1)
    try:
        await s.create("h", DIM)
        await s.replace_documents("h", ["a"], points("h", "a", 60))
        assert s._shards["h"].info().indexed_vectors_count == 0  # below the optimize trigger
        await s.replace_documents("h", ["b"], points("h", "b", 60, axis=2))
        assert s._shards["h"].info().indexed_vectors_count > 0
        assert await s.count("h") == 120
        assert (await s.search("h", unit(0, 0, 1), 1, {}))[0].doc_id == "b"
    finally:
        await s.aclose()


async def test_edge_store_keeps_a_collection_in_the_segments_it_is_given(tmp_path):
    """The optimizer's target segment count is written at creation and rewritten when a store with another one
    opens the collection; the other optimizer settings and the data stay (a 1M collection opened with the engine's
    default, the CPU count, merged every new segment into a big one: 15 s per ~7k points)."""
    s = EdgeVectorStore(tmp_path, indexing_threshold_kb=1)
    await s.create("g", DIM)
    await s.replace_documents("g", ["a"], points("g", "a", 3))
    await s.aclose()
    stored = json.loads((tmp_path / "g" / "edge_config.json").read_text())["optimizers"]
    assert stored["default_segment_number"] == 8 and stored["indexing_threshold"] == 1
    reopened = EdgeVectorStore(tmp_path, segments=3)
    try:
        assert await reopened.count("g") == 3
        assert (await reopened.search("g", unit(1), 1, {}))[0].doc_id == "a"
        stored = json.loads((tmp_path / "g" / "edge_config.json").read_text())["optimizers"]
        assert stored["default_segment_number"] == 3 and stored["indexing_threshold"] == 1
        assert await reopened.has_lexical("g")
    finally:
        await reopened.aclose()


async def test_unreachable_qdrant_server_raises_instead_of_missing():
    s = ServerVectorStore("http://127.0.0.1:9", timeout=2)  # nothing listens on port 9
    service = VectorService(VectorConfig(qdrant_url="http://127.0.0.1:9"), embedder=None, store=s)
    try:
        with pytest.raises(StageUnavailable):
            await s.exists("c")
        with pytest.raises(StageUnavailable):
            await service.search("c", "query", 3, {})  # not CollectionNotFound: we cannot tell
        with pytest.raises(StageUnavailable):
            await service.ping()
    finally:
        await s.aclose()


def test_store_follows_config(tmp_path):
    cfg = AppConfig(data_dir=str(tmp_path))
    assert isinstance(make_vector_store(cfg.vector), EdgeVectorStore)
    assert isinstance(make_vector_store(VectorConfig(qdrant_url="http://127.0.0.1:6333")), ServerVectorStore)


# ---- VectorService with the real MiniLM embedder ------------------------------------------------

DOCS = {
    "cats": "Cats are small domesticated felines. A content cat purrs and kneads with its paws.",
    "rates": "The central bank raised interest rates by half a point to bring inflation down.",
    "volcano": "Mount Etna erupted again, sending lava flows and an ash cloud over Sicily.",
}


@pytest.fixture(scope="module")
async def minilm():
    emb = SentenceTransformerEmbedder(EmbedderConfig())
    yield emb
    await emb.aclose()


@pytest.fixture
async def service(store, minilm):
    svc = VectorService(VectorConfig(embed_batch_size=2), minilm, store=store)
    yield svc


async def test_service_semantic_search_finds_the_right_chunk(service):
    chunks = [Chunk(chunk_id=f"{d}#0", doc_id=d, index=0, text=t, metadata={"topic": d}) for d, t in DOCS.items()]
    assert await service.upsert("kb", chunks) == 3
    assert await service.count("kb") == 3
    before = time.time()
    result = await service.search("kb", "Which pet makes a purring sound?", 2, {})
    assert result.hits[0].doc_id == "cats" and result.hits[0].score > result.hits[1].score
    assert before <= result.embed.start <= result.embed.end <= time.time()
    result = await service.search("kb", "monetary policy and inflation", 3, {"topic": "volcano"})
    assert [h.doc_id for h in result.hits] == ["volcano"]
    # Re-ingesting a document with fewer chunks replaces it.
    assert await service.upsert("kb", [Chunk(chunk_id="cats#0", doc_id="cats", index=0, text="Dogs bark.")]) == 1
    assert await service.count("kb") == 3
    assert await service.delete_documents("kb", ["cats"]) == 1
    assert await service.count("kb") == 2


async def test_service_missing_collection_raises_collection_not_found(service):
    with pytest.raises(CollectionNotFound, match="nope"):
        await service.search("nope", "anything", 5, {})
    assert await service.upsert("nope", []) == 0
    assert await service.store.exists("nope") is False  # an empty upsert does not create it


async def test_service_creates_collection_with_embedder_dimension(service, minilm):
    chunks = [Chunk(chunk_id=f"long#{i}", doc_id="long", index=i, text=f"sentence number {i}") for i in range(5)]
    assert await service.upsert("dims", chunks) == 5  # 3 embed calls of <= 2 texts
    hits = (await service.search("dims", "sentence number 3", 1, {})).hits
    assert hits[0].chunk_id == "long#3"
    with pytest.raises((StageError, ValueError), match="dimension"):  # the collection refuses other dimensions
        await service.store.replace_documents(
            "dims", ["x"], [StoredPoint(point_id("dims", "x#0"), unit(1), {"doc_id": "x"})]
        )


# ---- the Serve deployments together, in local testing mode --------------------------------------


async def test_vector_deployment_embeds_through_the_embedder_handle(tmp_path):
    cfg = AppConfig(data_dir=str(tmp_path))
    app = Vector.bind(cfg.vector, Embedder.bind(cfg.embedder))
    handle = serve.run(app, name="vector-test", route_prefix=None, _local_testing_mode=True)
    chunks = [Chunk(chunk_id=f"{d}#0", doc_id=d, index=0, text=t) for d, t in DOCS.items()]
    assert await handle.upsert.remote("kb", chunks) == 3
    results = await asyncio.gather(
        handle.search.remote("kb", "lava and ash", 1, {}),
        handle.search.remote("kb", "feline pets", 1, {}),
    )
    assert [r.hits[0].doc_id for r in results] == ["volcano", "cats"]
    with pytest.raises(CollectionNotFound):
        await handle.search.remote("missing", "x", 1, {})
    assert "qdrant-edge" in await handle.ping.remote()
    await handle.aclose.remote()


async def test_chunk_ids_list_every_point_with_its_document(store):
    assert await store.chunk_ids("never-created") == {}
    await store.create("l", DIM)
    await store.replace_documents("l", ["a", "b"], points("l", "a", 3) + points("l", "b", 1))
    listed = await store.chunk_ids("l")
    assert sorted(listed.values()) == ["a", "a", "a", "b"] and len(listed) == await store.count("l")


# ---- listing collections and documents (GET /v1/collections, GET /v1/collections/{c}/documents) ---


async def page_through(list_page, limit: int) -> list[str]:
    """Every document id, following the cursors (bounded)."""
    seen, cursor = [], None
    for _ in range(100):
        page, cursor = await list_page(limit, cursor)
        assert len(page) <= limit
        seen += page
        if cursor is None:
            return seen
    raise AssertionError("the cursor never ended")


async def test_collections_and_document_pages(store):
    assert await store.collections() == []
    await store.create("zeta", DIM)
    await store.create("alpha", DIM)
    docs = [f"doc-{i:02d}" for i in range(7)]
    await store.replace_documents("alpha", docs, [p for i, d in enumerate(docs) for p in points("alpha", d, i % 3 + 1)])
    assert await store.collections() == ["alpha", "zeta"]
    assert await store.count("alpha") == 13
    assert await store.document_count("alpha") == 7 and await store.document_count("zeta") == 0
    # Each document once, over pages of 3 (7 documents, 13 points).
    seen = await page_through(lambda limit, cursor: store.documents("alpha", limit, cursor), 3)
    assert sorted(seen) == docs
    assert await store.documents("zeta", 10, None) == ([], None)
    assert await store.chunk_counts("alpha", ["doc-01", "doc-02", "missing"]) == {"doc-01": 2, "doc-02": 3}
    # A shrunk and a deleted document.
    await store.replace_documents("alpha", ["doc-02"], points("alpha", "doc-02", 1))
    await store.delete_documents("alpha", ["doc-03"])
    assert await store.document_count("alpha") == 6
    assert await store.chunk_counts("alpha", ["doc-02", "doc-03"]) == {"doc-02": 1}
    with pytest.raises(CollectionNotFound):
        await store.documents("nothing", 10, None)
    with pytest.raises(CollectionNotFound):
        await store.document_count("nothing")


async def test_service_lists_collections_with_counts_and_pages_documents(store):
    from deployments.errors import BadRequest

    service = VectorService(VectorConfig(), FakeEmbedder(), store=store)  # type: ignore[arg-type]
    assert await service.collections() == []
    for collection, docs in {"kb": {"a": 3, "b": 1, "c": 2}, "other": {"x": 1}}.items():
        chunks = [
            Chunk(chunk_id=f"{d}#{i}", doc_id=d, index=i, text=f"{d} text {i}")
            for d, n in docs.items()
            for i in range(n)
        ]
        await service.upsert(collection, chunks)
    listed = await service.collections()
    assert [(c.collection, c.points, c.documents) for c in listed] == [("kb", 6, 3), ("other", 1, 1)]
    assert [c.collection for c in await service.collections(only=["other", "never-created"])] == ["other"]
    assert await service.collections(only=[]) == []

    first = await service.documents("kb", limit=2)
    assert len(first.documents) == 2 and first.next_cursor is not None
    rest = await service.documents("kb", limit=2, cursor=first.next_cursor)
    assert rest.next_cursor is None
    assert sorted((d.doc_id, d.chunks) for d in first.documents + rest.documents) == [("a", 3), ("b", 1), ("c", 2)]
    with pytest.raises(BadRequest, match="cursor"):
        await service.documents("kb", cursor="not-a-point-id")
    with pytest.raises(BadRequest, match="limit"):
        await service.documents("kb", limit=0)
    with pytest.raises(CollectionNotFound):
        await service.documents("missing")


async def test_service_nearest_gives_the_dense_search_as_ids_and_scores(store):
    """The graph stage's seed lookup: the dense search's best k, as (chunk id, cosine) and nothing else."""
    service = VectorService(VectorConfig(), FakeEmbedder(), store=store)  # type: ignore[arg-type]
    chunks = [Chunk(chunk_id=f"{d}#0", doc_id=d, index=0, text=f"{d} text") for d in "abcd"]
    await service.upsert("kb", chunks)
    query = (await FakeEmbedder().embed(["b text"]))[0]
    dense = await service.search("kb", "", 3, None, "dense", query)
    nearest = await service.nearest("kb", query, 3)
    assert [c for c, _ in nearest] == [h.chunk_id for h in dense.hits] and len(nearest) == 3
    assert [s for _, s in nearest] == pytest.approx([h.score for h in dense.hits], abs=1e-6)
    assert all(type(c) is str and type(s) is float for c, s in nearest)
    assert [c for c, _ in await service.nearest("kb", query, 1)] == [nearest[0][0]]
