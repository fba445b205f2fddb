"""Generate the known-item evaluation set from the shared real PDFs (reproducible, no PDFs copied).

``python tests/make_known_items.py [PDF_DIR] [OUT.jsonl]`` writes one JSON query per line in the
``pagelens eval`` format (``pagelens/app/evaluation.py``)::

    {"qid": "ki-000", "query": "...", "relevant": [{"doc": "x.pdf", "page": 2}], "kind": "sentence"}

Each query is known to be answered by exactly one page: it is taken from that page's text layer
(PyMuPDF ``get_text("text")``, the same extraction the indexer stores) and its normalised form occurs
on no other page of the set. Two kinds:

* ``sentence``: a window of 6-10 consecutive words of a sentence of the page (mostly letters);
* ``number``: a number of 3+ digits unique to the page, with the up to 4 words before it as
  context; its ``answer`` is the number (so ``--answers`` has a reference to score).

Selection is deterministic (sorted files, pages in order, ``random.Random(seed)`` per page); at most
``per_page`` queries of each kind per page and ``per_doc`` per document; a sentence window needs
3+ words of 4+ letters (not only stopwords). Scanned pages (no text) get
no queries but stay in the corpus. The default subset (``DEFAULT_DOCS``, 10 PDFs, 41 pages) keeps
the test fast; ``tests/data/known_items.jsonl`` is this script's output for it.
"""

from __future__ import annotations

import json
import random
import re
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

DEFAULT_DOCS = (
    "fr_demolition_minutes_2023.pdf",
    "inv_aws_invoice_en.pdf",
    "inv_free_fiber_bill_fr.pdf",
    "inv_oyo_hotel_receipt_in.pdf",
    "inv_qualityhosting_de.pdf",
    "paper_creativity_ml_thoma.pdf",
    "paper_naacl06_shinyama.pdf",
    "rpt_federal_register_2020-17221.pdf",
    "scan_huckfinn_page_en.pdf",
    "slide_kreate_guidance_16x9.pdf",
)
WORD = re.compile(r"^[^\W\d_][^\W\d_'’-]*[.,;:]?$")
NUMBER = re.compile(r"^\(?[$€£]?(\d[\d,.]*\d|\d{3,})%?[.,;:)]?$")


def norm(text: str) -> str:
    """Lower case, words only, single spaces: the form uniqueness is checked on."""
    return " ".join(re.findall(r"\w+", text.lower()))


def page_texts(pdf: Path) -> list[str]:
    import pymupdf

    with pymupdf.open(pdf) as doc:
        return [str(page.get_text("text")) for page in doc]


def sentences(text: str) -> list[list[str]]:
    flat = " ".join(text.replace("-\n", "").split())
    return [s.split() for s in re.split(r"(?<=[.!?])\s+", flat) if s.strip()]


def make_known_items(
    pdf_dir: Path, docs: Sequence[str] | None = DEFAULT_DOCS, seed: int = 7, per_page: int = 1, per_doc: int = 8,
    texts: dict[str, list[str]] | None = None,
) -> list[dict]:
    """``texts``: {document name: page texts} to use instead of reading ``pdf_dir`` (scanned copies)."""
    if texts is not None:
        pages = [(name, no, text) for name in sorted(texts) for no, text in enumerate(texts[name], start=1)]
    else:
        files = sorted(Path(pdf_dir).glob("*.pdf")) if docs is None else [Path(pdf_dir) / d for d in docs]
        pages = [(f.name, no, text) for f in sorted(files) for no, text in enumerate(page_texts(f), start=1)]
    corpus = {(name, no): f" {norm(text)} " for name, no, text in pages}

    def unique(phrase: str, where: tuple[str, int]) -> bool:
        key = f" {norm(phrase)} "
        return key.strip() != "" and [loc for loc, text in corpus.items() if key in text] == [where]

    items: list[dict] = []
    per_doc_count: dict[str, int] = {}
    for name, no, text in pages:
        if not text.strip():
            continue
        rng = random.Random(f"{seed}:{name}:{no}")
        made = {"sentence": 0, "number": 0}
        # sentences: windows of mostly-letter words
        cands = [s for s in sentences(text) if len(s) >= 6 and sum(bool(WORD.match(w)) for w in s) >= 0.8 * len(s)]
        rng.shuffle(cands)
        for words in cands:
            if made["sentence"] >= per_page:
                break
            n = rng.randint(6, min(10, len(words)))
            start = rng.randint(0, len(words) - n)
            phrase = " ".join(words[start : start + n]).strip(" ,;:")
            content = [w for w in words[start : start + n] if len(w.strip(".,;:")) >= 4]
            if len(content) >= 3 and unique(phrase, (name, no)):
                items.append({"query": phrase, "relevant": [{"doc": name, "page": no}], "kind": "sentence"})
                made["sentence"] += 1
        # numbers with their context
        tokens = " ".join(text.split()).split()
        spots = [i for i, t in enumerate(tokens) if NUMBER.match(t) and len(re.sub(r"\D", "", t)) >= 3]
        rng.shuffle(spots)
        for i in spots:
            if made["number"] >= per_page:
                break
            number = NUMBER.match(tokens[i]).group(1)  # type: ignore[union-attr]
            context = [w for w in tokens[max(0, i - 4) : i] if WORD.match(w)]
            if len(context) < 2 or not unique(number, (name, no)):
                continue
            query = " ".join([*[w.strip(".,;:") for w in context], number])
            items.append({"query": query, "relevant": [{"doc": name, "page": no}], "kind": "number",
                          "answer": number})
            made["number"] += 1
    # cap per document, keeping the page order
    out = []
    for item in items:
        doc = item["relevant"][0]["doc"]
        if per_doc_count.get(doc, 0) < per_doc:
            per_doc_count[doc] = per_doc_count.get(doc, 0) + 1
            out.append(item)
    for i, item in enumerate(out):
        item["qid"] = f"ki-{i:03d}"
    return [{"qid": it["qid"], **{k: v for k, v in it.items() if k != "qid"}} for it in out]


def write_jsonl(items: list[dict], target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    with target.open("w", encoding="utf-8") as fh:
        for item in items:
            fh.write(json.dumps(item, ensure_ascii=False) + "\n")




# ------------------------------------------------------------------------------------------------
# Languages, CJK and scans (issue 15): ``python tests/make_known_items.py --sets OUT_DIR [PDF_DIR]``
# writes three dataset folders for ``pagelens eval`` (queries.jsonl + documents/, no shared PDF
# copied: documents/ holds symlinks to them, the synthetic invoices of tests/multilingual_docs.py
# and the scanned copies made here):
#
# * ``languages/``: ``inflected`` queries, 3 words of one page each in a form that occurs nowhere in
#   the documents but has the same Snowball stem in the page's language (the form is checked with the
#   page language's analyser of index/stores/text_analysis.py: one term, the page word's term), for every
#   language with pages: real PDFs (en, fr, de) and the synthetic invoices (de, nl, pl, es, it, pt);
# * ``cjk/``: ``cjk`` queries, 4-8 characters cut from a longer run of Japanese / Chinese text without
#   spaces, unique to the page;
# * ``scans/``: scanned copies of text pages (rendered at 200 dpi in gray, rotated 1-2 degrees, noise,
#   JPEG quality 60), alternately as image-only PDFs and PNGs, with ``sentence`` / ``number``
#   queries from the original's text layer (the originals are not in this corpus).
# ------------------------------------------------------------------------------------------------

# suffixes tried on a word's Snowball stem (and the word) to make another inflected form
SUFFIXES = {
    "en": ("s", "es", "ed", "ing", "er"),
    "de": ("e", "en", "n", "s", "es", "er", "ern", "em"),
    "nl": ("en", "e", "s", "er", "ing", "ingen"),
    "pl": ("a", "y", "i", "e", "ę", "ą", "ów", "om", "ami", "ach", "u", "owi", "ie"),
    "fr": ("s", "e", "es", "x", "er", "ée", "ées"),
    "es": ("s", "es", "a", "as", "o", "os"),
    "it": ("i", "e", "a", "o"),
    "pt": ("s", "es", "a", "as", "o", "os"),
}
SNOWBALL = {"en": "english", "de": "german", "nl": "dutch", "pl": "polish", "fr": "french", "es": "spanish",
            "it": "italian", "pt": "portuguese"}
CJK_RUN = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff]{8,}")
SCAN_SOURCES = (  # (document, page): text pages in several languages
    ("inv_aws_invoice_en.pdf", 1), ("inv_qualityhosting_de.pdf", 1), ("inv_qualityhosting_de.pdf", 2),
    ("inv_free_fiber_bill_fr.pdf", 1), ("inv_netpresse_facture_fr.pdf", 1), ("fr_demolition_minutes_2023.pdf", 2),
    ("syn_factuur_drukkerij_nl.pdf", 1), ("syn_aanmaning_waterbedrijf_nl.pdf", 1),
    ("syn_faktura_hurtownia_pl.pdf", 1), ("syn_wezwanie_energetyka_pl.pdf", 1),
    ("syn_rechnung_moebelhaus_de.pdf", 1), ("syn_factura_ferreteria_es.pdf", 1),
)


def _terms(text: str, lang: str) -> set[int]:
    from pagelens.index.stores.text_analysis import analyse_document

    return set(analyse_document(text, lang)[0])


def inflected_items(pages: list[tuple[str, int, str, str]], seed: int = 7, per_page: int = 2,
                    per_lang: int = 24, indexed: list[tuple[str, int, str, str]] | None = None) -> list[dict]:
    """``inflected`` queries for ``pages`` [(doc name, page no, text, language)] (see above). ``indexed``:
    the text pagelens indexes for every page of the corpus, when it differs from the text layers (OCR
    reads pages whose layer is empty or mojibake): a query's form must occur nowhere in it, and its three
    terms together on no other page of it, or the query is not a known item of that collection."""
    import snowballstemmer
    from pagelens.index.stores.text_analysis import analyse_query

    corpus = pages if indexed is None else indexed
    vocab = {w for _, _, text, _ in corpus for w in re.findall(r"\w+", text.lower())}
    page_terms = {(name, no): _terms(text, lang) for name, no, text, lang in corpus}
    items: list[dict] = []
    per_lang_count: dict[str, int] = {}
    for name, no, text, lang in pages:
        if lang not in SUFFIXES or per_lang_count.get(lang, 0) >= per_lang:
            continue
        stemmer = snowballstemmer.stemmer(SNOWBALL[lang])
        rng = random.Random(f"{seed}:{name}:{no}")
        words = sorted({w for w in re.findall(r"[^\W\d_]{5,}", text)}, key=lambda w: (w.lower(), w))
        rng.shuffle(words)
        forms: list[tuple[str, str]] = []  # (page word, new form)
        used_terms: set[tuple[int, ...]] = set()
        for word in words:
            low = word.lower()
            term = analyse_query(low, [lang])[0]
            if len(term) != 1 or tuple(term) in used_terms:
                continue  # a stopword, or a term already used
            stem = stemmer.stemWord(low)
            # the word with a suffix first (plurals, cases), then the stem with one
            cands = [c for c in dict.fromkeys([low + suf for suf in SUFFIXES[lang]]
                                              + [stem + suf for suf in SUFFIXES[lang]]) if c != low]
            for cand in cands:
                if cand in vocab or analyse_query(cand, [lang])[0] != term:
                    continue
                forms.append((word, cand.capitalize() if word[0].isupper() else cand))
                used_terms.add(tuple(term))
                break
        made = 0
        for start in range(0, len(forms) - 2, 3):
            if made >= per_page:
                break
            chosen = forms[start : start + 3]
            query = " ".join(form for _, form in chosen)
            q_terms = set(analyse_query(query, [lang])[0])
            where = [loc for loc, terms in page_terms.items() if q_terms <= terms]
            if where != [(name, no)]:
                continue
            items.append({"query": query, "relevant": [{"doc": name, "page": no}], "kind": "inflected",
                          "lang": lang, "page_words": [w for w, _ in chosen]})
            made += 1
        per_lang_count[lang] = per_lang_count.get(lang, 0) + made
    return items


def cjk_items(pages: list[tuple[str, int, str, str]], seed: int = 7, per_page: int = 1) -> list[dict]:
    """``cjk`` queries: 4-8 characters from a longer Japanese/Chinese run, unique to the page."""
    items = []
    for name, no, text, lang in pages:
        if lang not in ("ja", "zh"):
            continue
        rng = random.Random(f"{seed}:{name}:{no}:cjk")
        runs = CJK_RUN.findall(text.replace("\n", ""))
        rng.shuffle(runs)
        made = 0
        for run in runs:
            if made >= per_page:
                break
            n = rng.randint(4, min(8, len(run) - 2))
            start = rng.randint(1, len(run) - n - 1)
            query = run[start : start + n]
            holders = [(nm, p) for nm, p, t, _ in pages if query in t.replace("\n", "")]
            if holders == [(name, no)]:
                items.append({"query": query, "relevant": [{"doc": name, "page": no}], "kind": "cjk", "lang": lang})
                made += 1
    return items


def scan_copy(pdf: Path, page_no: int, seed: int, dpi: int = 200) -> Any:
    """A scanned copy of one page: gray at ``dpi``, rotated 1-2 degrees, noise, JPEG quality 60."""
    import io

    import numpy as np
    import pymupdf
    from PIL import Image

    rng = random.Random(f"scan:{pdf.name}:{page_no}:{seed}")
    with pymupdf.open(pdf) as doc:
        pix = doc[page_no - 1].get_pixmap(dpi=dpi, colorspace=pymupdf.csGRAY, alpha=False)
        image = Image.frombytes("L", (pix.width, pix.height), pix.samples, "raw", "L", pix.stride)
    angle = rng.choice((-1, 1)) * rng.uniform(1.0, 2.0)
    image = image.rotate(angle, resample=Image.Resampling.BICUBIC, expand=True, fillcolor=255)
    arr = np.asarray(image, dtype=np.float32)
    noise = np.random.default_rng(rng.randint(0, 2**31)).normal(0, 12, arr.shape)
    image = Image.fromarray(np.clip(arr * 0.92 + 10 + noise, 0, 255).astype(np.uint8), mode="L")
    buf = io.BytesIO()
    image.save(buf, format="JPEG", quality=60)
    buf.seek(0)
    return Image.open(buf).convert("L")


def write_scan(image: Any, target: Path, dpi: int = 200) -> None:
    """PNG, or an image-only PDF (one page of the image's size at ``dpi``) when ``target`` is .pdf."""
    import io

    import pymupdf

    if target.suffix == ".png":
        image.save(target, format="PNG", dpi=(dpi, dpi))
        return
    buf = io.BytesIO()
    image.save(buf, format="JPEG", quality=85)
    doc = pymupdf.open()
    page = doc.new_page(width=image.width * 72 / dpi, height=image.height * 72 / dpi)
    page.insert_image(page.rect, stream=buf.getvalue())
    doc.save(target)
    doc.close()


def _pages(files: list[Path]) -> list[tuple[str, int, str, str]]:
    from pagelens.index.stores.text_analysis import detect_language

    out = []
    for f in files:
        for no, text in enumerate(page_texts(f), start=1):
            if text.strip():
                out.append((f.name, no, text, detect_language(text)[0]))
    return out


def indexed_pages(files: list[Path], cache: Path) -> list[tuple[str, int, str, str]]:
    """[(doc name, page no, text, language)] as pagelens indexes the pages of ``files``: the product's own
    ingest (``pagelens.ingest.open_document``) with OCR ``auto``, so pages whose text layer is empty or
    mojibake carry what Tesseract reads (``text_source`` ocr). Cached in ``cache`` (JSON, by file name and
    size): OCR costs seconds per page. Without Tesseract: the text layers (a warning says so)."""
    import json

    from pagelens.index.stores.text_analysis import detect_language
    from pagelens.ingest import open_document
    from pagelens.ingest.ocr import status_from_settings

    from pagelens.core.settings import Settings

    settings = Settings(_env_file=None, data_dir=cache.parent / ".ocr-settings", ocr="auto",
                        page_longest_edge=256)  # type: ignore[call-arg]
    if not status_from_settings(settings).available:
        print("warning: OCR is not available: known items are checked against text layers only", flush=True)
        return _pages(files)
    known = json.loads(cache.read_text()) if cache.exists() else {}
    out = []
    for f in files:
        key = f"{f.name}:{f.stat().st_size}"
        if key not in known:
            known[key] = [page.text for page in open_document(f, settings).pages()]
            cache.write_text(json.dumps(known, ensure_ascii=False))
        for no, text in enumerate(known[key], start=1):
            if text.strip():
                out.append((f.name, no, text, detect_language(text)[0]))
    return out


def build_sets(out_root: Path, pdf_dir: Path, seed: int = 7, extra: list[Path] | tuple[Path, ...] = ()) -> dict[str, int]:
    """Write ``languages/``, ``cjk/`` and ``scans/`` under ``out_root`` (see above); returns query counts.
    ``extra``: more PDFs for ``languages/`` only (bench/manpages.py: real Dutch, Polish, Spanish, Italian
    and Portuguese text)."""
    from multilingual_docs import write_pdfs

    out_root = Path(out_root)
    synthetic = write_pdfs(out_root / "synthetic")
    real = sorted(Path(pdf_dir).glob("*.pdf"))
    counts = {}
    # languages: every real PDF and the synthetic invoices
    extra = [Path(f) for f in extra]
    pages = _pages([*real, *synthetic])
    lang_dir = out_root / "languages"
    (lang_dir / "documents").mkdir(parents=True, exist_ok=True)
    for f in [*real, *synthetic, *extra]:
        link = lang_dir / "documents" / f.name
        if not link.exists():
            link.symlink_to(f.resolve())
    lang_pages = pages + _pages(extra)
    items = inflected_items(lang_pages, seed=seed,
                            indexed=indexed_pages([*real, *synthetic, *extra], out_root / "indexed_text.json"))
    _write_set(lang_dir, items, "infl")
    counts["languages"] = len(items)
    # cjk: the same corpus
    cjk_dir = out_root / "cjk"
    (cjk_dir / "documents").mkdir(parents=True, exist_ok=True)
    for f in [*real, *synthetic]:
        link = cjk_dir / "documents" / f.name
        if not link.exists():
            link.symlink_to(f.resolve())
    items = cjk_items(pages, seed=seed)
    _write_set(cjk_dir, items, "cjk")
    counts["cjk"] = len(items)
    # scans: copies only
    by_name = {f.name: f for f in [*real, *synthetic]}
    scan_dir = out_root / "scans"
    (scan_dir / "documents").mkdir(parents=True, exist_ok=True)
    originals = []
    for i, (name, no) in enumerate(SCAN_SOURCES):
        if name not in by_name:
            continue
        stem = Path(name).stem
        target = scan_dir / "documents" / f"scan_{stem}_p{no}.{'png' if i % 2 else 'pdf'}"
        if not target.exists():
            write_scan(scan_copy(by_name[name], no, seed), target)
        originals.append((target.name, page_texts(by_name[name])[no - 1]))
    items = _scan_items(originals, seed)
    _write_set(scan_dir, items, "scan")
    counts["scans"] = len(items)
    return counts


def _scan_items(originals: list[tuple[str, str]], seed: int) -> list[dict]:
    """sentence/number known items of the originals' text layers, relevant = the scan copy (page 1)."""
    items = make_known_items(Path("."), seed=seed, per_page=1, per_doc=2,
                             texts={name: [text] for name, text in originals})
    for item in items:
        item["kind"] = f"scan-{item['kind']}"
    return items


def _write_set(folder: Path, items: list[dict], prefix: str) -> None:
    for i, item in enumerate(items):
        item["qid"] = f"{prefix}-{i:03d}"
    write_jsonl([{"qid": it["qid"], **{k: v for k, v in it.items() if k != "qid"}} for it in items],
                folder / "queries.jsonl")


if __name__ == "__main__":
    here = Path(__file__).resolve().parent
    sys.path.insert(0, str(here.parent))
    if len(sys.argv) > 1 and sys.argv[1] == "--sets":
        out_root = Path(sys.argv[2])
        pdf_dir = Path(sys.argv[3]) if len(sys.argv) > 3 else here.parents[1] / "shared" / "pdfs" / "real"
        print(build_sets(out_root, pdf_dir))
        sys.exit(0)
    pdf_dir = Path(sys.argv[1]) if len(sys.argv) > 1 else here.parents[1] / "shared" / "pdfs" / "real"
    out = Path(sys.argv[2]) if len(sys.argv) > 2 else here / "data" / "known_items.jsonl"
    made = make_known_items(pdf_dir)
    write_jsonl(made, out)
    print(f"{len(made)} queries -> {out}")
