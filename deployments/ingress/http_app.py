"""The ingress's FastAPI app: middleware, the MCP route, the OpenAPI schema, and how errors become HTTP statuses.

The routes themselves are the `Ingress` deployment's methods (deployments/ingress/deployment.py)."""

import logging
import uuid
from collections.abc import Callable
from typing import Any

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse
from ray import serve
from ray.serve.exceptions import BackPressureError
from starlette.routing import Route

from deployments.config import LimitsConfig
from deployments.errors import BadRequest, CollectionNotFound, NotFound, StageError, StageTimeout, StorageFull
from deployments.ingress.auth import OPEN_PATHS, ApiKeyAuth, Forbidden, authorize_collection
from deployments.ingress.http_guards import HttpGuards
from deployments.ingress.mcp_server import MCP_PATH, McpEndpoint
from deployments.ingress.strict_json import StrictJSONRoute, request_validation_error
from deployments.models import ErrorResponse
from deployments.observability import StageMetrics, current_request_id
from deployments.tracing import FastAPIInServeTrace
from deployments.ui.routes import add_ui

log = logging.getLogger("graphrag.ingress")

# A point id (UUID), as GET /v1/collections/{c}/documents returns it in `next_cursor`.
CURSOR_PATTERN = r"^(?:[0-9a-fA-F]{32}|[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12})$"

ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorResponse, "description": "The request cannot be run as asked; `detail` says why."},
    404: {"model": ErrorResponse, "description": "The collection does not exist."},
    503: {"model": ErrorResponse, "description": "A required stage is unavailable; `stage` names it."},
}

# Each event's `data` is one JSON object (StreamReferences, StreamDelta, StreamDone or StreamError for /v1/answer;
# OpenAI's chat.completion.chunk for /v1/chat/completions), and the last is the literal `[DONE]`.
_SSE_EVENT = {"type": "object", "required": ["data"], "properties": {"data": {"type": "string"}}}
STREAMED: dict[int | str, dict[str, Any]] = {
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


def allow(request: Request, collection: str | None) -> None:
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
