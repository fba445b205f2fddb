"""The key ``pagelens mcp`` (stdio) acts with; light to import, so a bad key fails before any model loads."""

from __future__ import annotations

from pagelens.app.access import ApiKeys, Principal
from pagelens.core.errors import ApiError
from pagelens.core.settings import Settings


class McpKeyError(Exception):
    """``pagelens mcp`` cannot start: keys are configured and PAGELENS_MCP_KEY is missing or wrong."""


def stdio_principal(settings: Settings) -> Principal:
    """The key ``pagelens mcp`` acts with: PAGELENS_MCP_KEY checked against PAGELENS_API_KEYS (open, as
    admin, when no keys are configured). Raises ``McpKeyError`` naming what to set (never the key), or
    ``ValueError`` for a malformed PAGELENS_API_KEYS."""
    keys = ApiKeys(settings.api_keys.get_secret_value() if settings.api_keys else None)
    if not keys.enabled:
        return keys.authenticate(None)
    key = settings.mcp_key.get_secret_value().strip() if settings.mcp_key else ""
    if not key:
        raise McpKeyError("PAGELENS_API_KEYS is set, so `pagelens mcp` needs one of those keys in "
                          "PAGELENS_MCP_KEY (a read-only key gets only the read tools)")
    try:
        return keys.authenticate(f"Bearer {key}")
    except ApiError as exc:
        raise McpKeyError("PAGELENS_MCP_KEY is not one of the keys in PAGELENS_API_KEYS") from exc
