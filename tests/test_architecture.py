"""The house rules: one import namespace, the layer contract (import-linter), ARCHITECTURE.md true."""

from __future__ import annotations

import importlib
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SOURCE_FOLDERS = ("pagelens", "ingest", "index", "retrieve", "answer", "api", "ui")
OLD_IMPORT = re.compile(r"^\s*(?:from|import)\s+(ingest|index|retrieve|answer|api|ui)(?:\.|\s|$)", re.M)


@pytest.fixture(scope="module")
def wheel_tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The project built as a wheel (no isolation: the venv's setuptools) and unpacked."""
    out = tmp_path_factory.mktemp("wheel")
    shutil.rmtree(REPO / "build", ignore_errors=True)  # stale build/lib files would enter the wheel
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                    "-w", str(out), str(REPO)], check=True, capture_output=True, cwd=out)
    (wheel,) = out.glob("pagelens-*.whl")
    tree = out / "tree"
    with zipfile.ZipFile(wheel) as zf:
        zf.extractall(tree)
    return tree


def test_the_wheel_installs_one_top_level_package(wheel_tree: Path) -> None:
    top = sorted(p.name for p in wheel_tree.iterdir() if not p.name.endswith(".dist-info"))
    assert top == ["pagelens"]
    for sub in ("ingest", "index/stores", "index/ann", "index/pipeline", "retrieve", "answer", "api/routes",
                "ui", "core", "models", "app"):
        assert (wheel_tree / "pagelens" / sub / "__init__.py").is_file(), sub
    assert (wheel_tree / "pagelens" / "py.typed").is_file()
    assert (wheel_tree / "pagelens" / "ui" / "static" / "favicon.png").is_file()  # the web UI's icon
    record = next(wheel_tree.glob("*.dist-info")) / "entry_points.txt"
    assert "pagelens = pagelens.cli:main" in record.read_text()


def test_every_package_folder_is_listed_in_pyproject() -> None:
    """A new sub-package must be added to ``[tool.setuptools] packages`` or the wheel would lack it."""
    import tomllib

    config = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
    dirs = config["package-dir"]
    listed = set(config["packages"])
    found = set()
    for name, folder in dirs.items():
        for init in (REPO / folder).rglob("__init__.py"):
            rel = init.parent.relative_to(REPO / folder)
            found.add(".".join([name, *rel.parts]))
    # a sub-package whose parent is mapped is found twice (as itself and under pagelens/): keep real ones
    assert found - listed == set(), f"add to pyproject packages: {sorted(found - listed)}"
    assert listed - found == set(), f"listed but missing: {sorted(listed - found)}"


def test_no_code_imports_the_old_top_level_names() -> None:
    offenders = []
    for folder in (*SOURCE_FOLDERS, "tests", "bench", "scripts"):
        for path in (REPO / folder).rglob("*.py"):
            for m in OLD_IMPORT.finditer(path.read_text()):
                offenders.append(f"{path.relative_to(REPO)}: {m.group(0).strip()}")
    assert offenders == [], "import these through pagelens.*: " + "; ".join(offenders)


def _lint_imports(tree: Path) -> subprocess.CompletedProcess[str]:
    exe = shutil.which("lint-imports") or str(Path(sys.executable).parent / "lint-imports")
    return subprocess.run([exe, str(REPO / ".importlinter")], cwd=tree, capture_output=True, text=True,
                          env={"PYTHONPATH": str(tree), "PATH": "/usr/bin:/bin"})


def test_layers_contract_holds(wheel_tree: Path) -> None:
    result = _lint_imports(wheel_tree)
    assert result.returncode == 0, "layer contract broken (ARCHITECTURE.md):\n" + result.stdout + result.stderr
    assert "1 kept, 0 broken" in result.stdout


def test_a_layer_violation_fails_with_a_readable_report(wheel_tree: Path, tmp_path: Path) -> None:
    tree = tmp_path / "tree"
    shutil.copytree(wheel_tree, tree)
    errors = tree / "pagelens" / "core" / "errors.py"
    errors.write_text(errors.read_text() + "\nfrom pagelens.app import service  # noqa\n")
    result = _lint_imports(tree)
    assert result.returncode != 0
    assert "BROKEN" in result.stdout and "pagelens.core.errors -> pagelens.app.service" in result.stdout


def _named_in_architecture() -> list[str]:
    text = (REPO / "ARCHITECTURE.md").read_text()
    return sorted(set(re.findall(r"`(pagelens(?:\.[A-Za-z_]\w*)+)`", text)))


@pytest.mark.parametrize("dotted", _named_in_architecture())
def test_architecture_md_names_things_that_exist(dotted: str) -> None:
    parts = dotted.split(".")
    for n in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:n]))
        except ModuleNotFoundError:
            continue
        for attr in parts[n:]:
            assert hasattr(obj, attr), f"ARCHITECTURE.md names {dotted}, but {attr} is not in {obj!r}"
            obj = getattr(obj, attr)
        return
    pytest.fail(f"ARCHITECTURE.md names {dotted}, which does not exist")


def test_architecture_md_cites_test_files_that_exist() -> None:
    """Every ``tests/...py`` file ARCHITECTURE.md names is there (it once cited a test_packaging.py that was not)."""
    cited = sorted(set(re.findall(r"`(tests/[\w/]+\.py)`", (REPO / "ARCHITECTURE.md").read_text())))
    assert cited and [c for c in cited if not (REPO / c).is_file()] == []
