"""The MCP server of pagelens (Model Context Protocol, official ``mcp`` SDK): agents list collections,
search pages (with their images), ask, and read pages. ``pagelens mcp`` serves it over stdio,
``pagelens serve`` over streamable HTTP at ``/mcp``; both behind the REST API's keys and scopes."""
