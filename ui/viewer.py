"""The Ask tab's page viewer: one stored page of a document (any page, cited or not) looked up the way the
REST route ``/v1/collections/{c}/documents/{doc_id}/pages/{n}.png`` finds it (one point by filter, its image
under this server's page-image root), its extracted text, and a copy named ``<document>-p<N>.png`` to
download. The caller checks the principal's read access to the collection first."""

from __future__ import annotations

import hashlib
import hmac
import html
import json
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pagelens.ui.render import page_copy, page_text_markdown
from pagelens.ui.state import UIContext, UIError

from pagelens.core.types import PageFilter

PAGE_KEYS = ("doc_id", "doc_name", "page_no", "page_count", "image_path", "text", "text_source", "language")
# zoom levels of the viewer's image (1 = fit the viewer's width), applied in the browser (VIEWER_JS)
ZOOM_STEPS = (0.5, 0.75, 1.0, 1.5, 2.0, 3.0)
# opening a cited page zooms until its first region spans at most this share of the viewer's width
FOCUS_FILL = 0.8


@dataclass(frozen=True)
class PageView:
    """One page as the viewer shows it: ``image`` is a copy the browser may fetch (``render.page_copy``),
    None when the image is not on this server."""

    collection: str
    doc_id: str
    doc_name: str
    page_no: int
    page_count: int
    image: str | None
    text: str = ""
    text_source: str | None = None
    language: str | None = None
    # the cited regions of this page (``thread.regions_of``), drawn when shown (``draw_regions``)
    regions: tuple[dict[str, Any], ...] = ()


def find_page(ctx: UIContext, collection: str, doc_id: str, page_no: int) -> PageView:
    """Page ``page_no`` (1-based) of document ``doc_id`` in ``collection``; a ``UIError`` naming the document
    and page when it is being indexed, missing, or out of range."""
    if doc_id in ctx.jobs.inflight_doc_ids(collection):
        raise UIError(f"document '{doc_id}' is still being indexed: its pages open once it is done")
    store = ctx.service.store
    if page_no < 1:
        raise UIError(f"page {page_no} does not exist: pages start at 1")
    payload: dict[str, Any] | None = None
    for _, candidate in store.iter_payloads(collection, PageFilter(doc_ids=[doc_id], page_nos=[page_no]),
                                            keys=PAGE_KEYS):
        payload = candidate
        break
    if payload is None:
        if not store.count(collection, PageFilter(doc_ids=[doc_id])):
            raise UIError(f"document '{doc_id}' is not in collection '{collection}' (deleted meanwhile?): "
                          "ask again to see the current pages")
        raise UIError(f"document '{doc_id}' has no page {page_no} in collection '{collection}'")
    images = ctx.service.images
    path = images.resolve(payload)
    image = page_copy(ctx, str(path), collection) if path is not None and images.allowed(path) else None
    return PageView(collection=collection, doc_id=doc_id, doc_name=str(payload.get("doc_name") or doc_id),
                    page_no=int(payload.get("page_no") or page_no),
                    page_count=int(payload.get("page_count") or 0) or page_no, image=image,
                    text=str(payload.get("text") or ""), text_source=payload.get("text_source"),
                    language=payload.get("language"))


_UNSAFE = re.compile(r"[^\w.\-]+")


def download_name(doc_name: str, page_no: int) -> str:
    """``<document stem>-p<N>.png``: the stem of the document's name with characters unsafe in a file name
    replaced by ``_`` (``Q3 report.pdf``, 4 -> ``Q3_report-p4.png``)."""
    stem = _UNSAFE.sub("_", Path(doc_name).stem).strip("._") or "page"
    return f"{stem[:120]}-p{int(page_no)}.png"


def download_copy(ctx: UIContext, view: PageView) -> str | None:
    """A copy of the page image named ``download_name`` (in a folder named by an HMAC of the image copy, in
    the UI's private cache), for the Download button; None without an image."""
    if not view.image:
        return None
    digest = hmac.new(ctx.secret, f"dl:{view.image}".encode(), hashlib.sha256).hexdigest()[:32]
    target = ctx.image_cache / "dl" / digest / download_name(view.doc_name, view.page_no)
    if not target.exists():
        target.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        tmp = target.with_suffix(f".{os.getpid()}.tmp")
        try:
            os.link(view.image, tmp)
        except OSError:
            shutil.copyfile(view.image, tmp)
        os.replace(tmp, target)
    ctx.own_page(str(target), view.collection)
    return str(target)


# translucent fill and outline (RGBA) of the regions: text regions blue, visual regions orange
REGION_COLORS = {"text": ((37, 99, 235, 60), (37, 99, 235, 230)), "visual": ((234, 88, 12, 60), (234, 88, 12, 230))}


def draw_regions(ctx: UIContext, view: PageView) -> str | None:
    """A copy of the viewer's page with its cited regions drawn over it (translucent boxes, text regions
    blue and visual ones orange, ``REGION_COLORS``, each outlined just outside its box so the words inside
    stay readable), in the private cache and recorded as a page of the
    view's collection; the plain image when there are no regions (or no image)."""
    if not view.image or not view.regions:
        return view.image
    from PIL import Image, ImageDraw

    key = repr([(r["x0"], r["y0"], r["x1"], r["y1"], r["source"]) for r in view.regions])
    digest = hmac.new(ctx.secret, f"rg:{view.image}:{key}".encode(), hashlib.sha256).hexdigest()[:32]
    target = ctx.image_cache / "rg" / f"{digest}.png"
    if not target.exists():
        target.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        with Image.open(view.image) as img:
            base = img.convert("RGBA")
        layer = Image.new("RGBA", base.size, (0, 0, 0, 0))
        draw = ImageDraw.Draw(layer)
        w, h = base.size
        width = max(2, round(min(w, h) / 300))
        for r in view.regions:  # the outline around the box, not on it: a word's box is a few pixels high
            fill, line = REGION_COLORS[r["source"]]
            x0, y0, x1, y1 = r["x0"] * w, r["y0"] * h, r["x1"] * w, r["y1"] * h
            draw.rectangle([x0, y0, x1, y1], fill=fill)
            draw.rectangle([x0 - width, y0 - width, x1 + width, y1 + width], outline=line, width=width)
        tmp = target.with_suffix(f".{os.getpid()}.tmp")
        Image.alpha_composite(base, layer).convert("RGB").save(tmp, format="PNG")
        os.replace(tmp, target)
    ctx.own_page(str(target), view.collection)
    return str(target)


def focus_zoom(region: dict[str, Any]) -> float:
    """The zoom (one of ``ZOOM_STEPS``, at least 1 = the viewer's width) a cited page opens at so that
    ``region`` (page fractions) is readable: the largest step at which the region spans at most
    ``FOCUS_FILL`` of the viewer's width (a word of 0.09 of the width: 3; half the page: 1.5)."""
    width = max(1e-4, float(region["x1"]) - float(region["x0"]))
    return max([1.0, *(s for s in ZOOM_STEPS if s * width <= FOCUS_FILL)])


def focus_of(view: PageView, shown: str | None) -> str:
    """What the browser focuses when the page opens (``ask_assets.VIEWER_JS`` ``plFocus``, given it by
    ``legend_html``'s ``data-focus``): JSON with the
    first (best) region's box as page fractions (``x0, y0, x1, y1``), its ``source``, the ``zoom`` to show
    it at (``focus_zoom``) and ``image``, the file name of the image ``shown`` (the script waits for it);
    "" when there is nothing to focus (no regions, no image, or the regions are hidden)."""
    if not view.regions or not shown or shown == view.image:
        return ""
    first = view.regions[0]
    return json.dumps({**{k: float(first[k]) for k in ("x0", "y0", "x1", "y1")}, "source": first["source"],
                       "zoom": focus_zoom(first), "image": Path(shown).name})


def regions_legend(view: PageView) -> str:
    """The line naming the drawn regions by kind, with their colours; the empty string without any."""
    if not view.regions:
        return ""
    text = sum(1 for r in view.regions if r["source"] == "text")
    visual = len(view.regions) - text
    parts = ([f'<span class="pl-rg-text">■</span> {text} text region(s)'] if text else []) + (
        [f'<span class="pl-rg-visual">■</span> {visual} visual region(s)'] if visual else [])
    return "Highlighted on the page: " + " · ".join(parts)


def legend_html(view: PageView, shown: str | None) -> str:
    """The regions' legend (``regions_legend``) as the viewer shows it, carrying in ``data-focus`` the region
    the browser focuses (``focus_of``; the step after a page opens reads it: tabs/ask.py ``focus_js``);
    the empty string without regions."""
    if not view.regions:
        return ""
    return (f'<p class="pl-legend" data-focus="{html.escape(focus_of(view, shown), quote=True)}">'
            f"{regions_legend(view)}</p>")


def viewer_title(view: PageView) -> str:
    """The viewer's heading (Markdown): the document's full name and ``page N of M``."""
    name = html.escape(view.doc_name).replace("*", r"\*").replace("_", r"\_")
    return f"**{name}** · page {view.page_no} of {view.page_count}"


def viewer_text(view: PageView) -> str:
    """The shown page's extracted text with its source and language (``render.page_text_markdown``)."""
    return page_text_markdown(view)  # type: ignore[arg-type]  # PageView has the fields it reads


def page_ref(collection: str, doc_id: str, page_no: int) -> str:
    """What the browser sends to open a page: ``<page_no>|<doc_id>|<collection>``."""
    return f"{int(page_no)}|{doc_id}|{collection}"


def parse_page_ref(ref: str) -> tuple[str, str, int]:
    """(collection, doc_id, page_no) of a ``page_ref``; ``UIError`` when malformed."""
    parts = (ref or "").split("|", 2)
    if len(parts) != 3 or not parts[0].strip().isdigit() or not parts[1] or not parts[2]:
        raise UIError("no page to open: click a citation or a cited page")
    return parts[2], parts[1], int(parts[0])
