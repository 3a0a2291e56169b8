"""Collections past 100k rows (the 1M one): written slice by slice, and their graph's extractions tiled.

spaCy reads ~40 chunks/s here: the 900k rows past 100k would take ~6 h. So row i past TILED_FROM gets the
extraction of row i mod TILED_FROM (copy k = i // TILED_FROM), each entity key and name made that copy's own
(`key~k`) except the hubs' (the 1 % most frequent keys: common words and names every copy shares, whose passage
lists grow tenfold as in a real collection) — the in-process `graph_scale` benchmark's tiling, written to the store.
Texts and vectors are the scale corpus's own rows; only the graph of those rows is borrowed. Everything else is
data.build's path: VectorService.upsert with the rows' vectors, GraphService.upsert with the extractions, then
the index a Graph replica would build from the store, saved as its snapshot."""

from __future__ import annotations

import asyncio
import pickle
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

TILED_FROM = 100_000
SLICE = 50_000  # rows read, chunked and written at a time (1M rows' vectors as Python lists would not fit)


def row_slices(path: Path, n: int) -> Iterator[list[dict]]:
    """The first n rows of a corpus file as API documents, SLICE at a time."""
    import json

    import pyarrow.parquet as pq

    done = 0
    for batch in pq.ParquetFile(path).iter_batches(batch_size=SLICE):
        rows = batch.to_pylist()[: n - done]
        yield [{**r, "metadata": json.loads(r["metadata"])} for r in rows]
        done += len(rows)
        if done >= n:
            return


def base_extractions(cache: Path) -> tuple[list, str]:
    """The cached spaCy extractions of the first TILED_FROM rows (the 100k collection's) and their file's name."""
    found = sorted(cache.glob(f"extract-spacy-v*-{TILED_FROM}.pkl"))
    if not found:
        raise SystemExit(f"no cached extractions of {TILED_FROM} rows: build that size first")
    return pickle.loads(found[-1].read_bytes()), found[-1].name


def hub_keys(base: list) -> set[str]:
    df = Counter(e.key for ex in base for e in ex.entities)
    return {k for k, _ in df.most_common(len(df) // 100)}


def tiled(base: list, hubs: set[str], row: int, chunk_id: str):
    """Row `row`'s extraction: its own below TILED_FROM, else its copy's of row mod TILED_FROM."""
    ex = base[row % TILED_FROM]
    copy = row // TILED_FROM
    if copy == 0:
        return ex

    def key(k: str) -> str:
        return k if k in hubs else f"{k}~{copy}"

    entities = [
        e.model_copy(
            update={
                "key": key(e.key),
                "name": e.name if e.key in hubs else f"{e.name}~{copy}",
                "aliases": [key(a) for a in e.aliases],
            }
        )
        for e in ex.entities
    ]
    relations = [r.model_copy(update={"source": key(r.source), "target": key(r.target)}) for r in ex.relations]
    return ex.model_copy(update={"chunk_id": chunk_id, "entities": entities, "relations": relations})


def build(n: int, folder: Path, config, corpus: Path, cache: Path, log) -> dict:
    """Both stores of `folder` with the first n rows, and the graph index's snapshot; what each took."""
    base, source = base_extractions(cache)
    hubs = hub_keys(base)
    vector = asyncio.run(_vector_load(n, config, corpus, log))
    graph = _graph_load(n, folder, config, corpus, base, hubs, log)
    return {"extractor": f"spacy, {source} tiled past {TILED_FROM:,} rows", "vector": vector, "graph": graph}


def _chunks(rows: list[dict], config):
    from deployments.ingress.chunking import chunk_documents
    from deployments.models import Document

    return chunk_documents([Document(**r) for r in rows], config.chunking)


async def _vector_load(n: int, config, corpus: Path, log) -> dict:
    from benchmarks.inprocess import VectorsBrought
    from benchmarks.scale.data import COLLECTION, VECTOR_BATCH
    from deployments.models import PackedVectors
    from deployments.vector.service import VectorService

    vector = VectorService(config.vector, VectorsBrought(384))  # type: ignore[arg-type]  # MiniLM's, the corpus's
    started, done = time.perf_counter(), 0
    try:
        for rows in row_slices(corpus, n):
            chunks, vectors = _chunks(rows, config)
            for i in range(0, len(chunks), VECTOR_BATCH):
                part = chunks[i : i + VECTOR_BATCH]
                await vector.upsert(
                    COLLECTION, part, PackedVectors.pack({c.chunk_id: vectors[c.chunk_id] for c in part})
                )
            done += len(chunks)
            log(f"  vector store: {done:,}/{n:,} ({time.perf_counter() - started:.0f} s)")
    finally:
        await vector.aclose()
    seconds = time.perf_counter() - started
    return {"chunks": done, "seconds": round(seconds, 1), "chunks_per_s": round(done / seconds, 1)}


def _graph_load(n: int, folder: Path, config, corpus: Path, base: list, hubs: set[str], log) -> dict:
    from benchmarks.inprocess import with_graph_service
    from benchmarks.scale.data import COLLECTION, GRAPH_BATCH
    from deployments.graph.index import snapshot

    async def load(graph) -> dict:
        rates, started, row = [], time.perf_counter(), 0
        for rows in row_slices(corpus, n):
            chunks, _ = _chunks(rows, config)
            t0 = time.perf_counter()
            for i in range(0, len(chunks), GRAPH_BATCH):
                part = chunks[i : i + GRAPH_BATCH]
                found = {c.chunk_id: tiled(base, hubs, row + i + j, c.chunk_id) for j, c in enumerate(part)}
                await graph.upsert(COLLECTION, part, found)
            row += len(chunks)
            rates.append({"at_chunks": row, "chunks_per_s": round(len(chunks) / (time.perf_counter() - t0), 1)})
            log(f"  graph store: {row:,}/{n:,}, {rates[-1]['chunks_per_s']}/s")
        seconds = time.perf_counter() - started
        counts = await graph.counts(COLLECTION)
        built = time.perf_counter()
        await graph.index_stats(COLLECTION)  # the index a replica builds from the store, then its snapshot
        index = graph.index_of(COLLECTION)
        (folder / "graph-index").mkdir(parents=True, exist_ok=True)
        size = snapshot.save(index, folder / "graph-index" / f"{COLLECTION}.npz")
        return {
            **counts,
            "seconds": round(seconds, 1),
            "chunks_per_s": round(row / seconds, 1),
            "rate_by_slice": rates,
            "index_from_store_s": round(time.perf_counter() - built, 1),
            "snapshot_mb": round(size / 2**20, 1),
        }

    graph_config = config.graph.model_copy(
        update={"index": config.graph.index.model_copy(update={"snapshot_dir": "", "build_timeout_s": 7200.0})}
    )
    return with_graph_service(graph_config, load)
