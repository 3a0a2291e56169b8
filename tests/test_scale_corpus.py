"""The scale benchmark's distractor passages: deterministic, made of the real text with names swapped, and
vectors that stay near their parent's."""

import numpy as np

from benchmarks.speed.scale_corpus import DistractorMaker, Passage, perturbed


def passages() -> list[Passage]:
    return [
        Passage(
            "hotpotqa",
            "Ada Lovelace",
            "Ada Lovelace",
            ["She worked with Charles Babbage.", "Her notes were published in London."],
        ),
        Passage(
            "hotpotqa",
            "Alan Turing",
            "Alan Turing",
            ["He was born in London.", "He worked at Bletchley Park with Gordon Welchman."],
        ),
        Passage(
            "scifact",
            "1",
            "Insulin and Beta Cells",
            ["Insulin is made by beta cells.", "Type 2 diabetes follows from Insulin resistance."],
        ),
    ]


def test_distractors_are_deterministic_and_stay_in_their_data_set():
    a, b = DistractorMaker(passages()), DistractorMaker(passages())
    rows = [a.make(i) for i in range(40)]
    assert rows == [b.make(i) for i in range(40)]
    assert len({r["id"] for r in rows}) == 40
    real = {p.doc_id: p for p in passages()}
    for r in rows:
        parent = real[r["metadata"]["parent"]]
        assert r["metadata"]["dataset"] == parent.dataset and r["metadata"]["real"] is False
        assert r["text"]


def test_names_are_swapped_for_names_of_the_corpus():
    maker = DistractorMaker(passages())
    corpus_names = set(maker.names)
    assert {"Charles Babbage", "London", "Bletchley Park"} <= corpus_names
    swapped = 0
    for i in range(60):
        row = maker.make(i)
        parent = next(p for p in passages() if p.doc_id == row["metadata"]["parent"])
        swapped += row["text"] != f"{parent.title}\n\n{' '.join(parent.sentences)}"
    assert swapped > 30  # most distractors differ from their parent (names swapped or sentences recombined)


def test_perturbed_vectors_are_unit_length_hard_negatives():
    rng = np.random.default_rng(0)
    parent = rng.standard_normal(384).astype(np.float32)
    parent /= np.linalg.norm(parent)
    cosines = [float(perturbed(parent, i) @ parent) for i in range(50)]
    assert all(abs(np.linalg.norm(perturbed(parent, i)) - 1) < 1e-5 for i in range(5))
    assert 0.85 < min(cosines) and max(cosines) < 0.95
    assert not np.allclose(perturbed(parent, 1), perturbed(parent, 2))


def test_tiled_extractions_rename_each_copys_keys_but_the_hubs():
    """Past 100k rows the 1M collection borrows the graph of row i mod 100k: copy k's own keys (`key~k`) in its
    entities, aliases and relations, the hubs' shared; copy 0 is the row's own extraction."""
    from benchmarks.scale.tiled import TILED_FROM, tiled
    from deployments.models import Entity, Extraction, Relation

    own = Extraction(
        chunk_id="a#0",
        entities=[
            Entity(key="ada lovelace", name="Ada Lovelace", type="PERSON", lead=True, aliases=["lovelace"]),
            Entity(key="london", name="London", type="GPE"),
        ],
        relations=[Relation(source="ada lovelace", target="london", type="LIVED_IN")],
    )
    base = [own] * TILED_FROM
    assert tiled(base, {"london"}, 5, "a#0") is own
    copy = tiled(base, {"london"}, 2 * TILED_FROM + 5, "x#0")
    assert copy.chunk_id == "x#0"
    assert [(e.key, e.name, e.aliases, e.lead) for e in copy.entities] == [
        ("ada lovelace~2", "Ada Lovelace~2", ["lovelace~2"], True),
        ("london", "London", [], False),
    ]
    assert [(r.source, r.type, r.target) for r in copy.relations] == [("ada lovelace~2", "LIVED_IN", "london")]
    assert own.entities[0].key == "ada lovelace"  # the base row is left as it was
