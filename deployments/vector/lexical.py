"""Lexical retrieval as Qdrant sparse vectors: BM25 term weights written at ingest, IDF applied by Qdrant.

Tokenization is Qdrant's own BM25 model (qdrant-edge-py's `Bm25`, the same for the embedded engine and a Qdrant
server): lower-casing, English stop words and the Snowball English stemmer. On SciFact's 809 train queries the
stemmer is worth +2.6 nDCG@10 points over no stemming (0.699 vs 0.673); k1/b/avg_len variations moved it by
under 0.3 points, so Qdrant's defaults stay (benchmarks/README.md, "Retrieval quality").

A document's vector holds, per term, tf·(k1+1) / (tf + k1·(1 − b + b·len/avg_len)); a query's holds 1 per term.
The collection's sparse vector is created with Modifier.IDF, so Qdrant multiplies each query term by the IDF of
the collection as it is when searched: the score is BM25, and it stays exact as documents come and go.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

LEXICAL_VECTOR = "lexical"  # the collection's sparse vector name; the dense vector keeps the default name ""


@dataclass(frozen=True)
class SparseTerms:
    """A sparse vector independent of the client library: hashed term ids and their weights."""

    indices: list[int]
    values: list[float]


class LexicalEncoder:
    """Documents and queries to BM25 sparse vectors (thread-safe; the model is built on first use)."""

    def __init__(self, k1: float = 1.2, b: float = 0.75, avg_len: float = 256.0):
        self.k1, self.b, self.avg_len = k1, b, avg_len

    @cached_property
    def _model(self):
        import qdrant_edge as qe

        return qe.Bm25(qe.Bm25Config(k=self.k1, b=self.b, avg_len=self.avg_len))

    def document(self, text: str) -> SparseTerms:
        vector = self._model.embed_document(text)
        return SparseTerms(list(vector.indices), [float(v) for v in vector.values])

    def query(self, text: str) -> SparseTerms:
        vector = self._model.embed_query(text)
        return SparseTerms(list(vector.indices), [float(v) for v in vector.values])
