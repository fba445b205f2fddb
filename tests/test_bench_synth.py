"""The synthetic generators of bench/retrieval.py (issue 19.3): the anisotropic corpus has the
properties it claims (a narrow cone, a few dominant directions, near-duplicate background patches,
queries that only partly match), and the iid corpus is unchanged."""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.retrieval import DIM, Q_TOKENS, Synth  # noqa: E402


def sample_tokens(syn: Synth, n: int = 1500) -> np.ndarray:
    full = syn.gen_chunk(0)[0]
    rows = np.random.default_rng(0).choice(full.shape[0] * full.shape[1], n, replace=False)
    return full.reshape(-1, DIM)[rows]


def pair_cosines(x: np.ndarray) -> np.ndarray:
    cos = x @ x.T
    return cos[~np.eye(len(x), dtype=bool)]


def test_aniso_tokens_fill_a_narrow_cone_with_few_dominant_directions() -> None:
    iid, aniso = sample_tokens(Synth(200, 300)), sample_tokens(Synth(200, 300, generator="aniso"))
    assert abs(float(pair_cosines(iid).mean())) < 0.02  # independent directions: nearly orthogonal
    cos = pair_cosines(aniso)
    assert 0.4 < float(cos.mean()) < 0.8 and float(np.percentile(cos, 5)) > 0.0
    energy = np.linalg.svd(aniso, compute_uv=False) ** 2
    assert energy[:5].sum() / energy.sum() > 0.7  # a few directions carry most of it
    energy_iid = np.linalg.svd(iid, compute_uv=False) ** 2
    assert energy_iid[:5].sum() / energy_iid.sum() < 0.2
    assert float((cos > 0.95).mean()) > 0.02  # near-duplicate background patches
    assert float((pair_cosines(iid) > 0.95).mean()) < 0.01


def test_aniso_queries_only_partly_match_their_page() -> None:
    syn = Synth(200, 300, generator="aniso")
    queries, targets = syn.queries(4)
    assert queries.shape == (4, Q_TOKENS, DIM)
    np.testing.assert_allclose(np.linalg.norm(queries, axis=-1), 1.0, atol=1e-5)
    for q, t in zip(queries, targets, strict=True):
        page = syn.gen_chunk(int(t) // 100)[0][int(t) % 100]
        best = (q @ page.T).max(axis=1)  # each query token's best match on its target page
        assert float(best[:6].max()) < 0.97  # the content tokens are pulled off the page's vectors
        assert float(best.min()) < float(best.max())


def test_the_iid_corpus_is_unchanged_and_generators_are_checked() -> None:
    syn = Synth(200, 300)  # the default generator: the corpus of every earlier figure
    full, rows, cols, _ = syn.gen_chunk(1)
    digest = hashlib.sha256(np.round(full, 4).tobytes() + np.round(rows, 4).tobytes()
                            + np.round(syn.queries(3)[0], 4).tobytes()).hexdigest()
    assert digest == DIGEST_IID
    with pytest.raises(ValueError, match="generator"):
        Synth(10, 10, generator="gaussian")


DIGEST_IID = "006c83ab3d828d1c87287e3b991ea8b004d3ee184f0cb1aec9509cb2408ea8f1"  # the generator before the aniso option (rounded to 1e-4)
