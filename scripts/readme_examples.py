"""Rebuild the README's example output blocks from a real run with tiny random models.

    python scripts/readme_examples.py --tiny-models DIR            # rewrite the blocks in README.md
    python scripts/readme_examples.py --tiny-models DIR --check    # exit 1 when a block's shape drifted

``DIR`` holds ``retriever/`` and ``answerer/`` as built by ``python tests/make_tiny_models.py DIR``
(``PAGELENS_TINY_MODELS`` is read when ``--tiny-models`` is not given).

What it does: writes a small corpus (generated PDFs: two invoices, a six-page report, a truncated copy
of the report and a password-protected invoice) to a fresh work folder, then runs every command shown
in the README's example blocks there, as a user would in a shell: the ``pagelens`` console script of
this Python in a subprocess (``cwd`` = the work folder), and for the REST API a real ``pagelens serve``
on loopback with HTTP calls equivalent to the ``curl`` lines shown (same method, path, headers, body;
``curl -s -w "$W"`` prints the body and ``HTTP <status>``). The environment of every command is
``ENV`` below plus ``PAGELENS_DATA_DIR=pagelens-data``; the models are the tiny random ones, so
scores and answer text are noise: the shape (columns, keys, exit codes, messages) is what the real
models give.

Each README block sits between ``<!-- example:NAME -->`` and ``<!-- /example -->``; this script
replaces what is between them. Display substitutions, all of them: the work folder's absolute path is
shown relative to it (``pagelens-data/...``), the tiny models' absolute folder as ``tiny-models``
(the product records the resolved model folder), the server's free port as 8000, and a streamed
answer shows its first two ``token`` events, a ``…`` line and its ``done`` event.

``shape(block, steps)`` reduces a block to what must not drift (commands, table columns, JSON keys,
messages with numbers and ids masked, exit codes); ``tests/test_readme_examples.py`` compares the
shape of a fresh run with the committed README.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
PORT_SHOWN = 8000
ADMIN = "s3cret-admin"
READER = "s3cret-reader"

# The environment of every command (besides PAGELENS_DATA_DIR). Small pages and short answers keep the
# run under a few minutes on 2 CPU cores; float32 so the figures do not depend on the CPU's bf16 support.
ENV = {
    "PAGELENS_RETRIEVER_MODEL": "tiny-models/retriever",
    "PAGELENS_ANSWER_MODEL": "tiny-models/answerer",
    "PAGELENS_DEVICE": "cpu",
    "PAGELENS_DTYPE": "float32",
    "PAGELENS_PAGE_LONGEST_EDGE": "512",
    "PAGELENS_ANSWER_LONGEST_EDGE": "512",
    "PAGELENS_MAX_NEW_TOKENS": "12",
    "PAGELENS_INGEST_WORKERS": "0",
}
# Absolute paths -> what the README shows (set by ``generate``): the tiny models' real folder -> tiny-models
DISPLAY: dict[str, str] = {}


# --- the corpus --------------------------------------------------------------------------------------

INVOICE_LINES = [
    "{company}", "Invoice {number}    Date: {date}", "", "Bill to: Northwind Traders, 12 Harbour Road, Leith",
    "", "Description                          Qty    Amount", "{item}", "Support plan (12 months)         1    240.00",
    "", "Subtotal                                  {subtotal}", "VAT 20%                                   {vat}",
    "Total amount due                          {total} EUR", "", "Payment within 30 days to IBAN DE89 3704 0044 0532 0130 00",
]
REPORT_TOPICS = [
    ("Annual report 2025", "Revenue grew 12% to 4.5 million euros; the warehouse in Leith opened in March."),
    ("Operations", "Deliveries per day rose from 310 to 420. The new routing cut fuel use by 9%."),
    ("Staff", "Headcount reached 58. Training hours per employee: 31. Staff turnover fell to 6%."),
    ("Finance", "Operating margin 14%. Cash at year end: 1.2 million euros. No debt."),
    ("Risks", "Fuel prices, a single supplier for cold storage, and the 2026 lease renewal."),
    ("Outlook", "We plan a second warehouse in 2026 and expect revenue of 5.1 million euros."),
]


def _pdf(pages: list[list[str]], path: Path, password: str | None = None) -> None:
    """A PDF with one page per list of lines (A4, Helvetica 11 pt), byte-for-byte reproducible."""
    import pymupdf

    doc = pymupdf.open()
    for lines in pages:
        page = doc.new_page(width=595, height=842)
        for i, line in enumerate(lines):
            page.insert_text((56, 80 + 18 * i), line, fontsize=11, fontname="helv")
    doc.set_metadata({"producer": "pagelens readme_examples", "creationDate": "D:20261201000000Z",
                      "modDate": "D:20261201000000Z"})
    path.parent.mkdir(parents=True, exist_ok=True)
    options: dict[str, Any] = {"garbage": 3, "deflate": True, "no_new_id": True}
    if password:
        options.update(encryption=pymupdf.PDF_ENCRYPT_AES_256, user_pw=password, owner_pw=password + "-owner")
    doc.save(str(path), **options)
    doc.close()


def make_corpus(root: Path) -> None:
    """invoices/ (2 PDFs, 1 and 2 pages), reports/annual_report_2025.pdf (6 pages), broken/ (a truncated
    PDF and one encrypted with the password 'foo')."""
    def invoice(company: str, number: str, item: str, subtotal: float) -> list[str]:
        vat = round(subtotal * 0.2, 2)
        values = {"company": company, "number": number, "date": "2026-03-11", "item": item,
                  "subtotal": f"{subtotal:,.2f}", "vat": f"{vat:,.2f}", "total": f"{subtotal + vat:,.2f}"}
        return [line.format(**values) for line in INVOICE_LINES]

    _pdf([invoice("ACME Logistics GmbH", "2026-0311", "Freight Hamburg-Leith           1    830.00", 1070.0)],
         root / "invoices" / "inv_acme_2026-03.pdf")
    _pdf([invoice("Globex Storage Ltd", "G-4471", "Cold storage, March              1    512.50", 752.5),
          ["Terms and conditions", "", "Late payment: 1% per month. Disputes within 14 days of the invoice date."]],
         root / "invoices" / "inv_globex_2026-03.pdf")
    report = [[title, "", *[body[i:i + 80] for i in range(0, len(body), 80)]] for title, body in REPORT_TOPICS]
    _pdf(report, root / "reports" / "annual_report_2025.pdf")
    data = (root / "reports" / "annual_report_2025.pdf").read_bytes()
    (root / "broken").mkdir(exist_ok=True)
    (root / "broken" / "truncated.pdf").write_bytes(data[: int(len(data) * 0.6)])
    _pdf([invoice("Initech AG", "IN-0099", "Consulting                       1    400.00", 640.0)],
         root / "broken" / "encrypted.pdf", password="foo")


# --- steps -------------------------------------------------------------------------------------------


@dataclass
class Step:
    """One command of a block. ``shown``: the command line as printed after ``$ ``; ``kind`` says how
    its output is compared (``table``, ``json``, ``text``, ``answer``, ``sse``, ``none``); ``exit``:
    the expected exit code (a different one fails the run)."""

    shown: str
    kind: str
    exit: int = 0
    argv: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    http: dict[str, Any] | None = None


def cli(shown: str, kind: str, exit: int = 0, env: dict[str, str] | None = None) -> Step:
    import shlex

    words = shlex.split(shown)
    while words and "=" in words[0] and not words[0].startswith("-"):  # VAR=value prefixes
        key, _, value = words.pop(0).partition("=")
        env = {**(env or {}), key: value}
    assert words[0] == "pagelens", shown
    return Step(shown, kind, exit, argv=words[1:], env=env or {})


CLI_STEPS: dict[str, list[Step]] = {
    "cli-index": [
        cli("pagelens index invoices/ reports/annual_report_2025.pdf broken/truncated.pdf broken/encrypted.pdf "
            "--collection invoices --metadata team=finance", "text", exit=1),
    ],
    "cli-search": [
        cli('pagelens search "total amount due" --collection invoices -k 3', "table"),
        cli('pagelens search "total amount due" --collection invoices -k 3 --mode visual', "table"),
        cli('pagelens search "total amount due" --collection invoices -k 1 --json', "json"),
        cli('pagelens ask "What is the total amount due?" --collection invoices -k 2', "answer"),
        cli('pagelens ask "What is the total amount due?" --collection invoices -k 1 --json', "json"),
    ],
    "cli-regions": [
        cli('pagelens search "amounts due" --collection invoices -k 1 --mode text --json', "json"),
    ],
    "cli-docs": [
        cli("pagelens collections", "table"),
        cli("pagelens docs --collection invoices", "table"),
        cli("pagelens delete --collection invoices --doc {report_doc_id}", "text"),
    ],
    "cli-errors": [
        cli('pagelens search "x" --collection nope', "text", exit=2),
        cli('PAGELENS_RETRIEVER_MODEL=vidore/colSmol-500M pagelens search "x" --collection invoices', "text", exit=2),
    ],
}


def api(shown: str, kind: str, method: str, path: str, key: str | None = ADMIN, **http: Any) -> Step:
    return Step(shown, kind, http={"method": method, "path": path, "key": key, **http})


H_ADMIN = '-H "$H"'
JSON_CT = "-H 'content-type: application/json'"
API_STEPS: list[Step] = [
    Step(f'PAGELENS_API_KEYS="{ADMIN}:admin;{READER}:r:invoices" pagelens serve --port {PORT_SHOWN} 2>serve.log &',
         "none"),
    Step(f"H='Authorization: Bearer {ADMIN}'; W='\\nHTTP %{{http_code}}\\n'", "none"),
    api(f"curl -s -w \"$W\" -X POST localhost:{PORT_SHOWN}/v1/collections {H_ADMIN} {JSON_CT} -d '{{\"name\":\"invoices\"}}'",
        "json", "POST", "/v1/collections", json={"name": "invoices"}),
    api(f"curl -s -w \"$W\" -X POST localhost:{PORT_SHOWN}/v1/collections/invoices/documents {H_ADMIN} "
        "-F files=@invoices/inv_acme_2026-03.pdf -F files=@broken/truncated.pdf -F 'metadata={\"team\":\"finance\"}'",
        "json", "POST", "/v1/collections/invoices/documents",
        files=["invoices/inv_acme_2026-03.pdf", "broken/truncated.pdf"], data={"metadata": '{"team":"finance"}'}),
    api(f"curl -s -w \"$W\" localhost:{PORT_SHOWN}/v1/jobs/{{job_id}} {H_ADMIN}", "json", "GET", "/v1/jobs/{job_id}",
        wait_job=True),
    api(f"curl -s -w \"$W\" -X POST localhost:{PORT_SHOWN}/v1/collections/invoices/search {H_ADMIN} {JSON_CT} "
        "-d '{\"question\":\"total amount due\",\"k\":2}'",
        "json", "POST", "/v1/collections/invoices/search", json={"question": "total amount due", "k": 2}),
    api(f"curl -s -N -X POST localhost:{PORT_SHOWN}/v1/collections/invoices/ask -H 'Authorization: Bearer {READER}' "
        f"{JSON_CT} -d '{{\"question\":\"What is the total?\",\"k\":1,\"stream\":true}}'",
        "sse", "POST", "/v1/collections/invoices/ask", key=READER,
        json={"question": "What is the total?", "k": 1, "stream": True}),
    api(f"curl -s -w \"$W\" -X POST localhost:{PORT_SHOWN}/v1/collections/invoices/documents "
        f"-H 'Authorization: Bearer {READER}' -F files=@invoices/inv_globex_2026-03.pdf",
        "json", "POST", "/v1/collections/invoices/documents", key=READER,
        files=["invoices/inv_globex_2026-03.pdf"]),
]
STEPS: dict[str, list[Step]] = {**CLI_STEPS, "api": API_STEPS}


# --- running -----------------------------------------------------------------------------------------


@dataclass
class Ran:
    shown: str
    output: str
    exit: int


def _env(work: Path, extra: dict[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PAGELENS_")}
    env.update(ENV)
    env.update(PAGELENS_DATA_DIR="pagelens-data", COLUMNS="160", NO_COLOR="1", TERM="dumb")
    env.update(extra)
    return env


def _display(text: str, work: Path, port: int | None = None) -> str:
    for absolute, shown in DISPLAY.items():
        text = "\n".join(_replace_in_line(ln, absolute, shown) for ln in text.split("\n"))
    text = text.replace(str(work.resolve()) + "/", "").replace(str(work) + "/", "")
    if port is not None:
        text = text.replace(f"127.0.0.1:{port}", f"localhost:{PORT_SHOWN}").replace(f":{port}/", f":{PORT_SHOWN}/")
    return text.rstrip("\n")


def _replace_in_line(line: str, old: str, new: str) -> str:
    """``old`` -> ``new``; in a table row each changed cell keeps its width, so the columns stay aligned."""
    if old not in line:
        return line
    if not line.startswith("│"):
        return line.replace(old, new)
    cells = line.split("│")
    return "│".join(c.replace(old, new).ljust(len(c)) if old in c else c for c in cells)


def _pagelens() -> str:
    script = Path(sys.executable).parent / "pagelens"
    return str(script) if script.exists() else (shutil.which("pagelens") or "pagelens")


def run_cli(work: Path, steps: list[Step], values: dict[str, str]) -> list[Ran]:
    ran = []
    for step in steps:
        argv = [fill(a, values) for a in step.argv]
        proc = subprocess.run([_pagelens(), *argv], cwd=work, env=_env(work, step.env), capture_output=True,
                              text=True, timeout=600)
        output = proc.stderr + proc.stdout  # stderr (progress, errors) comes first in a terminal too
        if proc.returncode != step.exit:
            raise RuntimeError(f"`{step.shown}` exited {proc.returncode}, expected {step.exit}:\n{output}")
        ran.append(Ran(fill(step.shown, values), _display(output, work), proc.returncode))
    return ran


def fill(text: str, values: dict[str, str]) -> str:
    """``{name}`` placeholders replaced by values found while running (job and document ids)."""
    for key, value in values.items():
        text = text.replace("{" + key + "}", value)
    return text


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def run_api(work: Path, steps: list[Step]) -> list[Ran]:
    import httpx

    port = _free_port()
    env = _env(work, {"PAGELENS_API_KEYS": f"{ADMIN}:admin;{READER}:r:invoices"})
    log = (work / "serve.log").open("w")
    server = subprocess.Popen([_pagelens(), "serve", "--port", str(port)], cwd=work, env=env, stdout=log,
                              stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    values: dict[str, str] = {}
    ran: list[Ran] = []
    try:
        with httpx.Client(base_url=base, timeout=300) as client:
            deadline = time.monotonic() + 300
            while True:
                try:
                    if client.get("/healthz").status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                if server.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("pagelens serve did not start:\n" + (work / "serve.log").read_text())
                time.sleep(0.5)
            for step in steps:
                if step.http is None:
                    ran.append(Ran(step.shown, "", 0))
                    continue
                ran.append(_call(client, step, values, work, port))
    finally:
        server.terminate()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
        log.close()
    return ran


def _call(client: Any, step: Step, values: dict[str, str], work: Path, port: int) -> Ran:
    spec = dict(step.http or {})
    headers = {"Authorization": f"Bearer {spec.pop('key')}"} if spec.get("key") else {}
    spec.pop("key", None)
    method, path = spec.pop("method"), fill(spec.pop("path"), values)
    if spec.pop("wait_job", False):  # poll until the job has finished, then show that answer
        deadline = time.monotonic() + 300
        while client.get(path, headers=headers).json().get("status") in ("queued", "running"):
            if time.monotonic() > deadline:
                raise RuntimeError(f"job {path} did not finish")
            time.sleep(0.5)
    files = [("files", (Path(f).name, (work / f).read_bytes(), "application/pdf")) for f in spec.pop("files", [])]
    if step.kind == "sse":
        with client.stream(method, path, headers=headers, **spec) as response:
            body = response.read().decode()
        return Ran(step.shown, _display(abridge_sse(body), work, port), 0)
    response = client.request(method, path, headers=headers, files=files or None, **spec)
    if path.endswith("/documents") and response.status_code == 202:
        values["job_id"] = response.json()["id"]
    return Ran(fill(step.shown, values), _display(f"{response.text}\nHTTP {response.status_code}", work, port), 0)


def abridge_sse(body: str) -> str:
    """The first two ``token`` events, '…', and every other event (``done``, ``error``) in full."""
    events = [e for e in body.strip().split("\n\n") if e.strip()]
    tokens = [e for e in events if e.startswith("event: token")]
    others = [e for e in events if not e.startswith("event: token")]
    shown = tokens[:2] + (["…"] if len(tokens) > 2 else []) + others
    return "\n".join(shown)


def generate(work: Path, tiny_models: Path) -> dict[str, str]:
    """Run every example in ``work`` (created, must be empty) and return {block name: block text}."""
    work.mkdir(parents=True, exist_ok=True)
    make_corpus(work)
    (work / "tiny-models").symlink_to(Path(tiny_models).resolve(), target_is_directory=True)
    DISPLAY.clear()
    DISPLAY[str(Path(tiny_models).resolve())] = "tiny-models"
    blocks: dict[str, str] = {}
    values: dict[str, str] = {}
    for name, steps in CLI_STEPS.items():
        if name == "cli-docs":
            values["report_doc_id"] = _doc_id(work, "annual_report_2025.pdf")
        blocks[name] = render(run_cli(work, steps, values))
    api_work = work / "api"  # a fresh data dir for the server, same corpus
    api_work.mkdir()
    for sub in ("invoices", "broken", "reports", "tiny-models"):
        (api_work / sub).symlink_to(work / sub, target_is_directory=True)
    blocks["api"] = render(run_api(api_work, API_STEPS))
    return blocks


def _doc_id(work: Path, name: str) -> str:
    proc = subprocess.run([_pagelens(), "docs", "--collection", "invoices", "--json"], cwd=work,
                          env=_env(work, {}), capture_output=True, text=True, timeout=300, check=True)
    return next(d["doc_id"] for d in json.loads(proc.stdout) if d["doc_name"] == name)


def render(ran: list[Ran]) -> str:
    lines = []
    for r in ran:
        lines.append(f"$ {r.shown}")
        if r.output:
            lines.append(r.output)
        if r.exit:
            lines += ["$ echo $?", str(r.exit)]
    return "\n".join(lines)


# --- README blocks and their shape -------------------------------------------------------------------

BLOCK_RE = re.compile(r"(<!-- example:(?P<name>[a-z0-9-]+) -->\n```console\n)(?P<body>.*?)(\n```\n<!-- /example -->)",
                      re.S)


def read_blocks(text: str) -> dict[str, str]:
    return {m.group("name"): m.group("body") for m in BLOCK_RE.finditer(text)}


def replace_blocks(text: str, blocks: dict[str, str]) -> str:
    missing = set(blocks) - set(read_blocks(text))
    if missing:
        raise KeyError(f"README has no block for {sorted(missing)}: add <!-- example:NAME --> markers")
    return BLOCK_RE.sub(lambda m: m.group(1) + blocks.get(m.group("name"), m.group("body")) + m.group(4), text)


def split_commands(block: str) -> list[tuple[str, str]]:
    """[(command, output)] of a console block: each '$ ' line starts a command."""
    pairs: list[tuple[str, list[str]]] = []
    for line in block.splitlines():
        if line.startswith("$ "):
            pairs.append((line[2:], []))
        elif pairs:
            pairs[-1][1].append(line)
    return [(cmd, "\n".join(out)) for cmd, out in pairs]


def _mask(text: str) -> str:
    """Numbers, hex ids, dates and durations masked: what may change between runs."""
    text = re.sub(r"\d{4}-\d{2}-\d{2}T[\d:.]+\+\d{2}:\d{2}", "<time>", text)
    text = re.sub(r"\b[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\b", "<uuid>", text)
    text = re.sub(r"\d{8}T\d{6}Z", "<time>", text)
    text = re.sub(r"\{[a-z_]+\}", "<id>", text)  # a step's placeholder stands for an id found while running
    text = re.sub(r"\b[0-9a-f]{16,64}\b", "<id>", text)
    text = re.sub(r"(?<![A-Za-z_\d])-?\d+(\.\d+)?(e-?\d+)?", "N", text)  # not the digits of names (v1, BM25)
    return re.sub(r"\s+", " ", text).strip()


def _keys(value: Any, prefix: str = "") -> set[str]:
    if isinstance(value, dict):
        out = set()
        for key, sub in value.items():
            path = f"{prefix}.{key}" if prefix else str(key)
            out |= {path} | _keys(sub, path)
        return out
    if isinstance(value, list):
        return set().union(*(_keys(v, prefix + "[]") for v in value)) if value else set()
    return set()


def _json_shape(output: str) -> list[str]:
    body, _, status = output.rpartition("\nHTTP ")
    if not body:  # no status line (CLI --json)
        body, status = output, ""
    data = json.loads(body)
    shape = sorted(_keys(data))
    kinds = sorted({str(v) for k, v in _walk(data) if k == "score_kind"})
    return [*(["HTTP " + status] if status else []), "keys: " + ", ".join(shape),
            *(["score_kind: " + ",".join(kinds)] if kinds else [])]


def _walk(value: Any) -> list[tuple[str, Any]]:
    out: list[tuple[str, Any]] = []
    if isinstance(value, dict):
        for k, v in value.items():
            out.append((k, v))
            out += _walk(v)
    elif isinstance(value, list):
        for v in value:
            out += _walk(v)
    return out


def _table_shape(output: str) -> list[str]:
    """Columns of the header row, the number of rows, and the other lines (caption, messages) masked."""
    lines = output.splitlines()
    header = next((ln for ln in lines if ln.startswith("┃")), "")
    columns = [c.strip() for c in header.strip().strip("┃").split("┃")] if header else []
    rows = sum(1 for ln in lines if ln.startswith("│"))
    other = " ".join(ln for ln in lines if ln.strip() and not ln.startswith(("┏", "┃", "┡", "│", "└")))
    return ["columns: " + " | ".join(columns), f"rows: {rows}", *(["text: " + _mask(other)] if other else [])]


def shape(block: str, steps: list[Step]) -> list[str]:
    """What must not drift in a block: each command (masked), and per output kind: table columns and row
    count, JSON keys (and HTTP status), SSE event names and the keys of the done event, text with numbers
    and ids masked (for ``answer``, the lines from 'Sources:' on: the answer text of random weights is
    noise), and exit codes (``echo $?`` lines)."""
    pairs = split_commands(block)
    kinds = iter(steps)
    out: list[str] = []
    for cmd, output in pairs:
        out.append("$ " + _mask(cmd))
        if cmd == "echo $?":
            out.append("exit " + output.strip())
            continue
        step = next(kinds, None)
        kind = step.kind if step else "text"
        if kind == "table":
            out += _table_shape(output)
        elif kind == "json":
            out += _json_shape(output)
        elif kind == "sse":
            events = [ln.split(": ", 1)[1] for ln in output.splitlines() if ln.startswith("event: ")]
            done = next((ln for ln in output.splitlines() if ln.startswith("data: {") and '"citations"' in ln), "")
            out += ["events: " + ",".join(dict.fromkeys(events))]
            if done:
                out += _json_shape(done[len("data: "):])
        elif kind == "answer":
            lines = output.splitlines()
            start = next((i for i, ln in enumerate(lines) if ln.strip() == "Sources:"), len(lines))
            out += ["answer"] + [_mask(ln) for ln in lines[start:] if ln.strip()]
        elif kind == "text":
            out += [_mask(ln) for ln in output.splitlines() if ln.strip()]
    return out


def check(readme_text: str, blocks: dict[str, str]) -> list[str]:
    """Differences between the README's blocks and fresh ``blocks``, one line each (empty: none)."""
    import difflib

    documented = read_blocks(readme_text)
    problems = []
    for name, fresh in blocks.items():
        if name not in documented:
            problems.append(f"README has no block {name!r}")
            continue
        want, got = shape(documented[name], STEPS[name]), shape(fresh, STEPS[name])
        if want != got:
            diff = "\n".join(difflib.unified_diff(want, got, "README", "fresh run", lineterm="", n=1))
            problems.append(f"block {name!r} drifted:\n{diff}")
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tiny-models", type=Path, default=os.environ.get("PAGELENS_TINY_MODELS"),
                        help="folder with retriever/ and answerer/ (tests/make_tiny_models.py)")
    parser.add_argument("--readme", type=Path, default=README)
    parser.add_argument("--check", action="store_true", help="compare shapes only; exit 1 on drift")
    parser.add_argument("--work", type=Path, help="work folder (default: a temporary one, removed after)")
    args = parser.parse_args(argv)
    if not args.tiny_models or not (Path(args.tiny_models) / "retriever").is_dir():
        parser.error("give --tiny-models DIR (built by: python tests/make_tiny_models.py DIR)")
    report: Callable[[str], None] = lambda msg: print(msg, file=sys.stderr)  # noqa: E731
    with tempfile.TemporaryDirectory(prefix="pagelens-readme-") as tmp:
        work = args.work or Path(tmp) / "work"
        blocks = generate(work, args.tiny_models)
    text = args.readme.read_text(encoding="utf-8")
    if args.check:
        problems = check(text, blocks)
        for problem in problems:
            report(problem)
        return 1 if problems else 0
    args.readme.write_text(replace_blocks(text, blocks), encoding="utf-8")
    report(f"rewrote {len(blocks)} example blocks in {args.readme}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
