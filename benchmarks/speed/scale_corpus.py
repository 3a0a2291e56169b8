"""Scale corpora for the scale benchmark: 10k, 100k and 1M chunks from the real SciFact and HotpotQA-100 passages
plus distractor passages made from them, cached under benchmarks/.cache/scale/ as Parquet rows
`{id, text, metadata, vector}` (the bulk importer's format). Each row is one chunk under `CHUNKING` (SciFact's
setting, max 512 words), so a row imports as a one-chunk document.

    python -m benchmarks.speed.scale_corpus --sizes 10000 100000 1000000

How a distractor is made (deterministic in its number): it takes a real passage of one data set (its parent), keeps
about half of the parent's sentences in order, fills the other places with sentences of other passages of the same
data set, and swaps every name it writes (capitalised spans) for a name drawn from the corpus by frequency; its
title is the parent's with its names swapped too. Vocabulary and the frequency of names stay those of the real text.

Vectors: every real chunk, and the first distractors up to 10,000 rows, are embedded with the app's model
(MiniLM, unit length). Past 10,000 rows a distractor's vector is its parent's plus Gaussian noise, normalised
(cosine ~0.9 to the parent: a hard negative next to a real document), since embedding 1M passages takes hours here.
Sizes are prefixes of one stream: the 100k corpus holds the 10k one.
"""

from __future__ import annotations

import argparse
import gzip
import json
import re
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from benchmarks.harness import CACHE as BENCH_CACHE
from benchmarks.harness import DATASETS
from deployments.config import ChunkingConfig
from deployments.ingress.chunking import chunk_document
from deployments.models import Document

CACHE = BENCH_CACHE / "scale"
EMBEDDED_ROWS = 10_000  # rows up to here carry the model's own vectors
NOISE = 0.48  # |noise| / |parent|: cosine 1 / sqrt(1 + 0.48²) ≈ 0.90
SEED = 20261205
_NAME = re.compile(r"(?<![.!?]\s)(?<!^)\b[A-Z][\w'’\-]+(?:\s+(?:of|de|von|van|the\s)?\s*[A-Z][\w'’\-]+)*")
_SENTENCE = re.compile(r"(?<=[.!?])\s+")


@dataclass
class Passage:
    dataset: str
    doc_id: str
    title: str
    sentences: list[str]


def real_passages() -> list[Passage]:
    """HotpotQA-100's passages (title, sentences) and SciFact's abstracts, in a fixed order."""
    out = []
    corpus = json.loads((DATASETS / "hotpotqa-100" / "hotpotqa_train_corpus.json").read_text())
    for title, sentences in corpus.items():
        out.append(Passage("hotpotqa", title, title, [s.strip() for s in sentences if s.strip()]))
    with gzip.open(DATASETS / "scifact" / "corpus.jsonl.gz", "rt") as f:
        for line in f:
            row = json.loads(line)
            sentences = [s for s in _SENTENCE.split(row["text"].strip()) if s]
            out.append(Passage("scifact", str(row["_id"]), row.get("title", "").strip(), sentences))
    return out


def passage_text(title: str, sentences: list[str]) -> str:
    body = " ".join(sentences)
    return f"{title}\n\n{body}" if title else body


CHUNKING = ChunkingConfig(
    max_words=512, overlap_words=64
)  # as benchmarks/scifact.py ingests SciFact; the scale app too


def real_rows(passages: list[Passage]) -> list[dict]:
    """The real passages chunked as the scale app chunks them (`CHUNKING`); row ids are `<doc>` or `<doc>~<n>`."""
    cfg = CHUNKING
    rows = []
    for p in passages:
        chunks = chunk_document(Document(id=p.doc_id, text=passage_text(p.title, p.sentences), metadata={}), cfg)
        for c in chunks:
            row_id = p.doc_id if len(chunks) == 1 else f"{p.doc_id}~{c.index}"
            rows.append(
                {"id": row_id, "text": c.text, "metadata": {"dataset": p.dataset, "source_doc": p.doc_id, "real": True}}
            )
    return rows


class DistractorMaker:
    """Distractor number i from the real passages, the same for the same i on every run."""

    def __init__(self, passages: list[Passage], max_words: int = 140):
        self.passages = passages
        self.by_dataset: dict[str, list[int]] = {}
        for i, p in enumerate(passages):
            self.by_dataset.setdefault(p.dataset, []).append(i)
        names: Counter[str] = Counter()
        for p in passages:
            for s in p.sentences:
                names.update(m.group(0) for m in _NAME.finditer(s))
        self.names = list(names)
        weights = np.cumsum(np.asarray([names[n] for n in self.names], dtype=np.float64))
        self.name_cdf = weights / weights[-1]  # drawn by frequency: one searchsorted per name
        self.max_words = max_words

    def make(self, i: int) -> dict:
        rng = np.random.default_rng([SEED, i])
        parent_i = int(rng.integers(len(self.passages)))
        parent = self.passages[parent_i]
        pool = self.by_dataset[parent.dataset]
        sentences = []
        for s in parent.sentences:
            if rng.random() < 0.5:
                sentences.append(s)
            else:
                other = self.passages[pool[int(rng.integers(len(pool)))]]
                sentences.append(other.sentences[int(rng.integers(len(other.sentences)))] if other.sentences else s)
        swap: dict[str, str] = {}

        def swapped(text: str) -> str:
            def name(m: re.Match) -> str:
                old = m.group(0)
                if old not in swap:
                    swap[old] = self.names[min(int(np.searchsorted(self.name_cdf, rng.random())), len(self.names) - 1)]
                return swap[old]

            return _NAME.sub(name, text)

        title = swapped(" " + parent.title).strip() if parent.title else ""
        body, words = [], len(title.split())
        for s in sentences:
            n = len(s.split())
            if body and words + n > self.max_words:
                break
            body.append(swapped(s))
            words += n
        text = passage_text(title, body)
        meta = {"dataset": parent.dataset, "parent": parent.doc_id, "real": False}
        return {
            "id": f"x{i:07d}",
            "text": " ".join(text.split()[: self.max_words + 20]) if words > self.max_words + 20 else text,
            "metadata": meta,
        }


def embed(texts: list[str]) -> np.ndarray:
    """The app's embedder (its default backend, as the Embedder replica runs it), unit-length float32."""
    import asyncio

    from deployments.config import EmbedderConfig
    from deployments.embedder.backends import make_embedder

    async def run() -> np.ndarray:
        backend = make_embedder(EmbedderConfig(cache_dir=str(CACHE.parent / "models")))
        try:
            parts = [
                np.asarray(await backend.embed(texts[s : s + 256]), dtype=np.float32) for s in range(0, len(texts), 256)
            ]
        finally:
            await backend.aclose()
        return np.concatenate(parts) if parts else np.zeros((0, 384), dtype=np.float32)

    vecs = asyncio.run(run())
    return vecs / np.maximum(np.linalg.norm(vecs, axis=1, keepdims=True), 1e-12)


def perturbed(parent: np.ndarray, i: int) -> np.ndarray:
    g = np.random.default_rng([SEED, i, 1]).standard_normal(parent.shape[0]).astype(np.float32)
    v = parent + NOISE * g / np.linalg.norm(g)
    return v / np.linalg.norm(v)


def _cached_vectors(name: str, texts: list[str]) -> np.ndarray:
    path = CACHE / f"{name}-{len(texts)}.npy"
    if path.exists():
        return np.load(path)
    vecs = embed(texts)
    CACHE.mkdir(parents=True, exist_ok=True)
    np.save(path, vecs)
    return vecs


def build(size: int, log=print) -> Path:
    """Writes (or finds) benchmarks/.cache/scale/<size>.parquet and returns its path."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    out = CACHE / f"{size}.parquet"
    if out.exists():
        return out
    started = time.perf_counter()
    passages = real_passages()
    real = real_rows(passages)
    if size < len(real):
        raise ValueError(f"size {size} is below the {len(real)} real chunks")
    maker = DistractorMaker(passages)
    real_vecs = _cached_vectors("real", [r["text"] for r in real])
    # A parent's vector: the mean of its chunks' vectors, normalised.
    parent_vec: dict[str, np.ndarray] = {}
    for r, v in zip(real, real_vecs):
        parent_vec[r["metadata"]["source_doc"]] = parent_vec.get(r["metadata"]["source_doc"], 0) + v
    n_embedded = max(0, min(size, EMBEDDED_ROWS) - len(real))
    embedded = (
        _cached_vectors("distractors", [maker.make(i)["text"] for i in range(n_embedded)]) if n_embedded else None
    )
    dim = real_vecs.shape[1]
    vector_type = pa.list_(pa.float32(), dim)
    schema = pa.schema([("id", pa.string()), ("text", pa.string()), ("metadata", pa.string()), ("vector", vector_type)])

    def table(rows: list[dict], vecs: np.ndarray) -> pa.Table:
        flat = pa.array(vecs.astype(np.float32).reshape(-1), type=pa.float32())
        return pa.table(
            [
                pa.array([r["id"] for r in rows]),
                pa.array([r["text"] for r in rows]),
                pa.array([json.dumps(r["metadata"]) for r in rows]),
                pa.FixedSizeListArray.from_arrays(flat, dim),
            ],
            schema=schema,
        )

    CACHE.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp")
    with pq.ParquetWriter(tmp, schema) as writer:
        writer.write_table(table(real, real_vecs))
        batch = 50_000
        for start in range(0, size - len(real), batch):
            ids = range(start, min(start + batch, size - len(real)))
            rows = [maker.make(i) for i in ids]
            vecs = np.empty((len(rows), dim), dtype=np.float32)
            for j, (i, r) in enumerate(zip(ids, rows)):
                if embedded is not None and i < len(embedded):
                    vecs[j] = embedded[i]
                else:
                    p = parent_vec[r["metadata"]["parent"]]
                    vecs[j] = perturbed(p / np.linalg.norm(p), i)
            writer.write_table(table(rows, vecs))
            log(f"  {size}: {len(real) + ids.stop:,} rows ({time.perf_counter() - started:.0f} s)")
    tmp.rename(out)
    log(f"wrote {out} ({out.stat().st_size / 1e6:.0f} MB) in {time.perf_counter() - started:.0f} s")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    for size in parser.parse_args().sizes:
        build(size)


if __name__ == "__main__":
    main()
