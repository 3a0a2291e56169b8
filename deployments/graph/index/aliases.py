"""Name variants across documents: "Rudy Giuliani", "Rudolph Giuliani" and "Rudolph W. L. Giuliani" are one person.

Within a chunk the extractor already folds a short form into the longer name it abbreviates ("Giuliani", "NASA").
Across documents nothing states it, so two multi-word names are variants when they end in the same word and their
first words agree as written forms of one given name: one is an initial of the other ("R. Giuliani"), or they
share their first three letters ("Rudy" / "Rudolph"); the shorter's middle words must appear in the longer.
Only names typed PERSON take part when types are known (a place "North Carolina" has no nicknames).
"""

from __future__ import annotations

from collections.abc import Iterable

PREFIX = 3  # letters two forms of a given name share: Rud-y / Rud-olph, Bill / Bil-ly (not Jo-hn / Jo-nathan)
MAX_GROUP = 200  # names ending in one word; a larger group is a common word ("cells"), not a surname

Groups = dict[str, tuple[list[str], list[tuple[str, str]]]]  # last word -> (its names, their variant pairs)


def _first_words_agree(a: str, b: str) -> bool:
    if len(a) == 1 or len(b) == 1:
        return a[0] == b[0]
    return len(a) >= PREFIX and len(b) >= PREFIX and a[:PREFIX] == b[:PREFIX]


def variants(a: str, b: str) -> bool:
    """Two different keys name one person: same last word, first words agree, the shorter's middle in the longer."""
    wa, wb = a.split(), b.split()
    if a == b or len(wa) < 2 or len(wb) < 2 or wa[-1] != wb[-1]:
        return False
    short, long = (wa, wb) if len(wa) <= len(wb) else (wb, wa)
    if not _first_words_agree(short[0], long[0]):
        return False
    middle = set(long[1:-1])
    return all(w in middle or any(len(w) == 1 and m[0] == w for m in middle) for w in short[1:-1])


class NameVariants:
    """The variant pairs among a collection's entity keys, and the keys a query's name may stand for."""

    def __init__(
        self,
        keys: Iterable[str] = (),
        persons: set[str] | None = None,
        known: Groups | None = None,
        synonyms: Iterable[tuple[str, str]] = (),
    ):
        """`known`: the groups (and their pairs) of an earlier instance; a group whose names are unchanged keeps its
        pairs, so a rebuild after a write compares only the names of the groups it touched. `synonyms`: pairs tied
        by name embeddings (index/synonyms.py), kept where both names are among `keys`."""
        self.groups: Groups = {}
        self._known = known or {}
        keys = list(keys)
        present = set(keys)
        self._synonyms: dict[str, list[str]] = {}
        for a, b in synonyms:
            if a in present and b in present and a != b:
                self._synonyms.setdefault(a, []).append(b)
                self._synonyms.setdefault(b, []).append(a)
        self._by_last: dict[str, list[str]] = {}
        for key in keys:
            words = key.split()
            if len(words) >= 2 and words[-1].isalpha() and (persons is None or key in persons):
                self._by_last.setdefault(words[-1], []).append(key)
        self._by_last = {w: sorted(ks) for w, ks in self._by_last.items() if len(ks) <= MAX_GROUP}
        # A variant's first word starts with the same letter (initial or shared prefix): a query's name is compared
        # with those names only, not with its whole surname group (which grows with the collection).
        self._by_last_initial: dict[tuple[str, str], list[str]] = {}
        for word, ks in self._by_last.items():
            for key in ks:
                self._by_last_initial.setdefault((word, key.split()[0][0]), []).append(key)

    def pairs(self) -> list[tuple[str, str]]:
        out: list[tuple[str, str]] = []
        for word, keys in self._by_last.items():
            group = self._known.get(word)
            if group is None or group[0] != keys:
                group = (keys, [(a, b) for i, a in enumerate(keys) for b in keys[i + 1 :] if variants(a, b)])
            self.groups[word] = group
            out.extend(group[1])
        seen = set(out)
        out.extend((a, b) for a, bs in sorted(self._synonyms.items()) for b in bs if a < b and (a, b) not in seen)
        return out

    def of(self, key: str) -> list[str]:
        words = key.split()
        near = self._by_last_initial.get((words[-1], words[0][0]), ()) if words else ()
        found = [k for k in near if variants(key, k)]
        return found + [k for k in self._synonyms.get(key, ()) if k not in found]

    def match(self, key: str) -> list[str]:
        """Keys of the collection that `key` (a name not itself in the collection) may stand for."""
        return self.of(key)
