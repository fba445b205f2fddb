"""The first run: with no collection yet the page shows one panel, "Create a collection and upload" (a
name and a file drop), instead of tabs with nothing to ask and empty tables. Uploading there creates the
collection (when it does not exist) and queues the files as one job; the tabs come back at once."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import gradio as gr
from pagelens.ui.actions import ACCEPTED_TYPES, enqueue_files, record_upload
from pagelens.ui.state import (
    UIShell,
    check_collection_name,
    check_write,
    err,
    msg,
    require_principal,
)

if TYPE_CHECKING:
    from pagelens.ui.screen import Screen



@dataclass
class FirstRun:
    """The first-run panel's components."""

    group: gr.Column
    intro: gr.Markdown
    controls: gr.Column  # hidden for a key that may not create a collection
    name: gr.Textbox
    files: gr.File
    password: gr.Textbox
    button: gr.Button
    message: gr.HTML

    def wire(self, shell: UIShell, screen: Screen) -> None:
        """Create (if needed) and upload, then show the whole UI on the new collection."""
        ctx = shell.ctx

        def create_and_upload(name: str | None, paths: list[str] | None, password: str | None,
                              sess: dict[str, Any], request: gr.Request) -> list[Any]:
            p = shell.who(request)
            name = (name or "").strip()
            try:
                p = require_principal(p)
                check_write(p, check_collection_name(name))
                created = ctx.service.store.get_manifest(name) is None
                if created:
                    ctx.service.create_collection(name)
                job, rejected = enqueue_files(ctx, p, name, list(paths), password or None) if paths else (None, [])
            except Exception as exc:  # noqa: BLE001 - shown to the user
                return [gr.update(), gr.update(), msg(err(exc), ok=False), sess, *screen.refresh_all(p, None, sess),
                        gr.update()]
            sess = record_upload(ctx, list(paths or []), sess, job, rejected)
            parts = [f"Created collection '{name}'." if created else f"Collection '{name}' exists already."]
            if job is not None:
                parts.append(f"Queued {len(job.documents)} file(s) for indexing: follow them in the Documents tab.")
            if rejected:
                parts.append(f"{len(rejected)} file(s) rejected (see the Documents tab).")
            text = msg(" ".join(parts), ok=not rejected)
            all_values = screen.refresh_all(p, name, sess)
            all_values[screen.all_outputs.index(screen.docs.upload_msg)] = text  # shown where the uploads are
            return [None, "", text, sess, *all_values, gr.Tabs(selected="docs")]

        outputs = [self.files, self.password, self.message, shell.session, *screen.all_outputs, screen.tabs]
        inputs = [self.name, self.files, self.password, shell.session]
        self.button.click(create_and_upload, inputs, outputs, show_progress="minimal", api_visibility="private")
        self.name.submit(create_and_upload, inputs, outputs, show_progress="minimal", api_visibility="private")


def first_run_intro(p_can_create: bool) -> str:
    """The panel's text: what to do, or that this key can do nothing here."""
    if not p_can_create:
        return "### No collection to show\nThis API key can read no collection yet; ask for access to one."
    return ("### Create a collection and upload\nThere is nothing to ask yet. Name a collection (for example "
            "`invoices-2024`), drop your PDFs or page images, and press **Create and upload**: the collection is "
            "created and the files are indexed; then ask them questions in the **Ask** tab.")


def build_first_run(shell: UIShell) -> FirstRun:
    """Lay out the first-run panel (hidden until ``Screen.refresh_all`` finds no collection)."""
    with gr.Column(visible=False, elem_id="pl-first-run") as group:
        intro = gr.Markdown(first_run_intro(True), elem_id="pl-first-intro")
        with gr.Column(elem_id="pl-first-controls") as controls:
            name, files, password, button, message = _controls()
    return FirstRun(group=group, intro=intro, controls=controls, name=name, files=files, password=password,
                    button=button, message=message)


def _controls() -> tuple[gr.Textbox, gr.File, gr.Textbox, gr.Button, gr.HTML]:
    """The name, the file drop, the PDF password, the button and its message (in the current layout)."""
    name = gr.Textbox(label="Collection name", placeholder="e.g. invoices-2024", max_length=64,
                      elem_id="pl-first-name", max_lines=1)
    files = gr.File(label="Drop PDFs, page images or office documents", file_count="multiple",
                    file_types=ACCEPTED_TYPES, type="filepath", elem_id="pl-first-files")
    password = gr.Textbox(label="PDF password (optional, for encrypted PDFs of this upload)", type="password",
                          elem_id="pl-first-password", max_lines=1)
    with gr.Row(elem_classes="pl-bar-row"):
        button = gr.Button("Create and upload", variant="primary", scale=0, min_width=190,
                           elem_id="pl-first-upload")
        message = gr.HTML("", elem_id="pl-first-msg")
    return name, files, password, button, message
