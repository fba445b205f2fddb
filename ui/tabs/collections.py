"""The Collections tab: create a collection, list those this key may read; a click on a row selects that
collection (named under the table), and Delete deletes the selected row's collection (the collection picker
above the tabs until a row is clicked) after a confirmation that names it with its counts."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import gradio as gr
from pagelens.ui.state import (
    UIError,
    UIShell,
    can_read,
    check_collection_name,
    check_write,
    err,
    msg,
    require_collection,
    require_principal,
)

from pagelens.core.errors import PagelensError

if TYPE_CHECKING:
    from pagelens.ui.screen import Screen

DELETE_LABEL = "Delete the selected collection…"


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
        """Connect create (button and Enter) and the confirmed delete."""
        ctx = shell.ctx
        who = shell.who

        def do_create(name: str, current: str | None, sess: dict[str, Any], request: gr.Request) -> tuple[Any, ...]:
            p = who(request)
            name = (name or "").strip()
            try:
                p = require_principal(p)
                check_write(p, check_collection_name(name))
                ctx.service.create_collection(name)
            except Exception as exc:  # noqa: BLE001 - shown to the user
                return msg(err(exc), ok=False), gr.update(), *screen.refresh_all(p, current, sess)
            return msg(f"Created collection '{name}'."), "", *screen.refresh_all(p, name, sess)

        def select_row(evt: gr.SelectData, request: gr.Request) -> tuple[Any, ...]:
            """A click on a row (any cell) selects its collection."""
            p = who(request)
            row = getattr(evt, "row_value", None) or []
            name = str(row[0]) if row else ""
            if not name or not can_read(p, name):
                return None, "", gr.update(visible=False), None, DELETE_LABEL
            try:
                info = ctx.service.collection_info(name)
            except PagelensError as exc:
                return None, msg(err(exc), ok=False), gr.update(visible=False), None, DELETE_LABEL
            return (name, f"Selected: **{name}** ({info.documents} document(s), {info.pages} page(s))",
                    gr.update(visible=False), None, f"Delete '{name}'…")

        def ask_delete_collection(selected: str | None, current: str | None, request: gr.Request) -> tuple[Any, ...]:
            p = who(request)
            target = selected or current
            if not target:
                return gr.update(visible=False), "", msg("click the row of the collection to delete first", ok=False), None
            try:
                check_write(require_principal(p), target)
                info = ctx.service.collection_info(target)
            except Exception as exc:  # noqa: BLE001 - shown to the user
                return gr.update(visible=False), "", msg(err(exc), ok=False), None
            return (gr.update(visible=True), delete_question(target, info.documents, info.pages), "", target)

        def do_delete_collection(collection: str | None, sess: dict[str, Any], current: str | None,
                                 request: gr.Request) -> tuple[Any, ...]:
            p = who(request)
            try:
                p = require_principal(p)
                collection = require_collection(collection)
                check_write(p, collection)
                active = ctx.jobs.active_for(collection)
                if active:
                    raise UIError(f"collection '{collection}' has {len(active)} unfinished upload job(s); "
                                  "wait for them to finish")
                ctx.service.delete_collection(collection)
            except Exception as exc:  # noqa: BLE001
                return (msg(err(exc), ok=False), *screen.refresh_all(p, current, sess), gr.update(), gr.update(), None,
                        gr.update())
            keep = current if current != collection else None
            return (msg(f"Deleted collection '{collection}'."), *screen.refresh_all(p, keep, sess), None, "", None,
                    DELETE_LABEL)

        create_inputs = [self.new_name, shell.coll_dd, shell.session]
        create_outputs = [self.coll_msg, self.new_name, *screen.all_outputs]
        self.create_btn.click(do_create, create_inputs, create_outputs, show_progress="minimal", api_visibility="private")
        self.new_name.submit(do_create, create_inputs, create_outputs, show_progress="minimal", api_visibility="private")
        self.coll_table.select(select_row, None, [self.selected, self.selected_md, self.coll_confirm_row, self.pending,
                                                  self.coll_del_btn],
                               show_progress="hidden", api_visibility="private")
        self.coll_del_btn.click(ask_delete_collection, [self.selected, shell.coll_dd],
                                [self.coll_confirm_row, self.coll_confirm_md, self.coll_msg, self.pending],
                                api_visibility="private")
        self.coll_cancel_btn.click(lambda: (gr.update(visible=False), None), None,
                                   [self.coll_confirm_row, self.pending], api_visibility="private")
        self.coll_confirm_btn.click(do_delete_collection, [self.pending, shell.session, shell.coll_dd],
                                    [self.coll_msg, *screen.all_outputs, self.selected, self.selected_md,
                                     self.pending, self.coll_del_btn], show_progress="minimal",
                                    api_visibility="private")


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
            coll_del_btn = gr.Button(DELETE_LABEL, variant="stop", scale=0,
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
