"""Load on loopback: ``pagelens serve`` (uvicorn, tiny models) in a subprocess and 16 client threads
uploading small real PDFs, searching and asking for a fixed period (``PAGELENS_LOAD_SECONDS``, default
20). Bounded in time and count, stops by itself, loopback only.

Reports requests, errors, p50/p95 latency per kind. Passes when there were no errors other than the
deliberate 4xx (a search on a collection that does not exist), every accepted upload ended indexed
or failed with a message, and the collection's point count equals the accepted pages exactly (every
upload is made a distinct document by a unique trailing comment, so none is deduplicated)."""

from __future__ import annotations

import json
import os
import random
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from conftest import REAL_PDFS

pytestmark = [pytest.mark.slow, pytest.mark.extended]

CLIENTS = 16
SECONDS = float(os.environ.get("PAGELENS_LOAD_SECONDS", "20"))
MAX_REQUESTS = 5000  # hard bound on the whole run, whatever the speed
SMALL = [REAL_PDFS / n for n in ("inv_oyo_hotel_receipt_in.pdf", "inv_aws_invoice_en.pdf",
                                 "fr_demolition_minutes_2023.pdf", "inv_qualityhosting_de.pdf")]
QUESTIONS = ["total amount due", "invoice date", "hotel booking", "demolition permit", "tax number"]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _pct(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    values = sorted(values)
    return values[min(len(values) - 1, int(round(q * (len(values) - 1))))]


def test_load(tmp_path: Path, tiny_models) -> None:
    import httpx

    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    env = {**os.environ,
           "PAGELENS_DATA_DIR": str(tmp_path / "data"),
           "PAGELENS_RETRIEVER_MODEL": str(tiny_models["retriever"]),
           "PAGELENS_ANSWER_MODEL": str(tiny_models["answerer"]),
           "PAGELENS_DEVICE": "cpu", "PAGELENS_PAGE_LONGEST_EDGE": "256", "PAGELENS_ANSWER_LONGEST_EDGE": "128",
           "PAGELENS_MAX_NEW_TOKENS": "4", "PAGELENS_INGEST_WORKERS": "0", "PAGELENS_API_KEYS": ""}
    env.pop("PAGELENS_API_KEYS")
    env.pop("PAGELENS_QDRANT_URL", None)
    log_path = tmp_path / "server.log"
    with open(log_path, "wb") as log:
        server = subprocess.Popen(
            [sys.executable, "-m", "pagelens.cli", "serve", "--host", "127.0.0.1", "--port", str(port)],
            env=env, stdout=log, stderr=subprocess.STDOUT, cwd=Path(__file__).resolve().parents[2],
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            assert server.poll() is None, log_path.read_text()[-3000:]
            try:
                if httpx.get(f"{base}/healthz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.3)
        else:
            raise AssertionError("server did not start:\n" + log_path.read_text()[-3000:])

        with httpx.Client(base_url=base, timeout=120) as c:
            assert c.post("/v1/collections", json={"name": "load"}).status_code == 201
            # one page in it before searches start
            r = c.post("/v1/collections/load/documents", files={"files": ("seed.pdf", SMALL[0].read_bytes())})
            assert r.status_code == 202, r.text
            seed_job = r.json()["id"]
            while c.get(f"/v1/jobs/{seed_job}").json()["status"] in ("queued", "running"):
                time.sleep(0.2)

        pdfs = [p.read_bytes() for p in SMALL]
        records: list[tuple[str, int, float]] = []
        accepted: list[str] = [seed_job]
        unexpected: list[str] = []
        lock = threading.Lock()
        count = [0]
        stop_at = time.monotonic() + SECONDS

        def client(n: int) -> None:
            rng = random.Random(n)
            with httpx.Client(base_url=base, timeout=120) as c:
                i = 0
                while time.monotonic() < stop_at:
                    with lock:
                        if count[0] >= MAX_REQUESTS:
                            return
                        count[0] += 1
                    kind = ("upload", "search", "search", "ask", "deliberate_404")[(n + i) % 5] if i % 7 else "upload"
                    i += 1
                    t0 = time.perf_counter()
                    if kind == "upload":
                        data = pdfs[rng.randrange(len(pdfs))] + f"\n%load {n}-{i}\n".encode()
                        r = c.post("/v1/collections/load/documents", files={"files": (f"c{n}-{i}.pdf", data)})
                        ok = r.status_code == 202
                        if ok:
                            with lock:
                                accepted.append(r.json()["id"])
                    elif kind in ("search", "ask"):
                        r = c.post(f"/v1/collections/load/{kind}",
                                   json={"question": rng.choice(QUESTIONS), "k": 2})
                        ok = r.status_code == 200
                    else:
                        r = c.post("/v1/collections/nope/search", json={"question": "x"})
                        ok = r.status_code == 404 and r.json()["error"]["code"] == "collection_not_found"
                    dt = time.perf_counter() - t0
                    with lock:
                        records.append((kind, r.status_code, dt))
                        if not ok:
                            unexpected.append(f"{kind} -> {r.status_code}: {r.text[:200]}")

        threads = [threading.Thread(target=client, args=(n,), daemon=True) for n in range(CLIENTS)]
        t_start = time.monotonic()
        for t in threads:
            t.start()
        for t in threads:
            t.join(SECONDS + 300)
        wall = time.monotonic() - t_start
        assert not any(t.is_alive() for t in threads)

        # every accepted upload ends indexed or failed with a message; point count == accepted pages
        with httpx.Client(base_url=base, timeout=120) as c:
            pages_expected = 0
            statuses: dict[str, int] = {}
            drain_deadline = time.monotonic() + 600
            for job_id in accepted:
                while True:
                    job = c.get(f"/v1/jobs/{job_id}").json()
                    if job["status"] not in ("queued", "running"):
                        break
                    assert time.monotonic() < drain_deadline, f"job {job_id} not finished: {job}"
                    time.sleep(0.3)
                assert job["status"] == "done", job
                for doc in job["documents"]:
                    statuses[doc["status"]] = statuses.get(doc["status"], 0) + 1
                    assert doc["status"] in ("indexed", "failed"), doc
                    if doc["status"] == "failed":
                        assert doc["errors"] and doc["name"] in doc["errors"][0]["error"], doc
                    else:
                        pages_expected += doc["page_count"]
            info = c.get("/v1/collections/load").json()
        drained = time.monotonic() - t_start - wall

        by_kind: dict[str, list[float]] = {}
        for kind, _, dt in records:
            by_kind.setdefault(kind, []).append(dt)
        lines = [f"load: {CLIENTS} clients, {SECONDS:.0f} s (ran {wall:.1f} s), {len(records)} requests, "
                 f"{len(unexpected)} errors, {sum(1 for k, _, _ in records if k == 'deliberate_404')} deliberate 404"]
        all_dt = [dt for _, _, dt in records]
        lines.append(f"  all      n={len(all_dt):4d} p50={_pct(all_dt, .5) * 1000:7.0f} ms p95={_pct(all_dt, .95) * 1000:7.0f} ms")
        for kind, dts in sorted(by_kind.items()):
            lines.append(f"  {kind:8s} n={len(dts):4d} p50={_pct(dts, .5) * 1000:7.0f} ms "
                         f"p95={_pct(dts, .95) * 1000:7.0f} ms mean={statistics.mean(dts) * 1000:7.0f} ms")
        lines.append(f"  accepted uploads {len(accepted)} (jobs), documents {statuses}, pages expected "
                     f"{pages_expected}, points in the collection {info['pages']}; queue drained {drained:.1f} s "
                     "after the load stopped")
        report = "\n".join(lines)
        print(report)
        out = os.environ.get("PAGELENS_LOAD_REPORT")
        if out:
            Path(out).write_text(json.dumps({"report": report, "records": len(records),
                                             "errors": unexpected}, indent=1))
        assert not unexpected, unexpected[:10]
        assert info["pages"] == pages_expected, report
        assert server.poll() is None, "the server died under load"
    finally:
        if server.poll() is None:
            os.killpg(server.pid, signal.SIGTERM)
            try:
                server.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(server.pid, signal.SIGKILL)
                server.wait(10)
