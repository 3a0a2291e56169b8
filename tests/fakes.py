"""Shared test doubles: in-process stages for the pipeline (the `Stages` of deployments.stages, without Ray)."""
from __future__ import annotations

import asyncio
import time
from types import SimpleNamespace

from deployments.config import AppConfig
from deployments.ingress.pipeline import Pipeline
from deployments.models import (
    ChatDelta,
    ChatResult,
    CollectionSummary,
    DocumentPage,
    DocumentSummary,
    GraphResult,
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

    async def vector_search(self, collection, query, top_k, filt, mode="dense"):
        self.modes = [*getattr(self, "modes", []), mode]
        await self._stage("vector", self.vector_delay)
        lexical = getattr(self, "lexical_hits", None) if mode != "dense" else None
        hits = [chunk("a#0"), chunk("b#0")] if mode != "lexical" else []
        return VectorResult(hits=hits, lexical_hits=lexical, embed=Span(start=time.time(), end=time.time()))

    async def graph_search(self, collection, query, hops, limit):
        await self._stage("graph", self.graph_delay)
        return GraphResult(chunks=[chunk("c#0"), chunk("a#0")], subgraph=Subgraph())

    async def graph_links(self, collection, query, seeds, chunk_ids):
        return {}

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

    async def vector_upsert(self, collection, chunks):
        await self._stage("vector", 0)
        self.stored["vector"] |= {c.doc_id for c in chunks}
        return len(chunks)

    async def graph_upsert(self, collection, chunks):
        await self._stage("graph", 0)
        self.stored["graph"] |= {c.doc_id for c in chunks}
        return {"entities": 3, "relations": 2}

    async def vector_delete(self, collection, doc_ids):
        self.stored["vector"] -= set(doc_ids)
        return 1

    async def graph_delete(self, collection, doc_ids):
        self.stored["graph"] -= set(doc_ids)
        return 1

    async def count(self, collection):
        return len(self.stored["vector"])

    async def counts(self, collection):
        return {"chunks": len(self.stored["graph"]), "entities": 3, "relations": 2}

    async def collections(self, only=None):
        names = ["a", "b"] if only is None else [n for n in ["a", "b"] if n in only]
        return [CollectionSummary(collection=n, points=len(self.stored["vector"]), documents=len(self.stored["vector"])) for n in names]

    async def documents(self, collection, limit=100, cursor=None):
        docs = sorted(self.stored["vector"])[:limit]
        return DocumentPage(collection=collection, documents=[DocumentSummary(doc_id=d, chunks=1) for d in docs], next_cursor=None)

    async def ok(self):
        return "fine"

    async def down(self):
        raise ConnectionError("refused")

    def stages(self) -> Stages:
        return Stages(
            embedder=SimpleNamespace(ping=self.ok),
            vector=SimpleNamespace(
                search=self.vector_search, upsert=self.vector_upsert, delete_documents=self.vector_delete,
                count=self.count, collections=self.collections, documents=self.documents, ping=self.ok,
            ),
            graph=SimpleNamespace(
                search=self.graph_search, links=self.graph_links, upsert=self.graph_upsert,
                delete_documents=self.graph_delete, counts=self.counts, ping=self.down,
            ),
            reranker=SimpleNamespace(rerank=self.rerank, ping=self.ok),
            chat=SimpleNamespace(answer=self.chat, answer_stream=self.chat_stream, ping=self.ok),
        )


def make(fake: FakeStages, **args) -> Pipeline:
    # These tests are about the vector + graph fan-out: the mode that runs both (the default is "hybrid").
    return Pipeline(AppConfig.from_args({"data_dir": "/tmp/graphrag-unit", "retrieval.mode": "hybrid+graph", **args}), fake.stages())
