"""Sparse pushes for the index's walk: mass moves from a few rows to their neighbours, never over the whole graph.

A search's mass sits on a handful of nodes (its seed passages, their entities, those entities' passages), so each
step gathers only the rows holding mass (a CSR row = a node's out-edges) and sums what they send. The walk is linear:
this gives exactly what a full sparse matrix–vector product gives, at a cost set by the seeds' neighbourhood instead
of the collection's size.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# A sparse vector: sorted node ids and their mass.
Sparse = tuple[np.ndarray, np.ndarray]
EMPTY: Sparse = (np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float64))


@dataclass
class Rows:
    """Out-edges by source node, CSR-style: row i's targets are indices[indptr[i]:indptr[i + 1]], with weights."""

    indptr: np.ndarray
    indices: np.ndarray
    data: np.ndarray

    @classmethod
    def of(cls, rows: np.ndarray, cols: np.ndarray, vals: np.ndarray, n_rows: int) -> Rows:
        """From edge lists; within a row, edges keep the order given (callers sort the heaviest first)."""
        order = np.argsort(rows, kind="stable")
        indptr = np.zeros(n_rows + 1, dtype=np.int64)
        np.cumsum(np.bincount(rows, minlength=n_rows), out=indptr[1:])
        return cls(indptr, cols[order].astype(np.int32), vals[order].astype(np.float32))

    @property
    def nnz(self) -> int:
        return len(self.indices)

    @property
    def nbytes(self) -> int:
        return self.indptr.nbytes + self.indices.nbytes + self.data.nbytes

    def degree(self, rows: np.ndarray) -> np.ndarray:
        return self.indptr[rows + 1] - self.indptr[rows]


def merge(ids: np.ndarray, mass: np.ndarray) -> Sparse:
    """Sums the mass of repeated ids."""
    if not len(ids):
        return EMPTY
    unique, inverse = np.unique(ids, return_inverse=True)
    return unique, np.bincount(inverse, weights=mass)


def add(*vectors: Sparse, scales: tuple[float, ...] | None = None) -> Sparse:
    scales = scales or (1.0,) * len(vectors)
    ids = np.concatenate([v[0] for v in vectors])
    mass = np.concatenate([s * v[1] for s, v in zip(scales, vectors)])
    return merge(ids, mass)


def push(rows: Rows, source: Sparse, cap: int = 0) -> tuple[Sparse, bool]:
    """What `source`'s nodes send along their rows, summed by target; with `cap`, only each row's first `cap` edges
    (its heaviest) carry mass. Also says whether any row was cut short."""
    ids, mass = source
    if not len(ids):
        return EMPTY, False
    starts = rows.indptr[ids]
    lens = rows.indptr[ids + 1] - starts
    cut = bool(cap) and bool((lens > cap).any())
    if cut:
        lens = np.minimum(lens, cap)
    total = int(lens.sum())
    if not total:
        return EMPTY, cut
    # positions of every gathered edge: each row's range, laid end to end
    pos = np.arange(total, dtype=np.int64) + np.repeat(starts - (np.cumsum(lens) - lens), lens)
    return merge(rows.indices[pos], rows.data[pos] * np.repeat(mass, lens)), cut


def lookup(vector: Sparse, ids: np.ndarray) -> np.ndarray:
    """The mass of `ids` in `vector` (0 where absent)."""
    keys, mass = vector
    if not len(keys):
        return np.zeros(len(ids))
    at = np.minimum(np.searchsorted(keys, ids), len(keys) - 1)
    return np.where(keys[at] == ids, mass[at], 0.0)


def top(vector: Sparse, k: int) -> Sparse:
    """The k entries of most mass, most first (ties: lower id first)."""
    ids, mass = vector
    if len(ids) > k:
        keep = np.argpartition(-mass, k - 1)[:k]
        ids, mass = ids[keep], mass[keep]
    order = np.lexsort((ids, -mass))
    return ids[order], mass[order]
