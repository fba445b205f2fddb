"""The Collections tab: create a collection, list those this key may read; a click on a row selects that
collection (named under the table with fresh counts), and Delete, live only while a row is selected (there
is no implicit target), deletes that row's collection after a confirmation that names it with its counts.
The handlers are module-level functions over the app state (``create_collection``, ``select_collection``,
``delete_question_for``, ``delete_collection``); ``CollectionsTab.wire`` maps them to components. The selected
row is highlighted, and only it (``COLL_SELECT_JS``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import gradio as gr
from pagelens.ui.state import (
    UIContext,
    UIError,
    UIShell,
    check_collection_name,
    check_read,
    check_write,
    err,
    msg,
    require_collection,
    require_principal,
)

if TYPE_CHECKING:
    from pagelens.ui.screen import Screen

    from pagelens.app.access import Principal

# Marks the selected collection's row (the one the line under the table names: ``select_collection``) with
# ``pl-row-selected`` (styled in ``render.CSS``) and ``aria-selected``, and no other row (Gradio's Dataframe draws
# rows as ``[role=row]`` of ``[role=gridcell]``); kept through every redraw of the table (a mutation observer,
# at most once per frame) and cleared when the selection is.
COLL_SELECT_JS = """() => {
  let queued = false;
  const mark = () => {
    queued = false;
    const chosen = document.querySelector('#pl-coll-selected strong');
    const name = chosen ? chosen.textContent.trim() : '';
    document.querySelectorAll('#pl-collections [role=row]').forEach((row) => {
      const first = row.querySelector('[role=gridcell]');  // header rows have none
      const on = !!name && !!first && first.innerText.trim() === name;
      if (row.classList.contains('pl-row-selected') !== on) row.classList.toggle('pl-row-selected', on);
      if (on) row.setAttribute('aria-selected', 'true'); else row.removeAttribute('aria-selected');
    });
  };
  const later = () => { if (!queued) { queued = true; requestAnimationFrame(mark); } };
  new MutationObserver(later).observe(document.body, {childList: true, subtree: true, characterData: true,
                                                     attributes: true, attributeFilter: ['class']});
  later();
}"""

DELETE_LABEL = "Delete the selected collection…"
# the Delete button while no row is selected: not live (there is no implicit target)
NO_SELECTION = gr.update(value=DELETE_LABEL, interactive=False)


@dataclass
class CollectionsTab:
    """The Collections tab's components."""

    create_group: gr.Row
    new_name: gr.Textbox
    create_btn: gr.Button
    coll_table: gr.Dataframe
    coll_delete_group: gr.Row
    coll_del_btn: gr.Button
    coll_confirm_row: gr.Row
    coll_confirm_md: gr.Markdown
    coll_confirm_btn: gr.Button
    coll_cancel_btn: gr.Button
    coll_msg: gr.HTML
    # the row clicked (a collection name) and the one the open confirmation names
    selected: gr.State
    selected_md: gr.Markdown
    pending: gr.State

    def wire(self, shell: UIShell, screen: Screen) -> None:
        """Connect create (button and Enter), the row selection and the confirmed delete to the module's
        handlers."""
        ctx = shell.ctx
        who = shell.who

        def do_create(name: str, current: str | None, sess: dict[str, Any], request: gr.Request) -> tuple[Any, ...]:
            p = who(request)
            try:
                name = create_collection(ctx, p, name)
            except Exception as exc:  # noqa: BLE001 - shown to the user
                return msg(err(exc), ok=False), gr.update(), *screen.refresh_all(p, current, sess)
            return msg(f"Created collection '{name}'."), "", *screen.refresh_all(p, name, sess)

        def on_select(evt: gr.SelectData, request: gr.Request) -> tuple[Any, ...]:
            """A click on a row (any cell) selects its collection; Delete is live only then."""
            row = getattr(evt, "row_value", None) or []
            try:
                name, summary = select_collection(ctx, who(request), str(row[0]) if row else "")
            except Exception as exc:  # noqa: BLE001
                return None, msg(err(exc), ok=False), gr.update(visible=False), None, NO_SELECTION
            return name, summary, gr.update(visible=False), None, gr.update(value=f"Delete '{name}'…", interactive=True)

        def on_ask_delete(selected: str | None, request: gr.Request) -> tuple[Any, ...]:
            try:
                target, question = delete_question_for(ctx, who(request), selected)
            except Exception as exc:  # noqa: BLE001 - shown to the user
                return gr.update(visible=False), "", msg(err(exc), ok=False), None
            return gr.update(visible=True), question, "", target

        def on_delete(collection: str | None, sess: dict[str, Any], current: str | None,
                      request: gr.Request) -> tuple[Any, ...]:
            p = who(request)
            try:
                delete_collection(ctx, p, collection)
            except Exception as exc:  # noqa: BLE001
                return (msg(err(exc), ok=False), *screen.refresh_all(p, current, sess), gr.update(), gr.update(), None,
                        gr.update())
            keep = current if current != collection else None
            return (msg(f"Deleted collection '{collection}'."), *screen.refresh_all(p, keep, sess), None, "", None,
                    NO_SELECTION)

        create_inputs = [self.new_name, shell.coll_dd, shell.session]
        create_outputs = [self.coll_msg, self.new_name, *screen.all_outputs]
        self.create_btn.click(do_create, create_inputs, create_outputs, show_progress="minimal", api_visibility="private")
        self.new_name.submit(do_create, create_inputs, create_outputs, show_progress="minimal", api_visibility="private")
        self.coll_table.select(on_select, None, [self.selected, self.selected_md, self.coll_confirm_row, self.pending,
                                                 self.coll_del_btn],
                               show_progress="hidden", api_visibility="private")
        self.coll_del_btn.click(on_ask_delete, [self.selected],
                                [self.coll_confirm_row, self.coll_confirm_md, self.coll_msg, self.pending],
                                api_visibility="private")
        self.coll_cancel_btn.click(lambda: (gr.update(visible=False), None), None,
                                   [self.coll_confirm_row, self.pending], api_visibility="private")
        self.coll_confirm_btn.click(on_delete, [self.pending, shell.session, shell.coll_dd],
                                    [self.coll_msg, *screen.all_outputs, self.selected, self.selected_md,
                                     self.pending, self.coll_del_btn], show_progress="minimal",
                                    api_visibility="private")


# --------------------------------------------------------------------------------------------------
# The handlers: plain functions over the app state (tests/test_ui_handlers.py)
# --------------------------------------------------------------------------------------------------


def create_collection(ctx: UIContext, p: Principal | None, name: str) -> str:
    """Create collection ``name`` (stripped) as ``p``; returns the name, ``UIError`` naming the rule or the
    missing right."""
    name = (name or "").strip()
    p = require_principal(p)
    check_write(p, check_collection_name(name))
    ctx.service.create_collection(name)
    return name


def select_collection(ctx: UIContext, p: Principal | None, name: str) -> tuple[str, str]:
    """(name, the line under the table naming it with fresh counts) for the clicked row ``name``;
    ``UIError`` when ``p`` may not read it."""
    if not name:
        raise UIError("click the row of a collection")
    check_read(require_principal(p), name)
    info = ctx.service.collection_info(name)
    return name, f"Selected: **{name}** ({info.documents} document(s), {info.pages} page(s))"


def delete_question_for(ctx: UIContext, p: Principal | None, selected: str | None) -> tuple[str, str]:
    """(target, confirmation) for deleting the selected row's collection. Only a selected row is a target
    (never the collection picker's): ``UIError`` when no row is selected or ``p`` may not delete it."""
    if not selected:
        raise UIError("click the row of the collection to delete first")
    check_write(require_principal(p), selected)
    info = ctx.service.collection_info(selected)
    return selected, delete_question(selected, info.documents, info.pages)


def delete_collection(ctx: UIContext, p: Principal | None, collection: str | None) -> None:
    """Delete ``collection`` as ``p`` (after the confirmation); refused while one of its uploads runs."""
    p = require_principal(p)
    collection = require_collection(collection)
    check_write(p, collection)
    active = ctx.jobs.active_for(collection)
    if active:
        raise UIError(f"collection '{collection}' has {len(active)} unfinished upload job(s); wait for them to finish")
    ctx.service.delete_collection(collection)


def delete_question(name: str, documents: int, pages: int) -> str:
    """The confirmation that names what goes: ``Delete collection 'x' with 12 documents / 40 pages? ...``."""
    docs = f"{documents} document{'' if documents == 1 else 's'}"
    pgs = f"{pages} page{'' if pages == 1 else 's'}"
    return f"Delete collection '{name}' with {docs} / {pgs}? This cannot be undone."


def build_collections_tab(shell: UIShell) -> CollectionsTab:
    """Lay out the Collections tab inside the current ``gr.Tabs``."""
    with gr.Tab("Collections", id="colls", elem_id="pl-tab-colls"):
        with gr.Row(visible=not shell.auth_on, elem_classes="pl-bar-row",
                    elem_id="pl-create-group") as create_group:
            new_name = gr.Textbox(label="New collection", placeholder="letters, digits, . _ -",
                                  max_length=64, scale=4, min_width=200, elem_id="pl-new-name")
            create_btn = gr.Button("Create", variant="primary", scale=0, min_width=110,
                                   elem_id="pl-create", elem_classes="pl-btn")
        gr.Markdown("Click a row to select its collection.", elem_classes="pl-note")
        coll_table = gr.Dataframe(headers=["Collection", "Documents", "Pages", "Access", "Model",
                                           "Created (UTC)"], value=[], interactive=False,
                                  wrap=True, elem_id="pl-collections")
        selected_md = gr.Markdown("", elem_id="pl-coll-selected")
        with gr.Row(visible=False, elem_id="pl-coll-delete") as coll_delete_group:
            coll_del_btn = gr.Button(DELETE_LABEL, variant="stop", scale=0, interactive=False,
                                     min_width=220, elem_id="pl-coll-delete-btn")
        with gr.Row(visible=False, elem_id="pl-coll-confirm", elem_classes="pl-bar-row pl-confirm") as coll_confirm_row:
            coll_confirm_md = gr.Markdown("", elem_classes="pl-confirm-text")
            coll_confirm_btn = gr.Button("Yes, delete it", variant="stop", scale=0, min_width=140,
                                         elem_id="pl-coll-confirm-btn")
            coll_cancel_btn = gr.Button("Cancel", scale=0, min_width=100, elem_id="pl-coll-cancel-btn")
        coll_msg = gr.HTML("", elem_id="pl-coll-msg")
    return CollectionsTab(create_group=create_group, new_name=new_name, create_btn=create_btn,
                          coll_table=coll_table, coll_delete_group=coll_delete_group, coll_del_btn=coll_del_btn,
                          coll_confirm_row=coll_confirm_row, coll_confirm_md=coll_confirm_md,
                          coll_confirm_btn=coll_confirm_btn, coll_cancel_btn=coll_cancel_btn, coll_msg=coll_msg,
                          selected=gr.State(None), selected_md=selected_md, pending=gr.State(None))
