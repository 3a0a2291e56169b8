"""Name variants (index/aliases.py): a query's name is compared only with the names of its surname group that start
with its letter; it must find what comparing it with the whole group found."""

from __future__ import annotations

import random

import pytest

from deployments.graph.index.aliases import NameVariants, variants

FIRST = ["r", "rud", "rudy", "rudolph", "ruth", "bill", "billy", "b", "william", "will", "al", "albert", "alan", "a"]
MIDDLE = ["", "w", "william", "louis", "l", "e", "b"]
LAST = ["giuliani", "smith", "nolan"]


def name(rng: random.Random) -> str:
    return " ".join(w for w in (rng.choice(FIRST), rng.choice(MIDDLE), rng.choice(LAST)) if w)


@pytest.mark.parametrize("seed", range(10))
def test_a_names_variants_are_those_of_its_whole_surname_group(seed):
    rng = random.Random(seed)
    keys = sorted({name(rng) for _ in range(120)})
    index = NameVariants(keys)
    for query in {name(rng) for _ in range(60)}:
        whole_group = [k for k in keys if k.split()[-1] == query.split()[-1] and variants(query, k)]
        assert index.of(query) == whole_group
