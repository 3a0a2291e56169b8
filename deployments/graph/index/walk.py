"""Sparse pushes for the index's walk: mass moves from a few rows to their neighbours, never over the whole graph.

A search's mass sits on a handful of nodes (its seed passages, their entities, those entities' passages), so each
step gathers only the rows holding mass (a CSR row = a node's out-edges) and sums what they send. The walk is linear:
this gives exactly what a full sparse matrix–vector product gives, at a cost set by the seeds' neighbourhood instead
of the collection's size. Summing what several rows send to one node takes a few passes over the edges through a
scratch array indexed by node id, never a sort nor anything the size of the graph.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import numpy as np

# A sparse vector: distinct node ids, in no particular order, and their mass.
Sparse = tuple[np.ndarray, np.ndarray]
EMPTY: Sparse = (np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float64))

_local = threading.local()


def scratch(size: int) -> np.ndarray:
    """This thread's int array of at least `size` entries (positions within one call: fewer than 2**31). It is never
    cleared: a call (merge, lookup) reads only what it wrote or checks what it read, so nothing is zeroed per search
    and every index searched on the thread shares it."""
    held: np.ndarray | None = getattr(_local, "scratch", None)
    if held is None or len(held) < size:
        held = _local.scratch = np.zeros(max(size, 2 * len(held) if held is not None else 0), dtype=np.int32)
    return held


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
    """Sums the mass of repeated ids, each id's in the order given (the same floats as summing after a sort); the
    ids come in the order of their last repeat."""
    if not len(ids):
        return EMPTY
    last = scratch(int(ids.max()) + 1)
    at = np.arange(len(ids), dtype=last.dtype)
    last[ids] = at  # an id's last write wins: every repeat of it reads back the position of its last one
    last_of = last[ids]
    kept = last_of == at
    place = np.cumsum(kept) - 1  # each distinct id's place in the result, read at its last position
    return ids[kept], np.bincount(place[last_of], weights=mass)


def add(*vectors: Sparse, scales: tuple[float, ...] | None = None) -> Sparse:
    scales = scales or (1.0,) * len(vectors)
    ids = np.concatenate([v[0] for v in vectors])
    mass = np.concatenate([s * v[1] for s, v in zip(scales, vectors)])
    return merge(ids, mass)


def push(rows: Rows, source: Sparse, cap: int = 0, budget: int = 0) -> tuple[Sparse, bool]:
    """What `source`'s nodes send along their rows, summed by target. With `cap`, only each row's first `cap` edges
    (its heaviest) carry mass; with `budget`, only the rows whose first edge carries the most (mass x its weight),
    as many as fit in `budget` edges (at least one). Also says whether any mass was left out."""
    ids, mass = source
    if not len(ids):
        return EMPTY, False
    starts = rows.indptr[ids]
    lens = rows.indptr[ids + 1] - starts
    cut = bool(cap) and bool((lens > cap).any())
    if cut:
        lens = np.minimum(lens, cap)
    total = int(lens.sum())
    if budget and total > budget:
        heaviest = rows.data[np.minimum(starts, rows.nnz - 1)] * (lens > 0)
        order = np.argsort(-(mass * heaviest))
        order = order[: max(1, int(np.searchsorted(np.cumsum(lens[order]), budget, side="right")))]
        mass, starts, lens, cut = mass[order], starts[order], lens[order], True
        total = int(lens.sum())
    if not total:
        return EMPTY, cut
    pos = edges(starts, lens)
    return merge(rows.indices[pos], rows.data[pos] * np.repeat(mass, lens)), cut


def edges(starts: np.ndarray, lens: np.ndarray) -> np.ndarray:
    """The positions of `lens[i]` edges from `starts[i]`, for every i, laid end to end."""
    ends = np.cumsum(lens)
    return np.arange(int(ends[-1]) if len(ends) else 0) + np.repeat(starts - (ends - lens), lens)


def lookup(vector: Sparse, ids: np.ndarray) -> np.ndarray:
    """The mass of `ids` in `vector` (0 where absent)."""
    keys, mass = vector
    if not len(keys):
        return np.zeros(len(ids))
    at = scratch(int(keys.max()) + 1)
    at[keys] = np.arange(len(keys), dtype=at.dtype)
    found = np.take(at, ids, mode="clip")  # an id not in `keys` reads whatever is there: checked next
    return np.where(np.take(keys, found, mode="clip") == ids, np.take(mass, found, mode="clip"), 0.0)


def top(vector: Sparse, k: int) -> Sparse:
    """The k entries of most mass, most first (ties: lower id first, also for the last places kept)."""
    ids, mass = vector
    if k <= 0:
        return ids[:0], mass[:0]
    if len(ids) > k:
        kth = np.partition(mass, len(mass) - k)[len(mass) - k]  # the k-th most mass
        keep = np.flatnonzero(mass >= kth)  # those above it and all tied with it
        ids, mass = ids[keep], mass[keep]
    order = np.lexsort((ids, -mass))[:k]
    return ids[order], mass[order]
