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

Parts: corpus.py (the data loads), monolith.py (the in-process monolith), load.py (the load levels),
stage_probes.py (single stages, flame graphs), __main__.py (the command and its results).
"""

from __future__ import annotations

from typing import Any

from benchmarks import use_local_env

use_local_env()  # before any part imports Ray or transformers

from benchmarks import harness  # noqa: E402

CACHE = harness.CACHE / "real-stages"
PARTIAL = CACHE / "partial.json"
# Abstracts are ~200 words: one chunk each, as in benchmarks/quality/scifact.py. Everything else as shipped.
APP_ARGS: dict[str, Any] = {"chunking": {"max_words": 512, "overlap_words": 64}}
RAMP_S = 1.0
RAY_WORKER_NICENESS = 15  # Ray starts its workers (every Serve replica) at this niceness (its worker_niceness)
