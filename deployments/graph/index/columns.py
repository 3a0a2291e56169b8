"""The index's storage: one collection's chunks and their mentions and relations as flat arrays.

Every chunk holds a slot; its mentions (slot, entity, lead) and stated relations (slot, source, target, weight, type)
are rows of numpy arrays in slot order. No per-chunk Python object beyond its id (the id -> slot dict, the id and
document lists), no texts, metadata or vectors: at 1M chunks what a Graph replica holds is these arrays and the
entity names (deployments/README.md). Writes are incremental: an upsert appends slots and rows; a delete marks
slots dead (a replaced chunk gets a new slot); dead rows go at the next build and dead slots are compacted away once
they are half.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from deployments.graph.extraction.ontology import UNTYPED

Relation = tuple[str, str, str, float]  # (source key, type, target key, weight)
ALIAS = -1  # the relation type of a stated alias ("giuliani" -> "rudolph giuliani")


@dataclass
class IndexedChunk:
    """A chunk as the index takes it in (from the store's rows, index/live.py); it keeps only its arrays."""

    chunk_id: str
    doc_id: str
    keys: tuple[str, ...]
    lead: tuple[str, ...] = ()  # the keys named in the chunk's first sentence: what it is about
    relations: tuple[Relation, ...] = ()
    aliases: tuple[tuple[str, str], ...] = ()  # (alias key, entity key): "giuliani" -> "rudolph giuliani"


def _cat(parts: list[np.ndarray], dtype: type) -> np.ndarray:
    return np.concatenate(parts).astype(dtype, copy=False) if parts else np.zeros(0, dtype=dtype)


class Columns:
    """Chunk ids and documents by slot, entity keys by position, mention and relation rows."""

    def __init__(self, untyped_relations: bool = False) -> None:
        # Co-occurrence (CO_OCCURS, RELATED_TO) is no fact: kept only when the walk follows it (relation_types
        # "all"); the offline extractor states ~40 such pairs per chunk, most of the relation rows.
        self._untyped = untyped_relations
        self.version = 0  # the store's version this index reflects (index/live.py)
        self._slot: dict[str, int] = {}  # live chunk id -> slot
        self._ids: list[str] = []  # slot -> chunk id
        self._docs: list[str] = []  # slot -> document id
        self._by_doc: dict[str, list[int]] = {}  # document id -> its live slots
        self._alive = np.zeros(0, dtype=bool)
        self._entity_pos: dict[str, int] = {}
        self._entity_keys: list[str] = []
        self._entity_info: dict[str, tuple[str, str]] = {}  # key -> (display name, type), for the subgraph
        self._types: list[str] = []  # relation type names by id
        self._type_pos: dict[str, int] = {}
        self._m_slot = np.zeros(0, dtype=np.int32)  # mentions, in slot order
        self._m_ent = np.zeros(0, dtype=np.int32)
        self._m_lead = np.zeros(0, dtype=bool)
        self._r_slot = np.zeros(0, dtype=np.int32)  # relations and aliases, in slot order
        self._r_src = np.zeros(0, dtype=np.int32)
        self._r_tgt = np.zeros(0, dtype=np.int32)
        self._r_w = np.zeros(0, dtype=np.float32)
        self._r_type = np.zeros(0, dtype=np.int16)
        self._pending: list[tuple[np.ndarray, ...]] = []  # appended (mention, relation) rows, joined at build
        self._stale = True

    # ---- writes ---------------------------------------------------------------------------------

    def _entity_id(self, key: str) -> int:
        j = self._entity_pos.get(key)
        if j is None:
            j = self._entity_pos[key] = len(self._entity_keys)
            self._entity_keys.append(key)
        return j

    def _type_id(self, type_: str) -> int:
        t = self._type_pos.get(type_)
        if t is None:
            t = self._type_pos[type_] = len(self._types)
            self._types.append(type_)
        return t

    def _kill(self, chunk_id: str) -> None:
        slot = self._slot.pop(chunk_id, None)
        if slot is not None:
            self._alive[slot] = False
            slots = self._by_doc.get(self._docs[slot], [])
            if slot in slots:
                slots.remove(slot)

    def upsert(self, chunks: list[IndexedChunk]) -> None:
        """Adds chunks (a chunk id already present is replaced)."""
        if not chunks:
            return
        first = len(self._ids)
        if first + len(chunks) > len(self._alive):
            grown = np.zeros(max(first + len(chunks), 2 * len(self._alive), 1024), dtype=bool)
            grown[: len(self._alive)] = self._alive
            self._alive = grown
        m: list[tuple[int, int, bool]] = []
        r: list[tuple[int, int, int, float, int]] = []
        for slot, chunk in enumerate(chunks, start=first):
            self._kill(chunk.chunk_id)
            self._slot[chunk.chunk_id] = slot
            self._ids.append(chunk.chunk_id)
            self._docs.append(chunk.doc_id)
            self._alive[slot] = True
            self._by_doc.setdefault(chunk.doc_id, []).append(slot)
            about = set(chunk.lead)
            m.extend((slot, self._entity_id(key), key in about) for key in dict.fromkeys(chunk.keys))
            for source, type_, target, weight in chunk.relations:
                if type_ in UNTYPED and not self._untyped:
                    continue
                r.append((slot, self._entity_id(source), self._entity_id(target), float(weight), self._type_id(type_)))
            r.extend((slot, self._entity_id(a), self._entity_id(k), 1.0, ALIAS) for a, k in chunk.aliases)
        mentions = np.asarray(m, dtype=np.int64).reshape(-1, 3)
        rel = np.asarray(r, dtype=np.float64).reshape(-1, 5)
        self._pending.append((mentions[:, 0], mentions[:, 1], mentions[:, 2].astype(bool), *rel.T))
        self._stale = True

    def remove_docs(self, doc_ids: list[str]) -> int:
        removed = 0
        for doc_id in doc_ids:
            for slot in self._by_doc.pop(doc_id, []):
                if self._slot.get(self._ids[slot]) == slot:
                    del self._slot[self._ids[slot]]
                    self._alive[slot] = False
                    removed += 1
        if removed:
            self._stale = True
        return removed

    def describe_entities(self, info: dict[str, tuple[str, str]]) -> None:
        """Names and types of entities (from the store), shown in search subgraphs; keys stay the identity. A name
        that only differs from its key in case is not kept twice."""
        self._entity_info.update(info)

    def entity_info(self, key: str) -> tuple[str, str]:
        return self._entity_info.get(key, (key, "ENTITY"))

    def persons(self) -> set[str] | None:
        """Keys typed PERSON, None when no types are known."""
        return {k for k, (_, t) in self._entity_info.items() if t == "PERSON"} if self._entity_info else None

    # ---- reads ----------------------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self._slot)

    def __contains__(self, chunk_id: str) -> bool:
        return chunk_id in self._slot

    def _join_pending(self) -> None:
        if not self._pending:
            return
        cols = list(zip(*self._pending))
        self._pending = []
        self._m_slot = _cat([self._m_slot, *cols[0]], np.int32)
        self._m_ent = _cat([self._m_ent, *cols[1]], np.int32)
        self._m_lead = _cat([self._m_lead, *cols[2]], bool)
        self._r_slot = _cat([self._r_slot, *cols[3]], np.int32)
        self._r_src = _cat([self._r_src, *cols[4]], np.int32)
        self._r_tgt = _cat([self._r_tgt, *cols[5]], np.int32)
        self._r_w = _cat([self._r_w, *cols[6]], np.float32)
        self._r_type = _cat([self._r_type, *cols[7]], np.int16)

    def _drop_dead(self) -> None:
        """Joins appended rows, drops the rows of dead slots, and compacts the slots once half are dead."""
        self._join_pending()
        keep_m, keep_r = self._alive[self._m_slot], self._alive[self._r_slot]
        if not keep_m.all():
            self._m_slot, self._m_ent, self._m_lead = self._m_slot[keep_m], self._m_ent[keep_m], self._m_lead[keep_m]
        if not keep_r.all():
            self._r_slot, self._r_src, self._r_tgt = self._r_slot[keep_r], self._r_src[keep_r], self._r_tgt[keep_r]
            self._r_w, self._r_type = self._r_w[keep_r], self._r_type[keep_r]
        n = len(self._ids)
        if n - len(self._slot) <= max(1024, n // 2):
            return
        live = np.flatnonzero(self._alive[:n])
        new_slot = np.full(n, -1, dtype=np.int32)
        new_slot[live] = np.arange(len(live), dtype=np.int32)
        self._m_slot, self._r_slot = new_slot[self._m_slot], new_slot[self._r_slot]
        self._stale = True  # the walk's rows name the old slots
        self._ids = [self._ids[i] for i in live.tolist()]
        self._docs = [self._docs[i] for i in live.tolist()]
        self._alive = np.ones(len(live), dtype=bool)
        self._slot = {c: i for i, c in enumerate(self._ids)}
        self._by_doc = {}
        for i, d in enumerate(self._docs):
            self._by_doc.setdefault(d, []).append(i)

    def stated_relations(self, chunk_ids: list[str]) -> list[Relation]:
        """The relations these chunks state (aliases not included)."""
        self._join_pending()
        out: list[Relation] = []
        for c in chunk_ids:
            slot = self._slot.get(c)
            if slot is None:
                continue
            lo, hi = np.searchsorted(self._r_slot, [slot, slot + 1])
            for i in range(lo, hi):
                if self._r_type[i] != ALIAS:
                    src, tgt = self._entity_keys[self._r_src[i]], self._entity_keys[self._r_tgt[i]]
                    out.append((src, self._types[self._r_type[i]], tgt, float(self._r_w[i])))
        return out

    def column_bytes(self) -> int:
        arrays = (self._m_slot, self._m_ent, self._m_lead, self._r_slot, self._r_src, self._r_tgt, self._r_w)
        return sum(a.nbytes for a in arrays) + self._r_type.nbytes + self._alive.nbytes

    # ---- as arrays (index/snapshot.py) -------------------------------------------------------------

    def to_arrays(self) -> dict[str, np.ndarray]:
        """The content as arrays, live slots only (compacted); strings as one UTF-8 buffer and lengths each."""
        self._drop_dead()
        n = len(self._ids)
        live = np.flatnonzero(self._alive[:n])
        new_slot = np.full(n, -1, dtype=np.int32)
        new_slot[live] = np.arange(len(live), dtype=np.int32)
        keys = self._entity_keys
        info = [self._entity_info.get(k) for k in keys]
        entity_types = sorted({i[1] for i in info if i is not None})
        type_of = {t: n for n, t in enumerate(entity_types)}
        arrays = {
            "version": np.asarray(self.version),
            "m_slot": new_slot[self._m_slot], "m_ent": self._m_ent, "m_lead": self._m_lead,
            "r_slot": new_slot[self._r_slot], "r_src": self._r_src, "r_tgt": self._r_tgt, "r_w": self._r_w,
            "r_type": self._r_type,
            "entity_type": np.asarray([type_of[i[1]] if i is not None else -1 for i in info], dtype=np.int16),
        }  # fmt: skip
        strings = {
            "ids": [self._ids[i] for i in live.tolist()],
            "docs": [self._docs[i] for i in live.tolist()],
            "keys": keys,
            "names": ["" if i is None or i[0] == k else i[0] for k, i in zip(keys, info)],  # a name that is its key: ""
            "types": self._types,
            "entity_types": entity_types,
        }
        for name, values in strings.items():
            arrays[f"{name}_text"] = np.frombuffer("".join(values).encode(), dtype=np.uint8)
            arrays[f"{name}_lengths"] = np.asarray([len(v) for v in values], dtype=np.int64)
        return arrays

    def from_arrays(self, a: dict[str, np.ndarray]) -> None:
        """Takes the content `to_arrays` gave (into an empty index)."""
        s = {n: _unstrings(a[f"{n}_text"], a[f"{n}_lengths"]) for n in ("ids", "docs", "keys", "names", "types", "entity_types")}  # fmt: skip
        self.version = int(a["version"])
        self._ids, self._docs = s["ids"], s["docs"]
        self._slot = {c: i for i, c in enumerate(self._ids)}
        for i, d in enumerate(self._docs):
            self._by_doc.setdefault(d, []).append(i)
        self._alive = np.ones(len(self._ids), dtype=bool)
        self._entity_keys = s["keys"]
        self._entity_pos = {k: j for j, k in enumerate(s["keys"])}
        types = a["entity_type"].tolist()
        self._entity_info = {
            k: (name or k, s["entity_types"][t]) for k, name, t in zip(s["keys"], s["names"], types) if t >= 0
        }
        self._types = s["types"]
        self._type_pos = {t: n for n, t in enumerate(s["types"])}
        self._m_slot, self._m_ent, self._m_lead = a["m_slot"], a["m_ent"], a["m_lead"]
        self._r_slot, self._r_src, self._r_tgt, self._r_w, self._r_type = (
            a[k] for k in ("r_slot", "r_src", "r_tgt", "r_w", "r_type")
        )
        self._stale = True


def _unstrings(text: np.ndarray, lengths: np.ndarray) -> list[str]:
    joined = text.tobytes().decode()
    ends = np.cumsum(lengths).tolist()
    return [joined[a:b] for a, b in zip([0, *ends[:-1]], ends)]
