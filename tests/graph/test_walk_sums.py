"""The walk's sparse sums (index/walk.py) against their former formulation on random inputs: repeated ids summed
through a sort (np.unique), a lookup by binary search over sorted keys, a top-k by a full sort. The scratch array the
new sums use is left dirty between calls on purpose: nothing may depend on what an earlier call wrote there."""

from __future__ import annotations

import numpy as np
import pytest

from deployments.graph.index import walk


def sorted_sum(ids: np.ndarray, mass: np.ndarray) -> walk.Sparse:
    """The former merge: np.unique's sort, then a bincount over its inverse."""
    unique, inverse = np.unique(ids, return_inverse=True)
    return unique, np.bincount(inverse, weights=mass)


def by_id(vector: walk.Sparse) -> walk.Sparse:
    order = np.argsort(vector[0])
    return vector[0][order], vector[1][order]


def dirty_scratch(rng: np.random.Generator) -> None:
    held = walk.scratch(1)
    held[:] = rng.integers(0, 2**31 - 1, len(held), dtype=held.dtype)


def random_rows(rng: np.random.Generator, n_rows: int, n_targets: int) -> walk.Rows:
    degrees = rng.choice([0, 1, 3, 40, 700], n_rows, p=[0.1, 0.4, 0.3, 0.15, 0.05])
    rows = np.repeat(np.arange(n_rows), degrees)
    cols = rng.integers(0, n_targets, len(rows))
    return walk.Rows.of(rows, cols, rng.random(len(rows)), n_rows)


def former_push(rows: walk.Rows, source: walk.Sparse, cap: int, budget: int) -> tuple[walk.Sparse, bool]:
    """Row by row in Python: each row's first `cap` edges; with `budget`, rows by their first edge's gain."""
    ids, mass = source
    chosen = []
    for i, m in zip(ids.tolist(), mass.tolist()):
        lo, hi = int(rows.indptr[i]), int(rows.indptr[i + 1])
        hi = min(hi, lo + cap) if cap else hi
        chosen.append((-(m * float(rows.data[lo])) if hi > lo else 0.0, lo, hi, m))
    cut = any(int(rows.indptr[i + 1] - rows.indptr[i]) > cap for i in ids.tolist()) if cap else False
    if budget and sum(hi - lo for _, lo, hi, _ in chosen) > budget:
        chosen.sort(key=lambda c: c[0])
        used, kept = 0, []
        for c in chosen:
            if kept and used + c[2] - c[1] > budget:
                break
            kept.append(c)
            used += c[2] - c[1]
        chosen, cut = kept, True
    targets = [t for _, lo, hi, _ in chosen for t in rows.indices[lo:hi].tolist()]
    sent = [float(w) * m for _, lo, hi, m in chosen for w in rows.data[lo:hi]]
    if not targets:
        return walk.EMPTY, cut
    return sorted_sum(np.asarray(targets), np.asarray(sent)), cut


@pytest.mark.parametrize("seed", range(20))
def test_merge_sums_repeated_ids_as_the_sort_did(seed):
    rng = np.random.default_rng(seed)
    dirty_scratch(rng)
    span = int(rng.choice([5, 1_000, 2_000_000]))
    ids = rng.integers(0, span, int(rng.integers(1, 5_000))).astype(rng.choice([np.int32, np.int64]))
    mass = rng.random(len(ids))
    got, want = by_id(walk.merge(ids, mass)), sorted_sum(ids, mass)
    assert np.array_equal(got[0], want[0])
    assert np.array_equal(got[1], want[1])  # summed in the same order: the same floats, not merely close ones


@pytest.mark.parametrize("seed", range(20))
@pytest.mark.parametrize(("cap", "budget"), [(0, 0), (30, 0), (0, 500), (30, 200)])
def test_push_sends_what_the_former_push_sent(seed, cap, budget):
    rng = np.random.default_rng(seed)
    rows = random_rows(rng, 300, int(rng.choice([50, 100_000])))
    ids = rng.choice(300, int(rng.integers(1, 60)), replace=False)
    source = (ids, rng.random(len(ids)))
    dirty_scratch(rng)
    (got_ids, got_mass), cut = walk.push(rows, source, cap, budget)
    (want_ids, want_mass), want_cut = former_push(rows, source, cap, budget)
    got_ids, got_mass = by_id((got_ids, got_mass))
    assert cut == want_cut
    assert np.array_equal(got_ids, want_ids)
    assert got_mass == pytest.approx(want_mass, rel=1e-12)


@pytest.mark.parametrize("seed", range(20))
def test_lookup_finds_the_mass_of_present_ids_and_zero_for_the_rest(seed):
    rng = np.random.default_rng(seed)
    keys = rng.choice(10_000, int(rng.integers(1, 500)), replace=False)  # in no particular order
    mass = rng.random(len(keys)) + 0.1
    ids = rng.integers(0, 20_000, 2_000)  # some absent, some past the largest key
    dirty_scratch(rng)
    order = np.argsort(keys)
    at = np.minimum(np.searchsorted(keys[order], ids), len(keys) - 1)
    want = np.where(keys[order][at] == ids, mass[order][at], 0.0)
    assert np.array_equal(walk.lookup((keys, mass), ids), want)


@pytest.mark.parametrize("seed", range(20))
def test_top_keeps_the_most_mass_and_the_lower_ids_among_ties(seed):
    rng = np.random.default_rng(seed)
    ids = rng.choice(100_000, 400, replace=False)
    mass = rng.integers(1, 6, len(ids)).astype(float)  # many ties, also at the k-th place
    k = int(rng.integers(1, 450))
    order = np.lexsort((ids, -mass))[:k]
    got = walk.top((ids, mass), k)
    assert np.array_equal(got[0], ids[order])
    assert np.array_equal(got[1], mass[order])
