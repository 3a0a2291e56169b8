"""Bulk ingest that grows with the cluster: the same SciFact abstracts chunked, embedded and extracted by one
ChunkWorker per node (deployments/bulk/), with one node and then with two, on two raylets on this machine
(benchmarks/cluster/ray_nodes.py: loopback, 1 CPU each).

    python -m benchmarks.cluster.cluster_ingest --docs 700      # ~10 min → benchmarks/results/cluster_ingest.json

Per level (1 node: the head; 2 nodes: head and worker), with the workers' models loaded before the clock starts:
- `embed_extract`: the workers' part alone (chunk, embed with MiniLM/ONNX on one thread, extract with spaCy), the
  documents dropped on arrival;
- `end_to_end`: the same rows, the documents written as they arrive into a fresh collection by Pipeline.ingest
  (the /v1/ingest path: intent log, both stores or neither, nothing embedded or extracted again) over the embedded
  stores held by this process, on the head's machine: the stores keep their single owner.
chunks/s = one-chunk documents written (= chunks) / wall seconds from the first batch sent to the last write.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from pathlib import Path

from benchmarks import use_local_env

use_local_env(fast_path=False)

from benchmarks import harness  # noqa: E402
from benchmarks.cluster.cluster_view import ClusterView, start_head, start_worker  # noqa: E402
from benchmarks.cluster.ray_nodes import RayNode, node_env  # noqa: E402
from benchmarks.harness import CACHE, DATASETS, RESULTS, ROOT  # noqa: E402
from benchmarks.inprocess import InProcessClient  # noqa: E402
from deployments.bulk.cluster import BulkReport, spread, start_workers  # noqa: E402
from deployments.cli.ingest import read_beir_corpus  # noqa: E402
from deployments.ingress.intents import IntentLog  # noqa: E402
from deployments.local_env import LOCAL_ENV  # noqa: E402
from deployments.models import IngestRequest  # noqa: E402

TARGET_SPEEDUP = 1.6


def load(corpus: Path, n: int) -> list[dict]:
    rows = []
    for row in read_beir_corpus(corpus):
        rows.append(row)
        if len(rows) == n:
            break
    return rows


def rate(report: BulkReport) -> dict:
    return {
        "chunks": report.documents,
        "rows": report.rows,
        "seconds": round(report.seconds, 1),
        "chunks_per_s": round(report.chunks_per_s, 2),
        "write_seconds": round(report.write_seconds, 1),
    }


def level(rows: list[dict], nodes: list[str], worker_args: dict, writer: InProcessClient, collection: str) -> dict:
    import ray

    t0 = time.perf_counter()
    workers = start_workers(worker_args, nodes)
    startup_s = time.perf_counter() - t0
    try:
        compute = spread(rows, None, workers)
        print(f"  {len(nodes)} node(s), embed+extract: {rate(compute)}", flush=True)

        def write(docs: list[dict]) -> None:
            writer._call(writer.pipeline.ingest(IngestRequest(collection=collection, documents=docs)))

        whole = spread(rows, write, workers)
        print(f"  {len(nodes)} node(s), end to end: {rate(whole)}", flush=True)
    finally:
        for w in workers:
            ray.kill(w)
    verify = writer._call(writer.pipeline.verify(collection))
    stats = writer._call(writer.pipeline.stats(collection))
    return {
        "nodes": len(nodes),
        "workers_start_s": round(startup_s, 1),
        "embed_extract": rate(compute),
        "end_to_end": rate(whole),
        "stored": stats.model_dump(exclude={"collection"}),
        "consistent": verify.consistent,
    }


def main() -> None:
    parser = harness.cli(__doc__)
    parser.add_argument("--docs", type=int, default=700, help="the first N SciFact abstracts")
    parser.add_argument("--corpus", type=Path, default=DATASETS / "scifact" / "corpus.jsonl.gz")
    parser.add_argument("--out", default=str(RESULTS / "cluster_ingest.json"))
    parser.add_argument("--keep", action="store_true", help="keep the run's temporary folder (logs) afterwards")
    opts = parser.parse_args()

    rows = load(opts.corpus, opts.docs)
    tmp = Path(tempfile.mkdtemp(prefix="gr-ingest-"))  # short: Ray's socket paths under it must fit 107 bytes
    env = {
        **os.environ,
        **LOCAL_ENV,
        "PYTHONPATH": os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p),
    }
    # One thread each (one CPU per node); the exported ONNX model shared from the benchmarks' cache.
    worker_args = {
        "data_dir": str(tmp / "worker-data"),
        "embedder": {"num_threads": 1, "cache_dir": str(CACHE / "models")},
    }
    result: dict = {
        "command": harness.command(),
        "date": harness.utc_now(),
        "documents": len(rows),
        "load_average_start": [round(x, 2) for x in os.getloadavg()],
    }
    nodes: list[RayNode] = []
    writer = None
    try:
        import ray

        head, head_id, _ = start_head(tmp, env, nodes)
        view = ClusterView(f"http://127.0.0.1:{head.dashboard_port}")
        _, worker_id, _ = start_worker(
            view, "worker", tmp, node_env(env, worker=True), f"127.0.0.1:{head.gcs_port}", {head_id}, nodes
        )
        ray.init(address=f"127.0.0.1:{head.gcs_port}", _node_ip_address="127.0.0.1")
        writer = InProcessClient({"data_dir": str(tmp / "store"), "embedder": {"cache_dir": str(CACHE / "models")}})
        writer.pipeline.intents = IntentLog(tmp / "store" / "intents")  # as the ingress keeps it
        levels = []
        for ids in ([head_id], [head_id, worker_id]):
            levels.append(level(rows, ids, worker_args, writer, f"bulk{len(ids)}"))
        one, two = levels
        result.update(
            {
                "chunks_per_s_one_node": one["end_to_end"]["chunks_per_s"],
                "chunks_per_s_two_nodes": two["end_to_end"]["chunks_per_s"],
                "cluster_ingest_speedup": round(
                    two["end_to_end"]["chunks_per_s"] / one["end_to_end"]["chunks_per_s"], 3
                ),
                "embed_extract_speedup": round(
                    two["embed_extract"]["chunks_per_s"] / one["embed_extract"]["chunks_per_s"], 3
                ),
                "target_speedup": TARGET_SPEEDUP,
                "levels": levels,
            }
        )
    finally:
        if writer is not None:
            writer.close()
        try:
            import ray

            ray.shutdown()
        finally:
            for node in reversed(nodes):
                node.stop()
        result["load_average_end"] = [round(x, 2) for x in os.getloadavg()]
        if not opts.keep:
            import shutil

            shutil.rmtree(tmp, ignore_errors=True)
    print(json.dumps(result, indent=2))
    harness.write_json(Path(opts.out), result)


if __name__ == "__main__":
    main()
