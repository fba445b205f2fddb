"""Image files (PNG, JPEG, TIFF) as pages: one page per file, one per frame for multi-page TIFF.

Dimensions are checked against ``Settings.max_pixels_per_page`` from the header, before any pixel
is decoded (``Image.open`` is lazy), so a decompression bomb costs nothing. With ``isolate_rendering`` (the
default) Pillow parses the file in the sandbox child (``pagelens.ingest.sandbox``, under its memory, CPU,
time and file limits, without network): the header checks (``check_frames``) and each frame's decoding
(``decode_frame``) run there, the same code as in-process.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
from pagelens.ingest.geometry import fit_size
from pagelens.ingest.types import Page, SourceDocument
from PIL import Image, UnidentifiedImageError

from pagelens.core.errors import DocumentTooLargeError, IngestError
from pagelens.core.settings import Settings

logger = logging.getLogger(__name__)

_PIL_FORMATS = {"png": "PNG", "jpeg": "JPEG", "tiff": "TIFF"}
_EXIF_TRANSPOSE = {  # EXIF Orientation tag value -> the transpose that shows the image upright
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}

RenderFn = Callable[[SourceDocument], Iterator[Page]]


def _too_large(display: str, size: tuple[int, int], limit: int, frame: int | None = None) -> DocumentTooLargeError:
    where = "" if frame is None else f"frame {frame} "
    return DocumentTooLargeError(
        display,
        f"image {where}too large: {size[0]}x{size[1]} px = {size[0] * size[1]:,} px, over the limit of "
        f"{limit:,} px per page (PAGELENS_MAX_PIXELS_PER_PAGE)",
        width=size[0],
        height=size[1],
    )


def _open(path: Path, display: str, fmt: str, limit: int) -> Image.Image:
    """``Image.open`` (lazy: reads the header only). PIL's own global bomb guard
    (``Image.MAX_IMAGE_PIXELS``) is left as it is; its warning is muted because the caller applies
    the stricter per-page limit right after, and its error becomes ``DocumentTooLargeError``."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            return Image.open(path, formats=[_PIL_FORMATS[fmt]])
    except Image.DecompressionBombError as exc:
        raise DocumentTooLargeError(
            display, f"image too large to decode safely ({exc}); the limit is {limit:,} px per page "
            "(PAGELENS_MAX_PIXELS_PER_PAGE)"
        ) from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise IngestError(display, f"damaged {fmt.upper()} image: {exc}") from None


def open_image(path: Path, display: str, fmt: str, settings: Settings) -> tuple[int, RenderFn]:
    """Validate an image file from its headers; returns (page count, renderer).

    Page count is the number of TIFF frames (1 for PNG and JPEG). Raises ``DocumentTooLargeError``
    when a frame is over ``settings.max_pixels_per_page`` px or there are more frames than
    ``settings.max_pages_per_document``; ``IngestError`` when the header is unreadable.
    """
    if getattr(settings, "isolate_rendering", False):  # Pillow parses it in the sandbox child
        from pagelens.ingest.pdf import inspect_isolated, iter_pages_isolated

        resolved = Path(path).resolve()  # the child is reused across documents and may run in another cwd
        frames, _, _ = inspect_isolated(resolved, display, settings, [], image_format=fmt)

        def render_isolated(source: SourceDocument) -> Iterator[Page]:
            return iter_pages_isolated(source, resolved, display, settings, None, frames, image_format=fmt)

        return frames, render_isolated
    with _open(path, display, fmt, settings.max_pixels_per_page) as im:
        frames = check_frames(im, display, fmt, settings)

    def render(source: SourceDocument) -> Iterator[Page]:
        return _iter_frames(source, path, display, fmt, settings, frames)

    return frames, render


def open_checked(path: Path, display: str, fmt: str, settings: Any) -> tuple[Image.Image, int]:
    """``Image.open`` and ``check_frames``: (the open image, its frame count); the caller closes it."""
    im = _open(path, display, fmt, settings.max_pixels_per_page)
    try:
        return im, check_frames(im, display, fmt, settings)
    except BaseException:
        im.close()
        raise


def check_frames(im: Image.Image, display: str, fmt: str, settings: Any) -> int:
    """The frame count of ``im`` (TIFF pages; 1 for PNG and JPEG) after checking every frame's header
    against ``settings.max_pixels_per_page`` and the count against ``settings.max_pages_per_document``."""
    limit = settings.max_pixels_per_page
    try:
        frames = int(getattr(im, "n_frames", 1)) if fmt == "tiff" else 1
        if frames > settings.max_pages_per_document:
            raise DocumentTooLargeError(
                display,
                f"TIFF has {frames} pages, over the limit of {settings.max_pages_per_document} "
                "(PAGELENS_MAX_PAGES_PER_DOCUMENT)",
                page_count=frames,
            )
        for frame in range(frames):
            if frames > 1:
                im.seek(frame)
            if im.width * im.height > limit:
                raise _too_large(display, im.size, limit, frame + 1 if frames > 1 else None)
            if im.width <= 0 or im.height <= 0:
                raise IngestError(display, f"image has an empty size {im.width}x{im.height}")
    except (EOFError, OSError, SyntaxError, ValueError) as exc:
        raise IngestError(display, f"damaged {fmt.upper()} image: {exc}") from None
    return frames


def decode_frame(im: Image.Image, frame: int, frames: int, settings: Any, display: str,
                 ocr_copy: bool) -> tuple[Image.Image, tuple[Image.Image, int] | None]:
    """Frame ``frame`` (0-based) of ``im``: (the page image, ``prepare_image``; with ``ocr_copy``, the frame in
    gray at full resolution, upright, and its dpi, for Tesseract, else None). Decoding errors raise
    ``frame_error``'s ``IngestError`` reason through ``IngestError`` / the decoder's own exception."""
    if frames > 1:
        im.seek(frame)
    # the OCR copy first: it reads the frame at full resolution (prepare_image may decode a JPEG smaller)
    gray = _ocr_gray(im) if ocr_copy else None
    return prepare_image(im, settings, display, single=frames == 1), gray


def frame_error(exc: BaseException) -> str:
    """The reason a frame could not be decoded, as its page error says it."""
    return exc.reason if isinstance(exc, IngestError) else f"image could not be decoded: {exc}"


def _iter_frames(
    source: SourceDocument, path: Path, display: str, fmt: str, settings: Settings, frames: int
) -> Iterator[Page]:
    with _open(path, display, fmt, settings.max_pixels_per_page) as im:
        for frame in range(frames):
            page_no = frame + 1
            try:
                image, gray = decode_frame(im, frame, frames, settings, display, ocr_copy=_ocr_wanted(settings))
            except Exception as exc:
                error = IngestError(display, frame_error(exc), page=page_no)
                logger.warning("%s", error)
                source.page_errors.append(error)
                continue
            text, text_source, words = "", "none", None
            if gray is not None:
                from pagelens.ingest.pdf import apply_ocr

                text, text_source, words = apply_ocr(source, gray[0], gray[1], "", settings, display, page_no)
            yield Page(
                doc_id=source.doc_id,
                doc_name=source.name,
                page_no=page_no,
                page_count=frames,
                image=image,
                text=text,
                doc_sha256=source.sha256,
                text_source=text_source,
                words=words if text.strip() else None,
            )


def _ocr_wanted(settings: Settings) -> bool:
    """An image page has no text layer: OCR it unless OCR is off or Tesseract is missing."""
    from pagelens.ingest.ocr import needs_ocr, status_from_settings

    return needs_ocr("", settings) and status_from_settings(settings).available


def _ocr_gray(im: Image.Image) -> tuple[Image.Image, int]:
    """The current frame in gray at its full resolution, upright by its EXIF orientation as the stored page
    image is, and its dpi (``image_dpi``): what Tesseract reads (``pagelens.ingest.ocr``)."""
    gray = to_rgb(im).convert("L") if im.mode not in ("L", "1") else im.convert("L")
    try:
        orientation = int(im.getexif().get(0x0112, 1))
    except Exception:  # a broken EXIF block: as it is
        orientation = 1
    if orientation in _EXIF_TRANSPOSE:
        gray = gray.transpose(_EXIF_TRANSPOSE[orientation])
    return gray, image_dpi(im)


def image_dpi(im: Image.Image) -> int:
    """The image's resolution from its header, else a guess that its longest edge is an A4 page's
    (11.7 in): what Tesseract needs to size its text."""
    info = im.info.get("dpi")
    try:
        if info and 50 <= float(info[0]) <= 1200:
            return int(round(float(info[0])))
    except (TypeError, ValueError, IndexError):
        pass
    return max(72, min(600, int(round(max(im.width, im.height) / 11.7))))


def prepare_image(im: Image.Image, settings: Settings, display: str, single: bool = True) -> Image.Image:
    """Decode the current frame of ``im``: RGB, EXIF orientation applied, alpha flattened on white,
    downscaled (never upscaled) so the longest edge is at most ``settings.page_longest_edge`` px.

    ``single``: the image has one frame, so JPEG may decode at a reduced scale (``draft``).
    """
    if im.width * im.height > settings.max_pixels_per_page:
        raise _too_large(display, im.size, settings.max_pixels_per_page)
    target = fit_size(im.width, im.height, settings.page_longest_edge, settings.max_pixels_per_page, upscale=False)
    if single and im.format == "JPEG":
        im.draft("RGB", target)  # DCT scaling: decode at 1/2, 1/4 or 1/8 when that is still >= target
    im.load()
    rgb = to_rgb(im)
    if rgb.size != target:
        rgb = rgb.resize(target, Image.Resampling.LANCZOS, reducing_gap=3.0)
    try:
        orientation = int(im.getexif().get(0x0112, 1))
    except Exception as exc:  # a broken EXIF block must not lose the page
        logger.debug("%s: EXIF orientation ignored: %s", display, exc)
        orientation = 1
    if orientation in _EXIF_TRANSPOSE:
        rgb = rgb.transpose(_EXIF_TRANSPOSE[orientation])
    return rgb


def to_rgb(im: Image.Image) -> Image.Image:
    """RGB copy of ``im``: transparent areas become white, 16-bit and float data are scaled to 8 bits."""
    mode = im.mode
    if mode in ("I", "I;16", "I;16B", "I;16L", "I;16N", "F"):
        arr = np.asarray(im, dtype=np.float64)
        top = float(arr.max()) if arr.size else 0.0
        if mode.startswith("I;16") or 255 < top <= 65535:
            arr = arr * (255.0 / 65535.0)
        elif top > 65535:
            arr = arr * (255.0 / top)
        gray = np.clip(arr, 0, 255).astype(np.uint8)
        return Image.fromarray(gray, mode="L").convert("RGB")
    has_alpha = mode in ("RGBA", "LA", "PA", "RGBa", "La") or (mode == "P" and "transparency" in im.info)
    if has_alpha:
        rgba = im.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    if mode == "RGB":
        return im.copy()
    return im.convert("RGB")
