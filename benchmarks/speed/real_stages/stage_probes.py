"""Single stages measured over their handles (Graph, Embedder), and py-spy flame graphs of the replicas."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from pathlib import Path

from benchmarks.harness import RESULTS
from benchmarks.loadgen import closed_loop, cpu_ms_per_request
from benchmarks.speed.real_stages import APP_ARGS, RAMP_S
from benchmarks.speed.real_stages.load import own_process_cpu, payload_for


def graph_stage(
    app_name: str,
    queries: list[str],
    seconds: float,
    data_dir: str,
    collection: str = "scifact",
    app_args: dict | None = None,
) -> dict:
    """The Graph deployment alone, called over its handle as the ingress calls it (query vectors embedded
    beforehand, in this process): p50 at c=1, and searches/s at c=32 (its replicas share the machine's 2 cores)."""
    import numpy as np
    from ray import serve

    from deployments.config import AppConfig
    from deployments.embedder.backends import make_embedder

    config = AppConfig.from_args({**(APP_ARGS if app_args is None else app_args), "data_dir": data_dir})
    hops, limit = config.graph.max_hops, config.retrieval.candidates

    async def run() -> dict:
        graph = serve.get_deployment_handle("Graph", app_name=app_name)
        asked = queries[:256]
        backend = make_embedder(config.embedder)
        vectors = await backend.embed(asked)
        await backend.aclose()
        await graph.search.remote(collection, asked[0], hops, limit, vectors[0], texts=False)  # the index is loaded

        async def level(c: int) -> dict:
            latencies: list[float] = []
            stop = time.monotonic() + seconds

            async def worker(i: int) -> None:
                n = i
                while time.monotonic() < stop:
                    t = time.perf_counter()
                    await graph.search.remote(
                        collection, asked[n % len(asked)], hops, limit, vectors[n % len(asked)], texts=False
                    )
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
