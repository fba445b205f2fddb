"""``--shard I/N`` on many machines: two data dirs stand in for two hosts that share one Qdrant server
and one page-image folder (mounted at different paths); the scheduler examples in ``docs/deploy/``
(a Kubernetes Indexed Job, a Slurm array) are validated offline and run with a stand-in ``pagelens``."""

from __future__ import annotations

import copy
import os
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import REPO
from fastapi.testclient import TestClient
from pagelens.ingest.manifest import parse_shard
from PIL import Image

K8S_JOB = REPO / "docs" / "deploy" / "k8s" / "indexed-job.yaml"
SLURM_ARRAY = REPO / "docs" / "deploy" / "slurm" / "index-array.sh"


def stand_in_pagelens(tmp_path: Path) -> tuple[Path, Path]:
    """A ``pagelens`` on PATH that records its arguments (one per line) to ``$ARGS_OUT``: (bin, out)."""
    bin_dir, out = tmp_path / "bin", tmp_path / "calls"
    bin_dir.mkdir()
    out.mkdir()
    fake = bin_dir / "pagelens"
    fake.write_text('#!/bin/sh\nprintf "%s\\n" "$@" > "$ARGS_OUT"\n')
    fake.chmod(0o755)
    return bin_dir, out


# -- Kubernetes Indexed Job ----------------------------------------------------------------------------
def _k8s_docs() -> dict[str, dict[str, Any]]:
    return {d["kind"]: d for d in yaml.safe_load_all(K8S_JOB.read_text()) if d}


def test_k8s_manifest_is_valid_against_the_kubernetes_schema() -> None:
    import kubernetes_validate

    docs = _k8s_docs()
    assert set(docs) == {"Job", "PersistentVolumeClaim"}
    for doc in docs.values():  # strict: an unknown or misspelt field fails too
        assert kubernetes_validate.validate(doc, "1.33", strict=True) == "1.33"
    typo = copy.deepcopy(docs["Job"])
    typo["spec"]["completionsMode"] = typo["spec"].pop("completionMode")
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(typo, "1.33", strict=True)


def test_k8s_indexed_job_gives_each_pod_one_shard(tmp_path: Path) -> None:
    docs = _k8s_docs()
    spec = docs["Job"]["spec"]
    assert spec["completionMode"] == "Indexed" and spec["backoffLimitPerIndex"] >= 1
    pod = spec["template"]["spec"]
    assert pod["restartPolicy"] == "Never"
    (container,) = pod["containers"]
    env = {e["name"]: e.get("value") for e in container["env"]}
    n = spec["completions"]
    assert spec["parallelism"] == n and env["SHARD_COUNT"] == str(n)
    # the multi-host layout: a Qdrant server, a shared page-image folder on a ReadWriteMany volume
    assert env["PAGELENS_QDRANT_URL"].startswith("http")
    key = next(e for e in container["env"] if e["name"] == "PAGELENS_QDRANT_API_KEY")
    assert key["valueFrom"]["secretKeyRef"]["name"]
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    images_volume = volumes[mounts[env["PAGELENS_PAGE_IMAGES_DIR"]]]
    claim = images_volume["persistentVolumeClaim"]["claimName"]
    assert docs["PersistentVolumeClaim"]["metadata"]["name"] == claim
    assert docs["PersistentVolumeClaim"]["spec"]["accessModes"] == ["ReadWriteMany"]
    assert "emptyDir" in volumes[mounts[env["PAGELENS_DATA_DIR"]]]  # per pod: nothing shared there
    from pagelens.core.settings import Settings

    fields = set(Settings.model_fields)
    for name in env:
        if name.startswith("PAGELENS_"):
            assert name.removeprefix("PAGELENS_").lower() in fields, f"{name} is not a setting"

    # run the container's command as Kubernetes would (sh -c ARG), for every completion index
    assert container["command"] == ["sh", "-c"]
    bin_dir, out = stand_in_pagelens(tmp_path)
    shards = []
    for index in range(n):
        run_env = {k: v for k, v in env.items() if v is not None}
        run_env.update(PATH=f"{bin_dir}:/usr/bin:/bin", JOB_COMPLETION_INDEX=str(index),
                       ARGS_OUT=str(out / f"{index}"))
        subprocess.run(["sh", "-c", *container["args"]], env=run_env, check=True, timeout=30)
        argv = (out / f"{index}").read_text().splitlines()
        assert argv[:2] == ["index", "/archive"] and "/archive" in mounts
        assert argv[argv.index("--collection") + 1] == env["COLLECTION"]
        shards.append(parse_shard(argv[argv.index("--shard") + 1]))
    assert shards == [(i, n) for i in range(n)]


# -- Slurm array -------------------------------------------------------------------------------------
def test_slurm_array_script_gives_each_task_one_shard(tmp_path: Path) -> None:
    subprocess.run(["bash", "-n", str(SLURM_ARRAY)], check=True)
    text = SLURM_ARRAY.read_text()
    sbatch = dict(re.findall(r"^#SBATCH\s+--([\w-]+)=(\S+)", text, flags=re.M))
    first, last = map(int, sbatch["array"].split("-"))
    assert first == 0 and last > first
    # every #SBATCH line comes before the first command (sbatch stops reading them there)
    lines = text.splitlines()
    first_cmd = next(i for i, line in enumerate(lines) if line.strip() and not line.startswith("#"))
    assert all(i < first_cmd for i, line in enumerate(lines) if line.startswith("#SBATCH"))

    bin_dir, out = stand_in_pagelens(tmp_path)
    base = {"PATH": f"{bin_dir}:/usr/bin:/bin", "TMPDIR": str(tmp_path / "tmp"), "SLURM_ARRAY_JOB_ID": "77",
            "SLURM_ARRAY_TASK_MIN": str(first), "SLURM_ARRAY_TASK_MAX": str(last),
            "SLURM_ARRAY_TASK_COUNT": str(last - first + 1), "ARCHIVE": "/mnt/archive",
            "PAGELENS_QDRANT_URL": "http://qdrant:6333", "PAGELENS_PAGE_IMAGES_DIR": "/shared/pages"}
    n = last - first + 1
    shards = []
    for task in range(first, last + 1):
        env = {**base, "SLURM_ARRAY_TASK_ID": str(task), "ARGS_OUT": str(out / str(task))}
        subprocess.run(["bash", str(SLURM_ARRAY)], env=env, check=True, timeout=30, capture_output=True)
        argv = (out / str(task)).read_text().splitlines()
        assert argv[:2] == ["index", "/mnt/archive"] and "--json" in argv
        shards.append(parse_shard(argv[argv.index("--shard") + 1]))
    assert shards == [(i, n) for i in range(n)]
    assert (tmp_path / "tmp" / f"pagelens-77-{last}").is_dir()  # a per-task data dir on local disk

    # refused: the embedded store (one host only), no shared image folder, a non-contiguous array
    for drop, needle in (("PAGELENS_QDRANT_URL", "embedded store is one host only"),
                         ("PAGELENS_PAGE_IMAGES_DIR", "every node and the API servers mount")):
        env = {k: v for k, v in base.items() if k != drop} | {"SLURM_ARRAY_TASK_ID": "0", "ARGS_OUT": "/dev/null"}
        proc = subprocess.run(["bash", str(SLURM_ARRAY)], env=env, capture_output=True, text=True, timeout=30)
        assert proc.returncode != 0 and needle in proc.stderr
    env = {**base, "SLURM_ARRAY_TASK_ID": "0", "SLURM_ARRAY_TASK_MAX": str(last + 3), "ARGS_OUT": "/dev/null"}
    proc = subprocess.run(["bash", str(SLURM_ARRAY)], env=env, capture_output=True, text=True, timeout=30)
    assert proc.returncode == 2 and "contiguous" in proc.stderr


def test_readme_shard_section_names_the_layout() -> None:
    readme = (REPO / "README.md").read_text()
    section = readme[readme.index("### Shards on many machines"):]
    section = section[: section.index("\n## ")]
    for needle in ("PAGELENS_PAGE_IMAGES_DIR", "PAGELENS_QDRANT_URL", "one host", "docs/deploy/k8s/indexed-job.yaml",
                   "docs/deploy/slurm/index-array.sh"):
        assert needle in section, needle
    assert "on one machine or many" not in readme.replace(section, "")  # the old unqualified claim


# -- two hosts, one Qdrant, one image folder ------------------------------------------------------------
def make_pdf(path: Path, label: str) -> Path:
    import pymupdf

    doc = pymupdf.open()
    page = doc.new_page(width=300, height=400)
    page.insert_text((30, 60), f"{label} quarterly report", fontsize=14)
    path.parent.mkdir(parents=True, exist_ok=True)
    doc.save(path)
    doc.close()
    return path


@pytest.fixture(scope="module")
def embedder_256(tiny_models: dict[str, Path]) -> Any:
    """The tiny retriever at 256 px, loaded once for this module's services (loading dominates their time)."""
    from pagelens.core.settings import Settings
    from pagelens.models.embedder import ColSmolEmbedder

    return ColSmolEmbedder(Settings(_env_file=None, retriever_model=str(tiny_models["retriever"]),  # type: ignore[call-arg]
                                    page_longest_edge=256, device="cpu"))


@pytest.mark.slow
def test_two_hosts_share_one_server_and_one_image_root(settings_factory: Any, embedder_256: Any,
                                                       tmp_path: Path) -> None:
    """Host A and host B each index their shard (``--shard 0/2``, ``1/2``) into one collection of one
    Qdrant; host B then serves search, every page image and answers, host A's pages included. Host C
    without the shared folder says which setting is missing instead of serving a wrong file."""
    from pagelens.index.pipeline.indexer import IndexInput
    from pagelens.index.stores.server_store import QdrantServerStore
    from pagelens.ingest import DEFAULT_INCLUDE
    from pagelens.ingest.manifest import collect_inputs, select_shard
    from qdrant_client import QdrantClient

    from pagelens.app.service import PagelensService
    from pagelens.core.errors import IngestError
    from pagelens.server import create_app

    archive = tmp_path / "archive"
    for i in range(6):
        make_pdf(archive / f"doc{i}.pdf", f"doc{i}")
    nfs = tmp_path / "nfs" / "pagelens-pages"  # the shared folder...
    nfs.mkdir(parents=True)
    (tmp_path / "hostB-mnt").symlink_to(nfs)  # ...mounted elsewhere on host B
    client = QdrantClient(":memory:")
    store_a = QdrantServerStore(client, prefix="t_")
    store_b = QdrantServerStore(client, prefix="t_")
    store_b._lock = store_a._lock  # local mode is not thread-safe: one lock for the one client
    common = {"page_longest_edge": 256, "ingest_workers": 0, "max_new_tokens": 2}
    host_a = PagelensService(settings_factory(data_dir=tmp_path / "hostA", page_images_dir=nfs, **common),
                             store=store_a, embedder=embedder_256)
    b_settings = settings_factory(data_dir=tmp_path / "hostB", page_images_dir=tmp_path / "hostB-mnt", **common)
    host_b = PagelensService(b_settings, store=store_b, embedder=embedder_256)

    found = collect_inputs([archive], DEFAULT_INCLUDE, [], [])
    names: dict[str, set[str]] = {}
    for host, shard in ((host_a, (0, 2)), (host_b, (1, 2))):
        mine = select_shard(found, shard)
        report = host.index("archive", [IndexInput(path=f.path, name=f.name) for f in mine])
        assert report.ok and report.count("indexed") == len(mine)
        names[host.settings.data_dir.name] = {d.doc_name for d in report.documents}
    assert names["hostA"] and names["hostB"] and not names["hostA"] & names["hostB"]
    assert names["hostA"] | names["hostB"] == {f"doc{i}.pdf" for i in range(6)}
    # nothing went to either host's own data dir; the payloads hold paths relative to the shared root
    assert not (tmp_path / "hostA" / "pages").exists() and not (tmp_path / "hostB" / "pages").exists()
    payloads = [p for _, p in store_b.iter_payloads("archive")]
    assert len(payloads) == 6 and all(not Path(p["image_path"]).is_absolute() for p in payloads)

    with TestClient(create_app(b_settings, host_b, web_ui=False)) as api:
        r = api.post("/v1/collections/archive/search", json={"question": "quarterly report", "k": 6,
                                                             "mode": "visual"})
        assert r.status_code == 200, r.text
        results = r.json()["results"]
        assert {h["doc_name"] for h in results} == names["hostA"] | names["hostB"]
        by_name = {p["doc_name"]: p for p in payloads}
        for hit in results:  # every page image, host A's included, from host B
            img = api.get(hit["image_url"])
            assert img.status_code == 200, img.text
            p = by_name[hit["doc_name"]]
            assert img.content == (nfs / p["image_path"]).read_bytes()
            from io import BytesIO

            assert Image.open(BytesIO(img.content)).size == (p["width"], p["height"])
        a_doc = sorted(names["hostA"])[0]
        doc_id = by_name[a_doc]["doc_id"]
        r = api.post("/v1/collections/archive/ask", json={"question": "what is this report?", "k": 1,
                                                          "mode": "visual", "filter": {"doc_ids": [doc_id]}})
        assert r.status_code == 200, r.text
        assert [(c["doc_id"], c["page_no"]) for c in r.json()["citations"]] == [(doc_id, 1)]
    hit = host_b.search("archive", "quarterly report", k=1, mode="visual", page_filter=None)[0]
    assert hit.image_path and hit.image_path.startswith(str(tmp_path / "hostB-mnt"))

    # host C: same server, its own local page folder (the shared one not mounted/configured)
    c_settings = settings_factory(data_dir=tmp_path / "hostC", **common)
    store_c = QdrantServerStore(client, prefix="t_")
    store_c._lock = store_a._lock
    host_c = PagelensService(c_settings, store=store_c, embedder=embedder_256, answerer=host_b.answerer)
    with TestClient(create_app(c_settings, host_c, web_ui=False)) as api:
        url = f"/v1/collections/archive/documents/{doc_id}/pages/1.png"
        r = api.get(url)
        assert r.status_code == 404 and r.json()["error"]["code"] == "page_image_missing"
        assert "PAGELENS_PAGE_IMAGES_DIR" in r.json()["error"]["message"]
    from pagelens.core.types import PageFilter

    with pytest.raises(IngestError, match="PAGELENS_PAGE_IMAGES_DIR"):
        host_c.ask("archive", "what is this report?", k=1, mode="visual", page_filter=PageFilter(doc_ids=[doc_id]))
    client.close()


@pytest.mark.slow
def test_cli_shard_says_what_many_hosts_need(settings_factory: Any, tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """Announced once per run: the embedded store is one host; with a server, a local image folder."""
    from typer.testing import CliRunner

    from pagelens.cli import app, shard_layout_notes

    settings = settings_factory(page_longest_edge=256, ingest_workers=0)
    for key in [k for k in os.environ if k.startswith("PAGELENS_")]:
        monkeypatch.delenv(key)
    for key, value in {"DATA_DIR": str(settings.data_dir), "RETRIEVER_MODEL": settings.retriever_model,
                       "PAGE_LONGEST_EDGE": "256", "DEVICE": "cpu", "INGEST_WORKERS": "0"}.items():
        monkeypatch.setenv(f"PAGELENS_{key}", value)
    monkeypatch.chdir(tmp_path)
    make_pdf(tmp_path / "in" / "a.pdf", "a")
    result = CliRunner().invoke(app, ["index", str(tmp_path / "in"), "-c", "s", "--shard", "0/1"])
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    assert text.count("note: --shard with the embedded store: one host only") == 1
    assert "PAGELENS_QDRANT_URL" in text and "PAGELENS_PAGE_IMAGES_DIR" in text
    server = settings_factory(qdrant_url="http://qdrant:6333")
    (note,) = shard_layout_notes(server)
    assert str(server.pages_dir) in note and "PAGELENS_PAGE_IMAGES_DIR" in note
    assert shard_layout_notes(settings_factory(qdrant_url="http://q:6333", page_images_dir=tmp_path)) == []
