"""Index snapshots: a new Graph replica starts from the file next to the store, then catches up through the change
log, and answers as one built from the store; name-variant groups carried across builds."""

import asyncio

import pytest

from deployments.graph.index.collection import CollectionIndex, Found, PPRParams
from deployments.graph.service import GraphService
from tests.graph.test_graph_index import DOCS, REL_ROWS, DictPassages, chunk, chunks_of


@pytest.fixture
def collection(request) -> str:
    return request.node.name[:64]


# ---- snapshots: a new replica starts from the file, then catches up through the change log -------------------------


def test_a_snapshot_loads_the_index_it_was_taken_of(tmp_path):
    from deployments.graph.index import snapshot

    index = CollectionIndex(PPRParams(relation_weight=1.0))
    index.describe_entities({"ann lee": ("Ann Lee", "PERSON"), "bo lee": ("bo lee", "PERSON")})
    index.upsert([*REL_ROWS, chunk("gone", ("ann lee",))])
    index.remove_docs(["gone"])  # a dead slot: not written
    index.version = 7
    snapshot.save(index, tmp_path / "c.npz")
    loaded = snapshot.load(tmp_path / "c.npz", index.params)
    assert loaded.version == 7 and len(loaded) == 4 and "gone#0" not in loaded
    assert loaded.entity_info("ann lee") == ("Ann Lee", "PERSON") and loaded.entity_info("bo lee") == (
        "bo lee",
        "PERSON",
    )
    for query in ("Ann Lee", "Who is Rudy Dee?", "Paris"):
        assert loaded.search(query, 10).chunks == index.search(query, 10).chunks
        assert loaded.search(query, 10).reached == index.search(query, 10).reached
    found = [Found("ann#0", "ann")]
    assert loaded.relations_of(found, {"ann lee"}) == [("ann lee", "MOTHER_OF", "bo lee", 1.0)]
    loaded.upsert([chunk("later", ("bo lee",), lead=("bo lee",))])  # and it takes writes like any index
    assert "later" in {c.doc_id for c, _ in loaded.search("Bo Lee", 10).chunks}


async def test_a_replica_started_from_a_snapshot_answers_as_one_built_from_the_store(
    graph_config, collection, tmp_path
):
    """Replica a builds from the store and writes its snapshot; more documents arrive; replica b starts from the
    snapshot and catches up through the change log; replica c (no snapshots) reads the whole store. b and c answer
    alike, and b did not read the whole collection."""
    snap = graph_config.index.model_copy(update={"snapshot_dir": str(tmp_path), "relation_weight": 0.5})
    with_snap = graph_config.model_copy(update={"index": snap})
    plain = graph_config.model_copy(update={"index": snap.model_copy(update={"snapshot_dir": None})})
    passages = DictPassages({"d1#0": [1.0, 0.0], "d2#0": [0.0, 1.0], "d3#0": [0.0, 1.0], "d4#0": [0.6, 0.8]})
    a = GraphService(with_snap, with_snap.bolt_uri, passages=passages)
    b = GraphService(with_snap, with_snap.bolt_uri, passages=passages)
    c = GraphService(plain, plain.bolt_uri, passages=passages)
    try:
        await a.upsert(collection, chunks_of({"d1": DOCS["d1"], "d2": DOCS["d2"]}))
        await a.index_stats(collection)  # a's first build writes the snapshot (in the background)
        for _ in range(100):
            if (tmp_path / f"{collection}.npz").exists():
                break
            await asyncio.sleep(0.05)
        assert (tmp_path / f"{collection}.npz").exists()
        taken = (await a.index_stats(collection))["version"]
        await a.upsert(collection, chunks_of({"d3": DOCS["d3"], "d4": "Alice Smith met Bob Jones in Paris."}))
        await a.delete_documents(collection, ["d2"])
        stats_b, stats_c = await b.index_stats(collection), await c.index_stats(collection)
        assert b._live.loaded == {collection: taken} and stats_b["version"] > taken  # started from it, caught up
        same = ("version", "chunks", "entities", "mentions")
        assert {k: stats_b[k] for k in same} == {k: stats_c[k] for k in same}  # slots: b's dead one stays a while
        for query, vector in [("Who is Bob Jones?", None), ("garage", [1.0, 0.0]), ("Alice Smith", [0.6, 0.8])]:
            rb, rc = await b.search(collection, query, 1, 10, vector), await c.search(collection, query, 1, 10, vector)
            assert rb.chunks and rb.model_dump() == rc.model_dump()
    finally:
        for s in (a, b, c):
            await s.aclose()


def test_name_variant_groups_are_kept_across_builds_and_redone_when_their_names_change():
    index = CollectionIndex()
    index.upsert([chunk("a", ("rudolph giuliani",)), chunk("b", ("ann lee",))])
    assert index.link("Rudy Giuliani") == ["rudolph giuliani"]
    kept = index._variants.groups["lee"]
    index.upsert([chunk("c", ("rudy giuliani",))])  # the "giuliani" group changes, "lee" does not
    index.ensure_built()
    assert index._variants.groups["lee"] is kept
    assert ("rudolph giuliani", "rudy giuliani") in index._variants.pairs() or (
        "rudy giuliani",
        "rudolph giuliani",
    ) in index._variants.pairs()
    index.remove_docs(["a"])
    assert index.aliases_of("rudy giuliani") == []  # the group without Rudolph: no pair left
