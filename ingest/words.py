"""Word boxes of a page (where each word of its text is), kept at ingest for region-level citations.

Where they come from: PyMuPDF ``page.get_text("words")`` for pages with a text layer (``words_from_pymupdf``,
in the page's unrotated space, turned into the rendered page's space with ``page.rotation_matrix``), and
Tesseract's TSV output for OCR'd pages (``words_from_tesseract_tsv``, turned back from the upright copy
Tesseract read to the page as rendered).

Coordinates are fractions of the page's width and height as rendered (origin top-left, 0..1), so they
hold at any render size. ``WordBoxes`` is stored compactly in the page payload (``encode_words``):

    {"v": 1, "n": <words>, "z": "<base64 of zlib(words joined by U+001F, UTF-8 | 0x00 | boxes)>"}

where boxes are the coordinates quantised to ``round(fraction * 65535)`` (1/65535 of the page: 0.03 px
at 2048 px) as uint16, column by column (all x0, all y0, all x1, all y1), each column delta-coded
(mod 2**16) so words on one line compress to almost nothing. On the shared real PDFs that is ~10
bytes per word, words included (e.g. 7.0 kB for the 723 words of a dense paper page whose text is
5.1 kB; uncompressed base64 boxes were 16.4 kB): ``bench/regions.py`` measures it per page.
"""

from __future__ import annotations

import base64
import csv
import io
import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

FORMAT_VERSION = 1
SEPARATOR = "\x1f"  # unit separator: never inside a word (words have no whitespace or control characters)
_SCALE = 65535.0
PAYLOAD_KEY = "words"  # the page payload key holding the encoded word boxes


@dataclass(frozen=True)
class WordBoxes:
    """The words of one page and their boxes.

    words: n words in reading order (as the extractor gave them).
    boxes: float32 [n, 4] (x0, y0, x1, y1) as fractions of the page's width / height, origin top-left,
      x0 <= x1 and y0 <= y1, clipped to [0, 1].
    """

    words: tuple[str, ...]
    boxes: np.ndarray

    def __len__(self) -> int:
        return len(self.words)

    @classmethod
    def build(cls, words: Sequence[str], boxes: Iterable[Sequence[float]]) -> WordBoxes:
        """From words and (x0, y0, x1, y1) fractions (normalised: sorted corners, clipped to [0, 1])."""
        arr = np.asarray(list(boxes), dtype=np.float32).reshape(-1, 4)
        if len(arr) != len(words):
            raise ValueError(f"{len(words)} words but {len(arr)} boxes")
        if len(arr):
            x0 = np.minimum(arr[:, 0], arr[:, 2])
            x1 = np.maximum(arr[:, 0], arr[:, 2])
            y0 = np.minimum(arr[:, 1], arr[:, 3])
            y1 = np.maximum(arr[:, 1], arr[:, 3])
            arr = np.clip(np.stack([x0, y0, x1, y1], axis=1), 0.0, 1.0)
        return cls(tuple(words), arr.astype(np.float32))


def _clean_word(word: str) -> str:
    return "".join(ch for ch in word if ch >= " " and not ch.isspace())


def encode_words(boxes: WordBoxes | None) -> dict[str, Any] | None:
    """The compact payload form of ``boxes`` (see the module docstring); None for no words."""
    if boxes is None or not len(boxes):
        return None
    quantised = np.round(np.clip(boxes.boxes, 0.0, 1.0) * _SCALE).astype(np.int64).T  # [4, n]
    deltas = np.diff(quantised, axis=1, prepend=0) % 65536
    words = SEPARATOR.join(_clean_word(w) for w in boxes.words).encode("utf-8")
    blob = zlib.compress(words + b"\x00" + deltas.astype("<u2").tobytes(), 9)
    return {"v": FORMAT_VERSION, "n": len(boxes), "z": base64.b64encode(blob).decode("ascii")}


MAX_WORDS = 200_000  # a decoded payload claiming more is refused (a page has a few thousand at most)


def decode_words(data: Any) -> WordBoxes | None:
    """``WordBoxes`` from the payload form; None when ``data`` is absent or not a valid encoding."""
    if not isinstance(data, dict) or data.get("v") != FORMAT_VERSION:
        return None
    try:
        n = int(data.get("n", 0))
        if not 0 < n <= MAX_WORDS:
            return None
        decompressor = zlib.decompressobj()
        blob = decompressor.decompress(base64.b64decode(str(data.get("z", "")), validate=True), 264 * n + 16)
        words_raw, sep, box_raw = blob.partition(b"\x00")
        if not sep or len(box_raw) != 8 * n:
            return None
        deltas = np.frombuffer(box_raw, dtype="<u2").reshape(4, n).astype(np.int64)
        coords = (np.cumsum(deltas, axis=1) % 65536).T.astype(np.float32) / _SCALE  # [n, 4]
        words = tuple(words_raw.decode("utf-8").split(SEPARATOR))
    except (ValueError, TypeError, zlib.error, UnicodeDecodeError):
        return None
    if len(words) != n:
        return None
    return WordBoxes(words, coords)


def words_from_pymupdf(page: Any) -> WordBoxes | None:
    """Word boxes of a PyMuPDF page's text layer, in the rendered page's space (``page.rect``, rotation
    applied); None when the page has no words or extraction fails."""
    try:
        raw = page.get_text("words")
        matrix = page.rotation_matrix
        rect = page.rect
    except Exception:  # noqa: BLE001 - no text layer is not an error
        return None
    width, height = float(rect.width), float(rect.height)
    if not raw or width <= 0 or height <= 0:
        return None
    words: list[str] = []
    boxes: list[tuple[float, float, float, float]] = []
    import pymupdf

    for item in raw:
        word = _clean_word(str(item[4]))
        if not word:
            continue
        r = pymupdf.Rect(item[:4]) * matrix  # unrotated -> rendered page space (pt)
        boxes.append(((r.x0 - rect.x0) / width, (r.y0 - rect.y0) / height,
                      (r.x1 - rect.x0) / width, (r.y1 - rect.y0) / height))
        words.append(word)
    return WordBoxes.build(words, boxes) if words else None


def unrotate_fractions(boxes: np.ndarray, rotation: int) -> np.ndarray:
    """Boxes [n, 4] (fractions) found on a copy of the page turned ``rotation`` degrees clockwise, in the
    page's own (unturned) space. ``rotation`` in {0, 90, 180, 270}."""
    b = np.asarray(boxes, dtype=np.float32).reshape(-1, 4)
    x0, y0, x1, y1 = b[:, 0], b[:, 1], b[:, 2], b[:, 3]
    rotation %= 360
    if rotation == 0:
        return b.copy()
    if rotation == 90:  # page (x, y) -> turned (1 - y, x); back: (u, v) -> (v, 1 - u)
        return np.stack([y0, 1 - x1, y1, 1 - x0], axis=1)
    if rotation == 180:  # (u, v) -> (1 - u, 1 - v)
        return np.stack([1 - x1, 1 - y1, 1 - x0, 1 - y0], axis=1)
    if rotation == 270:  # page (x, y) -> turned (y, 1 - x); back: (u, v) -> (1 - v, u)
        return np.stack([1 - y1, x0, 1 - y0, x1], axis=1)
    raise ValueError(f"rotation must be a multiple of 90 degrees, got {rotation}")


@dataclass(frozen=True)
class TsvPage:
    """What Tesseract's TSV gives for one image: the text (lines of words, paragraphs apart) and the
    word boxes as fractions of that image."""

    text: str
    words: WordBoxes | None


def parse_tesseract_tsv(tsv: str, width: int, height: int, rotation: int = 0) -> TsvPage:
    """Text and word boxes from ``tesseract ... tsv`` output for an image of ``width`` x ``height`` px that
    is the page turned ``rotation`` degrees clockwise (boxes are returned in the unturned page's space).

    The text is rebuilt the way Tesseract's plain-text renderer writes it: the words of a line joined
    by spaces, lines by newlines, paragraphs and blocks by a blank line."""
    reader = csv.reader(io.StringIO(tsv), delimiter="\t", quoting=csv.QUOTE_NONE)
    header = next(reader, None)
    if not header or "level" not in header:
        return TsvPage("", None)
    col = {name: i for i, name in enumerate(header)}
    lines: list[list[str]] = []
    line_key: tuple[int, int, int, int] | None = None
    para_key: tuple[int, int, int] | None = None
    out: list[str] = []
    words: list[str] = []
    boxes: list[tuple[float, float, float, float]] = []
    for row in reader:
        if len(row) < len(header) or row[col["level"]] != "5":
            continue
        word = _clean_word(row[col["text"]])
        if not word:
            continue
        try:
            conf = float(row[col["conf"]])
            left, top = int(row[col["left"]]), int(row[col["top"]])
            w, h = int(row[col["width"]]), int(row[col["height"]])
        except ValueError:
            continue
        if conf < 0:
            continue
        block, par, line = int(row[col["block_num"]]), int(row[col["par_num"]]), int(row[col["line_num"]])
        if (block, par, line, 0) != line_key:
            if para_key is not None and (block, par, 0) != para_key and lines:
                out.append("\n".join(" ".join(ws) for ws in lines))
                lines = []
            lines.append([])
            line_key, para_key = (block, par, line, 0), (block, par, 0)
        lines[-1].append(word)
        words.append(word)
        boxes.append((left / width, top / height, (left + w) / width, (top + h) / height))
    if lines:
        out.append("\n".join(" ".join(ws) for ws in lines))
    found = None
    if words:
        arr = unrotate_fractions(np.asarray(boxes, dtype=np.float32), rotation)
        found = WordBoxes.build(words, arr)
    return TsvPage("\n\n".join(out), found)


def payload_bytes(encoded: dict[str, Any] | None) -> int:
    """Bytes the encoded word boxes add to a page payload (its JSON, UTF-8)."""
    if encoded is None:
        return 0
    import json

    return len(json.dumps(encoded, ensure_ascii=False).encode("utf-8"))
