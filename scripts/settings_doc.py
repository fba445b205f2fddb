"""Write the settings tables of README.md (user-facing settings) and docs/tuning.md (the tuning group)
from ``pagelens.core.settings``, between ``<!-- settings:NAME -->`` and ``<!-- /settings -->`` markers.

    python scripts/settings_doc.py          # rewrite both files
    python scripts/settings_doc.py --check  # exit 1 if either is out of date (tests/test_settings_doc.py)
"""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Any

from pydantic.fields import FieldInfo

from pagelens.core.settings import Settings, Tuning

REPO = Path(__file__).resolve().parents[1]
GROUPS = {"README.md": ("user", Settings, "PAGELENS_"), "docs/tuning.md": ("tuning", Tuning, "PAGELENS_TUNING__")}


def _default(field: FieldInfo) -> str:
    if field.default_factory is not None:
        value: Any = field.default_factory()  # type: ignore[call-arg]
        if isinstance(value, Path):
            return "`~/.local/share/pagelens`" if "pagelens" in str(value) else f"`{value}`"
        if isinstance(value, BaseException | Tuning):
            return ""
        return f"`{value!r}`" if value not in ([], {}) else "(empty)"
    value = field.default
    if value is None:
        return "(unset)"
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if isinstance(value, int) and value >= 1024 * 1024 and value % (1024 * 1024) == 0:
        return f"`{value}` ({value // (1024 * 1024)} MiB)"
    return f"`{value}`"


def table(model: type, prefix: str) -> str:
    rows = ["| setting | default | what |", "| --- | --- | --- |"]
    for name, field in model.model_fields.items():
        if name == "tuning":
            continue
        text = (field.description or "").replace("|", "\\|")
        rows.append(f"| `{prefix}{name.upper()}` | {_default(field)} | {text} |")
    return "\n".join(rows) + "\n"


def render(path: Path, marker: str, body: str) -> str:
    text = path.read_text()
    pattern = re.compile(rf"(<!-- settings:{marker} -->\n).*?(<!-- /settings -->)", re.S)
    if not pattern.search(text):
        raise SystemExit(f"{path}: no <!-- settings:{marker} --> ... <!-- /settings --> block")
    return pattern.sub(lambda m: m.group(1) + body + m.group(2), text)


def main(argv: list[str]) -> int:
    stale = []
    for rel, (marker, model, prefix) in GROUPS.items():
        path = REPO / rel
        new = render(path, marker, table(model, prefix))
        if new != path.read_text():
            stale.append(rel)
            if "--check" not in argv:
                path.write_text(new)
    if stale and "--check" in argv:
        print("out of date (run python scripts/settings_doc.py):", ", ".join(stale))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
