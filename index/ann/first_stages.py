"""The first stages of a visual search, behind one small interface, so a better one can replace them.

A first stage proposes candidate pages for a query; the int8 rerank and Qdrant's exact MaxSim order
them (``pagelens.index.stores.edge_store``), and the self-check (``pagelens.index.ann.self_check``)
measures each stage's recall on the collection's own probe queries to decide which one searches use.
Every stage here reads the collection's ``RerankCache``; add one by implementing ``FirstStage`` and
listing it in ``first_stages``.

A search takes a stage's ``prepare()`` under the store's lock (a few references: the cache's files,
id list and live mask as of now) and calls what it returns outside, so the stage's kernel runs while
writers and other searches go on.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

import numpy as np
from pagelens.index.ann.fast_rerank import RerankCache, ScanView

Candidates = Callable[[np.ndarray, int], list[str]]
"""(query [n_q, dim] float32, width) -> page ids, best first."""


def _none(query: np.ndarray, width: int) -> list[str]:
    return []


def _ranking(view: ScanView | None) -> Candidates:
    """The ``width`` best pages of ``view``'s ranking of every page (``_none`` without a view)."""
    if view is None:
        return _none
    return lambda query, width: view.best(query, width) if width >= 1 else []


class FirstStage(Protocol):
    """``candidates(query [n_q, dim] float32, width) -> page ids``, best first. ``width`` is the stage's
    own knob (ignored by ``scan``, which returns its ``width`` best pages of all). ``prepare()``: the same
    function over the cache as it is now, safe to call outside the store's lock."""

    name: str

    def prepare(self) -> Candidates: ...

    def candidates(self, query: np.ndarray, width: int) -> list[str]: ...


class _Stage:
    name = ""

    def prepare(self) -> Candidates:
        raise NotImplementedError

    def candidates(self, query: np.ndarray, width: int) -> list[str]:
        return self.prepare()(query, width)


class ScanStage(_Stage):
    """Every page's centred int8 codes (``RerankCache.scan``): holds on any geometry, costs one pass."""

    name = "scan"

    def __init__(self, cache: RerankCache) -> None:
        self.cache = cache

    def prepare(self) -> Candidates:
        return _ranking(self.cache.scan_view())


class PooledStage(_Stage):
    """MaxSim on every page's row and column means (``RerankCache.pooled_candidates``): the union of the
    best ``width`` by rows and the best ``width`` by columns. Fast; blind to what pooling blurs."""

    name = "pooled"

    def __init__(self, cache: RerankCache, device: str = "cpu") -> None:
        self.cache, self.device = cache, device

    def prepare(self) -> Candidates:
        return self.cache.pooled_search(self.device)


class TokenStage(_Stage):
    """The token codebook's inverted lists (``pagelens.index.ann.token_index``): the best ``width`` pages
    (the store tops them up from the int8 scan when fewer pages share a probed cell with the query)."""

    name = "tokens"

    def __init__(self, cache: RerankCache, nprobe: int = 16) -> None:
        self.cache, self.nprobe = cache, nprobe

    def prepare(self) -> Candidates:
        return self.cache.token_search(self.nprobe) or _none


class DedupStage(_Stage):
    """Every page's int8 codes without its near-duplicate tokens (``pagelens.index.ann.dedup_index``): the
    whole-collection scan over the tokens that differ (16% of them on the anisotropic generator), so it
    holds where the scan holds, for a fraction of its cost; the best ``width`` pages."""

    name = "dedup"

    def __init__(self, cache: RerankCache) -> None:
        self.cache = cache

    def prepare(self) -> Candidates:
        return _ranking(self.cache.dedup_view())


class SketchStage(_Stage):
    """Every page's tokens in the collection's top principal components (``pagelens.index.ann.sketch_index``):
    the whole-collection scan in fewer dimensions, so about half its cost; the best ``width`` pages."""

    name = "sketch"

    def __init__(self, cache: RerankCache) -> None:
        self.cache = cache

    def prepare(self) -> Candidates:
        return self.cache.sketch_search() or _none


def first_stages(cache: RerankCache, device: str = "cpu", token_nprobe: int = 16,
                 with_tokens: bool = True) -> dict[str, FirstStage]:
    """The stages ``cache`` supports now: scan and pooled always, tokens, dedup and sketch when their
    indexes cover the cache."""
    stages: dict[str, FirstStage] = {"scan": ScanStage(cache), "pooled": PooledStage(cache, device)}
    if with_tokens and cache.token_index_ready():
        stages["tokens"] = TokenStage(cache, token_nprobe)
    if cache.dedup_ready():
        stages["dedup"] = DedupStage(cache)
    if cache.sketch_ready():
        stages["sketch"] = SketchStage(cache)
    return stages
