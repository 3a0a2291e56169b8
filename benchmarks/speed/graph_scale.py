"""The graph stage's index at 10k, 100k and 1M chunks: search CPU (the local walk vs the former full mat-vec walk),
build time, snapshot write/load time and size, and the index's memory. In-process, one thread, no Ray, no stores.

    git show d4e1811:deployments/graph/index/collection.py > benchmarks/.cache/former_collection.py
    python -m benchmarks.speed.graph_scale --sizes 10000 100000 1000000 --former benchmarks/.cache/former_collection.py

Corpora: benchmarks/.cache/scale/<n>.parquet (python -m benchmarks.speed.scale_corpus), entities from the offline
pattern extractor (the default), cached per row under benchmarks/.cache/scale/. 1M: extracting 1M passages takes
~1 h here, so the 1M collection is the 100k one's extractions ten times over, each copy's entity keys made its own
(`key~k`) except the 1% most frequent keys (common words: the hubs), which every copy shares, so hubs grow tenfold
as in a real collection while names stay specific. Queries: HotpotQA-100's questions with their MiniLM vectors; the
seed passages are the exact dense top `passage_seeds` of the collection's vectors (the vector stage's HNSW search
stands in), computed outside the timed search; the former walk scans the vectors itself, inside it.
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # one BLAS thread, as a replica on a small node
os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse
import gc
import importlib.util
import json
import pickle
import sys
import time
from pathlib import Path

import numpy as np

from benchmarks import harness  # noqa: E402
from benchmarks.harness import CACHE, DATASETS, RESULTS  # noqa: E402
from deployments.config import GraphIndexConfig  # noqa: E402
from deployments.graph.index import snapshot  # noqa: E402
from deployments.graph.index.collection import CollectionIndex, IndexedChunk  # noqa: E402

SCALE = CACHE / "scale"
TILED_FROM = 100_000


EXTRACTOR = {"name": "patterns"}  # --extractor spacy: the app's default, from benchmarks/scale's cached extractions


def spacy_rows(n: int) -> tuple[list[str], list[tuple], np.ndarray]:
    """The first n rows with the spaCy extractions benchmarks/scale cached for its collections, turned into index
    rows by the store's own code (writes.ingest_rows: the keys, leads, relations and aliases a chunk row holds)."""
    from benchmarks.scale import data
    from deployments.graph.store.writes import ingest_rows
    from deployments.ingress.chunking import chunk_documents
    from deployments.models import Document

    cached = sorted(SCALE.glob("extract-spacy-v*-*.pkl"), key=lambda p: int(p.stem.rsplit("-", 1)[1]))
    path = next((p for p in cached if int(p.stem.rsplit("-", 1)[1]) >= n), None)
    if path is None:
        raise SystemExit(f"no cached spaCy extractions of {n} rows: run python -m benchmarks.scale --sizes {n} first")
    found = pickle.loads(path.read_bytes())[:n]
    docs = [Document(**{**r, "vector": None}) for r in data.read_rows(n)]
    chunks, _ = chunk_documents(docs, data.CHUNKING)
    ids, vectors = data.read_vectors(n)
    rows = [
        (tuple(c["keys"]), tuple(c["lead"]), tuple(zip(c["rel_src"], c["rel_type"], c["rel_tgt"], c["rel_w"])),
         tuple(zip(c["alias_src"], c["alias_tgt"])))
        for c in ingest_rows(chunks, found).chunks
    ]  # fmt: skip
    return ids, rows, vectors


def extractions(n: int) -> tuple[list[str], list[tuple], np.ndarray]:
    """(ids, (keys, lead, relations, aliases) per row, vectors) of the first n rows of the scale corpus."""
    if EXTRACTOR["name"] == "spacy":
        return spacy_rows(n)
    import pyarrow.parquet as pq

    from deployments.graph.extraction.offline import extract
    from deployments.models import Chunk

    source = min(s for s in (10_000, 100_000, 1_000_000) if s >= n and (SCALE / f"{s}.parquet").exists())
    table = pq.read_table(SCALE / f"{source}.parquet").slice(0, n)
    ids = table.column("id").to_pylist()
    vectors = np.asarray(table.column("vector").to_pylist(), dtype=np.float32)
    cache = SCALE / f"extract-patterns-{n}.pkl"
    if cache.exists():
        return ids, pickle.loads(cache.read_bytes()), vectors
    smaller = sorted((int(p.stem.split("-")[-1]) for p in SCALE.glob("extract-patterns-*.pkl")), reverse=True)
    done: list[tuple] = next(
        (pickle.loads((SCALE / f"extract-patterns-{s}.pkl").read_bytes()) for s in smaller if s < n), []
    )
    texts = table.column("text").to_pylist()
    for i in range(len(done), n):
        ex = extract(Chunk(chunk_id=ids[i], doc_id=ids[i], index=0, text=texts[i], metadata={}))
        done.append((
            tuple(e.key for e in ex.entities), tuple(e.key for e in ex.entities if e.lead),
            tuple((r.source, r.type, r.target, r.weight) for r in ex.relations),
            tuple((a, e.key) for e in ex.entities for a in e.aliases),
        ))  # fmt: skip
    cache.write_bytes(pickle.dumps(done))
    return ids, done, vectors


def tiled(n: int) -> tuple[list[str], list[tuple], np.ndarray]:
    """n rows made of the TILED_FROM collection's extractions, copy k's keys renamed `key~k` but the hubs'."""
    ids, rows, vectors = extractions(TILED_FROM)
    df: dict[str, int] = {}
    for keys, *_ in rows:
        for k in keys:
            df[k] = df.get(k, 0) + 1
    hubs = set(sorted(df, key=lambda k: -df[k])[: len(df) // 100])
    rng = np.random.default_rng(0)
    out_ids, out_rows, out_vecs = [], [], []
    for copy in range(n // TILED_FROM):

        def name(k: str, copy: int = copy) -> str:
            return k if copy == 0 or k in hubs else f"{k}~{copy}"

        for i, (keys, lead, rel, aliases) in zip(ids, rows):
            out_ids.append(i if copy == 0 else f"{i}~{copy}")
            out_rows.append((
                tuple(map(name, keys)), tuple(map(name, lead)),
                tuple((name(s), t, name(o), w) for s, t, o, w in rel), tuple((name(a), name(k)) for a, k in aliases),
            ))  # fmt: skip
        noise = vectors + 0.3 * rng.standard_normal(vectors.shape).astype(np.float32) if copy else vectors
        out_vecs.append(noise / np.linalg.norm(noise, axis=1, keepdims=True))
    return out_ids, out_rows, np.concatenate(out_vecs)


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def held_mb(index: CollectionIndex) -> float:
    """What the index holds: its arrays' bytes, and its dicts, lists and strings as Python sizes them."""
    seen: set[int] = set()

    def size(v) -> int:
        if id(v) in seen:
            return 0
        seen.add(id(v))
        if isinstance(v, np.ndarray):
            return v.nbytes
        if isinstance(v, dict):
            return sys.getsizeof(v) + sum(size(k) + size(x) for k, x in v.items())
        if isinstance(v, list | tuple | set):
            return sys.getsizeof(v) + sum(size(x) for x in v)
        if hasattr(v, "__dict__"):
            return sum(size(x) for x in vars(v).values())
        return sys.getsizeof(v)

    return round(size(index) / 2**20, 1)


def cpu_ms(fn, runs) -> list[float]:
    out = []
    for args in runs:
        started = time.thread_time()
        fn(*args)
        out.append(1000 * (time.thread_time() - started))
    return sorted(out)


def p50(xs: list[float]) -> float:
    return round(xs[len(xs) // 2], 3)


def measure(n: int, former_path: Path | None, questions: list[str], qvecs: np.ndarray) -> dict:
    ids, rows, vectors = tiled(n) if n > TILED_FROM else extractions(n)
    params = GraphIndexConfig().params()
    k = params.passage_seeds
    cos_all = (
        qvecs @ vectors.T
        if n <= TILED_FROM
        else np.concatenate([qvecs @ v.T for v in np.array_split(vectors, 10)], axis=1)
    )
    seeds = []
    for cos in cos_all:
        top = np.argpartition(-cos, k)[:k]
        seeds.append([(ids[i], float(cos[i])) for i in top])
    del cos_all
    corpus = f"scale corpus + {EXTRACTOR['name']} extractor"
    out: dict = {"chunks": n, "corpus": f"tiled from 100k ({corpus})" if n > TILED_FROM else corpus}
    # the new index
    chunks = [IndexedChunk(i, i, *r) for i, r in zip(ids, rows)]
    gc.collect()
    before = rss_mb()
    started = time.perf_counter()
    index = CollectionIndex(params)
    index.upsert(chunks)
    index.ensure_built()
    out["build_s"] = round(time.perf_counter() - started, 2)
    del chunks
    gc.collect()
    out["index_rss_mb"] = round(rss_mb() - before, 1)
    out["index_stats"] = index.stats()
    out["index_held_mb"] = held_mb(index)
    out["process_rss_mb"] = round(rss_mb(), 1)
    times = cpu_ms(lambda q, s: index.search(q, 100, s), list(zip(questions, seeds)) * 3)
    out["search_cpu_ms_p50"], out["search_cpu_ms_p95"] = p50(times), round(times[int(len(times) * 0.95)], 3)
    path = SCALE / f"snapshot-{n}.npz"
    started = time.perf_counter()
    snapshot.save(index, path)
    out["snapshot_write_s"] = round(time.perf_counter() - started, 2)
    out["snapshot_mb"] = round(path.stat().st_size / 2**20, 1)
    started = time.perf_counter()
    loaded = snapshot.load(path, params)
    out["snapshot_load_s"] = round(time.perf_counter() - started, 2)
    out["snapshot_answers_alike"] = all(
        loaded.search(q, 100, s).chunks == index.search(q, 100, s).chunks for q, s in zip(questions[:20], seeds)
    )
    path.unlink()
    loaded = index = None  # freed before the former index is built
    gc.collect()
    if former_path is not None:
        out["former"] = former(former_path, n, ids, rows, vectors, params, questions, qvecs)
    print(n, json.dumps(out), flush=True)
    return out


def former(path: Path, n: int, ids, rows, vectors, params, questions, qvecs) -> dict:
    """The former walk (full mat-vecs, passage vectors in the index, the exact scan for seeds): its search CPU."""
    spec = importlib.util.spec_from_file_location("former_collection", path)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # its dataclasses look their module up
    spec.loader.exec_module(mod)
    fields = {k: v for k, v in params.__dict__.items() if k in mod.PPRParams.__dataclass_fields__}
    index = mod.CollectionIndex(mod.PPRParams(**fields))
    gc.collect()
    before = rss_mb()
    started = time.perf_counter()
    index.upsert([mod.IndexedChunk(i, i, "", "{}", *r) for i, r in zip(ids, rows)], list(vectors))
    index.ensure_built()
    build_s = round(time.perf_counter() - started, 2)
    gc.collect()
    times = cpu_ms(lambda q, v: index.search(q, 100, v), list(zip(questions, qvecs)))  # once each: slow at 1M
    return {"build_s": build_s, "index_rss_mb": round(rss_mb() - before, 1), "search_cpu_ms_p50": p50(times)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", type=int, nargs="*", default=[10_000, 100_000, 1_000_000])
    ap.add_argument("--former", type=Path, help="a copy of the former deployments/graph/index/collection.py")
    ap.add_argument("--former-max", type=int, default=1_000_000, help="measure the former walk up to this size")
    ap.add_argument("--out", type=Path, default=RESULTS / "scale-graph.json")
    ap.add_argument(
        "--extractor", choices=("patterns", "spacy"), default="patterns",
        help="spacy: the default extractor's extractions cached by python -m benchmarks.scale (100k rows at most)",
    )  # fmt: skip
    args = ap.parse_args()
    EXTRACTOR["name"] = args.extractor
    hotpot = json.loads((DATASETS / "hotpotqa-100" / "hotpotqa_train.json").read_text())
    questions = [q["question"] for q in hotpot]
    qvecs = np.load(sorted(CACHE.glob("hotpotqa-questions-*.npy"))[-1]).astype(np.float32)
    out = {
        "date": harness.utc_now(),
        "command": harness.command(),
        "machine": "2 cores shared with other jobs (CPU times per search are this thread's, less noisy than wall)",
        "method": (__doc__ or "").split("\n\n")[2].replace("\n", " "),
        "sizes": {},
    }
    for n in args.sizes:
        former_path = args.former if n <= args.former_max else None
        out["sizes"][str(n)] = measure(n, former_path, questions, qvecs)
    sizes = out["sizes"]
    if "10000" in sizes and "1000000" in sizes:
        out["search_cpu_1m_over_10k"] = round(
            sizes["1000000"]["search_cpu_ms_p50"] / sizes["10000"]["search_cpu_ms_p50"], 2
        )
    harness.write_json(args.out, out)


if __name__ == "__main__":
    sys.exit(main())
