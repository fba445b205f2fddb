"""``pagelens index DIR --sync`` end to end through the real CLI (subprocess) with the tiny random retriever:
add, replace, rename and delete files in a folder, sync, and the collection equals the folder (document
names and page counts), unchanged files neither read nor opened nor embedded (the indexer's count of
pages through the model, ``pages_embedded``), the delete guard, dry runs, shards and SIGKILLs at the
sync's pause points (``pagelens.core.debug_hooks``)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pymupdf
import pytest

PAGELENS = [sys.executable, "-m", "pagelens.cli"]


def run_cli(env: dict[str, str], *args: str, check: bool = True, timeout: float = 600) -> subprocess.CompletedProcess:
    proc = subprocess.run([*PAGELENS, *args], env=env, capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"pagelens {' '.join(args)} exited {proc.returncode}\n{proc.stdout}\n{proc.stderr}")
    return proc


def make_pdf(path: Path, word: str, pages: int) -> Path:
    """A PDF of ``pages`` pages whose text names ``word`` (so every file has its own content)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    doc = pymupdf.open()
    for i in range(pages):
        page = doc.new_page(width=300, height=400)
        page.insert_text((40, 60 + 12 * i), f"{word} page {i + 1} of {pages}")
    doc.save(path)
    doc.close()
    return path


def folder_pages(root: Path) -> dict[str, int]:
    """Path under ``root`` (POSIX) -> page count, for every PDF in it."""
    out = {}
    for pdf in sorted(root.rglob("*.pdf")):
        with pymupdf.open(pdf) as doc:
            out[pdf.relative_to(root).as_posix()] = doc.page_count
    return out


def collection_pages(env: dict[str, str], collection: str) -> dict[str, int]:
    """Document name -> pages indexed; every document complete."""
    docs = json.loads(run_cli(env, "docs", "--collection", collection, "--json").stdout)
    for d in docs:
        assert d["status"] == "complete", d
    names = [d["doc_name"] for d in docs]
    assert len(names) == len(set(names)), f"a name twice: {names}"
    return {d["doc_name"]: d["pages_indexed"] for d in docs}


def sync(env: dict[str, str], root: Path, collection: str, *extra: str, check: bool = True) -> dict:
    proc = run_cli(env, "index", str(root), "--sync", "--collection", collection, "--json", *extra, check=check)
    return json.loads(proc.stdout) if proc.stdout.strip() else {"returncode": proc.returncode, "stderr": proc.stderr}


@pytest.fixture
def env(tiny_models: dict[str, Path], tmp_path: Path) -> dict[str, str]:
    out = {k: v for k, v in os.environ.items() if not k.startswith("PAGELENS_")}
    out.update(
        PAGELENS_DATA_DIR=str(tmp_path / "data"),
        PAGELENS_RETRIEVER_MODEL=str(tiny_models["retriever"]),
        PAGELENS_PAGE_LONGEST_EDGE="512",
        PAGELENS_DEVICE="cpu",
        PAGELENS_OCR="off",
        PAGELENS_INGEST_WORKERS="0",
        HF_HUB_OFFLINE="1",
    )
    return out


def first_folder(root: Path) -> None:
    make_pdf(root / "a.pdf", "alpha", 2)
    make_pdf(root / "b.pdf", "bravo", 1)
    make_pdf(root / "sub" / "c.pdf", "charlie", 3)
    make_pdf(root / "d.pdf", "delta", 1)


def change_folder(root: Path) -> None:
    """Replace a.pdf (new content, 4 pages), delete b.pdf, move sub/c.pdf, add e.pdf; d.pdf unchanged."""
    make_pdf(root / "a.pdf", "alpha second edition", 4)
    (root / "b.pdf").unlink()
    (root / "sub" / "moved").mkdir()
    (root / "sub" / "c.pdf").rename(root / "sub" / "moved" / "c2.pdf")
    make_pdf(root / "e.pdf", "echo", 1)


@pytest.mark.slow
def test_sync_mirrors_the_folder_and_embeds_only_what_changed(env: dict[str, str], tmp_path: Path) -> None:
    root = tmp_path / "docs"
    first_folder(root)
    report = sync(env, root, "s")
    assert (report["added"], report["updated"], report["renamed"], report["deleted"]) == (4, 0, 0, 0)
    assert report["pages_embedded"] == 7 and report["errors"] == []
    assert collection_pages(env, "s") == folder_pages(root) == {"a.pdf": 2, "b.pdf": 1, "sub/c.pdf": 3, "d.pdf": 1}

    again = sync(env, root, "s")  # nothing changed: nothing read, opened or embedded
    assert again["unchanged"] == 4 and again["added"] == again["updated"] == again["deleted"] == 0
    assert again["files_hashed"] == [] and again["documents_opened"] == [] and again["pages_embedded"] == 0

    docs_before = json.loads(run_cli(env, "docs", "--collection", "s", "--json").stdout)
    b_sha = next(d["sha256"] for d in docs_before if d["doc_name"] == "b.pdf")
    old_a_sha = next(d["sha256"] for d in docs_before if d["doc_name"] == "a.pdf")
    pages_root = Path(env["PAGELENS_DATA_DIR"]) / "pages"
    assert (pages_root / b_sha[:2] / b_sha).is_dir()
    change_folder(root)

    plan = sync(env, root, "s", "--dry-run")
    assert plan["dry_run"] is True
    assert (plan["added"], plan["updated"], plan["renamed"], plan["deleted"], plan["unchanged"]) == (1, 1, 1, 1, 1)
    assert plan["pages_embedded"] == 0 and plan["documents_opened"] == []
    kinds = {a["name"]: a["kind"] for a in plan["actions"]}
    assert kinds == {"a.pdf": "update", "b.pdf": "delete", "sub/moved/c2.pdf": "rename", "e.pdf": "add",
                     "d.pdf": "unchanged"}
    assert json.loads(run_cli(env, "docs", "--collection", "s", "--json").stdout) == docs_before  # nothing changed
    text = run_cli(env, "index", str(root), "--sync", "--collection", "s", "--dry-run").stdout
    assert "rename sub/c.pdf -> sub/moved/c2.pdf" in text and "delete b.pdf (1 pages)" in text
    assert "1 to add, 1 to update, 1 to rename, 1 to delete, 1 unchanged" in text

    done = sync(env, root, "s")
    assert (done["added"], done["updated"], done["renamed"], done["deleted"], done["unchanged"]) == (1, 1, 1, 1, 1)
    assert done["errors"] == [] and done["replaced_versions_removed"] == 1
    # only the new and the replaced file were opened and embedded: 4 + 1 pages through the model
    assert sorted(Path(p).name for p in done["documents_opened"]) == ["a.pdf", "e.pdf"]
    assert done["pages_embedded"] == 5 and done["pages_indexed"] == 5
    # the moved file was read for its hash (a new path), never opened; d.pdf not even read
    assert sorted(done["files_hashed"]) == ["a.pdf", "e.pdf", "sub/moved/c2.pdf"]
    assert done["pages_deleted"] == 1 + 2  # b.pdf, and the first edition of a.pdf
    assert collection_pages(env, "s") == folder_pages(root) == {"a.pdf": 4, "d.pdf": 1, "e.pdf": 1,
                                                                 "sub/moved/c2.pdf": 3}
    # the deleted file's and the old edition's page images went with them
    assert not (pages_root / b_sha[:2] / b_sha).exists() and not (pages_root / old_a_sha[:2] / old_a_sha).exists()
    # and their text: a text search for their words finds only the folder's files
    hits = json.loads(run_cli(env, "search", "bravo", "--collection", "s", "--mode", "text", "-k", "10",
                              "--json").stdout)["results"]
    assert {h["doc_name"] for h in hits} <= set(folder_pages(root))
    moved = json.loads(run_cli(env, "search", "charlie", "--collection", "s", "--mode", "text", "-k", "3",
                               "--json").stdout)["results"]
    assert moved and moved[0]["doc_name"] == "sub/moved/c2.pdf"

    settled = sync(env, root, "s")
    assert settled["unchanged"] == 4 and settled["pages_embedded"] == 0 and settled["files_hashed"] == []


@pytest.mark.extended
@pytest.mark.slow
def test_sync_refuses_a_large_delete_without_yes(env: dict[str, str], tmp_path: Path) -> None:
    root = tmp_path / "docs"
    make_pdf(root / "one.pdf", "one", 1)
    make_pdf(root / "two.pdf", "two", 1)
    make_pdf(root / "three.pdf", "three", 1)
    sync(env, root, "g")

    missing = run_cli(env, "index", str(tmp_path / "unmounted"), "--sync", "--collection", "g", check=False)
    assert missing.returncode == 2 and "is not a folder" in missing.stderr and "mounted" in missing.stderr

    for name in ("one.pdf", "two.pdf"):  # 2 of 3 documents gone: 67% > 50%
        (root / name).unlink()
    refused = run_cli(env, "index", str(root), "--sync", "--collection", "g", check=False)
    assert refused.returncode == 2, refused.stdout + refused.stderr
    assert "refusing to sync: it would delete 2 of the 3 documents" in refused.stderr
    assert "--yes" in refused.stderr and "PAGELENS_SYNC_MAX_DELETE_SHARE=0.5" in refused.stderr
    assert set(collection_pages(env, "g")) == {"one.pdf", "two.pdf", "three.pdf"}  # nothing deleted

    plan = sync(env, root, "g", "--dry-run")  # a dry run says it would be refused
    assert plan["delete_share"] == pytest.approx(2 / 3, abs=1e-3) and "--yes" in plan["would_refuse"]
    looser = {**env, "PAGELENS_SYNC_MAX_DELETE_SHARE": "0.7"}  # the setting moves the line
    assert sync(looser, root, "g", "--dry-run")["would_refuse"] is None
    done = sync(env, root, "g", "--yes")
    assert done["deleted"] == 2 and done["pages_embedded"] == 0
    assert collection_pages(env, "g") == {"three.pdf": 1}

    # --metadata on unchanged files: a payload change, nothing embedded
    tagged = sync(env, root, "g", "--metadata", "dept=hr")
    assert tagged["metadata_changes"] == 1 and tagged["pages_embedded"] == 0
    docs = json.loads(run_cli(env, "docs", "--collection", "g", "--json").stdout)
    assert [d["metadata"] for d in docs] == [{"dept": "hr"}]

    # a replacement that cannot be indexed: the error names the file, the old version stays searchable
    (root / "three.pdf").write_bytes(b"this is not a document")
    broken = run_cli(env, "index", str(root), "--sync", "--collection", "g", check=False)
    assert broken.returncode == 1, broken.stdout + broken.stderr
    assert "three.pdf" in broken.stderr and "kept: three.pdf" in broken.stderr
    assert collection_pages(env, "g") == {"three.pdf": 1}
    make_pdf(root / "three.pdf", "three, second edition", 2)  # fixed: the next sync replaces it
    fixed = sync(env, root, "g")
    assert fixed["updated"] == 1 and fixed["replaced_versions_removed"] == 1 and fixed["errors"] == []
    assert collection_pages(env, "g") == {"three.pdf": 2}
    docs = json.loads(run_cli(env, "docs", "--collection", "g", "--json").stdout)
    assert [d["metadata"] for d in docs] == [{"dept": "hr"}]  # the new version keeps the old one's metadata


@pytest.mark.extended
@pytest.mark.slow
def test_sync_by_shards_mirrors_the_folder(env: dict[str, str], tmp_path: Path) -> None:
    """Each ``--shard I/N`` worker syncs its share of the files and deletes only its share of the
    documents; run one after another (embedded store), together they mirror the folder."""
    from pagelens.ingest.manifest import shard_of

    root = tmp_path / "docs"
    names = [f"f{i}.pdf" for i in range(6)]
    for i, name in enumerate(names):
        make_pdf(root / name, f"file{i}", 1)
    reports = [sync(env, root, "sh", "--shard", f"{i}/2") for i in range(2)]
    assert sum(r["added"] for r in reports) == 6
    for i, r in enumerate(reports):
        assert {Path(p).name for p in r["documents_opened"]} == {n for n in names if shard_of(n, 2) == i}
    assert collection_pages(env, "sh") == folder_pages(root)

    gone = next(n for n in names if shard_of(n, 2) == 0)
    (root / gone).unlink()
    other = sync(env, root, "sh", "--shard", "1/2")  # the other shard does not delete shard 0's document
    assert other["deleted"] == 0 and gone in collection_pages(env, "sh")
    mine = sync(env, root, "sh", "--shard", "0/2")
    assert mine["deleted"] == 1 and mine["pages_embedded"] == 0
    assert collection_pages(env, "sh") == folder_pages(root)


def test_sync_usage_errors(tmp_path: Path) -> None:
    """Refused before any store or model is opened (exit 2, the reason on stderr)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PAGELENS_")}
    env["PAGELENS_DATA_DIR"] = str(tmp_path / "data")
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    cases = [
        (["index", str(tmp_path / "a"), str(tmp_path / "b"), "--sync"], "exactly one folder"),
        (["index", str(tmp_path / "a"), "--dry-run"], "go with --sync"),
        (["index", str(tmp_path / "a"), "--sync", "--force"], "--force"),
        (["index", str(tmp_path / "a"), "--sync", "--reindex"], "--reindex"),
        (["index", str(tmp_path / "a"), "--sync", "--manifest", str(tmp_path / "m.jsonl")], "--manifest"),
    ]
    for args, message in cases:
        proc = run_cli(env, *args, "--collection", "x", check=False)
        assert proc.returncode == 2 and message in proc.stderr, (args, proc.stderr)
    assert not (tmp_path / "data").exists()


# ------------------------------------------------------------------------------------------------
def wait_paused(proc: subprocess.Popen, err_path: Path, point: str, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        if f"paused at {point}" in err_path.read_text(errors="replace"):
            return
        time.sleep(0.2)
    raise AssertionError(f"never paused at {point} (exit {proc.poll()}):\n{err_path.read_text(errors='replace')}")


@pytest.mark.slow
@pytest.mark.extended
@pytest.mark.parametrize("point", ["sync_renamed", "cache_append", "sync_indexed", "sync_deleting"])
def test_sigkill_during_sync_then_rerun_mirrors_the_folder(env: dict[str, str], tmp_path: Path, point: str) -> None:
    """SIGKILL a real ``pagelens index --sync`` after its renames, in the middle of writing its new pages
    (``cache_append``: the store took the first chunk's points, the rerank cache not yet), after its new
    pages are in (before any delete) and after its first delete: search never lost the replaced file
    (old or new pages are there), and the next sync ends with the collection equal to the folder,
    embedding only what the killed run had not written."""
    root = tmp_path / "docs"
    first_folder(root)
    sync(env, root, "k")
    change_folder(root)
    err_path = tmp_path / "killed.err"
    cmd = [*PAGELENS, "index", str(root), "--sync", "--collection", "k", "--json"]
    with open(tmp_path / "killed.out", "w") as out, open(err_path, "w") as err:
        proc = subprocess.Popen(cmd, env={**env, "PAGELENS_TUNING__DEBUG_PAUSE_AT": point}, stdout=out, stderr=err)
        try:
            wait_paused(proc, err_path, point)
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=30)
    names = json.loads(run_cli(env, "docs", "--collection", "k", "--json").stdout)
    assert "a.pdf" in {d["doc_name"] for d in names}  # never neither version of the replaced file
    if point in ("sync_indexed", "sync_deleting"):  # the new pages are in; the old edition may be there too
        assert any(d["doc_name"] == "a.pdf" and d["page_count"] == 4 and d["status"] == "complete" for d in names)

    rerun = sync(env, root, "k")
    assert rerun["errors"] == []
    assert collection_pages(env, "k") == folder_pages(root)
    # the killed run wrote the new files' pages past sync_indexed: the rerun embeds only what was missing
    if point == "cache_append":
        assert 0 < rerun["pages_embedded"] < 5
    else:
        assert rerun["pages_embedded"] == (5 if point == "sync_renamed" else 0)
    settled = sync(env, root, "k")
    assert settled["unchanged"] == 4 and settled["pages_embedded"] == 0


# ------------------------------------------------------------------------------------------------
def test_rest_sync_root_confines_the_folder(tmp_path: Path) -> None:
    """The folder a REST caller names must resolve inside a sync root: '..', absolute paths elsewhere and
    symlinks out are refused (400); no roots configured: REST sync is off (403)."""
    from pagelens.app.sync import resolve_sync_root
    from pagelens.core.errors import ApiError, InvalidRequestError

    root = tmp_path / "roots" / "invoices"
    (root / "2024").mkdir(parents=True)
    outside = tmp_path / "secret"
    outside.mkdir()
    (root / "escape").symlink_to(outside, target_is_directory=True)
    assert resolve_sync_root([root], "2024") == (root / "2024").resolve()
    assert resolve_sync_root([root], ".") == root.resolve()
    assert resolve_sync_root([root], str(root / "2024")) == (root / "2024").resolve()
    for bad in ("..", "../../secret", str(outside), "escape", "2024/../../..", "/etc", "nope"):
        with pytest.raises(InvalidRequestError) as exc:
            resolve_sync_root([root], bad)
        # the message repeats what was asked, never where it led or where the roots are
        assert f"'{bad}'" in exc.value.message
        assert not [p for p in (str(outside), str(root)) if p in exc.value.message.replace(bad, "")]
    with pytest.raises(ApiError) as off:
        resolve_sync_root([], "2024")
    assert off.value.http_status == 403 and "PAGELENS_SYNC_ROOTS" in off.value.message


@pytest.mark.slow
def test_rest_sync_mirrors_a_folder_under_a_sync_root(tiny_models: dict[str, Path], tmp_path: Path) -> None:
    from api_helpers import assert_error
    from fastapi.testclient import TestClient

    from pagelens.core.settings import Settings
    from pagelens.server import create_app

    sync_root = tmp_path / "shares"
    folder = sync_root / "invoices"
    make_pdf(folder / "jan.pdf", "january", 1)
    make_pdf(folder / "feb.pdf", "february", 2)
    (tmp_path / "private").mkdir()
    make_pdf(tmp_path / "private" / "salaries.pdf", "salaries", 1)
    (folder / "link.pdf").symlink_to(tmp_path / "private" / "salaries.pdf")  # planted in the share
    settings = Settings(  # type: ignore[call-arg]
        _env_file=None, data_dir=tmp_path / "data", retriever_model=str(tiny_models["retriever"]),
        page_longest_edge=512, device="cpu", ocr="off", ingest_workers=0, sync_roots=[sync_root],
        api_keys="admin-key-0123456789:admin;reader-key-0123456789:r:inv",
    )
    admin = {"Authorization": "Bearer admin-key-0123456789"}
    reader = {"Authorization": "Bearer reader-key-0123456789"}
    with TestClient(create_app(settings)) as client:
        assert client.post("/v1/collections", json={"name": "inv"}, headers=admin).status_code == 201
        assert_error(client.post("/v1/collections/inv/sync", json={"path": "invoices"}), 401)
        assert_error(client.post("/v1/collections/inv/sync", json={"path": "invoices"}, headers=reader), 403)
        for bad in ("../private", str(tmp_path / "private"), "invoices/../../private"):
            err = assert_error(client.post("/v1/collections/inv/sync", json={"path": bad}, headers=admin), 400)
            assert str(tmp_path) not in err["message"].replace(bad, "")  # only what was asked, no server path
        assert_error(client.post("/v1/collections/nope/sync", json={"path": "invoices"}, headers=admin), 404)

        plan = client.post("/v1/collections/inv/sync", json={"path": "invoices", "dry_run": True}, headers=admin)
        assert plan.status_code == 200, plan.text
        assert plan.json()["added"] == 2 and plan.json()["pages_embedded"] == 0
        assert client.get("/v1/collections/inv/documents", headers=admin).json() == []

        done = client.post("/v1/collections/inv/sync", json={"path": "invoices"}, headers=admin)
        assert done.status_code == 200, done.text
        body = done.json()
        assert body["added"] == 2 and body["pages_embedded"] == 3
        assert [(e["file"], e["code"]) for e in body["errors"]] == [("link.pdf", "outside_sync_root")]
        assert str(tmp_path) not in done.text  # no server paths in the answer
        docs = client.get("/v1/collections/inv/documents", headers=admin).json()
        assert {d["doc_name"]: d["pages_indexed"] for d in docs} == {"jan.pdf": 1, "feb.pdf": 2}

        (folder / "jan.pdf").unlink()
        (folder / "feb.pdf").unlink()
        (folder / "link.pdf").unlink()
        refused = client.post("/v1/collections/inv/sync", json={"path": "invoices"}, headers=admin)
        assert "--yes" in assert_error(refused, 409, "sync_refused")["message"]
        yes = client.post("/v1/collections/inv/sync", json={"path": "invoices", "yes": True}, headers=admin)
        assert yes.status_code == 200 and yes.json()["deleted"] == 2
        assert client.get("/v1/collections/inv/documents", headers=admin).json() == []


def test_scheduler_examples_sync_when_asked(tmp_path: Path) -> None:
    """The Kubernetes Indexed Job and the Slurm array (docs/deploy/) pass --sync with SYNC=1, not without."""
    from test_shards import SLURM_ARRAY, _k8s_docs, stand_in_pagelens

    bin_dir, out = stand_in_pagelens(tmp_path)
    (container,) = _k8s_docs()["Job"]["spec"]["template"]["spec"]["containers"]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["SYNC"] == ""  # off unless asked
    base = {"PATH": f"{bin_dir}:/usr/bin:/bin", "TMPDIR": str(tmp_path / "tmp"), "SLURM_ARRAY_TASK_ID": "0",
            "SLURM_ARRAY_TASK_COUNT": "8", "PAGELENS_QDRANT_URL": "http://q:6333",
            "PAGELENS_PAGE_IMAGES_DIR": "/shared/pages"}
    for sync_value, expected in (("", False), ("1", True)):
        k8s_env = {k: v for k, v in env.items() if v is not None} | {
            "SYNC": sync_value, "PATH": base["PATH"], "JOB_COMPLETION_INDEX": "3", "ARGS_OUT": str(out / "k8s")}
        subprocess.run(["sh", "-c", *container["args"]], env=k8s_env, check=True, timeout=30)
        argv = (out / "k8s").read_text().splitlines()
        assert ("--sync" in argv) is expected and argv[argv.index("--shard") + 1] == "3/8"
        subprocess.run(["bash", str(SLURM_ARRAY)], env={**base, "SYNC": sync_value, "ARGS_OUT": str(out / "slurm")},
                       check=True, timeout=30, capture_output=True)
        argv = (out / "slurm").read_text().splitlines()
        assert ("--sync" in argv) is expected and argv[argv.index("--shard") + 1] == "0/8"


# -- the plan alone (no model: a stand-in service holding the collection's document list) ----------------
class _Store:
    identity = "test-store"

    def get_manifest(self, name: str) -> object:
        return object()


class _Service:
    def __init__(self, data_dir: Path, docs: list) -> None:
        from pagelens.core.settings import Settings

        self.settings = Settings(_env_file=None, data_dir=data_dir)  # type: ignore[call-arg]
        self.store = _Store()
        self.docs = docs

    def documents(self, collection: str) -> list:
        return list(self.docs)


def _plan(tmp_path: Path, files: dict[str, bytes], docs: list[tuple[str, bytes, int, int]]) -> dict[str, tuple]:
    """Plan a folder of ``files`` (name -> bytes) against documents (name, bytes, pages, pages indexed);
    returns name -> (kind, old_name, replaced names)."""
    import hashlib

    from pagelens.ingest.manifest import InputItem

    from pagelens.app.service import DocumentInfo
    from pagelens.app.sync import plan_sync

    root = tmp_path / "folder"
    items = []
    for name, data in sorted(files.items()):
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data)
        items.append(InputItem(path=root / name, key=name))
    infos = []
    for name, data, pages, indexed in docs:
        sha = hashlib.sha256(data).hexdigest()
        infos.append(DocumentInfo(doc_id=sha[:16], doc_name=name, sha256=sha, page_count=pages, pages_indexed=indexed))
    by_id = {d.doc_id: d.doc_name for d in infos}
    plan = plan_sync(_Service(tmp_path / "data", infos), "c", root, items)  # type: ignore[arg-type]
    return {a.name: (a.kind, a.old_name, sorted(by_id[r] for r in a.replaces)) for a in plan.actions
            if a.kind != "delete"} | {f"-{a.name}": ("delete", None, []) for a in plan.of("delete")}


def test_plan_swapped_names_are_two_renames(tmp_path: Path) -> None:
    got = _plan(tmp_path, {"a.pdf": b"two", "b.pdf": b"one"}, [("a.pdf", b"one", 1, 1), ("b.pdf", b"two", 1, 1)])
    assert got == {"a.pdf": ("rename", "b.pdf", []), "b.pdf": ("rename", "a.pdf", [])}


def test_plan_moved_file_and_a_new_one_in_its_place(tmp_path: Path) -> None:
    got = _plan(tmp_path, {"a.pdf": b"new", "old/a.pdf": b"one"}, [("a.pdf", b"one", 2, 2)])
    assert got == {"old/a.pdf": ("rename", "a.pdf", []), "a.pdf": ("add", None, [])}


def test_plan_duplicates_and_deletes(tmp_path: Path) -> None:
    got = _plan(tmp_path, {"a.pdf": b"one", "copy.pdf": b"one", "n.pdf": b"x"},
                [("a.pdf", b"one", 1, 1), ("gone.pdf", b"gone", 3, 3), ("n.pdf", b"old n", 1, 1)])
    assert got == {"a.pdf": ("unchanged", None, []), "copy.pdf": ("duplicate", None, []),
                   "n.pdf": ("update", None, ["n.pdf"]), "-gone.pdf": ("delete", None, [])}


def test_plan_a_half_written_update_resumes_and_keeps_the_old_version_until_complete(tmp_path: Path) -> None:
    """Killed mid-update: the file's new content is in with 1 of 3 pages, the old version whole. The
    plan resumes the new one and deletes the old one only after it (not a plain delete)."""
    got = _plan(tmp_path, {"a.pdf": b"v2"}, [("a.pdf", b"v1", 2, 2), ("a.pdf", b"v2", 3, 1)])
    assert got == {"a.pdf": ("resume", None, ["a.pdf"])}


def test_plan_reads_only_files_it_does_not_know(tmp_path: Path) -> None:
    """The ledger: a file whose size and mtime are unchanged since the last sync is not read again."""
    import hashlib

    from pagelens.ingest.manifest import InputItem

    from pagelens.app.service import DocumentInfo
    from pagelens.app.sync import FileLedger, plan_sync

    root = tmp_path / "folder"
    root.mkdir()
    (root / "a.pdf").write_bytes(b"one")
    (root / "b.pdf").write_bytes(b"two")
    items = [InputItem(path=root / n, key=n) for n in ("a.pdf", "b.pdf")]
    docs = [DocumentInfo(doc_id=hashlib.sha256(d).hexdigest()[:16], doc_name=n, sha256=hashlib.sha256(d).hexdigest(),
                         page_count=1, pages_indexed=1) for n, d in (("a.pdf", b"one"), ("b.pdf", b"two"))]
    service = _Service(tmp_path / "data", docs)
    first = plan_sync(service, "c", root, items)  # type: ignore[arg-type]
    assert first.files_hashed == ["a.pdf", "b.pdf"] and first.counts()["unchanged"] == 2
    ledger = FileLedger(tmp_path / "data" / "sync.sqlite3")
    ledger.put("test-store", "c", str(root.resolve()), first.ledger_rows)
    ledger.close()
    os.utime(root / "b.pdf", ns=(1, 1))  # touched: read again (same content: still unchanged)
    second = plan_sync(service, "c", root, items)  # type: ignore[arg-type]
    assert second.files_hashed == ["b.pdf"] and second.counts()["unchanged"] == 2
    assert plan_sync(service, "c", root, items, checksum=True).files_hashed == ["a.pdf", "b.pdf"]  # type: ignore[arg-type]


@pytest.mark.slow
def test_sync_on_a_qdrant_server_store(settings_factory, tiny_models: dict[str, Path], tmp_path: Path) -> None:
    """The same sync through the Python service on the Qdrant server backend (qdrant-client's local mode):
    payload renames, deletes and the registry's name check work there too."""
    from pagelens.index.stores.server_store import QdrantServerStore
    from pagelens.ingest import DEFAULT_INCLUDE
    from qdrant_client import QdrantClient

    from pagelens.app.service import PagelensService
    from pagelens.app.sync import sync_inputs
    from pagelens.core.settings import Settings
    from pagelens.models.embedder import ColSmolEmbedder

    embedder = ColSmolEmbedder(Settings(_env_file=None, retriever_model=str(tiny_models["retriever"]),  # type: ignore[call-arg]
                                        page_longest_edge=256, device="cpu"))
    service = PagelensService(settings_factory(page_longest_edge=256, ingest_workers=0, ocr="off"),
                              store=QdrantServerStore(QdrantClient(":memory:"), prefix="t_"), embedder=embedder)
    root = tmp_path / "docs"
    first_folder(root)
    try:
        first = service.sync("srv", root, sync_inputs(root, DEFAULT_INCLUDE, []))
        assert first.ok and first.plan.counts()["add"] == 4 and first.index is not None
        assert first.index.pages_embedded == 7
        change_folder(root)
        second = service.sync("srv", root, sync_inputs(root, DEFAULT_INCLUDE, []))
        counts = second.plan.counts()
        assert (counts["add"], counts["update"], counts["rename"], counts["delete"], counts["unchanged"]) == (1, 1, 1, 1, 1)
        assert second.ok and second.index is not None and second.index.pages_embedded == 5
        assert len(second.deleted) == 1 and len(second.replaced) == 1
        docs = {d.doc_name: d.pages_indexed for d in service.documents("srv")}
        assert docs == folder_pages(root)
        assert service.store.count("srv") == sum(folder_pages(root).values())
    finally:
        service.close()


@pytest.mark.slow
def test_python_library_sync(tiny_models: dict[str, Path], tmp_path: Path) -> None:
    from pagelens import Pagelens
    from pagelens.app.sync import SyncRefusedError

    root = tmp_path / "docs"
    make_pdf(root / "a.pdf", "alpha", 2)
    with Pagelens(tmp_path / "data", retriever_model=str(tiny_models["retriever"]), page_longest_edge=256,
                  device="cpu", ocr="off", ingest_workers=0) as lens:
        plan = lens.sync(root, collection="lib", dry_run=True)
        assert plan.dry_run and plan.plan.counts()["add"] == 1 and plan.index is None
        report = lens.sync(root, collection="lib")
        assert report.ok and report.index is not None and report.index.pages_embedded == 2
        assert [(d.doc_name, d.pages_indexed) for d in lens.documents("lib")] == [("a.pdf", 2)]
        (root / "a.pdf").unlink()
        with pytest.raises(SyncRefusedError, match="--yes"):
            lens.sync(root, collection="lib")
        assert lens.sync(root, collection="lib", yes=True).deleted
        assert lens.documents("lib") == []
