"""The Collections tab's handlers (ui/tabs/collections.py) as plain functions over the app state, without a
browser: Delete needs a selected row (never the collection picker's), the selection names fresh counts,
access is checked for each step, a collection with a running upload is not deleted."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from pagelens.ui.state import UIError
from pagelens.ui.tabs.collections import (
    create_collection,
    delete_collection,
    delete_question_for,
    select_collection,
)

from pagelens.app.access import OPEN, Principal


class Service:
    def __init__(self) -> None:
        self.collections = {"inv": (64, 300)}

    def create_collection(self, name: str) -> None:
        self.collections[name] = (0, 0)

    def collection_info(self, name: str) -> SimpleNamespace:
        documents, pages = self.collections[name]
        return SimpleNamespace(documents=documents, pages=pages)

    def delete_collection(self, name: str) -> None:
        del self.collections[name]


def _ctx(active: dict[str, list[object]] | None = None) -> SimpleNamespace:
    return SimpleNamespace(service=Service(), jobs=SimpleNamespace(active_for=lambda c: (active or {}).get(c, [])))


def test_delete_needs_a_selected_row_and_names_fresh_counts() -> None:
    ctx = _ctx()
    with pytest.raises(UIError, match="click the row of the collection to delete first"):
        delete_question_for(ctx, OPEN, None)  # type: ignore[arg-type]  # no implicit target
    assert select_collection(ctx, OPEN, "inv") == ("inv", "Selected: **inv** (64 document(s), 300 page(s))")  # type: ignore[arg-type]
    ctx.service.collections["inv"] = (65, 301)  # counts read when asked, not cached
    target, question = delete_question_for(ctx, OPEN, "inv")  # type: ignore[arg-type]
    assert target == "inv" and question == "Delete collection 'inv' with 65 documents / 301 pages? This cannot be undone."
    delete_collection(ctx, OPEN, "inv")  # type: ignore[arg-type]
    assert "inv" not in ctx.service.collections


def test_access_is_checked_at_each_step() -> None:
    ctx = _ctx()
    reader = Principal(name="k", role="r", collections=frozenset({"inv"}))
    other = Principal(name="o", role="rw", collections=frozenset({"mine"}))
    assert select_collection(ctx, reader, "inv")[0] == "inv"  # type: ignore[arg-type]
    with pytest.raises(UIError, match="may not modify collection 'inv'"):
        delete_question_for(ctx, reader, "inv")  # type: ignore[arg-type]
    with pytest.raises(UIError, match="no access to collection 'inv'"):
        select_collection(ctx, other, "inv")  # type: ignore[arg-type]
    with pytest.raises(UIError, match="no access to collection 'inv'"):
        delete_collection(ctx, other, "inv")  # type: ignore[arg-type]
    with pytest.raises(UIError, match="sign in"):
        create_collection(ctx, None, "new")  # type: ignore[arg-type]
    with pytest.raises(UIError, match="a collection name is 1-64"):
        create_collection(ctx, OPEN, "bad name")  # type: ignore[arg-type]
    assert create_collection(ctx, OPEN, "  new ") == "new" and "new" in ctx.service.collections  # type: ignore[arg-type]
    assert "inv" in ctx.service.collections


def test_a_collection_with_a_running_upload_is_not_deleted() -> None:
    ctx = _ctx({"inv": [object()]})
    with pytest.raises(UIError, match="1 unfinished upload job"):
        delete_collection(ctx, OPEN, "inv")  # type: ignore[arg-type]
    assert "inv" in ctx.service.collections


def test_documents_handlers_check_access_and_what_is_being_indexed() -> None:
    from pagelens.ui.tabs.documents import (
        apply_row_action,
        delete_document,
        delete_document_question,
        retry,
        upload,
    )

    deleted: list[str] = []
    service = SimpleNamespace(documents=lambda c: [SimpleNamespace(doc_id="d1", doc_name="inv.pdf"),
                                                   SimpleNamespace(doc_id="d2", doc_name="busy.pdf")],
                              delete_document=lambda c, d: deleted.append(d) or 3)
    ctx = SimpleNamespace(service=service, jobs=SimpleNamespace(inflight_doc_ids=lambda c: {"d2"}, get=lambda j: None))
    reader = Principal(name="k", role="r", collections=frozenset({"inv"}))
    assert delete_document_question(ctx, OPEN, "inv", "d1") == "Delete **inv.pdf** from **inv**?"  # type: ignore[arg-type]
    for p, doc in ((reader, "d1"), (OPEN, None)):
        with pytest.raises(UIError, match="pick a document you may delete"):
            delete_document_question(ctx, p, "inv", doc)  # type: ignore[arg-type]
    with pytest.raises(UIError, match="being indexed right now"):
        delete_document(ctx, OPEN, "inv", "d2")  # type: ignore[arg-type]
    with pytest.raises(UIError, match="may not modify collection 'inv'"):
        delete_document(ctx, reader, "inv", "d1")  # type: ignore[arg-type]
    assert deleted == []
    assert delete_document(ctx, OPEN, "inv", "d1") == "Deleted 'inv.pdf' (3 page(s))."  # type: ignore[arg-type]
    assert deleted == ["d1"]
    # uploads and row actions: nothing happens without a collection, files, a row or a target
    with pytest.raises(UIError, match="choose or drop some files first"):
        upload(ctx, OPEN, "inv", [], None, {})  # type: ignore[arg-type]
    with pytest.raises(UIError, match="pick a collection first"):
        upload(ctx, OPEN, None, ["/x.pdf"], None, {})  # type: ignore[arg-type]
    assert apply_row_action(ctx, OPEN, "not json") is None  # type: ignore[arg-type]
    with pytest.raises(UIError, match="no longer in the job table"):
        apply_row_action(ctx, OPEN, '{"act": "cancel", "job": "j1", "doc": 0}')  # type: ignore[arg-type]
    with pytest.raises(UIError, match="press Retry with password on a row first"):
        retry(ctx, OPEN, None, "pw", {})  # type: ignore[arg-type]


def test_conversations_are_kept_per_owner_bounded_and_survive_a_reopen(tmp_path, monkeypatch) -> None:  # noqa: ANN001
    from pagelens.ui import conversations as conv_mod
    from pagelens.ui.conversations import ConversationStore, title_of
    from pagelens.ui.tabs.ask import conversation_choices, open_conversation, owner_of, persist
    from pagelens.ui.thread import Turn

    store = ConversationStore(tmp_path)
    ctx = SimpleNamespace(conversations=store, keys=SimpleNamespace(enabled=True),
                          page_collections=lambda copy: set())
    alice = Principal(name="key#1", role="rw", collections=frozenset({"inv"}))
    bob = Principal(name="key#2", role="rw", collections=frozenset({"inv"}))
    a, b = owner_of(ctx, alice, "ignored"), owner_of(ctx, bob, None)  # type: ignore[arg-type]
    assert (a, b) == ("key:key#1", "key:key#2")
    assert owner_of(SimpleNamespace(keys=SimpleNamespace(enabled=False)), OPEN, "b1") == "browser:b1"  # type: ignore[arg-type]
    assert owner_of(SimpleNamespace(keys=SimpleNamespace(enabled=False)), OPEN, "") is None  # type: ignore[arg-type]

    turns = [Turn("What is   due?\n", "inv", "Answer", 1, None, answer="42", status="done")]
    cid = persist(ctx, a, "", turns)  # type: ignore[arg-type]
    assert len(cid) == 16 and conversation_choices(ctx, a) == [("What is due?", cid)]  # type: ignore[arg-type]
    assert conversation_choices(ctx, b) == [] and open_conversation(ctx, bob, b, cid) == []  # type: ignore[arg-type]
    # another owner saving under that id (a link they were sent) gets a new conversation, not this one
    other = persist(ctx, b, cid, turns)  # type: ignore[arg-type]
    assert other != cid and store.get(a, cid) is not None and len(store.list(b)) == 1
    assert store.rename(a, cid, "Invoices") and not store.rename(b, cid, "mine") and not store.rename(a, cid, "  ")
    assert not store.delete(b, cid)
    store.close()
    reopened = ConversationStore(tmp_path)  # the server restarts: the conversation is still there
    ctx.conversations = reopened
    assert conversation_choices(ctx, a) == [("Invoices", cid)]  # type: ignore[arg-type]
    assert [t.question for t in open_conversation(ctx, alice, a, cid)] == ["What is   due?\n"]  # type: ignore[arg-type]
    scoped = Principal(name="key#1", role="r", collections=frozenset({"other"}))
    assert open_conversation(ctx, scoped, a, cid) == []  # type: ignore[arg-type]  # turns it may not read are left out
    assert reopened.delete(a, cid) and conversation_choices(ctx, a) == []  # type: ignore[arg-type]
    # bounded: the least recently updated go first
    monkeypatch.setattr(conv_mod, "MAX_CONVERSATIONS", 3)
    ids = [persist(ctx, a, "", turns) for _ in range(5)]  # type: ignore[arg-type]
    assert [c.id for c in reopened.list(a)] == ids[:1:-1]
    assert len(title_of("x" * 200)) == 80 and title_of("x" * 200).endswith("…")


def test_the_idle_poll_never_moves_the_picker_while_its_collection_is_there() -> None:
    """A poll that started before a create finished (its ``selected`` is the old picker value) redraws the
    table and the choices but leaves the picker where the create put it; it redraws everything only when
    the picked collection is gone."""
    from pagelens.ui.screen import poll_plan

    before, after = "inv|3|3", "inv|3|3\nother|0|0"
    assert poll_plan(before, before, "inv") == "nothing"
    assert poll_plan("inv|4|9", before, "inv") == "table"  # counts only
    assert poll_plan(after, before, "inv") == "choices"  # "other" created elsewhere or just now
    assert poll_plan("other|0|0", after, "inv") == "all"  # the picked one was deleted
    assert poll_plan(after, "", None) == "all"  # first collection(s): the first-run panel goes


class _Docs:
    """A collection of ``n`` documents named d000.pdf... for the Documents table handlers."""

    def __init__(self, n: int) -> None:
        self.docs = [SimpleNamespace(doc_id=f"id{i:03d}", doc_name=f"d{i:03d}.pdf", status="indexed", pages_indexed=2,
                                     page_count=2, indexed_at=f"2026-12-06T10:{i % 60:02d}:00", sha256="")
                     for i in range(n)]
        self.version = 1
        self.originals = SimpleNamespace(find=lambda sha: None)

    def documents(self, collection: str, offset: int = 0, limit: int | None = None) -> list[SimpleNamespace]:
        return self.docs[offset:] if limit is None else self.docs[offset:offset + limit]

    def document_count(self, collection: str) -> int:
        return len(self.docs)

    def listing_version(self, collection: str) -> int:
        return self.version

    def collection_info(self, collection: str) -> SimpleNamespace:
        return SimpleNamespace(documents=len(self.docs), pages=2 * len(self.docs), model_id="/m/colSmol")


def test_the_documents_page_handlers_page_filter_clamp_and_skip_unchanged_redraws() -> None:
    """The Documents tab's timer/poll and pager logic as plain functions: the page at an offset, nothing
    redrawn while the listing is unchanged, clamped to the last page when documents go, the filter's
    matches paged, the delete picker keeping its document while the page offers it."""
    from pagelens.ui.render import DOCS_PAGE
    from pagelens.ui.tabs.documents import documents_page, turned_page

    service = _Docs(DOCS_PAGE + 10)
    ctx = SimpleNamespace(service=service, jobs=SimpleNamespace(inflight_doc_ids=lambda c: {"id001"}))
    first = documents_page(ctx, "c", True, False, 0, "", "", "name")  # type: ignore[arg-type]
    assert first is not None and not first.unchanged
    assert (first.offset, first.total, len(first.rows)) == (0, DOCS_PAGE + 10, DOCS_PAGE)
    assert "id001" not in [d for _, d in first.choices]  # being indexed: not offered for deletion
    assert first.picked("id007") == "id007" and first.picked("gone") == "id000"
    again = documents_page(ctx, "c", True, False, 0, first.mark, "", "name")  # type: ignore[arg-type]
    assert again is not None and again.unchanged  # the poll redraws nothing
    service.version += 1  # a document came or went
    assert not documents_page(ctx, "c", True, False, 0, first.mark, "", "name").unchanged  # type: ignore[union-attr, arg-type]

    nxt = turned_page(ctx, "c", 0, 1, "", "name")  # type: ignore[arg-type]
    assert (nxt.offset, len(nxt.rows), nxt.rows[0][0]) == (DOCS_PAGE, 10, f"d{DOCS_PAGE:03d}.pdf")
    assert turned_page(ctx, "c", DOCS_PAGE, 1, "", "name").offset == DOCS_PAGE  # type: ignore[arg-type]  # clamped
    del service.docs[5:]  # most documents deleted: the second page is gone
    service.version += 1
    clamped = documents_page(ctx, "c", True, False, DOCS_PAGE, "", "", "name")  # type: ignore[arg-type]
    assert clamped is not None and (clamped.offset, clamped.total, len(clamped.rows)) == (0, 5, 5)
    filtered = turned_page(ctx, "c", 0, 0, "D003", "name")  # type: ignore[arg-type]
    assert filtered.filtered and filtered.total == 1 and filtered.rows[0][0] == "d003.pdf"
