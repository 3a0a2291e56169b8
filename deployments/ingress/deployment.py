"""The HTTP front: FastAPI routes on a Serve ingress deployment. Routes stay thin; logic is in `Pipeline`."""

import asyncio
import logging
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path as PathLib
from typing import Any

from fastapi import Path, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse, StreamingResponse
from ray import serve
from ray.serve.exceptions import BackPressureError
from ray.serve.handle import DeploymentHandle
from starlette.routing import Route

from deployments.config import AppConfig, LimitsConfig
from deployments.errors import (
    BadRequest,
    CollectionNotFound,
    NotFound,
    StageError,
    StageTimeout,
    StorageFull,
    is_stage_failure,
)
from deployments.handles import stages_from_handles
from deployments.ingress.auth import OPEN_PATHS, ApiKeyAuth, Forbidden, authorize_collection, visible_collections
from deployments.ingress.backups import Backups
from deployments.ingress.embeddings_api import (
    EmbeddingList,
    EmbeddingRequest,
    embedding_list,
    is_served_model,
    served_model,
)
from deployments.ingress.http_guards import HttpGuards
from deployments.ingress.intents import IntentLog
from deployments.ingress.mcp_server import MCP_PATH, McpEndpoint
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
from deployments.ingress.strict_json import StrictJSONRoute, request_validation_error
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
from deployments.observability import StageMetrics, configure_logging, current_request_id
from deployments.stages import Stages
from deployments.tracing import FastAPIInServeTrace
from deployments.ui.routes import add_ui
from deployments.ui.stats import WindowedStageMetrics

log = logging.getLogger("graphrag.ingress")

# A point id (UUID), as GET /v1/collections/{c}/documents returns it in `next_cursor`.
_CURSOR_PATTERN = r"^(?:[0-9a-fA-F]{32}|[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12})$"

_ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorResponse, "description": "The request cannot be run as asked; `detail` says why."},
    404: {"model": ErrorResponse, "description": "The collection does not exist."},
    503: {"model": ErrorResponse, "description": "A required stage is unavailable; `stage` names it."},
}

# Each event's `data` is one JSON object (StreamReferences, StreamDelta, StreamDone or StreamError for /v1/answer;
# OpenAI's chat.completion.chunk for /v1/chat/completions), and the last is the literal `[DONE]`.
_SSE_EVENT = {"type": "object", "required": ["data"], "properties": {"data": {"type": "string"}}}
_STREAMED: dict[int | str, dict[str, Any]] = {
    200: {
        "content": {"text/event-stream": {"schema": _SSE_EVENT}},
        "description": (
            "JSON, or with `stream: true` Server-Sent Events: each `data:` is one JSON event (references first, then "
            "the answer in pieces, then the whole response or an error), the last is `[DONE]`."
        ),
    }
}
# Statuses any route may answer, from the guards in front of every route or from Serve's load shedding.
_COMMON_ERRORS = {
    "400": "The body is not valid JSON.",
    "401": "Missing or invalid API key (when API keys are configured).",
    "403": "The API key lacks the scope (read, write, admin) or the collection the request needs.",
    "413": "Request body larger than `limits.max_body_bytes`.",
    "422": "Invalid request: the offending field is named.",
    "429": "Overloaded (Serve backpressure configured with 429); retry after `Retry-After` seconds.",
    "503": "Overloaded or a required stage unavailable; `Retry-After` says when to retry.",
    "504": "The request passed `limits.request_timeout_s` and was cancelled.",
}

# FastAPIInServeTrace: FastAPI's own spans join Ray Serve's trace of the request (deployments/tracing.py).
app = FastAPIInServeTrace(
    title="graphrag-serve",
    version="0.1.0",
    description="GraphRAG question answering: dense vector and knowledge-graph retrieval, fused, reranked, answered with citations.",
)

# The replica's constructor sets `app.state.guards` (auth, limits) and `app.state.metrics`; handlers read them from
# the serving app (`request.app`), never from module globals: Serve ships this module's app to the replica by value.
app.add_middleware(HttpGuards)
# Strict JSON bodies (no NaN, no lone surrogates) and 422s that echo only an excerpt of the input.
app.router.route_class = StrictJSONRoute
app.add_exception_handler(RequestValidationError, request_validation_error)  # type: ignore[arg-type]  # typed for Exception
add_ui(app)  # the web page at /ui/ and GET /v1/stats


class _ReplicaMcp:
    """`/mcp` (deployments/ingress/mcp_server.py): a raw ASGI route to the serving replica's MCP endpoint, made
    on its first request over that replica's pipeline."""

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        ingress = serve.get_replica_context().servable_object
        endpoint = getattr(ingress, "mcp_endpoint", None)
        if endpoint is None:
            endpoint = ingress.mcp_endpoint = McpEndpoint(
                ingress.pipeline, app.version, before_write=ingress._recovered
            )
        await endpoint(scope, receive, send)


app.router.routes.append(Route(MCP_PATH, _ReplicaMcp(), methods=["GET", "POST", "DELETE"]))


def _openapi() -> dict:
    """The generated schema, plus what the guards add to every route: the API key and the common error statuses."""
    if app.openapi_schema:
        return app.openapi_schema
    schema = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
    components = schema.setdefault("components", {})
    components.setdefault("securitySchemes", {}).update(
        {
            "bearer": {"type": "http", "scheme": "bearer"},
            "apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
        }
    )
    error_schema = {"$ref": "#/components/schemas/ErrorResponse"}
    components.setdefault("schemas", {}).setdefault("ErrorResponse", ErrorResponse.model_json_schema())
    for path, operations in schema.get("paths", {}).items():
        for operation in operations.values():
            if path not in OPEN_PATHS:
                operation["security"] = [{"bearer": []}, {"apiKey": []}]
            responses = operation.setdefault("responses", {})
            for status, description in _COMMON_ERRORS.items():
                if status == "422" and status in responses:
                    continue
                responses.setdefault(
                    status, {"description": description, "content": {"application/json": {"schema": error_schema}}}
                )
    app.openapi_schema = schema
    return schema


app.openapi = _openapi  # type: ignore[method-assign]  # FastAPI's documented way to customise the schema


def _retry_after(request: Request) -> dict[str, str]:
    guards: tuple[ApiKeyAuth, LimitsConfig] | None = getattr(request.app.state, "guards", None)
    return {"Retry-After": str(guards[1].retry_after_s)} if guards else {}


@app.exception_handler(StageError)
async def _stage_error(request: Request, exc: StageError) -> JSONResponse:
    metrics: StageMetrics | None = getattr(request.app.state, "metrics", None)
    if metrics is not None:
        metrics.record_error(exc.stage, exc.reason, request.url.path)
    # Built from the fields: str() of an error raised in another replica carries its remote traceback.
    if isinstance(exc, StageTimeout):  # the backend was too slow for this request, and was stopped: a gateway timeout
        return JSONResponse(
            status_code=504, content={"detail": f"{exc.stage} stage timed out: {exc.reason}", "stage": exc.stage}
        )
    if isinstance(exc, StorageFull):  # WebDAV's 507 Insufficient Storage: the write needs room the server lacks
        return JSONResponse(
            status_code=507,
            content={"detail": f"{exc.stage} store is out of disk space: {exc.reason}", "stage": exc.stage},
        )
    return JSONResponse(
        status_code=503,
        content={"detail": f"{exc.stage} stage unavailable: {exc.reason}", "stage": exc.stage},
        headers=_retry_after(request),
    )


@app.exception_handler(Forbidden)
async def _forbidden(request: Request, exc: Forbidden) -> JSONResponse:
    return JSONResponse(status_code=403, content={"detail": exc.reason})


def _allow(request: Request, collection: str | None) -> None:
    """403 unless the request's key may use `collection` (None: the request reads every collection)."""
    guarded = getattr(request.app.state, "guards", None) is not None
    state = request.scope.get("state")
    if collection is None:
        grant = (state or {}).get("grant")
        if grant is not None and grant.collections is not None:
            raise Forbidden("this API key is limited to some collections; this request reads every collection")
        if grant is None and guarded:
            raise Forbidden("no API key grant for this request")
        return
    authorize_collection(state, collection, guarded)


@app.exception_handler(BackPressureError)
async def _backpressure(request: Request, exc: BackPressureError) -> JSONResponse:
    # A downstream deployment's queue is full (its max_queued_requests): shed the request now.
    headers = {"Retry-After": str(int(exc.retry_after_s))} if exc.retry_after_s is not None else _retry_after(request)
    return JSONResponse(status_code=exc.status_code, content={"detail": f"overloaded: {exc.message}"}, headers=headers)


@app.exception_handler(CollectionNotFound)
async def _collection_missing(request: Request, exc: CollectionNotFound) -> JSONResponse:
    return JSONResponse(status_code=404, content={"detail": CollectionNotFound(exc.collection).args[0]})


@app.exception_handler(NotFound)
async def _not_found(request: Request, exc: NotFound) -> JSONResponse:
    return JSONResponse(status_code=404, content={"detail": exc.what})


@app.exception_handler(BadRequest)
async def _bad_request(request: Request, exc: BadRequest) -> JSONResponse:
    return JSONResponse(status_code=400, content={"detail": exc.reason})


@app.exception_handler(Exception)
async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    # A bug, not a stage failure (those are `degraded` or 503): the traceback goes to the log under the request
    # id (every log line carries it); the client gets the id, never the trace.
    request_id = current_request_id() or request.headers.get("x-request-id") or uuid.uuid4().hex
    log.error("unhandled error on %s (request id %s)", request.url.path, request_id, exc_info=exc)
    return JSONResponse(
        status_code=500,
        content={"detail": f"internal error (request id {request_id})", "request_id": request_id},
        headers={"X-Request-ID": request_id},
    )


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

    @app.post("/v1/retrieve", response_model=RetrieveResponse, responses=_ERRORS)
    async def retrieve(self, req: RetrieveRequest, request: Request) -> RetrieveResponse:
        _allow(request, req.collection)
        resp = await self.pipeline.retrieve(req)
        self.metrics.record_retrieval(resp)
        return resp

    @app.post("/v1/answer", response_model=AnswerResponse, responses={**_ERRORS, **_STREAMED})
    async def answer(self, req: AnswerRequest, request: Request) -> AnswerResponse | StreamingResponse:
        _allow(request, req.collection)
        if req.stream:
            return await self._streamed(self.pipeline.answer_stream(req), answer_events_sse)
        resp = await self.pipeline.answer(req)
        self.metrics.record_retrieval(resp)
        return resp

    @app.post("/v1/chat/completions", response_model=ChatCompletion, responses={**_ERRORS, **_STREAMED})
    async def chat_completions(
        self, req: ChatCompletionRequest, request: Request
    ) -> ChatCompletion | StreamingResponse:
        """OpenAI-compatible: the last user message is the question; retrieval runs behind it."""
        _allow(request, req.to_answer_request().collection)
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
            503: _ERRORS[503],
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

    @app.post("/v1/ingest", response_model=IngestResponse, responses={503: _ERRORS[503]})
    async def ingest(self, req: IngestRequest, request: Request) -> IngestResponse:
        _allow(request, req.collection)
        await self._recovered()
        resp = await self.pipeline.ingest(req)
        self.metrics.record_ingest(resp)
        return resp

    @app.get("/v1/collections", response_model=CollectionList, responses={503: _ERRORS[503]})
    async def list_collections(self, request: Request) -> CollectionList:
        """The vector store's collections that this API key may access, with their point and document counts."""
        guarded = getattr(request.app.state, "guards", None) is not None
        return await self.pipeline.collections(visible_collections(request.scope.get("state"), guarded))

    @app.get(
        "/v1/collections/{collection}/documents",
        response_model=DocumentPage,
        responses={404: _ERRORS[404], 503: _ERRORS[503]},
    )
    async def list_documents(
        self,
        request: Request,
        collection: str = Path(pattern=COLLECTION_PATTERN),
        limit: int = Query(100, ge=1, le=MAX_DOCUMENT_PAGE),
        cursor: str | None = Query(None, pattern=_CURSOR_PATTERN, description="The previous page's `next_cursor`."),
    ) -> DocumentPage:
        """The collection's document ids with their chunk counts, a page at a time (vector store order)."""
        _allow(request, collection)
        return await self.pipeline.documents(collection, limit, cursor)

    @app.get("/v1/collections/{collection}", response_model=CollectionStats, responses={404: _ERRORS[404]})
    async def collection_stats(
        self, request: Request, collection: str = Path(pattern=COLLECTION_PATTERN)
    ) -> CollectionStats:
        _allow(request, collection)
        return await self.pipeline.stats(collection)

    @app.delete(
        "/v1/documents/{doc_id:path}", response_model=DeleteResponse, responses={404: _ERRORS[404], 503: _ERRORS[503]}
    )
    async def delete_document(
        self, doc_id: str, request: Request, collection: str = Query(DEFAULT_COLLECTION, pattern=COLLECTION_PATTERN)
    ) -> DeleteResponse:
        _allow(request, collection)
        await self._recovered()
        return await self.pipeline.delete_document(collection, doc_id)

    @app.delete(
        "/v1/collections/{collection}",
        response_model=CollectionDeleteResponse,
        responses={404: _ERRORS[404], 503: _ERRORS[503]},
    )
    async def delete_collection(
        self, request: Request, collection: str = Path(pattern=COLLECTION_PATTERN)
    ) -> CollectionDeleteResponse:
        """Drops the collection from both stores and the graph's in-memory indexes (`admin` scope). Interrupted by
        a crash, it is finished when the app starts again."""
        _allow(request, collection)
        await self._recovered()
        return await self.pipeline.drop_collection(collection)

    @app.get("/v1/collections/{collection}/verify", response_model=VerifyResponse, responses={503: _ERRORS[503]})
    async def verify_collection(
        self, request: Request, collection: str = Path(pattern=COLLECTION_PATTERN)
    ) -> VerifyResponse:
        """Store consistency: per document the same chunks in both stores, no entity without a chunk, no
        interrupted ingest pending. `graphrag-ingest --verify` calls it."""
        _allow(request, collection)
        return await self.pipeline.verify(collection)

    @app.post("/v1/collections/{collection}/repair", response_model=RepairResponse, responses={503: _ERRORS[503]})
    async def repair_collection(
        self, request: Request, collection: str = Path(pattern=COLLECTION_PATTERN)
    ) -> RepairResponse:
        """Removes from both stores the documents the stores disagree on (re-ingest them) and orphan entities."""
        _allow(request, collection)
        await self._recovered()
        return await self.pipeline.repair(collection)

    @app.post("/v1/admin/snapshot", response_model=SnapshotResponse, responses={400: _ERRORS[400], 503: _ERRORS[503]})
    async def snapshot(self, req: SnapshotRequest, request: Request) -> SnapshotResponse:
        """Both stores of the collections copied into `dir` on the server's machine, consistent with each other:
        ingests wait meanwhile, reads go on. `graphrag-ingest --snapshot DIR` calls it."""
        _allow(request, None)
        await self._recovered()
        return await self.backups.snapshot(req.dir, req.collections)

    @app.post("/v1/admin/restore", response_model=RestoreResponse, responses={400: _ERRORS[400], 503: _ERRORS[503]})
    async def restore(self, req: SnapshotRequest, request: Request) -> RestoreResponse:
        """A snapshot's collections loaded into stores that do not hold them (an empty data folder); each one's
        `verify` report. `graphrag-ingest --restore DIR` calls it."""
        _allow(request, None)
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
            503: _ERRORS[503],
            504: {
                "model": ErrorResponse,
                "description": "The query ran longer than `graph.user_query_timeout_s` and was stopped.",
            },
        },
    )
    async def graph_query(self, req: GraphQueryRequest, request: Request) -> GraphQueryResponse:
        _allow(request, None)  # admin scope (the guard), and a key that is not limited to collections
        return await self.pipeline.graph_query(req)

    @app.get(
        "/v1/graph/entities/{name:path}",
        response_model=EntityResponse,
        responses={404: _ERRORS[404], 503: _ERRORS[503]},
    )
    async def graph_entity(
        self,
        name: str,
        request: Request,
        collection: str = Query(DEFAULT_COLLECTION, pattern=COLLECTION_PATTERN),
        hops: int = Query(1, ge=1, le=MAX_HOPS),
    ) -> EntityResponse:
        _allow(request, collection)
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
