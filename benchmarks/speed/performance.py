"""Load benchmarks, one run, one machine: the Serve graph against a synchronous baseline and an asyncio
monolith over the same SIMULATED stages; orchestration cost with zero-latency stages; embedder and ingest
throughput against the raw model. Prints figures, writes benchmarks/results/performance.json and PNG plots.

    python -m benchmarks.speed.performance            # full run (~5 min on 2 cores)
    python -m benchmarks.speed.performance --quick    # smaller counts, for a smoke run
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx

from benchmarks import harness, use_local_env
from benchmarks.harness import RESULTS, ROOT, quiet_port
from benchmarks.loadgen import RunResult, closed_loop, cpu_ms_per_request, open_loop, percentile, process_cpu
from benchmarks.speed.simulated import Latencies

# Closed-loop workers start staggered over this many seconds, and what they send meanwhile is not counted: the
# steady state at a concurrency, not the burst of all clients starting at once (loadgen.closed_loop).
RAMP_S = 1.0
LEVEL_S = 20.0  # see sweep()


def _wait(url: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.post(f"{url}/v1/answer", json=payload(-1), timeout=10).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise RuntimeError(f"{url} did not answer within {timeout}s")


def payload(n: int) -> dict:
    return {"query": f"simulated question {n}", "top_k": 3, "mode": "hybrid+graph"}


def efficiency(run: RunResult, latencies: Latencies, p: float) -> float:
    """Percentile p of end-to-end latency / critical path, per request (nan for zero-latency stages)."""
    if latencies.critical_path("") == 0:
        return float("nan")
    ratios = sorted(s.latency / latencies.critical_path(s.query) for s in run.samples if s.status == 200)
    return round(percentile(ratios, p), 4)


async def sweep(url: str, levels: list[int], per_level: int, latencies: Latencies, label: str) -> dict[int, RunResult]:
    def report(c: int, run: RunResult) -> None:
        s = run.summary()
        print(
            f"  {label:9s} c={c:<4d} qps={s['qps']:7.1f} p50={s['p50_ms']:7.1f} p95={s['p95_ms']:7.1f} status={s['status']} "
            f"e2e/critical p50={efficiency(run, latencies, 50):.3f} p95={efficiency(run, latencies, 95):.3f} loadgen_cpu={s['loadgen_cpu_share']:.2f}",
            flush=True,
        )

    # Each level runs until `per_level` requests answered or LEVEL_S seconds passed, whichever comes first: at
    # least 1,000 requests or 20 s of steady state (the full run), so that slow levels are not a handful of samples.
    return await harness.closed_loop_levels(
        f"{url}/v1/answer", payload, levels, per_level, report, ramp_s=RAMP_S, max_wall_s=LEVEL_S
    )


def run_baseline(system: str, latencies: Latencies, levels: list[int], per_level: int) -> dict[int, RunResult]:
    port = quiet_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "benchmarks.speed.simulated",
            system,
            "--port",
            str(port),
            "--latencies",
            latencies.model_dump_json(),
        ],
        cwd=ROOT,
    )
    try:
        url = f"http://127.0.0.1:{port}"
        _wait(url)
        return asyncio.run(sweep(url, levels, per_level, latencies, system))
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def run_serve(
    latencies: Latencies,
    levels: list[int],
    per_level: int,
    label: str = "serve",
    open_rate: float = 0.0,
    cpu: dict | None = None,
) -> tuple[dict[int, RunResult], RunResult | None]:
    """Sweeps the Serve graph over simulated stages; `cpu` (if given) receives CPU-ms per request by process for
    the last level."""
    from ray import serve

    from benchmarks.speed.simulated import build_serve_app

    url = harness.deploy(build_serve_app(latencies), f"sim-{label}")
    try:
        _wait(url)
        asyncio.run(closed_loop(f"{url}/v1/answer", payload, levels[-1], 2 * levels[-1]))  # warm every hop
        runs = asyncio.run(sweep(url, levels[:-1], per_level, latencies, label)) if len(levels) > 1 else {}
        before = process_cpu()
        runs |= asyncio.run(sweep(url, levels[-1:], per_level, latencies, label))
        if cpu is not None:
            cpu.update(
                cpu_ms_per_request(before, process_cpu(), len(runs[levels[-1]].samples) + runs[levels[-1]].extra_ok)
            )
            cpu["loadgen"] = round(runs[levels[-1]].loadgen_cpu_s * 1000 / len(runs[levels[-1]].samples), 2)
            print(f"  {label:9s} CPU-ms per request by process: {cpu}", flush=True)
        poisson = None
        if open_rate:
            poisson = asyncio.run(open_loop(f"{url}/v1/answer", payload, open_rate, 20))
            s = poisson.summary()
            print(
                f"  {label:9s} open rate={open_rate}/s qps={s['qps']} p50={s['p50_ms']} p95={s['p95_ms']} p99={s['p99_ms']} status={s['status']}",
                flush=True,
            )
        return runs, poisson
    finally:
        serve.shutdown()


def noop_run(requests: int) -> dict:
    """One no-op run (concurrency 50) in this process's Ray: QPS and CPU-ms per request by process."""
    with harness.ray_session():
        cpu: dict = {}
        runs, _ = run_serve(Latencies.zero(), [50], requests, label="serve-noop", cpu=cpu)
    return {
        "qps": runs[50].summary()["qps"],
        "p50_ms": runs[50].summary()["p50_ms"],
        "cpu_ms_per_request": round(sum(cpu.values()), 2),
        "cpu_ms_by_process": cpu,
    }


def noop_default_data_plane(requests: int) -> dict:
    """`noop_run` on Serve's default data plane, in a fresh process: Ray reads the data-plane switches at start."""
    from deployments.throughput import OPT_OUT, throughput_env

    env = {k: v for k, v in os.environ.items() if k not in throughput_env()} | {OPT_OUT: "0"}
    out = subprocess.run(
        [sys.executable, "-m", "benchmarks.speed.performance", "--noop-only", str(requests)],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def embedder_and_ingest(n_texts: int) -> dict:
    """Raw in-process MiniLM vs the Embedder deployment (concurrent handle calls) vs /v1/ingest, in texts/s."""
    import tempfile

    from ray import serve

    from deployments.config import EmbedderConfig
    from deployments.embedder.backends import SentenceTransformerEmbedder
    from graph import build_app

    texts = [f"Passage {i} about {' '.join(f'topic{(i * j) % 97}' for j in range(100))}." for i in range(n_texts)]
    raw = SentenceTransformerEmbedder(EmbedderConfig())
    asyncio.run(raw.embed(texts[:32]))  # load and warm
    t = time.perf_counter()
    asyncio.run(raw.embed(texts))
    raw_tps = n_texts / (time.perf_counter() - t)
    asyncio.run(raw.aclose())
    del raw

    data = tempfile.mkdtemp(prefix="graphrag-bench-")
    url = harness.deploy(build_app({"data_dir": data, "chunking": {"max_words": 200, "overlap_words": 0}}), "perf-real")
    docs = [{"id": f"d{i}", "text": text} for i, text in enumerate(texts)]

    # One event loop for the handle's whole life, shutdown included: on the fast path
    # (RAY_SERVE_THROUGHPUT_OPTIMIZED) a handle routes on its caller's loop.
    async def measure() -> tuple[float, float]:
        try:
            embedder = serve.get_deployment_handle("Embedder", app_name="perf-real")
            await embedder.embed.remote(texts[:32])  # warm
            t = time.perf_counter()
            await asyncio.gather(*(embedder.embed.remote(texts[i : i + 8]) for i in range(0, n_texts, 8)))
            deployment_tps = n_texts / (time.perf_counter() - t)
            async with httpx.AsyncClient(base_url=url, timeout=600) as client:
                (await client.post("/v1/ingest", json={"collection": "warm", "documents": docs[:8]})).raise_for_status()
                t = time.perf_counter()
                chunks = 0
                for i in range(0, n_texts, 64):
                    resp = await client.post("/v1/ingest", json={"collection": "bench", "documents": docs[i : i + 64]})
                    chunks += resp.raise_for_status().json()["chunks"]
            return deployment_tps, chunks / (time.perf_counter() - t)
        finally:
            await serve.shutdown_async()

    deployment_tps, ingest_tps = asyncio.run(measure())
    out = {
        "raw_texts_per_s": round(raw_tps, 1),
        "deployment_texts_per_s": round(deployment_tps, 1),
        "ingest_chunks_per_s": round(ingest_tps, 1),
    }
    print(f"  embedder: {out}", flush=True)
    return out


def plot(series: dict[str, dict[int, RunResult]], path: Path) -> None:
    plt = harness.pyplot()
    fig, (ax_qps, ax_lat) = plt.subplots(1, 2, figsize=(11, 4))
    for name, runs in series.items():
        levels = sorted(runs)
        summaries = [runs[c].summary() for c in levels]
        ax_qps.plot(levels, [s["qps"] for s in summaries], marker="o", label=name)
        ax_lat.plot(levels, [s["p95_ms"] for s in summaries], marker="o", label=f"{name} p95")
    ax_qps.set(xscale="log", xlabel="concurrency", ylabel="QPS", title="QPS vs concurrency (simulated stages)")
    ax_lat.set(xscale="log", xlabel="concurrency", ylabel="ms", title="p95 latency vs concurrency")
    for ax in (ax_qps, ax_lat):
        ax.grid(alpha=0.3)
        ax.legend()
    harness.save_figure(fig, path)


def main() -> None:
    parser = harness.cli(__doc__)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--sigma", type=float, default=0.0, help="lognormal spread of the simulated latencies")
    parser.add_argument("--skip-real", action="store_true", help="skip the embedder/ingest measurements")
    parser.add_argument("--noop-only", type=int, metavar="N", help=argparse.SUPPRESS)  # one no-op run, JSON on stdout
    args = parser.parse_args()
    use_local_env()
    if args.noop_only:
        print(json.dumps(noop_run(args.noop_only)))
        return
    levels = [1, 8, 50, 128] if args.quick else [1, 8, 32, 50, 128]
    per_level = 128 if args.quick else 1000
    latencies = Latencies(sigma=args.sigma)
    load_before = os.getloadavg()

    print("simulated stages (vector 300 ms, graph 500 ms, rerank 50 ms, chat 100 ms):", flush=True)
    sync_runs = run_baseline("sync", latencies, levels, per_level)
    sync_wide_runs = run_baseline("sync-wide", latencies, levels, per_level)
    monolith_runs = run_baseline("monolith", latencies, levels, per_level)

    with harness.ray_session():
        serve_runs, poisson = run_serve(latencies, levels, per_level, open_rate=40.0)
        print("zero-latency stages (orchestration cost):", flush=True)
        noop_cpu: dict = {}
        noop_runs, _ = run_serve(
            Latencies.zero(), [50], 3000 if not args.quick else 600, label="serve-noop", cpu=noop_cpu
        )
        real = {} if args.skip_real else embedder_and_ingest(256 if args.quick else 512)
    print("the same no-op graph on Ray Serve's default data plane (Python proxy, actor calls):", flush=True)
    default_plane = noop_default_data_plane(3000 if not args.quick else 600)
    print(
        f"  serve-default-plane qps={default_plane['qps']} CPU-ms per request by process: {default_plane['cpu_ms_per_request']}",
        flush=True,
    )

    qps = lambda runs, c: runs[c].summary()["qps"]  # noqa: E731
    results = {
        "fanout_efficiency": {
            "c1_p50": efficiency(serve_runs[1], latencies, 50),
            "c50_p95": efficiency(serve_runs[50], latencies, 95),
        },
        # The default sync baseline runs its `def` route in AnyIO's 40-thread pool: ~42 requests/s at 950 ms,
        # a cap of the pool, not of sequential calls. sync-wide has 256 threads: that ratio measures the fan-out.
        "qps_vs_sync_c128": round(qps(serve_runs, 128) / qps(sync_runs, 128), 3),
        "qps_vs_sync_wide_pool_c128": round(qps(serve_runs, 128) / qps(sync_wide_runs, 128), 3),
        "qps_vs_monolith_c128": round(qps(serve_runs, 128) / qps(monolith_runs, 128), 3),
        "noop_qps": qps(noop_runs, 50),
        "noop_cpu_ms_per_request": round(sum(noop_cpu.values()), 2),
        "noop_cpu_ms_by_process": noop_cpu,
        "noop_default_data_plane": default_plane,
        "noop_fast_path_speedup": round(qps(noop_runs, 50) / default_plane["qps"], 2),
        "embedder_efficiency": round(real["deployment_texts_per_s"] / real["raw_texts_per_s"], 3) if real else None,
        "ingest_efficiency": round(real["ingest_chunks_per_s"] / real["raw_texts_per_s"], 3) if real else None,
        "embedder": real,
        "latencies_ms": latencies.model_dump(),
        "systems": {
            name: {str(c): r.summary() for c, r in runs.items()}
            for name, runs in (
                ("sync", sync_runs),
                ("sync_wide_pool", sync_wide_runs),
                ("monolith", monolith_runs),
                ("serve", serve_runs),
                ("serve_noop", noop_runs),
            )
        },
        "serve_open_loop": poisson.summary() if poisson else None,
        "load_average_before": [round(x, 2) for x in load_before],
        "command": "python -m benchmarks.speed.performance"
        + (" --quick" if args.quick else "")
        + (f" --sigma {args.sigma}" if args.sigma else ""),
        "date": harness.utc_now(),
    }
    path = RESULTS / "performance.json"
    # The real-stage figures (benchmarks/speed/real_stages/) live in the same file, under "real": keep them.
    previous = json.loads(path.read_text()) if path.exists() else {}
    harness.write_json(path, {**results, **({"real": previous["real"]} if "real" in previous else {})})
    plot(
        {"sync": sync_runs, "sync (256 threads)": sync_wide_runs, "monolith": monolith_runs, "serve": serve_runs},
        RESULTS / "performance.png",
    )
    print(json.dumps({k: v for k, v in results.items() if k not in ("systems", "serve_open_loop")}, indent=2))


if __name__ == "__main__":
    main()
