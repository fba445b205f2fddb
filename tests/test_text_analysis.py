"""Language-aware text analysis (index/stores/text_analysis.py) on both store backends: detection, per-language
stemming (German, Dutch, Polish inflected forms), CJK tokenization, the spec recorded with the
collection, old English-only collections, the language filter. No model needed (text search only)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from pagelens.index.stores.base import VectorStore
from pagelens.index.stores.edge_store import QdrantEdgeStore
from pagelens.index.stores.server_store import QdrantServerStore
from pagelens.index.stores.text_analysis import (
    ANALYSERS,
    TextAnalyzer,
    analyse_document,
    analyse_query,
    current_spec,
    detect_language,
)

from pagelens.core.errors import InvalidRequestError
from pagelens.core.types import CollectionManifest, PageEmbedding, PageFilter, PagePoint, page_point_id

DIM = 16
COLL = "langs"
MANIFEST = CollectionManifest(name=COLL, model_id="m", model_revision=None, dim=DIM, created_at="2026-12-01")

PAGES = {  # language -> a page of an invoice in it
    "de": "Rechnung Nr. 2024-0815. Für die Lieferung des Esstisches berechnen wir Ihnen den Betrag; bitte "
          "überweisen Sie ihn innerhalb von vierzehn Tagen auf unser Konto bei der Sparkasse.",
    "nl": "Factuur 2024-311. Hierbij ontvangt u de factuur voor het drukwerk dat wij hebben geleverd; wij "
          "verzoeken u het bedrag binnen dertig dagen over te maken op ons rekeningnummer.",
    "pl": "Faktura VAT nr 147/2024. W załączeniu przesyłamy fakturę za materiały budowlane dostarczone na "
          "budowę; prosimy o uregulowanie należności przelewem na rachunek bankowy.",
    "en": "Invoice 2024-77. Thank you for your order of office chairs; please pay the amount due within "
          "thirty days to our bank account.",
    "ja": "請求書番号2024-55。東京都千代田区の事務所への机と椅子の納品について、代金を三十日以内にお振込みください。",
    "fr": "Facture n° 2024-12. Nous vous remercions pour votre commande de fournitures de bureau ; merci de "
          "régler le montant dans un délai de trente jours.",
}


def _point(i: int, text: str, language: str | None) -> PagePoint:
    rng = np.random.default_rng(i)
    full = rng.standard_normal((6, DIM)).astype(np.float32)
    full /= np.linalg.norm(full, axis=1, keepdims=True)
    payload: dict[str, Any] = {"doc_id": f"d{i}", "doc_name": f"doc{i}.pdf", "page_no": 1, "page_count": 1,
                               "sha256": f"{i:064d}", "text": text}
    if language is not None:
        payload["language"] = language
    return PagePoint(page_point_id(COLL, payload["sha256"], 1), PageEmbedding(full, full[:2], full[:3]), payload)


def _points() -> list[PagePoint]:
    return [_point(i, text, detect_language(text)[0]) for i, text in enumerate(PAGES.values())]


@pytest.fixture(params=["edge", "server"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[VectorStore]:
    if request.param == "edge":
        s: VectorStore = QdrantEdgeStore(tmp_path / "edge")
    else:
        from qdrant_client import QdrantClient

        s = QdrantServerStore(QdrantClient(":memory:"))
    s.create_collection(MANIFEST)
    s.upsert(COLL, _points())
    yield s
    s.close()


def _doc_of(hits: list[Any]) -> list[str]:
    return [h.payload["doc_name"] for h in hits]


# --- detection ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("lang", sorted(PAGES))
def test_detects_each_pages_language(lang: str) -> None:
    code, confidence = detect_language(PAGES[lang])
    assert code == lang and confidence >= 0.5


def test_detection_undetermined_and_scripts() -> None:
    assert detect_language("") == ("und", 0.0)
    assert detect_language("12 345,00 EUR")[0] == "und"  # too few letters to tell
    assert detect_language("中华人民共和国审计报告")[0] == "zh"  # Han only
    assert detect_language("請求書を確認してください")[0] == "ja"  # kana


# --- analysis per language ---------------------------------------------------------------------------


@pytest.mark.parametrize(("lang", "page_word", "query_word"), [
    ("de", "Rechnung", "Rechnungen"), ("de", "Lieferung", "Lieferungen"), ("nl", "factuur", "facturen"),
    ("nl", "bedrag", "bedragen"), ("pl", "faktura", "faktury"), ("pl", "przelew", "przelewem"),
    ("en", "invoice", "invoices"), ("fr", "facture", "factures"), ("es", "factura", "facturas"),
])
def test_inflected_form_shares_the_term_in_its_language_only(lang: str, page_word: str, query_word: str) -> None:
    doc_terms = set(analyse_document(page_word, lang)[0])
    assert len(doc_terms) == 1
    assert set(analyse_query(query_word, [lang])[0]) == doc_terms
    if lang in ("de", "nl", "pl"):  # the English-only analysis of before misses these forms
        assert not set(analyse_query(query_word, ["en"])[0]) & set(analyse_document(page_word, "en")[0])


def test_stopwords_of_each_language_are_dropped() -> None:
    assert analyse_document("und der die das", "de") == ([], [])
    assert analyse_document("het een van de", "nl") == ([], [])
    assert analyse_document("oraz się na w", "pl") == ([], [])  # pagelens' Polish list (no engine one)
    assert analyse_document("the and of", "en") == ([], [])
    assert len(analyse_document("und der die das", "en")[0]) >= 3  # not English stopwords


def test_cjk_text_is_split_into_words() -> None:
    indices, _ = analyse_document("東京都の請求書を確認してください", "ja")
    assert len(indices) >= 4  # one run of characters without spaces -> several terms
    assert set(analyse_query("請求書", ["ja"])[0]) & set(indices)  # segmentation may differ around it
    assert len(analyse_document("東京都の請求書を確認してください", "und")[0]) == 1  # before: one term
    zh, _ = analyse_document("中华人民共和国审计报告", "zh")
    assert len(zh) >= 3 and set(analyse_query("审计报告", ["zh"])[0]) & set(zh)


def test_english_analysis_is_unchanged_from_before() -> None:
    """Version-2 English pages get exactly the vectors of the version-1 encoder (index/stores/bm25.py)."""
    from pagelens.index.stores import bm25

    text = "The invoices were paid in March 2023 by the customers; totals 4,512.00 EUR."
    assert TextAnalyzer(2).encode_document(text, "en") == bm25.encode_document(text)
    assert TextAnalyzer(1).encode_document(text, "de") == bm25.encode_document(text)  # v1: always English
    assert TextAnalyzer(1).encode_query("invoices paid") == bm25.encode_query("invoices paid")


def test_spec_records_every_analyser() -> None:
    spec = current_spec()
    assert spec["version"] == 2 and spec["modifier"] == "idf" and spec["k"] == 1.2
    assert spec["detector"].startswith("py3langid ")
    assert set(spec["languages"]) == set(ANALYSERS)
    assert spec["languages"]["pl"]["stemmer"].startswith("snowball:polish (python")
    assert spec["languages"]["de"]["stemmer"] == "snowball:german (engine)"
    assert spec["languages"]["ja"]["tokenizer"] == "multilingual"


def test_query_policies() -> None:
    q = "Rechnungen facturen faktury"
    all_terms = set(TextAnalyzer(2, "all").encode_query(q)[0])
    english = set(TextAnalyzer(2, "english").encode_query(q)[0])
    assert english < all_terms
    for lang, word in (("de", "Rechnung"), ("nl", "factuur"), ("pl", "faktura")):
        assert set(analyse_document(word, lang)[0]) <= all_terms
    coll = set(TextAnalyzer(2, "collection").encode_query(q, {"de": 3})[0])
    assert set(analyse_document("Rechnung", "de")[0]) <= coll
    assert not set(analyse_document("faktura", "pl")[0]) & coll  # no Polish page, query not detected Polish
    with pytest.raises(ValueError, match="query_languages"):
        TextAnalyzer(2, "klingon")


# --- both stores ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(("query", "expected"), [
    ("Rechnungen Lieferungen", "doc0.pdf"), ("facturen bedragen", "doc1.pdf"), ("faktury przelewem budowy", "doc2.pdf"),
    ("invoices chair", "doc3.pdf"), ("請求書 納品", "doc4.pdf"), ("factures commandes", "doc5.pdf"),
])
def test_inflected_queries_find_their_page(store: VectorStore, query: str, expected: str) -> None:
    hits = store.search_text(COLL, query, limit=3)
    assert _doc_of(hits)[:1] == [expected]


def test_both_backends_hold_identical_vectors_and_rankings(tmp_path: Path) -> None:
    from qdrant_client import QdrantClient

    edge, server = QdrantEdgeStore(tmp_path / "e"), QdrantServerStore(QdrantClient(":memory:"))
    rankings = []
    for s in (edge, server):
        s.create_collection(MANIFEST)
        s.upsert(COLL, _points())
        rankings.append([[(h.id, round(h.score, 4)) for h in s.search_text(COLL, q, limit=6)]
                         for q in ("Rechnungen Betrag", "facturen", "faktury przelewem", "請求書", "invoices 2024")])
    raw = server.client.retrieve(COLL, ids=[p.id for p in _points()], with_vectors=["text_bm25"])
    edge_raw = edge._require(COLL)[0].retrieve([p.id for p in _points()], with_payload=False,
                                               with_vector=["text_bm25"])
    server_vecs = {str(r.id): (list(r.vector["text_bm25"].indices), [round(v, 5) for v in r.vector["text_bm25"].values])
                   for r in raw}
    edge_vecs = {str(r.id): (list(r.vector["text_bm25"].indices), [round(v, 5) for v in r.vector["text_bm25"].values])
                 for r in edge_raw}
    for s in (edge, server):
        s.close()
    assert rankings[0] == rankings[1]
    assert {k: sorted(zip(*v, strict=True)) for k, v in edge_vecs.items()} == \
        {k: sorted(zip(*v, strict=True)) for k, v in server_vecs.items()}


def test_language_filter_and_facet(store: VectorStore) -> None:
    hits = store.search_text(COLL, "2024", limit=10, page_filter=PageFilter(languages=["de", "pl"]))
    assert sorted(h.payload["language"] for h in hits) == ["de", "pl"]
    assert store.count(COLL, PageFilter(languages=["ja"])) == 1
    assert store.text_languages(COLL) == {code: 1 for code in PAGES}  # type: ignore[attr-defined]
    with pytest.raises(InvalidRequestError, match="ISO 639-1"):
        store.count(COLL, PageFilter(languages=["German!"]))


def test_spec_is_recorded_with_the_collection(store: VectorStore, tmp_path: Path) -> None:
    assert store.text_spec_version(COLL) == 2  # type: ignore[attr-defined]
    if isinstance(store, QdrantEdgeStore):
        data = json.loads((tmp_path / "edge" / COLL / "manifest.json").read_text())
        assert data["text_index"]["version"] == 2 and "pl" in data["text_index"]["languages"]
    else:
        info = store.client.get_collection(COLL)
        assert info.config.metadata["pagelens_text_index"]["version"] == 2


def test_old_english_only_collection_keeps_working(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A collection whose manifest records the version-1 spec (before languages): indexed and searched with
    the English analysis as before (German inflected forms are missed), and says how to upgrade."""
    from pagelens.index.stores import bm25
    from pagelens.retrieve.retriever import _warn_english_only

    root = tmp_path / "old"
    store = QdrantEdgeStore(root)
    store.create_collection(MANIFEST)
    path = root / COLL / "manifest.json"
    data = json.loads(path.read_text())
    data["text_index"] = bm25.text_index_spec()  # what pagelens wrote before (no version)
    path.write_text(json.dumps(data))
    store.close()
    store = QdrantEdgeStore(root)
    store.upsert(COLL, _points())
    assert store.text_spec_version(COLL) == 1
    assert _doc_of(store.search_text(COLL, "Rechnung", limit=3))[:1] == ["doc0.pdf"]  # the printed form
    assert "doc0.pdf" not in _doc_of(store.search_text(COLL, "Rechnungen", limit=3))  # not the inflected one
    with caplog.at_level("WARNING"):
        _warn_english_only(store, COLL)
        _warn_english_only(store, COLL)
    warnings = [r for r in caplog.records if "English-only text index" in r.getMessage()]
    assert len(warnings) == 1 and "pagelens index --reindex" in warnings[0].getMessage()
    store.close()


def test_points_without_a_language_are_analysed_in_their_detected_one(tmp_path: Path) -> None:
    store = QdrantEdgeStore(tmp_path / "e")
    store.create_collection(MANIFEST)
    store.upsert(COLL, [_point(0, PAGES["de"], None)])
    assert _doc_of(store.search_text(COLL, "Rechnungen", limit=3)) == ["doc0.pdf"]
    assert "language" not in dict(store.iter_payloads(COLL))[_point(0, "", None).id]  # payload as given
    store.close()


def test_inflected_known_items_recall_per_language(tmp_path: Path) -> None:
    """The generator's inflected-form queries (tests/make_known_items.py) over the synthetic invoices:
    text-mode recall@5 >= 0.9 per language; the English-only analysis of before finds far fewer."""
    from make_known_items import _pages, inflected_items
    from multilingual_docs import write_pdfs

    files = write_pdfs(tmp_path / "docs")
    pages = _pages(files)
    assert {lang for *_, lang in pages} >= {"de", "nl", "pl", "es", "it", "pt"}
    items = inflected_items(pages)
    assert {it["lang"] for it in items} >= {"de", "nl", "pl"}
    vocab = {w for *_, text, _ in pages for w in __import__("re").findall(r"\w+", text.lower())}
    for item in items:  # forms that occur nowhere in the documents
        assert not {w.lower() for w in item["query"].split()} & vocab, item
    now, before = QdrantEdgeStore(tmp_path / "now"), QdrantEdgeStore(tmp_path / "before")
    for s in (now, before):
        s.create_collection(MANIFEST)
    from pagelens.index.stores import bm25

    path = tmp_path / "before" / COLL / "manifest.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), "text_index": bm25.text_index_spec()}))
    before.close()
    before = QdrantEdgeStore(tmp_path / "before")
    points = []
    for i, (name, no, text, lang) in enumerate(pages):
        p = _point(i, text, lang)
        p.payload.update(doc_name=name, page_no=no)
        points.append(p)
    for s in (now, before):
        s.upsert(COLL, points)
    recall: dict[str, dict[str, list[float]]] = {"now": {}, "before": {}}
    for item in items:
        want = (item["relevant"][0]["doc"], item["relevant"][0]["page"])
        for label, s in (("now", now), ("before", before)):
            got = [(h.payload["doc_name"], h.payload["page_no"]) for h in s.search_text(COLL, item["query"], limit=5)]
            recall[label].setdefault(item["lang"], []).append(float(want in got))
    for s in (now, before):
        s.close()
    per_lang = {lang: sum(v) / len(v) for lang, v in recall["now"].items()}
    assert all(r >= 0.9 for r in per_lang.values()), per_lang
    old = {lang: sum(v) / len(v) for lang, v in recall["before"].items()}
    assert old["pl"] < 0.5 and sum(old[x] for x in ("de", "nl", "pl")) < sum(per_lang[x] for x in ("de", "nl", "pl"))


def test_known_items_are_checked_against_the_indexed_text() -> None:
    """A page whose text layer is mojibake carries OCR text once indexed: a query whose terms also occur
    together there is not a known item of that collection, so the generator does not make it."""
    from make_known_items import inflected_items

    text = ("The committee approved several technologies and probably delayed the annual procurement "
            "schedule because the auditors requested additional documentation about suppliers.")
    pages = [("a.pdf", 1, text, "en"), ("b.pdf", 1, "Ã©Ã¨ ÂÂ ï¿½ï¿½", "en")]
    assert inflected_items(pages)  # the text layers alone: page a's words are unique to it
    indexed = [("a.pdf", 1, text, "en"), ("b.pdf", 1, text, "en")]  # what OCR reads on b
    assert inflected_items(pages, indexed=indexed) == []
