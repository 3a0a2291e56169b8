"""The HTTP front: FastAPI routes on a Serve ingress deployment. Routes stay thin; logic is in `Pipeline`."""

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from pathlib import Path as PathLib

from fastapi import Path, Query, Request
from fastapi.responses import JSONResponse, StreamingResponse
from ray import serve
from ray.serve.handle import DeploymentHandle

from deployments.config import AppConfig
from deployments.errors import BadRequest, NotFound, is_stage_failure
from deployments.handles import stages_from_handles
from deployments.ingress.auth import ApiKeyAuth, visible_collections
from deployments.ingress.backups import Backups
from deployments.ingress.embeddings_api import (
    EmbeddingList,
    EmbeddingRequest,
    embedding_list,
    is_served_model,
    served_model,
)
from deployments.ingress.http_app import CURSOR_PATTERN, ERRORS, STREAMED, allow, app
from deployments.ingress.intents import IntentLog
from deployments.ingress.openai_api import (
    MODEL_ID,
    ChatCompletion,
    ChatCompletionRequest,
    ModelCard,
    ModelList,
    answer_events_sse,
    completion_chunks_sse,
    to_completion,
)
from deployments.ingress.pipeline import Pipeline
from deployments.models import (
    COLLECTION_PATTERN,
    DEFAULT_COLLECTION,
    MAX_DOCUMENT_PAGE,
    MAX_HOPS,
    AnswerRequest,
    AnswerResponse,
    CollectionDeleteResponse,
    CollectionList,
    CollectionStats,
    DeleteResponse,
    DocumentPage,
    EntityResponse,
    ErrorResponse,
    GraphQueryRequest,
    GraphQueryResponse,
    IngestRequest,
    IngestResponse,
    ReadyResponse,
    RepairResponse,
    RestoreResponse,
    RetrieveRequest,
    RetrieveResponse,
    SnapshotRequest,
    SnapshotResponse,
    StreamDone,
    VerifyResponse,
)
from deployments.observability import StageMetrics, configure_logging
from deployments.stages import Stages
from deployments.ui.stats import WindowedStageMetrics

log = logging.getLogger("graphrag.ingress")


async def recover_until_done(pipeline: Pipeline, attempts: int = 30, delay_s: float = 2.0) -> None:
    """`Pipeline.recover`, retried while the stores start up (a stage failure); a bug is raised at once."""
    for attempt in range(1, attempts + 1):
        try:
            await pipeline.recover()
            return
        except Exception as exc:
            if not is_stage_failure(exc) or attempt == attempts:
                log.error("could not roll back interrupted ingests: %s", exc, exc_info=exc)
                raise
            await asyncio.sleep(delay_s)


@serve.deployment
@serve.ingress(app)
class Ingress:
    """The HTTP ingress: the routes over a Pipeline of the stage deployments (their handles as typed stages)."""

    def __init__(
        self,
        config: AppConfig,
        embedder: DeploymentHandle,
        vector: DeploymentHandle,
        graph: DeploymentHandle,
        reranker: DeploymentHandle,
        chat: DeploymentHandle,
    ):
        self._start(config, stages_from_handles(embedder, vector, graph, reranker, chat))

    @classmethod
    def over_stages(cls, config: AppConfig, stages: Stages, metrics: StageMetrics | None = None) -> "Ingress":
        """The routes over in-process stages, without Ray or Serve's replica (tests)."""
        own = next(c for c in cls.__mro__ if "_start" in vars(c))  # this class, not Serve's ASGI wrapper
        routes: Ingress = object.__new__(own)
        routes._start(config, stages, metrics)
        return routes

    def _start(self, config: AppConfig, stages: Stages, metrics: StageMetrics | None = None) -> None:
        configure_logging()
        self.config = config
        intents = IntentLog(PathLib(config.data_dir) / "intents")
        self.pipeline = Pipeline(config, stages, intents)
        self.backups = Backups(self.pipeline)
        # Roll back what a crashed predecessor left half-written, before this replica writes anything itself.
        self.recovery = asyncio.get_running_loop().create_task(recover_until_done(self.pipeline))
        # `app` here is the copy Serve serves (serve.ingress freezes the app, and this class ships with it by
        # value), not necessarily this module's global: the guards and handlers read `request.app.state`.
        self.served_app = app
        self.metrics = app.state.metrics = metrics if metrics is not None else WindowedStageMetrics()
        app.state.guards = (ApiKeyAuth(config.auth), config.limits)
        if config.auth.open:
            log.warning(
                "no API key configured: open mode, every caller may read, write and query every collection (local use only)"
            )

    async def _streamed(
        self, events: AsyncIterator, to_sse: Callable[[AsyncIterator], AsyncIterator[bytes]]
    ) -> StreamingResponse:
        # The first event (after retrieval and the chat's first piece) is awaited here, before any byte is
        # sent, so a failure up to then still answers with its own status (404, 503).
        first = await anext(events)

        async def observed() -> AsyncIterator:
            yield first
            async for event in events:
                if isinstance(event, StreamDone):
                    self.metrics.record_retrieval(event)
                yield event

        return StreamingResponse(
            to_sse(observed()), media_type="text/event-stream", headers={"Cache-Control": "no-cache"}
        )

    @app.post("/v1/retrieve", response_model=RetrieveResponse, responses=ERRORS)
    async def retrieve(self, req: RetrieveRequest, request: Request) -> RetrieveResponse:
        allow(request, req.collection)
        resp = await self.pipeline.retrieve(req)
        self.metrics.record_retrieval(resp)
        return resp

    @app.post("/v1/answer", response_model=AnswerResponse, responses={**ERRORS, **STREAMED})
    async def answer(self, req: AnswerRequest, request: Request) -> AnswerResponse | StreamingResponse:
        allow(request, req.collection)
        if req.stream:
            return await self._streamed(self.pipeline.answer_stream(req), answer_events_sse)
        resp = await self.pipeline.answer(req)
        self.metrics.record_retrieval(resp)
        return resp

    @app.post("/v1/chat/completions", response_model=ChatCompletion, responses={**ERRORS, **STREAMED})
    async def chat_completions(
        self, req: ChatCompletionRequest, request: Request
    ) -> ChatCompletion | StreamingResponse:
        """OpenAI-compatible: the last user message is the question; retrieval runs behind it."""
        allow(request, req.to_answer_request().collection)
        passages = self.config.chat.max_passages
        if req.stream:
            return await self._streamed(
                self.pipeline.answer_stream(req.to_answer_request()),
                lambda events: completion_chunks_sse(events, passages),
            )
        resp = await self.pipeline.answer(req.to_answer_request())
        self.metrics.record_retrieval(resp)
        return to_completion(resp, passages)

    @app.get("/v1/models", response_model=ModelList)
    async def models(self) -> ModelList:
        return ModelList(data=[ModelCard(id=MODEL_ID), ModelCard(id=served_model(self.config.embedder))])

    @app.post(
        "/v1/embeddings",
        response_model=EmbeddingList,
        responses={
            400: {"model": ErrorResponse, "description": "`dimensions` differs from the model's."},
            404: {"model": ErrorResponse, "description": "`model` is not the served embedding model."},
            503: ERRORS[503],
        },
    )
    async def embeddings(self, req: EmbeddingRequest) -> EmbeddingList:
        """OpenAI-compatible: the texts embedded by the Embedder deployment (the model the collections use)."""
        model = served_model(self.config.embedder)
        if not is_served_model(req.model, self.config.embedder):
            raise NotFound(f"model {req.model!r} is not served here: the embedding model is {model!r}")
        if req.dimensions is not None and req.dimensions != await self.pipeline.stages.embedder.dimension():
            raise BadRequest(f"dimensions={req.dimensions}: the model {model!r} only gives its own dimension")
        vectors, tokens = await self.pipeline.embed(req.texts())
        return embedding_list(vectors, model, tokens, req.encoding_format)

    def _recovery_state(self) -> str:
        recovery = getattr(self, "recovery", None)
        if recovery is None:
            return "done"
        if not recovery.done():
            return "pending"
        return "failed" if recovery.cancelled() or recovery.exception() is not None else "done"

    async def _recovered(self) -> None:
        # Writes wait for the start-up roll-back (deployments/ingress/intents.py); a failed one fails them too.
        recovery = getattr(self, "recovery", None)
        if recovery is not None and not recovery.done():
            await asyncio.shield(recovery)
        elif recovery is not None:
            recovery.result()

    @app.post("/v1/ingest", response_model=IngestResponse, responses={503: ERRORS[503]})
    async def ingest(self, req: IngestRequest, request: Request) -> IngestResponse:
        allow(request, req.collection)
        await self._recovered()
        resp = await self.pipeline.ingest(req)
        self.metrics.record_ingest(resp)
        return resp

    @app.get("/v1/collections", response_model=CollectionList, responses={503: ERRORS[503]})
    async def list_collections(self, request: Request) -> CollectionList:
        """The vector store's collections that this API key may access, with their point and document counts."""
        guarded = getattr(request.app.state, "guards", None) is not None
        return await self.pipeline.collections(visible_collections(request.scope.get("state"), guarded))

    @app.get(
        "/v1/collections/{collection}/documents",
        response_model=DocumentPage,
        responses={404: ERRORS[404], 503: ERRORS[503]},
    )
    async def list_documents(
        self,
        request: Request,
        collection: str = Path(pattern=COLLECTION_PATTERN),
        limit: int = Query(100, ge=1, le=MAX_DOCUMENT_PAGE),
        cursor: str | None = Query(None, pattern=CURSOR_PATTERN, description="The previous page's `next_cursor`."),
    ) -> DocumentPage:
        """The collection's document ids with their chunk counts, a page at a time (vector store order)."""
        allow(request, collection)
        return await self.pipeline.documents(collection, limit, cursor)

    @app.get("/v1/collections/{collection}", response_model=CollectionStats, responses={404: ERRORS[404]})
    async def collection_stats(
        self, request: Request, collection: str = Path(pattern=COLLECTION_PATTERN)
    ) -> CollectionStats:
        allow(request, collection)
        return await self.pipeline.stats(collection)

    @app.delete(
        "/v1/documents/{doc_id:path}", response_model=DeleteResponse, responses={404: ERRORS[404], 503: ERRORS[503]}
    )
    async def delete_document(
        self, doc_id: str, request: Request, collection: str = Query(DEFAULT_COLLECTION, pattern=COLLECTION_PATTERN)
    ) -> DeleteResponse:
        allow(request, collection)
        await self._recovered()
        return await self.pipeline.delete_document(collection, doc_id)

    @app.delete(
        "/v1/collections/{collection}",
        response_model=CollectionDeleteResponse,
        responses={404: ERRORS[404], 503: ERRORS[503]},
    )
    async def delete_collection(
        self, request: Request, collection: str = Path(pattern=COLLECTION_PATTERN)
    ) -> CollectionDeleteResponse:
        """Drops the collection from both stores and the graph's in-memory indexes (`admin` scope). Interrupted by
        a crash, it is finished when the app starts again."""
        allow(request, collection)
        await self._recovered()
        return await self.pipeline.drop_collection(collection)

    @app.get("/v1/collections/{collection}/verify", response_model=VerifyResponse, responses={503: ERRORS[503]})
    async def verify_collection(
        self, request: Request, collection: str = Path(pattern=COLLECTION_PATTERN)
    ) -> VerifyResponse:
        """Store consistency: per document the same chunks in both stores, no entity without a chunk, no
        interrupted ingest pending. `graphrag-ingest --verify` calls it."""
        allow(request, collection)
        return await self.pipeline.verify(collection)

    @app.post("/v1/collections/{collection}/repair", response_model=RepairResponse, responses={503: ERRORS[503]})
    async def repair_collection(
        self, request: Request, collection: str = Path(pattern=COLLECTION_PATTERN)
    ) -> RepairResponse:
        """Removes from both stores the documents the stores disagree on (re-ingest them) and orphan entities."""
        allow(request, collection)
        await self._recovered()
        return await self.pipeline.repair(collection)

    @app.post("/v1/admin/snapshot", response_model=SnapshotResponse, responses={400: ERRORS[400], 503: ERRORS[503]})
    async def snapshot(self, req: SnapshotRequest, request: Request) -> SnapshotResponse:
        """Both stores of the collections copied into `dir` on the server's machine, consistent with each other:
        ingests wait meanwhile, reads go on. `graphrag-ingest --snapshot DIR` calls it."""
        allow(request, None)
        await self._recovered()
        return await self.backups.snapshot(req.dir, req.collections)

    @app.post("/v1/admin/restore", response_model=RestoreResponse, responses={400: ERRORS[400], 503: ERRORS[503]})
    async def restore(self, req: SnapshotRequest, request: Request) -> RestoreResponse:
        """A snapshot's collections loaded into stores that do not hold them (an empty data folder); each one's
        `verify` report. `graphrag-ingest --restore DIR` calls it."""
        allow(request, None)
        await self._recovered()
        return await self.backups.restore(req.dir, req.collections)

    @app.post(
        "/v1/graph/query",
        response_model=GraphQueryResponse,
        responses={
            400: {
                "model": ErrorResponse,
                "description": "The query was refused (not read-only) or rejected by the store.",
            },
            503: ERRORS[503],
            504: {
                "model": ErrorResponse,
                "description": "The query ran longer than `graph.user_query_timeout_s` and was stopped.",
            },
        },
    )
    async def graph_query(self, req: GraphQueryRequest, request: Request) -> GraphQueryResponse:
        allow(request, None)  # admin scope (the guard), and a key that is not limited to collections
        return await self.pipeline.graph_query(req)

    @app.get(
        "/v1/graph/entities/{name:path}",
        response_model=EntityResponse,
        responses={404: ERRORS[404], 503: ERRORS[503]},
    )
    async def graph_entity(
        self,
        name: str,
        request: Request,
        collection: str = Query(DEFAULT_COLLECTION, pattern=COLLECTION_PATTERN),
        hops: int = Query(1, ge=1, le=MAX_HOPS),
    ) -> EntityResponse:
        allow(request, collection)
        return await self.pipeline.graph_entity(collection, name, hops)

    @app.get("/healthz")
    async def healthz(self) -> dict:
        return {"status": "ok"}

    @app.get("/readyz", response_model=ReadyResponse, responses={503: {"model": ReadyResponse}})
    async def readyz(self) -> JSONResponse:
        stages = await self.pipeline.ready()
        recovery = self._recovery_state()
        body = ReadyResponse(
            ready=all(s.ok for s in stages.values()) and recovery == "done",
            stages=stages,
            auth="open" if self.config.auth.open else "api_keys",
            recovery=recovery,
        )
        return JSONResponse(status_code=200 if body.ready else 503, content=body.model_dump())
