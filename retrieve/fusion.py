"""Rank fusion of several rankings of the same items (pure functions, no store access).

Two methods, both weighted:

* ``rrf``: reciprocal rank fusion (Cormack, Clarke, Buettcher, SIGIR 2009):
  ``score(d) = sum_i w_i / (k + rank_i(d))``, ``rank_i`` 1-based, lists where ``d`` is absent add 0.
  Only ranks count, so scores on different scales (MaxSim, BM25) need no calibration.
* ``dbsf``: distribution-based score fusion (as Qdrant's ``Fusion.DBSF``): each list's scores are
  normalised to ``(s - (mean - 3 std)) / (6 std)`` clipped to [0, 1] (population std over the list;
  a list whose scores are all equal normalises to 1.0), then ``score(d) = sum_i w_i * norm_i(d)``,
  absent adds 0. Unlike RRF it keeps how far ahead an item is: a ranking with one clear winner
  (an exact phrase in BM25) is not overruled by a ranking of near-equal scores.

Ties are broken by the best rank the item has in any list, then by id, so results are deterministic.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field


@dataclass
class FusedItem:
    """One fused result: ``score`` is the fused score; ``ranks`` / ``scores`` per input list name
    (1-based rank and the raw input score) for the lists the item appeared in."""

    id: str
    score: float
    ranks: dict[str, int] = field(default_factory=dict)
    scores: dict[str, float] = field(default_factory=dict)


def _weights(names: Sequence[str], weights: Mapping[str, float] | None) -> dict[str, float]:
    w = {name: 1.0 for name in names}
    if weights:
        for name, value in weights.items():
            if name in w:
                if value < 0 or not math.isfinite(value):
                    raise ValueError(f"fusion weight of {name!r} must be finite and >= 0, got {value}")
                w[name] = float(value)
    return w


def _collect(rankings: Mapping[str, Sequence[tuple[str, float]]]) -> dict[str, FusedItem]:
    items: dict[str, FusedItem] = {}
    for name, ranking in rankings.items():
        seen: set[str] = set()
        for rank, (item_id, score) in enumerate(ranking, start=1):
            if item_id in seen:
                raise ValueError(f"ranking {name!r} lists {item_id!r} twice")
            seen.add(item_id)
            item = items.setdefault(item_id, FusedItem(item_id, 0.0))
            item.ranks[name] = rank
            item.scores[name] = float(score)
    return items


def _sorted(items: dict[str, FusedItem], limit: int | None) -> list[FusedItem]:
    out = sorted(items.values(), key=lambda it: (-it.score, min(it.ranks.values()), it.id))
    return out if limit is None else out[:limit]


def rrf(
    rankings: Mapping[str, Sequence[tuple[str, float]]],
    k: float = 60.0,
    weights: Mapping[str, float] | None = None,
    limit: int | None = None,
) -> list[FusedItem]:
    """Reciprocal rank fusion of ``{list name: [(id, score), ...] best first}``.

    ``k`` > 0: larger flattens the rank curve (60 in the paper and in Qdrant/Elasticsearch);
    ``weights``: per list name, default 1.0."""
    if k <= 0:
        raise ValueError(f"rrf k must be > 0, got {k}")
    w = _weights(list(rankings), weights)
    items = _collect(rankings)
    for item in items.values():
        item.score = sum(w[name] / (k + rank) for name, rank in item.ranks.items())
    return _sorted(items, limit)


def dbsf_normalise(scores: Sequence[float]) -> list[float]:
    """``(s - (mean - 3 std)) / (6 std)`` clipped to [0, 1]; all 1.0 when std is 0 (or one score)."""
    if not scores:
        return []
    n = len(scores)
    mean = sum(scores) / n
    std = math.sqrt(sum((s - mean) ** 2 for s in scores) / n)
    if std == 0.0:
        return [1.0] * n
    low = mean - 3.0 * std
    return [min(1.0, max(0.0, (s - low) / (6.0 * std))) for s in scores]


def dbsf(
    rankings: Mapping[str, Sequence[tuple[str, float]]],
    weights: Mapping[str, float] | None = None,
    limit: int | None = None,
) -> list[FusedItem]:
    """Distribution-based score fusion of ``{list name: [(id, score), ...] best first}``."""
    w = _weights(list(rankings), weights)
    items = _collect(rankings)
    for name, ranking in rankings.items():
        norm = dbsf_normalise([float(s) for _, s in ranking])
        for (item_id, _), value in zip(ranking, norm, strict=True):
            items[item_id].score += w[name] * value
    return _sorted(items, limit)
