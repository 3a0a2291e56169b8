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

from deployments.config import AppConfig
from deployments.errors import (
    BadRequest,
    CollectionNotFound,
    NotFound,
    StageError,
    StageUnavailable,
    StorageFull,
    is_disk_full,
    is_stage_failure,
    require_free_space,
)
from deployments.ingress.answering import Answering
from deployments.ingress.chunking import chunk_documents, extractions_brought
from deployments.ingress.intents import Intent, IntentLog, owner_alive
from deployments.ingress.retrieval import Retrieval
from deployments.ingress.stage_calls import Clock, failure_reason, run_stage
from deployments.models import (
    MAX_LISTED_IDS,
    AnswerRequest,
    AnswerResponse,
    CollectionDeleteResponse,
    CollectionList,
    CollectionStats,
    DeleteResponse,
    DocumentPage,
    EntityResponse,
    GraphQueryRequest,
    GraphQueryResponse,
    IngestRequest,
    IngestResponse,
    PackedVectors,
    RepairResponse,
    RetrieveRequest,
    RetrieveResponse,
    StageHealth,
    StreamDelta,
    StreamDone,
    StreamError,
    StreamReferences,
    VerifyResponse,
)
from deployments.stages import Stages

T = TypeVar("T")
log = logging.getLogger("graphrag.pipeline")


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
        reasons = "; ".join(f"{store}: {failure_reason(r, 0)}" for store, r in failed)
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
        self.retrieval = Retrieval(config, stages)
        self.answering = Answering(config, stages, self.retrieval)

    async def retrieve(self, req: RetrieveRequest) -> RetrieveResponse:
        return await self.retrieval.run(req, Clock())

    async def answer(self, req: AnswerRequest) -> AnswerResponse:
        return await self.answering.answer(req)

    def answer_stream(
        self, req: AnswerRequest
    ) -> AsyncIterator[StreamReferences | StreamDelta | StreamDone | StreamError]:
        return self.answering.answer_stream(req)

    async def ingest(self, req: IngestRequest) -> IngestResponse:
        """Writes every document to both stores or to neither: on a failure, what was written is removed. A crash
        of the process mid-way leaves an intent record that the next start rolls back (`recover`)."""
        clock = Clock()
        timeout = self.config.retrieval.ingest_timeout_s
        chunks, brought = chunk_documents(req.documents, self.config.chunking)  # 400 before any write
        given = await self._vectors_brought(req, brought, clock) if brought else None
        extracted = extractions_brought(req.documents) or None  # stored as given, not extracted again
        doc_ids = [doc.id for doc in req.documents]
        # Refused before any store is touched while the data folder's disk is nearly full (507).
        await asyncio.to_thread(require_free_space, self.config.data_dir, self.config.vector.min_free_disk_mb, "ingest")
        async with self._intent("ingest", req.collection, doc_ids):
            try:
                runs = await asyncio.gather(
                    run_stage("vector", self.stages.vector.upsert(req.collection, chunks, given), timeout, clock),
                    run_stage("graph", self.stages.graph.upsert(req.collection, chunks, extracted), timeout, clock),
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
                raise error(
                    stage, f"ingest failed ({reasons}); the documents were removed from every store, retry the request"
                )
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

    async def _vectors_brought(
        self, req: IngestRequest, brought: dict[str, list[float]], clock: Clock
    ) -> PackedVectors:
        """The vectors the documents brought, once each has the collection's dimension (else 400, nothing written)."""
        timeout = self.config.retrieval.ingest_timeout_s
        expected, err, _ = await run_stage("vector", self.stages.vector.dimension(req.collection), timeout, clock)
        if err or expected is None:
            raise StageUnavailable("vector", err.error if err else "no dimension")
        wrong = [d for d in req.documents if d.vector is not None and len(d.vector) != expected]
        if wrong:
            named = ", ".join(f"{d.id!r} ({len(d.vector or [])})" for d in wrong[:5])
            raise BadRequest(
                f"collection {req.collection!r} holds {expected}-dimensional vectors; {len(wrong)} documents bring "
                f"another size: {named}{' ...' if len(wrong) > 5 else ''}; nothing was written"
            )
        return PackedVectors.pack(brought)

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
                log.error(
                    "could not remove documents %s from the %s store after a failed ingest: %s; "
                    "GET /v1/collections/%s/verify lists them",
                    doc_ids,
                    store,
                    result,
                    collection,
                )
        return removed

    async def _remove_strictly(self, collection: str, doc_ids: list[str]) -> None:
        """Removes documents from both stores or raises (the caller keeps what it would have cleaned up)."""
        await _gather_strictly(
            self.stages.vector.delete_documents(collection, doc_ids),
            self.stages.graph.delete_documents(collection, doc_ids),
        )

    async def recover(self) -> list[Intent]:
        """Rolls back the ingests and deletes a dead process left half-done (its intent records): their documents
        are removed from both stores, then the records; an interrupted collection drop is finished. Raises when a
        store fails; the records stay for a retry."""
        if self.intents is None:
            return []
        done = []
        for intent in await asyncio.to_thread(self.intents.orphaned):
            if intent.action == "drop":  # a drop is finished, never undone: it may have removed one store already
                await _gather_strictly(
                    self.stages.vector.drop_collection(intent.collection),
                    self.stages.graph.drop_collection(intent.collection),
                )
            else:
                await self._remove_strictly(intent.collection, intent.doc_ids)
            await asyncio.to_thread(self.intents.end, intent.path)
            log.warning(
                "rolled back an interrupted %s of %d documents in collection %s (%s): re-run it",
                intent.action,
                len(intent.doc_ids),
                intent.collection,
                intent.path.name,
            )
            done.append(intent)
        return done

    async def _consistency(self, collection: str, remove_orphans: bool = False) -> _Consistency:
        vector, graph, orphans = await asyncio.gather(
            self.stages.vector.chunk_ids(collection),
            self.stages.graph.chunk_ids(collection),
            self.stages.graph.orphan_entities(collection, remove_orphans),
        )
        pending = [] if self.intents is None else await asyncio.to_thread(self.intents.pending)
        return _Consistency(
            _by_document(vector), _by_document(graph), list(orphans), [i for i in pending if i.collection == collection]
        )

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
            log.warning(
                "repair of collection %s removed %d documents (re-ingest them) and %d orphan entities",
                collection,
                len(bad),
                len(orphans),
            )
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
        clock = Clock()
        (vectors, err, _), (tokens, _, _) = await asyncio.gather(
            run_stage("embed", self.stages.embedder.embed(texts), timeout, clock),
            run_stage("embed", self.stages.embedder.count_tokens(texts), timeout, clock),
        )
        if err or vectors is None:
            raise StageUnavailable("embed", err.error if err else "no vectors")
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
        points, counts = await asyncio.gather(
            self.stages.vector.count(collection), self.stages.graph.counts(collection)
        )
        return CollectionStats(
            collection=collection,
            points=points,
            **{k: int(counts.get(k, 0)) for k in ("chunks", "entities", "relations")},
        )

    async def ready(self, timeout: float = 3.0) -> dict[str, StageHealth]:
        async def check(name: str, ping: Callable[[], Awaitable[str]]) -> tuple[str, StageHealth]:
            try:
                backend = await asyncio.wait_for(ping(), timeout)
                return name, StageHealth(ok=True, backend=str(backend))
            except Exception as exc:
                return name, StageHealth(ok=False, backend="unknown", error=failure_reason(exc, timeout))

        return dict(await asyncio.gather(*(check(n, p) for n, p in self.stages.pings().items())))
