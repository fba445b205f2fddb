"""Page images keyed by content and render size, paths relative to the page-image root, old payloads,
and re-indexing the same bytes under a new name or metadata (status ``updated``)."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from pagelens.index.pipeline.indexer import IndexInput
from pagelens.index.stores.page_images import PageImageStore
from pagelens.index.stores.server_store import QdrantServerStore
from PIL import Image
from qdrant_client import QdrantClient

from pagelens.app.service import PagelensService
from pagelens.core.errors import DocumentNotFoundError
from pagelens.core.types import PageFilter

SHA = "ab" + "c" * 62


def make_pdf(path: Path, pages: int, label: str) -> Path:
    import pymupdf

    doc = pymupdf.open()
    for i in range(pages):
        page = doc.new_page(width=300, height=400)
        page.insert_text((30, 60), f"{label} page {i + 1}", fontsize=14)
    path.parent.mkdir(parents=True, exist_ok=True)
    doc.save(path)
    doc.close()
    return path


# -- the store on its own -----------------------------------------------------------------------------
def test_keys_are_content_and_render_size_relative_to_the_root(tmp_path: Path) -> None:
    images = PageImageStore(tmp_path / "root")
    big, small = Image.new("RGB", (300, 400), "white"), Image.new("RGB", (150, 200), "white")
    rel_big = images.save(SHA, 3, big)
    rel_small = images.save(SHA, 3, small)
    assert rel_big == f"ab/{SHA}/3-300x400.png" and rel_small == f"ab/{SHA}/3-150x200.png"
    for rel, size in ((rel_big, (300, 400)), (rel_small, (150, 200))):
        path = images.resolve({"image_path": rel, "sha256": SHA, "page_no": 3})
        assert path == tmp_path / "root" / rel
        with Image.open(path) as im:  # type: ignore[arg-type]
            assert im.size == size
    # first writer wins only for the same content at the same size
    assert images.save(SHA, 3, Image.new("RGB", (300, 400), "black")) == rel_big
    with Image.open(tmp_path / "root" / rel_big) as im:
        assert im.getpixel((0, 0)) == (255, 255, 255)
    # the same root at another mount point (another host): the same relative path resolves there
    (tmp_path / "mnt").symlink_to(tmp_path / "root")
    other = PageImageStore(tmp_path / "mnt")
    path = other.resolve({"image_path": rel_big})
    assert path == tmp_path / "mnt" / rel_big and path.is_file() and other.allowed(path)


def test_resolve_refuses_what_escapes_the_roots(tmp_path: Path) -> None:
    root, legacy = tmp_path / "root", tmp_path / "data" / "pages"
    images = PageImageStore(root, legacy_roots=[legacy])
    assert images.resolve({"image_path": "../../etc/passwd"}) is None
    assert images.resolve({"image_path": "ab/../../x.png"}) is None
    outside = tmp_path / "elsewhere" / "ab" / SHA / "1.png"
    outside.parent.mkdir(parents=True)
    outside.write_bytes(b"x")
    assert images.resolve({"image_path": str(outside)}) is None
    assert not images.allowed(outside)
    (root / "ab").mkdir(parents=True)
    (root / "ab" / "link.png").symlink_to(outside)  # a link inside the root pointing out of it
    assert not images.allowed(root / "ab" / "link.png")
    assert images.resolve({}) is None


def test_legacy_payloads_resolve(tmp_path: Path) -> None:
    """Points written before: an absolute ``image_path`` to ``<old root>/<sha[:2]>/<sha>/<n>.png``, or none."""
    legacy_root, root = tmp_path / "data" / "pages", tmp_path / "shared"
    old = legacy_root / "ab" / SHA / "2.png"
    old.parent.mkdir(parents=True)
    Image.new("RGB", (10, 20)).save(old)
    images = PageImageStore(root, legacy_roots=[legacy_root])
    payload = {"image_path": str(old), "sha256": SHA, "page_no": 2}
    assert images.resolve(payload) == old and images.allowed(old)  # the old root, still readable
    moved = root / "ab" / SHA / "2.png"  # the image folder moved to the new root (rsync, a shared volume)
    moved.parent.mkdir(parents=True)
    shutil.copy(old, moved)
    assert images.resolve(payload) == moved
    # no image_path at all (the oldest points): the legacy name under the root
    assert images.resolve({"sha256": SHA, "page_no": 2}) == moved
    # an old absolute path whose file is gone from both: the current root's copy is what is looked for
    old.unlink()
    moved.unlink()
    assert images.resolve(payload) == old  # under a legacy root: named, and missing (callers say so)


def test_delete_document_keeps_referenced_images(tmp_path: Path) -> None:
    images = PageImageStore(tmp_path)
    a = images.save(SHA, 1, Image.new("RGB", (30, 40)))
    b = images.save(SHA, 1, Image.new("RGB", (15, 20)))
    assert images.delete_document(SHA, keep=[tmp_path / b]) == 1
    assert not (tmp_path / a).exists() and (tmp_path / b).is_file()
    assert images.delete_document(SHA) == 1
    assert not (tmp_path / "ab" / SHA).exists()
    assert images.delete_document(SHA) == 0


def test_page_images_dir_setting(settings_factory: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from pagelens.core.settings import Settings

    assert settings_factory().pages_dir == settings_factory().data_dir / "pages"
    monkeypatch.setenv("PAGELENS_PAGE_IMAGES_DIR", "~/shared-pages")
    monkeypatch.setenv("HOME", str(tmp_path))
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    assert settings.page_images_dir == tmp_path / "shared-pages" == settings.pages_dir


# -- through the indexer and the API (tiny models) --------------------------------------------------
@pytest.fixture
def server_store() -> Any:
    """One in-process Qdrant (qdrant-client local mode) that several services share."""
    client = QdrantClient(":memory:")
    stores: list[QdrantServerStore] = []

    def make() -> QdrantServerStore:
        store = QdrantServerStore(client, prefix="t_")
        if stores:  # local mode is not thread-safe: the stores of one client share one lock
            store._lock = stores[0]._lock
        stores.append(store)
        return store

    yield make
    client.close()


@pytest.fixture(scope="module")
def embedder_256(tiny_models: dict[str, Path]) -> Any:
    """The tiny retriever at 256 px, loaded once for this module's services (loading dominates their time)."""
    from pagelens.core.settings import Settings
    from pagelens.models.embedder import ColSmolEmbedder

    return ColSmolEmbedder(Settings(_env_file=None, retriever_model=str(tiny_models["retriever"]),  # type: ignore[call-arg]
                                    page_longest_edge=256, device="cpu"))


def _payloads(service: PagelensService, collection: str) -> list[dict[str, Any]]:
    return sorted((p for _, p in service.store.iter_payloads(collection)), key=lambda p: p["page_no"])


@pytest.mark.slow
def test_collections_at_two_render_sizes_keep_their_own_images(
    settings_factory: Any, server_store: Any, embedder_256: Any, tmp_path: Path
) -> None:
    """Before: the second collection got the first one's PNG (first writer wins by sha256), and its
    payload's width/height disagreed with the file."""
    pdf = make_pdf(tmp_path / "in" / "doc.pdf", 2, "sizes")
    big = PagelensService(settings_factory(page_longest_edge=512, ingest_workers=0), store=server_store())
    small = PagelensService(settings_factory(page_longest_edge=256, ingest_workers=0), store=server_store(),
                            embedder=embedder_256)
    assert big.index("big", [IndexInput(pdf)]).count("indexed") == 1
    assert small.index("small", [IndexInput(pdf)]).count("indexed") == 1
    files = {}
    for service, name, edge in ((big, "big", 512), (small, "small", 256)):
        for p in _payloads(service, name):
            assert not Path(p["image_path"]).is_absolute()
            path = service.images.resolve(p)
            assert path is not None and path.is_file()
            with Image.open(path) as im:
                assert im.size == (p["width"], p["height"]) and max(im.size) == edge
            files[(name, p["page_no"])] = path
    assert files[("big", 1)] != files[("small", 1)]
    hit = small.search("small", "sizes page 1", k=1, mode="visual")[0]
    with Image.open(hit.image_path) as im:  # type: ignore[arg-type]
        assert max(im.size) == 256

    # deleting the document from one collection removes its images, not the other collection's
    doc_id = _payloads(big, "big")[0]["doc_id"]
    assert big.delete_document("big", doc_id) == 2
    assert not files[("big", 1)].exists() and files[("small", 1)].is_file()
    assert small.delete_document("small", doc_id) == 2
    assert not files[("small", 1)].parent.exists()
    with pytest.raises(DocumentNotFoundError):
        small.delete_document("small", doc_id)


@pytest.mark.slow
def test_old_style_payloads_keep_working(settings_factory: Any, server_store: Any, embedder_256: Any,
                                         tmp_path: Path) -> None:
    """A collection written before relative paths: absolute ``image_path`` under ``<data_dir>/pages``
    with the old file name. Search, the page-image route and answers still find the image, also after
    the image folder moved to a new ``PAGELENS_PAGE_IMAGES_DIR``; a path outside the roots is refused."""
    settings = settings_factory(page_longest_edge=256, ingest_workers=0, max_new_tokens=2)
    store = server_store()
    service = PagelensService(settings, store=store, embedder=embedder_256)
    pdf = make_pdf(tmp_path / "in" / "old.pdf", 1, "legacy")
    service.index("old", [IndexInput(pdf)])
    (payload,) = _payloads(service, "old")
    new_file = service.images.resolve(payload)
    assert new_file is not None
    legacy = settings.data_dir / "pages" / payload["sha256"][:2] / payload["sha256"] / "1.png"
    new_file.rename(legacy)
    store.set_payload("old", payload["doc_id"], {"image_path": str(legacy)})  # as the old indexer wrote it

    hit = service.search("old", "legacy", k=1, mode="visual")[0]
    assert hit.image_path == str(legacy)
    answer = service.ask("old", "what is this?", k=1, mode="visual")
    assert [(c.doc_id, c.image_path) for c in answer.citations] == [(payload["doc_id"], str(legacy))]
    from pagelens.server import create_app

    url = f"/v1/collections/old/documents/{payload['doc_id']}/pages/1.png"
    with TestClient(create_app(settings, service, web_ui=False)) as client:
        r = client.get(url)
        assert r.status_code == 200 and r.content == legacy.read_bytes()

    # the image folder moved to a shared root: the old absolute path is found under the new root
    shared = tmp_path / "shared-pages"
    shutil.copytree(settings.data_dir / "pages", shared)
    shutil.rmtree(settings.data_dir / "pages")
    moved_settings = settings_factory(page_longest_edge=256, page_images_dir=shared, max_new_tokens=2)
    moved = PagelensService(moved_settings, store=server_store(), embedder=embedder_256, answerer=service.answerer)
    assert moved.search("old", "legacy", k=1, mode="visual")[0].image_path == str(
        shared / legacy.relative_to(settings.data_dir / "pages"))
    with TestClient(create_app(moved_settings, moved, web_ui=False)) as client:
        assert client.get(url).status_code == 200

        # a payload naming a file outside every root is never served, nor handed to the answerer
        outside = tmp_path / "secret.png"
        Image.new("RGB", (8, 8)).save(outside)
        store.set_payload("old", payload["doc_id"], {"image_path": str(outside)})
        r = client.get(url)
        assert r.status_code == 404 and r.json()["error"]["code"] == "page_image_missing"
        assert "PAGELENS_PAGE_IMAGES_DIR" in r.json()["error"]["message"]
        assert str(tmp_path) not in r.text
    assert moved.search("old", "legacy", k=1, mode="visual")[0].image_path is None


# -- the same bytes again, under a new name or with new metadata ---------------------------------------
@pytest.mark.slow
def test_same_bytes_with_a_new_name_or_metadata_update_the_payload(
    settings_factory: Any, server_store: Any, embedder_256: Any, tmp_path: Path
) -> None:
    store = server_store()
    service = PagelensService(settings_factory(page_longest_edge=256, ingest_workers=0), store=store,
                              embedder=embedder_256)
    pdf = make_pdf(tmp_path / "in" / "scan-0001.pdf", 3, "renamed")
    first = service.index("u", [IndexInput(pdf, name="Contract A.pdf", metadata={"dept": "legal"})])
    assert first.count("indexed") == 1 and first.pages_indexed == 3
    before = {p["page_no"]: p for p in _payloads(service, "u")}
    vectors = store.get_full_vectors("u", [pid for pid, _ in store.iter_payloads("u")])

    again = service.index("u", [IndexInput(pdf, name="Contract A.pdf", metadata={"dept": "legal"})])
    assert again.count("skipped") == 1 and again.to_dict()["documents_updated"] == 0

    events: list[tuple[str, dict[str, Any]]] = []
    renamed = service.index("u", [IndexInput(pdf, name="Contract A (signed).pdf")],
                            progress=lambda e, i: events.append((e, i)))
    assert [d.status for d in renamed.documents] == ["updated"] and renamed.pages_indexed == 0
    assert renamed.to_dict()["documents_updated"] == 1 and renamed.to_dict()["documents_skipped"] == 0
    done = [i for e, i in events if e == "document_done"]
    assert done == [{"path": str(pdf), "doc_name": "Contract A (signed).pdf", "status": "updated",
                     "page_count": 3, "changed": ["doc_name"]}]
    (doc,) = service.documents("u")
    assert (doc.doc_name, doc.metadata, doc.pages_indexed) == ("Contract A (signed).pdf", {"dept": "legal"}, 3)
    for p in _payloads(service, "u"):  # no metadata given: the stored metadata stays; nothing else moves
        assert p == {**before[p["page_no"]], "doc_name": "Contract A (signed).pdf"}

    retagged = service.index("u", [IndexInput(pdf, name="Contract A (signed).pdf", metadata={"dept": "ops"})])
    assert [d.status for d in retagged.documents] == ["updated"]
    assert service.documents("u")[0].metadata == {"dept": "ops"}
    assert store.count("u", PageFilter(metadata={"dept": "ops"})) == 3
    assert store.count("u", PageFilter(doc_names=["Contract A.pdf"])) == 0
    after = store.get_full_vectors("u", list(vectors))
    assert all((after[k] == v).all() for k, v in vectors.items())  # not embedded again

    # an interrupted run resumed under a new name: the pages written before take it too
    from qdrant_client import models

    pid = next(pid for pid, p in store.iter_payloads("u") if p["page_no"] == 2)
    store.client.delete("t_u", points_selector=models.PointIdsList(points=[pid]), wait=True)
    resumed = service.index("u", [IndexInput(pdf, name="final.pdf")])
    assert [d.status for d in resumed.documents] == ["indexed"] and resumed.pages_indexed == 1
    assert {(p["doc_name"], str(p["meta"])) for p in _payloads(service, "u")} == {("final.pdf", "{'dept': 'ops'}")}


@pytest.mark.slow
def test_cli_and_api_say_updated(settings_factory: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    from api_helpers import upload, wait_job
    from typer.testing import CliRunner

    from pagelens.cli import app
    from pagelens.server import create_app

    settings = settings_factory(page_longest_edge=256, ingest_workers=0)
    for key in [k for k in os.environ if k.startswith("PAGELENS_")]:
        monkeypatch.delenv(key)
    for key, value in {"DATA_DIR": str(settings.data_dir), "RETRIEVER_MODEL": settings.retriever_model,
                       "PAGE_LONGEST_EDGE": "256", "DEVICE": "cpu", "INGEST_WORKERS": "0"}.items():
        monkeypatch.setenv(f"PAGELENS_{key}", value)
    monkeypatch.chdir(tmp_path)
    folder = tmp_path / "in"
    pdf = make_pdf(folder / "a.pdf", 1, "cli")
    runner = CliRunner()
    result = runner.invoke(app, ["index", str(folder), "-c", "c"])
    assert result.exit_code == 0 and "1 indexed, 0 skipped" in " ".join(result.stdout.split()), result.output
    pdf.rename(folder / "b.pdf")
    result = runner.invoke(app, ["index", str(folder), "-c", "c"])
    assert result.exit_code == 0, result.output
    assert "0 indexed, 1 updated (new name/metadata), 0 skipped" in " ".join(result.stdout.split())
    result = runner.invoke(app, ["index", str(folder), "-c", "c", "--json"])
    assert result.exit_code == 0
    import json

    data = json.loads(result.stdout)
    assert (data["documents_updated"], data["documents_skipped"], data["documents"][0]["status"]) == (0, 1, "skipped")

    # an upload of the same bytes under another file name: the job says updated, the listing the new name
    with TestClient(create_app(settings, web_ui=False)) as client:
        r = upload(client, "c", [("Invoice March.pdf", (folder / "b.pdf").read_bytes())], metadata='{"src": "api"}')
        assert r.status_code == 202, r.text
        job = wait_job(client, r.json()["id"])
        assert job["status"] == "done"
        assert [(d["status"], d["pages_done"], d["page_count"]) for d in job["documents"]] == [("updated", 1, 1)]
        (doc,) = client.get("/v1/collections/c/documents").json()
        assert (doc["doc_name"], doc["metadata"], doc["status"]) == ("Invoice March.pdf", {"src": "api"}, "complete")
