"""The index checks its own recall: probe queries drawn from the collection, scored exactly, decide how
the default visual search finds its candidates.

Why: how well a first stage guesses MaxSim's top pages depends on the geometry of the collection's
token vectors, which no setting can know in advance. On isotropic vectors pooled row/column means or
a token codebook find the exact top 5 among a few hundred candidates; on anisotropic ones (real
late-interaction embeddings fill a narrow cone) the same stages miss most of them (recall@5 0.265 at
1,000 pages, ``bench/retrieval.py --generator aniso``, 2026-12-06), while a pass over every page's
centred int8 codes (``RerankCache.scan``) does not. So at optimize time the store measures, on
``PROBES`` queries made from its own pages, the recall@5 of every first stage it has at growing
widths against exact MaxSim, and keeps the cheapest that reaches the target
(``Settings.search_recall_target``); when none does (not even the whole-collection scan), searches
run exact, and the log says so once.

Probe queries (``make_probes``): ``PROBE_TOKENS`` unit vectors each; ``PROBE_OWN`` are tokens of one
random page, each pulled towards a random token of another page (``0.7 own + 0.3 other``) and
perturbed, the rest are generic: each the direction of the sum of ``GENERIC_MIX`` random tokens of the
collection, which matches many pages a little and no page much, as a question's filler words and a
late-interaction model's query-augmentation tokens do. (Until 2026-12-06 the rest were copies of single
random tokens: each singled out the page it came from, a needle no real question holds, so the check
rejected first stages that find the exact top 5 of real-looking queries: on 10k pages of the isotropic
generator it measured the token index at 0.82 with 64 candidates, which found 1.000 on the benchmark's
queries; on the anisotropic generator the generic tokens make the probes no easier, bench/README.md.)

Truth (``Truth``): exact MaxSim (Qdrant's exact search, the product's own final stage) over every page
while the collection holds at most ``EXACT_TRUTH_MAX_ROWS`` token vectors; past that, exact MaxSim of
the ``SCAN_TRUTH_PAGES`` best pages of the int8 scan (named in the report).

Pure logic over callbacks (``Probe`` functions), so both stores and the bench can run it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np
from pagelens.index.ann.sketch_index import DIMS as SKETCH_DIMS

logger = logging.getLogger(__name__)

PROBES = 32  # probe queries per check
PROBE_TOKENS = 20  # tokens per probe query (a typical question's length with ColSmol)
PROBE_OWN = 12  # of them drawn from the probe's own page
GENERIC_MIX = 8  # random tokens summed into each of the other (generic) probe tokens
RECALL_K = 5  # the check measures recall@5 (ties within 1e-4 of the 5th exact score count)
EXACT_TRUTH_MAX_ROWS = 12_000_000  # token vectors up to which the truth is exact over every page
SCAN_TRUTH_PAGES = 512  # past that, exact MaxSim of the int8 scan's best pages
RERANK_KEEPS = (16, 32, 64, 128)  # pages passed to the exact stage, tried in this order
WIDTHS = (64, 128, 250, 500, 1000, 2000, 4000, 8000)  # first-stage candidates tried (pooled / tokens / dedup)
RECHECK_CHANGE = 0.25  # re-measure when the page count moved by more than this share since the check
RANKING_STAGES = frozenset({"dedup", "sketch"})
"""Stages that rank every page (``ScanView.best``), so their best ``w`` pages are the first ``w`` of their best
at the widest width and cost the same at any width: the check ranks once per probe and slices (at 100k
pages x 300 tokens the sketch's eight widths took 8 scans of ~430 ms per probe)."""

FirstStage = str  # "scan" | "pooled" | "tokens" | "dedup" | "sketch" | "hnsw" (Qdrant server) | "exact"


@dataclass
class SearchPlan:
    """How the default (``two_stage``) visual search of one collection runs, and why.

    first_stage: ``scan`` (every page's int8 codes), ``pooled`` (row/column means of every page),
      ``tokens`` (the token codebook's inverted lists), ``dedup`` (every page's distinct tokens),
      ``sketch`` (every token in the top principal components) or ``exact`` (no first stage: Qdrant scores
      every page exactly, chosen when no first stage reached the target).
    candidates: the first stage's width (0 for ``scan`` and ``exact``): ``tokens`` passes that many pages to
      the int8 rerank, ``pooled`` the union of that many by row means and that many by column means.
    rerank_keep: pages the int8 rerank passes to Qdrant's exact MaxSim.
    recall: measured recall@5 of this plan on the probes (None: not measured, the default plan).
    target: the recall it had to reach. pages: live pages when measured. seconds: the check's wall time.
    truth: how the exact top 5 was found. geometry: ``geometry`` of the collection's token vectors.
    trials: every configuration measured: {first_stage, candidates, rerank_keep, recall, est_ms}.
    """

    first_stage: FirstStage = "scan"
    candidates: int = 0
    rerank_keep: int = 16
    recall: float | None = None
    target: float = 0.95
    probes: int = 0
    pages: int = 0
    measured_at: str = ""
    seconds: float = 0.0
    truth: str = ""
    geometry: dict[str, float] = field(default_factory=dict)
    trials: list[dict[str, Any]] = field(default_factory=list)
    fallback: bool = False  # exact because no first stage reached the target (not because it is cheapest)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SearchPlan:
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        return cls(**known)

    def outdated(self, pages: int) -> bool:
        """Whether the collection moved enough since the check to measure again."""
        if self.recall is None or self.pages <= 0:
            return True
        return abs(pages - self.pages) > RECHECK_CHANGE * self.pages

    def summary(self) -> str:
        """One line for logs and the CLI."""
        if self.recall is None:
            default = "Qdrant's pooled HNSW prefetch, scored exactly" if self.first_stage == "hnsw" \
                else "int8 scan of every page, then exact MaxSim"
            return f"not measured yet (default: {default}); `pagelens optimize` measures it"
        how = {"scan": "int8 scan of every page",
               "exact": "exact MaxSim of every page" + (" (no first stage reached the target)" if self.fallback
                                                        else " (the cheapest here)"),
               "pooled": f"pooled vectors -> {self.candidates} candidates",
               "tokens": f"token index -> {self.candidates} candidates",
               "dedup": f"int8 scan of every page's distinct tokens -> {self.candidates} candidates",
               "sketch": f"int8 scan of every token in {SKETCH_DIMS} principal components -> {self.candidates} candidates",
               "hnsw": f"Qdrant's pooled HNSW prefetch -> {self.candidates} candidates"}.get(
                   self.first_stage, f"{self.first_stage} -> {self.candidates} candidates")
        rerank = {"exact": "", "hnsw": ", all scored exactly"}.get(self.first_stage, f" -> {self.rerank_keep} scored exactly")
        return (f"{how}{rerank}; recall@5 {self.recall:.3f} on {self.probes} probe queries "
                f"(target {self.target:.2f}, {self.pages} pages)")


@dataclass
class Probe:
    """What the check needs from a store (all vectors float32, query [n_q, dim]):

    sample_tokens(n_pages, rng): token vectors of ``n_pages`` random live pages, list of [n_tokens, dim].
    exact_top(query, k): the exact top ``k`` (id, score) over every page (Qdrant's exact search).
    exact_scores(query, ids): exact MaxSim of the given pages, {id: score}.
    scan(query, m): ids of the int8 scan's best ``m`` pages, best first.
    rerank(query, ids): approximate (int8) MaxSim of ``ids``, float32 [len(ids)].
    stages: the other first stages: name -> fn(query, width) -> candidate ids, best first.
    pages / rows: live pages and their token vectors in all.
    """

    sample_tokens: Callable[[int, np.random.Generator], list[np.ndarray]]
    exact_top: Callable[[np.ndarray, int], list[tuple[str, float]]]
    exact_scores: Callable[[np.ndarray, Sequence[str]], dict[str, float]]
    scan: Callable[[np.ndarray, int], list[str]]
    rerank: Callable[[np.ndarray, Sequence[str]], np.ndarray]
    stages: dict[str, Callable[[np.ndarray, int], list[str]]]
    pages: int
    rows: int


def _unit(x: np.ndarray) -> np.ndarray:
    return (x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)).astype(np.float32)


def make_probes(pages: list[np.ndarray], others: list[np.ndarray], rng: np.random.Generator) -> np.ndarray:
    """Probe queries [len(pages), PROBE_TOKENS, dim]: for each page of ``pages``, ``PROBE_OWN`` of its
    tokens pulled towards random tokens of ``others``, and generic tokens (each the normalised sum of
    ``GENERIC_MIX`` random tokens of ``others``), all plus noise."""
    pool = np.concatenate(others)
    dim = pool.shape[1]
    out = np.empty((len(pages), PROBE_TOKENS, dim), dtype=np.float32)
    for i, page in enumerate(pages):
        own = page[rng.integers(0, len(page), PROBE_OWN)]
        pull = pool[rng.integers(0, len(pool), PROBE_OWN)]
        mixed = pool[rng.integers(0, len(pool), (PROBE_TOKENS - PROBE_OWN, GENERIC_MIX))]
        rest = _unit(_unit(mixed).sum(axis=1))
        toks = np.concatenate([0.7 * _unit(own) + 0.3 * _unit(pull), rest])
        toks = toks + rng.standard_normal(toks.shape).astype(np.float32) * np.float32(0.2 / np.sqrt(dim))
        out[i] = _unit(toks)
    return out


def geometry(pages: list[np.ndarray], rng: np.random.Generator) -> dict[str, float]:
    """Facts about the token vectors of ``pages`` (each [n_tokens, dim]):

    mean_token_cosine: mean cosine of random pairs of tokens (0 for isotropic vectors; real
      late-interaction embeddings are published at up to 0.95);
    pca_dims_90: principal directions needed for 90% of the variance of the centred tokens;
    near_duplicate_share: share of tokens whose most similar other token on the same page has
      cosine >= 0.95 (white margins, repeated text lines).
    """
    tokens = _unit(np.concatenate(pages))
    a = tokens[rng.integers(0, len(tokens), 4000)]
    b = tokens[rng.integers(0, len(tokens), 4000)]
    mean_cos = float(np.mean(np.sum(a * b, axis=1)))
    sample = tokens[rng.integers(0, len(tokens), min(len(tokens), 20000))]
    centred = sample - sample.mean(axis=0)
    ev = np.linalg.eigvalsh(centred.T @ centred)[::-1]
    cum = np.cumsum(ev) / max(float(ev.sum()), 1e-12)
    pca90 = int(np.searchsorted(cum, 0.9) + 1)
    dup = []
    for page in pages[:16]:
        p = _unit(page)
        sim = p @ p.T
        np.fill_diagonal(sim, -1.0)
        dup.append(float(np.mean(sim.max(axis=1) >= 0.95)))
    return {"mean_token_cosine": round(mean_cos, 4), "pca_dims_90": pca90,
            "near_duplicate_share": round(float(np.mean(dup)) if dup else 0.0, 4)}


def _hits(got: Sequence[str], scores: dict[str, float], kth: float) -> float:
    tol = 1e-4 * max(1.0, abs(kth))
    return sum(1 for g in got[:RECALL_K] if scores.get(g, float("-inf")) >= kth - tol) / float(RECALL_K)


def run_check(probe: Probe, target: float, seed: int = 0, probes: int = PROBES) -> SearchPlan:
    """Measure every first stage and choose the plan (see the module docstring). Blocking: about
    ``probes`` exact searches plus as many scans (~10 s at 1,000 pages, ~1 min at 10,000 here)."""
    t0 = time.perf_counter()
    rng = np.random.default_rng(seed)
    plan = SearchPlan(target=target, pages=probe.pages, measured_at=datetime.now(UTC).isoformat(timespec="seconds"))
    if probe.pages == 0:
        plan.recall, plan.truth = 1.0, "empty collection"
        return plan
    picked = probe.sample_tokens(min(probes, probe.pages), rng)
    others = probe.sample_tokens(min(64, probe.pages), rng)
    queries = make_probes(picked, others, rng)
    plan.geometry = geometry(others, rng)
    plan.probes = len(queries)
    exact_all = probe.rows <= EXACT_TRUTH_MAX_ROWS
    plan.truth = ("exact MaxSim of every page" if exact_all
                  else f"exact MaxSim of the {SCAN_TRUTH_PAGES} best pages of the int8 scan")
    k = min(RECALL_K, probe.pages)
    widths = [w for w in WIDTHS if w < probe.pages]
    keeps = [r for r in RERANK_KEEPS if r <= max(RERANK_KEEPS[0], probe.pages)]
    recalls: dict[tuple[str, int, int], list[float]] = {}
    cost: dict[str, list[float]] = {"scan": [], "exact": [], "rerank_page": [], "exact_page": []}
    stage_ms: dict[str, list[float]] = {}
    for q in queries:
        t = time.perf_counter()
        if exact_all:
            top = probe.exact_top(q, k)
            cost["exact"].append((time.perf_counter() - t) * 1e3)
        t = time.perf_counter()
        scanned = probe.scan(q, max(keeps[-1], SCAN_TRUTH_PAGES if not exact_all else 0))
        cost["scan"].append((time.perf_counter() - t) * 1e3)
        if not exact_all:
            s = probe.exact_scores(q, scanned)
            top = sorted(s.items(), key=lambda kv: -kv[1])[:k]
        kth = top[-1][1]
        lists: dict[tuple[str, int, int], list[str]] = {}
        for r in keeps:
            lists[("scan", 0, r)] = scanned[:r]
        for name, stage in probe.stages.items():
            ranked: list[str] | None = None
            if name in RANKING_STAGES and widths:  # one ranking of every page serves every width
                t = time.perf_counter()
                ranked = stage(q, widths[-1])
                ranked_ms = (time.perf_counter() - t) * 1e3
            for w in widths:
                t = time.perf_counter()
                sub = ranked[:w] if ranked is not None else stage(q, w)
                stage_ms.setdefault(f"{name}:{w}", []).append(
                    ranked_ms if ranked is not None else (time.perf_counter() - t) * 1e3)
                t = time.perf_counter()
                approx = probe.rerank(q, sub)
                cost["rerank_page"].append((time.perf_counter() - t) * 1e3 / max(1, len(sub)))
                order = [sub[i] for i in np.argsort(-approx, kind="stable")]
                for r in keeps:
                    lists[(name, w, r)] = order[:r]
        need = sorted({i for ids in lists.values() for i in ids})
        t = time.perf_counter()
        exact = probe.exact_scores(q, need)
        cost["exact_page"].append((time.perf_counter() - t) * 1e3 / max(1, len(need)))
        for key, ids in lists.items():
            ranked = sorted(ids, key=lambda i: -exact.get(i, float("-inf")))
            recalls.setdefault(key, []).append(_hits(ranked, exact, kth))

    def med(xs: list[float]) -> float:
        return float(np.median(xs)) if xs else 0.0

    per_rerank, per_exact = med(cost["rerank_page"]), med(cost["exact_page"])
    trials: list[dict[str, Any]] = []
    for (name, w, r), rs in recalls.items():
        first = med(cost["scan"]) if name == "scan" else med(stage_ms[f"{name}:{w}"]) + w * per_rerank
        trials.append({"first_stage": name, "candidates": w, "rerank_keep": r, "recall": round(float(np.mean(rs)), 4),
                       "est_ms": round(first + r * per_exact, 2)})
    exact_ms = med(cost["exact"]) if cost["exact"] else probe.pages * per_exact
    trials.append({"first_stage": "exact", "candidates": 0, "rerank_keep": 0, "recall": 1.0,
                   "est_ms": round(exact_ms, 2)})
    trials.sort(key=lambda t: (t["est_ms"], t["first_stage"]))
    plan.trials = trials
    passing = [t for t in trials if t["recall"] >= target]
    best = passing[0]  # the exact trial always passes: the cheapest plan that reaches the target
    plan.fallback = all(t["first_stage"] == "exact" for t in passing)
    plan.first_stage, plan.candidates, plan.rerank_keep = best["first_stage"], best["candidates"], best["rerank_keep"]
    plan.recall = best["recall"]
    plan.seconds = round(time.perf_counter() - t0, 2)
    return plan


PLAN_FILE = "self_check.json"  # in the collection's rerank folder


def load_plan(folder: Any) -> SearchPlan | None:
    """The plan saved in ``folder`` (a ``pathlib.Path``), or None (none yet, or unreadable)."""
    import json

    try:
        return SearchPlan.from_dict(json.loads((folder / PLAN_FILE).read_text(encoding="utf-8")))
    except (OSError, ValueError, TypeError):
        return None


def save_plan(folder: Any, plan: SearchPlan) -> None:
    """Write ``plan`` to ``folder`` atomically."""
    import json
    import os

    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / (PLAN_FILE + ".tmp")
    tmp.write_text(json.dumps(plan.to_dict(), indent=1), encoding="utf-8")
    os.replace(tmp, folder / PLAN_FILE)
