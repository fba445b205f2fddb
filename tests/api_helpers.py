"""Helpers shared by the API tests (not a test module)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient


def upload(client: TestClient, collection: str, paths: list[Path | tuple[str, bytes]],
           headers: dict[str, str] | None = None, **fields: str) -> Any:
    files = []
    for item in paths:
        if isinstance(item, tuple):
            files.append(("files", (item[0], item[1], "application/octet-stream")))
        else:
            files.append(("files", (item.name, item.read_bytes(), "application/pdf")))
    return client.post(f"/v1/collections/{collection}/documents", files=files, data=fields or None,
                       headers=headers or {})


def wait_job(client: TestClient, job_id: str, headers: dict[str, str] | None = None,
             timeout: float = 240.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        r = client.get(f"/v1/jobs/{job_id}", headers=headers or {})
        assert r.status_code == 200, r.text
        job = r.json()
        if job["status"] not in ("queued", "running"):
            return job
        if time.monotonic() > deadline:
            raise AssertionError(f"job {job_id} still {job['status']} after {timeout} s: {job}")
        time.sleep(0.2)


def parse_sse(text: str) -> list[tuple[str, Any]]:
    events = []
    for block in text.split("\n\n"):
        if not block.strip():
            continue
        event, data = "message", []
        for line in block.splitlines():
            if line.startswith("event:"):
                event = line[len("event:"):].strip()
            elif line.startswith("data:"):
                data.append(line[len("data:"):].lstrip())
        events.append((event, json.loads("\n".join(data))))
    return events


def assert_error(response: Any, status: int, code: str | None = None) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"}, body
    assert set(body["error"]) == {"code", "message", "detail"}, body
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]
    assert "Traceback" not in response.text
    if code is not None:
        assert body["error"]["code"] == code, body
    return body["error"]


def ui_fn_index(config: dict[str, Any], elem_id: str, event: str = "click") -> int:
    """The Gradio event (fn_index) fired by ``event`` on the component with ``elem_id``, from ``/ui/config``
    (of several, the one with the most inputs)."""
    ids = [c["id"] for c in config["components"] if c.get("props", {}).get("elem_id") == elem_id]
    assert len(ids) == 1, (elem_id, ids)
    deps = [d for d in config["dependencies"]
            if [ids[0], event] in [list(t) for t in d["targets"]] and d.get("backend_fn", True)]
    assert deps, f"no backend {event} event on #{elem_id}"
    return int(max(deps, key=lambda d: len(d["inputs"]))["id"])


def ui_call(client: Any, fn_index: int, data: list[Any], headers: dict[str, str] | None = None,
            session: str | None = None, prefix: str = "/ui", timeout: float = 120.0) -> tuple[int, Any]:
    """Send one UI event the way the Gradio page does (``queue/join``, then the ``queue/data`` event
    stream) in the page session ``session`` (a new one when None). Returns (status of the join, the
    output data list of the finished event), or (status, body) when the join was refused. ``client`` is a
    TestClient or an httpx.Client with a base URL."""
    import uuid

    session = session or uuid.uuid4().hex[:12]
    r = client.post(f"{prefix}/gradio_api/queue/join", headers=headers or {},
                    json={"data": data, "fn_index": fn_index, "session_hash": session, "event_data": None,
                          "trigger_id": None})
    if r.status_code != 200:
        return r.status_code, r.text
    result: Any = None
    with client.stream("GET", f"{prefix}/gradio_api/queue/data", params={"session_hash": session},
                       headers=headers or {}, timeout=timeout) as stream:
        for line in stream.iter_lines():
            if not line.startswith("data:"):
                continue
            msg = json.loads(line[5:])
            if msg.get("msg") == "process_completed":
                assert msg.get("success"), msg
                result = (msg.get("output") or {}).get("data")
            if msg.get("msg") == "close_stream":
                break
    assert result is not None, "the event stream ended before the event completed"
    return 200, result


def ui_page_session(client: Any, config: dict[str, Any], headers: dict[str, str] | None = None,
                    prefix: str = "/ui") -> str:
    """A page session as a browser has it after loading the UI: its load event has run (it fills the
    collection picker with what the key may see). Returns the session hash for ``ui_call``."""
    import uuid

    session = uuid.uuid4().hex[:12]
    load = [d for d in config["dependencies"] if any(t[1] == "load" for t in d["targets"])
            and d.get("api_name") == "on_load"]  # the screen's load (the Ask tab restores its thread on load too)
    assert len(load) == 1, load
    ids = {c["id"]: c for c in config["components"]}
    inputs = []
    for cid in load[0]["inputs"]:
        props = ids[cid].get("props", {})
        inputs.append(props.get("value"))
    status, out = ui_call(client, int(load[0]["id"]), inputs, headers=headers, session=session, prefix=prefix)
    assert status == 200, out
    return session


# --- a real `pagelens serve` on loopback -------------------------------------------------------------

REPO_ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    """A TCP port free on 127.0.0.1 now."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_serve(env: dict[str, str], log_path: Path, port: int | None = None, startup_s: float = 120,
                args: tuple[str, ...] = ()) -> tuple[Any, str]:
    """``pagelens serve`` in its own process group on loopback, output appended to ``log_path``; returns
    (process, base URL) once ``/healthz`` answers 200. Fails the test with the log's tail when the
    server exits or does not answer within ``startup_s``."""
    import subprocess
    import sys

    import httpx

    port = port or free_port()
    base = f"http://127.0.0.1:{port}"
    with open(log_path, "ab") as log:
        proc = subprocess.Popen([sys.executable, "-m", "pagelens.cli", "serve", "--host", "127.0.0.1", "--port",
                                 str(port), *args], env=env, stdout=log, stderr=subprocess.STDOUT,
                                cwd=REPO_ROOT, start_new_session=True)
    deadline = time.monotonic() + startup_s
    while True:
        if proc.poll() is not None:
            raise AssertionError(f"pagelens serve exited with {proc.returncode}:\n" + log_path.read_text()[-3000:])
        try:
            if httpx.get(f"{base}/healthz", timeout=2).status_code == 200:
                return proc, base
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            stop_serve(proc, graceful=False)
            raise AssertionError(f"pagelens serve did not start in {startup_s:.0f} s:\n" + log_path.read_text()[-3000:])
        time.sleep(0.3)


def stop_serve(proc: Any, graceful: bool = True, timeout_s: float = 60) -> None:
    """Stop a ``start_serve`` process group: SIGTERM (a graceful shutdown), then SIGKILL if it lingers;
    ``graceful=False``: SIGKILL at once (a crash)."""
    import os
    import signal
    import subprocess

    if proc.poll() is not None:
        return
    os.killpg(proc.pid, signal.SIGTERM if graceful else signal.SIGKILL)
    try:
        proc.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)


@contextmanager
def pagelens_serve(env: dict[str, str], log_path: Path, startup_s: float = 120) -> Iterator[str]:
    """``start_serve`` as a context: yields the base URL, stops the server gracefully at the end."""
    proc, base = start_serve(env, log_path, startup_s=startup_s)
    try:
        yield base
    finally:
        stop_serve(proc)
