"""SIMULATED stages for load benchmarks: each stage only sleeps for a latency drawn from a configured
distribution and returns placeholder evidence. No model, no store: they measure orchestration, nothing else.

The latency of a stage for a request is a deterministic function of (stage, query), so the load generator
can compute each request's critical path, max(vector, graph) + rerank + chat, without trusting the server.

Three systems over the same simulated stages:
- `sync`     the shape before the async refactor: blocking calls one after another in a FastAPI `def` route,
             in AnyIO's default pool of 40 threads: at 950 ms per request that pool alone caps it near 42
             requests/s, whatever the concurrency;
- `sync-wide` the same with a thread pool at least as large as the concurrency (`--threads`), so a ratio
             against it measures the fan-out, not the thread cap;
- `monolith` one asyncio process: the project's own Pipeline (vector and graph gathered) over in-process stages;
- `serve`    the real Ingress + Pipeline of graph.py, with each simulated stage its own Serve deployment.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import random
import time
from collections.abc import AsyncIterator, Callable

from pydantic import BaseModel

from deployments.models import (
    AnswerRequest,
    ChatDelta,
    ChatResult,
    GraphResult,
    RerankResult,
    ScoredChunk,
    Span,
    Subgraph,
    VectorResult,
)

STAGES = ("vector", "graph", "rerank", "chat")


class Latencies(BaseModel):
    """Median latency per stage in ms, and the lognormal spread (0: constant)."""

    vector: float = 300.0
    graph: float = 500.0
    rerank: float = 50.0
    chat: float = 100.0
    sigma: float = 0.0

    def seconds(self, stage: str, query: str) -> float:
        median = getattr(self, stage) / 1000.0
        if self.sigma == 0 or median == 0:
            return median
        return median * math.exp(self.sigma * random.Random(f"{stage}:{query}").gauss(0.0, 1.0))

    def critical_path(self, query: str) -> float:
        s = self.seconds
        return max(s("vector", query), s("graph", query)) + s("rerank", query) + s("chat", query)

    @classmethod
    def zero(cls) -> Latencies:
        return cls(vector=0, graph=0, rerank=0, chat=0)


def _hits(source: str, n: int = 3) -> list[ScoredChunk]:
    return [
        ScoredChunk(
            chunk_id=f"sim-{source}-{i}#0",
            doc_id=f"sim-{source}-{i}",
            text=f"simulated {source} passage {i}",
            score=1.0 / (i + 1),
        )
        for i in range(n)
    ]


class SimulatedStage:
    """One simulated stage: sleeps its latency, answers placeholders. The same objects serve the monolith
    in-process and the Serve app as deployments (their methods are the stage interfaces of deployments.stages)."""

    def __init__(self, latencies: Latencies | None = None):
        self.latencies = latencies or Latencies()

    async def _sleep(self, stage: str, query: str) -> None:
        delay = self.latencies.seconds(stage, query)
        if delay:
            await asyncio.sleep(delay)

    async def ping(self) -> str:
        return "simulated"


class SimulatedVector(SimulatedStage):
    async def embed(self, texts: list[str]) -> list[list[float]]:
        return [[1.0, 0.0, 0.0] for _ in texts]  # the ingress's query-embedding hop; its time is the vector stage's

    async def search(
        self,
        collection: str,
        query: str,
        top_k: int,
        filter: dict | None = None,
        mode: str = "hybrid",
        query_vector: list[float] | None = None,
    ) -> VectorResult:
        start = time.time()
        await self._sleep("vector", query)
        return VectorResult(hits=_hits("vector"), embed=Span(start=start, end=start))


class SimulatedGraph(SimulatedStage):
    async def search(
        self, collection: str, query: str, max_hops: int, limit: int, query_vector: list[float] | None = None
    ) -> GraphResult:
        await self._sleep("graph", query)
        return GraphResult(chunks=_hits("graph"), subgraph=Subgraph())

    async def links(self, collection: str, query: str, seeds: list[str], candidates: list[str]) -> dict[str, float]:
        return {}  # the entity-link boost's lookup: no simulated latency, but a real hop in the Serve graph


class SimulatedReranker(SimulatedStage):
    async def rerank(self, query: str, texts: list[str], hints=None) -> RerankResult:
        await self._sleep("rerank", query)
        return RerankResult(scores=[1.0 / (i + 1) for i in range(len(texts))], scorer="simulated")


class SimulatedChat(SimulatedStage):
    async def answer(self, query: str, passages: list[str], facts: list[str]) -> ChatResult:
        await self._sleep("chat", query)
        return ChatResult(answer="simulated answer [1]", model="simulated")

    async def answer_stream(self, query: str, passages: list[str], facts: list[str]) -> AsyncIterator[ChatDelta]:
        result = await self.answer(query, passages, facts)
        yield ChatDelta(content=result.answer, model=result.model)


SIMULATED = dict(zip(STAGES, (SimulatedVector, SimulatedGraph, SimulatedReranker, SimulatedChat)))


# ---- the three systems -------------------------------------------------------------------------


def sync_app(latencies: Latencies, threads: int | None = None):
    """Blocking stages one after another in a `def` route: each request holds a pool thread throughout.
    `threads`: the size of AnyIO's thread pool, which runs `def` routes (default 40)."""
    from fastapi import FastAPI

    app = FastAPI(title="simulated sync baseline")

    if threads is not None:

        @app.on_event("startup")
        async def widen_pool() -> None:
            import anyio.to_thread

            anyio.to_thread.current_default_thread_limiter().total_tokens = threads

    def stage(name: str, query: str) -> tuple[float, float]:
        start = time.time()
        time.sleep(latencies.seconds(name, query))
        return start, time.time()

    @app.post("/v1/answer")
    def answer(req: AnswerRequest) -> dict:
        t0 = time.time()
        spans = {name: stage(name, req.query) for name in STAGES}
        timings = {n: {"start_ms": (s - t0) * 1000, "duration_ms": (e - s) * 1000} for n, (s, e) in spans.items()}
        return {"query": req.query, "answer": "simulated answer [1]", "model": "simulated", "timings": timings}

    return app


def _pipeline_config():
    from deployments.config import AppConfig

    return AppConfig.from_args({"data_dir": "/tmp/graphrag-simulated", "chat.fallback_extractive": False})


def monolith_app(latencies: Latencies):
    """One asyncio process: the same Pipeline as the Serve ingress, with the stages as in-process coroutines."""
    from fastapi import FastAPI

    from deployments.ingress.pipeline import Pipeline
    from deployments.models import AnswerResponse
    from deployments.stages import Stages

    vector = SimulatedVector(latencies)
    # The vector stage answers the embedder's calls too (the query embedding, a ping).
    stages = Stages(
        embedder=vector,
        vector=vector,
        graph=SimulatedGraph(latencies),
        reranker=SimulatedReranker(latencies),
        chat=SimulatedChat(latencies),
    )
    pipeline = Pipeline(_pipeline_config(), stages)
    app = FastAPI(title="simulated asyncio monolith")

    @app.post("/v1/answer", response_model=AnswerResponse)
    async def answer(req: AnswerRequest) -> AnswerResponse:
        return await pipeline.answer(req)

    return app


# One Serve deployment per simulated stage: the Ingress reaches the same classes over handles.
def _deployments():
    from ray import serve

    return {name: serve.deployment(cls, name=cls.__name__) for name, cls in SIMULATED.items()}


def _serve_options(options: dict) -> Callable[[str], dict]:
    """Serve options per simulated stage ("vector", "graph", "rerank", "chat", "ingress"), with the app's own
    defaults (DeploymentsConfig: access logs on the ingress only); unset stages get max_ongoing_requests 1000."""
    from deployments.config import DeploymentsConfig

    names = {"rerank": "reranker"}
    config = DeploymentsConfig(
        **{names.get(s, s): options.get(s, {"max_ongoing_requests": 1000}) for s in (*STAGES, "ingress")}
    )
    return lambda stage: getattr(config, names.get(stage, stage)).serve_options()


def build_serve_app(latencies: Latencies, options: dict | None = None):
    """The real Ingress (FastAPI on Serve) over one Serve deployment per simulated stage.

    `options`: deployment options per stage name and "ingress" (DeploymentOptions fields).
    """
    from deployments.ingress.deployment import Ingress

    serve_options = _serve_options(options or {})

    bound = {name: d.options(**serve_options(name)).bind(latencies) for name, d in _deployments().items()}
    # The embedder hop (the query embedding, /readyz's ping) goes to the simulated vector stage.
    return Ingress.options(**serve_options("ingress")).bind(
        _pipeline_config(), bound["vector"], bound["vector"], bound["graph"], bound["rerank"], bound["chat"]
    )


class _CapacityLimited:
    """A simulated stage whose replica serves at most `capacity` requests at once, like a CPU-bound backend:
    beyond that, requests wait, latency grows, and Serve's autoscaler sees the queue."""

    def __init__(self, latencies: Latencies, capacity: int):
        self.slots = asyncio.Semaphore(capacity)
        super().__init__(latencies)

    async def _sleep(self, stage: str, query: str) -> None:
        async with self.slots:
            await super()._sleep(stage, query)


def build_autoscale_app(args: dict):
    """Serve builder for autoscaling experiments (configs/autoscale-*.yaml): simulated stages, each with a
    per-replica capacity and its own autoscaling_config. `args.load_profile` is read by benchmarks/speed/autoscale.py."""
    from ray import serve

    from deployments.ingress.deployment import Ingress

    latencies = Latencies(**args.get("latencies", {}))
    capacity = {stage: int(args.get("capacity", {}).get(stage, 1000)) for stage in STAGES}
    options = args.get("deployments", {})

    serve_options = _serve_options(options)

    classes = {name: type(f"Autoscale{cls.__name__}", (_CapacityLimited, cls), {}) for name, cls in SIMULATED.items()}
    bound = {
        name: serve.deployment(cls, name=f"Simulated{name.title()}")
        .options(**serve_options(name))
        .bind(latencies, capacity[name])
        for name, cls in classes.items()
    }
    return Ingress.options(**serve_options("ingress")).bind(
        _pipeline_config(), bound["vector"], bound["vector"], bound["graph"], bound["rerank"], bound["chat"]
    )


def main() -> None:
    parser = argparse.ArgumentParser(description="Serve one SIMULATED baseline system (sync or monolith) with uvicorn.")
    parser.add_argument("system", choices=["sync", "sync-wide", "monolith"])
    parser.add_argument("--threads", type=int, default=256, help="sync-wide: AnyIO's thread pool size")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--latencies", default="{}", help="JSON for Latencies, e.g. '{\"sigma\": 0.2}'")
    args = parser.parse_args()
    import uvicorn

    latencies = Latencies.model_validate_json(args.latencies)
    if args.system == "monolith":
        app = monolith_app(latencies)
    else:
        app = sync_app(latencies, args.threads if args.system == "sync-wide" else None)
    uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="warning", access_log=False)


if __name__ == "__main__":
    main()
