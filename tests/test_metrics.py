"""Metrics and fusion against values computed by hand (the arithmetic is in the comments)."""

from __future__ import annotations

import math

import pytest
from pagelens.retrieve import metrics
from pagelens.retrieve.fusion import dbsf, dbsf_normalise, rrf

RANKED = ["a", "b", "c", "d", "e"]
RELEVANT = {"b", "e", "x"}  # "x" is never retrieved


def test_recall_at_k() -> None:
    assert metrics.recall_at_k(RANKED, RELEVANT, 1) == 0.0  # a
    assert metrics.recall_at_k(RANKED, RELEVANT, 2) == pytest.approx(1 / 3)  # a b -> {b}
    assert metrics.recall_at_k(RANKED, RELEVANT, 5) == pytest.approx(2 / 3)  # {b, e} of 3
    assert metrics.recall_at_k(RANKED, RELEVANT, 10) == pytest.approx(2 / 3)  # k past the list
    assert metrics.recall_at_k(RANKED, set(), 5) == 0.0
    # a repeated item counts once and does not take a slot: b b e -> b e
    assert metrics.recall_at_k(["b", "b", "e"], {"b", "e"}, 2) == 1.0


def test_reciprocal_rank_and_precision() -> None:
    assert metrics.reciprocal_rank(RANKED, RELEVANT) == 0.5  # first relevant (b) at rank 2
    assert metrics.reciprocal_rank(RANKED, {"e"}) == 0.2
    assert metrics.reciprocal_rank(RANKED, {"e"}, k=4) == 0.0  # cut off before rank 5
    assert metrics.reciprocal_rank(RANKED, {"zz"}) == 0.0
    assert metrics.precision_at_k(RANKED, RELEVANT, 5) == pytest.approx(2 / 5)
    # MRR over queries = mean of reciprocal ranks: (1/2 + 1/5 + 0) / 3
    assert metrics.mean([0.5, 0.2, 0.0]) == pytest.approx(0.7 / 3)


def test_ndcg_binary() -> None:
    # relevant at ranks 2 and 5: DCG = 1/log2(3) + 1/log2(6) = 0.630930 + 0.386853 = 1.017783
    # ideal: three relevant at ranks 1..3: 1/log2(2) + 1/log2(3) + 1/log2(4) = 1 + 0.630930 + 0.5 = 2.130930
    assert metrics.ndcg_at_k(RANKED, RELEVANT, 5) == pytest.approx(1.017783 / 2.130930, abs=1e-6)
    assert metrics.ndcg_at_k(RANKED, RELEVANT, 5) == pytest.approx(0.477624, abs=1e-6)
    # one relevant page at rank 3: 1/log2(4) / 1 = 0.5; at rank 1: 1.0; outside the cut-off: 0
    assert metrics.ndcg_at_k(RANKED, {"c"}, 5) == pytest.approx(0.5)
    assert metrics.ndcg_at_k(RANKED, {"a"}, 5) == 1.0
    assert metrics.ndcg_at_k(RANKED, {"e"}, 4) == 0.0
    # k=1 with b relevant at rank 2: 0 / 1
    assert metrics.ndcg_at_k(RANKED, RELEVANT, 1) == 0.0
    assert metrics.ndcg_at_k(RANKED, set(), 5) == 0.0


def test_ndcg_graded() -> None:
    # gains a=1, c=3 in ranking a b c: DCG = 1/1 + 0 + 3/log2(4) = 2.5; ideal c a: 3 + 1/log2(3) = 3.630930
    assert metrics.ndcg_at_k(["a", "b", "c"], {"a": 1, "c": 3}, 3) == pytest.approx(2.5 / 3.630930, abs=1e-6)
    assert metrics.dcg([3, 2, 0, 1]) == pytest.approx(3 + 2 / math.log2(3) + 1 / math.log2(5))


def test_k_must_be_positive() -> None:
    with pytest.raises(ValueError):
        metrics.recall_at_k(RANKED, RELEVANT, 0)


def test_percentile() -> None:
    values = [4.0, 1.0, 3.0, 2.0]  # sorted 1 2 3 4; position (n-1) q/100
    assert metrics.percentile(values, 50) == 2.5  # pos 1.5
    assert metrics.percentile(values, 95) == pytest.approx(3.85)  # pos 2.85: 3 + 0.85
    assert metrics.percentile(values, 0) == 1.0
    assert metrics.percentile(values, 100) == 4.0
    assert metrics.percentile([7.0], 99) == 7.0
    assert metrics.percentile([], 50) == 0.0


def test_exact_match_normalisation() -> None:
    assert metrics.normalize_answer("  The  Answer, is: 42! ") == "answer is 42"
    assert metrics.exact_match("The answer.", "answer") == 1.0
    assert metrics.exact_match("an apple", ["pear", "Apple"]) == 1.0
    assert metrics.exact_match("42.0", "42") == 0.0  # "420" vs "42"


def test_levenshtein_and_anls() -> None:
    assert metrics.levenshtein("kitten", "sitting") == 3
    assert metrics.levenshtein("", "abc") == 3
    # "helo" vs "hello": 1 edit / 5 chars = NL 0.2 -> 0.8
    assert metrics.anls("helo", "hello") == pytest.approx(0.8)
    # case and outer/inner whitespace do not count
    assert metrics.anls("  Hello   World ", "hello world") == 1.0
    # NL >= 0.5 scores 0: "ab" vs "ac" is 1 / 2 = 0.5
    assert metrics.anls("ab", "ac") == 0.0
    # "abcd" vs "abce": NL 0.25 -> 0.75; best over references
    assert metrics.anls("abcd", ["zzzz", "abce"]) == pytest.approx(0.75)
    assert metrics.anls("", "") == 1.0
    # dataset ANLS = mean of per-question values: (0.8 + 1 + 0) / 3
    assert metrics.mean([metrics.anls("helo", "hello"), metrics.anls("x", "x"), metrics.anls("ab", "ac")]) == (
        pytest.approx(0.6)
    )


# --- fusion -------------------------------------------------------------------------------------

A = [("x", 3.0), ("y", 2.0), ("z", 1.0)]
B = [("y", 10.0), ("w", 0.0)]


def test_rrf_by_hand() -> None:
    fused = rrf({"a": A, "b": B}, k=60)
    # x: 1/61; y: 1/62 + 1/61; z: 1/63; w: 1/62
    got = {f.id: f.score for f in fused}
    assert got["x"] == pytest.approx(1 / 61)
    assert got["y"] == pytest.approx(1 / 62 + 1 / 61)
    assert got["z"] == pytest.approx(1 / 63)
    assert got["w"] == pytest.approx(1 / 62)
    assert [f.id for f in fused] == ["y", "x", "w", "z"]
    assert fused[0].ranks == {"a": 2, "b": 1} and fused[0].scores == {"a": 2.0, "b": 10.0}
    # weights: b counts 0 -> the order of a alone; w (only in b) scores 0 and comes last
    assert [f.id for f in rrf({"a": A, "b": B}, k=60, weights={"a": 1.0, "b": 0.0})] == ["x", "y", "z", "w"]
    # small k is top-heavy: k=1: x 1/2, y 1/3 + 1/2, z 1/4, w 1/3
    assert [f.id for f in rrf({"a": A, "b": B}, k=1, limit=2)] == ["y", "x"]


def test_rrf_ties_and_errors() -> None:
    # p and q each first in one list: equal scores; tie broken by best rank (both 1), then id
    assert [f.id for f in rrf({"a": [("q", 1.0)], "b": [("p", 1.0)]})] == ["p", "q"]
    with pytest.raises(ValueError):
        rrf({"a": [("x", 1.0), ("x", 0.5)]})
    with pytest.raises(ValueError):
        rrf({"a": A}, k=0)
    with pytest.raises(ValueError):
        rrf({"a": A}, weights={"a": -1.0})


def test_dbsf_by_hand() -> None:
    # A: mean 2, std sqrt(2/3) = 0.816497; low = 2 - 3 std = -0.449490; range 6 std = 4.898979
    #    x: (3 + 0.449490) / 4.898979 = 0.704124; y: 0.5; z: 0.295876
    # B: mean 5, std 5; low -10; range 30: y (10 + 10) / 30 = 0.666667; w 10 / 30 = 0.333333
    assert dbsf_normalise([3.0, 2.0, 1.0]) == pytest.approx([0.704124, 0.5, 0.295876], abs=1e-6)
    assert dbsf_normalise([5.0, 5.0]) == [1.0, 1.0]
    assert dbsf_normalise([]) == []
    fused = dbsf({"a": A, "b": B})
    got = {f.id: f.score for f in fused}
    assert got == pytest.approx({"x": 0.704124, "y": 1.166667, "z": 0.295876, "w": 0.333333}, abs=1e-6)
    assert [f.id for f in fused] == ["y", "x", "w", "z"]
    weighted = {f.id: f.score for f in dbsf({"a": A, "b": B}, weights={"a": 2.0, "b": 0.5})}
    assert weighted["y"] == pytest.approx(2 * 0.5 + 0.5 * 0.666667, abs=1e-6)
    # clipping: one outlier far above the rest normalises to at most 1
    assert max(dbsf_normalise([100.0] + [0.0] * 20)) == 1.0
