"""Request logic behind the ingress: concurrent fan-out, fusion, rerank, answer, ingest.

Plain asyncio over injected stage callables, so it runs and is tested without Ray; the ingress wires it
to deployment handles. It never sees HTTP objects.
"""
from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

from deployments.chat.backends import ExtractiveChat, parse_citations
from deployments.config import AppConfig
from deployments.errors import (
    CollectionNotFound,
    NotFound,
    StageError,
    StageUnavailable,
)
from deployments.ingress.chunking import chunk_document
from deployments.models import (
    AnswerRequest,
    AnswerResponse,
    ChatDelta,
    ChatResult,
    Chunk,
    Citation,
    CollectionStats,
    Degraded,
    DeleteResponse,
    EntityResponse,
    GraphQueryRequest,
    GraphQueryResponse,
    GraphResult,
    Hit,
    IngestRequest,
    IngestResponse,
    RerankHints,
    RerankResult,
    RetrieveRequest,
    RetrieveResponse,
    ScoredChunk,
    StageHealth,
    StageTiming,
    StreamDelta,
    StreamDone,
    StreamError,
    StreamReferences,
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
    graph_query: Callable[[str, dict, int | None], Awaitable[GraphQueryResponse]] | None = None
    graph_entity: Callable[[str, str, int], Awaitable[EntityResponse]] | None = None
    graph_links: Callable[[str, str, list[str], list[str]], Awaitable[dict[str, float]]] | None = None
    # Streamed answers; without it a streamed answer is the whole chat answer in one piece.
    chat_stream: Callable[[str, list[str], list[str]], AsyncIterator[ChatDelta]] | None = None


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


async def _no_pieces() -> AsyncIterator[ChatDelta]:
    return
    yield


async def _close(stream: AsyncIterator) -> None:
    aclose = getattr(stream, "aclose", None)
    if aclose is not None:
        await aclose()


Fused = list[tuple[ScoredChunk, float, list[str]]]


def reciprocal_rank_fusion(ranked: dict[str, list[ScoredChunk]], k: int, weights: dict[str, float] | None = None) -> Fused:
    """Fuses ranked lists by RRF: score(d) = sum over lists of weight / (k + rank). Returns (chunk, score, sources)."""
    fused: dict[str, list] = {}
    for source, chunks in ranked.items():
        weight = 1.0 if weights is None else weights.get(source, 1.0)
        for rank, chunk in enumerate(chunks, start=1):
            entry = fused.setdefault(chunk.chunk_id, [chunk, 0.0, []])
            entry[1] += weight / (k + rank)
            entry[2].append(source)
    return sorted((tuple(e) for e in fused.values()), key=lambda e: e[1], reverse=True)


def source_scores(ranked: dict[str, list[ScoredChunk]], chunk_ids: list[str]) -> dict[str, list[float | None]]:
    """Each source's own score of each chunk (None where that source did not find it), for the reranker."""
    out = {}
    for source, chunks in ranked.items():
        by_id = {c.chunk_id: c.score for c in chunks}
        out[source] = [by_id.get(c) for c in chunk_ids]
    return out


def min_max(scores: list[float]) -> list[float]:
    """Scores mapped onto [0, 1] by the list's own range; a list without spread maps to 1 (all equally good)."""
    if not scores:
        return []
    low, high = min(scores), max(scores)
    if high - low < 1e-12:
        return [1.0] * len(scores)
    return [(s - low) / (high - low) for s in scores]


def weighted_score_fusion(ranked: dict[str, list[ScoredChunk]], weights: dict[str, float]) -> Fused:
    """Fuses by scores: each list min-max normalized, then sum of weight × normalized score (a list that misses a
    chunk adds 0: it ranked it below its own last hit). Unlike RRF it keeps how far apart the scores are."""
    fused: dict[str, list] = {}
    for source, chunks in ranked.items():
        weight = weights.get(source, 1.0)
        for chunk, score in zip(chunks, min_max([c.score for c in chunks])):
            entry = fused.setdefault(chunk.chunk_id, [chunk, 0.0, []])
            entry[1] += weight * score
            entry[2].append(source)
    return sorted((tuple(e) for e in fused.values()), key=lambda e: e[1], reverse=True)


def graph_facts(subgraph: Subgraph, limit: int = 20) -> list[str]:
    names = {n.id: n.name for n in subgraph.nodes}
    facts = []
    for edge in sorted(subgraph.edges, key=lambda e: e.weight, reverse=True)[:limit]:
        if edge.source in names and edge.target in names:
            facts.append(f"{names[edge.source]} -[{edge.type}]- {names[edge.target]}")
    return facts


def _citations(answer: str, passages: list[Hit]) -> list[Citation]:
    """The [n] markers of an answer that point at a passage given to the chat stage (passage n-1)."""
    return [Citation(n=n, chunk_id=passages[n - 1].chunk_id, doc_id=passages[n - 1].doc_id) for n in parse_citations(answer, len(passages))]


def _retrieved_fields(retrieved: RetrieveResponse) -> dict:
    """The retrieval's fields as they are, for a response that extends it (AnswerResponse, StreamDone): no
    dump-and-rebuild of hits and subgraph per request. Not for an event sent before `timings` changes again."""
    return {name: value for name, value in retrieved if name != "degraded"}


class Pipeline:
    def __init__(self, config: AppConfig, stages: Stages):
        self.config = config
        self.stages = stages
        self.extractive = ExtractiveChat()
        self.fusion_weights = config.retrieval.weights.model_dump()  # per source, read on every request

    async def retrieve(self, req: RetrieveRequest) -> RetrieveResponse:
        return await self._retrieve(req, _Clock())

    async def _retrieve(self, req: RetrieveRequest, clock: _Clock) -> RetrieveResponse:
        cfg = self.config.retrieval
        top_k = req.top_k or cfg.top_k
        candidates = max(cfg.candidates, top_k)
        hops = self.config.graph.max_hops if req.max_hops is None else req.max_hops
        mode = req.mode or cfg.mode
        use_graph = mode == "hybrid+graph" and req.use_graph
        # The retrieval stages run concurrently; neither waits for the other (or for the query embedding).
        # Dense and lexical hits come from the vector stage in one call; modes without the graph never call it.
        vector_call = self.stages.vector_search(req.collection, req.query, candidates, req.filter, mode)
        if use_graph:
            (vec, vec_err, vec_t), (grf, grf_err, grf_t) = await asyncio.gather(
                _run_stage("vector", vector_call, cfg.vector_timeout_s, clock),
                _run_stage("graph", self._graph_search(req, hops, candidates), cfg.graph_timeout_s, clock),
            )
        else:
            (vec, vec_err, vec_t), (grf, grf_err, grf_t) = await _run_stage("vector", vector_call, cfg.vector_timeout_s, clock), (None, None, None)
        degraded = [d for d in (vec_err, grf_err) if d]
        if vec_err and grf_err:
            raise StageUnavailable("vector+graph", f"vector: {vec_err.error}; graph: {grf_err.error}")
        if vec_err and not use_graph:
            raise StageUnavailable("vector", vec_err.error)
        timings = Timings(vector=vec_t, graph=grf_t)
        ranked: dict[str, list[ScoredChunk]] = {}
        if vec is not None:
            if vec.embed is not None:
                timings.embed = clock.timing(vec.embed.start, vec.embed.end)
            if mode != "lexical":
                ranked["vector"] = vec.hits
            if vec.lexical_hits is not None:
                ranked["lexical"] = vec.lexical_hits
            if vec.lexical_error:
                degraded.append(Degraded(stage="lexical", error=vec.lexical_error))
        if grf is not None:
            ranked["graph"] = grf.chunks
        fused = self._fuse(ranked)[:candidates]
        hits = [
            Hit(chunk_id=c.chunk_id, doc_id=c.doc_id, text=c.text, score=score, sources=sources, metadata=c.metadata)
            for c, score, sources in fused
        ]
        scorer = None
        rerank = cfg.rerank if req.rerank is None else req.rerank
        if hits and rerank:
            hints = RerankHints(
                collection=req.collection,
                chunk_ids=[h.chunk_id for h in hits],
                query_vector=vec.query_vector if vec is not None else None,
                signals=source_scores(ranked, [h.chunk_id for h in hits]),
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
        if use_graph and grf is not None:
            await self._link_boost(req, hits, degraded, clock)
        timings.total = clock.timing(clock.t0, time.time())
        return RetrieveResponse(
            query=req.query,
            collection=req.collection,
            hits=hits[:top_k],
            graph=grf.subgraph if grf is not None else Subgraph(),
            timings=timings,
            degraded=degraded,
            reranker=scorer,
            mode=mode,
        )

    def _fuse(self, ranked: dict[str, list[ScoredChunk]]) -> Fused:
        cfg = self.config.retrieval
        if cfg.fusion == "rrf":
            return reciprocal_rank_fusion(ranked, cfg.rrf_k, self.fusion_weights)
        return weighted_score_fusion(ranked, self.fusion_weights)

    async def _link_boost(self, req: RetrieveRequest, hits: list[Hit], degraded: list[Degraded], clock: _Clock) -> None:
        """Raises the candidates tied through specific entities to the best hits (GraphService.links), by up to
        `link_weight` of the score range, and re-sorts: the second hop of a multi-hop question rarely resembles
        the question itself, but the passage that answers its first hop names it."""
        cfg = self.config.retrieval
        n_seeds = cfg.link_seeds
        if cfg.link_weight <= 0 or self.stages.graph_links is None or len(hits) <= n_seeds:
            return
        seeds = [h.chunk_id for h in hits[:n_seeds]]
        call = self.stages.graph_links(req.collection, req.query, seeds, [h.chunk_id for h in hits[n_seeds:]])
        links, err, _ = await _run_stage("graph", call, cfg.graph_timeout_s, clock)
        if err:
            degraded.append(err)  # keep the reranked order
            return
        if not links:
            return
        strongest = max(links.values())
        spread = (max(h.score for h in hits) - min(h.score for h in hits)) or 1.0
        # A second hop stays behind the hits that lead to it: it never passes the lowest seed.
        ceiling = min(h.score for h in hits[:n_seeds]) - 1e-6
        for hit in hits[n_seeds:]:
            if links.get(hit.chunk_id, 0.0) > 0:
                hit.score = min(hit.score + cfg.link_weight * spread * links[hit.chunk_id] / strongest, max(hit.score, ceiling))
        hits.sort(key=lambda h: h.score, reverse=True)

    async def _graph_search(self, req: RetrieveRequest, hops: int, candidates: int) -> GraphResult:
        if not req.use_graph:
            return GraphResult(chunks=[], subgraph=Subgraph(), linked=[])
        return await self.stages.graph_search(req.collection, req.query, hops, candidates)

    async def _retrieve_for_answer(self, req: AnswerRequest, clock: _Clock) -> tuple[RetrieveResponse, list[Hit], list[str], list[str], list[Degraded]]:
        """Retrieval, then what the chat stage gets: the passages (and their texts) and the graph's facts."""
        retrieved = await self._retrieve(req, clock)
        passages = retrieved.hits[: self.config.chat.max_passages]
        return retrieved, passages, [h.text for h in passages], graph_facts(retrieved.graph), list(retrieved.degraded)

    async def answer(self, req: AnswerRequest) -> AnswerResponse:
        clock = _Clock()
        retrieved, passages, texts, facts, degraded = await self._retrieve_for_answer(req, clock)
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
        retrieved.timings.total = clock.timing(clock.t0, time.time())
        return AnswerResponse(
            **_retrieved_fields(retrieved),
            degraded=degraded,
            answer=result.answer,
            citations=_citations(result.answer, passages),
            model=result.model,
        )

    async def answer_stream(self, req: AnswerRequest) -> AsyncIterator[StreamReferences | StreamDelta | StreamDone | StreamError]:
        """`answer`, streamed: the references, the answer in pieces, then the whole response (or an error event).

        Retrieval and the chat's first piece complete before the first event, so their failures still raise
        (an HTTP error status); a chat failure there falls back to the extractive answer like `answer` does."""
        clock = _Clock()
        retrieved, passages, texts, facts, degraded = await self._retrieve_for_answer(req, clock)
        timeout = self.config.retrieval.chat_timeout_s
        start = time.time()
        if not passages:
            first, rest = ChatDelta(content="No ingested passage matches this question.", model="none"), _no_pieces()
        else:
            try:
                first, rest = await asyncio.wait_for(self._open_chat_stream(req.query, texts, facts), timeout)
            except CollectionNotFound:
                raise
            except Exception as exc:
                error = _reason(exc, timeout)
                log.warning("stage chat failed: %s", error)
                if not self.config.chat_fallback_extractive:
                    raise StageUnavailable("chat", error) from exc
                degraded.append(Degraded(stage="chat", error=error))
                first, rest = await self.extractive.open_stream(req.query, texts, facts)
        yield StreamReferences(**retrieved.model_dump(exclude={"degraded"}), degraded=degraded, model=first.model)
        parts = [first.content]
        yield StreamDelta(content=first.content)
        try:
            while True:
                try:  # the chat timeout bounds the whole answer; never wrap a yield in a timeout
                    piece = await asyncio.wait_for(anext(rest), max(start + timeout - time.time(), 0.001))
                except StopAsyncIteration:
                    break
                parts.append(piece.content)
                yield StreamDelta(content=piece.content)
        except Exception as exc:  # the answer broke off after it had started: say so, never end it silently
            error = _reason(exc, timeout)
            log.warning("stage chat failed mid-stream: %s", error)
            yield StreamError(stage="chat", detail=f"the answer broke off: {error}")
            return
        finally:
            await _close(rest)
        answer = "".join(parts)
        if passages:
            retrieved.timings.chat = clock.timing(start, time.time())
        retrieved.timings.total = clock.timing(clock.t0, time.time())
        yield StreamDone(
            **_retrieved_fields(retrieved), degraded=degraded, answer=answer, citations=_citations(answer, passages), model=first.model
        )

    async def _open_chat_stream(self, query: str, texts: list[str], facts: list[str]) -> tuple[ChatDelta, AsyncIterator[ChatDelta]]:
        if self.stages.chat_stream is None:
            result = await self.stages.chat(query, texts, facts)
            return ChatDelta(content=result.answer, model=result.model), _no_pieces()
        stream = self.stages.chat_stream(query, texts, facts)
        try:
            first = await anext(stream)
        except StopAsyncIteration:
            raise StageError("chat", "the chat stream ended before any text") from None
        except BaseException:
            await _close(stream)
            raise
        return first, stream

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
            extractors={str(k): int(v) for k, v in (graph_counts.get("extractors") or {}).items()},
            dropped_relations=int(graph_counts.get("dropped_relations", 0)),
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

    async def delete_document(self, collection: str, doc_id: str) -> DeleteResponse:
        """Removes a document from both stores: its points, chunks, mentions, and the entities and relations
        no other document supports. 404 when neither store holds it; 503 when a store failed (a retry finishes)."""
        results = await asyncio.gather(
            self.stages.vector_delete(collection, [doc_id]),
            self.stages.graph_delete(collection, [doc_id]),
            return_exceptions=True,
        )
        failed = [(store, r) for store, r in zip(("vector", "graph"), results) if isinstance(r, BaseException)]
        if failed:
            reasons = "; ".join(f"{store}: {_reason(r, 0)}" for store, r in failed)
            raise StageUnavailable("+".join(store for store, _ in failed), f"delete of {doc_id!r} failed ({reasons}); retry the request")
        points, chunks = (int(r) for r in results)
        if points == 0 and chunks == 0:
            raise NotFound(f"document {doc_id!r} not found in collection {collection!r}")
        return DeleteResponse(collection=collection, doc_id=doc_id, points=points, chunks=chunks)

    async def graph_query(self, req: GraphQueryRequest) -> GraphQueryResponse:
        return await self.stages.graph_query(req.query, req.parameters, req.max_rows)

    async def graph_entity(self, collection: str, name: str, hops: int) -> EntityResponse:
        return await self.stages.graph_entity(collection, name, hops)

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
