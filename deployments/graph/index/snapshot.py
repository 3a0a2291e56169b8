"""An index snapshot: a collection's index arrays in one `.npz` file next to the store, with the store version they
reflect. A new Graph replica loads it (seconds at 1M chunks, no whole-collection read from the store) and then
catches up through the store's change log like any replica (index/live.py).

Strings (chunk and document ids, entity keys and names, relation types) are kept as one UTF-8 buffer each plus
their lengths; the mention and relation arrays as they are. Only live slots are written (the slots are compacted).
A snapshot is written to a temporary file and renamed: a reader sees the old file or the new one, never half.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from deployments.graph.index.collection import CollectionIndex, PPRParams

FORMAT = 1


def capture(index: CollectionIndex) -> dict[str, np.ndarray]:
    """The index's content as arrays (run on the event loop: the writes do not change it meanwhile)."""
    index.ensure_built()
    return {"format": np.asarray(FORMAT), **index.to_arrays()}


def write(arrays: dict[str, np.ndarray], path: Path) -> int:
    """Writes the captured arrays to `path` atomically; returns the file's size in bytes."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as f:
        np.savez(f, **arrays)  # type: ignore[arg-type]  # numpy types the keyword arrays as its own options
    os.replace(tmp, path)
    return path.stat().st_size


def save(index: CollectionIndex, path: Path) -> int:
    return write(capture(index), path)


def load(path: Path, params: PPRParams) -> CollectionIndex:
    """The index a snapshot holds, built (its walk's rows made with `params`), at the snapshot's store version."""
    with np.load(path) as f:
        arrays = {k: f[k] for k in f.files}
    if int(arrays["format"]) != FORMAT:
        raise ValueError(f"{path}: index snapshot format {int(arrays['format'])}, expected {FORMAT}")
    index = CollectionIndex(params)
    index.from_arrays(arrays)
    index.ensure_built()
    return index
