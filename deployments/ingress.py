"""The HTTP front: FastAPI routes on a Serve ingress deployment. Routes stay thin; logic is in `Pipeline`."""

import logging
import uuid

from fastapi import FastAPI, Path, Request
from fastapi.responses import JSONResponse
from ray import serve
from ray.serve.handle import DeploymentHandle

from deployments.config import AppConfig
from deployments.errors import CollectionNotFound, StageError
from deployments.models import (
    COLLECTION_PATTERN,
    AnswerRequest,
    AnswerResponse,
    CollectionStats,
    ErrorResponse,
    IngestRequest,
    IngestResponse,
    ReadyResponse,
    RetrieveRequest,
    RetrieveResponse,
)
from deployments.pipeline import Pipeline, Stages

log = logging.getLogger("graphrag.ingress")

_ERRORS = {
    404: {"model": ErrorResponse, "description": "The collection does not exist."},
    503: {"model": ErrorResponse, "description": "A required stage is unavailable; `stage` names it."},
}

app = FastAPI(
    title="graphrag-serve",
    version="0.1.0",
    description="GraphRAG question answering: dense vector and knowledge-graph retrieval, fused, reranked, answered with citations.",
)


@app.exception_handler(StageError)
async def _stage_error(request: Request, exc: StageError) -> JSONResponse:
    # Built from the fields: str() of an error raised in another replica carries its remote traceback.
    return JSONResponse(status_code=503, content={"detail": f"{exc.stage} stage unavailable: {exc.reason}", "stage": exc.stage})


@app.exception_handler(CollectionNotFound)
async def _collection_missing(request: Request, exc: CollectionNotFound) -> JSONResponse:
    return JSONResponse(status_code=404, content={"detail": CollectionNotFound(exc.collection).args[0]})


@app.exception_handler(Exception)
async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    # The traceback goes to the log under an id; the client gets the id, never the trace.
    error_id = uuid.uuid4().hex[:12]
    log.exception("unhandled error %s on %s", error_id, request.url.path)
    return JSONResponse(status_code=500, content={"detail": f"internal error (id {error_id})"})


def stages_from_handles(
    embedder: DeploymentHandle,
    vector: DeploymentHandle,
    graph: DeploymentHandle,
    reranker: DeploymentHandle,
    chat: DeploymentHandle,
) -> Stages:
    return Stages(
        vector_search=vector.search.remote,
        graph_search=graph.search.remote,
        rerank=reranker.rerank.remote,
        chat=chat.answer.remote,
        vector_upsert=vector.upsert.remote,
        graph_upsert=graph.upsert.remote,
        vector_delete=vector.delete_documents.remote,
        graph_delete=graph.delete_documents.remote,
        vector_count=vector.count.remote,
        graph_counts=graph.counts.remote,
        pings={
            "embedder": embedder.ping.remote,
            "vector": vector.ping.remote,
            "graph": graph.ping.remote,
            "reranker": reranker.ping.remote,
            "chat": chat.ping.remote,
        },
    )


@serve.deployment
@serve.ingress(app)
class Ingress:
    def __init__(
        self,
        config: AppConfig,
        embedder: DeploymentHandle,
        vector: DeploymentHandle,
        graph: DeploymentHandle,
        reranker: DeploymentHandle,
        chat: DeploymentHandle,
    ):
        self.pipeline = Pipeline(config, stages_from_handles(embedder, vector, graph, reranker, chat))

    @app.post("/v1/retrieve", response_model=RetrieveResponse, responses=_ERRORS)
    async def retrieve(self, req: RetrieveRequest) -> RetrieveResponse:
        return await self.pipeline.retrieve(req)

    @app.post("/v1/answer", response_model=AnswerResponse, responses=_ERRORS)
    async def answer(self, req: AnswerRequest) -> AnswerResponse:
        return await self.pipeline.answer(req)

    @app.post("/v1/ingest", response_model=IngestResponse, responses={503: _ERRORS[503]})
    async def ingest(self, req: IngestRequest) -> IngestResponse:
        return await self.pipeline.ingest(req)

    @app.get("/v1/collections/{collection}", response_model=CollectionStats, responses={404: _ERRORS[404]})
    async def collection_stats(self, collection: str = Path(pattern=COLLECTION_PATTERN)) -> CollectionStats:
        return await self.pipeline.stats(collection)

    @app.get("/healthz")
    async def healthz(self) -> dict:
        return {"status": "ok"}

    @app.get("/readyz", response_model=ReadyResponse, responses={503: {"model": ReadyResponse}})
    async def readyz(self) -> JSONResponse:
        stages = await self.pipeline.ready()
        body = ReadyResponse(ready=all(s.ok for s in stages.values()), stages=stages)
        return JSONResponse(status_code=200 if body.ready else 503, content=body.model_dump())
