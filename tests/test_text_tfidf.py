"""UDA's TF-IDF word replacement (influence_ssl/augment/tf_idf.py) on a corpus computed by hand.

docs: d0 = a b a, d1 = a c, d2 = b c d d (N = 3).
  idf:   a, b, c = log(3/2) (in 2 docs), d = log 3
  tfidf: a = (2/3 + 1/2) log 1.5, b = (1/3 + 1/4) log 1.5, c = (1/2 + 1/4) log 1.5, d = (2/4) log 3
  d2 with p = 0.5: s = (1/4 L, 1/4 L, 1/2 log 3, 1/2 log 3) -> gaps (g, g, 0, 0) -> p_i = (1, 1, 0, 0)
  d0: s = (2/3 L, 1/3 L, 2/3 L) -> only b has a gap -> p_b = 0.5 · 3 = 1.5 (always replaced)
  d1: equal scores -> nothing replaced
  replacement words ∝ max tfidf - tfidf: d never, a : b : c = (w_d - w_a) : (w_d - w_b) : (w_d - w_c)
"""
import math

import numpy as np
import pytest

from influence_ssl.augment import tf_idf

DOCS = [["a", "b", "a"], ["a", "c"], ["b", "c", "d", "d"]]
L15, L3 = math.log(1.5), math.log(3.0)
TFIDF = {"a": (2 / 3 + 1 / 2) * L15, "b": (1 / 3 + 1 / 4) * L15, "c": (1 / 2 + 1 / 4) * L15, "d": 0.5 * L3}


def test_statistics_and_replacement_probabilities_by_hand():
    idf, tfidf = tf_idf.corpus_statistics(DOCS)
    assert idf == pytest.approx({"a": L15, "b": L15, "c": L15, "d": L3})
    assert tfidf == pytest.approx(TFIDF)
    np.testing.assert_allclose(tf_idf.replacement_probabilities(DOCS[2], idf, 0.5), [1, 1, 0, 0])
    np.testing.assert_allclose(tf_idf.replacement_probabilities(DOCS[0], idf, 0.5), [0, 1.5, 0])
    np.testing.assert_allclose(tf_idf.replacement_probabilities(DOCS[1], idf, 0.5), [0, 0])


def test_replacements_follow_the_hand_computed_distribution():
    op = tf_idf.TfIdfWordReplacement(DOCS, 0.5, seed=0)
    gap = {w: TFIDF["d"] - v for w, v in TFIDF.items()}
    expected = {w: g / sum(gap.values()) for w, g in gap.items()}
    assert dict(zip(op.words, op.replacement_probs)) == pytest.approx(expected)
    outs = [op(DOCS[2]) for _ in range(3000)]
    assert all(out[2:] == ["d", "d"] for out in outs)  # zero replacement probability
    drawn = [w for out in outs for w in out[:2]]
    assert "d" not in drawn  # the most informative word is never drawn
    for word in "abc":
        assert abs(drawn.count(word) / len(drawn) - expected[word]) < 0.02
    assert all(op(DOCS[1]) == DOCS[1] for _ in range(100))
    assert all(op(DOCS[0])[::2] == ["a", "a"] for _ in range(100))


def test_seeded_and_input_untouched():
    docs = [list(d) for d in DOCS]
    first = tf_idf.tf_idf_augment(docs, 0.5, seed=7)
    assert first == tf_idf.tf_idf_augment(docs, 0.5, seed=7) and docs == DOCS
    assert tf_idf.tf_idf_augment(docs, 0.0, seed=7) == DOCS
    assert tf_idf.TfIdfWordReplacement(DOCS, 0.5, seed=0)([]) == []
    with pytest.raises(ValueError, match="token_prob"):
        tf_idf.TfIdfWordReplacement(DOCS, 1.5, seed=0)
