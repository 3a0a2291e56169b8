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


def _strings(values: list[str]) -> dict[str, np.ndarray]:
    return {"text": np.frombuffer("".join(values).encode(), dtype=np.uint8), "lengths": np.asarray([len(v) for v in values], dtype=np.int64)}  # fmt: skip


def _unstrings(text: np.ndarray, lengths: np.ndarray) -> list[str]:
    joined = text.tobytes().decode()
    ends = np.cumsum(lengths).tolist()
    return [joined[a:b] for a, b in zip([0, *ends[:-1]], ends)]


def capture(index: CollectionIndex) -> dict[str, np.ndarray]:
    """The index's content as arrays (run on the event loop: the writes do not change it meanwhile)."""
    index.ensure_built()  # rows of dead slots dropped
    n = len(index._ids)
    live = np.flatnonzero(index._alive[:n])
    new_slot = np.full(n, -1, dtype=np.int32)
    new_slot[live] = np.arange(len(live), dtype=np.int32)
    keys = index._entity_keys
    info = [index._entity_info.get(k) for k in keys]
    type_names = sorted({t for i in info if i is not None for _, t in [i]})
    type_of = {t: n for n, t in enumerate(type_names)}
    arrays = {
        "format": np.asarray(FORMAT),
        "version": np.asarray(index.version),
        "m_slot": new_slot[index._m_slot],
        "m_ent": index._m_ent,
        "m_lead": index._m_lead,
        "r_slot": new_slot[index._r_slot],
        "r_src": index._r_src,
        "r_tgt": index._r_tgt,
        "r_w": index._r_w,
        "r_type": index._r_type,
        "entity_type": np.asarray([type_of[i[1]] if i is not None else -1 for i in info], dtype=np.int16),
    }
    columns = {
        "ids": [index._ids[i] for i in live.tolist()],
        "docs": [index._docs[i] for i in live.tolist()],
        "keys": keys,
        # a name that is its key is stored empty
        "names": ["" if i is None or i[0] == k else i[0] for k, i in zip(keys, info)],
        "types": index._types,
        "entity_types": type_names,
    }
    for name, values in columns.items():
        for part, array in _strings(values).items():
            arrays[f"{name}_{part}"] = array
    return arrays


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
        a = {k: f[k] for k in f.files}
    if int(a["format"]) != FORMAT:
        raise ValueError(f"{path}: index snapshot format {int(a['format'])}, expected {FORMAT}")
    s = {
        n: _unstrings(a[f"{n}_text"], a[f"{n}_lengths"])
        for n in ("ids", "docs", "keys", "names", "types", "entity_types")
    }
    index = CollectionIndex(params)
    index.version = int(a["version"])
    index._ids, index._docs = s["ids"], s["docs"]
    index._slot = {c: i for i, c in enumerate(index._ids)}
    for i, d in enumerate(index._docs):
        index._by_doc.setdefault(d, []).append(i)
    index._alive = np.ones(len(index._ids), dtype=bool)
    index._entity_keys = s["keys"]
    index._entity_pos = {k: j for j, k in enumerate(s["keys"])}
    index._entity_info = {
        k: (name or k, s["entity_types"][t])
        for k, name, t in zip(s["keys"], s["names"], a["entity_type"].tolist())
        if t >= 0
    }
    index._types = s["types"]
    index._type_pos = {t: n for n, t in enumerate(s["types"])}
    index._m_slot, index._m_ent, index._m_lead = a["m_slot"], a["m_ent"], a["m_lead"]
    index._r_slot, index._r_src, index._r_tgt = a["r_slot"], a["r_src"], a["r_tgt"]
    index._r_w, index._r_type = a["r_w"], a["r_type"]
    index.ensure_built()
    return index
