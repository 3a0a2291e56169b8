"""The benchmark's IR metrics on examples worked out by hand."""

import math

import pytest

from benchmarks.metrics import docs_by_max_score, evaluate, mrr_at_k, ndcg_at_k, recall_at_k


def test_ndcg_binary_by_hand():
    # relevant d1, d2; ranked [x, d1, y, d2]: DCG = 1/log2(3) + 1/log2(5) = 0.63093 + 0.43068 = 1.06161
    # ideal [d1, d2]: IDCG = 1 + 1/log2(3) = 1.63093 -> nDCG = 0.65092
    assert ndcg_at_k(["x", "d1", "y", "d2"], {"d1": 1, "d2": 1}, 10) == pytest.approx(0.65092, abs=1e-5)
    assert ndcg_at_k(["d1", "d2", "x"], {"d1": 1, "d2": 1}, 10) == pytest.approx(1.0)
    assert ndcg_at_k(["x", "d1"], {"d1": 1}, 1) == 0.0  # cut at k
    assert ndcg_at_k([], {"d1": 1}, 10) == 0.0


def test_ndcg_graded_uses_linear_gain():
    # rel d1=2, d2=1; ranked [d2, d1]: DCG = 1 + 2/log2(3) = 2.26186; ideal [d1, d2]: 2 + 1/log2(3) = 2.63093
    assert ndcg_at_k(["d2", "d1"], {"d1": 2, "d2": 1}, 10) == pytest.approx(
        (1 + 2 / math.log2(3)) / (2 + 1 / math.log2(3))
    )
    assert ndcg_at_k(["d2", "d1"], {"d1": 2, "d2": 1}, 10) == pytest.approx(0.85972, abs=1e-5)
    assert ndcg_at_k(["d3"], {"d3": 0, "d1": 1}, 10) == 0.0  # relevance 0 is not relevant


def test_recall_and_mrr_by_hand():
    rel = {"a": 1, "b": 1, "c": 1}
    assert recall_at_k(["x", "a", "b"], rel, 100) == pytest.approx(2 / 3)
    assert recall_at_k(["x", "a", "b"], rel, 2) == pytest.approx(1 / 3)
    assert mrr_at_k(["x", "y", "a"], rel, 10) == pytest.approx(1 / 3)
    assert mrr_at_k(["x", "y", "a"], rel, 2) == 0.0


def test_evaluate_averages_over_judged_queries():
    qrels = {"q1": {"a": 1}, "q2": {"b": 1, "c": 1}, "q3": {"z": 0}}  # q3 has nothing relevant: not scored
    run = {"q1": ["a"], "q2": ["x", "c"], "unjudged": ["a"]}
    got = evaluate(qrels, run)
    # q1: nDCG 1, recall 1, RR 1; q2: nDCG (1/log2(3)) / (1 + 1/log2(3)) = 0.38685, recall 0.5, RR 0.5
    assert got["ndcg@10"] == pytest.approx((1 + 0.386853) / 2, abs=1e-5)
    assert got["recall@100"] == pytest.approx(0.75)
    assert got["mrr@10"] == pytest.approx(0.75)
    assert evaluate({"q1": {"a": 1}}, {})["ndcg@10"] == 0.0  # a query without a run scores 0
    with pytest.raises(ValueError):
        evaluate({"q": {"a": 0}}, {})


def test_chunk_hits_aggregate_to_documents_by_best_chunk():
    hits = [("d1", 0.9), ("d2", 0.8), ("d1", 0.95), ("d3", 0.1), ("d2", 0.2)]
    assert docs_by_max_score(hits) == ["d1", "d2", "d3"]
    assert docs_by_max_score([("a", 0.1), ("b", 0.5)]) == ["b", "a"]
