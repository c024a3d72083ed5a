"""triclip embed --engine ray on a real local Ray cluster (a head without CPUs and two 1-CPU worker nodes, started
here): the same files as the local engine, and resumable the same way."""

from __future__ import annotations

import json

import numpy as np
import pytest

from clip_core.tasks.corpus import image_source
from clip_core.tasks.embed import embed_corpus, read_embeddings

from tests._tasks_util import save_tiny_model, write_images

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def cluster():
    ray = pytest.importorskip("ray")
    pytest.importorskip("ray.data")
    from ray.cluster_utils import Cluster

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0, "include_dashboard": False})
    for _ in range(2):
        cluster.add_node(num_cpus=1)
    ray.init(address=cluster.address, include_dashboard=False, log_to_driver=False)
    try:
        yield ray
    finally:
        ray.shutdown()
        cluster.shutdown()


def test_ray_engine_matches_local_engine_and_resumes(cluster, tmp_path, monkeypatch):
    from clip_core.cli import main

    monkeypatch.setenv("TRICLIP_NO_PROGRESS", "1")
    folder = save_tiny_model(tmp_path / "model")
    root = tmp_path / "images"
    write_images(root, 14)
    (root / "bad.jpg").write_bytes(b"not an image")
    corpus = image_source(root)
    local = embed_corpus(corpus, tmp_path / "local", folder, batch_size=2, shard_size=3)
    assert cluster.cluster_resources()["CPU"] == 2 and len([n for n in cluster.nodes() if n["Alive"]]) == 3
    args = ["embed", "--model", str(folder), "--images", str(root), "--batch-size", "2", "--shard-size", "3",
            "--engine", "ray", "--num-actors", "2"]
    assert main([*args, "--out", str(tmp_path / "ray")]) == 0
    ours, theirs = read_embeddings(tmp_path / "ray"), read_embeddings(tmp_path / "local")
    assert ours["id"] == theirs["id"] and ours["path"] == theirs["path"] and len(ours["id"]) == 14
    # same rows; values equal up to float32 rounding (an actor with one CPU runs torch on one thread)
    np.testing.assert_allclose(ours["embedding"], theirs["embedding"], atol=1e-6)
    summary = json.loads((tmp_path / "ray" / "summary.json").read_text())
    assert {k: summary[k] for k in ("n_items", "n_embedded", "n_errors", "n_shards")} == \
        {k: local[k] for k in ("n_items", "n_embedded", "n_errors", "n_shards")}
    assert (tmp_path / "ray" / "errors.jsonl").read_text() == (tmp_path / "local" / "errors.jsonl").read_text()
    # resume: remove two shards, rerun on Ray; only they are redone, the rest stay untouched
    kept = {p.name: p.stat().st_mtime_ns for p in (tmp_path / "ray").glob("part-*.parquet")}
    for name in ("part-00001.parquet", "part-00004.parquet"):
        (tmp_path / "ray" / name).unlink()
        kept.pop(name)
    assert main([*args, "--out", str(tmp_path / "ray")]) == 0
    assert all((tmp_path / "ray" / n).stat().st_mtime_ns == t for n, t in kept.items())
    np.testing.assert_allclose(read_embeddings(tmp_path / "ray")["embedding"], theirs["embedding"], atol=1e-6)


def test_ray_engine_on_onnx_runtime(cluster, tmp_path, monkeypatch):
    """--backend onnx: the driver exports once; the actors load the export (no torch in them) and write the
    shards the local PyTorch engine writes."""
    pytest.importorskip("onnxruntime")
    from clip_core.cli import main

    monkeypatch.setenv("TRICLIP_NO_PROGRESS", "1")
    monkeypatch.setenv("TRICLIP_CACHE", str(tmp_path / "cache"))
    folder = save_tiny_model(tmp_path / "model")
    root = tmp_path / "images"
    write_images(root, 7)
    corpus = image_source(root)
    embed_corpus(corpus, tmp_path / "local", folder, batch_size=2, shard_size=3)
    assert main(["embed", "--model", str(folder), "--images", str(root), "--batch-size", "2", "--shard-size", "3",
                 "--engine", "ray", "--num-actors", "2", "--backend", "onnx", "--out", str(tmp_path / "ray")]) == 0
    ours, theirs = read_embeddings(tmp_path / "ray"), read_embeddings(tmp_path / "local")
    assert ours["id"] == theirs["id"] and ours["manifest"]["backend"] == "onnx"
    np.testing.assert_allclose(ours["embedding"], theirs["embedding"], atol=1e-5)
    assert len(list((tmp_path / "cache" / "onnx").iterdir())) == 1
