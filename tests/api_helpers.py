"""Helpers shared by the API tests (not a test module)."""

from __future__ import annotations

import json
import time
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
