"""Real-stage load benchmark: the Serve graph against an in-process monolith of the same real components.

    python -m benchmarks.speed.real_stages                          # full run: c=1, 8, 32, 50, 64, >= 20 s per level
    python -m benchmarks.speed.real_stages --levels 1,8 --seconds 5 --min-requests 50   # a short run while developing

Both systems serve the same data folder: SciFact (5,183 abstracts) bulk-loaded in-process into both stores by the
app's chunker, embedder, VectorService and GraphService (and, with --hotpotqa, HotpotQA-100 through /v1/ingest),
kept under benchmarks/.cache/real-stages/ for later runs (`--fresh` loads again). The systems run one after the other in the same run, each the only owner of the
embedded stores (Qdrant Edge, ArcadeDB's Bolt server):
- serve:    the app as shipped (graph.build_app: HAProxy -> Ingress -> Embedder, Vector || Graph, Reranker, Chat).
- monolith: the same Pipeline, VectorService, GraphService, embedded reranker, extractive chat and ONNX/torch
            embedder (batched as the Embedder deployment batches: up to max_batch_size texts, batch_wait_timeout_s)
            in ONE uvicorn process that opens the stores itself; the Bolt server is its child, as in Serve.
Closed loop on POST /v1/retrieve (default mode, `hybrid`, `hybrid+graph`) and POST /v1/answer (extractive) with
SciFact's questions; per level: requests/s, p50/p95/p99, each stage's p50 span, CPU-ms per request by process.
Then the Graph deployment alone over its handle (p50 at c=1, searches/s at c=32), and the Embedder deployment's
query embeddings/s under concurrent one-question calls vs the raw backend at the batch size that load produced.
The headline monolith serves the ingress deployment's own FastAPI app (the same HTTP layer); a second one, bare
routes over the Pipeline, is measured at c=1 and c=32 beside it. Writes benchmarks/results/performance.json -> "real" (the rest of the file is kept) and
benchmarks/results/real_stages.json (full tables) and real_stages.png (latency vs throughput).
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from benchmarks import use_local_env

use_local_env()

import httpx  # noqa: E402

from benchmarks import harness  # noqa: E402
from benchmarks.harness import DATASETS, RESULTS, ROOT  # noqa: E402
from benchmarks.loadgen import RunResult, closed_loop, cpu_ms_per_request, process_cpu  # noqa: E402

CACHE = harness.CACHE / "real-stages"
PARTIAL = CACHE / "partial.json"
# Abstracts are ~200 words: one chunk each, as in benchmarks/quality/scifact.py. Everything else as shipped.
APP_ARGS: dict[str, Any] = {"chunking": {"max_words": 512, "overlap_words": 64}}
RAMP_S = 1.0
RAY_WORKER_NICENESS = 15  # Ray starts its workers (every Serve replica) at this niceness (its worker_niceness)


def own_process_cpu() -> dict[int, tuple[str, float]]:
    """CPU so far of this run's processes only (descendants of this driver: Ray's workers and HAProxy, the
    monolith, the Bolt server children), never another user's Ray on the same machine."""
    parents: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    parents[int(entry)] = int(f.read().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
    own = {os.getpid()}
    grew = True
    while grew:
        grew = False
        for pid, parent in parents.items():
            if parent in own and pid not in own:
                own.add(pid)
                grew = True
    own.discard(os.getpid())  # the load generator reports its own CPU
    # A process that is exiting has an empty command line: nothing to name it by, and it is gone next time.
    return {pid: v for pid, v in process_cpu(("",)).items() if pid in own and v[0]}


# ---- the monolith ---------------------------------------------------------------------------------


class ChatAdapter:
    """The chat backend with the ChatStage methods the Chat deployment adds (answer_stream)."""

    def __init__(self, impl: Any):
        self.impl = impl

    async def answer(self, query: str, passages: list[str], facts: list[str]) -> Any:
        return await self.impl.answer(query, passages, facts)

    async def answer_stream(self, query: str, passages: list[str], facts: list[str]) -> Any:
        first, rest = await self.impl.open_stream(query, passages, facts)
        yield first
        async for piece in rest:
            yield piece

    async def ping(self) -> str:
        return await self.impl.ping()


class PrometheusMetrics:
    """ray.serve.metrics' Histogram and Counter over prometheus_client: the monolith records the ingress's metrics
    as a FastAPI gateway would (no Ray in that process)."""

    class _Metric:
        def __init__(self, kind: Any, name: str, description: str = "", tag_keys: tuple = (), **kwargs: Any):
            self._metric = kind(name, description, labelnames=tag_keys, **kwargs)
            self._tagged = bool(tag_keys)

        def _of(self, tags: dict | None) -> Any:
            return self._metric.labels(**tags) if self._tagged else self._metric

    class Histogram(_Metric):
        def __init__(self, name: str, description: str = "", boundaries: list | None = None, tag_keys: tuple = ()):
            import prometheus_client

            super().__init__(prometheus_client.Histogram, name, description, tag_keys, buckets=boundaries)

        def observe(self, value: float, tags: dict | None = None) -> None:
            self._of(tags).observe(value)

    class Counter(_Metric):
        def __init__(self, name: str, description: str = "", tag_keys: tuple = ()):
            import prometheus_client

            super().__init__(prometheus_client.Counter, name, description, tag_keys)

        def inc(self, value: float = 1.0, tags: dict | None = None) -> None:
            self._of(tags).inc(value)


def ingress_app(config: Any, stages: Any) -> Any:
    """The ingress deployment's own FastAPI app (its routes, auth, limits, guards, error handlers, metrics) over
    in-process stages: what Serve serves, minus Serve. Its class-based routes find their object through the
    replica context, which this process provides."""
    from types import SimpleNamespace

    from ray import serve

    from deployments.ingress.deployment import Ingress, app
    from deployments.ui.stats import WindowedStageMetrics

    routes: list[Any] = []
    serve.get_replica_context = lambda: SimpleNamespace(servable_object=routes[0], app_name="monolith")

    @app.on_event("startup")
    async def start_routes() -> None:  # Ingress._start needs the running loop (its recovery task)
        routes.append(Ingress.func_or_class.over_stages(config, stages, WindowedStageMetrics(PrometheusMetrics)))

    return app


def monolith_main(data_dir: str, port: int, http_layer: str) -> None:
    """One uvicorn process: the app's Pipeline over the real services, the stores opened here. `http_layer`:
    "ingress" serves the ingress deployment's own FastAPI app (the same HTTP layer as the Serve graph, so the
    two differ only by the distribution); "thin" two bare FastAPI routes over the Pipeline."""
    import uvicorn
    from fastapi import FastAPI

    from deployments.chat.backends import make_chat
    from deployments.config import AppConfig
    from deployments.embedder.service import EmbedderService
    from deployments.graph.embedded.server import EmbeddedBoltServer
    from deployments.graph.service import GraphService, StagePassages
    from deployments.ingress.pipeline import Pipeline
    from deployments.models import AnswerRequest, AnswerResponse, RetrieveRequest, RetrieveResponse
    from deployments.reranker.backends import make_reranker
    from deployments.stages import Stages
    from deployments.vector.service import VectorService

    config = AppConfig.from_args({**APP_ARGS, "data_dir": data_dir})
    bolt = EmbeddedBoltServer(config.graph)
    bolt.start()
    # The Embedder deployment's own service: the same batching and the same shared-query cache as in Serve.
    embedder = EmbedderService(config.embedder)
    vector = VectorService(config.vector, embedder)
    graph = GraphService(config.graph, bolt.uri, embed=embedder.embed, passages=StagePassages(vector))
    reranker = make_reranker(config.reranker, embedder.embed, vector.vectors)
    stages = Stages(
        embedder=embedder, vector=vector, graph=graph, reranker=reranker, chat=ChatAdapter(make_chat(config.chat))
    )
    pipeline = Pipeline(config, stages)
    app = ingress_app(config, stages) if http_layer == "ingress" else FastAPI(title="real-stage monolith")

    async def retrieve(req: RetrieveRequest) -> RetrieveResponse:
        return await pipeline.retrieve(req)

    async def answer(req: AnswerRequest) -> AnswerResponse:
        return await pipeline.answer(req)

    # This module's annotations are strings (from __future__) naming classes imported in this function, which
    # FastAPI cannot resolve: give it the classes, or the body would be read as a query parameter.
    retrieve.__annotations__ = {"req": RetrieveRequest, "return": RetrieveResponse}
    answer.__annotations__ = {"req": AnswerRequest, "return": AnswerResponse}
    if http_layer == "thin":
        app.post("/v1/retrieve", response_model=RetrieveResponse)(retrieve)
        app.post("/v1/answer", response_model=AnswerResponse)(answer)

    @app.on_event("startup")
    async def warm() -> None:
        await embedder.backend.warmup()

    try:
        uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)
    finally:
        asyncio.run(vector.aclose())
        bolt.stop()


# ---- data -----------------------------------------------------------------------------------------


def scifact_queries() -> list[str]:
    return [json.loads(line)["text"] for line in open(DATASETS / "scifact" / "queries.jsonl") if line.strip()]


def bulk_load_scifact(data_dir: str, max_docs: int | None = None) -> dict:
    """SciFact into the vector store, in this process, before any server opens it: chunked by the app's chunker
    and config, embedded by the configured backend, written by VectorService.upsert (the code path of
    /v1/ingest's vector half). The graph half is bulk_load_scifact_graph."""
    from deployments.cli.ingest import read_beir_corpus
    from deployments.config import AppConfig
    from deployments.embedder.backends import make_embedder
    from deployments.ingress.chunking import chunk_document
    from deployments.models import Document
    from deployments.vector.service import VectorService

    config = AppConfig.from_args({**APP_ARGS, "data_dir": data_dir})
    rows = list(read_beir_corpus(DATASETS / "scifact" / "corpus.jsonl.gz"))[:max_docs]
    chunks = [c for row in rows for c in chunk_document(Document(**row), config.chunking)]

    async def load() -> dict:
        import numpy as np

        embedder = make_embedder(config.embedder)
        start = time.perf_counter()
        # The vectors are kept beside benchmarks/speed/embed_backends.py's cache (same chunks, same order): that
        # quality check then reuses them instead of embedding the corpus a second time.
        cached = ROOT / "benchmarks" / ".cache" / f"scifact-{config.embedder.backend}-{len(chunks)}.npy"
        if cached.is_file():
            vectors = np.load(cached)
        else:
            parts = []
            for i in range(0, len(chunks), 256):
                parts.append(np.asarray(await embedder.embed([c.text for c in chunks[i : i + 256]]), dtype=np.float32))
                print(f"  scifact: {min(i + 256, len(chunks))}/{len(chunks)} chunks embedded", flush=True)
            vectors = np.concatenate(parts)
            cached.parent.mkdir(parents=True, exist_ok=True)
            np.save(cached, vectors)
        by_text = {c.text: v.tolist() for c, v in zip(chunks, vectors)}

        class Precomputed:
            async def embed(self, texts: list[str]) -> list[list[float]]:
                return [by_text[t] for t in texts]

            async def dimension(self) -> int:
                return await embedder.dimension()

        vector = VectorService(config.vector, Precomputed())
        try:
            written = 0
            for i in range(0, len(chunks), 1024):
                written += await vector.upsert("scifact", chunks[i : i + 1024])
            print(f"  scifact: {written} chunks written", flush=True)
        finally:
            await vector.aclose()
            await embedder.aclose()
        return {
            "documents": len({c.doc_id for c in chunks}),
            "chunks": written,
            "seconds": round(time.perf_counter() - start, 1),
            "how": "vector store only, in-process bulk load (VectorService.upsert)",
            "embedder": embedder.name,
        }

    return asyncio.run(load())


def bulk_load_scifact_graph(data_dir: str, max_docs: int | None = None) -> dict:
    """SciFact into the graph store, in this process, before any server opens it: the app's chunker, offline
    extractor and GraphService.upsert (the code path of /v1/ingest's graph half), in batches of 256 chunks."""
    from deployments.cli.ingest import read_beir_corpus
    from deployments.config import AppConfig
    from deployments.graph.embedded.server import EmbeddedBoltServer
    from deployments.graph.service import GraphService
    from deployments.ingress.chunking import chunk_document
    from deployments.models import Document

    config = AppConfig.from_args({**APP_ARGS, "data_dir": data_dir})
    rows = list(read_beir_corpus(DATASETS / "scifact" / "corpus.jsonl.gz"))[:max_docs]
    chunks = [c for row in rows for c in chunk_document(Document(**row), config.chunking)]
    bolt = EmbeddedBoltServer(config.graph)
    bolt.start()

    async def load() -> dict:
        graph = GraphService(config.graph, bolt.uri)
        start = time.perf_counter()
        try:
            for i in range(0, len(chunks), 256):
                await graph.upsert("scifact", chunks[i : i + 256])
                print(f"  scifact graph: {min(i + 256, len(chunks))}/{len(chunks)} chunks", flush=True)
            counts = await graph.counts("scifact")
        finally:
            await graph.aclose()
        seconds = time.perf_counter() - start
        return {
            **counts,
            "seconds": round(seconds, 1),
            "chunks_per_s": round(len(chunks) / seconds, 1),
            "how": "graph store, in-process bulk load (GraphService.upsert, offline extractor)",
        }

    try:
        return asyncio.run(load())
    finally:
        bolt.stop()


def ingest_all(url: str, names: list[str]) -> dict:
    from benchmarks.quality.hotpotqa_recall import load as hotpot_load
    from deployments.cli.ingest import read_beir_corpus

    hotpot_docs, _ = hotpot_load(DATASETS / "hotpotqa-100")
    out = {}
    with httpx.Client(base_url=url, timeout=600) as client:
        sources = {
            "hotpotqa": lambda: hotpot_docs,
            "scifact": lambda: list(read_beir_corpus(DATASETS / "scifact" / "corpus.jsonl.gz")),
        }
        for collection in names:
            docs = sources[collection]()
            start, chunks = time.perf_counter(), 0
            for i in range(0, len(docs), 64):
                resp = client.post("/v1/ingest", json={"collection": collection, "documents": docs[i : i + 64]})
                chunks += resp.raise_for_status().json()["chunks"]
            out[collection] = {
                "documents": len(docs),
                "chunks": chunks,
                "seconds": round(time.perf_counter() - start, 1),
            }
            print(f"  ingested {collection}: {out[collection]}", flush=True)
    return out


# ---- load -----------------------------------------------------------------------------------------


WORKLOADS = {
    "retrieve_default": ("/v1/retrieve", {}),
    "retrieve_hybrid": ("/v1/retrieve", {"mode": "hybrid"}),
    "retrieve_hybrid_graph": ("/v1/retrieve", {"mode": "hybrid+graph"}),  # when SciFact is in the graph store too
    "answer": ("/v1/answer", {}),
}


_SENT = itertools.count()  # every request of the run, whatever the level or system


def payload_for(queries: list[str], extra: dict, collection: str = "scifact"):
    """The questions in one cycle over the whole run (not restarting at each level): SciFact's 1,109 questions
    outnumber the Embedder's 1,024 cached query vectors, so no request is answered from that cache (each
    question was last asked 1,109 requests earlier); real traffic repeats far less than a restarted cycle."""
    return lambda n: {"collection": collection, "query": queries[next(_SENT) % len(queries)], **extra}


async def run_level(url: str, path: str, payload, c: int, seconds: float, min_requests: int) -> RunResult:
    # Enough requests for `seconds` at the rate a short probe shows, at least min_requests (capped by time).
    probe = await closed_loop(f"{url}{path}", payload, c, max(2 * c, 8), ramp_s=0.0, keep_timings=False)
    rate = max(probe.summary()["qps"], 0.5)
    n = max(min_requests, int(rate * seconds))
    return await closed_loop(
        f"{url}{path}", payload, c, n, ramp_s=RAMP_S, max_wall_s=max(seconds * 3, 60), timeout_s=120
    )


def workloads(collections: dict) -> list[str]:
    return [w for w in WORKLOADS if w != "retrieve_hybrid_graph" or "scifact_graph" in collections]


def sweep(
    url: str, label: str, levels: list[int], seconds: float, min_requests: int, queries: list[str], workloads: list[str]
) -> dict:
    out: dict[str, dict] = {}
    for name in workloads:
        path, extra = WORKLOADS[name]
        out[name] = {}
        for c in levels:
            before = own_process_cpu()
            run = asyncio.run(run_level(url, path, payload_for(queries, extra), c, seconds, min_requests))
            s = run.summary()
            s["cpu_ms_per_request"] = cpu_ms_per_request(before, own_process_cpu(), len(run.samples) + run.extra_ok)
            s["wall_s"] = round(run.wall_s, 1)
            out[name][str(c)] = s
            PARTIAL.parent.mkdir(parents=True, exist_ok=True)
            PARTIAL.with_name(f"partial-{label}.json").write_text(
                json.dumps(out, indent=1)
            )  # a crash later keeps what was measured
            print(
                f"  {label:8s} {name:16s} c={c:<3d} qps={s['qps']:7.2f} p50={s['p50_ms']:8.1f} p95={s['p95_ms']:8.1f} p99={s['p99_ms']:8.1f} "
                f"n={s['requests']} status={s['status']} stages={s['stage_p50_ms']} cpu={sum(s['cpu_ms_per_request'].values()):.0f}ms",
                flush=True,
            )
    return out


def hotpot_graph_level(url: str, c: int, seconds: float, min_requests: int) -> dict:
    from benchmarks.quality.hotpotqa_recall import load as hotpot_load

    _, questions = hotpot_load(DATASETS / "hotpotqa-100")
    run = asyncio.run(
        run_level(
            url,
            "/v1/retrieve",
            payload_for([q["question"] for q in questions], {"mode": "hybrid+graph"}, "hotpotqa"),
            c,
            seconds,
            min_requests,
        )
    )
    s = run.summary()
    print(f"  hotpotqa hybrid+graph c={c} qps={s['qps']} p95={s['p95_ms']} stages={s['stage_p50_ms']}", flush=True)
    return s


# ---- the embedder alone ---------------------------------------------------------------------------


def graph_stage(app_name: str, queries: list[str], seconds: float, data_dir: str) -> dict:
    """The Graph deployment alone, called over its handle as the ingress calls it (query vectors embedded
    beforehand, in this process): p50 at c=1, and searches/s at c=32 (its replicas share the machine's 2 cores)."""
    import numpy as np
    from ray import serve

    from deployments.config import AppConfig
    from deployments.embedder.backends import make_embedder

    config = AppConfig.from_args({**APP_ARGS, "data_dir": data_dir})
    hops, limit = config.graph.max_hops, config.retrieval.candidates

    async def run() -> dict:
        graph = serve.get_deployment_handle("Graph", app_name=app_name)
        asked = queries[:256]
        backend = make_embedder(config.embedder)
        vectors = await backend.embed(asked)
        await backend.aclose()
        await graph.search.remote("scifact", asked[0], hops, limit, vectors[0])  # the index is loaded

        async def level(c: int) -> dict:
            latencies: list[float] = []
            stop = time.monotonic() + seconds

            async def worker(i: int) -> None:
                n = i
                while time.monotonic() < stop:
                    t = time.perf_counter()
                    await graph.search.remote("scifact", asked[n % len(asked)], hops, limit, vectors[n % len(asked)])
                    latencies.append(time.perf_counter() - t)
                    n += c

            start = time.monotonic()
            await asyncio.gather(*(worker(i) for i in range(c)))
            wall = time.monotonic() - start
            return {
                "searches_per_s": round(len(latencies) / wall, 1),
                "p50_ms": round(1000 * float(np.percentile(latencies, 50)), 1),
                "p95_ms": round(1000 * float(np.percentile(latencies, 95)), 1),
                "searches": len(latencies),
            }

        return {"c1": await level(1), "c32": await level(32), "replicas": config.deployments.graph.max_replicas()}

    out = asyncio.run(run())
    print(f"  graph stage: {out}", flush=True)
    return out


def embedder_efficiency(app_name: str, queries: list[str], concurrency: int, seconds: float, data_dir: str) -> dict:
    """Query embeddings/s through the Embedder deployment (one question per call, `concurrency` in flight) vs
    the raw backend in this process at the mean batch size that load produced."""
    from ray import serve

    from deployments.config import AppConfig
    from deployments.embedder.backends import make_embedder

    async def through_serve() -> tuple[float, float]:
        handle = serve.get_deployment_handle("Embedder", app_name=app_name)
        before = await handle.stats.remote()
        done = 0
        stop = time.monotonic() + seconds

        async def worker(i: int) -> None:
            nonlocal done
            n = i
            while time.monotonic() < stop:
                # Distinct texts: the Embedder's shared-query cache must not answer instead of the model.
                await handle.embed.remote([f"{queries[n % len(queries)]} ({n})"])
                done += 1
                n += concurrency

        start = time.monotonic()
        await asyncio.gather(*(worker(i) for i in range(concurrency)))
        wall = time.monotonic() - start
        after = await handle.stats.remote()
        batches = max(after["batches"] - before["batches"], 1)
        return done / wall, (after["texts"] - before["texts"]) / batches

    serve_qps, mean_batch = asyncio.run(through_serve())
    config = AppConfig.from_args({**APP_ARGS, "data_dir": data_dir}).embedder
    batch = max(1, round(mean_batch))

    async def raw() -> float:
        backend = make_embedder(config)
        await backend.warmup()
        done, n = 0, 0
        start = time.monotonic()
        while time.monotonic() - start < seconds:
            await backend.embed([f"{queries[(n + k) % len(queries)]} ({n + k})" for k in range(batch)])
            done += batch
            n += batch
        rate = done / (time.monotonic() - start)
        await backend.aclose()
        return rate

    raw_qps = raw()
    raw_qps = asyncio.run(raw_qps)
    out = {
        "serve_queries_per_s": round(serve_qps, 1),
        "mean_batch": round(mean_batch, 2),
        "raw_queries_per_s_at_that_batch": round(raw_qps, 1),
        "efficiency": round(serve_qps / raw_qps, 3),
        "concurrency": concurrency,
        "backend": config.backend,
    }
    print(f"  embedder: {out}", flush=True)
    return out


def profile_replicas(url: str, app_name: str, queries: list[str], seconds: float) -> dict:
    """py-spy flame graphs of the Embedder, Vector and Ingress replicas during `hybrid` retrieval at c=32
    (native frames for the Embedder: ONNX Runtime / torch time is in C++)."""
    py_spy = str(Path(sys.executable).with_name("py-spy"))
    procs = own_process_cpu()
    spies, out = [], {}
    for name in ("Embedder", "Vector", "Ingress"):
        pid = next((pid for pid, (cmd, _) in procs.items() if f"ServeReplica:{app_name}:{name}" in cmd), None)
        if pid is None:
            continue
        path = RESULTS / f"flame-real-{name.lower()}.svg"
        cmd = [
            py_spy,
            "record",
            "--pid",
            str(pid),
            "--duration",
            str(int(seconds)),
            "--rate",
            "50",
            "--nonblocking",
            "--format",
            "flamegraph",
            "--output",
            str(path),
        ] + (["--native"] if name == "Embedder" else [])
        spies.append(subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        out[name] = path.name
    before = own_process_cpu()
    run = asyncio.run(
        closed_loop(
            f"{url}/v1/retrieve",
            payload_for(queries, {"mode": "hybrid"}),
            32,
            100_000,
            max_wall_s=seconds,
            ramp_s=RAMP_S,
        )
    )
    cpu = cpu_ms_per_request(before, own_process_cpu(), len(run.samples) + run.extra_ok)
    for spy in spies:
        spy.wait(timeout=180)
    s = run.summary()
    result = {
        "flame_graphs": out,
        "qps": s["qps"],
        "p50_ms": s["p50_ms"],
        "stage_p50_ms": s["stage_p50_ms"],
        "cpu_ms_by_process": cpu,
    }
    print(f"  profile: {result}", flush=True)
    return result


# ---- the run --------------------------------------------------------------------------------------


def wait_ready(url: str, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            status = httpx.post(
                f"{url}/v1/retrieve", json={"collection": "scifact", "query": "warm up"}, timeout=30
            ).status_code
            if status == 200:
                return
            if 400 <= status < 500:
                raise RuntimeError(f"{url} answered {status} to a plain retrieve")
        except httpx.HTTPError:
            pass
        time.sleep(1)
    raise RuntimeError(f"{url} did not answer within {timeout}s")


def plot(systems: dict[str, dict], path: Path) -> None:
    plt = harness.pyplot()
    shown = list(next(iter(systems.values())))  # the first system's workloads (Serve's: all of them)
    fig, axes = plt.subplots(1, len(shown), figsize=(5 * len(shown), 4))
    for ax, workload in zip(axes, shown):
        for name, table in systems.items():
            if workload not in table:
                continue
            rows = [table[workload][c] for c in sorted(table[workload], key=int)]
            ax.plot([r["qps"] for r in rows], [r["p95_ms"] for r in rows], marker="o", label=f"{name} p95")
            ax.plot(
                [r["qps"] for r in rows], [r["p50_ms"] for r in rows], marker=".", linestyle="--", label=f"{name} p50"
            )
            for r in rows:
                ax.annotate(f"c={int(r['level'])}", (r["qps"], r["p95_ms"]), fontsize=7)
        ax.set(xlabel="requests/s", ylabel="latency (ms)", yscale="log", title=f"{workload} (SciFact, real stages)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    harness.save_figure(fig, path)


def main() -> None:
    parser = harness.cli(__doc__)
    parser.add_argument("--levels", default="1,8,32,50,64")
    parser.add_argument("--seconds", type=float, default=20.0, help="per level (at least --min-requests)")
    parser.add_argument("--min-requests", type=int, default=200)
    parser.add_argument("--fresh", action="store_true", help="ingest again into a new data folder")
    parser.add_argument(
        "--docs",
        type=int,
        default=None,
        help="load only the first N SciFact abstracts (a machine too busy to embed all 5,183)",
    )
    parser.add_argument("--skip-monolith", action="store_true")
    parser.add_argument(
        "--profile-only",
        action="store_true",
        help="start Serve, record flame graphs and the embedder's efficiency, add them to real_stages.json",
    )
    parser.add_argument("--serve-table", help="a Serve table from an earlier run (JSON) instead of starting Serve")
    parser.add_argument("--no-profile", action="store_true", help="skip the py-spy flame graphs")
    parser.add_argument(
        "--no-graph",
        action="store_true",
        help="leave SciFact out of the graph store (no hybrid+graph level, no graph-stage probe)",
    )
    parser.add_argument(
        "--hotpotqa",
        action="store_true",
        help="also ingest HotpotQA-100 through /v1/ingest and measure hybrid+graph at c=16 (slow)",
    )
    parser.add_argument(
        "--monoliths",
        default="ingress,thin",
        help="the monoliths' HTTP layers: ingress (the ingress deployment's own FastAPI app, the headline), thin (bare routes)",
    )
    parser.add_argument("--monolith", nargs=3, metavar=("DATA_DIR", "PORT", "HTTP_LAYER"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.monolith:
        monolith_main(args.monolith[0], int(args.monolith[1]), args.monolith[2])
        return
    levels = [int(c) for c in args.levels.split(",")]
    queries = scifact_queries()
    data_dir = CACHE / ("data" if args.docs is None else f"data-{args.docs}")
    if args.fresh and data_dir.exists():
        shutil.rmtree(data_dir)
    load_before = os.getloadavg()
    result: dict[str, Any] = {"levels": levels, "seconds_per_level": args.seconds, "min_requests": args.min_requests}

    if not (data_dir / "ingested.json").is_file():
        print("loading SciFact into the vector store (first run):", flush=True)
        loaded = bulk_load_scifact(str(data_dir), args.docs)
        (data_dir / "ingested.json").write_text(json.dumps({"scifact": loaded}))
    ingested = json.loads((data_dir / "ingested.json").read_text())
    if not args.no_graph and "scifact_graph" not in ingested:
        print("loading SciFact into the graph store (first run with the graph):", flush=True)
        ingested["scifact_graph"] = bulk_load_scifact_graph(str(data_dir), args.docs)
        (data_dir / "ingested.json").write_text(json.dumps(ingested))

    if args.profile_only:
        run_serve_part(args, data_dir, queries, result)
        previous = json.loads((RESULTS / "real_stages.json").read_text())
        previous.update({k: result[k] for k in ("profile_hybrid_c32", "embed") if k in result})
        previous["profile_command"] = "python -m benchmarks.speed.real_stages " + " ".join(sys.argv[1:])
        harness.write_json("real_stages.json", previous)
        perf = json.loads((RESULTS / "performance.json").read_text())
        perf["real"]["embed"] = result.get("embed")
        perf["real"]["embed_efficiency"] = (result.get("embed") or {}).get("efficiency")
        harness.write_json("performance.json", perf)
        print(json.dumps({k: previous.get(k) for k in ("profile_hybrid_c32", "embed")}, indent=2))
        return
    if args.serve_table:
        result["serve"] = json.loads(Path(args.serve_table).read_text())
        result["serve_source"] = f"{args.serve_table} (an earlier run: Serve could not start in this one)"
        result["collections"] = json.loads((data_dir / "ingested.json").read_text())
        result["embedder"] = "onnxruntime:all-MiniLM-L6-v2"
    else:
        run_serve_part(args, data_dir, queries, result)
    monolith_part(args, data_dir, queries, result)
    finish(result, levels, load_before)


def run_serve_part(args: argparse.Namespace, data_dir: Path, queries: list[str], result: dict) -> None:
    levels = [int(c) for c in args.levels.split(",")]
    from graph import build_app

    def stop_leftovers() -> None:  # what a failed start left running (its GCS, raylet, agents)
        for pid in own_process_cpu():
            try:
                os.kill(pid, 9)
            except OSError:
                pass

    app_name = "real"
    with harness.ray_session(attempts=8, cleanup=stop_leftovers):
        url = harness.deploy(build_app({**APP_ARGS, "data_dir": str(data_dir)}), app_name, attempts=3)
        wait_ready(url)
        collections = json.loads((data_dir / "ingested.json").read_text())
        if args.hotpotqa and "hotpotqa" not in collections:
            print("ingesting HotpotQA-100 through /v1/ingest (both stores):", flush=True)
            collections |= ingest_all(url, ["hotpotqa"])
            (data_dir / "ingested.json").write_text(json.dumps(collections))
        result["collections"] = collections
        result["embedder"] = httpx.get(f"{url}/readyz", timeout=30).json()["stages"]["embedder"]["backend"]
        print(f"serve graph ({result['embedder']}):", flush=True)
        asyncio.run(closed_loop(f"{url}/v1/retrieve", payload_for(queries, {}), 8, 32))  # warm every hop
        if args.profile_only:  # flame graphs and the embedder's efficiency, added to the last run's results
            result["profile_hybrid_c32"] = profile_replicas(url, app_name, queries, max(args.seconds, 10))
            result["embed"] = embedder_efficiency(app_name, queries, 32, min(args.seconds, 10), str(data_dir))
            return
        result["serve"] = sweep(url, "serve", levels, args.seconds, args.min_requests, queries, workloads(collections))
        if "scifact_graph" in collections:
            result["graph_stage"] = graph_stage(app_name, queries, max(10.0, args.seconds / 2), str(data_dir))
        if "hotpotqa" in collections:
            result["hotpotqa_hybrid_graph_c16"] = {
                "serve": hotpot_graph_level(url, 16, args.seconds, args.min_requests)
            }
        if not args.no_profile:
            result["profile_hybrid_c32"] = profile_replicas(url, app_name, queries, max(args.seconds, 10))
        result["embed"] = embedder_efficiency(app_name, queries, 32, min(args.seconds, 10), str(data_dir))


def monolith_part(args: argparse.Namespace, data_dir: Path, queries: list[str], result: dict) -> None:
    """Each monolith in turn: "monolith" (the ingress's own HTTP layer) and "monolith_thin" (bare routes)."""
    levels = [int(c) for c in args.levels.split(",")]
    if args.skip_monolith:
        return
    from deployments.net import free_port

    for layer in args.monoliths.split(","):
        key = "monolith" if layer == "ingress" else f"monolith_{layer}"
        port = free_port()
        # At Ray's worker niceness (15, as every Serve replica runs): on a shared machine both systems then get
        # the same share of the CPU against the other work.
        proc = subprocess.Popen(
            [sys.executable, "-m", "benchmarks.speed.real_stages", "--monolith", str(data_dir), str(port), layer],
            cwd=ROOT,
            preexec_fn=lambda: os.nice(RAY_WORKER_NICENESS),
        )
        try:
            url = f"http://127.0.0.1:{port}"
            wait_ready(url)
            print(f"in-process monolith ({layer} HTTP layer):", flush=True)
            asyncio.run(closed_loop(f"{url}/v1/retrieve", payload_for(queries, {}), 8, 32))
            collections = json.loads((data_dir / "ingested.json").read_text())
            if layer == "ingress":
                result[key] = sweep(url, key, levels, args.seconds, args.min_requests, queries, workloads(collections))
            else:  # its ratio's figures only: default retrieval at c=1 and c=32
                result[key] = sweep(
                    url,
                    key,
                    [c for c in levels if c in (1, 32)],
                    args.seconds,
                    args.min_requests,
                    queries,
                    ["retrieve_default"],
                )
            if "hotpotqa_hybrid_graph_c16" in result:
                result["hotpotqa_hybrid_graph_c16"][key] = hotpot_graph_level(url, 16, args.seconds, args.min_requests)
        finally:
            proc.terminate()
            proc.wait(timeout=60)


def finish(result: dict, levels: list[int], load_before: tuple) -> None:
    result["load_average_before"] = [round(x, 2) for x in load_before]
    result["load_average_after"] = [round(x, 2) for x in os.getloadavg()]
    result["command"] = "python -m benchmarks.speed.real_stages " + " ".join(sys.argv[1:])
    result["date"] = harness.utc_now()
    result["machine"] = f"{os.cpu_count()} cores, shared with other work while measured (see load_average_*)"
    summary = headline(result, levels)
    print(json.dumps(summary, indent=2))
    harness.write_json("real_stages.json", result)
    perf_path = RESULTS / "performance.json"
    perf = json.loads(perf_path.read_text()) if perf_path.exists() else {}
    systems = {k: result[k] for k in ("serve", "monolith", "monolith_thin") if k in result}
    perf["real"] = {**summary, "table": systems}
    harness.write_json(perf_path, perf)
    plot(systems, RESULTS / "real_stages.png")


def headline(result: dict, levels: list[int]) -> dict:
    serve_t, mono_t = result["serve"], result.get("monolith")

    def at(table: dict | None, workload: str, c: int, key: str) -> float | None:
        row = (table or {}).get(workload, {}).get(str(c))
        return row[key] if row else None

    c32 = 32 if 32 in levels else levels[-1]
    c50 = 50 if 50 in levels else levels[-1]

    def ratio(mono: dict | None) -> float | None:
        if mono and at(mono, "retrieve_default", c32, "qps"):
            return round(at(serve_t, "retrieve_default", c32, "qps") / at(mono, "retrieve_default", c32, "qps"), 3)
        return None

    def delta(mono: dict | None) -> float | None:
        if mono and 1 in levels:
            return round(at(serve_t, "retrieve_default", 1, "p50_ms") - at(mono, "retrieve_default", 1, "p50_ms"), 1)
        return None

    thin = result.get("monolith_thin")
    return {
        "serve_vs_monolith_qps_c32": ratio(mono_t),
        "c1_p50_delta_ms": delta(mono_t),
        "monolith_http_layer": "the ingress deployment's own FastAPI app (routes, auth, guards, metrics) over in-process stages",
        "serve_vs_thin_monolith_qps_c32": ratio(thin),
        "c1_p50_delta_vs_thin_monolith_ms": delta(thin),
        "embed_efficiency": result.get("embed", {}).get("efficiency"),
        "default_p95_c50_ms": at(serve_t, "retrieve_default", c50, "p95_ms"),
        "hybrid_qps_c32": at(serve_t, "retrieve_hybrid", c32, "qps"),
        "monolith_default_p95_c50_ms": at(mono_t, "retrieve_default", c50, "p95_ms"),
        "monolith_hybrid_qps_c32": at(mono_t, "retrieve_hybrid", c32, "qps"),
        "embedder": result["embedder"],
        "embed": result.get("embed"),
        "hotpotqa_hybrid_graph_c16": result.get("hotpotqa_hybrid_graph_c16"),
        # issue 12's speed figures on the SciFact collection: the graph stage alone, hybrid+graph vs hybrid
        "graph_stage": result.get("graph_stage"),
        "hybrid_graph_p50_c1_ms": at(serve_t, "retrieve_hybrid_graph", 1, "p50_ms"),
        "hybrid_p50_c1_ms": at(serve_t, "retrieve_hybrid", 1, "p50_ms"),
        "hybrid_graph_qps_c32": at(serve_t, "retrieve_hybrid_graph", c32, "qps"),
        "ingest": result.get("collections"),
        "levels_measured": levels,
        "load_average_before": result["load_average_before"],
        "command": result["command"],
        "date": result["date"],
    }


if __name__ == "__main__":
    main()
