"""The first stages of a visual search, behind one small interface, so a better one can replace them.

A first stage proposes candidate pages for a query; the int8 rerank and Qdrant's exact MaxSim order
them (``pagelens.index.stores.edge_store``), and the self-check (``pagelens.index.ann.self_check``)
measures each stage's recall on the collection's own probe queries to decide which one searches use.
Every stage here reads the collection's ``RerankCache``; add one by implementing ``FirstStage`` and
listing it in ``first_stages``.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np
from pagelens.index.ann.fast_rerank import RerankCache


class FirstStage(Protocol):
    """``candidates(query [n_q, dim] float32, width) -> page ids``, best first. ``width`` is the stage's
    own knob (ignored by ``scan``, which returns its ``width`` best pages of all)."""

    name: str

    def candidates(self, query: np.ndarray, width: int) -> list[str]: ...


class ScanStage:
    """Every page's centred int8 codes (``RerankCache.scan``): holds on any geometry, costs one pass."""

    name = "scan"

    def __init__(self, cache: RerankCache) -> None:
        self.cache = cache

    def candidates(self, query: np.ndarray, width: int) -> list[str]:
        return self.cache.scan(query, width)


class PooledStage:
    """MaxSim on every page's row and column means (``RerankCache.pooled_candidates``): the union of the
    best ``width`` by rows and the best ``width`` by columns. Fast; blind to what pooling blurs."""

    name = "pooled"

    def __init__(self, cache: RerankCache, device: str = "cpu") -> None:
        self.cache, self.device = cache, device

    def candidates(self, query: np.ndarray, width: int) -> list[str]:
        return self.cache.pooled_candidates(query, width, self.device)


class TokenStage:
    """The token codebook's inverted lists (``pagelens.index.ann.token_index``): the best ``width`` pages
    (the store tops them up from the int8 scan when fewer pages share a probed cell with the query)."""

    name = "tokens"

    def __init__(self, cache: RerankCache, nprobe: int = 16) -> None:
        self.cache, self.nprobe = cache, nprobe

    def candidates(self, query: np.ndarray, width: int) -> list[str]:
        return self.cache.token_candidates(query, width, nprobe=self.nprobe)


class DedupStage:
    """Every page's int8 codes without its near-duplicate tokens (``pagelens.index.ann.dedup_index``): the
    whole-collection scan over the tokens that differ (16% of them on the anisotropic generator), so it
    holds where the scan holds, for a fraction of its cost; the best ``width`` pages."""

    name = "dedup"

    def __init__(self, cache: RerankCache) -> None:
        self.cache = cache

    def candidates(self, query: np.ndarray, width: int) -> list[str]:
        return self.cache.dedup_candidates(query, width)


def first_stages(cache: RerankCache, device: str = "cpu", token_nprobe: int = 16,
                 with_tokens: bool = True) -> dict[str, FirstStage]:
    """The stages ``cache`` supports now: scan and pooled always, tokens and dedup when their indexes
    cover the cache."""
    stages: dict[str, FirstStage] = {"scan": ScanStage(cache), "pooled": PooledStage(cache, device)}
    if with_tokens and cache.token_index_ready():
        stages["tokens"] = TokenStage(cache, token_nprobe)
    if cache.dedup_ready():
        stages["dedup"] = DedupStage(cache)
    return stages
