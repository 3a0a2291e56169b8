"""The Graph replica's in-memory index (deployments/graph/index/collection.py) in isolation: search latency and
throughput on a SciFact-sized collection, and how build time and memory grow with passages (10k, 100k synthetic).

    python -m benchmarks.speed.graph_index_bench                  # -> benchmarks/results/graph_index.json
    python -m benchmarks.speed.graph_index_bench --sizes 10000 100000 --queries 300

SciFact: the 5,183 abstracts chunked as benchmarks/quality/scifact.py ingests them, entities from the offline extractor,
MiniLM vectors from benchmarks/.cache when benchmarks/quality/graph_eval.py has computed them (else random unit vectors:
the same arithmetic). Synthetic collections: ~15 entity mentions per passage drawn from a Zipf vocabulary of
2 × passages entities, 2 of them lead; 384-d random vectors. One thread, no Ray: what a search costs in a replica
besides Serve's own per-call overhead and the query embedding.
"""

from __future__ import annotations

import os

# One BLAS thread, as a replica on a small node should run: a 5k x 384 matrix-vector product is ~0.3 ms of one
# core, and BLAS worker threads only add hand-offs (and, on a loaded machine, waits).
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse
import json
import platform
import statistics
import time
import tracemalloc
from pathlib import Path

import numpy as np

from benchmarks import harness  # noqa: E402
from benchmarks.harness import RESULTS  # noqa: E402
from deployments.graph.index.collection import CollectionIndex, IndexedChunk  # noqa: E402

DIM = 384


def unit(rng: np.random.Generator, n: int) -> np.ndarray:
    v = rng.standard_normal((n, DIM)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def scifact_rows() -> tuple[list[IndexedChunk], np.ndarray | None, list[str]]:
    from benchmarks.harness import CACHE
    from benchmarks.quality.offline_corpus import scifact_docs
    from deployments.config import ChunkingConfig
    from deployments.graph.extraction.offline import extract
    from deployments.ingress.chunking import chunk_document

    docs, questions = scifact_docs()
    cfg = ChunkingConfig(max_words=512, overlap_words=64)
    chunks = [c for d in docs for c in chunk_document(d, cfg)]
    rows = []
    for c in chunks:
        ex = extract(c)
        rows.append(
            IndexedChunk(
                c.chunk_id,
                c.doc_id,
                c.text,
                "{}",
                tuple(e.key for e in ex.entities),
                tuple(e.key for e in ex.entities if e.lead),
            )
        )
    cached = sorted(CACHE.glob("scifact-scifact-*.npy")) if CACHE.exists() else []
    vectors = np.load(cached[-1]) if cached else None
    if vectors is not None and len(vectors) != len(rows):
        vectors = None
    return rows, vectors, [q["question"] for q in questions]


def synthetic_rows(n: int, rng: np.random.Generator) -> list[IndexedChunk]:
    """~15 mentions per passage: a third from a Zipf head (hubs like "film", "cell"), the rest uniform (names)."""
    vocab = 2 * n
    head = (rng.zipf(1.3, (n, 5)) - 1) % vocab
    tail = rng.integers(0, vocab, (n, 10))
    ids = np.concatenate([head, tail], axis=1)
    rows = []
    for i in range(n):
        keys = tuple(dict.fromkeys(f"e{j}" for j in ids[i]))
        rows.append(IndexedChunk(f"p{i}#0", f"p{i}", "x" * 800, "{}", keys, keys[5:7]))
    return rows


def build(rows: list[IndexedChunk], vectors: np.ndarray) -> tuple[CollectionIndex, dict]:
    started_cpu = time.process_time()
    index = CollectionIndex()
    index.upsert(rows, list(vectors))
    index.ensure_built()
    cpu_s = time.process_time() - started_cpu
    tracemalloc.start()  # a second build, traced, for its memory (tracing slows it down)
    traced = CollectionIndex()
    traced.upsert(rows, list(vectors))
    traced.ensure_built()
    current, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    del traced
    stats = index.stats()
    return index, {
        **stats,
        "build_cpu_s": round(cpu_s, 3),
        "index_mb": round(current / 2**20, 1),
        "build_peak_mb": round(peak / 2**20, 1),
    }


def rebuild_after_ingest(
    index: CollectionIndex, rows: list[IndexedChunk], vectors: np.ndarray, batch: int = 64
) -> float:
    """What a replica pays per ingest batch: drop/add `batch` documents, rebuild the matrices (ms)."""
    victims = rows[:batch]
    started = time.process_time()
    index.remove_docs([r.doc_id for r in victims])
    index.upsert(victims, list(vectors[:batch]))
    index.ensure_built()
    return round(1000 * (time.process_time() - started), 1)


def search_latency(index: CollectionIndex, queries: list[str], qvecs: np.ndarray, limit: int = 100) -> dict:
    """Wall time and this thread's CPU time per search: on a machine shared with other jobs the wall time is
    mostly waiting for a core, the CPU time is what a search costs (and bounds one replica's searches/s)."""
    wall, cpu = [], []
    for q, v in zip(queries, qvecs):
        started, started_cpu = time.perf_counter(), time.thread_time()
        index.search(q, limit, v)
        cpu.append(time.thread_time() - started_cpu)
        wall.append(time.perf_counter() - started)
    wall.sort()
    cpu.sort()
    return {
        "queries": len(wall),
        "wall_p50_ms": round(1000 * wall[len(wall) // 2], 2),
        "wall_p95_ms": round(1000 * wall[int(len(wall) * 0.95)], 2),
        "cpu_p50_ms": round(1000 * cpu[len(cpu) // 2], 2),
        "cpu_p95_ms": round(1000 * cpu[int(len(cpu) * 0.95)], 2),
        "searches_per_cpu_second": round(1 / statistics.fmean(cpu), 1),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", type=int, nargs="*", default=[10_000, 100_000])
    ap.add_argument("--queries", type=int, default=300)
    ap.add_argument("--out", type=Path, default=RESULTS / "graph_index.json")
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    out: dict = {
        "date": harness.utc_now(),
        "command": harness.command(),
        "machine": f"{platform.machine()}, shared with other jobs (noisy)",
    }

    rows, vectors, questions = scifact_rows()
    real = vectors is not None
    if vectors is None:
        vectors = unit(rng, len(rows))
    index, built = build(rows, vectors)
    qs = questions[: args.queries]
    qvecs = vectors[rng.integers(0, len(rows), len(qs))] + 0.1 * unit(rng, len(qs))  # near a passage, like a query
    out["scifact"] = {
        "real_vectors": real,
        **built,
        "rebuild_after_64_doc_ingest_cpu_ms": rebuild_after_ingest(index, rows, vectors),
        **search_latency(index, qs, qvecs),
    }
    print(json.dumps(out["scifact"]), flush=True)

    for n in args.sizes:
        srows = synthetic_rows(n, rng)
        svecs = unit(rng, n)
        sindex, sbuilt = build(srows, svecs)
        sq = [f"what about e{int(j)} and e{int(k)}" for j, k in rng.integers(0, 2 * n, (min(args.queries, 200), 2))]
        out[f"synthetic_{n}"] = {
            **sbuilt,
            "rebuild_after_64_doc_ingest_cpu_ms": rebuild_after_ingest(sindex, srows, svecs),
            **search_latency(sindex, sq, unit(rng, len(sq))),
        }
        print(n, json.dumps(out[f"synthetic_{n}"]), flush=True)
        del sindex, srows, svecs
    harness.write_json(args.out, out)


if __name__ == "__main__":
    main()
