"""What the graph stage costs ingest: the app's ingest (vector and graph stores written concurrently, every
Graph index kept current) against the vector half alone, same documents, same embedder, one process, no Ray.

    python -m benchmarks.speed.ingest_graph_cost          # HotpotQA-100's 994 passages in batches of 64 -> results/ingest_graph_cost.json
    python -m benchmarks.speed.ingest_graph_cost --extractor patterns   # the same with graph.extraction.offline=patterns

"with graph": Pipeline.ingest (benchmarks/inprocess.py), and after each batch one graph search, which brings the
Graph index up to date with the batch (what every Graph replica does within graph.index.check_interval_ms).
"vector only": the same chunks through VectorService.upsert (the vector half of /v1/ingest).
Each run gets a fresh data folder; the embedder is warmed before either clock starts.
"""

from __future__ import annotations

import asyncio
import json
import os
import tempfile
import time

from benchmarks import use_local_env

use_local_env(fast_path=False)

from benchmarks import harness  # noqa: E402
from benchmarks.harness import DATASETS  # noqa: E402
from benchmarks.inprocess import in_process_pipeline  # noqa: E402
from benchmarks.quality.hotpotqa_recall import load as hotpot_load  # noqa: E402
from deployments.config import AppConfig  # noqa: E402
from deployments.embedder.service import EmbedderService  # noqa: E402
from deployments.ingress.chunking import chunk_document  # noqa: E402
from deployments.models import Document, IngestRequest, RetrieveRequest  # noqa: E402
from deployments.vector.service import VectorService  # noqa: E402

DATASET = DATASETS / "hotpotqa-100"
BATCH = 64


async def with_graph(docs: list[dict], data_dir: str, extractor: str) -> dict:
    async with in_process_pipeline({"data_dir": data_dir, "graph": {"extraction": {"offline": extractor}}}) as pipeline:
        start, chunks = time.perf_counter(), 0
        for i in range(0, len(docs), BATCH):
            resp = await pipeline.ingest(IngestRequest(collection="cost", documents=docs[i : i + BATCH]))
            chunks += resp.chunks
            # The index catches up with the batch (one version check and a read of the touched documents).
            await pipeline.retrieve(
                RetrieveRequest(collection="cost", query=docs[i]["text"][:80], mode="hybrid+graph", rerank=False)
            )
        seconds = time.perf_counter() - start
    return {"chunks": chunks, "seconds": round(seconds, 1), "chunks_per_s": round(chunks / seconds, 1)}


async def vector_only(docs: list[dict], data_dir: str) -> dict:
    config = AppConfig.from_args({"data_dir": data_dir})
    embedder = EmbedderService(config.embedder)
    await embedder.warmup()
    vector = VectorService(config.vector, embedder)
    try:
        start, chunks = time.perf_counter(), 0
        for i in range(0, len(docs), BATCH):
            batch = [c for d in docs[i : i + BATCH] for c in chunk_document(Document(**d), config.chunking)]
            chunks += await vector.upsert("cost", batch)
        seconds = time.perf_counter() - start
    finally:
        await vector.aclose()
        await embedder.aclose()
    return {"chunks": chunks, "seconds": round(seconds, 1), "chunks_per_s": round(chunks / seconds, 1)}


def main() -> None:
    ap = harness.cli(__doc__)
    ap.add_argument("--extractor", choices=["spacy", "patterns"], default="spacy", help="graph.extraction.offline")
    args = ap.parse_args()
    docs, _ = hotpot_load(DATASET)
    load_before = os.getloadavg()
    with (
        tempfile.TemporaryDirectory(prefix="graphrag-cost-") as a,
        tempfile.TemporaryDirectory(prefix="graphrag-cost-") as b,
    ):
        vec = asyncio.run(vector_only(docs, a))
        print(f"vector only: {vec}", flush=True)
        both = asyncio.run(with_graph(docs, b, args.extractor))
        print(f"with graph:  {both}", flush=True)
    result = {
        "documents": len(docs),
        "extractor": args.extractor,
        "vector_only": vec,
        "with_graph": both,
        "ratio": round(both["chunks_per_s"] / vec["chunks_per_s"], 3),
        "load_average_before": [round(x, 2) for x in load_before],
        "command": harness.command(),
        "date": harness.utc_now(),
    }
    print(json.dumps(result, indent=2))
    harness.write_json(
        "ingest_graph_cost.json" if args.extractor == "spacy" else f"ingest_graph_cost-{args.extractor}.json", result
    )


if __name__ == "__main__":
    main()
