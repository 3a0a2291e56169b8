"""The Model Context Protocol face of the app: `/mcp` on the ingress (streamable HTTP, stateless, JSON answers),
so that agents call retrieval as tools.

Tools: `retrieve`, `answer`, `graph_entity`, `list_collections` (read scope) and `ingest` (write scope). Their
input schemas are the API's own request models (deployments/models.py), their results the API's responses as
structured content (citations, `degraded`) plus a text rendering for models that read only text. The HTTP guards
in front of every route authenticate the key (`/mcp` needs `read`); each tool then checks its own scope and the
key's collection allow-list, like the matching route. A refused call, a bad argument, a missing collection or a
failed stage is a tool error (`isError`) saying why, never a protocol failure. Stateless: any ingress replica
answers any call, so the MCP endpoint scales with the ingress.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from mcp import types
from mcp.server.lowlevel import Server
from mcp.server.streamable_http_manager import StreamableHTTPSessionManager
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from deployments.errors import (
    BadRequest,
    CollectionNotFound,
    NotFound,
    StageError,
    is_stage_failure,
)
from deployments.ingress.auth import Forbidden, Grant, authorize_collection
from deployments.ingress.pipeline import Pipeline
from deployments.models import (
    COLLECTION_PATTERN,
    DEFAULT_COLLECTION,
    MAX_HOPS,
    AnswerRequest,
    AnswerResponse,
    CollectionList,
    EntityResponse,
    IngestRequest,
    IngestResponse,
    RetrieveRequest,
    RetrieveResponse,
)

log = logging.getLogger("graphrag.mcp")

MCP_PATH = "/mcp"


class EntityRequest(BaseModel):
    """GET /v1/graph/entities/{name}'s path and query parameters, as one tool input."""

    model_config = ConfigDict(extra="forbid", strict=True)
    name: str = Field(min_length=1, max_length=256, description="The entity's name (matched by its normalized key).")
    collection: str = Field(DEFAULT_COLLECTION, pattern=COLLECTION_PATTERN)
    hops: int = Field(1, ge=1, le=MAX_HOPS, description="Neighbourhood depth.")


class NoArguments(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


@dataclass(frozen=True)
class ToolSpec:
    description: str
    takes: type[BaseModel]
    returns: type[BaseModel]
    scope: str
    run: Callable[[Pipeline, Any, Grant], Awaitable[BaseModel]]
    read_only: bool = True


def _allowed(grant: Grant, collection: str) -> None:
    authorize_collection({"grant": grant}, collection, guarded=True)


async def _retrieve(pipeline: Pipeline, req: RetrieveRequest, grant: Grant) -> RetrieveResponse:
    _allowed(grant, req.collection)
    return await pipeline.retrieve(req)


async def _answer(pipeline: Pipeline, req: RetrieveRequest, grant: Grant) -> AnswerResponse:
    _allowed(grant, req.collection)
    return await pipeline.answer(AnswerRequest.model_validate(req.model_dump(exclude_unset=True)))


async def _entity(pipeline: Pipeline, req: EntityRequest, grant: Grant) -> EntityResponse:
    _allowed(grant, req.collection)
    return await pipeline.graph_entity(req.collection, req.name, req.hops)


async def _collections(pipeline: Pipeline, req: NoArguments, grant: Grant) -> CollectionList:
    return await pipeline.collections(grant.collections)


async def _ingest(pipeline: Pipeline, req: IngestRequest, grant: Grant) -> IngestResponse:
    _allowed(grant, req.collection)
    return await pipeline.ingest(req)


TOOLS: dict[str, ToolSpec] = {
    "retrieve": ToolSpec(
        "Find the passages that answer a question: dense, lexical and knowledge-graph retrieval, fused and reranked. "
        "Returns the passages (hits) with score, sources and document id, the graph facts, and the stages that "
        "failed (degraded).",
        RetrieveRequest,
        RetrieveResponse,
        "read",
        _retrieve,
    ),
    "answer": ToolSpec(
        "Answer a question from the collection with citations: [n] in the answer is hit n-1; `citations` lists the "
        "cited passages with their document ids.",
        RetrieveRequest,
        AnswerResponse,
        "read",
        _answer,
    ),
    "graph_entity": ToolSpec(
        "An entity of the knowledge graph with its neighbours, relations and the documents that mention it.",
        EntityRequest,
        EntityResponse,
        "read",
        _entity,
    ),
    "list_collections": ToolSpec(
        "The collections this API key may use, with their point and document counts.",
        NoArguments,
        CollectionList,
        "read",
        _collections,
    ),
    "ingest": ToolSpec(
        "Add or replace documents in a collection (needs an API key with the write scope).",
        IngestRequest,
        IngestResponse,
        "write",
        _ingest,
        read_only=False,
    ),
}


def _schema(model: type[BaseModel], mode: str) -> dict[str, Any]:
    schema = model.model_json_schema(mode=mode)  # type: ignore[arg-type]
    schema.setdefault("properties", {})
    return schema


def tool_list() -> list[types.Tool]:
    return [
        types.Tool(
            name=name,
            description=spec.description,
            input_schema=_schema(spec.takes, "validation"),
            output_schema=_schema(spec.returns, "serialization"),
            annotations=types.ToolAnnotations(
                read_only_hint=spec.read_only, destructive_hint=False, open_world_hint=False
            ),
        )
        for name, spec in TOOLS.items()
    ]


def as_text(result: BaseModel) -> str:
    """The result for a model that reads only text: the answer, the numbered passages, what failed."""
    lines: list[str] = []
    if isinstance(result, AnswerResponse):
        lines += [result.answer, ""]
    if isinstance(result, RetrieveResponse):
        lines += [
            f"[{n}] {h.doc_id} ({h.chunk_id}, score {h.score:.3f}): {h.text}" for n, h in enumerate(result.hits, 1)
        ]
        if result.degraded:
            lines.append("degraded: " + "; ".join(f"{d.stage}: {d.error}" for d in result.degraded))
        return "\n".join(lines)
    return result.model_dump_json(indent=1)


def _error(text: str) -> types.CallToolResult:
    return types.CallToolResult(content=[types.TextContent(type="text", text=text)], is_error=True)


def _invalid(exc: ValidationError) -> str:
    return "invalid arguments: " + "; ".join(
        f"{'.'.join(map(str, e['loc'])) or 'arguments'}: {e['msg']}" for e in exc.errors()
    )


def _grant_of(request: Any) -> Grant | None:
    """The grant the HTTP guards left in the request's ASGI state (None: no guard ran, or it granted nothing)."""
    scope = getattr(request, "scope", None) or {}
    return (scope.get("state") or {}).get("grant")


async def call_tool(
    pipeline: Pipeline,
    name: str,
    arguments: Mapping[str, Any] | None,
    grant: Grant | None,
    before_write: Callable[[], Awaitable[None]] | None = None,
) -> types.CallToolResult:
    """`before_write`: awaited before a writing tool runs (the ingress's start-up roll-back, like POST /v1/ingest)."""
    spec = TOOLS.get(name)
    if spec is None:
        return _error(f"unknown tool {name!r}; the tools are {', '.join(TOOLS)}")
    if grant is None:
        return _error("no API key grant for this request")
    if spec.scope not in grant.scopes:
        return _error(
            f"this API key lacks the {spec.scope!r} scope that the {name} tool needs (it has: {', '.join(sorted(grant.scopes))})"
        )
    try:
        request = spec.takes.model_validate(dict(arguments or {}))
        if not spec.read_only and before_write is not None:
            await before_write()
        result = await spec.run(pipeline, request, grant)
    except ValidationError as exc:
        return _error(_invalid(exc))
    except (Forbidden, CollectionNotFound, NotFound, BadRequest) as exc:
        return _error(str(exc.args[0]) if exc.args else type(exc).__name__)
    except Exception as exc:
        if isinstance(exc, StageError):
            return _error(f"{exc.stage} stage unavailable: {exc.reason}")
        if is_stage_failure(exc):
            last = str(exc).strip().splitlines()[-1:] or [""]  # a remote error's last line holds its cause
            return _error(f"a stage failed: {type(exc).__name__}: {last[0][:300]}")
        request_id = uuid.uuid4().hex
        log.error("MCP tool %s failed (request id %s)", name, request_id, exc_info=exc)
        return _error(f"internal error (request id {request_id})")
    return types.CallToolResult(
        content=[types.TextContent(type="text", text=as_text(result))],
        structured_content=result.model_dump(mode="json"),
    )


class McpEndpoint:
    """The ASGI app at `/mcp`: the MCP server over the ingress's pipeline. Its session manager is started on the
    first request, in the replica's own event loop, so it needs no ASGI lifespan (Serve and the test harness
    both serve the app without one)."""

    def __init__(
        self, pipeline: Pipeline, version: str = "", before_write: Callable[[], Awaitable[None]] | None = None
    ):
        async def list_tools(ctx: Any, params: Any) -> types.ListToolsResult:
            return types.ListToolsResult(tools=tool_list())

        async def on_call(ctx: Any, params: types.CallToolRequestParams) -> types.CallToolResult:
            return await call_tool(pipeline, params.name, params.arguments, _grant_of(ctx.request), before_write)

        server = Server("graphrag-serve", version=version, on_list_tools=list_tools, on_call_tool=on_call)
        # Stateless with JSON answers: no session lives in a replica, so any replica answers any request.
        self.manager = StreamableHTTPSessionManager(app=server, stateless=True, json_response=True)
        self._started: asyncio.Future | None = None
        self._runner: asyncio.Task | None = None

    async def _start(self) -> None:
        if self._started is None:
            self._started = asyncio.get_running_loop().create_future()
            self._runner = asyncio.get_running_loop().create_task(self._run())
        await asyncio.shield(self._started)

    async def _run(self) -> None:
        assert self._started is not None
        try:
            async with self.manager.run():
                self._started.set_result(None)
                await asyncio.Event().wait()  # until the replica's loop ends
        except BaseException as exc:
            if not self._started.done():
                self._started.set_exception(exc)
            raise

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        await self._start()
        await self.manager.handle_request(scope, receive, send)
