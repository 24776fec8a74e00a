"""TF-IDF word replacement, a clean-room reimplementation of the augmentation of Xie et al.,
"Unsupervised Data Augmentation for Consistency Training" (NeurIPS 2020), as its code
google-research/uda (text/augmentation/word_level_augment.py, `tf_idf-p`) defines it.

On a corpus of documents (lists of words; UDA's are BERT's basic-tokenized words):
  idf(w)    = log(N / df(w)),  N documents, df(w) of them contain w
  tfidf(w)  = Σ_d Σ_{occurrences of w in d} idf(w) / |d|        (one corpus-level score per word)
In a document d with per-word scores s_i = count_d(w_i) / |d| · idf(w_i), word i is replaced with
probability
  p_i = (max_j s_j - s_i) / Σ_j (max_j s_j - s_j) · p · |d|
(uninformative, low-score words are replaced; the expected number replaced is p·|d|), by a word drawn
from the corpus with probability ∝ max_w tfidf(w) - tfidf(w) (again favouring uninformative words).
A document whose words all score the same has nothing to prefer and is kept (UDA divides by zero).

Randomness is a numpy Generator of the given seed; UDA's numpy global state gives other draws.
"""
import collections
import math

import numpy as np


def corpus_statistics(docs):
    """(idf, tfidf): dicts word -> float over the corpus `docs` (list of lists of str)."""
    doc_freq = collections.Counter(word for doc in docs for word in set(doc))
    idf = {word: math.log(len(docs) / df) for word, df in doc_freq.items()}
    tfidf = collections.defaultdict(float)
    for doc in docs:
        for word in doc:
            tfidf[word] += idf[word] / len(doc)
    return idf, dict(tfidf)


def replacement_probabilities(doc, idf, token_prob):
    """p_i of every word of `doc` ([len(doc)] float64; may exceed 1, i.e. always replaced)."""
    counts = collections.Counter(doc)
    scores = np.array([counts[w] / len(doc) * idf[w] for w in doc])
    gap = scores.max() - scores
    if gap.sum() == 0:
        return np.zeros(len(doc))
    return gap / gap.sum() * token_prob * len(doc)


class TfIdfWordReplacement:
    """UDA's `tf_idf-<token_prob>` on documents of the corpus `docs` it was built from."""

    def __init__(self, docs, token_prob, seed):
        if not 0 <= token_prob <= 1:
            raise ValueError(f"token_prob must be in [0, 1], got {token_prob}.")
        self.idf, tfidf = corpus_statistics(docs)
        self.token_prob = token_prob
        # Sorted by decreasing tfidf (UDA's order), so the draws do not depend on dict order.
        ranked = sorted(tfidf.items(), key=lambda item: (-item[1], item[0]))
        self.words = [w for w, _ in ranked]
        weight = np.array([s for _, s in ranked])
        weight = weight.max() - weight
        self.replacement_probs = weight / weight.sum() if weight.sum() > 0 else np.full(len(weight), 1 / len(weight))
        self._cdf = np.cumsum(self.replacement_probs)
        self._rng = np.random.default_rng(seed)

    def __call__(self, doc):
        """A new list: `doc` with some words replaced."""
        if not doc:
            return list(doc)
        replace = np.flatnonzero(self._rng.random(len(doc)) < replacement_probabilities(doc, self.idf, self.token_prob))
        picks = np.searchsorted(self._cdf, self._rng.random(len(replace)) * self._cdf[-1], side="right")
        out = list(doc)
        for i, k in zip(replace, np.minimum(picks, len(self.words) - 1)):
            out[i] = self.words[k]
        return out


def tf_idf_augment(docs, token_prob, seed):
    """The augmented copy of every document of `docs`, the statistics taken over `docs` (UDA: the
    original unlabeled set)."""
    op = TfIdfWordReplacement(docs, token_prob, seed)
    return [op(doc) for doc in docs]
