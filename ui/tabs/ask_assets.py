"""The Ask tab's browser side: the two small scripts Gradio does not provide (a click on a source opens the
viewer; the viewer's zoom and its focus on the cited region) and the tab's stylesheet. ``VIEWER_JS`` runs
once per page load (``mount_ui``'s ``js``), ``CITE_CLICKS_JS`` when the tab's heading renders; ``ASK_CSS``
is added to the UI's stylesheet."""

from __future__ import annotations

# Runs once per page load (mount_ui's js). window.plZoom zooms the viewer's image (CSS variable --pl-zoom,
# 1 = fit the width; the steps are viewer.ZOOM_STEPS; "fit": "Fit page", the whole page in the viewer's box,
# the box in view).
# window.plFocus(legend, scroll) runs after a page opens (tabs/ask.py focus_js) with the regions' legend
# (viewer.legend_html; its data-focus is viewer.focus_of's JSON):
# once the image it names has loaded, it zooms to the region's zoom, outlines the region (#pl-focus-box,
# kept on it by plMark at every zoom, resize and image load) and centres it: on screen ("page": the
# viewer's scroll box and the window) or inside the viewer only ("viewer"). Without a region, "page" brings
# the viewer into view as it is. A zoom the person asks for (plZoom) before the image has loaded cancels the
# pending focus zoom, so their zoom is never undone.
VIEWER_JS = """() => {
  const steps = [0.5, 0.75, 1, 1.5, 2, 3];
  const box = () => document.getElementById('pl-viewer-img');
  const image = () => { const el = box(); return el ? el.querySelector('img') : null; };
  const shows = (img, f) => !!(img && f && decodeURIComponent(img.src || '').endsWith('/' + f.image));
  window.plMark = () => {
    const img = image(), f = window.__plFocus;
    let m = document.getElementById('pl-focus-box');
    if (!shows(img, f)) { if (m) m.remove(); return null; }
    const host = img.parentElement;
    if (getComputedStyle(host).position === 'static') host.style.position = 'relative';
    if (!m || m.parentElement !== host) {
      if (m) m.remove();
      m = document.createElement('div');
      m.id = 'pl-focus-box';
      m.setAttribute('aria-hidden', 'true');
      host.appendChild(m);
    }
    const w = img.offsetWidth, h = img.offsetHeight;
    Object.assign(m.style, {left: `${img.offsetLeft + f.x0 * w}px`, top: `${img.offsetTop + f.y0 * h}px`,
                            width: `${(f.x1 - f.x0) * w}px`, height: `${(f.y1 - f.y0) * h}px`});
    return m;
  };
  const setZoom = (z, fit) => {
    const el = box();
    if (!el) return;
    el.dataset.zoom = String(z);
    el.dataset.fit = fit ? '1' : '';
    el.style.setProperty('--pl-zoom', String(z));
    const label = document.querySelector('#pl-zoom-fit');
    if (label) {  // its name stays "Fit page"; the text also shows the zoom
      label.textContent = fit ? 'Fit page' : `Fit page (${Math.round(z * 100)}%)`;
      label.setAttribute('aria-label', 'Fit page');
    }
    window.plMark();
  };
  const fitZoom = () => {  // the whole page: the viewer's width, and its height up to the box's max-height
    const el = box(), img = image();
    if (!el || !img || !img.naturalWidth) return 1;
    const maxH = parseFloat(getComputedStyle(el).maxHeight) || Infinity;
    return Math.min(1, (maxH - 8) / (el.clientWidth * img.naturalHeight / img.naturalWidth));
  };
  window.plZoom = (how) => {
    const el = box();
    if (!el) return;
    window.__plFocusTurn = (window.__plFocusTurn || 0) + 1;  // a zoom of the person's own: a pending focus gives way
    const z = parseFloat(el.dataset.zoom || '1');
    if (how === 'in') setZoom(steps.find((s) => s > z + 1e-6) || z, false);
    else if (how === 'out') setZoom([...steps].reverse().find((s) => s < z - 1e-6) || z, false);
    else { setZoom(fitZoom(), true); el.scrollTo(0, 0); el.scrollIntoView({block: 'nearest', behavior: 'instant'}); }
  };
  window.plFocus = (legend, scroll) => {
    let raw = '', f = null;
    try {
      const el = new DOMParser().parseFromString(legend || '', 'text/html').querySelector('[data-focus]');
      raw = el ? el.dataset.focus || '' : '';
      f = raw ? JSON.parse(raw) : null;
    } catch (e) { f = null; }
    if (scroll === 'viewer' && raw === window.__plFocusRaw) return;  // the page did not change (an answer's step)
    window.__plFocusRaw = raw;
    window.__plFocus = f;
    const turn = window.__plFocusTurn = (window.__plFocusTurn || 0) + 1;
    if (!f) {
      window.plMark();
      const v = document.getElementById('pl-viewer');
      if (scroll === 'page' && v) v.scrollIntoView({block: 'start'});
      return;
    }
    const go = (tries) => {
      const el = box(), img = image();
      // another page opened meanwhile, or the person zoomed before the image loaded (their zoom stays)
      if (window.__plFocusTurn !== turn) return;
      if (!el || !shows(img, f) || !img.complete || !img.naturalWidth) {
        if (tries > 0) setTimeout(() => go(tries - 1), 100);
        return;
      }
      setZoom(f.zoom, false);
      const m = window.plMark();
      if (!m) return;
      if (scroll === 'page') {
        const centre = () => {
          const mark = window.plMark();
          if (mark) mark.scrollIntoView({block: 'center', inline: 'center', behavior: 'instant'});
          return window.scrollY;
        };
        let at = centre();
        // again while the page below it still grows (it could not scroll far enough yet), for 3 s, unless
        // the person scrolled or opened another page meanwhile
        const grows = new ResizeObserver(() => {
          if (window.__plFocus === f && window.scrollY === at) at = centre();
        });
        grows.observe(document.body);
        setTimeout(() => grows.disconnect(), 3000);
        return;
      }
      const c = el.getBoundingClientRect(), r = m.getBoundingClientRect();
      el.scrollLeft += r.left + r.width / 2 - (c.left + c.width / 2);
      el.scrollTop += r.top + r.height / 2 - (c.top + c.height / 2);
    };
    go(150);
  };
  window.addEventListener('resize', () => window.plMark());
  document.addEventListener('load', (e) => {
    if (e.target && e.target.closest && e.target.closest('#pl-viewer-img')) window.plMark();
  }, true);
}"""
# The Ask tab heading's js_on_load (a gr.HTML: ``trigger`` sends one of its events to the server): a click,
# or Enter/Space, on a source in the chat (``thread.sources_html``: ``.pl-cite[data-ref]``) sends the page it
# names as the heading's click event (``{ref}``; the server checks access: tabs/ask.py ``do_open``). The
# document listeners are added once; each load of the heading points them at its own ``trigger``.
CITE_CLICKS_JS = """
window.plOpenRef = (ref) => trigger('click', {ref: ref});
if (!window.__plCiteClicks) {
  window.__plCiteClicks = true;
  const cite = (e) => (e.target && e.target.closest) ? e.target.closest('.pl-cite[data-ref]') : null;
  document.addEventListener('click', (e) => {
    const c = cite(e);
    if (c && window.plOpenRef) { e.preventDefault(); e.stopPropagation(); window.plOpenRef(c.dataset.ref); }
  }, true);
  document.addEventListener('keydown', (e) => {
    const c = cite(e);
    if (c && window.plOpenRef && (e.key === 'Enter' || e.key === ' ')) { e.preventDefault(); window.plOpenRef(c.dataset.ref); }
  }, true);
}
"""
# after the page load: a link to an answer (``?c=<conversation>&a=<n>``) shows answer n
SCROLL_TO_ANSWER_JS = """() => {
  const n = new URL(window.location.href).searchParams.get('a');
  if (!n || !/^[0-9]{1,4}$/.test(n)) return;
  const show = (tries) => {
    const el = document.getElementById('pl-t' + n + '-sources');
    if (el) { el.scrollIntoView({block: 'center'}); el.classList.add('pl-linked'); }
    else if (tries > 0) setTimeout(() => show(tries - 1), 250);
  };
  show(60);
}"""
# the open conversation's id in the page's URL (``c``), so a reload or a shared link opens it (its owner only);
# read from the chat's answer links (thread.sources_html: ``?...&c=<id>&a=<n>``; a gr.State never reaches the
# browser); none there (a new conversation): no ``c``
CONVERSATION_URL_JS = """() => {
  const links = document.querySelectorAll('#pl-chat a.pl-answer-link');
  const last = links.length ? links[links.length - 1].getAttribute('href') || '' : '';
  const id = new URLSearchParams(last.replace(/^[^?]*/, '')).get('c') || '';
  const url = new URL(window.location.href);
  if (id) url.searchParams.set('c', id); else { url.searchParams.delete('c'); url.searchParams.delete('a'); }
  if (url.href !== window.location.href) window.history.replaceState(window.history.state, '', url);
}"""

ASK_CSS = """
.pl-tab-h { font-size: 1.1rem; margin: 0.2rem 0 0.4rem; }
.pl-turn-coll { font-weight: 400; font-size: 0.8rem; opacity: 0.7; }
#pl-chat .pl-sources { overflow-wrap: anywhere; }
#pl-chat ol.pl-cites { list-style: none; padding: 0; margin: 0; display: flex; flex-wrap: wrap; gap: 0.4rem; }
#pl-chat .pl-cite { cursor: pointer; display: flex; flex-direction: column; align-items: flex-start; gap: 0.2rem;
  max-width: 11rem; font-size: 0.85rem; padding: 0.25rem; border-radius: 6px; border: 1px solid var(--border-color-primary, #e5e7eb); }
#pl-chat .pl-cite:hover, #pl-chat .pl-cite:focus { background: rgba(37, 99, 235, 0.08); outline: 2px solid rgba(37, 99, 235, 0.4); }
#pl-chat img.pl-thumb { width: 10rem; max-width: 100%; height: auto; max-height: 13rem; object-fit: contain;
  border: 1px solid var(--border-color-primary, #e5e7eb); background: #fff; }
#pl-chat .pl-foot { margin: 0.3rem 0 0; opacity: 0.75; }
#pl-chat .pl-linked { outline: 2px solid rgba(37, 99, 235, 0.6); border-radius: 6px; }
.pl-ask-row { align-items: flex-end !important; }
#pl-viewer { border: 1px solid var(--border-color-primary, #e5e7eb); border-radius: 8px; padding: 0.4rem; }
#pl-viewer-img { --pl-zoom: 1; overflow: auto !important; max-height: 85vh; height: auto !important; min-height: 0 !important; }
#pl-viewer-img img { width: calc(var(--pl-zoom) * 100%) !important; max-width: none !important; height: auto !important;
  max-height: none !important; object-fit: contain; }
#pl-viewer-img .image-container, #pl-viewer-img .image-frame, #pl-viewer-img .image-container button {
  display: block !important; overflow: visible; height: auto !important; max-height: none !important; }
#pl-focus-box { position: absolute; pointer-events: none; box-sizing: border-box; border-radius: 3px;
  outline: 2px dashed rgba(30, 58, 138, 0.95); outline-offset: 3px; }
.pl-rg-text { color: rgb(37, 99, 235); }
.pl-rg-visual { color: rgb(234, 88, 12); }
#pl-page-text pre.pl-page-text { white-space: pre-wrap; overflow-wrap: anywhere; }
.pl-viewer-bar { flex-wrap: wrap !important; gap: 0.3rem !important; }
.pl-viewer-bar > * { flex: 1 1 auto !important; min-width: 2.4rem !important; padding-left: 0.3rem !important; padding-right: 0.3rem !important; }
@media (max-width: 640px) {
  #pl-viewer { padding: 0.2rem; }
  .pl-viewer-bar { gap: 0.2rem !important; }
  .pl-viewer-bar > * { min-width: 2.1rem !important; font-size: 0.8rem !important; }
  #pl-chat .pl-cite { max-width: 8rem; }
  #pl-chat img.pl-thumb { width: 7.5rem; }
}
"""
