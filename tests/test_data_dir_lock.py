"""Two processes on one data dir (pagelens/core/datadir.py): the second one is refused with an error naming
the first (role, pid, since when, its URL) and what to do, nothing of the first is touched, and the
lock dies with its holder (no stale lock after a SIGKILL). Real processes: a holder subprocess, the
``pagelens`` CLI and ``pagelens serve``."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
from api_helpers import free_port, start_serve, stop_serve

from pagelens.core.datadir import LOCK_FILE, DataDirInUseError, DataDirLock, read_holder, redacted_command

REPO = Path(__file__).resolve().parents[1]
PAGELENS = [sys.executable, "-m", "pagelens.cli"]

_HOLD = textwrap.dedent("""
    import sys, time
    sys.path.insert(0, {repo!r})
    from pathlib import Path
    from pagelens.core.datadir import DataDirLock
    lock = DataDirLock(Path({data!r}), {role!r}, purpose={purpose!r}, url={url!r})
    try:
        lock.acquire()
    except Exception as exc:
        print("refused", type(exc).__name__, exc, flush=True)
        raise SystemExit(3)
    print("locked", flush=True)
    time.sleep({hold_s})
""")


def hold(data: Path, role: str = "pagelens index", purpose: str = "store", url: str = "",
         hold_s: float = 300) -> subprocess.Popen[str]:
    """A process holding ``data``'s lock (prints "locked" once it has it)."""
    code = _HOLD.format(repo=str(REPO), data=str(data), role=role, purpose=purpose, url=url, hold_s=hold_s)
    return subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)


def wait_locked(proc: subprocess.Popen[str]) -> None:
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert line.strip() == "locked", line


def stop(proc: subprocess.Popen[str], sig: int = signal.SIGKILL) -> None:
    if proc.poll() is None:
        proc.send_signal(sig)
        proc.wait(30)


@pytest.fixture
def holder(tmp_path: Path) -> Iterator[subprocess.Popen[str]]:
    proc = hold(tmp_path / "data", role="pagelens serve", url="http://127.0.0.1:8123")
    try:
        wait_locked(proc)
        yield proc
    finally:
        stop(proc)


def test_a_second_process_is_refused_naming_the_first(tmp_path: Path, holder: subprocess.Popen[str]) -> None:
    data = tmp_path / "data"
    with pytest.raises(DataDirInUseError) as info:
        DataDirLock(data, "pagelens delete").acquire()
    err = info.value
    assert err.holder is not None and err.holder.pid == holder.pid and err.holder.role == "pagelens serve"
    assert err.code == "data_dir_in_use" and err.http_status == 503
    message = err.message
    assert message.startswith(f"the data dir {data} is in use by `pagelens serve` at http://127.0.0.1:8123 "
                              f"(pid {holder.pid}, since "), message
    assert "read-only commands such as search, ask, docs and collections too" in message
    assert "DELETE http://127.0.0.1:8123/v1/collections/NAME" in message and "PAGELENS_DATA_DIR" in message


def test_no_stale_lock_after_the_holder_is_killed(tmp_path: Path, holder: subprocess.Popen[str]) -> None:
    """The kernel drops a flock with its process: SIGKILL leaves the record in the file but no lock."""
    data = tmp_path / "data"
    stop(holder, signal.SIGKILL)
    assert read_holder(data / LOCK_FILE) is not None  # the dead holder's record is still there
    lock = DataDirLock(data, "pagelens index")
    lock.acquire()
    try:
        record = read_holder(data / LOCK_FILE)
        assert record is not None and record.pid == os.getpid() and record.role == "pagelens index"
    finally:
        lock.release()
    assert (data / LOCK_FILE).read_text() == ""  # released: the record is cleared


def test_the_lock_is_shared_within_a_process(tmp_path: Path) -> None:
    """The API, the job worker and the store of one server share one lock: it is free for another
    process only once every holder in this one released it."""
    data = tmp_path / "data"
    first, second = DataDirLock(data, "pagelens serve"), DataDirLock(data, "other part")
    first.acquire()
    second.acquire()
    first.acquire()  # a no-op on the same object
    assert second.holder() is not None and second.holder().role == "pagelens serve"  # type: ignore[union-attr]
    first.release()
    other = hold(data, hold_s=0)
    assert other.stdout is not None and other.stdout.readline().startswith("refused DataDirInUseError")
    assert other.wait(30) == 3
    second.release()
    other = hold(data, hold_s=0)
    try:
        wait_locked(other)
    finally:
        other.wait(30)


def test_the_recorded_command_line_hides_secrets() -> None:
    argv = ["pagelens", "index", "a.pdf", "--password", "s3cr3t", "--api-key=k3y", "--collection", "c"]
    text = redacted_command(argv)
    assert "s3cr3t" not in text and "k3y" not in text
    assert text == "pagelens index a.pdf --password '***' '--api-key=***' --collection c"


def test_embedded_store_refuses_every_operation_while_another_process_holds(
    tmp_path: Path, settings_factory
) -> None:
    """The store claims the data dir before it opens, creates or deletes collection files or writes
    aliases.json: refused with the holder named, and the other process's collection left whole."""
    from pagelens.index.stores.aliases import with_aliases
    from pagelens.index.stores.factory import open_store

    from pagelens.core.types import CollectionManifest

    settings = settings_factory()
    store = with_aliases(open_store(settings, "pagelens index"))
    store.create_collection(CollectionManifest(name="x", model_id="m", model_revision=None, dim=8))
    store.close()  # releases the data dir
    proc = hold(settings.data_dir, role="pagelens index")
    try:
        wait_locked(proc)
        store = with_aliases(open_store(settings, "pagelens delete"))
        assert store.list_collections() == ["x"]  # listing reads directory names only
        for attempt in (lambda: store.delete_collection("x"), lambda: store.count("x"),
                        lambda: store.create_collection(CollectionManifest(name="y", model_id="m",
                                                                           model_revision=None, dim=8)),
                        lambda: store.aliases.set("live", "x")):
            with pytest.raises(DataDirInUseError) as info:
                attempt()
            assert f"`pagelens index` (pid {proc.pid}" in info.value.message
            assert "Wait for it to finish or stop it" in info.value.message
        assert (settings.edge_dir / "x" / "manifest.json").is_file() and (settings.edge_dir / "x" / "shard").is_dir()
        assert not (settings.edge_dir / "aliases.json").exists()
    finally:
        stop(proc)
    assert store.count("x") == 0 and store.delete_collection("x") is None  # free again: works
    store.close()


def test_with_a_qdrant_server_only_the_job_worker_takes_the_lock(tmp_path: Path, settings_factory) -> None:
    """Server mode: CLI-style use of the store takes no lock (the server serialises; ``--shard``
    workers run side by side), but a second job worker on the same job table is refused."""
    from pagelens.app.jobs import JobStore, JobWorker
    from pagelens.app.service import PagelensService

    settings = settings_factory(qdrant_url="http://127.0.0.1:9", qdrant_retries=0)
    proc = hold(settings.data_dir, role="pagelens serve", purpose="jobs", url="http://127.0.0.1:8124")
    try:
        wait_locked(proc)
        service = PagelensService(settings, role="pagelens index")
        service.claim_data_dir()  # no lock with a server
        worker = JobWorker(JobStore(settings.data_dir), service)
        with pytest.raises(DataDirInUseError) as info:
            worker.start()
        assert not worker.alive
        message = info.value.message
        assert f"`pagelens serve` at http://127.0.0.1:8124 (pid {proc.pid}" in message
        assert "job table (jobs.sqlite3)" in message and "its own PAGELENS_DATA_DIR" in message
    finally:
        stop(proc)
    worker.start()  # the other one is gone
    try:
        assert worker.alive
    finally:
        worker.stop()


# --- the CLI against a running `pagelens serve` ----------------------------------------------------


def _env(data: Path, tiny_models: dict[str, Path]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PAGELENS_")}
    env.update(PAGELENS_DATA_DIR=str(data), PAGELENS_RETRIEVER_MODEL=str(tiny_models["retriever"]),
               PAGELENS_ANSWER_MODEL=str(tiny_models["answerer"]), PAGELENS_DEVICE="cpu", PAGELENS_OCR="off", HF_HUB_OFFLINE="1")
    return env


def _cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*PAGELENS, *args], env=env, capture_output=True, text=True, timeout=300, cwd=REPO)


@pytest.mark.extended
@pytest.mark.slow
def test_cli_against_a_running_serve(tmp_path: Path, tiny_models: dict[str, Path]) -> None:
    """`pagelens delete -c X --all` (and a read-only `pagelens search`, and a second `pagelens serve`)
    while `pagelens serve` serves X: exit 2 with the server named; X is untouched and still served.
    Once the server stopped, the same delete works."""
    import httpx

    data = tmp_path / "data"
    env = _env(data, tiny_models)
    log = tmp_path / "serve.log"
    server, base = start_serve(env, log)
    try:
        assert httpx.post(f"{base}/v1/collections", json={"name": "x"}, timeout=60).status_code == 201
        who = f"is in use by `pagelens serve` at {base} (pid {server.pid}, since "
        for args in (["delete", "-c", "x", "--all"], ["search", "total", "-c", "x"],
                     ["serve", "--host", "127.0.0.1", "--port", str(free_port())]):
            proc = _cli(env, *args)
            assert proc.returncode == 2, (args, proc.returncode, proc.stdout, proc.stderr)
            assert proc.stderr.startswith(f"error: the data dir {data} {who}"), (args, proc.stderr)
            assert proc.stdout == "", (args, proc.stdout)
        assert "read-only commands such as search" in proc.stderr and f"{base}/ui" in proc.stderr
        assert (data / "qdrant-edge" / "x" / "manifest.json").is_file()
        info = httpx.get(f"{base}/v1/collections/x", timeout=60)
        assert info.status_code == 200 and info.json()["name"] == "x", info.text
    finally:
        stop_serve(server)
    assert server.returncode in (0, -signal.SIGTERM), log.read_text()[-3000:]  # uvicorn re-raises SIGTERM
    assert "Application shutdown complete" in log.read_text()
    proc = _cli(env, "delete", "-c", "x", "--all", "--json")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == {"collection": "x", "deleted": "collection"}
    assert not (data / "qdrant-edge" / "x").exists()


def test_an_unwritable_data_dir_is_a_clear_error(tmp_path: Path) -> None:
    from pagelens.core.errors import StoreUnavailableError

    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(StoreUnavailableError) as info:
        DataDirLock(blocker / "data", "pagelens search").acquire()
    assert f"cannot open the lock file {blocker / 'data' / LOCK_FILE}" in info.value.message
    assert "PAGELENS_DATA_DIR must be a directory this user can write to" in info.value.message
