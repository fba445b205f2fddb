"""What the REST API and the web UI share about uploads and HTTP answers: the document name shown to
users, the ASCII stem of the stored copy, the allowance for multipart overhead and the JSON error body."""

from __future__ import annotations

import re
import unicodedata
from typing import Any

from fastapi.encoders import jsonable_encoder

ACCEPTED = ("a PDF, PNG, JPEG or TIFF file, or an office or web document (DOCX, XLSX, PPTX, ODT, ODS, ODP, "
            "DOC, XLS, PPT, RTF, HTML)")  # what an upload may be, in the words of every refusal
MAX_FORM_OVERHEAD = 1024 * 1024  # headers, boundaries and text fields on top of the file bytes


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


def error_body(code: str, message: str, detail: Any = None) -> dict[str, Any]:
    """The JSON body of every error answer: ``{"error": {"code", "message", "detail"}}``."""
    return {"error": {"code": code, "message": message, "detail": jsonable_encoder(detail or {},
                                                                                   custom_encoder={Exception: str})}}
