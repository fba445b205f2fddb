"""The one settings object of pagelens.

Every field can be set by an environment variable ``PAGELENS_<FIELD>`` (upper case) or in a ``.env``
file (the same file docker-compose reads). Build it once at an entry point and pass it in:
nothing in the stage packages imports a global settings instance.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_RETRIEVER_MODEL = "vidore/colSmol-256M"
DEFAULT_ANSWER_MODEL = "HuggingFaceTB/SmolVLM-256M-Instruct"


def default_data_dir() -> Path:
    return Path.home() / ".local" / "share" / "pagelens"


class Settings(BaseSettings):
    """Runtime configuration. Units are in the field names or descriptions."""

    model_config = SettingsConfigDict(
        env_prefix="PAGELENS_", env_file=".env", env_file_encoding="utf-8", extra="ignore"
    )

    # --- storage -------------------------------------------------------------------------
    data_dir: Path = Field(default_factory=default_data_dir, description="Embedded store, page images, jobs.")
    qdrant_url: str | None = Field(
        default=None, description="Qdrant server URL (http://host:6333). Unset: embedded Qdrant Edge."
    )
    qdrant_api_key: SecretStr | None = None
    qdrant_timeout_s: float = 60.0
    upsert_batch_points: int = Field(default=16, ge=1, description="Points per upsert request.")
    qdrant_shard_number: int = Field(default=1, ge=1, description="Shards of a new server collection.")
    qdrant_replication_factor: int = Field(default=1, ge=1, description="Replicas of each shard (server).")
    qdrant_on_disk: bool = Field(default=False, description="Keep full multivectors on disk (server).")

    # --- retriever (ColSmolVLM) ------------------------------------------------------------
    retriever_model: str = Field(default=DEFAULT_RETRIEVER_MODEL, description="Hub id or local directory.")
    retriever_revision: str | None = None
    device: str = Field(default="auto", description="auto | cpu | cuda | cuda:N | mps")
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = Field(
        default="auto", description="Model weights/activations. auto: bfloat16 on CUDA and on CPUs with native "
        "bf16 (AVX512-BF16/AMX: 2.4x faster retriever forward, 2.1x faster first answer token than float32, "
        "measured), float16 on MPS, else float32.",
    )
    attn_implementation: Literal["auto", "eager", "sdpa", "flash_attention_2"] = "auto"
    embed_batch_size: int = Field(
        default=0, ge=0, description="Pages per retriever forward pass. 0: auto, 16 on CUDA (the GPU forward "
        "needs batches: 62-64 pages/s at 8-32 on an H100), 4 elsewhere.",
    )
    page_longest_edge: int = Field(
        default=2048,
        ge=64,
        description="Longest edge (px) pages are rendered at and fed to the retriever (Idefics3: N x 512).",
    )
    image_processor_backend: Literal["auto", "pil", "torchvision"] = Field(
        default="auto", description="Image preprocessing of both models (resize, tiling, normalisation). pil: "
        "transformers' PIL processor, exactly what the models were trained with (LANCZOS). torchvision: its "
        "torch processor, ~3.5x faster on the CPU for a 2048-px page (0.09 vs 0.33 s, measured), resizing with "
        "BICUBIC for LANCZOS (pixel values off by 0.002 on average on the [-1, 1] scale). auto: torchvision "
        "on CUDA (and whenever preprocess_device=model), pil elsewhere.",
    )
    torch_compile: bool = Field(
        default=False, description="torch.compile (inductor) the retriever's vision encoder layers (~90% of a "
        "page's FLOPs) at load. The first batches compile (~30 s on a 2-core CPU). 256M vision tower on a 2-core "
        "CPU: 1.11x in float32, 0.99x in bfloat16; on a GPU see bench/ingest.py --compile.",
    )
    preprocess_device: Literal["auto", "cpu", "model"] = Field(
        default="auto", description="Where page images are resized, tiled and normalised. cpu: in the ingest "
        "worker processes (retriever) and on the CPU (answers). model: on each model's device (a GPU), in the "
        "main process for ingest (the workers then only rasterize); needs the torchvision processor. auto: "
        "model on CUDA with the torchvision processor (workers preprocessing 2048-px pages on the CPU cap "
        "ingest at ~10-20 pages/s per 4 workers), cpu elsewhere.",
    )

    # --- ingest --------------------------------------------------------------------------
    rasterizer: Literal["pymupdf", "poppler"] = "pymupdf"
    max_pages_per_document: int = Field(default=2000, ge=1)
    max_pixels_per_page: int = Field(
        default=64_000_000, ge=1, description="Decompression-bomb guard for source images and renders (px)."
    )
    max_file_bytes: int = Field(default=512 * 1024 * 1024, ge=1)
    pdf_password: SecretStr | None = Field(default=None, description="Password tried on encrypted PDFs.")

    # --- OCR (ingest/ocr.py) and text analysis (index/text_analysis.py) ---------------------
    ocr: Literal["auto", "off", "force"] = Field(
        default="auto", description="OCR with Tesseract. auto: pages whose text layer is unusable (under "
        "ocr_min_chars letters/digits, or mojibake) and image files; force: every page (OCR text replaces the "
        "text layer); off: never. Without Tesseract installed indexing goes on and says once that scans are "
        "found visually only.",
    )
    ocr_languages: str = Field(
        default="eng+deu+fra+spa+ita+nld+pol+por+jpn", description="Tesseract languages (traineddata names, "
        "'+'-separated). Per page, OSD's script picks among them: the Latin-script ones together (8 cost ~10% "
        "more than eng alone, measured), jpn for Japanese. Missing ones are announced once with the package "
        "to install (tesseract-ocr-<lang>).",
    )
    ocr_dpi: int = Field(
        default=300, ge=72, le=600, description="Resolution (dpi) PDF pages are rendered at for OCR (capped at "
        "25 Mpx). 300 is Tesseract's usual resolution; 150 measured barely cheaper per page here (17.0 vs 19.4 s "
        "mean on a loaded 2-core machine, orientation detection included; bench/README.md).",
    )
    ocr_timeout_s: float = Field(
        default=120.0, ge=0, description="Wall-clock limit (s) for the OCR of one page (orientation + recognition; "
        "0: none). Past it the page keeps no OCR text (found visually only) and the index report notes it.",
    )
    ocr_min_chars: int = Field(
        default=32, ge=0, description="auto OCR: a text layer with fewer letters and digits than this on a page "
        "counts as no text layer (scans with a stamp or page number in text).",
    )
    tesseract_cmd: str = Field(default="tesseract", description="The tesseract program (name on PATH or path).")
    text_query_languages: Literal["all", "collection", "detected", "english"] = Field(
        default="all", description="Languages a text/hybrid query is analysed under (their terms united; "
        "index/text_analysis.py): all analysers (default), the collection's page languages + the query's, the "
        "query's detected language only, or English only. Measured in bench/README.md (Languages and scans).",
    )

    # --- retrieval -----------------------------------------------------------------------
    search_mode: Literal["two_stage", "exact"] = "two_stage"
    top_k: int = Field(default=5, ge=1, le=1000)
    prefetch_limit: int = Field(
        default=250, ge=1, description="Candidates per pooled prefetch (rows and cols: up to twice this many "
        "pages reach the rerank). 250 with hnsw_m 8 and fast_rerank: recall@5 0.96 vs exact at 10k pages, "
        "p50 ~40 ms on 2 CPU cores (bench/README.md, 40 queries).",
    )
    hnsw_m: int = Field(
        default=8, ge=4, le=64, description="Embedded store: HNSW m of the pooled row/column vectors of new "
        "collections. 8 searched 1.6x faster than 16 for the same candidate recall at 10k pages, and builds "
        "in ~0.7x the time (bench/README.md).",
    )
    full_vector_datatype: Literal["float32", "float16"] = Field(
        default="float32", description="Storage of the full page multivectors in new collections (both "
        "stores). float16 halves their disk and RAM (1139-token pages: 29 GB instead of 58 GB per 100k "
        "pages) and moves MaxSim scores by ~1e-3; pick it for very large collections.",
    )
    fast_rerank: bool = Field(
        default=True,
        description="Embedded store, two_stage: a MaxSim kernel over a cached int8 copy of the full "
        "vectors picks the rerank_candidates pages that Qdrant then scores exactly (index/fast_rerank.py). "
        "False: Qdrant scores every prefetched page exactly (slower).",
    )
    rerank_candidates: int = Field(
        default=16, ge=1, description="Pages the fast rerank passes on to Qdrant's exact MaxSim (at least k). "
        "16 and 32 gave the same recall at 10k pages; 32 costs ~4 ms more.",
    )
    pooled_scan_max_pages: int = Field(
        default=300, ge=0, description="Embedded store, fast_rerank: collections up to this many pages get "
        "their two_stage candidates from our brute-force bf16 pass over the pooled vectors (where Qdrant would "
        "scan them too, below its full_scan_threshold); larger ones from the token index once they have "
        "token_index_min_pages, else (and filtered searches) from Qdrant's pooled HNSW, whose candidates "
        "measured better than an exact pooled scan at 10k pages.",
    )
    token_index_min_pages: int = Field(
        default=5000, ge=0, description="Embedded store, fast_rerank: `optimize` builds a token-level first "
        "stage (a 256 x 256 codebook of the patch vectors and inverted lists, index/token_index.py) for "
        "collections of at least this many pages; their unfiltered searches take candidates from it "
        "instead of the pooled HNSW. 0: never.",
    )
    token_candidates: int = Field(
        default=250, ge=1, description="Pages the token-level first stage passes on to the int8 rerank. 250 with "
        "token_nprobe 16: recall@5 0.98 vs exact at 100k pages, 100: 0.95 (bench/README.md).",
    )
    token_nprobe: int = Field(
        default=16, ge=1, le=256, description="Codebook cells probed per query token by the token-level first stage.",
    )

    # --- answers (SmolVLM) ---------------------------------------------------------------
    answer_model: str = Field(default=DEFAULT_ANSWER_MODEL, description="Hub id or local directory.")
    answer_revision: str | None = None
    answer_top_k: int = Field(default=3, ge=1, le=16)
    answer_longest_edge: int = Field(default=1536, ge=64, description="Longest edge (px) of page images shown.")
    max_image_tokens: int = Field(default=8192, ge=1, description="Cap on image tokens in one prompt.")
    max_new_tokens: int = Field(default=256, ge=1)
    answer_kv_cache: Literal["dynamic", "static"] = Field(
        default="dynamic", description="KV cache of the answer model's generate(): static pre-allocates it, "
        "which lets transformers compile the decode step on CUDA (the fast-decode recipe; greedy tokens are "
        "the same, tested). Unmeasured on a GPU so far: compare with bench/answer.py --kv-cache static.",
    )
    answer_decoder: Literal["auto", "generate", "graph"] = Field(
        default="auto", description="How answers are decoded. graph: pagelens' greedy loop over a static KV "
        "cache (answer/fast_decode.py), the one-token step captured once as a CUDA graph on CUDA and replayed "
        "per token (checked against the eager step, falls back to it); eager on the CPU. generate: "
        "transformers generate() (with answer_kv_cache). auto: graph on CUDA, generate elsewhere. Greedy "
        "tokens are the same in every mode (tested).",
    )
    relevance_threshold: float | None = Field(
        default=None, description="Below this retrieval score no answer is generated."
    )

    # --- HTTP API (pagelens serve) -------------------------------------------------------
    api_keys: SecretStr | None = Field(
        default=None,
        description='API keys: "KEY:admin;KEY:rw:coll1,coll2;KEY:r:coll1" (see api/auth.py). '
        "Unset: no auth, and `pagelens serve` binds to loopback only unless --insecure.",
    )
    max_upload_bytes: int = Field(
        default=256 * 1024 * 1024, ge=1, description="Most bytes of one upload request (all files), enforced while streaming."
    )
    max_files_per_request: int = Field(default=32, ge=1, description="Most files in one upload request.")
    cors_origins: list[str] = Field(default_factory=list, description="Origins allowed by CORS (empty: no CORS).")
    job_keep_uploads: bool = Field(default=False, description="Keep uploaded files after their job finished.")

    # --- batch indexing (index/pipeline.py) and the server path ----------------------------
    ingest_workers: int = Field(
        default=-1,
        ge=-1,
        description="Worker processes rasterizing and preprocessing pages (-1 auto: min(4, CPUs) with a GPU, CPUs // 4 on CPU; 0: serial).",
    )
    batch_across_documents: Literal["auto", "on", "off"] = Field(
        default="auto", description="With ingest workers: embed the prepared pages of several documents that "
        "are waiting in one forward (up to embed_batch_size), instead of one document's pages per forward, so "
        "short documents (1-page invoices) keep the GPU busy. Points equal the per-document ones up to padding "
        "noise (tested). auto: on when the retriever runs on CUDA; off keeps points bitwise equal to serial mode.",
    )
    pipeline_queue_chunks: int = Field(
        default=0, ge=0, description="Prepared batches waiting for the embedder (0: 2 x workers). Bounds memory."
    )
    qdrant_quantization: Literal["none", "scalar", "binary"] = Field(
        default="none", description="Quantization of the full multivectors of a new server collection."
    )
    upsert_max_bytes: int = Field(
        default=32 * 1024 * 1024, ge=1024, description="Most bytes (approx., JSON) of one upsert request (server)."
    )
    qdrant_retries: int = Field(default=5, ge=0, description="Retries of a transient server error (backoff).")

    # --- hybrid retrieval (retrieve/hybrid.py) and evaluation ------------------------------
    retrieval_mode: Literal["visual", "text", "hybrid"] = Field(
        default="hybrid",
        description="Default ranking: visual (MaxSim on page images, strategy search_mode), text (BM25 on "
        "the text layer) or hybrid (both fused). Collections without a text index fall back to visual.",
    )
    fusion: Literal["rrf", "dbsf"] = Field(
        default="rrf", description="Hybrid fusion: rrf (reciprocal rank) or dbsf (weighted, distribution-normalised scores)."
    )
    # What the fusion defaults rest on (bench/README.md "Languages and scans", 2026-12-01, 2 CPU cores): only
    # runs with a *random* visual model (tiny test weights), on known-item queries (verbatim sentences and
    # numbers, inflected word forms in 8 languages, CJK snippets, words printed on scans). There, k=2 keeps
    # hybrid recall@5 at the text ranking's (0.99 on the inflected queries; k=60: 0.82, DBSF: 0.76), and
    # text weight 0.7 would also keep recall@1 (0.97 vs 0.53 at 0.5), because the visual ranking is noise.
    # What this cannot show: how much a real colSmol ranking deserves (it is the better ranking on
    # questions that paraphrase the page, charts and scans without OCR); 0.5 stays until hybrid is measured
    # with real weights (ViDoRe v2/v3 with pagelens eval --modes visual,text,hybrid).
    rrf_k: float = Field(
        default=2.0,
        gt=0,
        description="RRF constant: score = sum_i w_i / (rrf_k + rank_i), rank 1-based. Small k is top-heavy: "
        "measured with a random visual model (the only kind measured so far), k=60 lost 0.17 recall@5 on the "
        "inflected-form queries and 0.19 on the verbatim known items to the useless visual ranking, k=2 none "
        "(bench/README.md). Unmeasured with real colSmol weights.",
    )
    hybrid_text_weight: float = Field(
        default=0.5, ge=0, le=1, description="Weight of the text ranking in hybrid fusion (visual gets 1 - it). "
        "0.5 (plain RRF): with a random visual model it keeps recall@5 but halves recall@1 on known items "
        "(0.53 vs 0.97 at 0.7, bench/README.md); with real weights the visual ranking carries signal, which "
        "those runs cannot weigh: kept at 0.5 until measured with real weights.",
    )
    hybrid_candidates: int = Field(default=50, ge=1, description="Candidates taken from each ranking before fusion.")

    # --- hostile input (tests/reliability, docs/reliability.md) -----------------------------
    max_seconds_per_document: float = Field(
        default=300.0, ge=0, description="Most seconds spent rendering the pages of one document (checked "
        "between pages; 0: no limit). Past it the document fails with an error naming the file and the limit.",
    )
    isolate_rendering: bool = Field(
        default=False, description="Render PyMuPDF pages in a killable child process (reused across "
        "documents, ingest/sandbox.py) under render_timeout_s and render_memory_mb; a page past a limit "
        "becomes a page error naming the file, page and limit. Costs about +30 ms/page at 2048 px, ~2x the "
        "in-process render (docs/reliability.md); turn it on for untrusted input. False (default): render "
        "in-process, no per-page kill.",
    )
    render_timeout_s: float = Field(
        default=60.0, ge=0, description="Wall-clock limit (s) for one page render when isolate_rendering (0: none).",
    )
    render_memory_mb: int = Field(
        default=4096, ge=0, description="Address-space cap (MiB, RLIMIT_AS) of the rendering child process "
        "when isolate_rendering (0: none).",
    )

    @field_validator("data_dir", mode="after")
    @classmethod
    def _expand(cls, value: Path) -> Path:
        return value.expanduser()

    @field_validator("retriever_model", "answer_model", mode="after")
    @classmethod
    def _absolute_local_model(cls, value: str) -> str:
        """A local model directory is recorded by its absolute path, so ``./m`` and ``/abs/m`` match."""
        path = Path(value).expanduser()
        return str(path.resolve()) if path.exists() else value

    @model_validator(mode="after")
    def _preprocess_needs_torchvision(self) -> Settings:
        if self.preprocess_device == "model" and self.image_processor_backend == "pil":
            raise ValueError("PAGELENS_PREPROCESS_DEVICE=model preprocesses with torch on the model's device: set "
                             "PAGELENS_IMAGE_PROCESSOR_BACKEND=torchvision too (the pil processor runs on the CPU only)")
        return self

    def resolved_image_processor_backend(self, device_type: str) -> Literal["pil", "torchvision"]:
        """``image_processor_backend`` with auto resolved for a model on ``device_type`` ("cuda", "cpu"...)."""
        if self.image_processor_backend != "auto":
            return self.image_processor_backend
        return "torchvision" if device_type == "cuda" or self.preprocess_device == "model" else "pil"

    def resolved_preprocess_device(self, device_type: str) -> Literal["cpu", "model"]:
        """``preprocess_device`` with auto resolved for a model on ``device_type``."""
        if self.preprocess_device != "auto":
            return self.preprocess_device
        on_gpu = device_type == "cuda" and self.resolved_image_processor_backend(device_type) == "torchvision"
        return "model" if on_gpu else "cpu"

    def resolved_embed_batch_size(self, device_type: str) -> int:
        """``embed_batch_size``, with 0 (auto) resolved for the retriever's device type ("cuda", "cpu"...)."""
        if self.embed_batch_size > 0:
            return self.embed_batch_size
        return 16 if device_type == "cuda" else 4

    @property
    def uses_server(self) -> bool:
        return bool(self.qdrant_url)

    @property
    def pages_dir(self) -> Path:
        """Where rendered page images are kept, by document sha256."""
        return self.data_dir / "pages"

    @property
    def edge_dir(self) -> Path:
        """Root of the embedded Qdrant Edge collections."""
        return self.data_dir / "qdrant-edge"
