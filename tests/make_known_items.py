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
    pdf_dir: Path, docs: Sequence[str] | None = DEFAULT_DOCS, seed: int = 7, per_page: int = 1, per_doc: int = 8
) -> list[dict]:
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


if __name__ == "__main__":
    here = Path(__file__).resolve().parent
    pdf_dir = Path(sys.argv[1]) if len(sys.argv) > 1 else here.parents[1] / "shared" / "pdfs" / "real"
    out = Path(sys.argv[2]) if len(sys.argv) > 2 else here / "data" / "known_items.jsonl"
    made = make_known_items(pdf_dir)
    write_jsonl(made, out)
    print(f"{len(made)} queries -> {out}")
