"""The web UI with API keys (ui/auth.py, ui/cache.py): every route under /ui needs the same keys and scopes
as the REST API, the browser signs in once and keeps an HTTP-only session cookie, the event handlers take
their principal from the request, and Gradio's file cache is private, bounded and cleaned.

In-process (TestClient); tests/reliability/test_security.py repeats the main matrix against a real
``pagelens serve`` and tests/test_ui_browser.py the sign-in in chromium.
"""

from __future__ import annotations

import html
import json
import os
import re
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import gradio as gr
import pytest
from api_helpers import assert_error, ui_call, ui_fn_index, ui_page_session
from conftest import REAL_PDFS
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient
from pagelens.ui.auth import COOKIE, UISessions
from starlette.routing import Mount

from pagelens.server import create_app

AWS = REAL_PDFS / "inv_aws_invoice_en.pdf"
ADMIN = "adm-UiK3yadmin"
RW = "rw-UiK3ywriter"
RO = "ro-UiK3yreader"
KEYS = f"{ADMIN}:admin;{RW}:rw:ledger1;{RO}:r:ledger1"
C1, C2 = "ledger1", "ledger2"
PDF = b"%PDF-1.4\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF\n"
NEW_SESSION = {"jobs": [], "rejected": []}


def _h(key: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"} if key else {}


def _gradio_app(app: Any) -> Any:
    return next(r.app for r in app.routes if isinstance(r, Mount) and r.path == "/ui")


@pytest.fixture(scope="module")
def keyed(tmp_path_factory, tiny_models) -> Iterator[tuple[TestClient, Any]]:
    """The real app (API + UI) with three keys and an empty collection 'ledger1' (and 'ledger2')."""
    from pagelens.core.settings import Settings

    settings = Settings(_env_file=None, data_dir=tmp_path_factory.mktemp("uiauth"),  # type: ignore[call-arg]
                        retriever_model=str(tiny_models["retriever"]), answer_model=str(tiny_models["answerer"]),
                        page_longest_edge=256, answer_longest_edge=128, device="cpu", api_keys=KEYS,
                        max_new_tokens=4, max_files_per_request=3, max_upload_bytes=200_000)
    app = create_app(settings)
    with TestClient(app) as client:
        for name in (C1, C2):
            assert client.post("/v1/collections", json={"name": name}, headers=_h(ADMIN)).status_code == 201
        yield client, app


def _upload(client: TestClient, key: str | None, files: list[tuple[str, bytes]] | None = None, **kw: Any) -> Any:
    files = files or [("a.pdf", PDF)]
    return client.post("/ui/gradio_api/upload", files=[("files", f) for f in files], headers=_h(key), **kw)


def _concrete(path: str) -> str:
    return re.sub(r"\{[^}]+\}", "x", path)


def _api_routes(routes: list[Any], prefix: str = "") -> list[APIRoute]:
    """Every endpoint route, through included routers (FastAPI keeps those as ``_IncludedRouter``); fails on
    any other kind of route (a mount or a plain Starlette route would not get the dependencies)."""
    out: list[APIRoute] = []
    for r in routes:
        if isinstance(r, APIRoute):
            out.append(r)
        elif getattr(r, "original_router", None) is not None:
            assert r.include_context.prefix == prefix == "", r  # gradio includes its router without one
            out.extend(_api_routes(r.original_router.routes))
        else:
            raise AssertionError(f"a route outside FastAPI's dependencies: {r!r}")
    return out


def test_every_route_of_the_mounted_ui_needs_a_key(keyed) -> None:
    """Walks every route of the mounted Gradio app (including those Gradio's own login_check leaves open:
    cancel, heartbeat, stream, startup-events, assets, theme.css...): no key or a wrong key -> 401."""
    client, app = keyed
    routes = [(m, "/ui" + _concrete(r.path)) for r in _api_routes(_gradio_app(app).routes)
              for m in sorted(r.methods) if m != "HEAD"]
    assert len(routes) > 60, routes
    seen = set()
    for method, path in routes:
        for key in (None, "wrong-key", f"{ADMIN}x"):
            r = client.request(method, path, headers=_h(key), json={})
            assert r.status_code == 401, (method, path, key, r.status_code, r.text[:200])
            assert r.headers["www-authenticate"] == 'Bearer realm="pagelens"'
            assert_error(r, 401, "unauthorized")
        seen.add(path)
    for must in ("/ui/gradio_api/upload", "/ui/gradio_api/file=x", "/ui/gradio_api/queue/join", "/ui/config",
                 "/ui/gradio_api/info", "/ui/", "/ui/gradio_api/cancel", "/ui/gradio_api/heartbeat/x",
                 "/ui/gradio_api/startup-events", "/ui/assets/x", "/ui/theme.css", "/ui/gradio_api/queue/data"):
        assert must in seen, must
    # a cookie that names no session is no better
    r = client.get("/ui/config", cookies={COOKIE: "made-up"})
    assert r.status_code == 401


def test_reviewer_repro_upload_and_file_without_a_key(keyed) -> None:
    """The report: an anonymous multipart upload wrote a file and file= served it back. Now 401 and nothing
    is written; a file uploaded with a key is not served without one."""
    client, app = keyed
    cache = Path(_gradio_app(app).uploaded_file_dir)
    before = sorted(cache.rglob("*"))
    r = _upload(client, None, [("evil.html", b"<script>alert(1)</script>")])
    assert r.status_code == 401 and "evil" not in r.text and str(cache) not in r.text
    assert sorted(cache.rglob("*")) == before
    r = _upload(client, RW)
    assert r.status_code == 200, r.text
    (path,) = r.json()
    assert Path(path).is_relative_to(cache) and Path(path).read_bytes() == PDF
    for key in (None, "wrong-key"):
        assert client.get(f"/ui/gradio_api/file={path}", headers=_h(key)).status_code == 401
    r = client.get(f"/ui/gradio_api/file={path}", headers=_h(RO))
    assert r.status_code == 200 and r.content == PDF


def test_route_matrix_by_key(keyed) -> None:
    """The page, config, info, upload, file= and queue/join for each kind of key: readers may look but not
    upload (403); writers and admins may upload."""
    client, _ = keyed
    (stored,) = _upload(client, ADMIN).json()
    for key, upload_status in ((RO, 403), (RW, 200), (ADMIN, 200)):
        assert client.get("/ui/", headers=_h(key)).status_code == 200
        cfg = client.get("/ui/config", headers=_h(key))
        assert cfg.status_code == 200 and cfg.json()["username"].startswith("key#")
        assert client.get("/ui/gradio_api/info", headers=_h(key)).status_code == 200
        assert client.get(f"/ui/gradio_api/file={stored}", headers=_h(key)).status_code == 200
        r = _upload(client, key)
        assert r.status_code == upload_status, (key, r.text)
        if upload_status == 403:
            assert_error(r, 403, "forbidden")
        r = client.post("/ui/gradio_api/process_recording", files=[("video", ("v.mp4", b"x"))], headers=_h(key))
        assert_error(r, 403, "forbidden")  # unused by the UI, writes outside its cache: nobody
        idx = ui_fn_index(cfg.json(), "pl-refresh")
        status, out = ui_call(client, idx, [None, NEW_SESSION], headers=_h(key))
        assert status == 200, out
        choices = {c[1] if isinstance(c, list) else c for c in out[0]["choices"]}
        assert choices == ({C1} if key != ADMIN else {C1, C2}), choices
    for key in (None, "nope"):
        status, body = ui_call(client, 0, [], headers=_h(key))
        assert status == 401, body


def test_browser_gets_the_sign_in_page(keyed) -> None:
    client, _ = keyed
    html_accept = {"Accept": "text/html,application/xhtml+xml,*/*;q=0.8"}
    for path in ("/ui/", "/ui/config"):
        r = client.get(path, headers=html_accept)
        assert r.status_code == 401 and r.headers["content-type"].startswith("text/html")
        assert 'action="/ui/sign-in"' in r.text and 'name="key"' in r.text and "API key" in r.text
        assert "Authorization: Bearer" in r.text  # it says how scripts sign in
        for secret in (C1, C2, ADMIN, RW, RO, "gradio_config"):
            assert secret not in r.text
    r = client.get("/ui/sign-in")
    assert r.status_code == 200 and 'id="pl-key"' in r.text


def test_sign_in_sets_an_http_only_session_cookie(keyed) -> None:
    client, app = keyed
    client.cookies.clear()
    r = client.post("/ui/sign-in", data={"key": "not-a-key"}, follow_redirects=False)
    assert r.status_code == 401 and "not valid" in r.text and "set-cookie" not in r.headers
    r = client.post("/ui/sign-in", data={"key": RO}, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/ui/"
    cookie = r.headers["set-cookie"]
    sid = client.cookies.get(COOKIE)
    assert sid and RO not in cookie and len(sid) >= 40
    attrs = {a.strip().split("=")[0].lower(): a.strip() for a in cookie.split(";")}
    assert "httponly" in attrs and attrs["samesite"].lower() == "samesite=strict" and attrs["path"] == "Path=/ui"
    assert "secure" not in attrs  # plain http here; see the https case below
    # the cookie alone opens the UI, as the read-only principal
    cfg = client.get("/ui/config")
    assert cfg.status_code == 200 and cfg.json()["username"] == "key#3"
    assert client.get("/ui/").status_code == 200
    assert _upload(client, None).status_code == 403
    idx = ui_fn_index(cfg.json(), "pl-coll-delete-btn")  # Delete: the confirmation is refused already
    session = ui_page_session(client, cfg.json())
    # the target is the row selected on the server (a gr.State), never a name the browser sends, nor the
    # picker's collection: with no row selected nothing is targeted (rights: tests/test_ui_handlers.py)
    for sent in ([C1], [None]):
        status, out = ui_call(client, idx, sent, session=session)
        assert status == 200 and "click the row of the collection to delete first" in out[2]
    idx = ui_fn_index(cfg.json(), "pl-coll-confirm-btn")  # confirming with nothing confirmed deletes nothing
    status, out = ui_call(client, idx, [None, NEW_SESSION, C1], session=session)
    assert status == 200 and "pick a collection first" in out[0]
    assert client.get("/ui/sign-in", follow_redirects=False).status_code == 303  # already signed in
    # the REST API does not take the cookie
    assert client.get("/v1/collections").status_code == 401
    # sign out: the session is gone on the server, the cookie is cleared
    r = client.post("/ui/sign-out", follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/ui/sign-in"
    assert client.get("/ui/config", cookies={COOKIE: sid}).status_code == 401
    client.cookies.clear()


def test_sign_in_cookie_is_secure_over_https_and_refused_cross_site(keyed) -> None:
    client, app = keyed
    with TestClient(app, base_url="https://testserver") as tls:
        r = tls.post("/ui/sign-in", data={"key": RW}, follow_redirects=False)
        assert r.status_code == 303 and "secure" in r.headers["set-cookie"].lower()
    client.cookies.clear()
    r = client.post("/ui/sign-in", data={"key": ADMIN}, headers={"Origin": "https://evil.example"},
                    follow_redirects=False)
    assert r.status_code == 403 and "set-cookie" not in r.headers
    r = client.post("/ui/sign-in", content=b"key=" + b"x" * 20_000,
                    headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert r.status_code == 413


def test_sessions_expire_and_are_bounded() -> None:
    from pagelens.app.access import Principal

    p = Principal("key#1", "admin")
    expired = UISessions(ttl_s=0)
    assert expired.get(expired.create(p)) is None and len(expired) == 0
    small = UISessions(ttl_s=3600, max_sessions=2)
    first, second, third = (small.create(p) for _ in range(3))
    assert len(small) == 2 and small.get(first) is None and small.get(second) == p and small.get(third) == p
    small.drop(third)
    assert small.get(third) is None and small.get(None) is None and small.get("x" * 500) is None


def test_handlers_take_the_principal_from_the_request(keyed) -> None:
    """The UI's own handlers, called as Gradio calls them: a read-only key is refused upload, delete and
    create, whatever the page shows; a writer may upload into its collection only."""
    client, app = keyed
    demo = _gradio_app(app).get_blocks()
    fns = {f.fn.__name__: f.fn for f in demo.fns.values() if f.fn is not None}
    ro, rw = gr.Request(username="key#3"), gr.Request(username="key#2")
    upload_path = _upload(client, RW, [("inv.pdf", AWS.read_bytes())]).json()[0]
    jobs_before = client.get("/v1/jobs", headers=_h(ADMIN)).json()

    _, msg, _, _ = fns["do_upload"](C1, [upload_path], NEW_SESSION, "", ro)
    msg = html.unescape(msg)
    assert "may not modify collection 'ledger1'" in msg
    msg = html.unescape(fns["on_delete"](C1, NEW_SESSION, C1, ro)[0])
    assert "may not modify collection 'ledger1'" in msg
    msg = html.unescape(fns["do_create"]("newcoll", C1, NEW_SESSION, ro)[0])
    assert "no access to collection 'newcoll'" in msg
    msg = html.unescape(fns["create_and_upload"]("newcoll", None, "", NEW_SESSION, ro)[2])  # the first-run panel
    assert "no access to collection 'newcoll'" in msg
    msg = html.unescape(fns["do_delete_document"](C1, "0123456789abcdef", NEW_SESSION, ro)[0])
    assert "may not modify collection 'ledger1'" in msg
    _, msg, _, _ = fns["do_upload"](C2, [upload_path], NEW_SESSION, "", rw)
    msg = html.unescape(msg)
    assert "no access to collection 'ledger2'" in msg
    msg = html.unescape(fns["on_delete"](C1, NEW_SESSION, C1, gr.Request(username=None))[0])
    assert "sign in" in msg
    assert client.get("/v1/jobs", headers=_h(ADMIN)).json() == jobs_before
    assert sorted(c["name"] for c in client.get("/v1/collections", headers=_h(ADMIN)).json()) == [C1, C2]

    _, msg, sess, password_box = fns["do_upload"](C1, [upload_path], NEW_SESSION, "", rw)
    assert "Queued 1 file(s)" in msg and len(sess["jobs"]) == 1 and password_box == ""
    # the row buttons (Cancel, Retry with password) follow the API's rule: write access to the collection
    job_id = sess["jobs"][0]
    for act in ("cancel", "retry"):
        action = json.dumps({"act": act, "job": job_id, "doc": 0})
        msg = html.unescape(fns["row_action"](C1, action, NEW_SESSION, ro)[0])
        assert "may not modify collection 'ledger1'" in msg, msg
    msg = html.unescape(fns["do_retry"](C1, {"job": job_id, "doc": 0, "name": "inv.pdf"}, "pw", NEW_SESSION, ro)[0])
    assert "may not modify collection 'ledger1'" in msg
    assert client.get(f"/v1/jobs/{job_id}", headers=_h(ADMIN)).json()["cancel_requested"] is False
    assert not Path(upload_path).exists()  # Gradio's copy is dropped once the job has its own


def test_upload_limits_match_the_api(keyed) -> None:
    """max_files_per_request (3 here) and max_upload_bytes (200 kB) hold for Gradio's upload endpoint, with
    and without Content-Length; a refused upload leaves no file in the cache."""
    client, app = keyed
    cache = Path(_gradio_app(app).uploaded_file_dir)

    def files_in_cache() -> set[Path]:
        return {p for p in cache.rglob("*") if p.is_file() and "pages" not in p.parts}

    before = files_in_cache()
    r = _upload(client, RW, [(f"{i}.pdf", PDF + bytes([i])) for i in range(4)])
    assert r.status_code == 413 and "3 files" in r.text, r.text
    r = _upload(client, RW, [("big.pdf", PDF + b"0" * 300_000)])
    assert r.status_code == 413 and "200000" in r.text
    boundary = "pagelensB"

    def chunked() -> Iterator[bytes]:  # no Content-Length: counted while it streams
        yield (f"--{boundary}\r\nContent-Disposition: form-data; name=\"files\"; filename=\"s.pdf\"\r\n"
               "Content-Type: application/pdf\r\n\r\n").encode() + PDF
        for _ in range(40):
            yield b"0" * 64 * 1024
        yield f"\r\n--{boundary}--\r\n".encode()

    r = client.post("/ui/gradio_api/upload", content=chunked(), headers={
        **_h(RW), "Content-Type": f"multipart/form-data; boundary={boundary}"})
    assert r.status_code == 413, r.text
    assert files_in_cache() == before
    r = _upload(client, RW, [(f"{i}.pdf", PDF + bytes([i])) for i in range(3)])
    assert r.status_code == 200 and len(r.json()) == 3


def test_ui_cache_is_private_bounded_and_removed_at_shutdown(settings_factory) -> None:
    settings = settings_factory(api_keys=KEYS, ui_cache_max_bytes=1000, ui_cache_max_age_s=120)
    app = create_app(settings)
    gapp = _gradio_app(app)
    cache = Path(gapp.uploaded_file_dir)
    demo = gapp.get_blocks()
    assert demo.delete_cache == (120, 120)
    assert all(Path(b.GRADIO_CACHE) == cache for b in demo.blocks.values())
    with TestClient(app) as client:
        assert stat.S_IMODE(cache.stat().st_mode) == 0o700
        assert cache.is_relative_to(os.environ["GRADIO_TEMP_DIR"])
        assert _upload(client, RW, [("a.pdf", PDF + b"0" * 1500)]).status_code == 200
        r = _upload(client, RW)  # over ui_cache_max_bytes: refused until the cache is cleaned
        assert_error(r, 507, "insufficient_storage")
    assert not cache.exists()


def test_open_mode_is_unchanged(settings_factory) -> None:
    """No keys: the UI opens without sign-in, as before, and there is no sign-in route."""
    app = create_app(settings_factory())
    with TestClient(app) as client:
        r = client.get("/ui/")
        assert r.status_code == 200 and "gradio" in r.text.lower()
        cfg = client.get("/ui/config")
        assert cfg.status_code == 200 and cfg.json().get("username") is None
        assert client.get("/ui/sign-in").status_code == 404
        assert client.post("/v1/collections", json={"name": "open"}).status_code == 201
        status, out = ui_call(client, ui_fn_index(cfg.json(), "pl-refresh"), [None, NEW_SESSION])
        assert status == 200 and out[0]["value"] == "open", out
        r = _upload(client, None)
        assert r.status_code == 200 and Path(r.json()[0]).read_bytes() == PDF


def test_page_copies_are_private_and_unguessable(settings_factory, tmp_path) -> None:
    """Gallery copies of stored pages go to the UI's private cache (0700), named by an HMAC with a per-server
    secret: not a shared temp folder, not derivable from the data dir layout."""
    from pagelens.ui.app import UIContext, page_copy
    from pagelens.ui.cache import private_cache_dir, remove_cache_dir

    src = tmp_path / "pages" / "ab" / "1.png"
    src.parent.mkdir(parents=True)
    src.write_bytes(b"\x89PNG\r\n\x1a\nfake")
    settings = settings_factory()
    caches = [private_cache_dir(), private_cache_dir()]
    try:
        copies = []
        for cache in caches:
            ctx = UIContext(settings=settings, service=None, jobs=None, cache_dir=cache)  # type: ignore[arg-type]
            copy = Path(page_copy(ctx, str(src)) or "")
            assert copy.is_relative_to(cache / "pages") and copy.read_bytes() == src.read_bytes()
            assert page_copy(ctx, str(src)) == str(copy)  # reused
            assert stat.S_IMODE(cache.stat().st_mode) == 0o700
            copies.append(copy.name)
        assert copies[0] != copies[1]
        assert page_copy(ctx, str(tmp_path / "missing.png")) is None and page_copy(ctx, None) is None
    finally:
        for cache in caches:
            remove_cache_dir(cache)
    assert not any(c.exists() for c in caches)


def test_ui_only_server_is_protected_the_same_way(settings_factory) -> None:
    """``pagelens ui`` (create_ui_app): the same keys from the settings, the same sign-in."""
    from pagelens.ui.app import create_ui_app

    app = create_ui_app(settings_factory(api_keys=KEYS))
    with TestClient(app) as client:
        assert client.get("/", follow_redirects=False).headers["location"] == "/ui/"
        for key, status in ((None, 401), ("wrong", 401), (RO, 200)):
            assert client.get("/ui/config", headers=_h(key)).status_code == status
        assert _upload(client, RO).status_code == 403 and _upload(client, RW).status_code == 200
        assert client.post("/ui/sign-in", data={"key": ADMIN}, follow_redirects=False).status_code == 303
        assert client.get("/ui/config").json()["username"] == "key#1"
