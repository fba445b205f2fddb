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
