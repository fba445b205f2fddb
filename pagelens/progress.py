"""Progress display for indexing on stderr (rich): documents, pages, pages/s, ETA."""

from __future__ import annotations

from types import TracebackType
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)


class IndexProgress:
    """Two bars: documents done / total, and pages done (with pages/s) of the current document."""

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

    def __enter__(self) -> IndexProgress:
        self._progress.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._progress.stop()

    def callback(self, event: str, info: dict[str, Any]) -> None:
        progress = self._progress
        if event == "document_start":
            progress.reset(self._pages, total=info.get("page_count") or None,
                           description=f"pages of {info.get('doc_name', '')[:40]}", rate="")
        elif event == "page_done":
            self.pages_done += 1
            progress.advance(self._pages)
            task = progress.tasks[self._pages]
            speed = task.speed
            progress.update(self._pages, rate=f"{speed:.2f} pages/s" if speed else "")
        elif event in ("document_done", "document_failed"):
            progress.advance(self._docs)
