"""Synonym edges between entity names whose embeddings are close, as HippoRAG 2 adds them: "Rudy Giuliani" and
"Rudolph Giuliani", "U.S." and "United States" are one thing written two ways, which no chunk states.

Names are embedded once each, in batches, by the embedding backend the app already has (MiniLM by default;
deployments/embedder/backends.py), as unit vectors; two names of compatible types are synonyms when their cosine
is at least `threshold` (chosen on HotpotQA dev, benchmarks/quality/synonym_pairs.py). A name keeps at most
`max_per_name` synonyms, the closest: a common first word must not tie a crowd together.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable

import numpy as np

# benchmarks/results/synonym-pairs-dev.json (HotpotQA dev names): of the 37 pairs at >= 0.95, 35 name one thing;
# of those between 0.90 and 0.95 about 7 in 10 ("New York" ~ "New York City", "John Adams" ~ "John Quincy Adams").
THRESHOLD = 0.95
MAX_PER_NAME = 3
BATCH = 256
# Types that never merge: a date or a number-like name differs from its neighbour by the one digit that matters.
_NEVER = frozenset(("DATE",))

Embed = Callable[[list[str]], Awaitable[list[list[float]]]]


def compatible(a: str, b: str) -> bool:
    """Two entity types may name one thing: equal, or one of them untyped (OTHER)."""
    if a in _NEVER or b in _NEVER:
        return False
    return a == b or "OTHER" in (a, b)


_ORDINALS = frozenset("ii iii iv v vi vii viii ix x jr sr".split())


def _differ_by_digits(a: str, b: str) -> bool:
    """ "Neo4j 5" / "Neo4j 4", "Apollo 11" / "Apollo 13", "Twins Effect" / "Twins Effect II", "X" / "X Jr.": names
    whose numbers differ are different things."""
    if [c for c in a if c.isdigit()] != [c for c in b if c.isdigit()]:
        return True
    return {w for w in a.split() if w in _ORDINALS} != {w for w in b.split() if w in _ORDINALS}


class NameSynonyms:
    """The embedded names of one collection and the synonym pairs among them."""

    def __init__(self, threshold: float = THRESHOLD, max_per_name: int = MAX_PER_NAME, batch: int = BATCH):
        self.threshold = threshold
        self.max_per_name = max_per_name
        self.batch = batch
        self._keys: list[str] = []
        self._types: list[str] = []
        self._pos: dict[str, int] = {}
        self._vectors = np.zeros((0, 0), dtype=np.float32)

    def __len__(self) -> int:
        return len(self._keys)

    async def add(self, names: dict[str, tuple[str, str]], embed: Embed) -> int:
        """Embeds the names (key -> (name, type)) not yet known, `batch` at a time; returns how many it embedded."""
        fresh = [(k, n, t) for k, (n, t) in names.items() if k not in self._pos and t not in _NEVER]
        for i in range(0, len(fresh), self.batch):
            part = fresh[i : i + self.batch]
            self.add_vectors([(k, t) for k, _, t in part], np.asarray(await embed([n for _, n, _ in part])))
        return len(fresh)

    def add_vectors(self, keyed: list[tuple[str, str]], vectors: np.ndarray) -> None:
        """Vectors computed elsewhere (the offline harness's cache), one per (key, type)."""
        if not keyed:
            return
        vectors = np.asarray(vectors, dtype=np.float32)
        vectors = vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
        for key, type_ in keyed:
            self._pos[key] = len(self._keys)
            self._keys.append(key)
            self._types.append(type_)
        self._vectors = vectors if self._vectors.size == 0 else np.vstack([self._vectors, vectors])

    def pairs(self, keys: Iterable[str] | None = None) -> list[tuple[str, str, float]]:
        """(a, b, cosine) with a < b, among `keys` (default: all known names), closest first per name."""
        rows = [self._pos[k] for k in (self._keys if keys is None else keys) if k in self._pos]
        if len(rows) < 2:
            return []
        vecs = self._vectors[rows]
        found: dict[tuple[str, str], float] = {}
        for start in range(0, len(rows), 1024):  # a block of rows at a time: memory stays O(block x names)
            sims = vecs[start : start + 1024] @ vecs.T
            for i_block, row in enumerate(sims):
                i = start + i_block
                row[i] = -1.0
                best = np.argsort(-row)[: self.max_per_name]
                for j in best:
                    if row[j] < self.threshold:
                        break
                    a, b = self._keys[rows[i]], self._keys[rows[j]]
                    if compatible(self._types[rows[i]], self._types[rows[j]]) and not _differ_by_digits(a, b):
                        found[(min(a, b), max(a, b))] = float(row[j])
        return sorted(((a, b, s) for (a, b), s in found.items()), key=lambda p: (-p[2], p[0], p[1]))
