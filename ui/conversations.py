"""The Ask tab's conversations, kept on the server: one SQLite file in the data dir
(``<data_dir>/ui_conversations.sqlite``), each conversation owned by one signed-in API key (``key:<name>``)
or, without keys, by one browser (``browser:<random id>`` kept in the browser's local storage), so a
conversation is listed, reopened (also after a browser restart), renamed and deleted only by its owner.

Bounded: at most ``MAX_CONVERSATIONS`` per owner (saving one more deletes the owner's least recently
updated), each at most ``thread.MAX_TURNS`` turns (the oldest go first) and ``MAX_CONVERSATION_CHARS`` of
JSON; titles at most ``MAX_TITLE`` characters."""

from __future__ import annotations

import secrets
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path

FILE_NAME = "ui_conversations.sqlite"
# the most conversations kept per owner (the least recently updated go first)
MAX_CONVERSATIONS = 200
MAX_CONVERSATION_CHARS = 2_000_000
MAX_TITLE = 80


@dataclass(frozen=True)
class Conversation:
    """One listed conversation: ``id`` (random, 16 hex), ``title``, ``updated`` (unix seconds)."""

    id: str
    title: str
    updated: float


def title_of(question: str) -> str:
    """A conversation's default title: its first question, on one line, at most ``MAX_TITLE`` characters."""
    text = " ".join((question or "").split())
    return text if len(text) <= MAX_TITLE else text[: MAX_TITLE - 1] + "…"


class ConversationStore:
    """The conversations of all owners (thread-safe; one connection)."""

    def __init__(self, data_dir: Path) -> None:
        Path(data_dir).mkdir(parents=True, exist_ok=True)
        self.path = Path(data_dir) / FILE_NAME
        self._lock = threading.Lock()
        self._conn = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None, timeout=30)
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute(
            "CREATE TABLE IF NOT EXISTS conversations (id TEXT PRIMARY KEY, owner TEXT NOT NULL, title TEXT NOT NULL, "
            "updated REAL NOT NULL, turns TEXT NOT NULL)")
        self._conn.execute("CREATE INDEX IF NOT EXISTS conversations_owner ON conversations (owner, updated)")

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    @staticmethod
    def new_id() -> str:
        return secrets.token_hex(8)

    def list(self, owner: str) -> list[Conversation]:
        """The owner's conversations, most recently updated first."""
        with self._lock:
            rows = self._conn.execute("SELECT id, title, updated FROM conversations WHERE owner = ? "
                                      "ORDER BY updated DESC", (owner,)).fetchall()
        return [Conversation(str(i), str(t), float(u)) for i, t, u in rows]

    def get(self, owner: str, conversation: str) -> str | None:
        """The turns (JSON, ``thread.turns_to_json``) of the owner's ``conversation``; None when it is not
        the owner's (or gone)."""
        with self._lock:
            row = self._conn.execute("SELECT turns FROM conversations WHERE id = ? AND owner = ?",
                                     (conversation, owner)).fetchone()
        return None if row is None else str(row[0])

    def save(self, owner: str, conversation: str, title: str, turns_json: str) -> bool:
        """Write the owner's ``conversation`` (created with ``title`` when new; an existing title is kept),
        then prune the owner's oldest beyond ``MAX_CONVERSATIONS``. False (nothing written) when the id
        belongs to another owner or the JSON is over ``MAX_CONVERSATION_CHARS``."""
        if len(turns_json) > MAX_CONVERSATION_CHARS:
            return False
        now = time.time()
        with self._lock:
            row = self._conn.execute("SELECT owner FROM conversations WHERE id = ?", (conversation,)).fetchone()
            if row is not None and row[0] != owner:
                return False
            if row is None:
                self._conn.execute("INSERT INTO conversations (id, owner, title, updated, turns) VALUES (?, ?, ?, ?, ?)",
                                   (conversation, owner, title_of(title) or "Conversation", now, turns_json))
            else:
                self._conn.execute("UPDATE conversations SET turns = ?, updated = ? WHERE id = ?",
                                   (turns_json, now, conversation))
            self._conn.execute(
                "DELETE FROM conversations WHERE owner = ? AND id NOT IN (SELECT id FROM conversations WHERE owner = ? "
                "ORDER BY updated DESC LIMIT ?)", (owner, owner, MAX_CONVERSATIONS))
        return True

    def rename(self, owner: str, conversation: str, title: str) -> bool:
        """Rename the owner's ``conversation``; False when it is not theirs or the title is empty."""
        title = title_of(title)
        if not title:
            return False
        with self._lock:
            cur = self._conn.execute("UPDATE conversations SET title = ? WHERE id = ? AND owner = ?",
                                     (title, conversation, owner))
        return cur.rowcount == 1

    def delete(self, owner: str, conversation: str) -> bool:
        """Delete the owner's ``conversation``; False when it is not theirs."""
        with self._lock:
            cur = self._conn.execute("DELETE FROM conversations WHERE id = ? AND owner = ?", (conversation, owner))
        return cur.rowcount == 1
