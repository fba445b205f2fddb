"""What every part of the web UI shares: the ``UIContext`` (settings, service, job table and worker, keys,
the private file cache), the ``UIShell`` handed to each tab builder (the context, the auth that resolves a
request's principal, the per-browser session state and the header controls every tab reads), and the
access helpers (who may read, write or create) with the ``UIError`` shown to the person."""

from __future__ import annotations

import contextlib
import html
import logging
import re
import secrets
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from pagelens.ui.cache import PAGES_DIR, private_cache_dir
from pagelens.ui.conversations import ConversationStore

from pagelens.app.access import ApiKeys, Principal
from pagelens.app.jobs import JobStore
from pagelens.core.errors import PagelensError
from pagelens.core.settings import Settings
from pagelens.core.types import COLLECTION_PATTERN

if TYPE_CHECKING:
    import gradio as gr
    from pagelens.ui.auth import UIAuth

    from pagelens.app.jobs import JobWorker
    from pagelens.app.service import PagelensService

log = logging.getLogger("pagelens.ui.app")

UI_PATH = "/ui"
TIMER_S = 1.0
# the idle poll (seconds): documents and uploads added by the API, the CLI or another tab appear without Refresh
POLL_S = 5.0
MAX_JOBS_SHOWN = 6


@dataclass
class UIContext:
    """What the handlers share: the service, the job table (and worker), the key table.

    Has the ``settings`` / ``service`` / ``jobs`` attributes ``pagelens.app.visibility`` reads."""

    settings: Settings
    service: PagelensService
    jobs: JobStore
    worker: JobWorker | None = None
    keys: ApiKeys = field(default_factory=lambda: ApiKeys(None))
    # the UI's private file cache (ui/cache.py); made on first use when not given
    cache_dir: Path | None = None
    # names page copies: HMAC of the source path, so a copy's URL cannot be guessed from the data dir layout
    secret: bytes = field(default_factory=lambda: secrets.token_bytes(32), repr=False)
    # the answers streaming now, by browser session (``gr.Request.session_hash``): Stop sets the event and
    # the answer's generator ends generation at its next token (``ui/tabs/ask.py``)
    answers: dict[str, threading.Event] = field(default_factory=dict, repr=False)
    # the collections each page copy in the cache was shown from (``render.page_copy``): the UI serves a copy
    # only to a principal that may read one of them (``ui/cache.PageAccess``)
    page_owners: dict[str, set[str]] = field(default_factory=dict, repr=False)
    _conversations: ConversationStore | None = field(default=None, repr=False)

    @property
    def conversations(self) -> ConversationStore:
        """The Ask tab's conversations (``ui/conversations.py``), in the data dir; opened on first use."""
        if self._conversations is None:
            self._conversations = ConversationStore(self.settings.data_dir)
        return self._conversations

    def own_page(self, copy: str, collection: str) -> None:
        """Record ``copy`` (a path in the page cache) as a page of ``collection``."""
        self.page_owners.setdefault(copy, set()).add(collection)

    def page_collections(self, copy: str) -> set[str]:
        """The collections the page copy ``copy`` was shown from (empty: not made by this UI)."""
        return set(self.page_owners.get(copy, ()))

    def notify_worker(self) -> None:
        if self.worker is not None:
            self.worker.notify()

    @property
    def cache(self) -> Path:
        if self.cache_dir is None:
            self.cache_dir = private_cache_dir()
        return self.cache_dir

    @property
    def image_cache(self) -> Path:
        return self.cache / PAGES_DIR

    def discard_upload(self, path: str) -> None:
        """Delete a file Gradio received for an upload once it is copied into a job (only inside the cache)."""
        if self.cache_dir is None:
            return
        with contextlib.suppress(OSError, ValueError):
            src = Path(path).resolve()
            if src.is_relative_to(self.cache_dir) and not src.is_relative_to(self.image_cache):
                src.unlink()
                with contextlib.suppress(OSError):
                    src.parent.rmdir()


class UIError(Exception):
    """A message for the person using the UI."""


def err(exc: BaseException) -> str:
    if isinstance(exc, (PagelensError, UIError)):
        return str(exc)
    log.exception("UI handler failed")
    return f"internal error ({type(exc).__name__}); see the server log"


def msg(text: str, ok: bool = True) -> str:
    cls = "pl-msg-ok" if ok else "pl-msg-error"
    return f'<span class="{cls}">{html.escape(text)}</span>'


def require_principal(principal: Principal | None) -> Principal:
    if principal is None:
        raise UIError("sign in with an API key first")
    return principal


_COLLECTION_RE = re.compile(COLLECTION_PATTERN)
NAME_RULE = "a collection name is 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit"


def check_collection_name(name: str) -> str:
    """``name`` when it is a valid collection name (``COLLECTION_PATTERN``), else ``UIError`` saying the rule."""
    if not _COLLECTION_RE.match(name):
        raise UIError(NAME_RULE)
    return name


def require_collection(collection: str | None) -> str:
    if not collection:
        raise UIError("pick a collection first (or create one in the Collections tab)")
    return collection


def can_read(p: Principal | None, collection: str | None) -> bool:
    return p is not None and bool(collection) and p.can_read(collection or "")


def can_write(p: Principal | None, collection: str | None) -> bool:
    return p is not None and bool(collection) and p.can_write(collection or "")


def can_create(p: Principal | None) -> bool:
    return p is not None and p.role in ("admin", "rw")


def check_read(p: Principal, collection: str) -> None:
    if not p.can_read(collection):
        raise UIError(f"this API key has no access to collection '{collection}'")


def check_write(p: Principal, collection: str) -> None:
    check_read(p, collection)
    if not p.can_write(collection):
        raise UIError(f"this API key may not modify collection '{collection}'")



def keys_of(settings: Settings) -> ApiKeys:
    """The API key table of ``settings.api_keys`` (open when unset)."""
    return ApiKeys(settings.api_keys.get_secret_value() if settings.api_keys else None)


@dataclass
class UIShell:
    """What each tab builder (``pagelens.ui.tabs``) gets: the shared context, the auth that names the
    principal of each event's request, the per-browser session state (``{"jobs": [job ids], "rejected":
    []}``: the files refused before queueing are kept in the job store per principal, ``JobStore.rejected_for``), and the header controls every tab reads or updates (the collection
    picker, the collection summary line, the progress timer while a job runs, the idle poll)."""

    ctx: UIContext
    auth: UIAuth
    session: gr.State
    coll_dd: gr.Dropdown
    coll_summary: gr.Markdown
    timer: gr.Timer
    # always on, every POLL_S; None in a UI built without it
    poll: gr.Timer | None = None

    @property
    def auth_on(self) -> bool:
        return self.ctx.keys.enabled

    def who(self, request: gr.Request | None) -> Principal | None:
        """The principal of the request that sent this event (``OPEN`` without keys)."""
        return self.auth.principal_of(request)

