"""Request logic behind the ingress: concurrent fan-out, fusion, rerank, answer, ingest.

Plain asyncio over injected stage callables, so it runs and is tested without Ray; the ingress wires it
to deployment handles. It never sees HTTP objects.
"""
from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

from deployments.chat import ExtractiveChat, parse_citations
from deployments.chunking import chunk_document
from deployments.config import AppConfig
from deployments.errors import CollectionNotFound, StageError, StageUnavailable
from deployments.models import (
    AnswerRequest,
    AnswerResponse,
    ChatResult,
    Chunk,
    CollectionStats,
    Citation,
    Degraded,
    GraphResult,
    Hit,
    IngestRequest,
    IngestResponse,
    RerankHints,
    RerankResult,
    RetrieveRequest,
    RetrieveResponse,
    ScoredChunk,
    Span,
    StageHealth,
    StageTiming,
    Subgraph,
    Timings,
    VectorResult,
)

log = logging.getLogger("graphrag.pipeline")
T = TypeVar("T")


@dataclass
class Stages:
    """The calls the pipeline makes, one per stage method (deployment handles in the app, plain objects in tests)."""

    vector_search: Callable[[str, str, int, dict], Awaitable[VectorResult]]
    graph_search: Callable[[str, str, int, int], Awaitable[GraphResult]]
    rerank: Callable[[str, list[str], RerankHints], Awaitable[RerankResult]]
    chat: Callable[[str, list[str], list[str]], Awaitable[ChatResult]]
    vector_upsert: Callable[[str, list[Chunk]], Awaitable[int]]
    graph_upsert: Callable[[str, list[Chunk]], Awaitable[dict]]
    vector_delete: Callable[[str, list[str]], Awaitable[int]]
    graph_delete: Callable[[str, list[str]], Awaitable[int]]
    vector_count: Callable[[str], Awaitable[int]]
    graph_counts: Callable[[str], Awaitable[dict]]
    pings: dict[str, Callable[[], Awaitable[str]]]


class _Clock:
    """Stage timings as offsets from the request's start, in wall-clock time so remote spans line up."""

    def __init__(self) -> None:
        self.t0 = time.time()

    def timing(self, start: float, end: float) -> StageTiming:
        return StageTiming(start_ms=round((start - self.t0) * 1000, 3), duration_ms=round((end - start) * 1000, 3))


def _reason(exc: BaseException, timeout: float) -> str:
    if isinstance(exc, asyncio.TimeoutError | TimeoutError):
        return f"timed out after {timeout:g}s"
    if isinstance(exc, StageError):
        return exc.reason
    text = str(exc).strip().splitlines()
    # Ray wraps remote errors with a traceback; the last line holds the cause.
    return f"{type(exc).__name__}: {text[-1] if text else ''}"[:500]


async def _run_stage(stage: str, call: Awaitable[T], timeout: float, clock: _Clock) -> tuple[T | None, Degraded | None, StageTiming]:
    start = time.time()
    try:
        result = await asyncio.wait_for(call, timeout)
        return result, None, clock.timing(start, time.time())
    except CollectionNotFound:
        raise
    except Exception as exc:  # reported as degraded, never swallowed
        log.warning("stage %s failed: %s", stage, _reason(exc, timeout))
        return None, Degraded(stage=stage, error=_reason(exc, timeout)), clock.timing(start, time.time())


def reciprocal_rank_fusion(ranked: dict[str, list[ScoredChunk]], k: int) -> list[tuple[ScoredChunk, float, list[str]]]:
    """Fuses ranked lists by RRF: score(d) = sum over lists of 1 / (k + rank). Returns (chunk, score, sources)."""
    fused: dict[str, list] = {}
    for source, chunks in ranked.items():
        for rank, chunk in enumerate(chunks, start=1):
            entry = fused.setdefault(chunk.chunk_id, [chunk, 0.0, []])
            entry[1] += 1.0 / (k + rank)
            entry[2].append(source)
    return sorted((tuple(e) for e in fused.values()), key=lambda e: e[1], reverse=True)


def graph_facts(subgraph: Subgraph, limit: int = 20) -> list[str]:
    names = {n.id: n.name for n in subgraph.nodes}
    facts = []
    for edge in sorted(subgraph.edges, key=lambda e: e.weight, reverse=True)[:limit]:
        if edge.source in names and edge.target in names:
            facts.append(f"{names[edge.source]} -[{edge.type}]- {names[edge.target]}")
    return facts


class Pipeline:
    def __init__(self, config: AppConfig, stages: Stages):
        self.config = config
        self.stages = stages
        self.extractive = ExtractiveChat()

    async def retrieve(self, req: RetrieveRequest) -> RetrieveResponse:
        return await self._retrieve(req, _Clock())

    async def _retrieve(self, req: RetrieveRequest, clock: _Clock) -> RetrieveResponse:
        cfg = self.config.retrieval
        top_k = req.top_k or cfg.top_k
        candidates = max(cfg.candidates, top_k)
        hops = self.config.graph.max_hops if req.max_hops is None else req.max_hops
        # The two retrieval stages run concurrently; neither waits for the other (or for the query embedding).
        (vec, vec_err, vec_t), (grf, grf_err, grf_t) = await asyncio.gather(
            _run_stage("vector", self.stages.vector_search(req.collection, req.query, candidates, req.filter), cfg.vector_timeout_s, clock),
            _run_stage("graph", self.stages.graph_search(req.collection, req.query, hops, candidates), cfg.graph_timeout_s, clock),
        )
        degraded = [d for d in (vec_err, grf_err) if d]
        if vec_err and grf_err:
            raise StageUnavailable("vector+graph", f"vector: {vec_err.error}; graph: {grf_err.error}")
        timings = Timings(vector=vec_t, graph=grf_t)
        if vec is not None:
            timings.embed = clock.timing(vec.embed.start, vec.embed.end)
        ranked = {}
        if vec is not None:
            ranked["vector"] = vec.hits
        if grf is not None:
            ranked["graph"] = grf.chunks
        fused = reciprocal_rank_fusion(ranked, cfg.rrf_k)[:candidates]
        hits = [
            Hit(chunk_id=c.chunk_id, doc_id=c.doc_id, text=c.text, score=score, sources=sources, metadata=c.metadata)
            for c, score, sources in fused
        ]
        scorer = None
        if hits:
            hints = RerankHints(
                collection=req.collection,
                chunk_ids=[h.chunk_id for h in hits],
                query_vector=vec.query_vector if vec is not None else None,
            )
            rer, rer_err, timings.rerank = await _run_stage(
                "rerank", self.stages.rerank(req.query, [h.text for h in hits], hints), cfg.rerank_timeout_s, clock
            )
            if rer_err:
                degraded.append(rer_err)  # keep the fused order
            else:
                scorer = rer.scorer
                for hit, score in zip(hits, rer.scores, strict=True):
                    hit.score = float(score)
                hits.sort(key=lambda h: h.score, reverse=True)
        timings.total = clock.timing(clock.t0, time.time())
        return RetrieveResponse(
            query=req.query,
            collection=req.collection,
            hits=hits[:top_k],
            graph=grf.subgraph if grf is not None else Subgraph(),
            timings=timings,
            degraded=degraded,
            reranker=scorer,
        )

    async def answer(self, req: AnswerRequest) -> AnswerResponse:
        clock = _Clock()
        retrieved = await self._retrieve(req, clock)
        passages = retrieved.hits[: self.config.chat.max_passages]
        texts = [h.text for h in passages]
        facts = graph_facts(retrieved.graph)
        degraded = list(retrieved.degraded)
        if not passages:
            result = ChatResult(answer="No ingested passage matches this question.", model="none")
        else:
            result, chat_err, retrieved.timings.chat = await _run_stage(
                "chat", self.stages.chat(req.query, texts, facts), self.config.retrieval.chat_timeout_s, clock
            )
            if chat_err:
                if not self.config.chat_fallback_extractive:
                    raise StageUnavailable("chat", chat_err.error)
                degraded.append(chat_err)
                result = await self.extractive.answer(req.query, texts, facts)
        citations = [
            Citation(n=n, chunk_id=passages[n - 1].chunk_id, doc_id=passages[n - 1].doc_id)
            for n in parse_citations(result.answer, len(passages))
        ]
        retrieved.timings.total = clock.timing(clock.t0, time.time())
        return AnswerResponse(
            **retrieved.model_dump(exclude={"degraded"}),
            degraded=degraded,
            answer=result.answer,
            citations=citations,
            model=result.model,
        )

    async def ingest(self, req: IngestRequest) -> IngestResponse:
        """Writes every document to both stores or to neither: on a failure, what was written is removed."""
        clock = _Clock()
        timeout = self.config.retrieval.ingest_timeout_s
        chunks = [c for doc in req.documents for c in chunk_document(doc, self.config.chunking)]
        doc_ids = [doc.id for doc in req.documents]
        (n_points, vec_err, vec_t), (graph_counts, grf_err, grf_t) = await asyncio.gather(
            _run_stage("vector", self.stages.vector_upsert(req.collection, chunks), timeout, clock),
            _run_stage("graph", self.stages.graph_upsert(req.collection, chunks), timeout, clock),
        )
        failed = [e for e in (vec_err, grf_err) if e]
        if failed:
            await self._remove_everywhere(req.collection, doc_ids)
            stage = "+".join(e.stage for e in failed)
            reasons = "; ".join(f"{e.stage}: {e.error}" for e in failed)
            raise StageUnavailable(stage, f"ingest failed ({reasons}); the documents were removed from every store, retry the request")
        return IngestResponse(
            collection=req.collection,
            documents=len(req.documents),
            chunks=n_points,
            entities=int(graph_counts.get("entities", 0)),
            relations=int(graph_counts.get("relations", 0)),
            timings={"vector": vec_t, "graph": grf_t, "total": clock.timing(clock.t0, time.time())},
        )

    async def _remove_everywhere(self, collection: str, doc_ids: list[str]) -> None:
        results = await asyncio.gather(
            self.stages.vector_delete(collection, doc_ids),
            self.stages.graph_delete(collection, doc_ids),
            return_exceptions=True,
        )
        for store, result in zip(("vector", "graph"), results):
            if isinstance(result, BaseException) and not isinstance(result, CollectionNotFound):
                log.error("could not remove documents %s from the %s store after a failed ingest: %s", doc_ids, store, result)

    async def stats(self, collection: str) -> CollectionStats:
        points, counts = await asyncio.gather(self.stages.vector_count(collection), self.stages.graph_counts(collection))
        return CollectionStats(collection=collection, points=points, **{k: int(counts.get(k, 0)) for k in ("chunks", "entities", "relations")})

    async def ready(self, timeout: float = 3.0) -> dict[str, StageHealth]:
        async def check(name: str, ping: Callable[[], Awaitable[str]]) -> tuple[str, StageHealth]:
            try:
                backend = await asyncio.wait_for(ping(), timeout)
                return name, StageHealth(ok=True, backend=str(backend))
            except Exception as exc:
                return name, StageHealth(ok=False, backend="unknown", error=_reason(exc, timeout))

        return dict(await asyncio.gather(*(check(n, p) for n, p in self.stages.pings.items())))
