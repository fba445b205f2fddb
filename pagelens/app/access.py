"""API keys: who may read or write which collection.

``PAGELENS_API_KEYS`` is a ``;``-separated list of key entries, each ``KEY:ROLE[:COLLECTIONS]``:

- ``KEY:admin`` - everything (all collections, create/delete any, every job);
- ``KEY:rw:coll1,coll2`` - read and write (create, upload, delete, cancel jobs) those collections;
- ``KEY:r:coll1`` - read only (list, search, ask, page images, job status) those collections.
- ``rw``/``r`` with ``*`` as collections (``KEY:r:*``) applies to every collection.

Example: ``s3cr3t-admin:admin;k-inv:rw:invoices,reports;k-ro:r:invoices``. Keys may not contain
``:`` or ``;``; whitespace around parts is ignored. Clients send ``Authorization: Bearer KEY``.
Keys are compared in constant time (``hmac.compare_digest``) and never logged; a principal is
named ``key#N`` (its position in the list) in logs. With no keys configured the API is open
(every request is admin), which ``pagelens serve`` only allows on a loopback address unless
``--insecure``.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from typing import Literal

from pagelens.core.errors import ApiError

Role = Literal["admin", "rw", "r"]
_ROLES = ("admin", "rw", "r")


@dataclass(frozen=True)
class Principal:
    """The caller: a role and the collections it applies to (None: all)."""

    name: str
    role: Role
    collections: frozenset[str] | None = None

    def can_read(self, collection: str) -> bool:
        return self.role == "admin" or self.collections is None or collection in self.collections

    def can_write(self, collection: str) -> bool:
        return self.role == "admin" or (self.role == "rw" and self.can_read(collection))

    def readable(self) -> set[str] | None:
        """Collections this principal may read (None: all)."""
        return None if self.role == "admin" or self.collections is None else set(self.collections)

    def require_read(self, collection: str) -> None:
        if not self.can_read(collection):
            raise ApiError(403, "forbidden", f"this API key has no access to collection '{collection}'",
                           collection=collection)

    def require_write(self, collection: str) -> None:
        self.require_read(collection)
        if not self.can_write(collection):
            raise ApiError(403, "forbidden", f"this API key may not modify collection '{collection}'",
                           collection=collection)


OPEN = Principal(name="anonymous", role="admin")


class ApiKeys:
    """The parsed key table. ``authenticate`` maps an ``Authorization`` header to a Principal."""

    def __init__(self, spec: str | None) -> None:
        self._entries: list[tuple[bytes, Principal]] = parse_api_keys(spec)

    @property
    def enabled(self) -> bool:
        return bool(self._entries)

    def authenticate(self, authorization: str | None) -> Principal:
        if not self._entries:
            return OPEN
        challenge = {"WWW-Authenticate": 'Bearer realm="pagelens"'}
        if not authorization:
            raise ApiError(401, "unauthorized", "missing API key; send 'Authorization: Bearer <key>'",
                           headers=challenge)
        scheme, _, token = authorization.strip().partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise ApiError(401, "unauthorized", "malformed Authorization header; use 'Bearer <key>'",
                           headers=challenge)
        given = token.encode("utf-8", "surrogateescape")
        found: Principal | None = None
        for key, principal in self._entries:  # compare against every key: no early exit
            if hmac.compare_digest(key, given) and found is None:
                found = principal
        if found is None:
            raise ApiError(401, "unauthorized", "invalid API key", headers=challenge)
        return found


    def by_name(self, name: str | None) -> Principal | None:
        """The principal named ``name`` (``key#N``), as ``authenticate`` returned it; None if there is none.
        ``OPEN`` when no keys are configured."""
        if not self._entries:
            return OPEN
        return next((p for _, p in self._entries if p.name == name), None) if name else None


def parse_api_keys(spec: str | None) -> list[tuple[bytes, Principal]]:
    """Parse the ``PAGELENS_API_KEYS`` format (see the module docstring). Raises ValueError with a
    message that never contains a key."""
    entries: list[tuple[bytes, Principal]] = []
    if not spec or not spec.strip():
        return entries
    for n, raw in enumerate(spec.split(";"), start=1):
        raw = raw.strip()
        if not raw:
            continue
        parts = [p.strip() for p in raw.split(":")]
        if len(parts) < 2 or not parts[0]:
            raise ValueError(f"PAGELENS_API_KEYS entry #{n}: expected KEY:ROLE[:COLLECTIONS]")
        key, role = parts[0], parts[1].lower()
        if role not in _ROLES:
            raise ValueError(f"PAGELENS_API_KEYS entry #{n}: role must be admin, rw or r")
        if len(parts) > 3:
            raise ValueError(f"PAGELENS_API_KEYS entry #{n}: too many ':' separated parts")
        collections: frozenset[str] | None = None
        if role != "admin":
            names = [c.strip() for c in (parts[2] if len(parts) == 3 else "").split(",") if c.strip()]
            if not names:
                raise ValueError(f"PAGELENS_API_KEYS entry #{n}: role {role} needs collections (or *)")
            collections = None if "*" in names else frozenset(names)
        entries.append((key.encode("utf-8"), Principal(name=f"key#{n}", role=role, collections=collections)))  # type: ignore[arg-type]
    return entries
