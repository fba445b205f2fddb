"""Language-aware text analysis for the BM25 channel: language detection and per-language analysers.

One module for both store backends: the Qdrant Edge store and the Qdrant server store call
``TextAnalyzer.encode_document`` / ``encode_query`` on the same text and language and so hold and
query the same sparse vectors (tested in ``tests/test_text_analysis.py``).

**Detection** (``detect_language``): ``py3langid`` (a maintained fork of langid.py: naive Bayes over
byte n-grams, 97 languages, its 4.5 MB model ships in the wheel, pure Python + numpy, ~5 ms per page
here). Chosen over lingua (more accurate on a few words, but a far larger wheel and a Rust build) because
we detect *pages* (hundreds of characters: py3langid put all 33 text pages of the shared real PDFs
in the right language) and never rely on detecting a query alone (see the query side below). Scripts
decide first: text with kana is Japanese, with hangul Korean, Han-only Chinese. A page with too little
text (under ``MIN_DETECT_CHARS`` letters) or an unsure guess is ``und`` (undetermined).

**Analysis** (``ANALYSERS``): each language's own stemmer and stopwords, using the engine's analysers
(``qdrant_edge.Bm25Config``: ``language``, ``tokenizer``, ``stemmer``, ``stopwords``) where they
exist:

* Snowball stemmer + stopwords of the engine: en de fr es it nl pt da fi el hu no ro ru sv tr ar;
* Polish has no engine stemmer: the text is tokenised, its stopwords dropped and each word stemmed
  with the Snowball Polish stemmer of ``snowballstemmer`` in Python, then hashed by the engine with
  stemming and stopwords off (``DisabledStemmer``, empty ``StopwordsSet``);
* CJK (ja zh ko): the engine's ``Multilingual`` tokenizer, which segments Japanese and Chinese into
  words (no stemmer; the engine's Japanese / Chinese stopwords), plus the overlapping character pairs
  of each CJK run (``cjk_bigrams``) as terms, so a query matches however it is segmented (a snippet cut
  mid-word, a name the segmenter does not know): Japanese known items 0.71 -> see bench/README.md;
* ``und`` and languages without an analyser: lower-cased words, no stemmer, no stopwords.

Token ids are the engine's hashes of the analysed terms, so a term means the same thing whatever
analyser produced it (numbers match across languages).

**Query side** (``TextAnalyzer.encode_query``): a query is analysed under every analyser (``all``,
the default; ~22 analyses of a few words, well under a millisecond) and the distinct terms are taken
together (weight 1.0 each, as BM25 queries always were). A German page's "Rechnung" (German stem
``rechnung``) is then found by "Rechnungen" whatever language the query was detected as (a query of
two or three words is too short to detect reliably), and an English page still by the English
analysis; terms of languages absent from the collection match nothing. The alternatives (the
collection's languages, the query's detected language, English only) are measured in
``bench/README.md``.

**Spec** (``TextAnalyzer.spec``): recorded with each collection (Edge: ``manifest.json`` key
``text_index``; server: collection metadata ``pagelens_text_index``). Version 1 (before this module) was
English-only; collections carrying it keep being indexed and searched with the English analysis,
and say once how to upgrade (``pagelens index --reindex``).
"""

from __future__ import annotations

import logging
import re
import threading
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

log = logging.getLogger(__name__)

SPEC_VERSION = 2
BM25 = {"k": 1.2, "b": 0.75, "avg_len": 256.0}  # qdrant_edge.Bm25Config defaults, recorded with the spec
UNDETERMINED = "und"
MIN_DETECT_CHARS = 20  # letters: below this a page's language is not guessed
MIN_CONFIDENCE = 0.5  # py3langid normalised probability


@dataclass(frozen=True)
class Analyser:
    """How one language's text becomes terms. ``engine_language``: the engine's language name (its
    Snowball stemmer and stopwords); ``tokenizer``: ``word`` or ``multilingual`` (segments CJK);
    ``python_stemmer``: a ``snowballstemmer`` algorithm applied in Python before the engine (Polish)."""

    code: str
    engine_language: str | None = None
    tokenizer: str = "word"
    python_stemmer: str | None = None
    stopwords: str = "engine"  # engine (the language's), polish (POLISH_STOPWORDS), none

    def describe(self) -> dict[str, Any]:
        stemmer = (f"snowball:{self.python_stemmer} (python snowballstemmer)" if self.python_stemmer
                   else f"snowball:{self.engine_language} (engine)" if self.engine_language
                   and self.code not in ("ja", "zh", "ko") else "none")
        stop = ({"engine": f"{self.engine_language} (engine)" if self.engine_language else "none",
                 "polish": "polish (pagelens list)", "none": "none"})[self.stopwords]
        described = {"tokenizer": self.tokenizer, "stemmer": stemmer, "stopwords": stop, "lowercase": True,
                     "ascii_folding": False}
        if self.tokenizer == "multilingual":
            described["extra_terms"] = "cjk character bigrams"
        return described


_ENGINE = {
    "en": "english", "de": "german", "fr": "french", "es": "spanish", "it": "italian", "nl": "dutch",
    "pt": "portuguese", "da": "danish", "fi": "finnish", "el": "greek", "hu": "hungarian", "no": "norwegian",
    "ro": "romanian", "ru": "russian", "sv": "swedish", "tr": "turkish", "ar": "arabic",
}
ANALYSERS: dict[str, Analyser] = {code: Analyser(code, name) for code, name in _ENGINE.items()}
ANALYSERS["pl"] = Analyser("pl", None, "word", python_stemmer="polish", stopwords="polish")
ANALYSERS["ja"] = Analyser("ja", "japanese", "multilingual")
ANALYSERS["zh"] = Analyser("zh", "chinese", "multilingual")
ANALYSERS["ko"] = Analyser("ko", None, "multilingual", stopwords="none")
ANALYSERS[UNDETERMINED] = Analyser(UNDETERMINED, None, "word", stopwords="none")

# py3langid labels folded onto the codes above (dialects, written variants)
_ALIASES = {"nb": "no", "nn": "no", "yue": "zh", "wuu": "zh", "ary": "ar", "arz": "ar", "zxx": UNDETERMINED}

# Polish stopwords (the most frequent function words; the Snowball project ships none for Polish)
_POLISH_STOPWORDS_TEXT = """
a aby ale albo ani aż bardzo bez bo być był była były było będzie będą by byli co czy czyli dla do gdy
gdzie go i ich ile im inne iż ja jak jako je jego jej jest jestem jeszcze jeśli już każdy kiedy kto
która które którego której który których którym ku lub ma mają mi mnie może można mu na nad nam nas
nich nie niej nim niż no o od oraz po pod przed przez przy są sa się sobie tak taki także tam te tego
tej ten też to tu tych tylko tym u w we wie więc wszystko z za ze że żeby
"""
POLISH_STOPWORDS = frozenset(_POLISH_STOPWORDS_TEXT.split())

_WORD = re.compile(r"\w+", re.UNICODE)
_lock = threading.Lock()
_engine_models: dict[str, Any] = {}
_py_stemmers: dict[str, Any] = {}
_identifier: Any = None


def analyser_for(code: str | None) -> Analyser:
    """The analyser of a language code (``und`` for None, unknown or unsupported codes)."""
    return ANALYSERS.get(_ALIASES.get(code or "", code or ""), ANALYSERS[UNDETERMINED])


def _engine_model(analyser: Analyser) -> Any:
    """The ``qdrant_edge.Bm25`` of an analyser (cached). Call under ``_lock``."""
    model = _engine_models.get(analyser.code)
    if model is None:
        import qdrant_edge as qe

        kwargs: dict[str, Any] = {"k": BM25["k"], "b": BM25["b"], "avg_len": BM25["avg_len"], "lowercase": True}
        if analyser.tokenizer == "multilingual":
            kwargs["tokenizer"] = qe.TokenizerType.Multilingual
        if analyser.engine_language:
            kwargs["language"] = analyser.engine_language
        if analyser.python_stemmer or not analyser.engine_language:
            kwargs["stemmer"] = qe.DisabledStemmer()
        if analyser.stopwords != "engine" or not analyser.engine_language:
            kwargs["stopwords"] = qe.StopwordsSet()
        model = _engine_models[analyser.code] = qe.Bm25(qe.Bm25Config(**kwargs))
    return model


def _python_stem(analyser: Analyser, text: str) -> str:
    """Polish: words lower-cased, stopwords dropped, Snowball-stemmed, joined by spaces."""
    stemmer = _py_stemmers.get(analyser.python_stemmer or "")
    if stemmer is None:
        import snowballstemmer

        stemmer = _py_stemmers[analyser.python_stemmer or ""] = snowballstemmer.stemmer(analyser.python_stemmer)
    words = [w for w in _WORD.findall(text.lower()) if w not in POLISH_STOPWORDS]
    return " ".join(stemmer.stemWords(words))


def _pairs(vec: Any) -> tuple[list[int], list[float]]:
    return [int(i) for i in vec.indices], [float(v) for v in vec.values]


_CJK_RUN = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uac00-\ud7af]{2,}")
_BIGRAMS = Analyser("cjk-bigrams", None, "word", stopwords="none")


def cjk_bigrams(text: str) -> str:
    """The overlapping character pairs of every run of CJK characters, space-separated: terms that match
    a query however the tokenizer segments it (a query cut mid-word, a name it does not know)."""
    return " ".join(run[i : i + 2] for run in _CJK_RUN.findall(text) for i in range(len(run) - 1))


def _merge(*vectors: tuple[list[int], list[float]]) -> tuple[list[int], list[float]]:
    weights: dict[int, float] = {}
    for indices, values in vectors:
        for i, v in zip(indices, values, strict=True):
            weights[i] = weights.get(i, 0.0) + v
    keys = sorted(weights)
    return keys, [weights[k] for k in keys]


def analyse_document(text: str, code: str | None) -> tuple[list[int], list[float]]:
    """BM25 document vector (indices = term hashes, values = BM25 term-frequency weights) of ``text``
    analysed as language ``code``; ([], []) for empty text."""
    if not text or not text.strip():
        return [], []
    analyser = analyser_for(code)
    with _lock:
        if analyser.python_stemmer:
            text = _python_stem(analyser, text)
            if not text:
                return [], []
        vector = _pairs(_engine_model(analyser).embed_document(text))
        if analyser.tokenizer == "multilingual":  # CJK: the words, and the character pairs
            pairs = cjk_bigrams(text)
            if pairs:
                vector = _merge(vector, _pairs(_engine_model(_BIGRAMS).embed_document(pairs)))
        return vector


def analyse_query(text: str, codes: Iterable[str]) -> tuple[list[int], list[float]]:
    """Query vector: the distinct terms of ``text`` analysed under each language of ``codes``
    (weight 1.0 each, sorted by term id); may be empty (only stopwords or punctuation)."""
    if not text or not text.strip():
        return [], []
    terms: set[int] = set()
    with _lock:
        for code in dict.fromkeys(_ALIASES.get(c, c) for c in codes):
            analyser = analyser_for(code)
            analysed = _python_stem(analyser, text) if analyser.python_stemmer else text
            if analysed:
                terms.update(int(i) for i in _engine_model(analyser).embed_query(analysed).indices)
            pairs = cjk_bigrams(text) if analyser.tokenizer == "multilingual" else ""
            if pairs:
                terms.update(int(i) for i in _engine_model(_BIGRAMS).embed_query(pairs).indices)
    indices = sorted(terms)
    return indices, [1.0] * len(indices)


# --- detection --------------------------------------------------------------------------------------


def _detector() -> Any:
    global _identifier
    with _lock:
        if _identifier is None:
            from py3langid.langid import MODEL_FILE, LanguageIdentifier

            _identifier = LanguageIdentifier.from_model_file(MODEL_FILE, norm_probs=True)
        return _identifier


def _script_language(text: str) -> tuple[str | None, int]:
    """(``ja`` / ``ko`` / ``zh`` when CJK letters are over a third of the letters, else None; letters)."""
    letters = kana = hangul = han = 0
    for ch in text:
        if not ch.isalpha():
            continue
        letters += 1
        o = ord(ch)
        if 0x3040 <= o <= 0x30FF or 0x31F0 <= o <= 0x31FF or 0xFF66 <= o <= 0xFF9F:
            kana += 1
        elif 0xAC00 <= o <= 0xD7AF or 0x1100 <= o <= 0x11FF or 0x3130 <= o <= 0x318F:
            hangul += 1
        elif 0x4E00 <= o <= 0x9FFF or 0x3400 <= o <= 0x4DBF or 0xF900 <= o <= 0xFAFF:
            han += 1
    cjk = kana + hangul + han
    if letters and cjk * 3 >= letters:
        if kana * 20 >= cjk:
            return "ja", letters
        if hangul >= han:
            return "ko", letters
        return "zh", letters
    return None, letters


def detect_language(text: str | None) -> tuple[str, float]:
    """(ISO 639-1 code, confidence in [0, 1]) of ``text``; (``und``, 0.0) when there are fewer than
    ``MIN_DETECT_CHARS`` letters or no language reaches ``MIN_CONFIDENCE``. The code may be one
    without an analyser (it is stored as detected; the page is then analysed as ``und``)."""
    if not text:
        return UNDETERMINED, 0.0
    script, letters = _script_language(text)
    if script is not None and letters >= 2:
        return script, 1.0
    if letters < MIN_DETECT_CHARS:
        return UNDETERMINED, 0.0
    detector = _detector()
    with _lock:
        code, prob = detector.classify(text)
        if prob < MIN_CONFIDENCE:  # unsure among 97 languages: ask again among those we analyse
            ranked = [(c, p) for c, p in detector.rank(text) if _ALIASES.get(c, c) in ANALYSERS]
            total = sum(p for _, p in ranked)
            code, prob = (ranked[0][0], ranked[0][1] / total) if ranked and total > 0 else (UNDETERMINED, 0.0)
    code = _ALIASES.get(code, code)
    if prob < MIN_CONFIDENCE or code == UNDETERMINED:
        return UNDETERMINED, float(prob)
    return code, float(prob)


# --- the collection's analysis ----------------------------------------------------------------------


def current_spec() -> dict[str, Any]:
    """The text index spec new collections are created with (recorded with the collection)."""
    import importlib.metadata as md

    def version(dist: str) -> str:
        try:
            return md.version(dist)
        except md.PackageNotFoundError:  # pragma: no cover - installed with pagelens
            return "missing"

    return {
        "version": SPEC_VERSION,
        "encoder": "pagelens pagelens.index.stores.text_analysis (qdrant_edge.Bm25 term hashing)",
        "modifier": "idf",
        **BM25,
        "detector": f"py3langid {version('py3langid')}",
        "languages": {code: a.describe() for code, a in sorted(ANALYSERS.items())},
        "query": "union of the query's analyses (policy chosen at search time: TextAnalyzer.query_languages)",
    }


def legacy_spec_version(spec: dict[str, Any] | None) -> int:
    """Spec version of a recorded spec: 0 none (no text index), 1 English-only, 2 this module."""
    if not spec:
        return 0
    return int(spec.get("version", 1))


def _normalise(text: str) -> str:
    return unicodedata.normalize("NFC", text)


QUERY_POLICIES = ("all", "collection", "detected", "english")


class TextAnalyzer:
    """The analysis of one collection, chosen by its recorded spec version (1: English-only, as
    built before languages; 2: per language). Both stores call this and nothing else.

    ``query_languages`` (version 2), the languages a query is analysed under (terms united):
    ``all`` (default) every analyser; ``collection`` the languages of the collection's pages (a facet,
    given by the store), the query's detected language and ``und``; ``detected`` the query's detected
    language and ``und``; ``english`` English only (as version 1). Measured in bench/README.md."""

    def __init__(self, version: int = SPEC_VERSION, query_languages: str = "all") -> None:
        if query_languages not in QUERY_POLICIES:
            raise ValueError(f"query_languages must be one of {QUERY_POLICIES}, got {query_languages!r}")
        self.version = version
        self.query_languages = query_languages

    @property
    def language_aware(self) -> bool:
        return self.version >= 2

    def encode_document(self, text: str | None, language: str | None) -> tuple[list[int], list[float]]:
        """Document vector of a page's text in ``language`` (v1: always English)."""
        if not text:
            return [], []
        return analyse_document(_normalise(text), language if self.language_aware else "en")

    def encode_query(self, text: str, collection_languages: Iterable[str] = ()) -> tuple[list[int], list[float]]:
        """Query vector (see the module docstring); v1: English only."""
        if not self.language_aware:
            return analyse_query(_normalise(text), ["en"])
        text = _normalise(text)
        if self.query_languages == "english":
            return analyse_query(text, ["en"])
        if self.query_languages == "all":
            return analyse_query(text, sorted(ANALYSERS))
        detected, _ = detect_language(text)
        codes = sorted(set(collection_languages)) if self.query_languages == "collection" else []
        return analyse_query(text, [*codes, detected, UNDETERMINED])

    def needs_collection_languages(self) -> bool:
        return self.language_aware and self.query_languages == "collection"
