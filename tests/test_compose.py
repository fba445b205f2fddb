"""docker-compose.yml: valid against the compose spec (offline schema) and consistent with the code."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from pagelens.core.settings import Settings

REPO = Path(__file__).resolve().parents[1]
COMPOSE = REPO / "docker-compose.yml"


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


def test_compose_validates_against_the_compose_spec() -> None:
    exe = shutil.which("check-jsonschema") or str(Path(sys.executable).parent / "check-jsonschema")
    proc = subprocess.run([exe, "--builtin-schema", "vendor.compose-spec", str(COMPOSE)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def _docker_compose() -> list[str] | None:
    """``docker compose`` (plugin) or ``docker-compose`` (standalone), if either runs here."""
    candidates = []
    if shutil.which("docker"):
        candidates.append(["docker", "compose"])
    if shutil.which("docker-compose"):
        candidates.append(["docker-compose"])
    for cmd in candidates:
        try:
            if subprocess.run([*cmd, "version"], capture_output=True, timeout=30).returncode == 0:
                return cmd
        except (OSError, subprocess.TimeoutExpired):
            continue
    return None


@pytest.mark.parametrize("profile", [None, "cpu", "gpu", "cluster"])
def test_docker_compose_config_validates_each_profile(profile: str | None, tmp_path: Path) -> None:
    cmd = _docker_compose()
    if cmd is None:
        pytest.skip("docker compose is not installed here (no compose plugin nor docker-compose): "
                    "validated against the compose spec by check-jsonschema instead")
    env_file = tmp_path / ".env"
    env_file.write_text((REPO / ".env.example").read_text())
    args = [*cmd, "--project-directory", str(REPO), "-f", str(COMPOSE), "--env-file", str(env_file)]
    if profile:
        args += ["--profile", profile]
    proc = subprocess.run([*args, "config", "--quiet"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_services_and_profiles(compose: dict) -> None:
    services = compose["services"]
    assert set(services) == {"qdrant", "api", "api-gpu", "qdrant-node1", "qdrant-node2", "qdrant-node3"}
    assert "profiles" not in services["qdrant"]
    assert services["api"]["profiles"] == ["cpu"]
    assert services["api-gpu"]["profiles"] == ["gpu"]
    for node in ("qdrant-node1", "qdrant-node2", "qdrant-node3"):
        assert services[node]["profiles"] == ["cluster"]
    devices = services["api-gpu"]["deploy"]["resources"]["reservations"]["devices"]
    assert devices[0]["driver"] == "nvidia" and "gpu" in devices[0]["capabilities"]


def test_qdrant_image_is_pinned_with_volume_healthcheck_and_api_key(compose: dict) -> None:
    for name, svc in compose["services"].items():
        if not name.startswith("qdrant"):
            continue
        assert re.fullmatch(r"qdrant/qdrant:v\d+\.\d+\.\d+", svc["image"]), svc["image"]
        assert svc["healthcheck"]["test"]
        assert "QDRANT__SERVICE__API_KEY" in svc["environment"]
        assert any(v.endswith(":/qdrant/storage") for v in svc["volumes"])
    for volume_ref in ("qdrant_storage", "qdrant_node1", "pagelens_data", "pagelens_models"):
        assert volume_ref in compose["volumes"]


def test_cluster_nodes_bootstrap_from_node1(compose: dict) -> None:
    services = compose["services"]
    assert services["qdrant-node1"]["environment"]["QDRANT__CLUSTER__ENABLED"] == "true"
    assert "--bootstrap" not in services["qdrant-node1"]["command"]
    for node in ("qdrant-node2", "qdrant-node3"):
        cmd = services[node]["command"]
        assert cmd[cmd.index("--bootstrap") + 1] == "http://qdrant-node1:6335"
        assert cmd[cmd.index("--uri") + 1] == f"http://{node}:6335"
        assert services[node]["depends_on"]["qdrant-node1"]["condition"] == "service_healthy"


def _is_setting(env_name: str) -> bool:
    """PAGELENS_<FIELD> of Settings, or PAGELENS_TUNING__<KNOB> of its tuning group."""
    from pagelens.core.settings import Tuning

    name = env_name.removeprefix("PAGELENS_").lower()
    if name.startswith("tuning__"):
        return name.removeprefix("tuning__") in Tuning.model_fields
    return name in Settings.model_fields and name != "tuning"


def test_api_services_talk_to_qdrant_with_known_settings(compose: dict) -> None:
    for name in ("api", "api-gpu"):
        svc = compose["services"][name]
        env = svc["environment"]
        assert env["PAGELENS_QDRANT_URL"].startswith("${PAGELENS_QDRANT_URL:-http://qdrant:6333")
        assert svc["depends_on"]["qdrant"]["condition"] == "service_healthy"
        assert svc["command"][:2] == ["pagelens", "serve"] and "0.0.0.0" in svc["command"]
        for key in env:
            if key.startswith("PAGELENS_"):
                assert _is_setting(key), f"{name}: {key} is not a setting"


def test_env_example_names_only_real_settings() -> None:
    for line in (REPO / ".env.example").read_text().splitlines():
        line = line.strip().lstrip("# ")
        match = re.match(r"(PAGELENS_[A-Z_]+)=", line)
        if match:
            assert _is_setting(match.group(1)), match.group(1)


def test_env_values_map_to_settings(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PAGELENS_QDRANT_URL", "http://qdrant:6333")
    monkeypatch.setenv("PAGELENS_QDRANT_SHARD_NUMBER", "3")
    monkeypatch.setenv("PAGELENS_QDRANT_REPLICATION_FACTOR", "2")
    monkeypatch.setenv("PAGELENS_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("PAGELENS_TUNING__EMBED_BATCH_SIZE", "16")
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    assert settings.tuning.embed_batch_size == 16
    assert settings.qdrant_url and settings.qdrant_shard_number == 3 and settings.qdrant_replication_factor == 2
    assert settings.data_dir == tmp_path
