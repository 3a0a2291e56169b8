"""The command: `python -m benchmarks.speed.real_stages` (its help is the package docstring)."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx

import benchmarks.speed.real_stages as real_stages
from benchmarks import harness
from benchmarks.harness import RESULTS, ROOT
from benchmarks.loadgen import closed_loop
from benchmarks.speed.real_stages import APP_ARGS, CACHE, RAY_WORKER_NICENESS
from benchmarks.speed.real_stages.corpus import bulk_load_scifact, bulk_load_scifact_graph, ingest_all, scifact_queries
from benchmarks.speed.real_stages.load import (
    hotpot_graph_level,
    own_process_cpu,
    payload_for,
    sweep,
    wait_ready,
    workloads,
)
from benchmarks.speed.real_stages.monolith import monolith_main
from benchmarks.speed.real_stages.stage_probes import embedder_efficiency, graph_stage, profile_replicas


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
    parser = harness.cli(real_stages.__doc__)
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
