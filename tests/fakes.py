"""Shared test doubles and data: in-process stages for the pipeline (the `Stages` of deployments.stages, without
Ray), a stand-in for Serve's metrics, and the documents and queries several test modules use."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
from neo4j import AsyncGraphDatabase

from deployments.config import AppConfig
from deployments.ingress.pipeline import Pipeline
from deployments.models import (
    ChatDelta,
    ChatResult,
    Chunk,
    CollectionSummary,
    DocumentPage,
    DocumentSummary,
    GraphResult,
    PackedVectors,
    RerankResult,
    ScoredChunk,
    Span,
    Subgraph,
    VectorResult,
)
from deployments.stages import Stages


def chunk(cid: str, text: str = "", score: float = 1.0) -> ScoredChunk:
    return ScoredChunk(chunk_id=cid, doc_id=cid.split("#")[0], text=text or f"text of {cid}", score=score)


class FakeStages:
    """Records what the pipeline asked of each stage; behaviour set per test (or by overriding a method:
    `stages()` looks the methods up when it is called)."""

    def __init__(self, vector_delay=0.0, graph_delay=0.0):
        self.vector_delay, self.graph_delay = vector_delay, graph_delay
        self.spans: dict[str, tuple[float, float]] = {}
        self.fail: dict[str, Exception] = {}
        self.stored: dict[str, set[str]] = {"vector": set(), "graph": set()}
        self.chat_answer = "Answer from the first passage [1] and the second [2]."

    async def _stage(self, name, delay):
        start = time.time()
        await asyncio.sleep(delay)
        self.spans[name] = (start, time.time())
        if name in self.fail:
            raise self.fail[name]

    async def embed(self, texts):
        await self._stage("embed", 0)
        return [[1.0, 0.0] for _ in texts]

    async def vector_search(self, collection, query, top_k, filt, mode="dense", query_vector=None):
        self.modes = [*getattr(self, "modes", []), mode]
        self.query_vectors = [*getattr(self, "query_vectors", []), query_vector]
        await self._stage("vector", self.vector_delay)
        lexical = getattr(self, "lexical_hits", None) if mode != "dense" else None
        hits = [chunk("a#0"), chunk("b#0")] if mode != "lexical" else []
        return VectorResult(hits=hits, lexical_hits=lexical, embed=Span(start=time.time(), end=time.time()))

    async def graph_search(self, collection, query, hops, limit, query_vector=None, texts=True, seeds=None):
        """As the in-memory index answers: asked without texts, ids and scores only (`texts` false)."""
        self.graph_query_vector = query_vector
        self.graph_seeds = [*getattr(self, "graph_seeds", []), seeds]
        self.graph_texts = [*getattr(self, "graph_texts", []), texts]
        await self._stage("graph", self.graph_delay)
        found = [chunk("c#0"), chunk("a#0")]
        if not texts:
            found = [c.model_copy(update={"text": ""}) for c in found]
        return GraphResult(chunks=found, subgraph=Subgraph(), texts=texts)

    async def vector_chunks(self, collection, chunk_ids):
        """The stored chunks (texts and vectors) of these ids: every id but those in `self.unstored`."""
        self.chunk_reads = [*getattr(self, "chunk_reads", []), list(chunk_ids)]
        await self._stage("vector_chunks", 0)
        found = [chunk(cid, score=0.0) for cid in chunk_ids if cid not in getattr(self, "unstored", set())]
        return VectorResult(hits=found, hit_vectors=PackedVectors.pack({c.chunk_id: [0.0, 1.0] for c in found}))

    async def graph_links(self, collection, query, seeds, chunk_ids):
        return {}

    async def graph_mention_table(self, collection, query, chunk_ids):
        """A replica without its in-memory index answers None: the ingress asks `links` after the rerank."""
        return None

    async def rerank(self, query, texts, hints):
        self.hints = hints
        await self._stage("rerank", 0)
        # Reverse the fused order so the test can see the reranker decided.
        return RerankResult(scores=[float(i) for i in range(len(texts))], scorer="test-scorer")

    async def chat(self, query, passages, facts):
        await self._stage("chat", 0)
        return ChatResult(answer=self.chat_answer, model="test-llm")

    async def chat_stream(self, query, passages, facts):
        """The whole chat answer as one piece."""
        result = await self.chat(query, passages, facts)
        yield ChatDelta(content=result.answer, model=result.model)

    async def vector_upsert(self, collection, chunks, given=None):
        await self._stage("vector", 0)
        self.stored["vector"] |= {c.doc_id for c in chunks}
        return len(chunks)

    async def graph_upsert(self, collection, chunks, given=None):
        await self._stage("graph", 0)
        self.stored["graph"] |= {c.doc_id for c in chunks}
        return {"entities": 3, "relations": 2}

    async def vector_delete(self, collection, doc_ids):
        self.stored["vector"] -= set(doc_ids)
        return 1

    async def graph_delete(self, collection, doc_ids):
        self.stored["graph"] -= set(doc_ids)
        return 1

    async def vector_drop(self, collection):
        return self._drop("vector")

    async def graph_drop(self, collection):
        return self._drop("graph")

    def _drop(self, store):
        """One collection per fake store: its points or chunks (one per document), None when it holds none."""
        held, self.stored[store] = len(self.stored[store]), set()
        return held or None

    async def dimension(self):
        return 2

    async def count_tokens(self, texts):
        return sum(len(t.split()) for t in texts)

    async def count(self, collection):
        return len(self.stored["vector"])

    async def counts(self, collection):
        return {"chunks": len(self.stored["graph"]), "entities": 3, "relations": 2}

    async def collections(self, only=None):
        names = ["a", "b"] if only is None else [n for n in ["a", "b"] if n in only]
        return [
            CollectionSummary(collection=n, points=len(self.stored["vector"]), documents=len(self.stored["vector"]))
            for n in names
        ]

    async def documents(self, collection, limit=100, cursor=None):
        docs = sorted(self.stored["vector"])[:limit]
        return DocumentPage(
            collection=collection, documents=[DocumentSummary(doc_id=d, chunks=1) for d in docs], next_cursor=None
        )

    async def ok(self):
        return "fine"

    async def down(self):
        raise ConnectionError("refused")

    def stages(self) -> Stages:
        return Stages(
            embedder=SimpleNamespace(
                embed=self.embed, dimension=self.dimension, count_tokens=self.count_tokens, ping=self.ok
            ),
            vector=SimpleNamespace(
                search=self.vector_search,
                chunks=self.vector_chunks,
                upsert=self.vector_upsert,
                delete_documents=self.vector_delete,
                drop_collection=self.vector_drop,
                count=self.count,
                collections=self.collections,
                documents=self.documents,
                ping=self.ok,
            ),
            graph=SimpleNamespace(
                search=self.graph_search,
                links=self.graph_links,
                mention_table=self.graph_mention_table,
                upsert=self.graph_upsert,
                delete_documents=self.graph_delete,
                drop_collection=self.graph_drop,
                counts=self.counts,
                ping=self.down,
            ),
            reranker=SimpleNamespace(rerank=self.rerank, ping=self.ok),
            chat=SimpleNamespace(answer=self.chat, answer_stream=self.chat_stream, ping=self.ok),
        )


def make(fake: FakeStages, **args) -> Pipeline:
    # These tests are about the vector + graph fan-out: the mode that runs both (the default).
    return Pipeline(
        AppConfig.from_args({"data_dir": "/tmp/graphrag-unit", "retrieval.mode": "hybrid+graph", **args}), fake.stages()
    )


class _Recorder:
    """One metric of RecordingMetrics: keeps every (value, tags) it was given."""

    def __init__(self, name: str, **options):
        self.name, self.options, self.values = name, options, []

    def observe(self, value, tags=None):
        self.values.append((value, tags or {}))

    def inc(self, value=1, tags=None):
        self.values.append((value, tags or {}))


class RecordingMetrics:
    """Stands in for `ray.serve.metrics` (StageMetrics(metrics=...)): metrics outside a Ray worker, recorded."""

    Histogram = _Recorder
    Counter = _Recorder


# ---- shared test data ---------------------------------------------------------------------------

# A chain of documents: alice -> acme (d1), acme -> bob (d2), bob -> paris (d3).
DOCS = {
    "d1": "Alice Smith founded Acme Corp in a garage.",
    "d2": "Acme Corp later hired Bob Jones as chief engineer.",
    "d3": "Bob Jones moved to Paris after retiring.",
}


def chunks_of(docs: dict[str, str], **meta) -> list[Chunk]:
    return [
        Chunk(chunk_id=f"{d}#0", doc_id=d, index=0, text=t, metadata={"source": d, **meta}) for d, t in docs.items()
    ]


async def raw(graph_config, query: str, **params):
    async with AsyncGraphDatabase.driver(
        graph_config.bolt_uri, auth=("root", graph_config.password.get_secret_value())
    ) as d:
        records, _, _ = await d.execute_query(query, params, database_=graph_config.database)
        return [r.data() for r in records]


INJECTIONS = [
    "`) DETACH DELETE n //",
    "x}) MATCH (n) DETACH DELETE n //",
    "Robert'); DROP TABLE students;--",
    '"quoted" \\ back\\slash',
    "{evil: $param}",
    "Ünïcödé 🚀 名前",
    "$keys",
]

WRITES = [
    # plain write clauses, any case, any white space
    "CREATE (n:X) RETURN n",
    "MATCH (n) SET n.x = 1",
    "match (n) set n += {x: 1}",
    "MATCH (n) DELETE n",
    "MATCH (n) DETACH DELETE n",
    "MATCH (n)\tDETACH\tDELETE\tn",
    "MATCH (n)\nDETACH\n\nDELETE n",
    "MATCH (n) REMOVE n.x",
    "MATCH (n) REMOVE n:Entity",
    "MERGE (n:X {k: 1}) RETURN n",
    "MaTcH (n) mErGe (m:X) RETURN m",
    "UNWIND [1, 2] AS i CREATE (:X {i: i})",
    "MATCH (n) FOREACH (x IN [1] | SET n.y = x)",
    "WITH 1 AS x INSERT (:X)",
    # hidden by comments: the comment ends, the write remains
    "MATCH (n) // harmless\nDELETE n",
    "MATCH (n) /* harmless */ DETACH /* still */ DELETE n",
    "MATCH (n) RETURN n /* unterminated comment DELETE n",
    "MATCH (n) RETURN 'unterminated string DELETE n",
    # subqueries
    "CALL { CREATE (n:X) RETURN n } RETURN n",
    "CALL { MATCH (n) DETACH DELETE n } RETURN 1",
    "MATCH (a) CALL (a) { SET a.x = 1 } RETURN a",
    "MATCH (n) CALL { WITH n DELETE n } IN TRANSACTIONS",
    # procedures and functions
    "CALL apoc.create.node(['X'], {})",
    "CALL apoc.periodic.iterate('MATCH (n) RETURN n', 'DELETE n', {})",
    "call dbms.killQuery('q-1')",
    "CALL db.createLabel('X')",
    "CALL `apoc.create.node`(['X'], {})",
    "RETURN apoc.cypher.runFirstColumnSingle('CREATE (n) RETURN n', {}) AS x",
    "RETURN `apoc`.cypher.run('CREATE (n)', {}) AS x",
    "RETURN `evil`(1)",
    # outside data, other databases, admin, several statements
    "LOAD CSV FROM 'file:///etc/passwd' AS line RETURN line",
    "WITH 1 AS x LOAD CSV FROM 'file:///etc/passwd' AS line RETURN line",
    "USING PERIODIC COMMIT LOAD CSV FROM 'x' AS l CREATE (:X)",
    "USE system MATCH (n) RETURN n",
    "SHOW USERS",
    "DROP INDEX chunk_doc_id",
    "CREATE INDEX x IF NOT EXISTS FOR (n:X) ON (n.y)",
    "MATCH (n) RETURN n; MATCH (m) DETACH DELETE m",
    "MATCH (n) RETURN n; CREATE (m)",
    # other query languages a server might accept
    "DELETE FROM V",
    "UPDATE Entity SET name = 'x'",
    "SELECT FROM Entity",
    # unicode: look-alikes and invisible characters never form a keyword we would miss
    "MATCH (n) ＣＲＥＡＴＥ (m)",
    "MATCH (n) CRE\u200bATE (m)",
    "MATCH (n)\u00a0DELETE n",
    "MATCH (n) DЕLETE n",  # a Cyrillic Е
    "MATCH (n) RETURN n\u2028DELETE n",
    "",
    "   \n\t ",
    "// only a comment",
]


SAMPLE = Path(__file__).resolve().parents[1] / "configs" / "sample"


def sample_documents() -> list[dict]:
    return [{"id": p.stem, "text": p.read_text(), "metadata": {"source": p.name}} for p in sorted(SAMPLE.glob("*.md"))]


FAKE_DIM = 8


class FakeEmbedder:
    """Deterministic FAKE_DIM-d unit vectors from the text's characters: listing and paging need stored points,
    not meaning."""

    async def embed(self, texts: list[str]) -> list[list[float]]:
        vectors = []
        for text in texts:
            v = np.zeros(FAKE_DIM, dtype=np.float32)
            hot = [1.0 + (ord(c) % 7) for c in text[:FAKE_DIM]]
            v[: len(hot)] = hot
            vectors.append((v / np.linalg.norm(v)).tolist())
        return vectors

    async def dimension(self) -> int:
        return FAKE_DIM
