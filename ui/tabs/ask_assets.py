"""The Ask tab's browser side: the scripts (keys, citation clicks, zoom, copy, the conversation in session
storage) and its stylesheet. ``ASK_KEYS_JS`` runs once per page load (``mount_ui``'s ``js``); ``ASK_CSS``
is added to the UI's stylesheet."""

from __future__ import annotations

# Enter in the question box asks (clicks Ask), Shift+Enter adds a newline: the reverse of Gradio's multi-line
# textbox, as in every chat app. A capture listener on the window runs before Gradio's own (delegated) key
# handler and stops it; an IME composition's Enter is left alone. Run once per page load (mount_ui's js).
# Also: an answer's [n] link shows citation n in place; a click (or Enter) on a citation opens its page in
# the viewer (its id, pl-cite-<n> or pl-t<i>-cite-<n>, goes to the hidden #pl-view-ref box, then the hidden
# #pl-view-open button is clicked; the server finds the page in the conversation: thread.cited_page);
# window.plZoom zooms the viewer's image (CSS variable --pl-zoom, 1 = fit the width).
ASK_KEYS_JS = """() => {
  if (window.__plAskKeys) return;
  window.__plAskKeys = true;
  const onKey = (e) => {
    const box = e.target;
    if (e.key !== 'Enter' || e.isComposing || !box || !box.closest || !box.closest('#pl-question')) return;
    e.preventDefault();
    e.stopImmediatePropagation();
    if (e.type !== 'keydown') return;
    if (e.shiftKey) {
      box.setRangeText('\\n', box.selectionStart, box.selectionEnd, 'end');
      box.dispatchEvent(new Event('input', {bubbles: true}));
    } else {
      const ask = document.querySelector('#pl-ask');
      if (ask) ask.click();
    }
  };
  window.addEventListener('keydown', onKey, true);
  window.addEventListener('keypress', onKey, true);
  const openRef = (ref) => {
    const box = document.querySelector('#pl-view-ref textarea, #pl-view-ref input');
    const btn = document.querySelector('#pl-view-open');
    if (!box || !btn || !ref) return;
    box.value = ref;
    box.dispatchEvent(new Event('input', {bubbles: true}));
    setTimeout(() => btn.click(), 0);
  };
  window.plOpenPage = openRef;
  window.addEventListener('keydown', (e) => {
    const cite = e.target && e.target.closest ? e.target.closest('.pl-cite[id]') : null;
    if (cite && (e.key === 'Enter' || e.key === ' ')) { e.preventDefault(); openRef(cite.id); }
  }, true);
  // an answer's [n] link shows citation n in place (the page has a <base>: a plain #anchor would load a new page)
  window.addEventListener('click', (e) => {
    const ref = e.target && e.target.closest ? e.target.closest('a.pl-ref') : null;
    if (!ref) {
      const cite = e.target && e.target.closest ? e.target.closest('.pl-cite[id]') : null;
      if (cite) openRef(cite.id);
      return;
    }
    e.preventDefault();
    e.stopImmediatePropagation();
    const id = (ref.getAttribute('href') || '').replace(/^.*#/, '');
    const cite = id ? document.getElementById(id) : null;
    if (!cite) return;
    document.querySelectorAll('.pl-cite-on').forEach((el) => el.classList.remove('pl-cite-on'));
    cite.classList.add('pl-cite-on');
    cite.scrollIntoView({block: 'center'});
  }, true);
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

# Copy: the plain answer (the hidden #pl-answer-plain box) to the clipboard; the textarea route where the
# Clipboard API is missing (a page served over plain http to another host).
COPY_JS = """(text) => {
  const done = (ok) => {
    const b = document.querySelector('#pl-copy');
    if (b) { b.textContent = ok ? '✓ Copied' : 'Copy failed'; setTimeout(() => { b.textContent = "Copy answer"; }, 1500); }
  };
  if (navigator.clipboard && window.isSecureContext) {
    navigator.clipboard.writeText(text || '').then(() => done(true), () => done(false));
  } else {
    const area = document.createElement('textarea');
    area.value = text || ''; document.body.appendChild(area); area.select();
    let ok = false; try { ok = document.execCommand('copy'); } catch (e) { ok = false; }
    area.remove(); done(ok);
  }
  return [];
}"""
# The conversation in the browser tab's session storage (thread.turns_to_json), so a reload keeps it; the
# tab's own storage, gone when the tab closes, cleared on sign-out (screen.SIGN_OUT_JS).
THREAD_KEY = "pl-thread"
STORE_THREAD_JS = ("(text) => { try { if (text) sessionStorage.setItem('" + THREAD_KEY + "', text); else "
                   "sessionStorage.removeItem('" + THREAD_KEY + "'); } catch (e) {} return []; }")
READ_THREAD_JS = "() => { try { return [sessionStorage.getItem('" + THREAD_KEY + "') || '']; } catch (e) { return ['']; } }"
SCROLL_TO_VIEWER_JS = "() => { const v = document.getElementById('pl-viewer'); if (v) v.scrollIntoView({block: 'start'}); }"

ASK_CSS = """
#pl-thread { border-bottom: 1px dashed var(--border-color-primary, #e5e7eb); }
.pl-turn { padding: 0.4rem 0 0.6rem; border-top: 1px solid var(--border-color-primary, #e5e7eb); overflow-wrap: anywhere; }
.pl-turn-q, .pl-current-q { font-weight: 600; white-space: normal; overflow-wrap: anywhere; }
.pl-turn-who { display: inline-block; font-size: 0.75rem; padding: 0 0.35rem; border-radius: 4px; background: var(--color-accent-soft, #dbeafe); }
.pl-turn-coll { font-weight: 400; font-size: 0.8rem; opacity: 0.7; }
#pl-thread .pl-cite, #pl-citations .pl-cite { cursor: pointer; }
#pl-thread .pl-cite:hover, #pl-citations .pl-cite:hover, .pl-cite:focus { background: rgba(37, 99, 235, 0.08); outline: none; }
#pl-viewer { border: 1px solid var(--border-color-primary, #e5e7eb); border-radius: 8px; padding: 0.4rem; }
#pl-viewer-img { --pl-zoom: 1; overflow: auto !important; max-height: 85vh; height: auto !important; min-height: 0 !important; }
#pl-viewer-img img { width: calc(var(--pl-zoom) * 100%) !important; max-width: none !important; height: auto !important;
  max-height: none !important; object-fit: contain; }
#pl-viewer-img .image-container, #pl-viewer-img .image-frame, #pl-viewer-img .image-container button {
  display: block !important; overflow: visible; height: auto !important; max-height: none !important; }
#pl-page-text pre.pl-page-text { white-space: pre-wrap; overflow-wrap: anywhere; }
#pl-thread ol.pl-cites, #pl-citations ol.pl-cites { list-style: none; padding: 0; margin: 0.3rem 0 0; }
#pl-thread .pl-cite { font-size: 0.9rem; margin: 0; }
.pl-viewer-bar { flex-wrap: wrap !important; gap: 0.3rem !important; }
.pl-viewer-bar > * { flex: 1 1 auto !important; min-width: 2.4rem !important; padding-left: 0.3rem !important; padding-right: 0.3rem !important; }
@media (max-width: 640px) {
  #pl-viewer { padding: 0.2rem; }
  .pl-viewer-bar { gap: 0.2rem !important; }
  .pl-viewer-bar > * { min-width: 2.1rem !important; font-size: 0.8rem !important; }
}
"""
