"""triclip index / search: FAISS results against brute-force numpy search, recall figures recomputed here."""

from __future__ import annotations

import json

import numpy as np
import pytest

from clip_core.cli import main
from clip_core.tasks.corpus import Corpus
from clip_core.tasks.embed import _table, _write_shard, prepare_output, read_embeddings
from clip_core.tasks.index import build_index, load_index

from tests._tasks_util import save_tiny_model, write_images

pytest.importorskip("faiss")


def _fake_embed_output(out, n, dim=16, seed=0):
    """An embed output folder of random normalised rows, written with the embed engine's own shard writer."""
    rng = np.random.default_rng(seed)
    data = rng.standard_normal((n, dim)).astype(np.float32)
    data /= np.linalg.norm(data, axis=1, keepdims=True)
    corpus = Corpus("image", tuple(f"id{i}" for i in range(n)), tuple(f"/x/{i}.jpg" for i in range(n)), "test")
    todo, _ = prepare_output(corpus, out, 1000, "model", "pt")
    for index, start, stop in todo:
        _write_shard(out, index, _table(corpus, start, list(range(stop - start)), data[start:stop], dim), [])
    return data


def test_flat_index_is_exact(tmp_path):
    data = _fake_embed_output(tmp_path / "emb", 300)
    info = build_index(tmp_path / "emb", tmp_path / "idx")
    assert info["kind"] == "flat" and info["n"] == 300 and info["dim"] == 16 and info["recall@10"] == 1.0
    queries = np.random.default_rng(1).standard_normal((5, 16)).astype(np.float32)
    hits = load_index(tmp_path / "idx").search(queries, k=7)
    scores = queries @ data.T
    for q, row in enumerate(hits):
        order = np.argsort(-scores[q])[:7]
        assert [h["id"] for h in row] == [f"id{i}" for i in order]
        assert [h["path"] for h in row] == [f"/x/{i}.jpg" for i in order]
        np.testing.assert_allclose([h["score"] for h in row], scores[q, order], atol=1e-5)
    with pytest.raises(FileExistsError):
        build_index(tmp_path / "emb", tmp_path / "idx")
    with pytest.raises(ValueError, match="dim"):
        load_index(tmp_path / "idx").search(np.ones((1, 3)), 2)


@pytest.mark.parametrize("kind", ["ivf", "hnsw"])
def test_approximate_index_reports_its_recall(kind, tmp_path):
    data = _fake_embed_output(tmp_path / "emb", 2000)
    info = build_index(tmp_path / "emb", tmp_path / "idx", kind=kind, nprobe=2, ef_search=16)
    loaded = load_index(tmp_path / "idx")
    rng = np.random.default_rng(0)  # the same queries build_index drew: 1000 rows of the data
    queries = data[rng.choice(len(data), size=1000, replace=False)]
    exact = np.argsort(-(queries @ data.T), axis=1)[:, :10]
    found = [[int(h["id"][2:]) for h in row] for row in loaded.search(queries, 10)]
    recall = np.mean([len(set(e) & set(f)) / 10 for e, f in zip(exact, found)])
    assert info["kind"] == kind and info["recall@10"] == pytest.approx(recall, abs=1e-4)
    assert 0.2 < recall <= 1.0


def test_auto_switches_to_ivf_above_the_threshold(tmp_path):
    _fake_embed_output(tmp_path / "emb", 500)
    assert build_index(tmp_path / "emb", tmp_path / "idx", exact_below=100)["kind"] == "ivf"


def test_index_and_search_cli(tmp_path, capsys):
    folder = save_tiny_model(tmp_path / "model")
    root = tmp_path / "images"
    paths = write_images(root, 8)
    assert main(["embed", "--model", str(folder), "--images", str(root), "--out", str(tmp_path / "emb")]) == 0
    assert main(["index", str(tmp_path / "emb"), str(tmp_path / "idx")]) == 0
    capsys.readouterr()
    rows = read_embeddings(tmp_path / "emb")
    assert main(["search", str(tmp_path / "idx"), "--image", str(paths[3]), "-k", "3"]) == 0
    hits = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert len(hits) == 3 and hits[0]["id"] == rows["id"][3] and hits[0]["score"] == pytest.approx(1, abs=1e-5)
    expected = np.argsort(-(rows["embedding"] @ rows["embedding"][3]))[:3]
    assert [h["path"] for h in hits] == [rows["path"][i] for i in expected]
    assert main(["search", str(tmp_path / "idx"), "--text", "a blue sky", "-k", "20", "--backend", "flax"]) == 0
    hits = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert len(hits) == 8 and [h["score"] for h in hits] == sorted((h["score"] for h in hits), reverse=True)
    (tmp_path / "bad.jpg").write_bytes(b"nope")
    assert main(["search", str(tmp_path / "idx"), "--image", str(tmp_path / "bad.jpg")]) == 2
    assert "cannot read the query image" in capsys.readouterr().err
    assert main(["search", str(tmp_path / "nowhere"), "--text", "x"]) == 2
