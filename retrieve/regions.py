"""Regions: where on a page a hit matched, as boxes in page fractions, from both channels.

A region is a dict (the contract shared with the UI, the API, the CLI, the MCP tools and the Python API)::

    {"x0": float, "y0": float, "x1": float, "y1": float,   # fractions of the page width / height, 0..1,
                                                           # origin top-left (hold at any render size)
     "source": "text" | "visual", "score": float,          # 0..1, see below
     "text": str}                                          # text regions only: the page words matched

**Text regions** (``text_regions``): the boxes of the page words (``pagelens.ingest.words``, kept at
ingest) that match a word of the question under the BM25 channel's own analysis
(``pagelens.index.stores.text_analysis``): each page word is analysed as a document term in the page's
language, each question word as a query (every analyser, as the text search does), and they match
when they share a term. So "Rechnungen" highlights "Rechnung" on a German page, and a CJK query
matches through the character bigrams (the box is then narrowed to the matched characters of a CJK
run, and a page word of several parts, "paid/volunteer", to the parts matched). Matched words next to
each other on a line become one region; its ``text`` is the matched words as printed, its ``score``
the share of the question's (indexable) words it holds.

**Visual regions** (``visual_regions``): for each query token (colpali's augmentation suffix left
out), the image patch of the page that won its max (MaxSim's max, taken over the image patches as
colpali's similarity maps do), mapped to the page through the processor's geometry
(``pagelens.models.patch_layout``), weighted by its dot product (the token's contribution), and
clustered (patches at most ``VISUAL_GAP`` cells apart join); a cluster's box covers its patches and
its ``score`` is its share of the summed maxima of the query tokens used. Computed from the full vectors of the returned pages only
(``bench/regions.py`` measures the cost per hit).

``merge_regions`` ranks both kinds together by score (text first on ties) and keeps at most
``max_regions``.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
from pagelens.index.stores.text_analysis import SPEC_VERSION, TextAnalyzer
from pagelens.ingest.words import WordBoxes

from pagelens.models.patch_layout import PatchLayout

Region = dict[str, Any]
MAX_REGIONS = 8
MAX_VISUAL = 4  # visual clusters kept per page before merging
VISUAL_GAP = 1  # patches up to this many cells apart (Chebyshev) join one cluster
MIN_VISUAL_SHARE = 0.02  # clusters holding less of the MaxSim are noise
_WORD = re.compile(r"\w+", re.UNICODE)
_CJK = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uac00-\ud7af]")


def region(x0: float, y0: float, x1: float, y1: float, source: str, score: float, text: str | None = None
           ) -> Region:
    """One region dict (coordinates clipped to [0, 1], rounded to 1e-4; score rounded to 1e-4)."""
    def c(v: float) -> float:
        return round(min(1.0, max(0.0, float(v))), 4)

    out: Region = {"x0": c(min(x0, x1)), "y0": c(min(y0, y1)), "x1": c(max(x0, x1)), "y1": c(max(y0, y1)),
                   "source": source, "score": round(float(score), 4)}
    if text is not None:
        out["text"] = text
    return out


# --- text -----------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=200_000)
def _word_terms(word: str, language: str, version: int) -> frozenset[int]:
    """Term ids of one page word analysed as document text in ``language`` (spec ``version``)."""
    indices, _ = TextAnalyzer(version).encode_document(word, language)
    return frozenset(indices)


def question_terms(question: str, version: int = SPEC_VERSION, query_languages: str = "all",
                   collection_languages: Iterable[str] = ()) -> list[tuple[str, frozenset[int]]]:
    """(word, its query term ids) per distinct word of ``question`` that has any (stopwords have none),
    analysed as the text search analyses a query (``TextAnalyzer.encode_query``)."""
    analyzer = TextAnalyzer(version or SPEC_VERSION, query_languages)
    languages = list(collection_languages)
    out: list[tuple[str, frozenset[int]]] = []
    for word in dict.fromkeys(_WORD.findall(question)):
        indices, _ = analyzer.encode_query(word, languages)
        if indices:
            out.append((word, frozenset(indices)))
    return out


def _same_line(a: np.ndarray, b: np.ndarray) -> bool:
    """Boxes a, b (x0, y0, x1, y1) are neighbours on one line: they overlap vertically by half the
    smaller height and the gap between them is under twice the line height."""
    overlap = min(a[3], b[3]) - max(a[1], b[1])
    height = min(a[3] - a[1], b[3] - b[1])
    if height <= 0 or overlap < 0.5 * height:
        return False
    gap = max(b[0] - a[2], a[0] - b[2])
    return bool(gap < 2.0 * max(a[3] - a[1], b[3] - b[1]))


def _slice(box: np.ndarray, a: float, b: float) -> np.ndarray:
    """The part of ``box`` from fraction ``a`` to ``b`` of its length along its longer side (characters
    taken as equal widths; vertical text is cut vertically)."""
    x0, y0, x1, y1 = (float(v) for v in box)
    if (x1 - x0) >= (y1 - y0):
        return np.array([x0 + a * (x1 - x0), y0, x0 + b * (x1 - x0), y1], dtype=np.float32)
    return np.array([x0, y0 + a * (y1 - y0), x1, y0 + b * (y1 - y0)], dtype=np.float32)


def _match_word(word: str, box: np.ndarray, terms: Sequence[tuple[str, frozenset[int]]], code: str, version: int
                ) -> tuple[set[int], str, np.ndarray]:
    """(indexes of the question words matched, the matched part of ``word``, its box) for one page word.

    A word of several parts ("paid/volunteer", "e-mail)") is matched part by part and the box narrowed to
    the matched parts; a CJK run matched through its characters is narrowed to the first question word
    found in it verbatim."""
    page_terms = _word_terms(word, code, version)
    if not page_terms:
        return set(), "", box
    hit = {k for k, (_, q) in enumerate(terms) if page_terms & q}
    if not hit:
        return hit, "", box
    if _CJK.search(word):
        for q, _ in terms:
            start = word.find(q)
            if start >= 0 and len(q) < len(word):
                return hit, q, _slice(box, start / len(word), (start + len(q)) / len(word))
        return hit, word, box
    parts = list(_WORD.finditer(word))
    if len(parts) > 1:
        matched = [m for m in parts if any(_word_terms(m.group(), code, version) & q for _, q in terms)]
        if matched:
            start, end = matched[0].start(), matched[-1].end()
            return hit, word[start:end], _slice(box, start / len(word), end / len(word))
    return hit, word, box


def text_regions(words: WordBoxes | None, terms: Sequence[tuple[str, frozenset[int]]], language: str | None,
                 version: int = SPEC_VERSION) -> list[Region]:
    """Text regions of one page (best first): boxes of its words matching ``terms``
    (``question_terms``), page words analysed in ``language`` (spec ``version``: 1 = English only)."""
    if words is None or not len(words) or not terms:
        return []
    code = (language or "und") if version >= 2 else "en"
    version = version or SPEC_VERSION
    matched: list[tuple[int, set[int], str, np.ndarray]] = []  # (word index, question words, part, box)
    for i, word in enumerate(words.words):
        hit, part, box = _match_word(word, words.boxes[i], terms, code, version)
        if hit:
            matched.append((i, hit, part, box))
    groups: list[tuple[list[int], set[int], list[str], list[np.ndarray]]] = []
    for i, hit, part, box in matched:
        if groups and groups[-1][0][-1] == i - 1 and _same_line(words.boxes[i - 1], words.boxes[i]):
            groups[-1][0].append(i)
            groups[-1][1].update(hit)
            groups[-1][2].append(part)
            groups[-1][3].append(box)
        else:
            groups.append(([i], set(hit), [part], [box]))
    out: list[Region] = []
    for _, hit, parts, boxes in groups:
        arr = np.stack(boxes)
        out.append(region(arr[:, 0].min(), arr[:, 1].min(), arr[:, 2].max(), arr[:, 3].max(), "text",
                          len(hit) / len(terms), " ".join(parts)))
    out.sort(key=lambda r: -r["score"])  # stable: reading order among equals
    return out


# --- visual ---------------------------------------------------------------------------------------


def patch_weights(query: np.ndarray, page: np.ndarray, layout: PatchLayout, query_mask: np.ndarray | None = None
                  ) -> tuple[np.ndarray, float]:
    """(weights float32 [rows * side, cols * side] over the local patch grid, their sum before spreading).

    query [n_q, dim], page [n_tokens, dim] (L2-normalised, float). Each query token (``query_mask``: the
    ones to use; None or all False: all) adds its max dot product over the page's image patches to the
    patch that won it, spread evenly over the cells that patch covers (a global-tile patch covers a
    block of cells); non-positive maxima add nothing. The max is taken over the image patches only (as
    colpali's similarity maps do): the prompt's tokens, which the page's MaxSim also ranges over, have
    no place on the page."""
    query = np.asarray(query, dtype=np.float32)
    page = np.asarray(page, dtype=np.float32)
    if query.ndim != 2 or page.ndim != 2 or query.shape[1] != page.shape[1]:
        raise ValueError(f"shape mismatch: query {query.shape}, page {page.shape}")
    layout.validate(page.shape[0])
    if query_mask is not None:
        mask = np.asarray(query_mask, dtype=bool)
        if mask.shape == (query.shape[0],) and mask.any():
            query = query[mask]
    patches = page[layout.image_positions]  # [n_image_tokens, dim], processor order
    sims = query @ patches.T  # [n_q, n_image_tokens]
    best = sims.argmax(axis=1)
    value = sims[np.arange(len(best)), best]
    cells = layout.token_cells()
    grid = np.zeros(layout.grid_shape, dtype=np.float32)
    for k, v in zip(best.tolist(), value.tolist(), strict=True):
        if v <= 0:
            continue
        r0, c0, r1, c1 = (int(x) for x in cells[k])
        grid[r0:r1, c0:c1] += v / ((r1 - r0) * (c1 - c0))
    return grid, float(np.clip(value, 0, None).sum())


def _clusters(grid: np.ndarray, gap: int) -> list[list[tuple[int, int]]]:
    """Cells with weight > 0 grouped: cells within ``gap`` cells (Chebyshev distance gap + 1) join."""
    cells = {(int(r), int(c)) for r, c in zip(*np.nonzero(grid > 0), strict=True)}
    out: list[list[tuple[int, int]]] = []
    while cells:
        seed = cells.pop()
        group, todo = [seed], [seed]
        while todo:
            r, c = todo.pop()
            for dr in range(-gap - 1, gap + 2):
                for dc in range(-gap - 1, gap + 2):
                    n = (r + dr, c + dc)
                    if n in cells:
                        cells.remove(n)
                        group.append(n)
                        todo.append(n)
        out.append(group)
    return out


def visual_regions(query: np.ndarray, page: np.ndarray, layout: PatchLayout, query_mask: np.ndarray | None = None,
                   max_regions: int = MAX_VISUAL) -> list[Region]:
    """Visual regions of one page (best first, at most ``max_regions``): clusters of the patches that
    won the query tokens' max (``patch_weights``), each boxed in page fractions, scored by its share of
    the MaxSim of the query tokens used."""
    grid, total = patch_weights(query, page, layout, query_mask)
    if total <= 0:
        return []
    out: list[Region] = []
    for group in _clusters(grid, VISUAL_GAP):
        share = float(sum(grid[r, c] for r, c in group)) / total
        if share < MIN_VISUAL_SHARE:
            continue
        r0, c0 = min(r for r, _ in group), min(c for _, c in group)
        r1, c1 = max(r for r, _ in group), max(c for _, c in group)
        x0, y0, _, _ = layout.cell_box(r0, c0)
        _, _, x1, y1 = layout.cell_box(r1, c1)
        out.append(region(x0, y0, x1, y1, "visual", share))
    out.sort(key=lambda r: (-r["score"], r["y0"], r["x0"]))
    return out[:max_regions]


def merge_regions(text: Sequence[Region], visual: Sequence[Region], max_regions: int = MAX_REGIONS) -> list[Region]:
    """Both kinds ranked together by score (text before visual on ties), at most ``max_regions``."""
    ranked = sorted([*text, *visual], key=lambda r: (-float(r["score"]), r["source"] != "text"))
    return ranked[:max(0, max_regions)]


def valid_region(data: Any) -> bool:
    """Whether ``data`` is a region dict as specified above (used to check regions given by clients)."""
    if not isinstance(data, dict) or data.get("source") not in ("text", "visual"):
        return False
    try:
        x0, y0, x1, y1 = (float(data[k]) for k in ("x0", "y0", "x1", "y1"))
    except (KeyError, TypeError, ValueError):
        return False
    return 0.0 <= x0 <= x1 <= 1.0 and 0.0 <= y0 <= y1 <= 1.0
