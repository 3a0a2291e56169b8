"""The offline retrieval corpus of benchmarks/quality/graph_eval.py and graph_tune.py: HotpotQA-100 or SciFact
chunked, extracted, embedded (MiniLM, cached), BM25-weighted and indexed as the server does it, in one process."""

from __future__ import annotations

import hashlib
import json
import math
import time
from collections import Counter

import numpy as np

from benchmarks.harness import CACHE, DATASETS
from deployments.config import ChunkingConfig
from deployments.graph.extraction.offline import extract
from deployments.graph.index.collection import CollectionIndex, IndexedChunk
from deployments.ingress.chunking import chunk_document
from deployments.models import Document
from deployments.vector.lexical import LexicalEncoder

DATASET = DATASETS / "hotpotqa-100"
SCIFACT = DATASETS / "scifact"
SPLITS = {"dev": range(0, 50), "test": range(50, 100), "all": range(0, 100)}


def passage_text(title: str, sentences: list[str], layout: str) -> str:
    body = "".join(sentences).strip()
    if layout == "blank-line":  # as benchmarks/quality/hotpotqa_recall.py ingests it
        return f"{title}\n\n{body}"
    if layout == "no-title":
        return body
    return f"{title}. {body}"  # "inline": the title runs into the text


def embed(texts: list[str], tag: str) -> np.ndarray:
    """MiniLM vectors (unit length) as the embedded embedder computes them, cached by content."""
    digest = hashlib.sha256("\x00".join(texts).encode()).hexdigest()[:16]
    path = CACHE / f"{tag}-{digest}.npy"
    if path.exists():
        return np.load(path)
    from sentence_transformers import SentenceTransformer

    from deployments.embedder.backends import resolve_model_path

    model = SentenceTransformer(resolve_model_path("all-MiniLM-L6-v2"), device="cpu")
    vecs = model.encode(texts, batch_size=64, normalize_embeddings=True, convert_to_numpy=True).astype(np.float32)
    CACHE.mkdir(parents=True, exist_ok=True)
    np.save(path, vecs)
    return vecs


class Bm25:
    """Qdrant's BM25 (the server's tokenizer and document weights, IDF over the whole collection)."""

    def __init__(self, texts: list[str]):
        enc = LexicalEncoder()
        self.enc = enc
        docs = [enc.document(t) for t in texts]
        df: Counter[int] = Counter(i for d in docs for i in set(d.indices))
        n = len(texts)
        self.idf = {t: math.log(1 + (n - c + 0.5) / (c + 0.5)) for t, c in df.items()}
        self.postings: dict[int, list[tuple[int, float]]] = {}
        for row, d in enumerate(docs):
            for i, v in zip(d.indices, d.values):
                self.postings.setdefault(i, []).append((row, v))
        self.n = n
        self._seen: dict[str, np.ndarray] = {}

    def scores(self, query: str) -> np.ndarray:
        if query in self._seen:
            return self._seen[query]
        out = np.zeros(self.n, dtype=np.float32)
        q = self.enc.query(query)
        for i, v in zip(q.indices, q.values):
            for row, w in self.postings.get(i, []):
                out[row] += v * w * self.idf[i]
        self._seen[query] = out
        return out


def top(scores: np.ndarray, n: int) -> list[int]:
    idx = np.argpartition(-scores, min(n, len(scores) - 1))[:n]
    return [int(i) for i in idx[np.argsort(-scores[idx], kind="stable")] if scores[i] > 0 or True]


def scifact_docs() -> tuple[list[Document], list[dict]]:
    """SciFact as benchmarks/quality/scifact.py ingests it (title, blank line, abstract); queries of both splits with qrels."""
    import gzip

    from benchmarks.quality.scifact import load_queries

    docs = []
    with gzip.open(SCIFACT / "corpus.jsonl.gz", "rt") as f:
        for line in f:
            row = json.loads(line)
            title, text = row.get("title", "").strip(), row["text"].strip()
            docs.append(Document(id=str(row["_id"]), text=f"{title}\n\n{text}" if title else text, metadata={}))
    questions = []
    for split in ("train", "test"):
        queries, qrels = load_queries(SCIFACT, split)
        questions += [{"question": text, "qrels": qrels[qid], "split": split} for qid, text in queries.items()]
    return docs, questions


def extract_all(chunks: list, extractor: str) -> list:
    """Every chunk's extraction by the named extractor; spaCy's are cached by content and extractor source."""
    if extractor == "offline":
        return [extract(c) for c in chunks]
    import pickle

    from deployments.graph.extraction import spacy as spacy_extraction
    from deployments.models import Extraction

    digest = hashlib.sha256(
        f"{spacy_extraction.VERSION}\x00".encode() + "\x00".join(c.text for c in chunks).encode()
    ).hexdigest()[:16]
    path = CACHE / f"extract-spacy-{digest}.pkl"
    if path.exists():
        return [Extraction.model_validate(d) for d in pickle.loads(path.read_bytes())]
    found = spacy_extraction.SpacyExtractor().extract_many(chunks)
    CACHE.mkdir(parents=True, exist_ok=True)
    path.write_bytes(pickle.dumps([e.model_dump() for e in found]))
    return found


def indexed(chunk, ex) -> IndexedChunk:
    """A chunk as the server's index holds it (live_index.py reads the same from the store)."""
    return IndexedChunk(
        chunk.chunk_id, chunk.doc_id, chunk.text, "{}", tuple(e.key for e in ex.entities), tuple(e.key for e in ex.entities if e.lead),
        tuple((r.source, r.type, r.target, r.weight) for r in ex.relations),
        tuple((a, e.key) for e in ex.entities for a in e.aliases),
    )  # fmt: skip


class Corpus:
    def __init__(self, layout: str, dataset: str = "hotpotqa", extractor: str = "offline"):
        self.chunks = []
        if dataset == "scifact":
            docs, self.questions = scifact_docs()
            cfg = ChunkingConfig(max_words=512, overlap_words=64)  # benchmarks/quality/scifact.py APP_ARGS
            layout = "scifact"
        else:
            corpus = json.loads((DATASET / "hotpotqa_train_corpus.json").read_text())
            self.questions = json.loads((DATASET / "hotpotqa_train.json").read_text())
            cfg = ChunkingConfig()
            docs = [Document(id=t, text=passage_text(t, s, layout), metadata={}) for t, s in corpus.items()]
        for doc in docs:
            self.chunks.extend(chunk_document(doc, cfg))
        self.doc_of = [c.doc_id for c in self.chunks]
        started = time.perf_counter()
        self.extractions = extract_all(self.chunks, extractor)
        self.extract_s = time.perf_counter() - started
        self.vectors = embed([c.text for c in self.chunks], f"{dataset}-{layout}")
        self.qvectors = embed([q["question"] for q in self.questions], f"{dataset}-questions")
        self.bm25 = Bm25([c.text for c in self.chunks])
        self.index = CollectionIndex()
        self.index.describe_entities({e.key: (e.name, e.type) for ex in self.extractions for e in ex.entities})
        self.index.upsert([indexed(c, ex) for c, ex in zip(self.chunks, self.extractions)], [v for v in self.vectors])
        self.pos = {c.chunk_id: i for i, c in enumerate(self.chunks)}
