"""Answer benchmark: time to first token (prefill) and single-stream decode tokens/s.

ours     = ``pagelens.answer.answerer.SmolVLMAnswerer.stream`` (greedy, streamed, on 1 or 3 page images);
baseline = plain transformers ``model.generate(**inputs, do_sample=False)`` on the same processor
           inputs (prefill = ``generate(max_new_tokens=1)``; decode = (t(N) - t(1)) / (N - 1) with
           ``min_new_tokens=N``). Also checks that ours' greedy text equals the baseline's.
Models (random weights, real processor/tokenizer/chat template from ``$PAGELENS_SHARED/models``, the
data folder of ``bench/common.py``, not part of the repository):
* tiny (tests/make_tiny_models.py), always;
* SmolVLM-256M architecture (``--real``, default on; ``--no-real`` to skip) built from the real
  config.json; ``--500m`` adds the reconstructed 500M config (GPU recommended).
GPU section (``--gpu``): the same on cuda in bf16 + peak memory; skips without CUDA.

CPU (here):  python bench/answer.py
GPU (lent):  python bench/answer.py --gpu --gpu-only --500m --new-tokens 128
``--decoder`` picks ours' decoder (``PAGELENS_TUNING__ANSWER_DECODER``; default auto: ``generate()`` until
``tests/test_gpu.py`` has passed on a GPU; ``graph``: the static-cache loop with a CUDA-graph decode step
on CUDA, run eagerly on the CPU; ``bench/gpu_check.sh`` passes ``--decoder graph``).
On the GPU the colSmol-256M retriever is held on the device too (``--no-with-retriever`` to skip), so
the peak-memory rows are the API's footprint with both models.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.common import REAL_PDFS, SHARED, SHARED_SMOLVLM, Table, device_label, log, percentile, require_cuda  # noqa: E402

QUESTION = "What is the total amount due on this page, and who issued it?"


def build_answerer_model(outdir: Path, config_path: Path) -> Path:
    import torch
    from transformers import AutoProcessor, Idefics3Config, Idefics3ForConditionalGeneration

    torch.manual_seed(1)
    config = Idefics3Config(**json.loads(config_path.read_text()))
    model = Idefics3ForConditionalGeneration(config)
    model.generation_config.pad_token_id = config.get_text_config().pad_token_id
    model.save_pretrained(outdir)
    AutoProcessor.from_pretrained(SHARED_SMOLVLM).save_pretrained(outdir)
    return outdir


def page_hits(tmp: Path, n: int) -> list:
    """n SearchHits whose image_path are PNGs of real PDF pages (150 dpi)."""
    import pymupdf
    from pagelens.retrieve.types import SearchHit

    hits = []
    for p in sorted(REAL_PDFS.glob("inv_*.pdf"))[:n]:
        with pymupdf.open(p) as doc:
            out = tmp / f"{p.stem}.png"
            doc[0].get_pixmap(dpi=150).save(out)
        hits.append(SearchHit(rank=len(hits) + 1, doc_id=p.stem, doc_name=p.name, page_no=1, page_count=1,
                              score=1.0, image_path=str(out)))
    return hits


def bench(table: Table, label: str, model_dir: Path, hits: list, device: str, dtype: str, new_tokens: int,
          reps: int, edge: int = 1536, kv_cache: str = "dynamic", decoder: str = "auto",
          image_processor: str = "auto", preprocess_device: str = "auto") -> None:
    import torch
    from pagelens.answer.answerer import SmolVLMAnswerer

    from pagelens.core.settings import Settings

    cuda = device != "cpu"
    dev = device_label(gpu=cuda)
    settings = Settings(answer_model=str(model_dir), device=device, dtype=dtype, max_new_tokens=new_tokens,
                        answer_longest_edge=edge, data_dir=model_dir.parent / "data", answer_kv_cache=kv_cache,
                        answer_decoder=decoder, image_processor_backend=image_processor,
                        preprocess_device=preprocess_device)
    ans = SmolVLMAnswerer(settings)
    ans.load()
    used = "graph decoder" + (" (CUDA graphs)" if ans.decoder and ans.decoder.cuda_graphs else " (eager)") \
        if ans.decoder is not None else f"generate() ({kv_cache} cache)"
    model = ans._model
    k = len(hits)

    # ours: stream() timed from the call to its done event, at max_new_tokens=1 (time to first token,
    # preprocessing included) and N (decode = (n_N - 1) / (t_N - t_1)); the product's own
    # Timings.prefill_s is "first streamed text piece", which the streamer may hold back for
    # several tokens, so it is reported only as a note.
    def ours(n: int):
        ans.settings = base_settings.model_copy(update={"max_new_tokens": n})
        if cuda:
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        done = None
        for ev in ans.stream(QUESTION, hits, k=k):
            if ev.kind == "done":
                done = ev.answer
        if cuda:
            torch.cuda.synchronize()
        return time.perf_counter() - t0, done

    base_settings = settings
    ours(2)  # warm-up
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    t1_ours = percentile([ours(1)[0] for _ in range(reps)], 50)
    runs = [ours(new_tokens) for _ in range(reps)]
    tn_ours = percentile([t for t, _ in runs], 50)
    peak_ours = torch.cuda.max_memory_allocated() / 1e9 if cuda else None
    last = runs[-1][1]
    n_gen = last.generated_tokens
    tps_ours = (n_gen - 1) / (tn_ours - t1_ours) if tn_ours - t1_ours > 0.1 * tn_ours else None  # else: noise
    prefill_ours = t1_ours
    text_ours = last.text
    prompt_tokens = last.prompt_tokens
    own_prefill = percentile([a.timings.prefill_s for _, a in runs], 50)
    preprocess = percentile([a.timings.preprocess_s for _, a in runs], 50)

    # baseline: plain generate() on the same inputs
    prepared = ans._prepare(QUESTION, hits, k)
    inputs = prepared.inputs
    eos = ans._eos_token_ids()
    pad = model.generation_config.pad_token_id

    def gen(n: int, force: bool) -> tuple[float, torch.Tensor]:
        if cuda:
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        with torch.inference_mode():
            out = model.generate(**inputs, do_sample=False, max_new_tokens=n, min_new_tokens=n if force else None,
                                 eos_token_id=eos, pad_token_id=pad)
        if cuda:
            torch.cuda.synchronize()
        return time.perf_counter() - t0, out

    gen(2, True)  # warm-up
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    t1 = percentile([gen(1, True)[0] for _ in range(reps)], 50)
    tn = percentile([gen(new_tokens, True)[0] for _ in range(reps)], 50)
    peak_base = torch.cuda.max_memory_allocated() / 1e9 if cuda else None
    tps_base = (new_tokens - 1) / (tn - t1) if tn - t1 > 0.1 * tn else None  # else: noise (raise --new-tokens)
    _, seq = gen(new_tokens, False)
    text_base = ans._processor.tokenizer.decode(seq[0, inputs["input_ids"].shape[1]:], skip_special_tokens=True).strip()
    same = text_base == text_ours.strip()
    log(f"{label} {k} page(s): prompt {prompt_tokens} tokens; ours prefill {prefill_ours * 1000:.0f} ms, "
        f"{tps_ours or float('nan'):.1f} tok/s ({n_gen} generated); generate() prefill {t1 * 1000:.0f} ms, {tps_base or float('nan'):.1f} tok/s; "
        f"greedy text identical: {same}")
    prep = f"{ans._backend} processor" + (" on the GPU" if ans._preprocess_on_device else "")
    tag = f"{label}, {k} page(s) at {edge} px, {prompt_tokens}-token prompt, {device} {dtype}, ours = {used}, {prep}"
    table.add(f"{tag}: decode tokens/s", tps_ours, tps_base, unit="tok/s", higher_is_better=True,
              baseline_name="generate()", device=dev, note=f"{n_gen} tokens generated; greedy text == generate(): {same}")
    table.add(f"{tag}: time to first token (stream() with max_new_tokens=1)", prefill_ours, t1,
              baseline_name="generate(max_new_tokens=1), no preprocessing", device=dev,
              note=f"of which preprocessing {preprocess * 1000:.0f} ms; Answer.timings.prefill_s {own_prefill * 1000:.0f} ms")
    if cuda:
        both = " (the retriever loaded too)" if retriever_loaded() else ""
        table.add(f"{tag}: peak GPU memory{both}", peak_ours, peak_base, unit="GB", baseline_name="generate()",
                  device=dev)
    if ans.decoder is not None:
        log(f"{label}: decoder stats {ans.decoder.stats}")
    ans._model = None  # free before the next model
    if cuda:
        torch.cuda.empty_cache()


_RETRIEVER: list = []  # the colSmol-256M-architecture retriever held on the GPU (peak memory of both models)


def retriever_loaded() -> bool:
    return bool(_RETRIEVER)


def load_retriever_on_gpu(tmp: Path) -> None:
    """Load the colSmol-256M architecture (random weights) through the product's ColSmolEmbedder, bf16 on cuda,
    and keep it, so the answer rows' peak GPU memory counts both models as the API holds them."""
    from bench.ingest import build_real_model
    from pagelens.core.settings import Settings
    from pagelens.models.embedder import ColSmolEmbedder

    model_dir = build_real_model(tmp / "retriever")
    embedder = ColSmolEmbedder(Settings(retriever_model=str(model_dir), device="cuda", dtype="bfloat16",
                                 data_dir=tmp / "data"))
    embedder.load()
    _RETRIEVER.append(embedder)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--new-tokens", type=int, default=48)
    ap.add_argument("--reps", type=int, default=2)
    ap.add_argument("--pages", type=int, nargs="*", default=[1, 3], help="page counts for the tiny model")
    ap.add_argument("--real", action=argparse.BooleanOptionalAction, default=True,
                    help="also the SmolVLM-256M architecture (random weights), 1 page")
    ap.add_argument("--real-edge", type=int, default=512,
                    help="answer_longest_edge for the 256M/500M architectures on the CPU (GPU: 1536)")
    ap.add_argument("--500m", dest="m500", action="store_true", help="also the reconstructed 500M config")
    ap.add_argument("--gpu", action="store_true")
    ap.add_argument("--gpu-only", action="store_true")
    ap.add_argument("--kv-cache", choices=["dynamic", "static"], default="dynamic",
                    help="ours: the answer model's KV cache (static: compiled decode on CUDA)")
    ap.add_argument("--decoder", choices=["auto", "generate", "graph"], default="auto",
                    help="ours: PAGELENS_TUNING__ANSWER_DECODER (auto: generate() until tests/test_gpu.py passed on a GPU; "
                         "graph: the static-cache loop, CUDA graphs on CUDA)")
    ap.add_argument("--image-processor", choices=["auto", "pil", "torchvision"], default="auto",
                    help="ours: PAGELENS_TUNING__IMAGE_PROCESSOR_BACKEND (auto: torchvision on CUDA, pil on the CPU)")
    ap.add_argument("--preprocess-device", choices=["auto", "cpu", "model"], default="auto",
                    help="ours: PAGELENS_TUNING__PREPROCESS_DEVICE (auto: model, i.e. on the GPU, on CUDA; cpu elsewhere)")
    ap.add_argument("--with-retriever", action=argparse.BooleanOptionalAction, default=True,
                    help="GPU: hold the colSmol-256M retriever on the device too (peak memory of both models)")
    ap.add_argument("--cpu-dtypes", nargs="+", default=["float32", "bfloat16"], choices=["float32", "bfloat16"],
                    help="dtypes of the CPU rows (bfloat16 is native on CPUs with AVX512-BF16/AMX)")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()

    from tests.make_tiny_models import build_tiny_models

    table = Table(f"answer: greedy, {args.new_tokens} new tokens, ours = answer_decoder {args.decoder} "
                  f"(generate() rows: the {args.kv_cache} KV cache)")
    tmp = Path(tempfile.mkdtemp(prefix="pagelens-bench-answer-"))
    try:
        hits_all = page_hits(tmp, max([*args.pages, 3]))
        models = [("tiny", build_tiny_models(tmp / "tiny")["answerer"])]
        if args.real:
            models.append(("SmolVLM-256M arch (random)", build_answerer_model(tmp / "m256", SHARED_SMOLVLM / "config.json")))
        if args.m500:
            models.append(("SmolVLM-500M arch (random)",
                           build_answerer_model(tmp / "m500", SHARED / "models" / "SmolVLM-500M-Instruct" / "config.json")))
        if not args.gpu_only:
            for label, path in models:
                for dtype in args.cpu_dtypes:
                    for n in args.pages if label == "tiny" else [1]:
                        bench(table, label, path, hits_all[:n], "cpu", dtype, args.new_tokens, args.reps,
                              edge=1536 if label == "tiny" else args.real_edge, kv_cache=args.kv_cache,
                              decoder=args.decoder, image_processor=args.image_processor,
                              preprocess_device="cpu" if args.preprocess_device == "model" else args.preprocess_device)
        if (args.gpu or args.gpu_only) and require_cuda("answer GPU section"):
            if args.with_retriever:
                load_retriever_on_gpu(tmp)
            for label, path in models:
                for n in (1, 3):
                    bench(table, label, path, hits_all[:n], "cuda", "bfloat16", args.new_tokens, max(args.reps, 3),
                          kv_cache=args.kv_cache, decoder=args.decoder, image_processor=args.image_processor,
                          preprocess_device=args.preprocess_device)
        elif not (args.gpu or args.gpu_only):
            require_cuda("answer GPU section (pass --gpu on a lent GPU)")
        table.print(args.out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
