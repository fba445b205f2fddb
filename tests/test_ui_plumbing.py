"""Nothing of the UI's plumbing shows (issue 28.3): on every tab, at desktop (1400x900) and phone (390x844)
size, in a real browser (Debian chromium + Playwright, the real server), no internal or helper component is
displayed (computed style and bounding box), no raw conversation JSON is on screen, and every control a
person can reach has an accessible name. Screenshots go to ``test-artifacts/ui-plumbing/``."""

from __future__ import annotations

import pytest
from conftest import REPO
from test_ui_browser import AWS, browser_page, seed_collections, serve  # noqa: F401  (browser_page: a fixture)
from test_ui_day import _api_upload

pytestmark = [pytest.mark.browser, pytest.mark.slow]

ARTIFACTS = REPO / "test-artifacts" / "ui-plumbing"
SIZES = {"desktop": {"width": 1400, "height": 900}, "phone": {"width": 390, "height": 844}}
TABS = ("Ask", "Documents", "Collections")
# the helpers earlier versions rendered under the Ask tab (a copy of the answer, the conversation's JSON, the
# citation box and its "open" button) and the uploads table's row-action bridge
HELPERS = ("#pl-answer-plain", "#pl-view-ref", "#pl-thread-json", "#pl-view-open", "#pl-row-action",
           "#pl-row-action-btn", ".pl-hidden")

# What is displayed that should not be: [selector, why] for each helper shown (visible by computed style,
# a box larger than nothing), raw JSON on screen, a reachable control without an accessible name.
FIND_PLUMBING_JS = """(helpers) => {
  const shown = (e) => {
    if (!e.checkVisibility({checkOpacity: true, checkVisibilityCSS: true})) return false;
    const r = e.getBoundingClientRect();
    return r.width > 0 && r.height > 0;
  };
  const found = [];
  for (const sel of helpers) {
    document.querySelectorAll(sel).forEach((e) => { if (shown(e)) found.push([sel, 'helper displayed']); });
  }
  const text = document.body.innerText;
  if (/"question"\\s*:|"doc_id"\\s*:|\\[\\{"/.test(text)) found.push(['body', 'raw JSON on screen']);
  document.querySelectorAll('button, input:not([type=hidden]), textarea, select, [role=button]').forEach((e) => {
    if (!shown(e) || e.closest('[aria-hidden=true]')) return;
    const name = (e.getAttribute('aria-label') || e.getAttribute('title') || e.getAttribute('aria-labelledby')
                  || (e.labels && e.labels.length ? 'label' : '') || e.innerText || e.getAttribute('alt')
                  || e.getAttribute('placeholder')
                  || [...e.querySelectorAll('img[alt]')].map((i) => i.getAttribute('alt')).join(' ') || '').trim();
    if (!name) found.push([e.outerHTML.slice(0, 160), 'control without an accessible name']);
    else if (!/[\p{L}\p{N}]/u.test(name)) found.push([e.outerHTML.slice(0, 160), 'control named only by a symbol: ' + name]);
  });
  document.querySelectorAll('img').forEach((e) => {
    if (shown(e) && !(e.getAttribute('alt') || '').trim() && e.getAttribute('role') !== 'presentation') {
      found.push([e.outerHTML.slice(0, 160), 'image without alt text']);
    }
  });
  return found;
}"""


def test_no_helper_component_is_displayed_on_any_tab_or_size(browser_page, settings_factory) -> None:  # noqa: ANN001, F811
    from playwright.sync_api import expect

    settings = settings_factory(max_new_tokens=4, answer_top_k=1)
    seed_collections(settings, "inv")
    page = browser_page
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with serve(settings) as url:
        _api_upload(url, "inv", (AWS,))
        page.goto(f"{url}/ui/?collection=inv")
        expect(page.locator("#pl-collection input")).to_have_value("inv")
        page.locator("#pl-question textarea").fill("What is the total amount due?")
        page.locator("#pl-question textarea").press("Enter")
        expect(page.locator("#pl-chat .pl-sources")).to_have_count(1, timeout=60_000)  # an answer with sources
        expect(page.locator("#pl-sim")).to_be_visible(timeout=60_000)
        problems = []
        for size_name, size in SIZES.items():
            page.set_viewport_size(size)
            for tab in TABS:
                page.get_by_role("tab", name=tab).click()
                expect(page.get_by_role("tab", name=tab)).to_have_attribute("aria-selected", "true")
                page.wait_for_timeout(300)  # let the tab's components lay out
                page.screenshot(path=str(ARTIFACTS / f"{tab.lower()}_{size_name}.png"), full_page=True)
                problems += [(size_name, tab, *p) for p in page.evaluate(FIND_PLUMBING_JS, list(HELPERS))]
        assert not problems, "\n".join(map(str, problems))
        page.goto("about:blank")


def test_page_images_are_served_only_to_keys_that_may_read_their_collection(browser_page, settings_factory) -> None:  # noqa: ANN001, F811
    """Issue 28.6, through the real server: the page copies a signed-in key was shown (a source's thumbnail,
    the viewer's page, its download) are served to a key that may read their collection and refused (403)
    to a key scoped to another collection, even with the exact URL; without a credential, 401."""
    import httpx
    from playwright.sync_api import expect
    from test_ui_browser import _sign_in

    settings = settings_factory(max_new_tokens=4, answer_top_k=1,
                                api_keys="adm-key:admin;a-key:r:alpha;b-key:rw:beta")
    seed_collections(settings, "alpha", "beta")
    page = browser_page
    with serve(settings) as url:
        r = httpx.post(f"{url}/v1/collections/alpha/documents", headers={"Authorization": "Bearer adm-key"},
                       files=[("files", (AWS.name, AWS.read_bytes(), "application/pdf"))], timeout=60)
        assert r.status_code == 202, r.text
        job = r.json()["id"]
        for _ in range(1200):
            status = httpx.get(f"{url}/v1/jobs/{job}", headers={"Authorization": "Bearer adm-key"}).json()["status"]
            if status not in ("queued", "running"):
                break
            page.wait_for_timeout(200)
        page.goto(f"{url}/ui/")
        _sign_in(page, "a-key")
        expect(page.locator("#pl-collection input")).to_have_value("alpha")
        page.locator("#pl-question textarea").fill("What is the total amount due?")
        page.locator("#pl-question textarea").press("Enter")
        thumb = page.locator("#pl-chat img.pl-thumb").first
        expect(thumb).to_be_visible(timeout=60_000)
        expect(page.locator("#pl-viewer-img img")).to_be_visible(timeout=60_000)
        urls = {"thumbnail": thumb.evaluate("i => i.src"),
                "viewer": page.locator("#pl-viewer-img img").evaluate("i => i.src")}
        for name, src in urls.items():
            assert "/pages/" in src, (name, src)  # a page copy (the check below applies to it)
            for key, status in (("a-key", 200), ("adm-key", 200), ("b-key", 403)):
                got = httpx.get(src, headers={"Authorization": f"Bearer {key}"}, timeout=30)
                assert got.status_code == status, (name, key, got.status_code, got.text[:200])
            assert httpx.get(src, timeout=30).status_code == 401, name
        page.goto("about:blank")
