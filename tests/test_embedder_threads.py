"""The retriever's processor under concurrency: searches (query encoding) on several threads while an
ingest preprocesses pages in the same process (serial ingest, ``preprocess_device=model``). A fast
tokenizer used by two threads at once can raise "Already borrowed"; ``ColSmolEmbedder`` serialises
each tokenizer's use (tiny random models, real loading path)."""

from __future__ import annotations

import copy
import threading
import time
from typing import Any

import numpy as np
import pytest
from conftest import REAL_PDFS
from pagelens.index.pipeline.indexer import IndexInput

from pagelens.app.service import PagelensService

QUESTIONS = ["total amount due", "invoice number and date", "VAT", "who is the customer of this invoice"]


class TokenizerWatch:
    """Counts the threads inside each Rust tokenizer at once (``max_inside`` per tokenizer). Each call
    lingers a little, so that calls that are not serialised do overlap."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.inside: dict[int, int] = {}
        self.max_inside: dict[int, int] = {}
        self.calls = 0
        self.overlaps: list[tuple[str, str]] = []  # (method, thread) of each call that overlapped another


class WatchedTokenizer:
    """Stands in for a ``tokenizers.Tokenizer`` (``PreTrainedTokenizerFast._tokenizer``); forwards
    everything and reports each method call to a ``TokenizerWatch``."""

    def __init__(self, real: Any, watch: TokenizerWatch) -> None:
        object.__setattr__(self, "_real", real)
        object.__setattr__(self, "_watch", watch)

    def __getattr__(self, name: str) -> Any:
        value = getattr(self._real, name)
        if not callable(value):
            return value
        watch, key = self._watch, id(self._real)

        def call(*args: Any, **kwargs: Any) -> Any:
            with watch.lock:
                watch.calls += 1
                watch.inside[key] = watch.inside.get(key, 0) + 1
                watch.max_inside[key] = max(watch.max_inside.get(key, 0), watch.inside[key])
                if watch.inside[key] > 1:
                    watch.overlaps.append((name, threading.current_thread().name))
            try:
                time.sleep(0.002)  # widen the window an unserialised call would overlap in
                return value(*args, **kwargs)
            finally:
                with watch.lock:
                    watch.inside[key] -= 1

        return call

    def __setattr__(self, name: str, value: Any) -> None:
        setattr(self._real, name, value)

    def __deepcopy__(self, memo: dict[int, Any]) -> WatchedTokenizer:  # a copied tokenizer is watched too
        return WatchedTokenizer(copy.deepcopy(self._real, memo), self._watch)


@pytest.mark.parametrize("preprocess_device", ["cpu", "model"])
def test_concurrent_searches_during_an_ingest(settings_factory: Any, preprocess_device: str) -> None:
    """3 threads search in a loop while one thread indexes a 2-page PDF, pages preprocessed in this
    process. No error; every query embedding equals its single-threaded value; the document is indexed
    whole; no tokenizer was ever used by two threads at once."""
    settings = settings_factory(ingest_workers=0, preprocess_device=preprocess_device,
                                image_processor_backend="torchvision" if preprocess_device == "model" else "pil",
                                page_longest_edge=512)
    service = PagelensService(settings)
    try:
        embedder = service.embedder
        watch = TokenizerWatch()
        tokenizer = embedder.processor.tokenizer  # type: ignore[attr-defined]
        tokenizer._tokenizer = WatchedTokenizer(tokenizer._tokenizer, watch)
        first = service.indexer.index("c", [IndexInput(path=REAL_PDFS / "inv_aws_invoice_en.pdf")])
        assert first.ok
        expected = {q: embedder.embed_queries([q])[0] for q in QUESTIONS}  # single-threaded
        stop = threading.Event()
        errors: list[BaseException] = []
        searches = [0]

        def search_loop(offset: int) -> None:
            i = offset
            try:
                while not stop.is_set():
                    question = QUESTIONS[i % len(QUESTIONS)]
                    got = embedder.embed_queries([question])[0]
                    np.testing.assert_array_equal(got, expected[question])
                    hits = service.search("c", question, k=3, mode="visual")
                    assert hits and all(h.score > 0 for h in hits)
                    searches[0] += 1
                    i += 1
            except BaseException as exc:  # noqa: BLE001 - reported below
                errors.append(exc)

        searchers = [threading.Thread(target=search_loop, args=(n,)) for n in range(3)]
        for t in searchers:
            t.start()
        try:
            doc = REAL_PDFS / "inv_qualityhosting_de.pdf"
            report = service.indexer.index("c", [IndexInput(path=doc)])
        finally:
            stop.set()
            for t in searchers:
                t.join(120)
        assert not errors, errors[:3]
        assert report.ok and report.pages_indexed == report.documents[0].page_count >= 2, report.to_dict()
        assert service.store.count("c") == first.pages_indexed + report.pages_indexed
        assert searches[0] >= 4 and watch.calls > searches[0]
        assert len(watch.max_inside) == 2, (watch.max_inside, watch.overlaps[:10])  # queries, pages: a tokenizer each
        assert max(watch.max_inside.values()) == 1, watch.overlaps[:10]
    finally:
        service.close()


def test_page_processor_gives_the_processors_batches(settings_factory: Any) -> None:
    """The page path's own processor copy makes exactly the original processor's tensors."""
    import torch
    from PIL import Image

    service = PagelensService(settings_factory(page_longest_edge=512))
    embedder = service.embedder
    embedder.load()
    images = [Image.new("RGB", (400, 512), "white"), Image.new("RGB", (512, 300), "gray")]
    ours = embedder._preprocess(images)  # type: ignore[attr-defined]
    plain = embedder.processor.process_images(images)  # type: ignore[attr-defined]
    assert embedder._page_processor is not embedder._processor  # type: ignore[attr-defined]
    assert embedder._page_processor.tokenizer is not embedder._processor.tokenizer  # type: ignore[attr-defined]
    assert set(ours) == set(plain) and all(torch.equal(ours[k], plain[k]) for k in plain)
    service.close()

