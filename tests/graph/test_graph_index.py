"""The Graph replicas' in-memory index: the walk (no store), and its build and upkeep from a real ArcadeDB store
with two GraphService instances standing for two Graph replicas."""

import asyncio

import numpy as np
import pytest

from deployments.graph.index.collection import CollectionIndex, Found, IndexedChunk, PPRParams
from deployments.graph.service import GraphService
from deployments.models import Chunk


def chunk(cid: str, keys: tuple[str, ...], lead: tuple[str, ...] = ()) -> IndexedChunk:
    return IndexedChunk(chunk_id=f"{cid}#0", doc_id=cid, keys=keys, lead=lead)


# q is like the question; it mentions "nolan", which `about_nolan` is about and `mentions_nolan` only names.
ROWS = [
    chunk("q", ("inception", "nolan"), lead=("inception",)),
    chunk("about_nolan", ("nolan", "london"), lead=("nolan",)),
    chunk("mentions_nolan", ("nolan", "batman"), lead=("batman",)),
    chunk("unrelated", ("paris",), lead=("paris",)),
]
VECTORS = {
    "q": [1.0, 0.0, 0.0],
    "about_nolan": [0.0, 1.0, 0.0],
    "mentions_nolan": [0.0, 0.9, 0.1],
    "unrelated": [0.0, 0.0, 1.0],
}


def index_of(rows=ROWS, **params) -> CollectionIndex:
    index = CollectionIndex(PPRParams(**params))
    index.upsert(rows)
    return index


def nearest(vector, vectors=None) -> list[tuple[str, float]]:
    """(chunk id, cosine) of every passage with a vector, most similar first: what the vector stage's dense search
    gives the graph stage as seed passages."""
    vectors = vectors or {f"{d}#0": v for d, v in VECTORS.items()}
    q = np.asarray(vector, dtype=float) / np.linalg.norm(vector)
    cos = {c: float(np.dot(q, v) / np.linalg.norm(v)) for c, v in vectors.items()}
    return sorted(cos.items(), key=lambda kv: -kv[1])


class DictPassages:
    """The vector stage's two lookups over a dict of passage vectors (numpy cosines), recording what was asked."""

    def __init__(self, vectors: dict[str, list[float]]):
        self.stored = vectors
        self.asked: list[list[str]] = []

    async def nearest(self, collection: str, vector: list[float], k: int) -> list[tuple[str, float]]:
        return nearest(vector, self.stored)[:k]

    async def vectors(self, collection: str, chunk_ids: list[str]) -> dict[str, list[float]]:
        self.asked.append(list(chunk_ids))
        return {c: self.stored[c] for c in chunk_ids if c in self.stored}


def test_walk_from_the_most_similar_passage_reaches_the_passage_about_what_it_mentions():
    found = index_of(passage_seeds=1).search("anything", 10, seeds=nearest([1.0, 0.0, 0.0]))
    ids = [c.doc_id for c, _ in found.chunks]
    assert ids.index("about_nolan") < ids.index("mentions_nolan")  # lead weight: about beats mentions
    assert "unrelated" not in ids  # no shared entity, no mass
    assert "nolan" in found.reached


def test_without_lead_weight_about_and_mentions_tie():
    found = dict(
        (c.doc_id, s)
        for c, s in index_of(passage_seeds=1, lead_weight=0.0).search("x", 10, nearest([1.0, 0.0, 0.0])).chunks
    )
    assert found["about_nolan"] == pytest.approx(found["mentions_nolan"])


def test_entity_seeds_without_a_vector_and_with_hops_zero():
    index = index_of()
    assert set(index.link("Where does Nolan live, in London?")) == {"nolan", "london"}
    by_entities = [c.doc_id for c, _ in index.search("Where is Paris?", 10).chunks]
    assert by_entities == ["unrelated"]
    # hops = 0: the vector is ignored, only passages mentioning linked entities
    assert [c.doc_id for c, _ in index.search("Where is Paris?", 10, nearest([1.0, 0.0, 0.0]), hops=0).chunks] == [
        "unrelated"
    ]
    assert index.search("no known words here", 10).chunks == []


def test_restart_weight_keeps_the_seed_passage_ahead_of_what_the_walk_reaches():
    # Without the restart term the seed passage q scores only the mass that flows back to it through its own
    # entities, below the passage about the entity it mentions; with it, q keeps its restart mass on top.
    rows = [chunk("q", ("nolan",)), *ROWS[1:]]  # q only mentions nolan, so the walk carries little back to it

    def scores(**params):
        return {
            c.doc_id: s
            for c, s in index_of(rows, passage_seeds=1, **params).search("x", 10, nearest([1.0, 0.0, 0.0])).chunks
        }

    walk_only, with_restart = scores(), scores(restart_weight=1.0)
    assert walk_only["q"] < walk_only["about_nolan"]
    assert with_restart["q"] > with_restart["about_nolan"]
    assert with_restart["about_nolan"] == pytest.approx(walk_only["about_nolan"])  # the walk itself is unchanged


def test_beside_passage_seeds_only_the_names_a_query_writes_seed_the_walk():
    # "paris" as a name seeds the walk; "london" written as a common lower-case word does not, though both link.
    index = index_of(passage_seeds=1, entity_seed_weight=1.0)
    assert set(index.link("born in london, moved to Paris")) == {"london", "paris"}
    ids = [c.doc_id for c, _ in index.search("born in london, moved to Paris", 10, nearest([1.0, 0.0, 0.0])).chunks]
    assert "unrelated" in ids  # about Paris: reached only through the entity seed
    lowercase = {
        c.doc_id: s for c, s in index.search("born in london, moved to paris", 10, nearest([1.0, 0.0, 0.0])).chunks
    }
    named = {
        c.doc_id: s for c, s in index.search("born in london, moved to Paris", 10, nearest([1.0, 0.0, 0.0])).chunks
    }
    assert "unrelated" not in lowercase
    # the "london" link adds nothing beside the passage seed: about_nolan (which mentions London) scores the same
    # as with no entity seed at all
    plain = {c.doc_id: s for c, s in index_of(passage_seeds=1).search("x", 10, nearest([1.0, 0.0, 0.0])).chunks}
    assert lowercase["about_nolan"] == pytest.approx(plain["about_nolan"])
    assert named["unrelated"] > 0


def test_remove_and_replace_documents():
    index = index_of(passage_seeds=1)
    assert index.remove_docs(["about_nolan"]) == 1
    ids = [c.doc_id for c, _ in index.search("x", 10, nearest([1.0, 0.0, 0.0])).chunks]
    assert "about_nolan" not in ids and "mentions_nolan" in ids
    index.upsert([chunk("unrelated", ("paris", "nolan"), lead=("nolan",))])
    index.remove_docs([])  # no-op
    ids = [c.doc_id for c, _ in index.search("x", 10, nearest([1.0, 0.0, 0.0])).chunks]
    assert ids.index("unrelated") < ids.index("mentions_nolan")  # now about nolan
    assert index.stats()["chunks"] == 3


def test_empty_index():
    assert CollectionIndex().search("Nolan", 5, [("q#0", 1.0)]).chunks == []


# ---- against the store: build, upkeep on ingest and delete, two replicas ------------------------------------------


DOCS = {
    "d1": "Alice Smith founded Acme Corp in a garage.",
    "d2": "Acme Corp later hired Bob Jones as chief engineer.",
    "d3": "Bob Jones moved to Paris after retiring.",
}


def chunks_of(docs: dict[str, str]) -> list[Chunk]:
    return [Chunk(chunk_id=f"{d}#0", doc_id=d, index=0, text=t, metadata={"source": d}) for d, t in docs.items()]


@pytest.fixture
def collection(request) -> str:
    return request.node.name[:64]


@pytest.fixture
async def replicas(graph_config):
    """Two Graph replicas over one store; each checks the store's version at most every 50 ms. The walk follows
    mentions only (relation_weight 0): these tests are about upkeep, the relation edges have their own."""
    index = graph_config.index.model_copy(update={"check_interval_ms": 50.0, "relation_weight": 0.0})
    config = graph_config.model_copy(update={"index": index})
    a, b = GraphService(config, config.bolt_uri), GraphService(config, config.bolt_uri)
    yield a, b
    await a.aclose()
    await b.aclose()


async def doc_ids(service: GraphService, collection: str, query: str) -> set[str]:
    return {c.doc_id for c in (await service.search(collection, query, 1, 10)).chunks}


async def test_index_built_from_the_store_and_kept_current_on_both_replicas(replicas, collection):
    a, b = replicas
    await a.upsert(collection, chunks_of({"d1": DOCS["d1"], "d2": DOCS["d2"]}))
    # b has never seen the collection: its first search builds the index from the store
    assert await doc_ids(b, collection, "Who is Bob Jones?") == {"d2"}
    version = (await b.index_stats(collection))["version"]
    assert version >= 1

    await a.upsert(collection, chunks_of({"d3": DOCS["d3"]}))  # ingest through replica a ...
    await asyncio.sleep(0.06)  # ... visible on b within its check interval
    assert await doc_ids(b, collection, "Who is Bob Jones?") == {"d2", "d3"}
    stats = await b.index_stats(collection)
    assert stats["version"] == version + 1 and stats["chunks"] == 3

    assert await a.delete_documents(collection, ["d2"]) == 1  # delete through a
    await asyncio.sleep(0.06)
    assert await doc_ids(b, collection, "Who is Bob Jones?") == {"d3"}
    assert await doc_ids(a, collection, "Who is Bob Jones?") == {"d3"}  # and on the writer itself
    assert (await b.index_stats(collection))["chunks"] == 2

    # re-ingesting a document replaces its chunks in the index too
    await b.upsert(collection, chunks_of({"d3": "Bob Jones moved to Rome after retiring."}))
    await asyncio.sleep(0.06)
    text = {c.doc_id: c.text for c in (await a.search(collection, "Bob Jones", 1, 10)).chunks}
    assert text == {"d3": "Bob Jones moved to Rome after retiring."}


async def test_passage_seeds_are_the_vector_stages_nearest_passages_to_the_query(graph_config, collection):
    """With an embedder and the vector stage, the walk starts at the passage most similar to the query (d1) and
    reaches d2, the passage about Acme Corp, which d1 mentions; the query names neither. The index holds no
    vectors: the vector stage is asked for the stored vectors of the chunks found, and only those."""
    passages = DictPassages({"d1#0": [1.0, 0.0], "d2#0": [0.0, 1.0], "d3#0": [0.0, 1.0]})

    async def embed(texts: list[str]) -> list[list[float]]:
        return [[1.0, 0.0] for _ in texts]

    docs = {"d1": DOCS["d1"], "d2": "Acme Corp makes anvils. It hired Bob Jones.", "d3": DOCS["d3"]}
    service = GraphService(graph_config, graph_config.bolt_uri, embed=embed, passages=passages)
    try:
        await service.upsert(collection, chunks_of(docs))
        result = await service.search(collection, "what garage story?", 1, 10)
        ids = [c.doc_id for c in result.chunks]
        assert ids[:2] == ["d1", "d2"]
        assert result.chunks[0].text == DOCS["d1"] and result.chunks[0].metadata == {"source": "d1"}  # from the store
        assert passages.asked == [[c.chunk_id for c in result.chunks]]
        assert "acme corp" in {n.id for n in result.subgraph.nodes}
        assert not hasattr(service.index_of(collection), "_vecs")
    finally:
        await service.aclose()


async def test_a_query_vector_sent_with_the_search_seeds_the_walk_without_an_embedder(graph_config, collection):
    """The ingress embeds the query once and sends the vector to the graph stage, which then embeds nothing; without
    a vector, the walk starts from the entities the query names (none here: no result)."""
    passages = DictPassages({"d1#0": [1.0, 0.0], "d2#0": [0.0, 1.0], "d3#0": [0.0, 1.0]})

    async def no_embedding(texts: list[str]) -> list[list[float]]:
        raise AssertionError("the query's vector came with the search")

    docs = {"d1": DOCS["d1"], "d2": "Acme Corp makes anvils. It hired Bob Jones.", "d3": DOCS["d3"]}
    service = GraphService(graph_config, graph_config.bolt_uri, embed=no_embedding, passages=passages)
    bare = GraphService(graph_config, graph_config.bolt_uri, passages=passages)
    try:
        await service.upsert(collection, chunks_of(docs))
        seeded = await service.search(collection, "what garage story?", 1, 10, [1.0, 0.0])
        assert [c.doc_id for c in seeded.chunks][:2] == ["d1", "d2"]
        carried = seeded.vectors.unpack()  # the chunks' stored vectors travel with them (for the reranker)
        assert set(carried) == {c.chunk_id for c in seeded.chunks} and np.allclose(carried["d1#0"], [1.0, 0.0])
        assert [c.doc_id for c in (await bare.search(collection, "what garage story?", 1, 10, [1.0, 0.0])).chunks][
            :2
        ] == ["d1", "d2"]
        assert (await bare.search(collection, "what garage story?", 1, 10)).chunks == []
    finally:
        await service.aclose()
        await bare.aclose()


async def test_asked_without_texts_the_index_answers_ids_and_scores_and_reads_nothing(graph_config, collection):
    """texts=False (how the ingress asks): the same chunks and scores as with texts, none read from the store or
    the vector stage (the ingress reads those it lacks from the vector stage itself)."""
    passages = DictPassages({"d1#0": [1.0, 0.0], "d2#0": [0.0, 1.0], "d3#0": [0.0, 1.0]})
    docs = {"d1": DOCS["d1"], "d2": "Acme Corp makes anvils. It hired Bob Jones.", "d3": DOCS["d3"]}
    service = GraphService(graph_config, graph_config.bolt_uri, passages=passages)
    try:
        await service.upsert(collection, chunks_of(docs))
        full = await service.search(collection, "what garage story?", 1, 10, [1.0, 0.0])
        asked = list(passages.asked)
        bare = await service.search(collection, "what garage story?", 1, 10, [1.0, 0.0], texts=False)
        assert passages.asked == asked  # no vectors read
        assert not bare.texts and bare.vectors is None and {c.text for c in bare.chunks} == {""}
        assert [(c.chunk_id, c.doc_id, c.score) for c in bare.chunks] == [
            (c.chunk_id, c.doc_id, c.score) for c in full.chunks
        ]
        assert full.texts and bare.subgraph == full.subgraph
    finally:
        await service.aclose()


async def test_seed_passages_sent_with_the_search_answer_as_the_lookup_and_ask_nothing(graph_config, collection):
    """The ingress sends the vector stage's dense hits as `seeds`: the same chunks and scores as when the replica
    looks them up, with no call to the vector stage; other seeds walk elsewhere."""

    class Counted(DictPassages):
        looked_up = 0

        async def nearest(self, collection, vector, k):
            self.looked_up += 1
            return await super().nearest(collection, vector, k)

    passages = Counted({"d1#0": [1.0, 0.0], "d2#0": [0.0, 1.0], "d3#0": [0.0, 1.0]})
    docs = {"d1": DOCS["d1"], "d2": "Acme Corp makes anvils. It hired Bob Jones.", "d3": DOCS["d3"]}
    service = GraphService(graph_config, graph_config.bolt_uri, passages=passages)
    try:
        await service.upsert(collection, chunks_of(docs))
        looked = await service.search(collection, "what garage story?", 1, 10, [1.0, 0.0], texts=False)
        assert passages.looked_up == 1
        given = await service.search(
            collection, "what garage story?", 1, 10, [1.0, 0.0], texts=False, seeds=[("d1#0", 1.0), ("d2#0", 0.0)]
        )
        assert passages.looked_up == 1  # asked nothing
        assert [(c.chunk_id, c.score) for c in given.chunks] == [(c.chunk_id, c.score) for c in looked.chunks]
        other = await service.search(collection, "what garage story?", 1, 10, None, texts=False, seeds=[("d3#0", 1.0)])
        assert other.chunks[0].chunk_id == "d3#0" and passages.looked_up == 1
    finally:
        await service.aclose()


async def test_a_failing_vector_stage_leaves_the_walk_its_entity_seeds(graph_config, collection):
    class Down(DictPassages):
        async def nearest(self, collection, vector, k):
            raise ConnectionError("vector stage down")

        async def vectors(self, collection, chunk_ids):
            raise ConnectionError("vector stage down")

    # Mentions only (relation_weight 0): the typed relation "Acme Corp -HIRE-> Bob Jones" would also reach d1.
    index = graph_config.index.model_copy(update={"relation_weight": 0.0})
    config = graph_config.model_copy(update={"index": index})
    service = GraphService(config, config.bolt_uri, passages=Down({}))
    try:
        await service.upsert(collection, chunks_of(DOCS))
        result = await service.search(collection, "Who is Bob Jones?", 1, 10, [1.0, 0.0])
        assert {c.doc_id for c in result.chunks} == {"d2", "d3"} and result.vectors is None
    finally:
        await service.aclose()


def test_many_replacements_compact_the_slots_and_keep_results():
    index = index_of(passage_seeds=1)
    expected = [c.doc_id for c, _ in index.search("x", 10, nearest([1.0, 0.0, 0.0])).chunks]
    for _ in range(700):  # 2,800 replaced chunks: dead slots pass the compaction threshold
        index.upsert(ROWS)
        index.ensure_built()
    stats = index.stats()
    assert stats["chunks"] == 4 and stats["slots"] < 2000
    assert [c.doc_id for c, _ in index.search("x", 10, nearest([1.0, 0.0, 0.0])).chunks] == expected


async def test_a_first_build_that_outlasts_a_search_timeout_completes_once():
    """A first search whose index build outlasts its timeout (a large collection) must not cancel the build: the
    build goes on, and the next search gets it without reading the collection again."""
    from deployments.graph.index.live import LiveIndexes

    builds = 0
    row = {"id": "d1#0", "doc_id": "d1", "keys": ["acme"], "lead": ["acme"]}

    async def read(work, timeout):
        nonlocal builds
        if timeout == 300:
            builds += 1
            await asyncio.sleep(1.0)  # longer than the first search waits
            return 1, [], [row], []
        return 1

    live = LiveIndexes(read, PPRParams(), check_interval_s=0, check_timeout_s=5, build_timeout_s=300)
    with pytest.raises(asyncio.TimeoutError):
        await asyncio.wait_for(live.get("c"), timeout=0.2)
    assert len(await live.get("c")) == 1 and builds == 1


async def test_a_replica_warms_the_index_of_every_stored_collection_at_start(replicas, collection):
    a, b = replicas
    await a.upsert(collection, chunks_of({"d1": DOCS["d1"], "d2": DOCS["d2"]}))
    assert b.index_of(collection) is None
    await b.start_warming()  # what a Graph replica does when it starts, in the background
    warmed = b.index_of(collection)
    assert warmed is not None and len(warmed) == 2  # built before any search asked for it


@pytest.mark.filterwarnings("ignore:coroutine 'Graph.__del__' was never awaited")  # Serve awaits it; GC cannot
async def test_a_graph_replica_takes_traffic_only_once_its_indexes_are_warm(replicas, graph_config, collection):
    """Serve routes to a replica when its constructor returns: the Graph deployment's waits for the warm-up
    (`warm_before_serving`), so a replica the autoscaler adds never makes a search wait for its index to load."""
    from deployments.graph.deployment import Graph

    writer, _ = replicas
    await writer.upsert(collection, chunks_of({"d1": DOCS["d1"], "d2": DOCS["d2"]}))
    cls = Graph.func_or_class
    for wait, warmed in ((True, True), (False, False)):
        index = graph_config.index.model_copy(update={"warm_before_serving": wait})
        replica = cls.__new__(cls)
        await replica.__init__(graph_config.model_copy(update={"index": index}))
        try:
            assert (replica.index_of(collection) is not None) is warmed
        finally:
            await replica.aclose()


async def test_a_whole_collection_is_read_under_the_build_timeout_and_changes_under_the_check_timeout():
    from deployments.graph.index.live import LiveIndexes

    timeouts: list[float] = []
    row = {"id": "d1#0", "doc_id": "d1", "keys": ["acme"], "lead": ["acme"]}

    async def read(work, timeout):
        timeouts.append(timeout)
        if len(timeouts) == 1:
            return 1, [], [row], [{"key": "acme", "name": "Acme", "type": "ORG"}]  # the first build
        return 1  # later: the version check, unchanged

    live = LiveIndexes(read, PPRParams(), check_interval_s=0, check_timeout_s=5, build_timeout_s=300)
    assert len(await live.get("c")) == 1
    await live.get("c")
    assert timeouts == [300, 5]


BOB = "Who is Bob Jones?"


async def test_a_dropped_collection_leaves_the_store_and_both_replicas_indexes(replicas, collection):
    """DELETE /v1/collections/{c}'s graph half: the writer's index goes at once, the other's at its next check."""
    a, b = replicas
    dropme, keepme = collection[:59] + "-drop", collection[:59] + "-keep"
    await a.upsert(dropme, chunks_of(DOCS))
    await a.upsert(keepme, chunks_of(DOCS))
    assert await doc_ids(a, dropme, BOB) == await doc_ids(b, dropme, BOB) == {"d2", "d3"}  # both indexes built
    before = await a.counts(dropme)
    assert before["chunks"] == 3 and before["entities"] > 0

    assert await b.drop_collection(dropme) == 3  # through replica b
    assert b.index_of(dropme) is None  # the writer's index is gone at once
    assert await a.counts(dropme) == {"chunks": 0, "entities": 0, "relations": 0}
    await asyncio.sleep(0.06)
    assert await doc_ids(a, dropme, BOB) == set() and await doc_ids(b, dropme, BOB) == set()  # a's within its interval
    assert await doc_ids(a, keepme, BOB) == {"d2", "d3"} and (await a.counts(keepme))["chunks"] == 3  # untouched

    assert await a.drop_collection(dropme) is None  # nothing left to drop
    assert await a.drop_collection(collection[:59] + "-none") is None

    # The name can be used again; the replicas' indexes follow the new content, never the old.
    await a.upsert(dropme, chunks_of({"d9": "Bob Jones opened a bakery in Lyon."}))
    await asyncio.sleep(0.06)
    assert await doc_ids(a, dropme, BOB) == await doc_ids(b, dropme, BOB) == {"d9"}


# ---- relation and alias edges in the walk (no store) ---------------------------------------------------------------

# The question's passage states "Ann Lee -MOTHER_OF-> Bo Lee" without Bo's passage sharing a name with it, except
# through that relation: Bo's passage is about "bo lee"; the question names only Ann.
REL_ROWS = [
    IndexedChunk("ann#0", "ann", keys=("ann lee", "bo lee"), lead=("ann lee",),
                 relations=(("ann lee", "MOTHER_OF", "bo lee", 1.0),)),
    IndexedChunk("bo#0", "bo", keys=("bo lee", "paris"), lead=("bo lee",)),
    IndexedChunk("cy#0", "cy", keys=("cy", "ann lee"), lead=("cy",), relations=(("cy", "CO_OCCURS", "ann lee", 1.0),)),
    IndexedChunk("dee#0", "dee", keys=("dee",), lead=("dee",), aliases=(("rudy dee", "dee"),)),
]  # fmt: skip


def test_mass_flows_along_typed_relations_not_co_occurrence():
    plain = CollectionIndex(PPRParams(relation_weight=0.0))
    related = CollectionIndex(PPRParams(relation_weight=1.0))
    for index in (plain, related):
        index.upsert(REL_ROWS)
    walk = {c.doc_id: s for c, s in related.search("Ann Lee", 10).chunks}
    before = {c.doc_id: s for c, s in plain.search("Ann Lee", 10).chunks}
    assert "bo" not in before  # the mention walk from "ann lee" stops at the passages mentioning her
    assert walk["bo"] > 0  # ann lee -MOTHER_OF-> bo lee carries mass on to the passage about Bo
    # the CO_OCCURS edge (cy ~ ann lee) takes no part: cy gets only what its mention of Ann brings
    assert walk["cy"] == pytest.approx(before["cy"])
    everything = CollectionIndex(PPRParams(relation_weight=1.0, relation_types="all"))
    everything.upsert(REL_ROWS)
    assert {c.doc_id: s for c, s in everything.search("Ann Lee", 10).chunks}["cy"] > walk["cy"]  # as it would
    found = [Found(r.chunk_id, r.doc_id) for r in (REL_ROWS[0], REL_ROWS[2])]
    assert related.relations_of(found, {"ann lee"}) == [("ann lee", "MOTHER_OF", "bo lee", 1.0)]


def test_aliases_and_name_variants_link_the_entity():
    index = CollectionIndex()
    index.describe_entities({"rudolph giuliani": ("Rudolph Giuliani", "PERSON")})
    index.upsert([*REL_ROWS, IndexedChunk("rg#0", "rg", keys=("rudolph giuliani",), lead=("rudolph giuliani",))])
    assert index.link("Who is Rudy Dee?") == ["dee"]  # an alias a chunk states
    assert index.link("When was Rudy Giuliani born?") == ["rudolph giuliani"]  # a name variant: Rudy / Rudolph
    assert index.canonical("rudy giuliani") == "rudolph giuliani"
    assert index.aliases_of("dee") == ["rudy dee"]
    assert index.link("Who is Ruth Giuliani?") == []  # "Ruth" is not a form of "Rudolph"


def test_name_variants():
    from deployments.graph.index.aliases import variants

    assert variants("rudy giuliani", "rudolph william louis giuliani")
    assert variants("r giuliani", "rudolph giuliani")
    assert not variants("john smith", "jonathan smith")  # two letters shared: not enough
    assert not variants("albert e smith", "alan b smith")  # middle initials disagree
    assert not variants("giuliani", "rudolph giuliani")  # a lone surname is an in-chunk alias, not a variant
