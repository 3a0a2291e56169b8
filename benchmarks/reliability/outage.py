"""Backends that stay down: each backend server stopped (SIGSTOP: it accepts connections and never answers,
the worst kind of outage) for a while under closed-loop load, then continued (SIGCONT).

    flock /tmp/graphrag-heavy.lock python -m benchmarks.reliability.outage [--outage-s 60] [--no-breaker]

The app runs every backend as its own server: the OpenAI-protocol test double (tests/openai_server.py, one
process each) as chat server, TEI `/rerank` server and embeddings server, and ArcadeDB's Bolt server in its own
process (the graph stage reaches it as an external server). Load: /v1/answer in hybrid+graph mode (every backend
on the path), c=8. Per backend: p95 before / during / after the outage, `failed` (non-200), how many answers
went without the stopped backend (`degraded`), the seconds from its return until answers use it again, and what
/readyz said during the outage (the breaker's state). Results: benchmarks/results/outage.json
(outage-no-breaker.json with --no-breaker, the same run with every breaker disabled, for comparison).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import tempfile
import time
from pathlib import Path

from benchmarks import use_local_env

use_local_env()

import httpx  # noqa: E402  (after the environment is set)

from benchmarks.harness import QUERIES  # noqa: E402
from benchmarks.loadgen import Sample, closed_loop, outcomes, percentile  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / "benchmarks" / "results"
APP = "graphrag-outage"
MODE = "hybrid+graph"
CONCURRENCY = 8
# The stage each backend serves, as named in an answer's `degraded`.
STAGE = {"chat": "chat", "rerank": "rerank", "embeddings": "embed", "bolt": "graph"}


def payload(n: int) -> dict:
    # A new text each time: the embedder shares a recent query's vector (its cache) instead of asking the server.
    return {"collection": "outage", "query": f"{QUERIES[n % len(QUERIES)]} ({n})", "top_k": 5, "mode": MODE}


def app_args(data: str, servers: dict, bolt, breaker: bool) -> dict:
    off = {"breaker": {"enabled": False}} if not breaker else {}
    creds = bolt.credentials  # the graph stage reaches the Bolt server as an external one
    graph = {
        "bolt_uri": bolt.uri,
        "password": creds.root_password,
        "reader_user": creds.reader[0],
        "reader_password": creds.reader_password,
    }
    return {
        "data_dir": data,
        # Each backend's own bound sits inside the ingress's bound on its stage, so the backend sees its timeouts.
        "embedder": {
            "openai_base_url": servers["embeddings"].base_url,
            "openai_model": "emb",
            "timeout_s": 2,
            "max_retries": 0,
            **off,
        },
        "reranker": {"url": f"{servers['rerank'].root_url}/rerank", "timeout_s": 2, **off},
        "chat": {
            "base_url": servers["chat"].base_url,
            "model": "chat",
            "max_attempts": 2,
            "backoff_base_s": 0.1,
            "timeout_s": 4,
            **off,
        },
        "graph": {**graph, "query_timeout_s": 2, **off},
        "retrieval": {"vector_timeout_s": 3, "graph_timeout_s": 3, "rerank_timeout_s": 3, "chat_timeout_s": 5},
    }


def p95_ms(samples: list[Sample]) -> float | None:
    lat = sorted(s.latency for s in samples)
    return round(percentile(lat, 95) * 1000, 1) if lat else None


def phase(samples: list[Sample], stage: str) -> dict:
    return {
        "requests": len(samples),
        "p95_ms": p95_ms(samples),
        **outcomes(samples),
        "without_" + stage: sum(1 for s in samples if stage in (s.degraded or [])),
    }


async def outage(base: str, name: str, pid: int, stage: str, normal_s: float, outage_s: float, after_s: float) -> dict:
    """SIGSTOP `pid` `normal_s` into the load, SIGCONT `outage_s` later; the load goes on `after_s` more."""
    readyz: dict = {}

    async def stop_and_continue() -> tuple[float, float]:
        await asyncio.sleep(normal_s)
        os.kill(pid, signal.SIGSTOP)
        stopped = time.monotonic()
        await asyncio.sleep(outage_s / 2)
        async with httpx.AsyncClient(timeout=10) as client:  # what an operator sees mid-outage
            r = await client.get(f"{base}/readyz")
            readyz.update(status=r.status_code, stage=r.json()["stages"].get(_ready_key(stage)))
        await asyncio.sleep(max(0.0, stopped + outage_s - time.monotonic()))
        os.kill(pid, signal.SIGCONT)
        return stopped, time.monotonic()

    print(f"{name}: stopping pid {pid} for {outage_s:.0f}s ...", flush=True)
    controller = asyncio.create_task(stop_and_continue())
    try:
        run = await closed_loop(
            f"{base}/v1/answer",
            payload,
            concurrency=CONCURRENCY,
            requests=10_000_000,
            max_wall_s=normal_s + outage_s + after_s,
            timeout_s=120,
        )
    finally:
        stopped, resumed = await controller

    def done(s: Sample) -> float:
        return s.intended + s.latency

    before = [s for s in run.samples if done(s) < stopped]
    during = [s for s in run.samples if s.intended >= stopped and s.intended < resumed]
    after = sorted((s for s in run.samples if s.intended >= resumed), key=done)
    back = next((s for s in after if s.status == 200 and stage not in (s.degraded or [])), None)
    still = [done(s) - resumed for s in run.samples if done(s) >= resumed and stage in (s.degraded or [])]
    normal_p95, outage_p95 = p95_ms(before), p95_ms(during)
    return {
        "backend": name,
        "stage": stage,
        "stopped_s": outage_s,
        "normal": phase(before, stage),
        "outage": phase(during, stage),
        "after": phase(after, stage),
        "outage_p95_over_normal": round(outage_p95 / normal_p95, 2) if normal_p95 and outage_p95 else None,
        "failed_during_outage": outcomes(during)["failed"],
        # From SIGCONT to the first answer (sent after it) that used the backend again.
        "resumed_after_s": round(done(back) - resumed, 2) if back else None,
        "last_answer_without_it_after_return_s": round(max(still), 2) if still else 0.0,
        # p95 per 10 s of the outage: the first window holds the calls that waited before the circuit opened.
        "outage_p95_ms_per_10s": [
            p95_ms([s for s in during if stopped + t <= s.intended < stopped + t + 10])
            for t in range(0, int(outage_s), 10)
        ],
        "slowest_during_outage_ms": round(max(s.latency for s in during) * 1000, 1) if during else None,
        "readyz_mid_outage": readyz,
        "load_average_1m": round(os.getloadavg()[0], 2),
    }


def _ready_key(stage: str) -> str:
    return {"embed": "embedder", "rerank": "reranker"}.get(stage, stage)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--outage-s", type=float, default=60.0)
    parser.add_argument("--normal-s", type=float, default=15.0)
    parser.add_argument("--after-s", type=float, default=20.0)
    parser.add_argument("--backends", default="chat,rerank,embeddings,bolt")
    parser.add_argument("--no-breaker", action="store_true", help="every breaker disabled (the comparison)")
    parser.add_argument("--out", default=None, help="results file name (default outage.json, outage-no-breaker.json)")
    args = parser.parse_args()

    import ray
    from ray import serve

    from deployments.net import free_port
    from graph import start_local
    from tests.arcadedb_fixture import EmbeddedBoltServer, make_graph_config
    from tests.fakes import sample_documents
    from tests.openai_server_process import OpenAIProtocolServerProcess

    breaker = not args.no_breaker
    results: dict = {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "breaker": breaker,
        "concurrency": CONCURRENCY,
        "mode": MODE,
        "endpoint": "/v1/answer",
        "how": "SIGSTOP, then SIGCONT",
        "started_load_average": os.getloadavg(),
        "backends": {},
    }
    with (
        tempfile.TemporaryDirectory(prefix="graphrag-outage-") as tmp,
        OpenAIProtocolServerProcess() as chat,
        OpenAIProtocolServerProcess() as rerank,
        OpenAIProtocolServerProcess() as embeddings,
    ):
        bolt = EmbeddedBoltServer(make_graph_config(Path(tmp) / "arcadedb"))
        bolt.start()
        servers = {"chat": chat, "rerank": rerank, "embeddings": embeddings}
        try:
            base = start_local(app_args(f"{tmp}/data", servers, bolt, breaker), port=free_port(), name=APP)
            api = httpx.Client(base_url=base, timeout=120)
            api.post("/v1/ingest", json={"collection": "outage", "documents": sample_documents()}).raise_for_status()
            for n in range(2 * CONCURRENCY):  # warm every stage
                api.post("/v1/answer", json=payload(n)).raise_for_status()
            for name in args.backends.split(","):
                pid = bolt.pid if name == "bolt" else servers[name]._proc.pid
                result = asyncio.run(outage(base, name, pid, STAGE[name], args.normal_s, args.outage_s, args.after_s))
                results["backends"][name] = result
                print(json.dumps(result), flush=True)
        finally:
            serve.shutdown()
            ray.shutdown()
            bolt.stop()
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / (args.out or ("outage.json" if breaker else "outage-no-breaker.json"))
    out.write_text(json.dumps(results, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
