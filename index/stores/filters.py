"""``PageFilter`` -> backend filters, and the validation shared by the store backends.

Payload layout (see ``PagePoint``): ``doc_id``, ``doc_name``, ``sha256``, ``language``, ``text_source``
are top-level keyword fields; user metadata lives under ``meta`` and is filtered on ``meta.<key>``.

``page_nos`` filters on ``page_no``; ``exclude_doc_ids`` becomes a ``must_not`` on ``doc_id``.

Semantics: all given conditions hold (AND); a list means any-of; empty lists are ignored (as in
``PageFilter.is_empty``). Metadata values may be str, int, bool or float (a float matches exactly,
through a closed range), or a list of those.
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np

from pagelens.core.errors import InvalidRequestError
from pagelens.core.types import PageFilter

COLLECTION_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
META_KEY_RE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
INDEXED_KEYWORD_FIELDS = ("doc_id", "doc_name", "sha256", "language", "text_source")
LANGUAGE_RE = re.compile(r"^[a-z]{2,3}$")


def _languages(values: list[str]) -> list[str]:
    """Validated language codes (ISO 639-1, or ``und``), lower-cased."""
    out = []
    for value in values:
        code = str(value).strip().lower()
        if not LANGUAGE_RE.fullmatch(code):
            raise InvalidRequestError(
                f"invalid language {value!r} in the filter: give ISO 639-1 codes such as de, nl, pl, or und "
                "(undetermined)", language=str(value))
        out.append(code)
    return out


def validate_collection_name(name: str) -> str:
    """Return ``name`` or raise ``InvalidRequestError`` naming the rule."""
    if not isinstance(name, str) or not COLLECTION_NAME_RE.fullmatch(name):
        raise InvalidRequestError(
            f"invalid collection name {name!r}: use 1-64 characters from letters, digits, '_', '.', '-', "
            "starting with a letter or digit (pattern ^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$)",
            collection=str(name),
        )
    return name


def validate_matrix(value: Any, dim: int, what: str) -> np.ndarray:
    """Coerce to a C-contiguous float32 [n, dim] array with n >= 1 and finite values."""
    arr = np.ascontiguousarray(np.asarray(value, dtype=np.float32))
    if arr.ndim != 2 or arr.shape[0] == 0 or arr.shape[1] != dim:
        raise InvalidRequestError(
            f"{what} must be a non-empty [n, {dim}] matrix, got shape {tuple(arr.shape)}", expected_dim=dim
        )
    if not np.isfinite(arr).all():
        raise InvalidRequestError(f"{what} contains NaN or infinite values")
    return arr


def _meta_path(key: str) -> str:
    if not isinstance(key, str) or not META_KEY_RE.fullmatch(key):
        raise InvalidRequestError(
            f"invalid metadata filter key {key!r}: use 1-64 letters, digits, '_' or '-'", key=str(key)
        )
    return f"meta.{key}"


def _scalar(value: Any, key: str) -> Any:
    if isinstance(value, (bool, int, float, str)):
        return value
    raise InvalidRequestError(
        f"metadata filter {key!r}: values must be str, int, float or bool (or a list of them), "
        f"got {type(value).__name__}",
        key=key,
    )


def _values(value: Any, key: str) -> list[Any]:
    values = list(value) if isinstance(value, (list, tuple, set)) else [value]
    if not values:
        raise InvalidRequestError(f"metadata filter {key!r}: empty list matches nothing", key=key)
    return [_scalar(v, key) for v in values]


def _homogeneous(values: list[Any]) -> str | None:
    """'str' / 'int' when every value is of that type (bool excluded), else None."""
    if all(isinstance(v, str) for v in values):
        return "str"
    if all(isinstance(v, int) and not isinstance(v, bool) for v in values):
        return "int"
    return None


def _page_nos(values: list[int]) -> list[int]:
    out = []
    for v in values:
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise InvalidRequestError(f"page filter: page numbers are integers from 1, got {v!r}")
        out.append(v)
    return out


# --- Qdrant Edge ---------------------------------------------------------------------------


def _conditions(page_filter: PageFilter) -> list[tuple[str, list[Any]]]:
    """The filter's must-conditions as (payload path, any-of values), validated; each store turns them
    into its own filter objects (``to_edge_filter``, ``to_server_filter``)."""
    conditions: list[tuple[str, list[Any]]] = []
    if page_filter.doc_ids:
        conditions.append(("doc_id", [str(v) for v in page_filter.doc_ids]))
    if page_filter.doc_names:
        conditions.append(("doc_name", [str(v) for v in page_filter.doc_names]))
    if page_filter.languages:
        conditions.append(("language", _languages(page_filter.languages)))
    for key, value in sorted(page_filter.metadata.items()):
        conditions.append((_meta_path(key), _values(value, key)))
    if page_filter.page_nos:
        conditions.append(("page_no", _page_nos(page_filter.page_nos)))
    return conditions


def to_edge_filter(page_filter: PageFilter | None) -> Any:
    """``qdrant_edge.Filter`` or None when the filter is empty."""
    if page_filter is None or page_filter.is_empty():
        return None
    import qdrant_edge as qe

    def scalar_cond(path: str, v: Any) -> Any:
        if isinstance(v, float):
            return qe.FieldCondition(path, range=qe.RangeFloat(gte=v, lte=v))
        return qe.FieldCondition(path, match=qe.MatchValue(v))

    def any_of(path: str, values: list[Any]) -> Any:
        if len(values) == 1:
            return scalar_cond(path, values[0])
        if _homogeneous(values):
            return qe.FieldCondition(path, match=qe.MatchAny(values))
        return qe.Filter(should=[scalar_cond(path, v) for v in values])

    must: list[Any] = [any_of(path, values) for path, values in _conditions(page_filter)]
    if page_filter.exclude_doc_ids:
        ids = [str(v) for v in page_filter.exclude_doc_ids]
        return qe.Filter(must=must or None, must_not=[qe.FieldCondition("doc_id", match=qe.MatchAny(ids))])
    return qe.Filter(must=must)


# --- Qdrant server (qdrant-client) ---------------------------------------------------------


def to_server_filter(page_filter: PageFilter | None) -> Any:
    """``qdrant_client.models.Filter`` or None when the filter is empty."""
    if page_filter is None or page_filter.is_empty():
        return None
    from qdrant_client import models

    def scalar_cond(path: str, v: Any) -> Any:
        if isinstance(v, float):
            return models.FieldCondition(key=path, range=models.Range(gte=v, lte=v))
        return models.FieldCondition(key=path, match=models.MatchValue(value=v))

    def any_of(path: str, values: list[Any]) -> Any:
        if len(values) == 1:
            return scalar_cond(path, values[0])
        if _homogeneous(values):
            return models.FieldCondition(key=path, match=models.MatchAny(any=values))
        return models.Filter(should=[scalar_cond(path, v) for v in values])

    must: list[Any] = [any_of(path, values) for path, values in _conditions(page_filter)]
    if page_filter.exclude_doc_ids:
        ids = [str(v) for v in page_filter.exclude_doc_ids]
        return models.Filter(must=must or None,
                             must_not=[models.FieldCondition(key="doc_id", match=models.MatchAny(any=ids))])
    return models.Filter(must=must)


def sort_hits(hits: list[Any]) -> list[Any]:
    """Sort ``ScoredPage``-like objects by score descending, ties by id."""
    return sorted(hits, key=lambda h: (-h.score, h.id))
