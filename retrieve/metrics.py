"""Retrieval and answer metrics (pure functions; hand-checked in tests/test_metrics.py).

Retrieval, for one query: ``ranked`` is the system's list of item keys, best first (duplicates
after the first occurrence are ignored); ``relevant`` maps each relevant key to its gain (a set or
list means gain 1 for each). Definitions follow trec_eval / pytrec_eval as used by ViDoRe (MTEB):

* ``ndcg_at_k``: DCG@k / IDCG@k with linear gain, ``DCG = sum_{i=1..k} gain(ranked_i) / log2(i + 1)``,
  IDCG the same over the gains sorted descending. 0 when nothing is relevant.
* ``recall_at_k``: relevant keys in the top k / all relevant keys.
* ``reciprocal_rank``: 1 / rank of the first relevant key (0 if none, or none within ``k`` when given).
* ``precision_at_k``: relevant keys in the top k / k.

Answers (DocVQA conventions):

* ``normalize_answer``: lower case, punctuation and the articles a/an/the removed, whitespace
  collapsed (SQuAD); ``exact_match`` compares normalised strings, best over the references.
* ``anls``: Average Normalized Levenshtein Similarity (Biten et al., ICCV 2019; the DocVQA metric)
  of one prediction: ``max over references of (1 - NL)`` where ``NL = lev(a, b) / max(len(a), len(b))``
  on lower-cased, stripped strings, and 0 when ``NL >= threshold`` (0.5). The dataset ANLS is the mean.
"""

from __future__ import annotations

import math
import re
import string
from collections.abc import Hashable, Iterable, Mapping, Sequence

Relevance = Mapping[Hashable, float] | Iterable[Hashable]


def _gains(relevant: Relevance) -> dict[Hashable, float]:
    if isinstance(relevant, Mapping):
        return {key: float(g) for key, g in relevant.items() if float(g) > 0}
    return {key: 1.0 for key in relevant}


def _dedup(ranked: Sequence[Hashable]) -> list[Hashable]:
    seen: set[Hashable] = set()
    out = []
    for key in ranked:
        if key not in seen:
            seen.add(key)
            out.append(key)
    return out


def _check_k(k: int) -> None:
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")


def dcg(gains: Sequence[float]) -> float:
    """``sum_i gains[i] / log2(i + 2)`` for 0-based i (1-based rank r: ``/ log2(r + 1)``)."""
    return sum(g / math.log2(i + 2) for i, g in enumerate(gains))


def ndcg_at_k(ranked: Sequence[Hashable], relevant: Relevance, k: int) -> float:
    _check_k(k)
    gains = _gains(relevant)
    if not gains:
        return 0.0
    got = dcg([gains.get(key, 0.0) for key in _dedup(ranked)[:k]])
    ideal = dcg(sorted(gains.values(), reverse=True)[:k])
    return got / ideal


def recall_at_k(ranked: Sequence[Hashable], relevant: Relevance, k: int) -> float:
    _check_k(k)
    gains = _gains(relevant)
    if not gains:
        return 0.0
    return sum(1 for key in _dedup(ranked)[:k] if key in gains) / len(gains)


def precision_at_k(ranked: Sequence[Hashable], relevant: Relevance, k: int) -> float:
    _check_k(k)
    gains = _gains(relevant)
    return sum(1 for key in _dedup(ranked)[:k] if key in gains) / k


def reciprocal_rank(ranked: Sequence[Hashable], relevant: Relevance, k: int | None = None) -> float:
    gains = _gains(relevant)
    items = _dedup(ranked)
    if k is not None:
        _check_k(k)
        items = items[:k]
    for rank, key in enumerate(items, start=1):
        if key in gains:
            return 1.0 / rank
    return 0.0


def mean(values: Iterable[float]) -> float:
    vals = list(values)
    return sum(vals) / len(vals) if vals else 0.0


def percentile(values: Sequence[float], q: float) -> float:
    """Linear interpolation between closest ranks (numpy's default); ``q`` in [0, 100]."""
    if not 0 <= q <= 100:
        raise ValueError(f"percentile must be in [0, 100], got {q}")
    if not values:
        return 0.0
    vals = sorted(values)
    pos = (len(vals) - 1) * q / 100.0
    lo = math.floor(pos)
    hi = min(lo + 1, len(vals) - 1)
    return vals[lo] + (vals[hi] - vals[lo]) * (pos - lo)


# --- answers -----------------------------------------------------------------------------------

_PUNCT = set(string.punctuation)
_ARTICLES = re.compile(r"\b(a|an|the)\b")


def normalize_answer(text: str) -> str:
    text = (text or "").lower()
    text = "".join(ch for ch in text if ch not in _PUNCT)
    text = _ARTICLES.sub(" ", text)
    return " ".join(text.split())


def _refs(references: str | Sequence[str]) -> list[str]:
    return [references] if isinstance(references, str) else [str(r) for r in references]


def exact_match(prediction: str, references: str | Sequence[str]) -> float:
    """1.0 when the normalised prediction equals a normalised reference, else 0.0."""
    pred = normalize_answer(prediction)
    return 1.0 if any(pred == normalize_answer(ref) for ref in _refs(references)) else 0.0


def levenshtein(a: str, b: str) -> int:
    """Edit distance (insert, delete, substitute: cost 1 each)."""
    if len(a) < len(b):
        a, b = b, a
    previous = list(range(len(b) + 1))
    for i, ca in enumerate(a, start=1):
        current = [i]
        for j, cb in enumerate(b, start=1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (ca != cb)))
        previous = current
    return previous[-1]


def anls(prediction: str, references: str | Sequence[str], threshold: float = 0.5) -> float:
    """ANLS of one prediction against its references (see the module docstring)."""
    pred = " ".join((prediction or "").lower().split())
    best = 0.0
    for ref in _refs(references):
        gold = " ".join(ref.lower().split())
        longest = max(len(pred), len(gold))
        nl = levenshtein(pred, gold) / longest if longest else 0.0
        best = max(best, 1.0 - nl if nl < threshold else 0.0)
    return best
