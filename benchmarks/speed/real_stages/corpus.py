"""SciFact and HotpotQA-100 into the stores: bulk loads in this process, or through /v1/ingest."""

from __future__ import annotations

import asyncio
import json
import time

import httpx

from benchmarks.harness import DATASETS, ROOT
from benchmarks.speed.real_stages import APP_ARGS


def scifact_queries() -> list[str]:
    return [json.loads(line)["text"] for line in open(DATASETS / "scifact" / "queries.jsonl") if line.strip()]


def bulk_load_scifact(data_dir: str, max_docs: int | None = None) -> dict:
    """SciFact into the vector store, in this process, before any server opens it: chunked by the app's chunker
    and config, embedded by the configured backend, written by VectorService.upsert (the code path of
    /v1/ingest's vector half). The graph half is bulk_load_scifact_graph."""
    from deployments.cli.ingest import read_beir_corpus
    from deployments.config import AppConfig
    from deployments.embedder.backends import make_embedder
    from deployments.ingress.chunking import chunk_document
    from deployments.models import Document
    from deployments.vector.service import VectorService

    config = AppConfig.from_args({**APP_ARGS, "data_dir": data_dir})
    rows = list(read_beir_corpus(DATASETS / "scifact" / "corpus.jsonl.gz"))[:max_docs]
    chunks = [c for row in rows for c in chunk_document(Document(**row), config.chunking)]

    async def load() -> dict:
        import numpy as np

        embedder = make_embedder(config.embedder)
        start = time.perf_counter()
        # The vectors are kept beside benchmarks/speed/embed_backends.py's cache (same chunks, same order): that
        # quality check then reuses them instead of embedding the corpus a second time.
        cached = ROOT / "benchmarks" / ".cache" / f"scifact-{config.embedder.backend}-{len(chunks)}.npy"
        if cached.is_file():
            vectors = np.load(cached)
        else:
            parts = []
            for i in range(0, len(chunks), 256):
                parts.append(np.asarray(await embedder.embed([c.text for c in chunks[i : i + 256]]), dtype=np.float32))
                print(f"  scifact: {min(i + 256, len(chunks))}/{len(chunks)} chunks embedded", flush=True)
            vectors = np.concatenate(parts)
            cached.parent.mkdir(parents=True, exist_ok=True)
            np.save(cached, vectors)
        by_text = {c.text: v.tolist() for c, v in zip(chunks, vectors)}

        class Precomputed:
            async def embed(self, texts: list[str]) -> list[list[float]]:
                return [by_text[t] for t in texts]

            async def dimension(self) -> int:
                return await embedder.dimension()

        vector = VectorService(config.vector, Precomputed())
        try:
            written = 0
            for i in range(0, len(chunks), 1024):
                written += await vector.upsert("scifact", chunks[i : i + 1024])
            print(f"  scifact: {written} chunks written", flush=True)
        finally:
            await vector.aclose()
            await embedder.aclose()
        return {
            "documents": len({c.doc_id for c in chunks}),
            "chunks": written,
            "seconds": round(time.perf_counter() - start, 1),
            "how": "vector store only, in-process bulk load (VectorService.upsert)",
            "embedder": embedder.name,
        }

    return asyncio.run(load())


def bulk_load_scifact_graph(data_dir: str, max_docs: int | None = None) -> dict:
    """SciFact into the graph store, in this process, before any server opens it: the app's chunker, offline
    extractor and GraphService.upsert (the code path of /v1/ingest's graph half), in batches of 256 chunks."""
    from benchmarks.inprocess import with_graph_service
    from deployments.cli.ingest import read_beir_corpus
    from deployments.config import AppConfig
    from deployments.ingress.chunking import chunk_document
    from deployments.models import Document

    config = AppConfig.from_args({**APP_ARGS, "data_dir": data_dir})
    rows = list(read_beir_corpus(DATASETS / "scifact" / "corpus.jsonl.gz"))[:max_docs]
    chunks = [c for row in rows for c in chunk_document(Document(**row), config.chunking)]

    async def load(graph) -> dict:
        start = time.perf_counter()
        for i in range(0, len(chunks), 256):
            await graph.upsert("scifact", chunks[i : i + 256])
            print(f"  scifact graph: {min(i + 256, len(chunks))}/{len(chunks)} chunks", flush=True)
        counts = await graph.counts("scifact")
        seconds = time.perf_counter() - start
        return {
            **counts,
            "seconds": round(seconds, 1),
            "chunks_per_s": round(len(chunks) / seconds, 1),
            "how": "graph store, in-process bulk load (GraphService.upsert, offline extractor)",
        }

    return with_graph_service(config.graph, load)


def ingest_all(url: str, names: list[str]) -> dict:
    from benchmarks.quality.hotpotqa_recall import load as hotpot_load
    from deployments.cli.ingest import read_beir_corpus

    hotpot_docs, _ = hotpot_load(DATASETS / "hotpotqa-100")
    out = {}
    with httpx.Client(base_url=url, timeout=600) as client:
        sources = {
            "hotpotqa": lambda: hotpot_docs,
            "scifact": lambda: list(read_beir_corpus(DATASETS / "scifact" / "corpus.jsonl.gz")),
        }
        for collection in names:
            docs = sources[collection]()
            start, chunks = time.perf_counter(), 0
            for i in range(0, len(docs), 64):
                resp = client.post("/v1/ingest", json={"collection": collection, "documents": docs[i : i + 64]})
                chunks += resp.raise_for_status().json()["chunks"]
            out[collection] = {
                "documents": len(docs),
                "chunks": chunks,
                "seconds": round(time.perf_counter() - start, 1),
            }
            print(f"  ingested {collection}: {out[collection]}", flush=True)
    return out
