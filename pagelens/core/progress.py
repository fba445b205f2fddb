"""Progress display for indexing on stderr (rich): documents, pages, pages/s, ETA."""

from __future__ import annotations

from types import TracebackType
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)


class IndexProgress:
    """Two bars: documents done / total, and pages done / (estimated) total of the whole job, with pages/s and ETA."""

    def __init__(self, console: Console, total_files: int, enabled: bool = True) -> None:
        self.enabled = enabled
        self.pages_done = 0
        self._progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TaskProgressColumn(),
            TextColumn("{task.fields[rate]}"),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=console,
            disable=not enabled,
            transient=False,
        )
        self._docs = self._progress.add_task("documents", total=total_files, rate="")
        self._pages = self._progress.add_task("pages", total=None, rate="")
        self._optimize: TaskID | None = None  # the closing optimize's line, once it starts

    def __enter__(self) -> IndexProgress:
        self._progress.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._progress.stop()

    def callback(self, event: str, info: dict[str, Any]) -> None:
        """Indexer events (see ``pagelens.index.pipeline.indexer``): ``plan`` sets the page total (an estimate from the
        documents opened so far, exact at the end), ``page_done`` advances the pages bar (pages/s, ETA
        over all documents), ``document_done`` / ``document_failed`` the documents bar, and
        ``optimize_start`` / ``optimize_done`` a third line for the index build that ends a job."""
        progress = self._progress
        if event == "plan":
            progress.update(self._pages, total=info.get("pages_estimate") or None)
        elif event == "document_start":
            progress.update(self._pages, description=f"pages ({info.get('doc_name', '')[:30]})")
        elif event == "page_done":
            self.pages_done += 1
            progress.advance(self._pages)
            task = next(t for t in progress.tasks if t.id == self._pages)
            speed = task.speed
            progress.update(self._pages, rate=f"{speed:.2f} pages/s" if speed else "")
        elif event in ("document_done", "document_failed"):
            progress.advance(self._docs)
        elif event == "optimize_start":
            self._optimize = progress.add_task("updating the search structures", total=None, rate="")
        elif event == "optimize_done" and self._optimize is not None:
            progress.update(self._optimize, total=1, completed=1, rate=f"{float(info.get('seconds', 0)):.1f} s")


class SyncProgress(IndexProgress):
    """``pagelens index --sync``: a line for the files read for their hash while planning, the indexing bars
    of ``IndexProgress`` (their document total set by the ``sync_plan`` event), and a line each for the
    renames and deletes, all on stderr."""

    def __init__(self, console: Console, enabled: bool = True) -> None:
        super().__init__(console, total_files=0, enabled=enabled)
        self._progress.update(self._docs, visible=False)
        self._progress.update(self._pages, visible=False)
        self._lines: dict[str, TaskID] = {}

    def _line(self, key: str, description: str, done: int, total: int) -> None:
        if key not in self._lines:
            self._lines[key] = self._progress.add_task(description, total=total, rate="")
        self._progress.update(self._lines[key], total=total, completed=done)

    def callback(self, event: str, info: dict[str, Any]) -> None:
        """``sync_hash`` / ``sync_rename`` / ``sync_delete`` (done, total) and ``sync_plan`` (to_index)
        here; every other event is the indexer's (``IndexProgress.callback``)."""
        if event == "sync_hash":
            self._line("hash", "checking files", int(info["done"]), int(info["total"]))
        elif event == "sync_plan":
            if int(info.get("to_index", 0)):  # the indexing bars, now below the planning line
                for task in (self._docs, self._pages):
                    self._progress.remove_task(task)
                self._docs = self._progress.add_task("documents", total=int(info["to_index"]), rate="")
                self._pages = self._progress.add_task("pages", total=None, rate="")
        elif event == "sync_rename":
            self._line("rename", "renaming", int(info["done"]), int(info["total"]))
        elif event == "sync_delete":
            self._line("delete", "deleting", int(info["done"]), int(info["total"]))
        else:
            super().callback(event, info)
