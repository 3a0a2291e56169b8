"""A size's collection: the first n rows of the scale corpus (benchmarks/speed/scale_corpus.py) in both stores of a
data folder `benchmarks/.cache/scale-data/<n>/`, written in this process before any server opens it, by the code
paths of /v1/ingest's halves: VectorService.upsert with the rows' own vectors (1,024 per write) and
GraphService.upsert with the app's offline extractor's extractions (256 chunks per write, as one API request).
Extractions are cached per size (`scale/extract-spacy-v<VERSION>-<n>.pkl`, a larger size starts from a smaller one's);
past 100k rows they are the 100k rows' tiled, and the stores are written a slice at a time (scale/tiled.py)."""

from __future__ import annotations

import asyncio
import json
import pickle
import time
from pathlib import Path
from typing import TYPE_CHECKING

from benchmarks.harness import CACHE
from benchmarks.scale import tiled
from benchmarks.speed.scale_corpus import CACHE as CORPUS
from benchmarks.speed.scale_corpus import CHUNKING
from benchmarks.speed.scale_corpus import build as build_corpus

if TYPE_CHECKING:
    import numpy as np

COLLECTION = "scale"
DATA = CACHE / "scale-data"
APP_ARGS = {"chunking": CHUNKING.model_dump()}
GRAPH_BATCH = 256
VECTOR_BATCH = 1024


def corpus_path(n: int) -> Path:
    """The smallest cached corpus holding n rows (sizes are prefixes of one stream)."""
    for size in (10_000, 100_000, 1_000_000):
        if size >= n:
            return build_corpus(size)
    raise ValueError(f"no scale corpus of {n} rows")


def read_rows(n: int, start: int = 0) -> list[dict]:
    """Rows [start, start + n) of the scale corpus as API documents (id, text, metadata, vector)."""
    import pyarrow.parquet as pq

    table = pq.read_table(corpus_path(start + n)).slice(start, n)
    ids, texts = table.column("id").to_pylist(), table.column("text").to_pylist()
    metas = [json.loads(m) for m in table.column("metadata").to_pylist()]
    vectors = table.column("vector").to_pylist()
    return [{"id": i, "text": t, "metadata": m, "vector": v} for i, t, m, v in zip(ids, texts, metas, vectors)]


def read_vectors(n: int) -> tuple[list[str], np.ndarray]:
    """Chunk ids and vectors (n x dim float32) of the first n rows."""
    import numpy as np
    import pyarrow.parquet as pq

    table = pq.read_table(corpus_path(n), columns=["id", "vector"]).slice(0, n)
    flat = np.asarray(table.column("vector").combine_chunks().flatten(), dtype=np.float32)
    return [f"{i}#0" for i in table.column("id").to_pylist()], flat.reshape(n, -1)


def extractions(chunks: list, log=print) -> list:
    """The offline extractor's (spaCy) extractions of these chunks, in GRAPH_BATCH parts as the graph stage makes
    them, cached by count (a prefix of the corpus)."""
    from deployments.config import ExtractionConfig
    from deployments.graph.extraction import spacy as spacy_extractor
    from deployments.graph.extraction.llm import make_extractor

    n = len(chunks)
    name = f"extract-spacy-v{spacy_extractor.VERSION}"
    path = CORPUS / f"{name}-{n}.pkl"
    if path.exists():
        return pickle.loads(path.read_bytes())
    smaller = sorted((int(p.stem.rsplit("-", 1)[1]) for p in CORPUS.glob(f"{name}-*.pkl")), reverse=True)
    done: list = next((pickle.loads((CORPUS / f"{name}-{s}.pkl").read_bytes()) for s in smaller if s < n), [])
    extract = make_extractor(ExtractionConfig())
    started = time.perf_counter()
    for i in range(len(done), n, GRAPH_BATCH):
        done.extend(extract.extract_many(chunks[i : i + GRAPH_BATCH]))
        if (i // GRAPH_BATCH) % 40 == 0:
            log(f"  extracted {len(done):,}/{n:,} ({time.perf_counter() - started:.0f} s)")
    path.write_bytes(pickle.dumps(done))
    return done


def build(n: int, log=print) -> Path:
    """The data folder of size n (made once; `loaded.json` says how long each store took)."""
    from deployments.config import AppConfig
    from deployments.ingress.chunking import chunk_documents
    from deployments.models import Document, PackedVectors

    folder = DATA / str(n)
    if (folder / "loaded.json").is_file():
        return folder
    if folder.exists():
        raise RuntimeError(f"{folder} is half-built (no loaded.json): remove it and run again")
    config = AppConfig.from_args({**APP_ARGS, "data_dir": str(folder)})
    if n > tiled.TILED_FROM:
        loaded = tiled.build(n, folder, config, corpus_path(n), CORPUS, log)
        (folder / "loaded.json").write_text(json.dumps(loaded, indent=2))
        log(f"  {n:,}: {loaded}")
        return folder
    docs = [Document(**r) for r in read_rows(n)]
    chunks, vectors = chunk_documents(docs, config.chunking)
    del docs
    found = extractions(chunks, log)
    from deployments.graph.extraction import spacy as spacy_extractor

    loaded = {
        "extractor": f"spacy VERSION {spacy_extractor.VERSION}",
        "vector": asyncio.run(_vector_load(config, chunks, vectors, PackedVectors)),
        "graph": _graph_load(config, chunks, found, log),
    }
    (folder / "loaded.json").write_text(json.dumps(loaded, indent=2))
    log(f"  {n:,}: {loaded}")
    return folder


async def _vector_load(config, chunks: list, vectors: dict, packed) -> dict:
    from benchmarks.inprocess import VectorsBrought
    from deployments.vector.service import VectorService

    vector = VectorService(config.vector, VectorsBrought(len(next(iter(vectors.values())))))
    started = time.perf_counter()
    try:
        for i in range(0, len(chunks), VECTOR_BATCH):
            part = chunks[i : i + VECTOR_BATCH]
            await vector.upsert(COLLECTION, part, packed.pack({c.chunk_id: vectors[c.chunk_id] for c in part}))
    finally:
        await vector.aclose()
    seconds = time.perf_counter() - started
    return {"chunks": len(chunks), "seconds": round(seconds, 1), "chunks_per_s": round(len(chunks) / seconds, 1)}


def _graph_load(config, chunks: list, found: list, log) -> dict:
    """GraphService.upsert of the chunks with their extractions; the write rate per tenth of the load shows
    whether a write costs more as the collection grows."""
    from benchmarks.inprocess import with_graph_service

    async def load(graph) -> dict:
        rates, started = [], time.perf_counter()
        tenth, mark, mark_t = max(GRAPH_BATCH, len(chunks) // 10), 0, started
        for i in range(0, len(chunks), GRAPH_BATCH):
            part = chunks[i : i + GRAPH_BATCH]
            await graph.upsert(COLLECTION, part, {c.chunk_id: e for c, e in zip(part, found[i : i + GRAPH_BATCH])})
            done = i + len(part)
            if done - mark >= tenth or done == len(chunks):
                now = time.perf_counter()
                rates.append({"at_chunks": done, "chunks_per_s": round((done - mark) / (now - mark_t), 1)})
                log(f"  graph store: {done:,}/{len(chunks):,}, {rates[-1]['chunks_per_s']}/s")
                mark, mark_t = done, now
        counts = await graph.counts(COLLECTION)
        seconds = time.perf_counter() - started
        return {
            **counts,
            "seconds": round(seconds, 1),
            "chunks_per_s": round(len(chunks) / seconds, 1),
            "rate_by_tenth": rates,
        }

    return with_graph_service(config.graph, load)
