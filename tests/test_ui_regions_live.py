"""Issue 27 in a real browser (Debian chromium + Playwright, the real server, tiny random models), with the
regions the search really gives: a real PDF indexed through the REST API, a question whose words are
printed on its page, and the citation opened in the viewer. Checked with geometry against PyMuPDF's own
``page.search_for`` boxes (fractions of the page): the highlight drawn into the viewer's image and the
outline on the first region lie over the words; opening the citation zooms so the region is readable and
scrolls it into the window and the viewer's box, at desktop (1400x900) and phone (390x844) size; "Fit page"
(a button reached from the keyboard) shows the whole page again. Screenshots go to
``test-artifacts/ui-regions/``."""

from __future__ import annotations

import io
import re
from typing import Any

import pytest
from conftest import REPO
from test_ui_browser import AWS, browser_page, seed_collections, serve  # noqa: F401  (browser_page: a fixture)
from test_ui_day import _api_upload

pytestmark = [pytest.mark.browser, pytest.mark.slow]

ARTIFACTS = REPO / "test-artifacts" / "ui-regions"
SIZES = {"desktop": {"width": 1400, "height": 900}, "phone": {"width": 390, "height": 844}}
# printed once, on one line near the foot of the AWS invoice ("Usage and recurring charges for this ...");
# its text region (score 1: every word of the question) is the hit's first region
QUESTION = "recurring charges"
FOCUS_ZOOM = "3"  # viewer.focus_zoom of a region 0.09 of the page wide

Box = tuple[float, float, float, float]


def _search_for(phrase: str) -> list[Box]:
    """PyMuPDF's boxes of ``phrase`` on the invoice's page, as fractions of the page (origin top-left)."""
    import pymupdf

    with pymupdf.open(AWS) as doc:
        page = doc[0]
        w, h = page.rect.width, page.rect.height
        return [(r.x0 / w, r.y0 / h, r.x1 / w, r.y1 / h) for r in page.search_for(phrase)]


def _iou(a: Box, b: Box) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def _within(inner: dict[str, float], outer: dict[str, float], slack: float = 1.0) -> bool:
    return (inner["x"] >= outer["x"] - slack and inner["y"] >= outer["y"] - slack
            and inner["x"] + inner["width"] <= outer["x"] + outer["width"] + slack
            and inner["y"] + inner["height"] <= outer["y"] + outer["height"] + slack)


def _drawn_box(drawn: Any, plain: Any, near: Box, pad: float = 0.008) -> Box:
    """The box (page fractions) of the blue highlight drawn into ``drawn`` (the viewer's image with the
    regions) around ``near``: the pixels the drawing made bluer than ``plain`` (red down, blue kept), in
    ``near`` widened by ``pad`` (less than the gap to the next line's highlights: 0.013 of the page); the
    window's edges are not reached (the whole box is inside it)."""
    import numpy as np

    a = np.asarray(drawn.convert("RGB"), dtype=np.int16)
    b = np.asarray(plain.convert("RGB"), dtype=np.int16)
    assert a.shape == b.shape, (a.shape, b.shape)
    h, w = a.shape[:2]
    x0, y0 = max(0, int((near[0] - pad) * w)), max(0, int((near[1] - pad) * h))
    x1, y1 = min(w, int((near[2] + pad) * w) + 1), min(h, int((near[3] + pad) * h) + 1)
    red_down = (b[y0:y1, x0:x1, 0] - a[y0:y1, x0:x1, 0])
    blue_down = (b[y0:y1, x0:x1, 2] - a[y0:y1, x0:x1, 2])
    ys, xs = np.nonzero((red_down > 25) & (blue_down < red_down // 2))
    assert len(xs), "no highlight drawn near the words"
    assert xs.min() > 0 and ys.min() > 0 and xs.max() < x1 - x0 - 1 and ys.max() < y1 - y0 - 1, "box too large"
    return ((x0 + xs.min()) / w, (y0 + ys.min()) / h, (x0 + xs.max() + 1) / w, (y0 + ys.max() + 1) / h)


def _fraction_of(box: dict[str, float], image: dict[str, float]) -> Box:
    """A box on screen as fractions of the image box it lies on."""
    return ((box["x"] - image["x"]) / image["width"], (box["y"] - image["y"]) / image["height"],
            (box["x"] + box["width"] - image["x"]) / image["width"],
            (box["y"] + box["height"] - image["y"]) / image["height"])


def _image(page: Any, src: str) -> Any:
    from PIL import Image

    r = page.request.get(src)
    assert r.ok, (src, r.status)
    return Image.open(io.BytesIO(r.body()))


def _check_focus(page: Any, expected: Box, size: dict[str, int]) -> None:
    """The viewer is zoomed to the first region, its outline lies over the words and is in view: inside the
    window and inside the viewer's scroll box."""
    from playwright.sync_api import expect

    box = page.locator("#pl-viewer-img")
    expect(box).to_have_attribute("data-zoom", FOCUS_ZOOM)
    marker = page.locator("#pl-focus-box")
    expect(marker).to_have_count(1)
    # centred on screen: in the middle half of the window's height (the page scrolls it there once laid out)
    page.wait_for_function("""() => {
      const r = document.getElementById('pl-focus-box').getBoundingClientRect();
      return Math.abs(r.top + r.height / 2 - innerHeight / 2) < innerHeight / 4;
    }""", timeout=10_000)
    img_box = page.locator("#pl-viewer-img img").bounding_box()
    m, c = marker.bounding_box(), box.bounding_box()
    assert img_box and m and c
    assert img_box["width"] > 2.5 * c["width"]  # zoomed: about 3 times the viewer's width
    got = _fraction_of(m, img_box)
    assert _iou(got, expected) >= 0.5, (got, expected)  # the outline is on the words
    window = {"x": 0, "y": 0, "width": size["width"], "height": size["height"]}
    assert _within(m, window), (m, size)  # on screen
    assert _within(m, c), (m, c)  # and in the viewer's visible part


def _check_fit(page: Any, size: dict[str, int]) -> None:
    """'Fit page', pressed from the keyboard: the whole page in the viewer's box, on screen, unscrolled."""
    from playwright.sync_api import expect

    fit = page.get_by_role("button", name="Fit page")
    fit.focus()
    page.keyboard.press("Enter")
    box = page.locator("#pl-viewer-img")
    expect(box).to_have_attribute("data-fit", "1")
    expect(fit).to_have_text("Fit page")
    img_box, c = page.locator("#pl-viewer-img img").bounding_box(), box.bounding_box()
    assert img_box and c
    assert _within(img_box, c), (img_box, c)
    window = {"x": 0, "y": 0, "width": size["width"], "height": size["height"]}
    assert _within(img_box, window), (img_box, size)
    assert box.evaluate("e => [e.scrollLeft, e.scrollTop]") == [0, 0]


def test_opening_a_citation_zooms_to_its_real_text_region_over_the_words(browser_page, settings_factory) -> None:  # noqa: ANN001, F811
    from playwright.sync_api import expect

    expected_all = _search_for(QUESTION)
    assert len(expected_all) == 1, expected_all  # printed once
    expected = expected_all[0]
    settings = settings_factory(max_new_tokens=4, answer_top_k=2)
    seed_collections(settings, "inv")
    page = browser_page
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with serve(settings) as url:
        job = _api_upload(url, "inv", (AWS,))
        assert job["status"] == "done", job
        page.set_viewport_size(SIZES["desktop"])
        page.goto(f"{url}/ui/?collection=inv&mode=search")
        expect(page.locator("#pl-collection input")).to_have_value("inv")
        page.locator("#pl-question textarea").fill(QUESTION)
        page.locator("#pl-question textarea").press("Enter")
        cite = page.locator("#pl-chat li.pl-cite").first
        expect(cite).to_contain_text(AWS.name, timeout=60_000)

        # -- desktop: a click on the citation ---------------------------------------------------------
        expect(page.locator("#pl-viewer")).to_be_hidden()  # (search only: no page opens by itself)
        cite.click()
        img = page.locator("#pl-viewer-img img")
        expect(img).to_have_attribute("src", re.compile(r"/rg/"))
        expect(page.locator("#pl-regions-legend")).to_contain_text("text region(s)")
        _check_focus(page, expected, SIZES["desktop"])
        page.screenshot(path=str(ARTIFACTS / "focus_desktop.png"))

        # the highlight drawn into the image lies over the words (the image's own pixels, as fractions)
        drawn = _image(page, img.evaluate("i => i.src"))
        page.locator("#pl-regions input").uncheck()
        expect(img).not_to_have_attribute("src", re.compile(r"/rg/"))
        expect(page.locator("#pl-focus-box")).to_have_count(0)  # the outline goes with the highlights
        plain = _image(page, img.evaluate("i => i.src"))
        got = _drawn_box(drawn, plain, expected)
        w, h = drawn.size  # each edge within 6 px of the words' (the outline is drawn just outside the box)
        assert all(abs(g - e) * size <= 6 for g, e, size in zip(got, expected, (w, h, w, h), strict=True)), (
            got, expected, drawn.size)
        page.locator("#pl-regions input").check()
        expect(img).to_have_attribute("src", re.compile(r"/rg/"))
        expect(page.locator("#pl-focus-box")).to_have_count(1)  # back on the region

        _check_fit(page, SIZES["desktop"])
        page.screenshot(path=str(ARTIFACTS / "fit_desktop.png"))

        # -- phone: the cited page's thumbnail ---------------------------------------------------------
        page.set_viewport_size(SIZES["phone"])
        cite.locator("img.pl-thumb").click()
        _check_focus(page, expected, SIZES["phone"])
        page.screenshot(path=str(ARTIFACTS / "focus_phone.png"))
        _check_fit(page, SIZES["phone"])
        page.screenshot(path=str(ARTIFACTS / "fit_phone.png"))
        page.goto("about:blank")
