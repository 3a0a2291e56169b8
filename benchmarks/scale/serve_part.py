"""A size's figures through the app on Ray Serve (the data folder of benchmarks/scale/data.py): retrieve over HTTP,
the Graph deployment over its handle, each replica's memory, HotpotQA recall, an ingest of 1,000 new documents,
and a second Graph replica added by the autoscaler under load."""

from __future__ import annotations

import asyncio
import os
import re
import time
from datetime import datetime
from pathlib import Path

import httpx

from benchmarks import harness
from benchmarks.loadgen import closed_loop
from benchmarks.quality.hotpotqa_recall import load as load_hotpotqa
from benchmarks.quality.hotpotqa_recall import measure as recall_of
from benchmarks.scale.data import APP_ARGS, COLLECTION
from benchmarks.speed.real_stages.load import own_process_cpu, payload_for
from benchmarks.speed.real_stages.stage_probes import graph_stage

INGEST_DOCS = 1_000
INGEST_BATCH = 250  # documents per /v1/ingest request (the API takes at most 256)
INGEST_FROM = 9_000_000  # distractor numbers past every corpus size: new documents, never in the collection
# The second replica: the autoscaler adds it under load (target 2 ongoing searches; one replica holds ~c).
# Target 1 since the graph is called after the vector stage (retrieval.graph_seeds): at 1M its replica held ~2
# requests under c=16 and the autoscaler took 4 min to add one at target 2 (2026-12-05 16:24-16:28 UTC).
SCALING = {"min_replicas": 1, "max_replicas": 2, "target_ongoing_requests": 1, "upscale_delay_s": 2}


def app_args(data_dir: Path, graph_scaling: dict | None = None) -> dict:
    deployments = {"graph": {"autoscaling_config": graph_scaling}} if graph_scaling else {}
    return {**APP_ARGS, "data_dir": str(data_dir), "deployments": deployments}


def questions() -> tuple[list[str], list[dict]]:
    """Load questions (HotpotQA's and SciFact's, in one cycle) and HotpotQA-100's questions for recall."""
    from benchmarks.speed.real_stages.corpus import scifact_queries

    _, hotpot = load_hotpotqa(harness.DATASETS / "hotpotqa-100")
    return [q["question"] for q in hotpot] + scifact_queries(), hotpot


def replica_rss_mb(app: str) -> dict[str, float]:
    """Resident memory of this run's replicas by deployment (`ServeReplica:<app>:<Deployment>`, summed over its
    replicas; the embedded ArcadeDB's JVM runs inside the BoltServer replica)."""
    out: dict[str, float] = {}
    for pid, (cmd, _) in own_process_cpu().items():
        m = re.search(rf"ServeReplica:{app}:(\w+)", cmd)
        if m is None:
            continue
        name = m.group(1)
        try:
            rss = next(int(line.split()[1]) for line in open(f"/proc/{pid}/status") if line.startswith("VmRSS:"))
        except (OSError, StopIteration):
            continue
        out[name] = round(out.get(name, 0.0) + rss / 1024, 1)
    return out


def disk_mb(data_dir: Path) -> dict[str, float]:
    """Bytes on disk per store folder of the data folder."""
    out = {}
    for child in sorted(data_dir.iterdir()):
        if child.is_dir():
            out[child.name] = round(sum(f.stat().st_size for f in child.rglob("*") if f.is_file()) / 2**20, 1)
    return out


def retrieve_levels(url: str, queries: list[str], seconds: float) -> dict:
    payload = payload_for(queries, {}, COLLECTION)
    out = {}
    for c in (1, 32):
        run = asyncio.run(
            closed_loop(f"{url}/v1/retrieve", payload, c, 100_000, ramp_s=1.0, max_wall_s=seconds, timeout_s=120)
        )
        out[f"c{c}"] = {k: v for k, v in run.summary().items() if k != "status"}
        print(f"  retrieve c={c}: {out[f'c{c}']}", flush=True)
    return out


def recall(url: str, hotpot: list[dict]) -> dict:
    with httpx.Client(base_url=url, timeout=600) as client:
        return {
            name: recall_of(client, COLLECTION, hotpot, variant)
            for name, variant in (("default", {}), ("hybrid", {"mode": "hybrid"}))
        }


def new_documents() -> list[dict]:
    from benchmarks.speed.scale_corpus import DistractorMaker, real_passages

    maker = DistractorMaker(real_passages())
    return [maker.make(i) for i in range(INGEST_FROM, INGEST_FROM + INGEST_DOCS)]


def ingest_new(url: str, docs: list[dict]) -> dict:
    """The 1,000 documents through /v1/ingest (embedded and extracted by the app), then deleted again so the
    collection stays its size for the next run."""
    with httpx.Client(base_url=url, timeout=600) as client:
        started, chunks = time.perf_counter(), 0
        for i in range(0, len(docs), INGEST_BATCH):
            resp = client.post("/v1/ingest", json={"collection": COLLECTION, "documents": docs[i : i + INGEST_BATCH]})
            resp.raise_for_status()
            chunks += resp.json()["chunks"]
        seconds = time.perf_counter() - started
        for doc in docs:
            client.delete(f"/v1/documents/{doc['id']}", params={"collection": COLLECTION}).raise_for_status()
    return {
        "documents": len(docs),
        "chunks": chunks,
        "seconds": round(seconds, 1),
        "chunks_per_s": round(chunks / seconds, 1),
    }


def work_raw(docs: list[dict]) -> dict:
    """The same texts through the embedding backend and the offline extractor alone, in this process."""
    from deployments.config import AppConfig
    from deployments.embedder.backends import make_embedder
    from deployments.graph.extraction.llm import make_extractor
    from deployments.ingress.chunking import chunk_documents
    from deployments.models import Document

    config = AppConfig.from_args({**APP_ARGS, "data_dir": "/tmp/graphrag-unused"})
    chunks, _ = chunk_documents([Document(**d) for d in docs], config.chunking)

    async def embed() -> float:
        backend = make_embedder(config.embedder)
        try:
            await backend.embed([chunks[0].text])
            started = time.perf_counter()
            for i in range(0, len(chunks), 64):
                await backend.embed([c.text for c in chunks[i : i + 64]])
            return time.perf_counter() - started
        finally:
            await backend.aclose()

    embed_s = asyncio.run(embed())
    extract = make_extractor(config.graph.extraction)
    started = time.perf_counter()
    for i in range(0, len(chunks), INGEST_BATCH):
        extract.extract_many(chunks[i : i + INGEST_BATCH])
    extract_s = time.perf_counter() - started
    return {
        "chunks": len(chunks),
        "embed_chunks_per_s": round(len(chunks) / embed_s, 1),
        "extract_chunks_per_s": round(len(chunks) / extract_s, 1),
        "chunks_per_s": round(len(chunks) / (embed_s + extract_s), 1),
    }


def _log_time(line: str) -> float | None:
    m = re.search(r"(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3})", line)
    return datetime.strptime(m.group(1), "%Y-%m-%d %H:%M:%S,%f").timestamp() if m else None


def second_replica(url: str, app: str, data_dir: Path, queries: list[str], timeout_s: float = 240) -> dict:
    """Redeploys with the Graph deployment autoscaling 1..2, loads it (c=16 retrieve) until the controller adds a
    Graph replica and that replica logs its indexes ready; seconds from Serve's "Adding 1 replica" line to the new
    replica's "graph indexes ready" line, and the graph stage's degraded answers meanwhile."""
    import ray
    from ray import serve

    from graph import build_app

    serve.run(build_app(app_args(data_dir, SCALING)), name=app, route_prefix="/")
    logs = Path(ray._private.worker.global_worker.node.get_logs_dir_path()) / "serve"
    before = {p.name for p in logs.glob(f"replica_{app}_Graph_*.log")}
    deployed = time.time()
    samples: list = []

    async def load() -> None:
        payload = payload_for(queries, {}, COLLECTION)
        while time.time() - deployed < timeout_s and not ready():
            run = await closed_loop(f"{url}/v1/retrieve", payload, 16, 64, timeout_s=120)
            samples.extend(run.samples)

    found: dict = {}

    def ready() -> bool:
        for path in logs.glob(f"replica_{app}_Graph_*.log"):
            if path.name in before:
                continue
            for line in path.read_text(errors="replace").splitlines():
                if "graph indexes ready" in line:
                    found["ready"], found["replica_log"] = _log_time(line), path.name
        for path in logs.glob("controller_*.log"):
            for line in path.read_text(errors="replace").splitlines():
                t = _log_time(line)
                if "Adding 1 replica" in line and "Graph" in line and t and t >= deployed - 1:
                    found.setdefault("added", t)
        return "ready" in found and "added" in found

    asyncio.run(load())
    if not ready():
        return {"error": f"no second Graph replica ready within {timeout_s:.0f} s", **found}
    degraded = sum(1 for s in samples if s.degraded and "graph" in s.degraded)
    return {
        "graph_replica_ready_s": round(found["ready"] - found["added"], 2),
        "degraded_graph_calls": degraded,
        "failed": sum(1 for s in samples if s.outcome == "failed"),
        "requests": len(samples),
        "autoscaling": SCALING,
    }


def _stop_leftovers() -> None:
    for pid in own_process_cpu():
        try:
            os.kill(pid, 9)
        except OSError:
            pass


def one_part(data_dir: Path, part: str) -> dict:
    """The app on the folder, then one part of `measure` alone: "replica" (second_replica) or "recall"."""
    from graph import build_app

    queries, hotpot = questions()
    with harness.ray_session(attempts=8, cleanup=_stop_leftovers):
        url = harness.deploy(build_app(app_args(data_dir)), "scale", attempts=3)
        _wait(url)
        if part == "replica":
            return {"second_replica": second_replica(url, "scale", data_dir, queries)}
        found = recall(url, hotpot)
        flat = {f"{v}_test_recall@{k}": r["test"][f"recall@{k}"] for v, r in found.items() for k in (2, 5)}
        return {"recall": found, **flat}


def measure(n: int, data_dir: Path, seconds: float) -> dict:
    app = "scale"
    queries, hotpot = questions()

    from graph import build_app

    out: dict = {"chunks": n}
    with harness.ray_session(attempts=8, cleanup=_stop_leftovers):
        started = time.perf_counter()
        url = harness.deploy(build_app(app_args(data_dir)), app, attempts=3)
        _wait(url)
        out["app_ready_s"] = round(time.perf_counter() - started, 1)  # deploy to the first answer with every stage
        asyncio.run(closed_loop(f"{url}/v1/retrieve", payload_for(queries, {}, COLLECTION), 8, 32))  # warm every hop
        out["retrieve"] = retrieve_levels(url, queries, seconds)
        out["retrieve_p50_ms_c1"] = out["retrieve"]["c1"]["p50_ms"]
        out["retrieve_qps_c32"] = out["retrieve"]["c32"]["qps"]
        stage = graph_stage(app, queries, max(10.0, seconds / 2), str(data_dir), COLLECTION, APP_ARGS)
        out["graph_search_p50_ms_c1"] = stage["c1"]["p50_ms"]
        out["graph_searches_per_s_c32"] = stage["c32"]["searches_per_s"]
        out["graph_stage"] = stage
        out["rss_mb"] = replica_rss_mb(app)
        print(f"  rss: {out['rss_mb']}", flush=True)
        out["recall"] = recall(url, hotpot)
        for variant, r in out["recall"].items():
            out[f"{variant}_test_recall@2"], out[f"{variant}_test_recall@5"] = (
                r["test"]["recall@2"],
                r["test"]["recall@5"],
            )
        print(f"  recall: { {k: v for k, v in out.items() if 'recall@' in k} }", flush=True)
        docs = new_documents()
        out["ingest"] = ingest_new(url, docs)
        out["ingest_chunks_per_s"] = out["ingest"]["chunks_per_s"]
        print(f"  ingest: {out['ingest']}", flush=True)
        out["second_replica"] = second_replica(url, app, data_dir, queries)
        print(f"  second replica: {out['second_replica']}", flush=True)
    out["work_raw"] = work_raw(docs)
    out["work_raw_chunks_per_s"] = out["work_raw"]["chunks_per_s"]
    out["disk_mb"] = disk_mb(data_dir)
    return out


def _wait(url: str, timeout: float = 900) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            resp = httpx.post(f"{url}/v1/retrieve", json={"collection": COLLECTION, "query": "warm up"}, timeout=60)
            if resp.status_code == 200 and not resp.json()["degraded"]:  # the Graph replica's index is built
                return
        except httpx.HTTPError:
            pass
        time.sleep(2)
    raise RuntimeError(f"{url} did not answer within {timeout:.0f} s")
