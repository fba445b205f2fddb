"""ColSmolEmbedder over the tiny random ColIdefics3 saved by ``make_tiny_models`` (real loading path)."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from pagelens.core.devices import cpu_has_native_bf16, get_device, resolve_attn_implementation, resolve_dtype
from pagelens.core.errors import ModelUnavailableError
from pagelens.core.settings import Settings
from pagelens.models.embedder import ColSmolEmbedder, PageEmbedder, pool_rows_cols

DIM = 128


def make_settings(model: str | Path, **overrides: object) -> Settings:
    values: dict[str, object] = {
        "retriever_model": str(model),
        "page_longest_edge": 1024,
        "device": "cpu",
        "embed_batch_size": 4,
    }
    values.update(overrides)
    return Settings(_env_file=None, **values)  # type: ignore[call-arg,arg-type]


def noise_page(width: int, height: int, seed: int) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))


@pytest.fixture(scope="module")
def embedder(tiny_models: dict[str, Path]) -> ColSmolEmbedder:
    emb = ColSmolEmbedder(make_settings(tiny_models["retriever"]))
    emb.load()
    return emb


def test_lazy_construction_and_protocol(tiny_models: dict[str, Path]) -> None:
    emb = ColSmolEmbedder(make_settings(tiny_models["retriever"]))
    assert not emb.loaded  # nothing loads at construction
    assert isinstance(emb, PageEmbedder)
    assert emb.dim == DIM
    assert emb.model_id == str(tiny_models["retriever"])
    assert emb.model_revision is None


def test_load_is_idempotent_and_thread_safe(
    tiny_models: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    emb = ColSmolEmbedder(make_settings(tiny_models["retriever"]))
    calls: list[int] = []
    real = emb._load_locked

    def counting() -> None:
        calls.append(1)
        real()

    monkeypatch.setattr(emb, "_load_locked", counting)
    threads = [threading.Thread(target=emb.load) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    model = emb._model
    emb.load()
    assert calls == [1]
    assert emb._model is model
    assert emb.device == torch.device("cpu")
    assert emb._dtype == torch.float32


def test_page_embedding_shapes_and_norms(embedder: ColSmolEmbedder) -> None:
    # US-letter shape at 1024 px: 791 x 1024 -> 1024 x 1024 after rounding up -> 2 x 2 tiles + global.
    letter, wide = noise_page(791, 1024, 0), noise_page(1024, 400, 1)
    out = embedder.embed_pages([letter, wide])
    assert len(out) == 2
    for page in out:
        for arr in (page.full, page.rows, page.cols):
            assert arr.dtype == np.float32 and arr.ndim == 2 and arr.shape[1] == DIM
            assert np.isfinite(arr).all()
        np.testing.assert_allclose(np.linalg.norm(page.full, axis=1), 1.0, atol=1e-4)
    # 5 tiles x 64 image tokens + prompt/tile-marker tokens.
    assert out[0].full.shape[0] > 5 * 64
    assert out[0].rows.shape == (2 * 8, DIM) and out[0].cols.shape == (2 * 8, DIM)
    # 1024 x 400 -> 1024 x 512: 1 tile row x 2 tile columns (+ global).
    assert out[1].rows.shape == (1 * 8, DIM) and out[1].cols.shape == (2 * 8, DIM)


def test_rows_and_cols_are_means_of_the_patch_grid(embedder: ColSmolEmbedder) -> None:
    page = noise_page(791, 1024, 2)
    (emb,) = embedder.embed_pages([page])
    batch = embedder.processor.process_images([page])
    ids = batch["input_ids"][0][batch["attention_mask"][0].bool()]
    image_vecs = emb.full[(ids == embedder._model.config.image_token_id).numpy()]  # [5 * 64, 128]
    assert image_vecs.shape == (5 * 64, DIM)
    # Local tiles (2 x 2, row-major) of 8 x 8 patches -> 16 x 16 grid; the global tile is left out.
    grid = image_vecs[: 4 * 64].reshape(2, 2, 8, 8, DIM).transpose(0, 2, 1, 3, 4).reshape(16, 16, DIM)
    np.testing.assert_allclose(emb.rows, grid.mean(axis=1), atol=1e-5)
    np.testing.assert_allclose(emb.cols, grid.mean(axis=0), atol=1e-5)


def test_pool_rows_cols_layout_and_fallbacks() -> None:
    # Token vector = (patch row, patch col) of the page grid; R=2, C=3 tiles of 8x8, then a global tile.
    r_tiles, c_tiles, s = 2, 3, 8
    vecs: list[list[float]] = []
    for tr in range(r_tiles):
        for tc in range(c_tiles):
            for pr in range(s):
                for pc in range(s):
                    vecs.append([tr * s + pr, tc * s + pc])
    vecs += [[-1.0, -1.0]] * 64  # global tile: must not leak into rows/cols
    t = torch.tensor(vecs, dtype=torch.float32)
    rows, cols = pool_rows_cols(t, (r_tiles, c_tiles), 64)
    assert rows.shape == (16, 2) and cols.shape == (24, 2)
    assert torch.equal(rows[:, 0], torch.arange(16, dtype=torch.float32))
    assert torch.equal(cols[:, 1], torch.arange(24, dtype=torch.float32))
    # Single tile (global only): its own 8 x 8 grid.
    rows1, cols1 = pool_rows_cols(t[:64], (1, 1), 64)
    assert rows1.shape == (8, 2) and cols1.shape == (8, 2)
    # Unknown grid: one mean per tile (7 tiles).
    rows_f, cols_f = pool_rows_cols(t, None, 64)
    assert rows_f.shape == (7, 2) and cols_f.shape == (7, 2)


def test_single_tile_page(tiny_models: dict[str, Path]) -> None:
    emb = ColSmolEmbedder(make_settings(tiny_models["retriever"], page_longest_edge=512))
    (page,) = emb.embed_pages([noise_page(396, 512, 3)])
    assert page.rows.shape == (8, DIM) and page.cols.shape == (8, DIM)
    assert page.full.shape[0] > 64


def test_batch_of_one_equals_batch_of_three(embedder: ColSmolEmbedder) -> None:
    page = noise_page(791, 1024, 4)
    (alone,) = embedder.embed_pages([page])
    # Different tile counts force padding inside the batch.
    batch = embedder.embed_pages([noise_page(1024, 300, 5), page, noise_page(500, 500, 6)])
    np.testing.assert_allclose(batch[1].full, alone.full, atol=1e-4)
    np.testing.assert_allclose(batch[1].rows, alone.rows, atol=1e-4)
    np.testing.assert_allclose(batch[1].cols, alone.cols, atol=1e-4)


def test_queries(embedder: ColSmolEmbedder) -> None:
    texts = ["What was the total revenue in 2023?", "fig 3"]
    out = embedder.embed_queries(texts)
    assert len(out) == 2
    for q in out:
        assert q.dtype == np.float32 and q.ndim == 2 and q.shape[1] == DIM
        assert q.shape[0] > 10  # the query plus colpali's 10 <end_of_utterance> suffix tokens
        np.testing.assert_allclose(np.linalg.norm(q, axis=1), 1.0, atol=1e-4)
    assert out[0].shape[0] > out[1].shape[0]
    (alone,) = embedder.embed_queries(texts[1:])
    np.testing.assert_allclose(alone, out[1], atol=1e-4)


def test_missing_local_path(tmp_path: Path) -> None:
    missing = tmp_path / "no-model-here"
    emb = ColSmolEmbedder(make_settings(missing))
    with pytest.raises(ModelUnavailableError) as info:
        emb.load()
    msg = str(info.value)
    assert str(missing) in msg and "PAGELENS_RETRIEVER_MODEL" in msg and "huggingface-cli download" in msg
    assert not emb.loaded


def test_unknown_hub_id_offline(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    emb = ColSmolEmbedder(make_settings("pagelens-test/no-such-model"))
    with pytest.raises(ModelUnavailableError) as info:
        emb.embed_queries(["x"])
    msg = str(info.value)
    assert "pagelens-test/no-such-model" in msg and "PAGELENS_RETRIEVER_MODEL" in msg
    assert "HF_HUB_OFFLINE" in msg
    assert info.value.detail["model"] == "pagelens-test/no-such-model"


def test_lora_adapter_dir_is_loaded_and_merged(tiny_models: dict[str, Path], tmp_path: Path) -> None:
    """A local peft LoRA adapter dir (like vidore/colSmol-256M) whose base is another local dir."""
    from colpali_engine.models import ColIdefics3, ColIdefics3Processor
    from peft import LoraConfig, get_peft_model

    base_dir = tiny_models["retriever"]
    adapter_dir = tmp_path / "adapter"
    torch.manual_seed(0)
    base = ColIdefics3.from_pretrained(str(base_dir))
    config = LoraConfig(
        r=4,
        lora_alpha=8,
        target_modules=r"(.*(model.text_model).*(down_proj|gate_proj|up_proj|k_proj|q_proj|v_proj|o_proj).*$)",
        task_type="FEATURE_EXTRACTION",
    )
    peft_model = get_peft_model(base, config)
    with torch.no_grad():
        for name, param in peft_model.named_parameters():
            if "lora_B" in name:
                param.normal_(0, 0.5)  # non-zero so the adapter changes the output
    peft_model.save_pretrained(str(adapter_dir))
    ColIdefics3Processor.from_pretrained(str(base_dir)).save_pretrained(str(adapter_dir))
    cfg = json.loads((adapter_dir / "adapter_config.json").read_text())
    assert Path(cfg["base_model_name_or_path"]) == base_dir
    assert not (adapter_dir / "config.json").exists()

    emb = ColSmolEmbedder(make_settings(adapter_dir))
    (q,) = emb.embed_queries(["adapter check"])
    assert "lora" not in " ".join(n for n, _ in emb._model.named_modules()).lower()  # merged
    peft_model.eval()
    batch = emb.processor.process_queries(texts=["adapter check"])
    with torch.inference_mode():
        expected = peft_model(**batch)[0]
    np.testing.assert_allclose(q, expected.numpy(), atol=1e-4)
    (plain,) = ColSmolEmbedder(make_settings(base_dir)).embed_queries(["adapter check"])
    assert not np.allclose(q, plain, atol=1e-3)


def test_devices_resolution() -> None:
    cpu = torch.device("cpu")
    assert get_device("cpu") == cpu
    assert resolve_dtype("auto", cpu) == (torch.bfloat16 if cpu_has_native_bf16() else torch.float32)
    assert resolve_dtype("float32", cpu) == torch.float32
    assert resolve_dtype("bfloat16", cpu) == torch.bfloat16
    assert resolve_attn_implementation("auto", cpu) == "sdpa"
    assert resolve_attn_implementation("flash_attention_2", cpu) == "sdpa"

    class NoSdpa:
        _supports_sdpa = False

    assert resolve_attn_implementation("auto", cpu, NoSdpa) == "eager"
    if not torch.cuda.is_available():
        from pagelens.core.errors import PagelensError

        with pytest.raises(PagelensError):
            get_device("cuda")
        assert get_device("auto").type in ("cpu", "mps")


def test_torchvision_image_processor_matches_the_pil_one(tiny_models: dict[str, Path]) -> None:
    """PAGELENS_TUNING__IMAGE_PROCESSOR_BACKEND=torchvision: same tiles, tokens and grid as the default PIL
    processor; pixels differ only by the resampling filter (BICUBIC for LANCZOS), so the embeddings
    stay close."""
    from transformers.models.idefics3.image_processing_idefics3 import Idefics3ImageProcessor

    pil = ColSmolEmbedder(make_settings(tiny_models["retriever"]))
    fast = ColSmolEmbedder(make_settings(tiny_models["retriever"], image_processor_backend="torchvision"))
    fast.load()
    pil.load()
    assert isinstance(fast.processor.image_processor, Idefics3ImageProcessor)
    assert not isinstance(pil.processor.image_processor, Idefics3ImageProcessor)
    rng = np.random.default_rng(3)
    page = np.full((1024, 791, 3), 255, dtype=np.uint8)  # a page: white, dark text-like bars
    for _ in range(120):
        y, x = int(rng.integers(0, 1000)), int(rng.integers(0, 700))
        page[y : y + 8, x : x + 60] = int(rng.integers(0, 90))
    image = Image.fromarray(page)
    a, b = pil.processor.process_images([image]), fast.processor.process_images([image])
    assert torch.equal(a["input_ids"], b["input_ids"]) and a["pixel_values"].shape == b["pixel_values"].shape
    assert (a["pixel_values"] - b["pixel_values"]).abs().mean() < 0.01
    (ea,), (eb,) = pil.embed_pages([image]), fast.embed_pages([image])
    assert ea.full.shape == eb.full.shape and ea.rows.shape == eb.rows.shape
    cos = (ea.full * eb.full).sum(axis=1)
    assert cos.mean() > 0.99
@pytest.mark.extended


def test_torch_compile_gives_the_eager_embeddings(embedder: ColSmolEmbedder, tiny_models: dict[str, Path]) -> None:
    """PAGELENS_TUNING__TORCH_COMPILE: the vision encoder runs through inductor, and pages and queries embed
    as in eager mode (two batch shapes: a recompile, or dynamic shapes, both right)."""
    compiled = ColSmolEmbedder(make_settings(tiny_models["retriever"], torch_compile=True))
    compiled.load()
    towers = [m for m in compiled._model.modules() if getattr(m, "_compiled_call_impl", None) is not None]
    assert len(towers) == 1
    pages = [noise_page(791, 1024, 1), noise_page(1024, 640, 2), noise_page(600, 600, 3)]
    torch._dynamo.reset()
    for batch in (pages, pages[:1]):
        for a, b in zip(embedder.embed_pages(batch), compiled.embed_pages(batch), strict=True):
            np.testing.assert_allclose(b.full, a.full, atol=2e-4)
            np.testing.assert_allclose(b.rows, a.rows, atol=2e-4)
    qa, qb = embedder.embed_queries(["total amount due"]), compiled.embed_queries(["total amount due"])
    np.testing.assert_allclose(qb[0], qa[0], atol=2e-4)


def test_compile_vision_encoder_names_what_it_compiled(tiny_models: dict[str, Path]) -> None:
    from pagelens.core.errors import PagelensError
    from pagelens.models.embedder import compile_vision_encoder

    model = ColSmolEmbedder(make_settings(tiny_models["retriever"]))
    model.load()
    assert compile_vision_encoder(model._model) == ["model.vision_model.encoder"]
    with pytest.raises(PagelensError, match="no vision_model.encoder"):
        compile_vision_encoder(torch.nn.Linear(2, 2))
