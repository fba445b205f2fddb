"""File names of uploaded files, shared by the REST API and the web UI: the document name shown to
users and the ASCII stem of the stored copy."""

from __future__ import annotations

import re
import unicodedata


def display_name(raw: str) -> str:
    """The client's file name reduced to a printable basename (used as the document name)."""
    name = unicodedata.normalize("NFKC", raw.replace("\\", "/").split("/")[-1])
    name = "".join(ch for ch in name if ch.isprintable()).strip().lstrip(".").strip()
    return name[:200] or "upload"


def safe_stem(name: str) -> str:
    """ASCII-only stem for the file on disk."""
    stem = name.rsplit(".", 1)[0] if "." in name else name
    stem = unicodedata.normalize("NFKD", stem).encode("ascii", "ignore").decode("ascii")
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", stem).strip("._-")
    return stem[:80] or "upload"
