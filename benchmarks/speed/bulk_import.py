"""Bulk import of rows that bring their own vectors (graphrag-ingest rows.parquet), on the cached scale corpus
`benchmarks/.cache/scale/10000.parquet` (benchmarks/speed/scale_corpus.py: rows {id, text, metadata, vector}, each
one chunk under max_words=512). In one process, no Ray, each part on a fresh data folder:

    python -m benchmarks.speed.bulk_import                  # -> results/bulk_import.json
    python -m benchmarks.speed.bulk_import --rows 2000      # a prefix of the corpus
    python -m benchmarks.speed.bulk_import --extractor patterns --out bulk_import-patterns.json
    python -m benchmarks.speed.bulk_import --rows 6000 --into benchmarks/.cache/scale-data/1000000 --out bulk_import-1M.json

`--into DIR`: each part writes into the existing collection `--collection` (default `scale`) of the data folder DIR
(the scale benchmark's 1M one) instead of a fresh folder, the rows under new ids (`bulk-<id>`), and deletes them
again afterwards (Pipeline.delete_document), so the collection keeps its size.

- `read_rows_per_s`: the importer's own side: graphrag-ingest reading and checking the Parquet rows (cli/rows.py).
- `extractor_chunks_per_s`: the app's offline extractor (graph.extraction.offline: spaCy, the default, or `patterns`) on the
  rows' texts, in-process: the work each chunk needs for the graph, without a store.
- `bulk_vector_chunks_per_s`: the vector store alone: VectorService.upsert of the rows with their vectors (BM25
  encoding and the qdrant-edge writes, each flushed; nothing embedded), 1,024 chunks per write, into a collection
  already open (as the server holds it; opening the 1M shard is timed apart as `open_s`);
  `bulk_vector_chunks_per_s_256`: the same in writes of 256 (one API request's worth).
- `bulk_import_chunks_per_s`: Pipeline.ingest (the /v1/ingest path: chunking, the dimension check, the intent log,
  both stores written concurrently, the graph extracted) of the rows as documents with vectors, batches of 256.
  `graph_write_s` and `vector_write_s` sum the stages' own timings over the batches: where the time goes.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from benchmarks import use_local_env

use_local_env(fast_path=False)

from benchmarks import harness  # noqa: E402
from benchmarks.inprocess import VectorsBrought, in_process_pipeline  # noqa: E402
from benchmarks.speed.scale_corpus import CACHE, CHUNKING  # noqa: E402
from deployments.cli.rows import read_parquet_rows  # noqa: E402
from deployments.config import AppConfig  # noqa: E402
from deployments.graph.extraction.llm import make_extractor  # noqa: E402
from deployments.ingress.chunking import chunk_documents  # noqa: E402
from deployments.ingress.intents import IntentLog  # noqa: E402
from deployments.models import Document, IngestRequest, PackedVectors  # noqa: E402
from deployments.vector.service import VectorService  # noqa: E402

BATCH = 256  # documents per request: the API's MAX_DOCUMENTS_PER_INGEST
VECTOR_BATCH = 1024  # chunks per vector-stage write when measured alone (each write ends with a flush)
COLLECTION = "bulk"
INTO: dict = {"dir": None, "collection": COLLECTION}  # --into: an existing collection instead of a fresh folder


EXTRACTOR = {"offline": "spacy"}  # the app's default; --extractor patterns for the capitalization patterns


def _args(data_dir: str) -> dict:
    return {"data_dir": data_dir, "chunking": CHUNKING.model_dump(), "graph": {"extraction": EXTRACTOR}}


def read_rows(path: Path, limit: int) -> tuple[list[dict], float]:
    start, rows = time.perf_counter(), []
    for doc in read_parquet_rows(path):
        rows.append(doc)
        if len(rows) == limit:
            break
    return rows, time.perf_counter() - start


def extractor_alone(docs: list[Document]) -> dict:
    config = AppConfig.from_args(_args("/tmp/graphrag-unused"))
    chunks, _ = chunk_documents(docs, config.chunking)
    extract = make_extractor(config.graph.extraction)
    start = time.perf_counter()
    many = getattr(extract, "extract_many", None)
    extractions = many(chunks) if many is not None else [extract(c) for c in chunks]
    seconds = time.perf_counter() - start
    entities = sum(len(e.entities) for e in extractions)
    return {
        "extractor": config.graph.extraction.offline,
        "chunks": len(chunks),
        "entities": entities,
        **_rate(len(chunks), seconds),
    }


async def vector_alone(docs: list[Document], data_dir: str, batch: int) -> dict:
    """VectorService.upsert of the rows (chunked before the clock starts), `batch` chunks per call."""
    config = AppConfig.from_args(_args(data_dir))
    chunks, brought = chunk_documents(docs, config.chunking)
    parts = [
        (chunks[i : i + batch], PackedVectors.pack({c.chunk_id: brought[c.chunk_id] for c in chunks[i : i + batch]}))
        for i in range(0, len(chunks), batch)
    ]
    vector = VectorService(config.vector, VectorsBrought(len(docs[0].vector or [])))
    collection = INTO["collection"]
    try:
        opened = time.perf_counter()
        if await vector.store.exists(collection):
            await vector.count(collection)  # opens the shard before the clock, as a server holds it open
        open_s = time.perf_counter() - opened
        start, written = time.perf_counter(), 0
        for part, given in parts:
            written += await vector.upsert(collection, part, given)
        seconds = time.perf_counter() - start
        if INTO["dir"]:
            await vector.delete_documents(collection, [d.id for d in docs])
    finally:
        await vector.aclose()
    return {"chunks": written, "batch": batch, **_rate(written, seconds), "open_s": round(open_s, 2)}


async def whole_import(docs: list[Document], data_dir: str) -> dict:
    async with in_process_pipeline(_args(data_dir)) as pipeline:
        pipeline.intents = IntentLog(Path(data_dir) / "intents")  # as the ingress keeps it
        start, chunks, entities = time.perf_counter(), 0, 0
        stage_ms = {"vector": 0.0, "graph": 0.0}
        collection = INTO["collection"]
        for i in range(0, len(docs), BATCH):
            resp = await pipeline.ingest(IngestRequest(collection=collection, documents=docs[i : i + BATCH]))
            chunks, entities = chunks + resp.chunks, entities + resp.entities
            for stage in stage_ms:
                stage_ms[stage] += resp.timings[stage].duration_ms
            print(f"  {chunks} chunks, {chunks / (time.perf_counter() - start):.1f}/s", flush=True)
        seconds = time.perf_counter() - start
        counts = await pipeline.stats(collection)
        consistent = (await pipeline.verify(collection)).consistent
        if INTO["dir"]:
            await _delete_all(pipeline, collection, [d.id for d in docs])
    return {
        "chunks": chunks,
        **_rate(chunks, seconds),
        "vector_write_s": round(stage_ms["vector"] / 1000, 1),
        "graph_write_s": round(stage_ms["graph"] / 1000, 1),
        "stored": counts.model_dump(exclude={"collection"}),
        "consistent": consistent,
    }


async def _delete_all(pipeline, collection: str, doc_ids: list[str]) -> None:
    """The imported documents deleted again by the API's path, one at a time: eight at once into the 1M collection
    made ArcadeDB's deletes of shared hub entities deadlock past the pipeline's retries (503, 2026-12-05 16:37)."""
    for doc_id in doc_ids:
        await pipeline.delete_document(collection, doc_id)


def _rate(n: int, seconds: float) -> dict:
    return {"seconds": round(seconds, 2), "chunks_per_s": round(n / seconds, 1)}


@contextlib.contextmanager
def _data_dir() -> Iterator[str]:
    """The data folder a part writes into: --into's, else a fresh one removed afterwards."""
    if INTO["dir"]:
        yield INTO["dir"]
        return
    with tempfile.TemporaryDirectory(prefix="graphrag-bulk-") as folder:
        yield folder


def main() -> None:
    ap = harness.cli(__doc__)
    ap.add_argument("--corpus", type=Path, default=CACHE / "10000.parquet")
    ap.add_argument("--rows", type=int, default=10_000, help="a prefix of the corpus")
    ap.add_argument("--skip-import", action="store_true", help="only the reader, the extractor and the vector store")
    ap.add_argument("--extractor", choices=("spacy", "patterns"), default="spacy", help="graph.extraction.offline")
    ap.add_argument("--out", default="bulk_import.json", help="file name under benchmarks/results/")
    ap.add_argument("--into", type=Path, help="a data folder whose collection the parts write into (see above)")
    ap.add_argument("--collection", default="scale", help="with --into: the collection")
    args = ap.parse_args()
    EXTRACTOR["offline"] = args.extractor
    if args.into:
        INTO.update(dir=str(args.into), collection=args.collection)
    load_before = os.getloadavg()
    rows, read_s = read_rows(args.corpus, args.rows)
    docs = [Document(**{**r, "id": f"bulk-{r['id']}" if args.into else r["id"]}) for r in rows]
    print(f"read {len(rows)} rows in {read_s:.1f}s", flush=True)
    extractor = extractor_alone(docs)
    print(f"extractor alone: {extractor}", flush=True)
    vector = {}
    for batch in (BATCH, VECTOR_BATCH):
        with _data_dir() as folder:
            vector[batch] = asyncio.run(vector_alone(docs, folder, batch))
        print(f"vector store alone: {vector[batch]}", flush=True)
    whole = None
    if not args.skip_import:
        with _data_dir() as folder:
            whole = asyncio.run(whole_import(docs, folder))
        print(f"bulk import: {whole}", flush=True)
    result = {
        "corpus": str(
            args.corpus.relative_to(harness.ROOT) if args.corpus.is_relative_to(harness.ROOT) else args.corpus
        ),
        "rows": len(rows),
        "into": {"data_dir": INTO["dir"], "collection": INTO["collection"]} if INTO["dir"] else "a fresh data folder",
        "batch_documents": BATCH,
        "read_rows_per_s": round(len(rows) / read_s, 1),
        "extractor_chunks_per_s": extractor["chunks_per_s"],
        "bulk_vector_chunks_per_s": vector[VECTOR_BATCH]["chunks_per_s"],
        "bulk_vector_chunks_per_s_256": vector[BATCH]["chunks_per_s"],
        "bulk_import_chunks_per_s": whole["chunks_per_s"] if whole else None,
        "import_vs_extractor": round(whole["chunks_per_s"] / extractor["chunks_per_s"], 3) if whole else None,
        "targets": {"import_vs_extractor": 0.8, "bulk_vector_chunks_per_s": 2000},
        "extractor": extractor,
        "vector_alone": list(vector.values()),
        "bulk_import": whole,
        "load_average_before": [round(x, 2) for x in load_before],
        "command": harness.command(),
        "date": harness.utc_now(),
    }
    print(json.dumps(result, indent=2))
    harness.write_json(args.out, result)


if __name__ == "__main__":
    main()
