"""The settings tables of README.md and docs/tuning.md are generated from the code and kept current."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_settings_tables_are_current() -> None:
    result = subprocess.run([sys.executable, str(REPO / "scripts" / "settings_doc.py"), "--check"],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_setting_is_in_its_tier_document() -> None:
    from pagelens.core.settings import Settings, Tuning

    readme = (REPO / "README.md").read_text()
    tuning_doc = (REPO / "docs" / "tuning.md").read_text()
    for name in Settings.model_fields:
        if name != "tuning":
            assert f"`PAGELENS_{name.upper()}`" in readme, name
    for name in Tuning.model_fields:
        assert f"`PAGELENS_TUNING__{name.upper()}`" in tuning_doc, name
        assert f"`PAGELENS_{name.upper()}`" not in readme, f"{name} is a tuning knob: PAGELENS_TUNING__{name.upper()}"


def test_help_texts_quote_no_measurements() -> None:
    """Measurements live in bench/README.md, with what they were measured on; help texts stay true."""
    import re

    from pagelens.core.settings import Settings, Tuning

    for model in (Settings, Tuning):
        for name, field in model.model_fields.items():
            text = field.description or ""
            assert not re.search(r"\d(\.\d+)?x (faster|slower)|recall@\d|p50|measured", text), f"{name}: {text}"
