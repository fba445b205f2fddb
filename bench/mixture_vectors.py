"""Vectors of a geometry the product was not built on, for ``bench/retrieval.py --vectors``.

``bench.retrieval.Synth`` made every first stage and gate of the product (its ``iid``, ``aniso`` and
``lowrank`` generators). This writes a collection of another make, to check the self-check and the
default search on vectors none of that was tuned on (issue 25: "judged against exact MaxSim on vectors
it never saw"). What differs from ``Synth``:

* the spread is a **power law** (eigenvalue ``i`` of the token covariance ~ ``1 / i``, in a random
  basis), not a few dominant directions over an isotropic floor;
* a **cone of varying strength**: every vector has a share of one mean direction drawn per visual word
  (mean pairwise token cosine ~0.5);
* a **Zipf vocabulary** of 4,096 visual words: pages draw a topic of 30 words from it, so popular
  words are on most pages and rare ones on few;
* every page carries the **same 115 prompt tokens** (ColSmol embeds its prompt's text tokens with the
  image's), half its patches are one of 8 background words, 45% its topic's words with noise, 5% its
  own unique vectors;
* a query (24 tokens) has 5 **template tokens shared by every query** (a ColPali query's augmentation
  tokens), 12 noisy copies of random patches of one page (background ones included), and 7 popular-weighted
  words of nothing in particular.

    python bench/mixture_vectors.py --pages 1000 --out DIR
    python bench/retrieval.py --vectors DIR --exact

Writes ``DIR/pages.npy`` [N, 1139, 128] float16 and ``DIR/queries.npy`` [Q, 24, 128] float32 (unit
vectors), written a chunk of pages at a time (10k pages: 3 GB).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

DIM = 128
PATCHES = 1024  # a 32 x 32 grid of patches
PROMPT = 115  # shared prompt tokens: 1139 tokens per page, as a ColSmol page
VOCAB = 4096
BACKGROUND = 8
TOPIC = 30
CHUNK = 250


def unit(a: np.ndarray) -> np.ndarray:
    return a / np.linalg.norm(a, axis=-1, keepdims=True)


class Mixture:
    """The collection's fixed parts (basis, vocabulary, prompt, query template), from ``seed``."""

    def __init__(self, seed: int) -> None:
        self.rng = np.random.default_rng(seed)
        basis, _ = np.linalg.qr(self.rng.standard_normal((DIM, DIM)))
        self.scale = basis * np.sqrt(1.0 / np.arange(1, DIM + 1))[None, :]  # columns: eigen-directions
        self.mean = unit(self.rng.standard_normal(DIM))
        self.words = self.spread(VOCAB, cone=self.rng.uniform(1.0, 3.0, (VOCAB, 1)))
        popularity = 1.0 / np.arange(1, VOCAB + 1) ** 1.1
        self.popularity = popularity / popularity.sum()
        self.background = self.spread(BACKGROUND, cone=np.full((BACKGROUND, 1), 3.0))
        self.prompt = self.spread(PROMPT, cone=np.full((PROMPT, 1), 2.0))
        self.template = self.spread(5, cone=np.full((5, 1), 2.0))

    def spread(self, n: int, cone: np.ndarray) -> np.ndarray:
        """``n`` unit vectors: ``cone`` x the mean direction + the power-law spread [n, DIM]."""
        return unit(cone * self.mean + self.rng.standard_normal((n, DIM)) @ self.scale.T)

    def page(self, rng: np.random.Generator) -> np.ndarray:
        """The unit tokens of one page [1139, DIM]: patches (background, topic words, its own), then prompt."""
        topic = rng.choice(VOCAB, size=TOPIC, replace=False, p=self.popularity)
        kind = rng.random(PATCHES)
        out = np.empty((PATCHES, DIM))
        bg = kind < 0.5
        out[bg] = self.background[rng.integers(0, BACKGROUND, bg.sum())] + 0.02 * rng.standard_normal((bg.sum(), DIM))
        text = (kind >= 0.5) & (kind < 0.95)
        out[text] = (self.words[topic[rng.integers(0, TOPIC, text.sum())]]
                     + 0.15 * rng.standard_normal((text.sum(), DIM)) @ self.scale.T)
        own = kind >= 0.95
        out[own] = self.spread(int(own.sum()), cone=rng.uniform(1.0, 3.0, (int(own.sum()), 1)))
        prompt = self.prompt + 0.01 * rng.standard_normal((PROMPT, DIM))
        return unit(np.concatenate([out, prompt]))

    def query(self, rng: np.random.Generator, tokens: np.ndarray) -> np.ndarray:
        """24 unit tokens about one page (its ``tokens`` [1139, DIM]) [24, DIM]."""
        patches = tokens[:PATCHES]
        picks = patches[rng.integers(0, PATCHES, 12)]
        about = unit(picks + 0.08 * rng.standard_normal((12, DIM)))
        other = self.words[rng.choice(VOCAB, size=7, p=self.popularity)] + 0.1 * rng.standard_normal((7, DIM))
        return unit(np.concatenate([self.template, about, other])).astype(np.float32)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--pages", type=int, default=1000)
    ap.add_argument("--queries", type=int, default=40)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    mix = Mixture(args.seed)
    pages = np.lib.format.open_memmap(args.out / "pages.npy", mode="w+", dtype=np.float16,
                                      shape=(args.pages, PATCHES + PROMPT, DIM))
    rng = np.random.default_rng([args.seed, 1])
    targets = set(rng.choice(args.pages, size=args.queries, replace=False).tolist())
    queries = []
    for lo in range(0, args.pages, CHUNK):
        for i in range(lo, min(args.pages, lo + CHUNK)):
            tokens = mix.page(rng)
            pages[i] = tokens.astype(np.float16)
            if i in targets:
                queries.append(mix.query(rng, tokens))
        pages.flush()
    np.save(args.out / "queries.npy", np.stack(queries))
    sample = pages[: min(args.pages, 200)].astype(np.float32).reshape(-1, DIM)
    pick = rng.choice(len(sample), size=4000, replace=False)
    cos = sample[pick[:2000]] @ sample[pick[2000:]].T
    print(f"wrote {args.pages} pages x {PATCHES + PROMPT} tokens, {len(queries)} queries to {args.out}; "
          f"mean pairwise token cosine {cos.mean():.3f}")


if __name__ == "__main__":
    main()
