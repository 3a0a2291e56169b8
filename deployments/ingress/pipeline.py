"""Request logic behind the ingress: concurrent fan-out, fusion, rerank, answer, ingest.

Plain asyncio over the typed stage interfaces (deployments.stages), so it runs and is tested without Ray; the
ingress builds them over deployment handles. It never sees HTTP objects.
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

from deployments.chat.backends import parse_citations
from deployments.chat.extractive import ExtractiveChat
from deployments.config import AppConfig
from deployments.errors import (
    CollectionNotFound,
    NotFound,
    StageError,
    StageUnavailable,
    StorageFull,
    is_disk_full,
    is_stage_failure,
    require_free_space,
)
from deployments.ingress.chunking import chunk_document
from deployments.ingress.fusion import Fused, graph_facts, reciprocal_rank_fusion, source_scores, weighted_score_fusion
from deployments.ingress.intents import Intent, IntentLog, owner_alive
from deployments.stages import Stages
from deployments.models import (
    AnswerRequest,
    AnswerResponse,
    ChatDelta,
    ChatResult,
    Citation,
    CollectionDeleteResponse,
    CollectionList,
    CollectionStats,
    DocumentPage,
    Degraded,
    DeleteResponse,
    EntityResponse,
    GraphQueryRequest,
    GraphQueryResponse,
    Hit,
    IngestRequest,
    IngestResponse,
    MAX_LISTED_IDS,
    PackedVectors,
    RepairResponse,
    RerankHints,
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
    VerifyResponse,
)
from deployments.observability import current_request_id

log = logging.getLogger("graphrag.pipeline")
T = TypeVar("T")


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
    except Exception as exc:  # a stage failure is reported as degraded; anything else (a bug, a 404) propagates
        if not is_stage_failure(exc):
            raise
        log.warning("stage %s failed: %s", stage, _reason(exc, timeout))
        return None, Degraded(stage=stage, error=_reason(exc, timeout)), clock.timing(start, time.time())


async def _no_pieces() -> AsyncIterator[ChatDelta]:
    return
    yield


async def _close(stream: AsyncIterator) -> None:
    aclose = getattr(stream, "aclose", None)
    if aclose is not None:
        await aclose()


def _citations(answer: str, passages: list[Hit]) -> list[Citation]:
    """The [n] markers of an answer that point at a passage given to the chat stage (passage n-1)."""
    return [Citation(n=n, chunk_id=passages[n - 1].chunk_id, doc_id=passages[n - 1].doc_id) for n in parse_citations(answer, len(passages))]


def _retrieved_fields(retrieved: RetrieveResponse) -> dict:
    """The retrieval's fields as they are, for a response that extends it (AnswerResponse, StreamDone): no
    dump-and-rebuild of hits and subgraph per request. Not for an event sent before `timings` changes again."""
    return {name: value for name, value in retrieved if name != "degraded"}


def _by_document(chunk_docs: dict[str, str]) -> dict[str, set[str]]:
    docs: dict[str, set[str]] = {}
    for chunk_id, doc_id in chunk_docs.items():
        docs.setdefault(doc_id, set()).add(chunk_id)
    return docs


@dataclass
class _Consistency:
    vector: dict[str, set[str]]  # doc id -> chunk ids
    graph: dict[str, set[str]]
    orphans: list[str]
    pending: list[Intent]

    @property
    def only_in_vector(self) -> list[str]:
        return sorted(self.vector.keys() - self.graph.keys())

    @property
    def only_in_graph(self) -> list[str]:
        return sorted(self.graph.keys() - self.vector.keys())

    @property
    def mismatched(self) -> list[str]:
        return sorted(d for d in self.vector.keys() & self.graph.keys() if self.vector[d] != self.graph[d])

    def report(self, collection: str) -> VerifyResponse:
        bad = sorted({*self.only_in_vector, *self.only_in_graph, *self.mismatched})
        return VerifyResponse(
            collection=collection,
            consistent=not bad and not self.orphans and not self.pending,
            documents=len(self.vector.keys() | self.graph.keys()),
            vector_chunks=sum(map(len, self.vector.values())),
            graph_chunks=sum(map(len, self.graph.values())),
            only_in_vector=len(self.only_in_vector),
            only_in_graph=len(self.only_in_graph),
            mismatched=len(self.mismatched),
            orphan_entities=len(self.orphans),
            pending_intents=len(self.pending),
            inconsistent_doc_ids=bad[:MAX_LISTED_IDS],
            orphan_entity_keys=self.orphans[:MAX_LISTED_IDS],
        )


async def _on_both_stores(what: str, vector_call: Awaitable[T], graph_call: Awaitable[T]) -> tuple[T, T]:
    """Both stores' results of one write, each run to its end: a failed store is a 503 naming it (a retry
    finishes the write), a bug is raised as it is."""
    results = await asyncio.gather(vector_call, graph_call, return_exceptions=True)
    failed = [(store, r) for store, r in zip(("vector", "graph"), results) if isinstance(r, BaseException)]
    for _, error in failed:
        if not is_stage_failure(error):
            raise error
    if failed:
        reasons = "; ".join(f"{store}: {_reason(r, 0)}" for store, r in failed)
        raise StageUnavailable("+".join(store for store, _ in failed), f"{what} failed ({reasons}); retry the request")
    return results[0], results[1]  # type: ignore[return-value]


async def _gather_strictly(*calls: Awaitable) -> None:
    """Runs every call to its end, then raises the first failure."""
    for result in await asyncio.gather(*calls, return_exceptions=True):
        if isinstance(result, BaseException):
            raise result


class Pipeline:
    def __init__(self, config: AppConfig, stages: Stages, intents: IntentLog | None = None):
        self.config = config
        self.stages = stages
        # Write-ahead intent records of ingests and deletes (deployments/ingress/intents.py); None: not kept.
        self.intents = intents
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
        use_graph = mode == "hybrid+graph" and req.use_graph  # use_graph (deprecated): false = leave the graph out
        # The query is embedded once, here, and its vector goes to the vector and the graph stage, which then run
        # concurrently, neither waiting for the other; no stage calls another on the way (one hop fewer).
        query_vector, embed_err, embed_t = None, None, None
        if mode != "lexical":
            vectors, embed_err, embed_t = await _run_stage("embed", self.stages.embedder.embed([req.query]), cfg.vector_timeout_s, clock)
            query_vector = vectors[0] if vectors else None
            if embed_err and mode == "dense":
                raise StageUnavailable("embed", embed_err.error)
        # Without the query's vector, the hybrid modes still answer with BM25 (and the graph's entity links).
        vector_mode = "lexical" if embed_err else mode
        vector_call = self.stages.vector.search(req.collection, req.query, candidates, req.filter, vector_mode, query_vector)
        if use_graph:
            graph_call = self.stages.graph.search(req.collection, req.query, hops, candidates, query_vector)
            (vec, vec_err, vec_t), (grf, grf_err, grf_t) = await asyncio.gather(
                _run_stage("vector", vector_call, cfg.vector_timeout_s, clock),
                _run_stage("graph", graph_call, cfg.graph_timeout_s, clock),
            )
        else:
            (vec, vec_err, vec_t), (grf, grf_err, grf_t) = await _run_stage("vector", vector_call, cfg.vector_timeout_s, clock), (None, None, None)
        degraded = [d for d in (embed_err, vec_err, grf_err) if d]
        if vec_err and grf_err:
            raise StageUnavailable("vector+graph", f"vector: {vec_err.error}; graph: {grf_err.error}")
        if vec_err and not use_graph:
            raise StageUnavailable("vector", vec_err.error)
        timings = Timings(vector=vec_t, graph=grf_t, embed=embed_t)
        ranked: dict[str, list[ScoredChunk]] = {}
        if vec is not None:
            if vec.embed is not None:  # embedded by the vector stage itself (a caller that gave no vector)
                timings.embed = clock.timing(vec.embed.start, vec.embed.end)
            if vector_mode != "lexical":
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
                query_vector=query_vector,
                # The candidates' stored vectors that came with the hits, the vector stage's first, then the graph's.
                vectors=PackedVectors.select(
                    [h.chunk_id for h in hits], vec.hit_vectors if vec is not None else None, grf.vectors if grf is not None else None
                ),
                signals=source_scores(ranked, [h.chunk_id for h in hits]),
            )
            rer, rer_err, timings.rerank = await _run_stage(
                "rerank", self.stages.reranker.rerank(req.query, [h.text for h in hits], hints), cfg.rerank_timeout_s, clock
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
        if cfg.link_weight <= 0 or len(hits) <= n_seeds:
            return
        seeds = [h.chunk_id for h in hits[:n_seeds]]
        call = self.stages.graph.links(req.collection, req.query, seeds, [h.chunk_id for h in hits[n_seeds:]])
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
                "chat", self.stages.chat.answer(req.query, texts, facts), self.config.retrieval.chat_timeout_s, clock
            )
            if chat_err:
                self._fall_back_from_chat(chat_err.error, degraded)
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
            except Exception as exc:
                if not is_stage_failure(exc):
                    raise
                error = _reason(exc, timeout)
                log.warning("stage chat failed: %s", error)
                self._fall_back_from_chat(error, degraded)
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
            if is_stage_failure(exc):
                error = _reason(exc, timeout)
                log.warning("stage chat failed mid-stream: %s", error)
            else:  # a bug: the status is already sent, so the event carries the id the log has the traceback under
                error = f"internal error (request id {current_request_id() or '-'})"
                log.exception("unexpected error mid-stream")
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

    def _fall_back_from_chat(self, error: str, degraded: list[Degraded]) -> None:
        """After a chat failure: the extractive answer follows, reported in `degraded`, or 503 naming the chat
        stage when the config turns the fallback off."""
        if not self.config.chat.fallback_extractive:
            raise StageUnavailable("chat", error)
        degraded.append(Degraded(stage="chat", error=error))

    async def _open_chat_stream(self, query: str, texts: list[str], facts: list[str]) -> tuple[ChatDelta, AsyncIterator[ChatDelta]]:
        stream = self.stages.chat.answer_stream(query, texts, facts)
        try:
            first = await anext(stream)
        except StopAsyncIteration:
            raise StageError("chat", "the chat stream ended before any text") from None
        except BaseException:
            await _close(stream)
            raise
        return first, stream

    async def ingest(self, req: IngestRequest) -> IngestResponse:
        """Writes every document to both stores or to neither: on a failure, what was written is removed. A crash
        of the process mid-way leaves an intent record that the next start rolls back (`recover`)."""
        clock = _Clock()
        timeout = self.config.retrieval.ingest_timeout_s
        chunks = [c for doc in req.documents for c in chunk_document(doc, self.config.chunking)]
        doc_ids = [doc.id for doc in req.documents]
        # Refused before any store is touched while the data folder's disk is nearly full (507).
        await asyncio.to_thread(require_free_space, self.config.data_dir, self.config.vector.min_free_disk_mb, "ingest")
        async with self._intent("ingest", req.collection, doc_ids):
            try:
                runs = await asyncio.gather(
                    _run_stage("vector", self.stages.vector.upsert(req.collection, chunks), timeout, clock),
                    _run_stage("graph", self.stages.graph.upsert(req.collection, chunks), timeout, clock),
                    return_exceptions=True,  # both writes end before anything is removed, even when one raised
                )
            except asyncio.CancelledError:  # client gone or request timeout: undo what may have been written
                await asyncio.shield(self._remove_everywhere(req.collection, doc_ids))
                raise
            raised = [r for r in runs if isinstance(r, BaseException)]
            if raised:  # not a stage failure (a bug): still all-or-nothing, then the error itself (a 500)
                await self._remove_everywhere(req.collection, doc_ids)
                raise raised[0]
            (n_points, vec_err, vec_t), (graph_counts, grf_err, grf_t) = runs
            failed = [e for e in (vec_err, grf_err) if e]
            if failed:
                await self._remove_everywhere(req.collection, doc_ids)
                stage = "+".join(e.stage for e in failed)
                reasons = "; ".join(f"{e.stage}: {e.error}" for e in failed)
                error = StorageFull if any(is_disk_full(e.error) for e in failed) else StageUnavailable
                raise error(stage, f"ingest failed ({reasons}); the documents were removed from every store, retry the request")
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

    @contextlib.asynccontextmanager
    async def _intent(self, action: str, collection: str, doc_ids: list[str]) -> AsyncIterator[None]:
        """An intent record for the block's store writes; it outlives the block only if the process dies in it.
        A failure the block handles (compensated, or reported for a retry) ends the record too."""
        if self.intents is None:
            yield
            return
        path = await asyncio.to_thread(self.intents.begin, action, collection, doc_ids)
        try:
            yield
        finally:
            await asyncio.to_thread(self.intents.end, path)

    async def _remove_everywhere(self, collection: str, doc_ids: list[str]) -> bool:
        results = await asyncio.gather(
            self.stages.vector.delete_documents(collection, doc_ids),
            self.stages.graph.delete_documents(collection, doc_ids),
            return_exceptions=True,
        )
        removed = True
        for store, result in zip(("vector", "graph"), results):
            if isinstance(result, BaseException) and not isinstance(result, CollectionNotFound):
                removed = False
                log.error("could not remove documents %s from the %s store after a failed ingest: %s; "
                          "GET /v1/collections/%s/verify lists them", doc_ids, store, result, collection)
        return removed

    async def _remove_strictly(self, collection: str, doc_ids: list[str]) -> None:
        """Removes documents from both stores or raises (the caller keeps what it would have cleaned up)."""
        await _gather_strictly(self.stages.vector.delete_documents(collection, doc_ids), self.stages.graph.delete_documents(collection, doc_ids))

    async def recover(self) -> list[Intent]:
        """Rolls back the ingests and deletes a dead process left half-done (its intent records): their documents
        are removed from both stores, then the records; an interrupted collection drop is finished. Raises when a
        store fails; the records stay for a retry."""
        if self.intents is None:
            return []
        done = []
        for intent in await asyncio.to_thread(self.intents.orphaned):
            if intent.action == "drop":  # a drop is finished, never undone: it may have removed one store already
                await _gather_strictly(self.stages.vector.drop_collection(intent.collection), self.stages.graph.drop_collection(intent.collection))
            else:
                await self._remove_strictly(intent.collection, intent.doc_ids)
            await asyncio.to_thread(self.intents.end, intent.path)
            log.warning("rolled back an interrupted %s of %d documents in collection %s (%s): re-run it",
                        intent.action, len(intent.doc_ids), intent.collection, intent.path.name)
            done.append(intent)
        return done

    async def _consistency(self, collection: str, remove_orphans: bool = False) -> _Consistency:
        vector, graph, orphans = await asyncio.gather(
            self.stages.vector.chunk_ids(collection), self.stages.graph.chunk_ids(collection),
            self.stages.graph.orphan_entities(collection, remove_orphans),
        )
        pending = [] if self.intents is None else await asyncio.to_thread(self.intents.pending)
        return _Consistency(_by_document(vector), _by_document(graph), list(orphans), [i for i in pending if i.collection == collection])

    async def verify(self, collection: str) -> VerifyResponse:
        """Compares the stores: per document, the same chunk ids in both; no entity without a chunk mentioning it."""
        return (await self._consistency(collection)).report(collection)

    async def repair(self, collection: str) -> RepairResponse:
        """Removes from both stores every document the stores disagree on (re-ingest them) and the entities no chunk
        mentions; documents of an ingest still running (a live intent record) are left alone."""
        await self.recover()
        before = await self._consistency(collection)
        in_flight = {d for i in before.pending if owner_alive(i.owner) for d in i.doc_ids}
        bad = sorted({*before.only_in_vector, *before.only_in_graph, *before.mismatched} - in_flight)
        for start in range(0, len(bad), 256):
            await self._remove_strictly(collection, bad[start : start + 256])
        orphans = (await self._consistency(collection, remove_orphans=True)).orphans
        if bad or orphans:
            log.warning("repair of collection %s removed %d documents (re-ingest them) and %d orphan entities", collection, len(bad), len(orphans))
        return RepairResponse(
            collection=collection,
            removed_doc_ids=bad[:MAX_LISTED_IDS],
            removed_documents=len(bad),
            removed_orphan_entities=len(orphans),
            after=await self.verify(collection),
        )

    async def delete_document(self, collection: str, doc_id: str) -> DeleteResponse:
        """Removes a document from both stores: its points, chunks, mentions, and the entities and relations
        no other document supports. 404 when neither store holds it; 503 when a store failed (a retry finishes)."""
        async with self._intent("delete", collection, [doc_id]):
            points, chunks = await _on_both_stores(
                f"delete of {doc_id!r}",
                self.stages.vector.delete_documents(collection, [doc_id]),
                self.stages.graph.delete_documents(collection, [doc_id]),
            )
        if points == 0 and chunks == 0:
            raise NotFound(f"document {doc_id!r} not found in collection {collection!r}")
        return DeleteResponse(collection=collection, doc_id=doc_id, points=points, chunks=chunks)

    async def drop_collection(self, collection: str) -> CollectionDeleteResponse:
        """Removes a collection from both stores (and the graph's in-memory indexes). The intent record makes a
        crash mid-way converge: the next start finishes the drop. 404 when neither store holds any of it; 503 when
        a store failed (what was dropped stays dropped: a retry finishes it)."""
        async with self._intent("drop", collection, []):
            points, chunks = await _on_both_stores(
                f"drop of collection {collection!r}",
                self.stages.vector.drop_collection(collection),
                self.stages.graph.drop_collection(collection),
            )
        if points is None and chunks is None:
            raise CollectionNotFound(collection)
        return CollectionDeleteResponse(collection=collection, points=points or 0, chunks=chunks or 0)

    async def embed(self, texts: list[str]) -> tuple[list[list[float]], int | None]:
        """The embedder stage's vectors of `texts` and its token count (OpenAI's /v1/embeddings); 503 on failure."""
        timeout = self.config.retrieval.ingest_timeout_s
        clock = _Clock()
        (vectors, err, _), (tokens, _, _) = await asyncio.gather(
            _run_stage("embed", self.stages.embedder.embed(texts), timeout, clock),
            _run_stage("embed", self.stages.embedder.count_tokens(texts), timeout, clock),
        )
        if err:
            raise StageUnavailable("embed", err.error)
        if len(vectors) != len(texts):
            raise StageError("embed", f"the embedder returned {len(vectors)} vectors for {len(texts)} texts")
        return vectors, tokens

    async def graph_query(self, req: GraphQueryRequest) -> GraphQueryResponse:
        return await self.stages.graph.query(req.query, req.parameters, req.max_rows)

    async def graph_entity(self, collection: str, name: str, hops: int) -> EntityResponse:
        return await self.stages.graph.entity(collection, name, hops)

    async def collections(self, only: frozenset[str] | None = None) -> CollectionList:
        """The vector store's collections (the source of truth for them); with `only`, just those."""
        summaries = await self.stages.vector.collections(None if only is None else sorted(only))
        # The allow-list decides what a key sees: checked here too, whatever the stage returned.
        return CollectionList(collections=[s for s in summaries if only is None or s.collection in only])

    async def documents(self, collection: str, limit: int, cursor: str | None) -> DocumentPage:
        return await self.stages.vector.documents(collection, limit, cursor)

    async def stats(self, collection: str) -> CollectionStats:
        points, counts = await asyncio.gather(self.stages.vector.count(collection), self.stages.graph.counts(collection))
        return CollectionStats(collection=collection, points=points, **{k: int(counts.get(k, 0)) for k in ("chunks", "entities", "relations")})

    async def ready(self, timeout: float = 3.0) -> dict[str, StageHealth]:
        async def check(name: str, ping: Callable[[], Awaitable[str]]) -> tuple[str, StageHealth]:
            try:
                backend = await asyncio.wait_for(ping(), timeout)
                return name, StageHealth(ok=True, backend=str(backend))
            except Exception as exc:
                return name, StageHealth(ok=False, backend="unknown", error=_reason(exc, timeout))

        return dict(await asyncio.gather(*(check(n, p) for n, p in self.stages.pings().items())))
