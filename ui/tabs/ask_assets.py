"""The Ask tab's browser side: the two small scripts Gradio does not provide (a click on a source opens the
viewer; the viewer's zoom) and the tab's stylesheet. ``VIEWER_JS`` runs once per page load (``mount_ui``'s
``js``), ``CITE_CLICKS_JS`` when the tab's heading renders; ``ASK_CSS`` is added to the UI's stylesheet."""

from __future__ import annotations

# Runs once per page load (mount_ui's js): window.plZoom zooms the viewer's image (CSS variable --pl-zoom,
# 1 = fit the width; the steps are viewer.ZOOM_STEPS).
VIEWER_JS = """() => {
  const steps = [0.5, 0.75, 1, 1.5, 2, 3];
  window.plZoom = (how) => {
    const el = document.getElementById('pl-viewer-img');
    if (!el) return;
    let z = parseFloat(el.dataset.zoom || '1');
    if (how === 'in') z = steps.find((s) => s > z + 1e-6) || z;
    else if (how === 'out') z = [...steps].reverse().find((s) => s < z - 1e-6) || z;
    else z = 1;
    el.dataset.zoom = String(z);
    el.style.setProperty('--pl-zoom', String(z));
    const label = document.querySelector('#pl-zoom-fit');
    if (label) label.textContent = z === 1 ? 'Fit' : `Fit (${Math.round(z * 100)}%)`;
  };
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
SCROLL_TO_VIEWER_JS = "() => { const v = document.getElementById('pl-viewer'); if (v) v.scrollIntoView({block: 'start'}); }"

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
