"""Retriever families (issue 29.2): the family comes from the checkpoint's config, every family indexes,
searches and answers end to end with a tiny random model loaded through the product's own path
(``from_pretrained`` of the saved folder), its manifest records what it was built with, and a collection
refuses another retriever's queries with the re-index command named."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from pagelens.core.errors import CollectionMismatchError, ModelUnavailableError
from pagelens.core.types import CollectionManifest
from pagelens.models.families import (
    FAMILIES,
    UnsupportedModelError,
    detect_family,
    page_grid,
    pool_grid,
    supported_families,
)


@pytest.fixture(scope="session")
def tiny_families(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """ColModernVBert, ColQwen2.5 and Qwen2.5-VL tiny models (tests/make_tiny_families.py), once per session."""
    from make_tiny_families import build_tiny_families

    return build_tiny_families(tmp_path_factory.mktemp("tiny-families"))


def _invoice_pdf(path: Path, lines: list[str]) -> None:
    import pymupdf

    doc = pymupdf.open()
    page = doc.new_page(width=595, height=842)
    for n, line in enumerate(lines):
        page.insert_text((72, 100 + 24 * n), line, fontsize=14)
    doc.save(path)


# -- detection ------------------------------------------------------------------------------------


def test_every_family_colpali_engine_ships_is_supported() -> None:
    import colpali_engine.models as cm

    names = {f.name for f in supported_families()}
    shipped = {n for n in dir(cm) if n.startswith("Col") and not n.endswith("Processor") and "Processor" not in n}
    assert shipped <= names, shipped - names
    assert {"ColIdefics3", "ColModernVBert", "ColPali", "ColQwen2", "ColQwen2_5", "ColGemma3"} <= names


@pytest.mark.parametrize(
    ("config", "family"),
    [
        ({"architectures": ["ColIdefics3"], "model_type": "idefics3"}, "ColIdefics3"),
        ({"architectures": ["Idefics3ForConditionalGeneration"], "model_type": "idefics3"}, "ColIdefics3"),
        ({"architectures": ["ColQwen2_5"], "model_type": "qwen2_5_vl"}, "ColQwen2_5"),
        ({"architectures": ["ColQwen2"], "model_type": "qwen2_vl"}, "ColQwen2"),
        ({"model_type": "modernvbert"}, "ColModernVBert"),
        ({"architectures": ["ColPali"], "model_type": "paligemma"}, "ColPali"),
        ({"model_type": "gemma3"}, "ColGemma3"),
        ({"model_type": "qwen3_vl"}, "ColQwen3"),
    ],
)
def test_family_from_config(config: dict, family: str) -> None:
    assert detect_family(config).name == family


def test_unknown_family_lists_the_supported_ones() -> None:
    with pytest.raises(UnsupportedModelError) as err:
        detect_family({"architectures": ["BertModel"], "model_type": "bert"}, where="/m/config.json")
    msg = err.value.message
    assert "/m/config.json" in msg and "'bert'" in msg and "PAGELENS_RETRIEVER_MODEL" in msg
    for name in ("ColIdefics3", "ColModernVBert", "ColQwen2_5", "ColPali"):
        assert name in msg
    assert err.value.detail["supported"] == [f.name for f in supported_families()]


def test_unknown_family_fails_at_load(tmp_path: Path, settings_factory) -> None:
    from pagelens.models.embedder import ColEmbedder

    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "config.json").write_text(json.dumps({"model_type": "bert", "architectures": ["BertModel"]}))
    with pytest.raises(UnsupportedModelError, match="not a retriever family pagelens supports"):
        ColEmbedder(settings_factory(retriever_model=str(tmp_path / "m"))).load()


def test_pool_grid_and_page_grid() -> None:
    import torch

    vecs = torch.arange(6 * 2, dtype=torch.float32).reshape(6, 2)  # 2 x 3 grid, dim 2
    rows, cols = pool_grid(vecs, (2, 3))
    assert rows.tolist() == [[2.0, 3.0], [8.0, 9.0]]
    assert cols.tolist() == [[3.0, 4.0], [5.0, 6.0], [7.0, 8.0]]
    mean_r, mean_c = pool_grid(vecs, (4, 4))  # count does not fit: one mean vector
    assert mean_r.tolist() == mean_c.tolist() == [[5.0, 6.0]]
    qwen = next(f for f in FAMILIES if f.name == "ColQwen2_5")
    assert page_grid(qwen, 54, [1, 18, 12], merge=2) == (9, 6)
    colpali = next(f for f in FAMILIES if f.name == "ColPali")
    assert page_grid(colpali, 1024) == (32, 32) and page_grid(colpali, 1000) is None


# -- manifest check ---------------------------------------------------------------------------------


class _Loaded:
    def __init__(self, model_id: str, family: str, dim: int = 128) -> None:
        self.model_id, self.model_revision, self._family, self._dim = model_id, None, family, dim
        self.loaded = True

    @property
    def dim(self) -> int:
        return self._dim

    def load(self) -> None:
        pass

    def manifest_fields(self) -> dict[str, str]:
        return {"family": self._family}


def test_manifest_check_names_both_retrievers_and_the_reindex_command() -> None:
    from pagelens.models.embedder import check_manifest

    manifest = CollectionManifest(name="docs", model_id="/m/colsmol", model_revision=None, dim=128,
                                  family="ColIdefics3")
    check_manifest(manifest, _Loaded("/m/colsmol", "ColIdefics3"))  # same: no error
    with pytest.raises(CollectionMismatchError) as err:
        check_manifest(manifest, _Loaded("/m/colqwen", "ColQwen2_5"))
    msg = err.value.message
    assert "'/m/colsmol' (ColIdefics3, dim 128)" in msg and "'/m/colqwen' (ColQwen2_5, dim 128)" in msg
    assert "PAGELENS_RETRIEVER_MODEL=/m/colsmol" in msg and "pagelens index PATHS -c docs --reindex" in msg
    # the same path now holding another family (a replaced local folder) is refused too
    with pytest.raises(CollectionMismatchError, match="ColModernVBert"):
        check_manifest(manifest, _Loaded("/m/colsmol", "ColModernVBert"))
    # a manifest from before families were recorded: the model id decides
    old = CollectionManifest.from_dict({"name": "docs", "model_id": "/m/colsmol", "dim": 128})
    assert old.family == "" and old.to_dict()["family"] == ""
    check_manifest(old, _Loaded("/m/colsmol", "ColIdefics3"))


# -- end to end per family ------------------------------------------------------------------------------


def _run_family(settings_factory, tmp_path: Path, retriever: Path, family: str, workers: int = 0) -> None:
    """Index two invoices (``workers`` page-preparation processes; 2: the processor is pickled to them and
    the two documents' batches are merged into one forward), search in two modes, answer (tiny SmolVLM)."""
    from pagelens import Pagelens

    docs = tmp_path / "docs"
    docs.mkdir()
    _invoice_pdf(docs / "acme.pdf", ["ACME GmbH", "Invoice 0042", "Total amount due: 1,234.00 EUR"])
    _invoice_pdf(docs / "globex.pdf", ["Globex Corp", "Invoice 7", "Total amount due: 99.00 USD"])
    settings = settings_factory(retriever_model=str(retriever), max_new_tokens=4, ingest_workers=workers,
                                tuning={"batch_across_documents": "on" if workers else "off"})
    with Pagelens(settings=settings) as lens:
        report = lens.index(docs, collection="fam")
        assert report.pages_indexed == 2 and not report.errors
        manifest = lens.service.store.get_manifest("fam")
        assert manifest is not None and manifest.family == family and manifest.dim == 128
        assert manifest.processor.endswith("Processor") and manifest.score_scale.startswith("maxsim")
        assert manifest.page_tokens
        embedder = lens.service.embedder
        assert embedder.family.name == family  # type: ignore[attr-defined]
        emb = embedder.embed_pages([_page(docs / "acme.pdf")])[0]
        assert emb.full.shape[1] == emb.rows.shape[1] == emb.cols.shape[1] == 128
        assert emb.rows.shape[0] > 1 and emb.cols.shape[0] > 1  # a real patch grid, not the mean fallback
        assert np.allclose(np.linalg.norm(emb.full, axis=1), 1.0, atol=1e-4)
        for mode in ("visual", "hybrid"):
            hits = lens.search("total amount due", collection="fam", k=2, mode=mode)
            assert sorted(h.doc_name for h in hits) == ["acme.pdf", "globex.pdf"]
        visual = lens.search("total amount due", collection="fam", k=2, mode="visual")
        q = embedder.embed_queries(["total amount due"])[0]
        assert 0 < visual[0].score <= q.shape[0] + 1e-3  # MaxSim of unit vectors: at most n_query_tokens
        answer = lens.ask("What is the total amount due?", collection="fam", k=1)
        assert len(answer.citations) == 1 and answer.citations[0].doc_name in {"acme.pdf", "globex.pdf"}
        assert answer.generated_tokens >= 1


def _page(pdf: Path):
    import pymupdf
    from PIL import Image

    with pymupdf.open(pdf) as doc:
        pix = doc[0].get_pixmap(dpi=72)
        return Image.frombytes("RGB", (pix.width, pix.height), pix.samples)


@pytest.mark.slow
def test_colidefics3_end_to_end(settings_factory, tmp_path: Path, tiny_models: dict[str, Path]) -> None:
    _run_family(settings_factory, tmp_path, tiny_models["retriever"], "ColIdefics3")


@pytest.mark.slow
def test_colmodernvbert_end_to_end(settings_factory, tmp_path: Path, tiny_families: dict[str, Path]) -> None:
    _run_family(settings_factory, tmp_path, tiny_families["colmodernvbert"], "ColModernVBert")


@pytest.mark.extended
@pytest.mark.slow
def test_colqwen2_5_end_to_end(settings_factory, tmp_path: Path, tiny_families: dict[str, Path]) -> None:
    _run_family(settings_factory, tmp_path, tiny_families["colqwen2_5"], "ColQwen2_5", workers=2)


@pytest.mark.slow
def test_colpali_end_to_end(settings_factory, tmp_path: Path, tiny_families: dict[str, Path]) -> None:
    """The "square" layout: PaliGemma's fixed 16 x 16 grid (tiny config) pools into 16 rows and 16 columns."""
    _run_family(settings_factory, tmp_path, tiny_families["colpali"], "ColPali")
    from pagelens.models.embedder import ColEmbedder

    embedder = ColEmbedder(settings_factory(retriever_model=str(tiny_families["colpali"])))
    emb = embedder.embed_pages([_page_image()])[0]
    assert emb.rows.shape == emb.cols.shape == (16, 128)


def _page_image():
    from PIL import Image

    return Image.new("RGB", (595, 842), "white")


@pytest.mark.slow
def test_collection_refuses_another_familys_queries(settings_factory, tmp_path: Path,
                                                    tiny_models: dict[str, Path],
                                                    tiny_families: dict[str, Path]) -> None:
    from pagelens import Pagelens

    docs = tmp_path / "docs"
    docs.mkdir()
    _invoice_pdf(docs / "acme.pdf", ["ACME GmbH", "Total amount due: 1,234.00 EUR"])
    with Pagelens(settings=settings_factory(ingest_workers=0)) as lens:
        assert lens.index(docs, collection="smol").pages_indexed == 1
    with Pagelens(settings=settings_factory(retriever_model=str(tiny_families["colqwen2_5"]))) as lens:
        with pytest.raises(CollectionMismatchError) as err:
            lens.search("total", collection="smol", mode="visual")
        assert "ColIdefics3" in err.value.message and "--reindex" in err.value.message
        assert f"PAGELENS_RETRIEVER_MODEL={tiny_models['retriever']}" in err.value.message
        assert len(lens.search("total", collection="smol", mode="text")) == 1  # text search needs no retriever


# -- answer-model families (issue 29.3) -----------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("answerer", ["smolvlm", "qwen2_5_vl"])
def test_answer_families_keep_prompt_budget_and_citations(settings_factory, tmp_path: Path, answerer: str,
                                                          tiny_models: dict[str, Path],
                                                          tiny_families: dict[str, Path]) -> None:
    """SmolVLM (the default) and a Qwen2.5-VL-class model answer through the same answerer: the pages shown
    fit ``max_image_tokens`` (the processor's own count), the prompt carries each page's label and the
    question, and the citations are exactly the pages shown, in rank order."""
    from pagelens.answer.prompt import INSTRUCTION, build_messages
    from PIL import Image

    from pagelens import Pagelens

    model = tiny_models["answerer"] if answerer == "smolvlm" else tiny_families["qwen2_5_vl"]
    docs = tmp_path / "docs"
    docs.mkdir()
    for name in ("a", "b", "c"):
        _invoice_pdf(docs / f"{name}.pdf", [f"Vendor {name}", "Total amount due: 10.00 EUR"])
    settings = settings_factory(answer_model=str(model), max_new_tokens=4, ingest_workers=0)
    with Pagelens(settings=settings) as lens:
        assert lens.index(docs, collection="c").pages_indexed == 3
        hits = lens.search("total amount due", collection="c", k=3, mode="visual")
        ans = lens.service.answerer
        per_page = []
        for h in hits:  # the stored page images the answerer opens
            with Image.open(h.image_path) as image:
                per_page.append(ans.tokens_per_image(image))  # type: ignore[attr-defined]
        assert all(n > 0 for n in per_page)
        budget = per_page[0] + per_page[1]  # room for exactly two pages
        lens.service.settings.tuning.max_image_tokens = budget
        answer = ans.answer("What is the total amount due?", hits, k=3)
        assert [(c.doc_name, c.page_no) for c in answer.citations] == [(h.doc_name, h.page_no) for h in hits[:2]]
        assert answer.image_tokens <= budget and answer.image_tokens > 0
        assert answer.generated_tokens >= 1 and answer.model_id == str(model)
        prompt = ans.processor.apply_chat_template(build_messages("What is the total amount due?", hits[:2]),
                                                   add_generation_prompt=True)
        assert f"Document: {hits[0].doc_name}, page 1:" in prompt and INSTRUCTION in prompt
        assert answer.prompt_tokens > answer.image_tokens


@pytest.mark.slow
def test_answer_model_that_cannot_answer_is_refused_with_the_reason(settings_factory, tmp_path: Path,
                                                                    tiny_families: dict[str, Path]) -> None:
    """A retriever checkpoint is not an image-text-to-text model; a processor without a chat template
    cannot build the prompt: both fail at load naming the folder, the reason and the setting."""
    import shutil

    from pagelens.answer import SmolVLMAnswerer

    with pytest.raises(ModelUnavailableError) as err:
        SmolVLMAnswerer(settings_factory(answer_model=str(tiny_families["colmodernvbert"]))).load()
    assert "not an image-text-to-text model" in err.value.message and "PAGELENS_ANSWER_MODEL" in err.value.message
    bare = tmp_path / "no-template"
    shutil.copytree(tiny_families["qwen2_5_vl"], bare)
    (bare / "chat_template.jinja").unlink()
    with pytest.raises(ModelUnavailableError, match="no chat template"):
        SmolVLMAnswerer(settings_factory(answer_model=str(bare))).load()


@pytest.mark.slow
def test_preprocess_on_model_device_falls_back_for_other_families(settings_factory, tmp_path: Path,
                                                                    tiny_families: dict[str, Path],
                                                                    caplog: pytest.LogCaptureFixture) -> None:
    """PAGELENS_TUNING__PREPROCESS_DEVICE=model is the Idefics3 processor call: a ColQwen2.5 retriever says
    once that it preprocesses on the CPU, and the ingest workers keep preparing its batches."""
    import logging

    from pagelens.index.pipeline.indexer import Indexer

    from pagelens import Pagelens

    docs = tmp_path / "docs"
    docs.mkdir()
    _invoice_pdf(docs / "acme.pdf", ["ACME GmbH", "Total amount due: 1,234.00 EUR"])
    settings = settings_factory(retriever_model=str(tiny_families["colqwen2_5"]), ingest_workers=0,
                                tuning={"preprocess_device": "model", "image_processor_backend": "torchvision"})
    with caplog.at_level(logging.WARNING, logger="pagelens.models.embedder"), Pagelens(settings=settings) as lens:
        assert lens.index(docs, collection="q").pages_indexed == 1
        service = lens.service
        indexer = Indexer(service.settings, service.embedder, service.store, service.images)
        assert indexer.preprocessor() is not None  # the workers run process_images
        assert len(lens.search("total", collection="q", mode="visual")) == 1
    warned = [r.getMessage() for r in caplog.records if "PREPROCESS_DEVICE=model" in r.getMessage()]
    assert len(warned) == 1 and "ColQwen2_5" in warned[0]
