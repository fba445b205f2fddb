"""The one settings object of pagelens.

Two tiers. The user-facing settings (models, device, data dir, Qdrant, keys, limits, modes) are fields of
``Settings``, set by ``PAGELENS_<FIELD>`` (upper case) or a ``.env`` file (the same file docker-compose
reads) and listed in the README. The advanced tuning knobs (batch sizes, candidate counts, index and
decoding parameters) are the nested group ``Settings.tuning`` (``Tuning``), set by
``PAGELENS_TUNING__<NAME>`` and listed in docs/tuning.md. Measurements behind the defaults live in
bench/README.md, not here. Build the settings once at an entry point and pass them in: nothing in the stage
packages imports a global settings instance.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

log = logging.getLogger(__name__)

DEFAULT_RETRIEVER_MODEL = "vidore/colSmol-256M"
DEFAULT_ANSWER_MODEL = "HuggingFaceTB/SmolVLM-256M-Instruct"


_WARNED: set[str] = set()  # legacy env names already warned about
REMOVED_KNOBS = ("rerank_candidates", "pooled_scan_max_pages", "token_candidates")  # automatic since 2026-12-06


def default_data_dir() -> Path:
    return Path.home() / ".local" / "share" / "pagelens"


class Tuning(BaseModel):
    """Advanced tuning knobs: batch sizes, candidate counts, index parameters, decoding and fusion details.

    The defaults are what measured best (bench/README.md has the figures and what they were measured on);
    most users never change them. Set them as ``PAGELENS_TUNING__<NAME>`` (``PAGELENS_TUNING__RRF_K=4``), as
    ``Settings(tuning={"rrf_k": 4})`` or, in Python, as flat keywords (``Settings(rrf_k=4)``). The flat
    environment names of earlier releases (``PAGELENS_RRF_K``) are still read, with a warning.
    """

    model_config = ConfigDict(extra="forbid")

    # --- Qdrant writes and calls -------------------------------------------------------------
    upsert_batch_points: int = Field(default=16, ge=1, description="Points per upsert request.")
    upsert_max_bytes: int = Field(
        default=32 * 1024 * 1024, ge=1024, description="Most bytes (approx., JSON) of one upsert request (server)."
    )
    qdrant_timeout_s: float = Field(default=60.0, gt=0, description="Timeout (s) of one Qdrant server call.")
    qdrant_retries: int = Field(default=5, ge=0, description="Retries of a transient server error (backoff).")

    # --- retriever forward ---------------------------------------------------------------------
    attn_implementation: Literal["auto", "eager", "sdpa", "flash_attention_2"] = Field(
        default="auto", description="Attention kernel of both models (auto: sdpa where supported)."
    )
    embed_batch_size: int = Field(
        default=0, ge=0, description="Pages per retriever forward pass. 0: auto, 16 on CUDA, 4 elsewhere.",
    )
    image_processor_backend: Literal["auto", "pil", "torchvision"] = Field(
        default="auto", description="Image preprocessing of both models (resize, tiling, normalisation). pil: "
        "transformers' PIL processor, exactly what the models were trained with (LANCZOS). torchvision: its "
        "faster torch processor (BICUBIC for LANCZOS). auto: torchvision on CUDA (and whenever "
        "preprocess_device=model), pil elsewhere.",
    )
    preprocess_device: Literal["auto", "cpu", "model"] = Field(
        default="auto", description="Where page images are resized, tiled and normalised. cpu: in the ingest "
        "worker processes (retriever) and on the CPU (answers). model: on each model's device (a GPU), in the "
        "main process for ingest (the workers then only rasterize); needs the torchvision processor. auto: "
        "model on CUDA with the torchvision processor, cpu elsewhere. model applies to tiled retrievers "
        "(ColIdefics3, ColModernVBert) and SmolVLM answer models; other model families preprocess on the CPU "
        "(said once when model was asked for).",
    )
    torch_compile: bool = Field(
        default=False, description="torch.compile (inductor) the retriever's vision encoder layers at load; the "
        "first batches compile.",
    )
    batch_across_documents: Literal["auto", "on", "off"] = Field(
        default="auto", description="With ingest workers: embed the prepared pages of several waiting "
        "documents in one forward (up to embed_batch_size), so short documents keep the GPU busy. Points "
        "equal the per-document ones up to padding noise. auto: on when the retriever runs on CUDA; off keeps "
        "points bitwise equal to serial mode.",
    )
    pipeline_queue_chunks: int = Field(
        default=0, ge=0, description="Prepared batches waiting for the embedder (0: 2 x workers). Bounds memory."
    )

    # --- first stage and rerank ----------------------------------------------------------------
    prefetch_limit: int = Field(
        default=250, ge=1, description="Candidates per pooled prefetch (rows and cols: up to twice this many "
        "pages reach the rerank).",
    )
    hnsw_m: int = Field(
        default=8, ge=4, le=64, description="Embedded store: HNSW m of the pooled row/column vectors of new "
        "collections.",
    )
    fast_rerank: bool = Field(
        default=True, description="Embedded store, two_stage: a MaxSim kernel over a cached int8 copy of the "
        "full vectors picks the pages that Qdrant then scores exactly "
        "(index/ann/fast_rerank.py). False: Qdrant scores every prefetched page exactly (slower).",
    )
    search_recall_target: float = Field(
        default=0.95, gt=0, le=1, description="The share of exact MaxSim's top 5 pages a first stage must find on "
        "probe queries made from the collection's own pages (checked by `optimize`) for two_stage searches to use "
        "it; the cheapest that does is used, else exact search (index/ann/self_check.py).",
    )
    token_index_min_pages: int = Field(
        default=500, ge=0, description="Embedded store, fast_rerank: `optimize` builds a token-level first "
        "stage (a codebook of the patch vectors and inverted lists, index/ann/token_index.py) for collections "
        "of at least this many pages; their unfiltered searches take candidates from it when the self-check "
        "measures that it reaches search_recall_target. 0: never.",
    )
    token_nprobe: int = Field(
        default=16, ge=1, le=256, description="Codebook cells probed per query token by the token-level first stage.",
    )
    search_threads: int = Field(
        default=0, ge=0, description="Embedded store, fast_rerank: threads one search's int8 kernels (the "
        "whole-collection and dedup scans, the int8 rerank) are split over. Each takes chunks from one queue "
        "on a single core, so a core busy with other work slows only its own chunks. 0: one per CPU core; "
        "1: the searching thread alone.",
    )
    indexing_nice: int = Field(
        default=10, ge=0, le=19, description="Server: the nice value added to the job worker and repair threads "
        "(and what they start: the embedder's threads, page writes, the sandboxed parsers), so that searches get "
        "the cores first while a job indexes; an idle machine still gives indexing all of them "
        "(pagelens/core/cpu_priority.py). 0: indexing at the searches' priority.",
    )

    # --- answers -------------------------------------------------------------------------------
    max_image_tokens: int = Field(default=8192, ge=1, description="Cap on image tokens in one prompt.")
    answer_kv_cache: Literal["dynamic", "static"] = Field(
        default="dynamic", description="KV cache of the answer model's generate(): static pre-allocates it, "
        "which lets transformers compile the decode step on CUDA (greedy tokens are the same).",
    )
    answer_decoder: Literal["auto", "generate", "graph"] = Field(
        default="auto", description="How answers are decoded. graph: pagelens' greedy loop over a static KV "
        "cache (answer/fast_decode.py), the one-token step captured once as a CUDA graph on CUDA and replayed "
        "per token (checked against the eager step, falls back to it); eager on the CPU. generate: "
        "transformers generate() (with answer_kv_cache). auto: graph on CUDA, generate elsewhere. Greedy "
        "tokens are the same in every mode. graph is for SmolVLM (Idefics3) answer models; other families "
        "decode with generate() (said once).",
    )

    # --- hybrid fusion ---------------------------------------------------------------------------
    # What the fusion defaults rest on (bench/README.md, "Languages and scans", 2026-12-01): runs with a
    # *random* visual model (tiny test weights) on known-item queries (verbatim sentences and numbers,
    # inflected word forms in 8 languages, CJK snippets, words printed on scans). There a small rrf_k keeps
    # hybrid recall@5 at the text ranking's while k=60 and DBSF lose recall to the useless visual ranking, and
    # a higher text weight would also keep recall@1. What they cannot show: how much a real colSmol ranking
    # deserves (the better ranking on paraphrased questions, charts, scans without OCR), so rrf, k=2 and
    # weight 0.5 stay until hybrid is measured with real weights (pagelens eval --modes visual,text,hybrid).
    fusion: Literal["rrf", "dbsf"] = Field(
        default="rrf", description="Hybrid fusion: rrf (reciprocal rank) or dbsf (weighted, distribution-normalised scores)."
    )
    rrf_k: float = Field(
        default=2.0, gt=0, description="RRF constant: score = sum_i w_i / (rrf_k + rank_i), rank 1-based; "
        "small k is top-heavy.",
    )
    hybrid_text_weight: float = Field(
        default=0.5, ge=0, le=1, description="Weight of the text ranking in hybrid fusion (visual gets 1 - it)."
    )
    hybrid_candidates: int = Field(default=50, ge=1, description="Candidates taken from each ranking before fusion.")
    max_regions: int = Field(
        default=8, ge=0, le=32, description="Regions per search hit and citation (boxes on the page where it "
        "matched: words of the question and the patches that won MaxSim); 0: none computed.",
    )

    # --- OCR and text analysis -----------------------------------------------------------------
    ocr_dpi: int = Field(
        default=300, ge=72, le=600, description="Resolution (dpi) PDF pages are rendered at for OCR (capped at "
        "25 Mpx); 300 is Tesseract's usual resolution.",
    )
    ocr_min_chars: int = Field(
        default=32, ge=0, description="auto OCR: a text layer with fewer letters and digits than this on a page "
        "counts as no text layer (scans with a stamp or page number in text).",
    )
    text_query_languages: Literal["all", "collection", "detected", "english"] = Field(
        default="all", description="Languages a text/hybrid query is analysed under (their terms united; "
        "index/stores/text_analysis.py): all analysers (default), the collection's page languages + the "
        "query's, the query's detected language only, or English only (compared in bench/README.md, "
        "'Languages and scans').",
    )

    # --- crash tests -----------------------------------------------------------------------------
    debug_pause_at: Literal["", "optimize", "cache_append", "sync_renamed", "sync_indexed", "sync_deleting"] = Field(
        default="", description="Crash tests only (pagelens/core/debug_hooks.py): the embedded store stops at "
        "this point, prints 'pagelens: paused at <point>' to stderr and sleeps until killed. optimize: during "
        "the closing optimize (after Edge's optimizers, before the rerank cache and token index); "
        "cache_append: after a Qdrant upsert, before the rerank-cache append; sync_renamed, sync_indexed, "
        "sync_deleting: `pagelens index --sync` after its renames, after its new pages are in (before any "
        "delete), after its first delete. Never set it in production.",
    )


class Settings(BaseSettings):
    """Runtime configuration. Units are in the field names or descriptions."""

    model_config = SettingsConfigDict(
        env_prefix="PAGELENS_", env_file=".env", env_file_encoding="utf-8", extra="ignore",
        env_nested_delimiter="__",
    )

    # --- storage ----------------------------------------------------------------------------
    data_dir: Path = Field(default_factory=default_data_dir, description="Embedded store, page images, jobs.")
    page_images_dir: Path | None = Field(
        default=None, description="Root folder of the rendered page PNGs; payloads store image paths relative "
        "to it. Unset: <data_dir>/pages. For `--shard I/N` workers on several hosts (with a Qdrant server), a "
        "folder every host mounts (NFS, a shared volume), set on every host: README, 'Shards on many machines'.",
    )
    qdrant_url: str | None = Field(
        default=None, description="Qdrant server URL (http://host:6333). Unset: embedded Qdrant Edge."
    )
    qdrant_api_key: SecretStr | None = Field(default=None, description="API key of the Qdrant server.")
    qdrant_shard_number: int = Field(default=1, ge=1, description="Shards of a new server collection.")
    qdrant_replication_factor: int = Field(default=1, ge=1, description="Replicas of each shard (server).")
    qdrant_on_disk: bool = Field(default=False, description="Keep full multivectors on disk (server).")
    qdrant_quantization: Literal["none", "scalar", "binary"] = Field(
        default="none", description="Quantization of the full multivectors of a new server collection."
    )

    # --- models and device -------------------------------------------------------------------
    retriever_model: str = Field(default=DEFAULT_RETRIEVER_MODEL, description="Hub id or local directory.")
    retriever_revision: str | None = Field(default=None, description="Hub revision of the retriever model.")
    answer_model: str = Field(default=DEFAULT_ANSWER_MODEL, description="Hub id or local directory.")
    answer_revision: str | None = Field(default=None, description="Hub revision of the answer model.")
    device: str = Field(default="auto", description="auto | cpu | cuda | cuda:N | mps")
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = Field(
        default="auto", description="Model weights/activations. auto: bfloat16 on CUDA and on CPUs with native "
        "bf16 (AVX512-BF16/AMX), float16 on MPS, else float32.",
    )

    # --- ingest --------------------------------------------------------------------------------
    page_longest_edge: int = Field(
        default=2048, ge=64,
        description="Longest edge (px) pages are rendered at and fed to the retriever (Idefics3: N x 512).",
    )
    rasterizer: Literal["pymupdf", "poppler"] = Field(default="pymupdf", description="PDF renderer.")
    ingest_workers: int = Field(
        default=-1, ge=-1, description="Worker processes rasterizing and preprocessing pages (-1 auto: "
        "min(4, CPUs) with a GPU, CPUs // 4 on CPU; 0: serial).",
    )
    pdf_password: SecretStr | None = Field(default=None, description="Password tried on encrypted PDFs.")
    soffice: str = Field(
        default="soffice", description="LibreOffice program that converts office and web documents (DOCX, XLSX, "
        "PPTX, ODT/ODS/ODP, DOC/XLS/PPT, RTF, HTML) to PDF (ingest/office.py): a name on PATH or a path. Missing: "
        "those files fail with an error saying what to install; the other files are indexed.",
    )
    office_timeout_s: float = Field(
        default=120.0, ge=0, description="Wall-clock limit (s) for converting one office document to PDF; past it "
        "LibreOffice is killed and the file fails with an error naming the limit (0: none).",
    )

    # --- OCR (ingest/ocr.py) --------------------------------------------------------------------
    ocr: Literal["auto", "off", "force"] = Field(
        default="auto", description="OCR with Tesseract. auto: pages whose text layer is unusable (under "
        "tuning.ocr_min_chars letters/digits, or mojibake) and image files; force: every page (OCR text "
        "replaces the text layer); off: never. Without Tesseract installed indexing goes on and says once that "
        "scans are found visually only.",
    )
    ocr_languages: str = Field(
        default="eng+deu+fra+spa+ita+nld+pol+por+jpn", description="Tesseract languages (traineddata names, "
        "'+'-separated). Per page, Tesseract's script detection picks among them: the Latin-script ones "
        "together, jpn for Japanese. Missing ones are announced once with the package to install "
        "(tesseract-ocr-<lang>).",
    )
    ocr_timeout_s: float = Field(
        default=120.0, ge=0, description="Wall-clock limit (s) for the OCR of one page (orientation + recognition; "
        "0: none). Past it the page keeps no OCR text (found visually only) and the index report notes it.",
    )
    tesseract_cmd: str = Field(default="tesseract", description="The tesseract program (name on PATH or path).")

    # --- limits (hostile input, uploads) --------------------------------------------------------
    max_pages_per_document: int = Field(default=2000, ge=1, description="Pages indexed of one document at most.")
    max_pixels_per_page: int = Field(
        default=64_000_000, ge=1, description="Decompression-bomb guard for source images and renders (px)."
    )
    max_file_bytes: int = Field(default=512 * 1024 * 1024, ge=1, description="Largest input file (bytes).")
    max_seconds_per_document: float = Field(
        default=300.0, ge=0, description="Most seconds spent rendering the pages of one document (checked "
        "between pages; 0: no limit). Past it the document fails with an error naming the file and the limit.",
    )
    isolate_rendering: bool = Field(
        default=True, description="Parse untrusted files in sandboxed child processes (ingest/isolation.py): "
        "PyMuPDF opens and renders PDFs and Pillow reads image files in a killable child (reused across "
        "documents, ingest/sandbox.py), LibreOffice "
        "converts office files (ingest/office.py, a fresh profile per document) and Tesseract reads scans "
        "(ingest/ocr.py), each under render_memory_mb (RLIMIT_AS), render_cpu_s (RLIMIT_CPU), max_file_bytes "
        "(RLIMIT_FSIZE), without network (a new network namespace where the system allows it, else one "
        "warning) and with a read-only view of the filesystem but for its own work dir (Landlock, "
        "ingest/fs_guard.py; where the kernel lacks it, one warning); a page past a limit becomes a page error "
        "naming the file, page and limit. Its cost per page: "
        "README, 'Sandbox'. False (trusted batch jobs only): render in-process, no per-page kill, no limits.",
    )
    render_cpu_s: float = Field(
        default=300.0, ge=0, description="CPU-time limit (s, RLIMIT_CPU) of the sandboxed parsing when "
        "isolate_rendering: per document for the rendering child, per conversion for LibreOffice, per call for "
        "Tesseract (0: none).",
    )
    render_timeout_s: float = Field(
        default=60.0, ge=0, description="Wall-clock limit (s) for one page render when isolate_rendering (0: none).",
    )
    render_memory_mb: int = Field(
        default=4096, ge=0, description="Address-space cap (MiB, RLIMIT_AS) of the rendering child process "
        "when isolate_rendering (0: none).",
    )
    max_upload_bytes: int = Field(
        default=256 * 1024 * 1024, ge=1, description="Most bytes of one upload request (all files), enforced while streaming."
    )
    max_files_per_request: int = Field(default=32, ge=1, description="Most files in one upload request.")

    # --- incremental sync (pagelens/app/sync.py) -----------------------------------------------
    sync_max_delete_share: float = Field(
        default=0.5, ge=0, le=1, description="`pagelens index DIR --sync` (and REST sync) refuses, unless --yes "
        "(REST: \"yes\": true), to delete more than this share of the collection's documents (of the shard's, "
        "with --shard): a folder that looks empty is more often an unmounted network drive than a purge.",
    )
    sync_roots: list[Path] = Field(
        default_factory=list, description="Server-side folders REST sync (POST /v1/collections/{c}/sync) may "
        "mirror: the request names a folder relative to one of these and it must resolve inside it (symlinks "
        "out refused). Empty: REST sync is off. Example: PAGELENS_SYNC_ROOTS='[\"/srv/invoices\"]'.",
    )

    # --- search and answers (modes) ----------------------------------------------------------------
    retrieval_mode: Literal["visual", "text", "hybrid"] = Field(
        default="hybrid",
        description="Default ranking: visual (MaxSim on page images, strategy search_mode), text (BM25 on "
        "the text layer) or hybrid (both fused). Collections without a text index fall back to visual.",
    )
    search_mode: Literal["two_stage", "exact"] = Field(
        default="two_stage", description="Visual strategy: two_stage (candidates, then exact MaxSim) or exact "
        "(MaxSim over every page).",
    )
    top_k: int = Field(default=5, ge=1, le=1000, description="Pages a search returns.")
    full_vector_datatype: Literal["float32", "float16"] = Field(
        default="float16", description="Storage of the full page multivectors in new collections (both stores). "
        "float16 holds half the bytes of float32 (291 vs 583 KB per 1139-token page) and moves MaxSim scores by "
        "at most 7e-4 on scores of ~17 (the exact top 5 the same up to near-ties within 1e-4 of the 5th score, "
        "1,000-page synthetic collections, 2026-12-07); float32 for scores to the last bit. Existing collections "
        "keep theirs.",
    )
    answer_top_k: int = Field(default=3, ge=1, le=16, description="Pages shown to the answer model.")
    answer_longest_edge: int = Field(default=1536, ge=64, description="Longest edge (px) of page images shown.")
    max_new_tokens: int = Field(default=256, ge=1, description="Longest answer (tokens).")
    relevance_threshold: float | None = Field(
        default=None, description="Relevance gate on the visual MaxSim of each hit (its visual_score: sum over "
        "the query tokens of the best dot product, so at most the number of query tokens): pages below it are "
        "not shown to the answer model, and with none left no answer is generated. Never compared with the "
        "fused hybrid score (RRF/DBSF). Unset: no gate.",
    )
    relevance_threshold_text: float | None = Field(
        default=None, description="Relevance gate on the BM25 of each hit (its text_score; text and hybrid "
        "modes): a page passes when it reaches this or relevance_threshold. Unset: BM25 does not gate.",
    )

    # --- HTTP API and web UI (pagelens serve) -------------------------------------------------------
    api_keys: SecretStr | None = Field(
        default=None,
        description='API keys: "KEY:admin;KEY:rw:coll1,coll2;KEY:r:coll1" (see pagelens/app/access.py). '
        "Unset: no auth, and `pagelens serve` binds to loopback only unless --insecure.",
    )
    ui_session_hours: float = Field(
        default=12.0, gt=0, description="How long a web UI sign-in lasts (with API keys): the session cookie's "
        "lifetime; sessions are kept in server memory, so a restart signs everyone out.",
    )
    ui_cache_max_age_s: int = Field(
        default=3600, ge=60, description="The web UI's private file cache (uploads not yet queued, copies of "
        "shown pages) is cleaned of files older than this, every this many seconds; all of it at shutdown.",
    )
    ui_cache_max_bytes: int = Field(
        default=1024 * 1024 * 1024, ge=1, description="The web UI refuses new uploads (507) while its cache "
        "holds more than this many bytes of uploads not yet queued.",
    )
    cors_origins: list[str] = Field(default_factory=list, description="Origins allowed by CORS (empty: no CORS).")
    allowed_hosts: Annotated[list[str], NoDecode] = Field(
        default_factory=list, description="Host names (name: any port, name:port: that port) the server answers "
        "for besides the loopback names and its bound address (pagelens/app/request_guard.py; DNS-rebinding "
        "protection: any other Host gets 400). Comma-separated or a JSON list; '*' turns the check off (only "
        "behind a proxy that checks Host itself).",
    )
    job_keep_uploads: bool = Field(default=False, description="Keep uploaded files after their job finished.")
    keep_originals: bool = Field(
        default=True, description="Keep a copy of each indexed file in the data dir's originals/ folder (one per distinct "
        "content: sha256), so users who may read its collection can download it (REST GET "
        "/v1/collections/{c}/documents/{id}/original, the UI's Documents table); removed when its last document "
        "is deleted. Off: no copy is kept, and a download says to index the file again with it on.",
    )
    job_retention_days: float = Field(
        default=30.0, ge=0, description="Finished jobs (done, failed, cancelled) older than this many days (by "
        "their last update) are deleted from jobs.sqlite3, with any upload files left, when the server starts "
        "and hourly (0: kept by age).",
    )
    job_retention_max_jobs: int = Field(
        default=10_000, ge=0, description="At most this many finished jobs are kept in jobs.sqlite3, the newest "
        "(pruned with job_retention_days; 0: no cap). Queued and running jobs are never pruned.",
    )

    # --- MCP server (pagelens/mcp: `pagelens mcp` over stdio, /mcp on `pagelens serve`) ------------
    mcp_key: SecretStr | None = Field(
        default=None, description="The API key `pagelens mcp` (stdio) acts with when PAGELENS_API_KEYS is set: "
        "its role and collections decide the tools offered. Over HTTP each request sends its own key.",
    )
    mcp_image_max_edge: int = Field(
        default=1024, ge=64, description="Longest edge (px) of a page image returned by the MCP tools.",
    )
    mcp_image_max_bytes: int = Field(
        default=400_000, ge=10_000, description="Most bytes of one page image returned by the MCP tools (PNG if "
        "it fits, else JPEG at lower quality, then smaller, until it does).",
    )
    mcp_allowed_hosts: list[str] = Field(
        default_factory=list, description="Without API keys, /mcp answers only requests whose Host is a loopback "
        "name (DNS-rebinding protection); add host[:port] names here to accept others (with keys: any host).",
    )

    # --- advanced tuning knobs (docs/tuning.md) ------------------------------------------------------
    tuning: Tuning = Field(
        default_factory=lambda: Tuning(),
        description="Advanced tuning knobs (docs/tuning.md): env PAGELENS_TUNING__<NAME>.",
    )
    @model_validator(mode="before")
    @classmethod
    def _gather_tuning(cls, data: Any) -> Any:
        """Flat tuning keywords (``Settings(rrf_k=4)``) and the flat environment names of earlier releases
        (``PAGELENS_RRF_K``, warned once) go into ``tuning``; explicit keywords win over the environment."""
        if not isinstance(data, dict):
            return data
        given = data.get("tuning")
        tuning: dict[str, Any] = dict(given.model_dump(exclude_unset=True) if isinstance(given, Tuning) else given or {})
        for name in REMOVED_KNOBS:  # candidate counts are measured by the self-check now
            found = [k for k in (f"PAGELENS_{name.upper()}", f"PAGELENS_TUNING__{name.upper()}") if k in os.environ]
            if name in data or name in tuning or found:
                data.pop(name, None)
                tuning.pop(name, None)
                if name not in _WARNED:
                    _WARNED.add(name)
                    log.warning("%s is no longer a setting and is ignored: `pagelens optimize` measures each "
                                "collection's recall and picks its candidates (set search_recall_target instead)",
                                found[0] if found else name)
        for name in Tuning.model_fields:
            legacy = f"PAGELENS_{name.upper()}"
            if name not in tuning and legacy in os.environ:
                tuning[name] = os.environ[legacy]
                if legacy not in _WARNED:
                    _WARNED.add(legacy)
                    log.warning("%s is read as PAGELENS_TUNING__%s (its new name; the old one will go)",
                                legacy, name.upper())
            if name in data:
                tuning[name] = data.pop(name)
        if tuning or given is not None:
            data["tuning"] = tuning
        return data

    @field_validator("allowed_hosts", mode="before")
    @classmethod
    def _split_hosts(cls, value: Any) -> Any:
        """``a.example,b.example:8000`` or a JSON list, from the environment."""
        if isinstance(value, str):
            text = value.strip()
            if text.startswith("["):
                import json

                return json.loads(text)
            return [part.strip() for part in text.split(",") if part.strip()]
        return value

    @field_validator("data_dir", "page_images_dir", mode="after")
    @classmethod
    def _expand(cls, value: Path | None) -> Path | None:
        return value.expanduser() if value is not None else None

    @field_validator("retriever_model", "answer_model", mode="after")
    @classmethod
    def _absolute_local_model(cls, value: str) -> str:
        """A local model directory is recorded by its absolute path, so ``./m`` and ``/abs/m`` match."""
        path = Path(value).expanduser()
        return str(path.resolve()) if path.exists() else value

    @model_validator(mode="after")
    def _preprocess_needs_torchvision(self) -> Settings:
        if self.tuning.preprocess_device == "model" and self.tuning.image_processor_backend == "pil":
            raise ValueError("PAGELENS_TUNING__PREPROCESS_DEVICE=model preprocesses with torch on the model's device: set "
                             "PAGELENS_TUNING__IMAGE_PROCESSOR_BACKEND=torchvision too (the pil processor runs on the CPU only)")
        return self

    def resolved_image_processor_backend(self, device_type: str) -> Literal["pil", "torchvision"]:
        """``tuning.image_processor_backend`` with auto resolved for a model on ``device_type`` ("cuda", "cpu"...)."""
        if self.tuning.image_processor_backend != "auto":
            return self.tuning.image_processor_backend
        return "torchvision" if device_type == "cuda" or self.tuning.preprocess_device == "model" else "pil"

    def resolved_preprocess_device(self, device_type: str) -> Literal["cpu", "model"]:
        """``tuning.preprocess_device`` with auto resolved for a model on ``device_type``."""
        if self.tuning.preprocess_device != "auto":
            return self.tuning.preprocess_device
        on_gpu = device_type == "cuda" and self.resolved_image_processor_backend(device_type) == "torchvision"
        return "model" if on_gpu else "cpu"

    def resolved_embed_batch_size(self, device_type: str) -> int:
        """``tuning.embed_batch_size``, with 0 (auto) resolved for the retriever's device type ("cuda", "cpu"...)."""
        if self.tuning.embed_batch_size > 0:
            return self.tuning.embed_batch_size
        return 16 if device_type == "cuda" else 4


    @property
    def pages_dir(self) -> Path:
        """The page-image root: ``page_images_dir``, else ``<data_dir>/pages`` (index/stores/page_images.py)."""
        return self.page_images_dir if self.page_images_dir is not None else self.data_dir / "pages"

    @property
    def edge_dir(self) -> Path:
        """Root of the embedded Qdrant Edge collections."""
        return self.data_dir / "qdrant-edge"

    def with_overrides(self, **values: Any) -> Settings:
        """A copy with some settings changed; tuning knobs may be given flat (``answer_decoder="graph"``)."""
        tuning = {k: values.pop(k) for k in list(values) if k in Tuning.model_fields}
        if tuning:
            values["tuning"] = self.tuning.model_copy(update=tuning)
        return self.model_copy(update=values)
