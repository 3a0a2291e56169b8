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
