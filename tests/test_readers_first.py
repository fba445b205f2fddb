"""Searches before writes (``pagelens.index.stores.readers_first``, issue 26.3): a writer steps aside while a
search runs, for at most its budget per page, and the embedded store's ``upsert`` goes through it page by
page, Qdrant and the rerank cache written together."""

from __future__ import annotations

import threading
from pathlib import Path

from pagelens.index.stores.edge_store import QdrantEdgeStore
from pagelens.index.stores.readers_first import ReadersFirst
from test_fast_rerank import planted_corpus
from test_search_status import manifest


def test_a_writer_waits_for_the_searches_in_flight_and_no_longer_than_its_budget() -> None:
    gate = ReadersFirst(max_wait_s=30)
    gate.turn().wait()  # nobody reading: at once
    assert (gate.turns, gate.forced) == (1, 0)

    done = threading.Event()
    with gate.reading():
        assert gate.readers == 1
        writer = threading.Thread(target=lambda: (gate.turn().wait(), done.set()))
        writer.start()
        assert not done.wait(0.3)  # held back while the search runs
    assert done.wait(10)  # the search ended: the writer goes on at once
    writer.join()
    assert gate.readers == 0 and (gate.turns, gate.forced) == (2, 0)

    bounded = ReadersFirst(max_wait_s=0.05)
    with bounded.reading():  # a search that outlasts the budget: the writer goes on anyway
        turn = bounded.turn()
        turn.wait()
        turn.wait()  # the rest of the page's pieces do not wait again
    assert (bounded.turns, bounded.forced) == (2, 1) and bounded.waited_s < 5


def test_upsert_writes_nothing_while_a_search_runs_then_every_page_with_its_cache_record(tmp_path: Path) -> None:
    points, _ = planted_corpus(12)
    store = QdrantEdgeStore(tmp_path / "edge", write_max_wait_s=30)
    store.create_collection(manifest("c"))
    store.upsert("c", points[:4])
    finished = threading.Event()
    with store.readers.reading():  # a search in flight
        writer = threading.Thread(target=lambda: (store.upsert("c", points[4:]), finished.set()))
        writer.start()
        assert not finished.wait(0.5)
        assert store.count("c") == 4 and len(store._rerank_file("c")) == 4  # nothing written meanwhile
    assert finished.wait(60)
    writer.join()
    assert store.count("c") == len(store._rerank_file("c")) == 12
    status = store.search_status("c")
    assert "rerank_cache" not in status.codes  # Qdrant and the cache were written together
    assert store.readers.forced == 0 and store.readers.turns >= 8
    store.close()
