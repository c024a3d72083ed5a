"""triclip embed: parquet shards equal to normalised features computed directly (transformers' model), on every
backend; bad images reported, never fatal; a killed run resumes without redoing finished shards."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from PIL import Image

from clip_core.cli import main
from clip_core.tasks.corpus import image_source, text_source
from clip_core.tasks.embed import embed_corpus, read_embeddings

from tests._tasks_util import save_tiny_model, write_images
from tests.conftest import ROOT

TEXTS = ["a photo of a cat", "", "a dog on the beach", "Grace Hopper in uniform, 1984", "x" * 400]


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return save_tiny_model(tmp_path_factory.mktemp("tiny-clip"))


@pytest.fixture(scope="module")
def hf(folder):
    transformers = pytest.importorskip("transformers")
    return (transformers.CLIPModel.from_pretrained(folder).eval(),
            transformers.CLIPTokenizerFast.from_pretrained(folder), transformers.CLIPImageProcessor.from_pretrained(folder))


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    root = tmp_path_factory.mktemp("images")
    paths = write_images(root, 9)
    (root / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    Image.open(root / "000.jpg").save(root / "sub" / "truncated.png", format="PNG")
    (root / "sub" / "truncated.png").write_bytes((root / "sub" / "truncated.png").read_bytes()[:60])
    (root / "notes.txt").write_text("not an image, not listed")
    return root, paths


def _hf_images(hf, paths):
    import torch

    model, _, ip = hf
    with torch.no_grad():
        out = model.get_image_features(**ip([Image.open(p).convert("RGB") for p in paths], return_tensors="pt"))
    return (out / out.norm(dim=-1, keepdim=True)).numpy()


def _hf_texts(hf, texts):
    import torch

    model, tok, _ = hf
    with torch.no_grad():
        out = model.get_text_features(**tok(texts, padding=True, truncation=True, return_tensors="pt"))
    return (out / out.norm(dim=-1, keepdim=True)).numpy()


def test_embed_images_cli(folder, hf, images, tmp_path, capsys):
    import pyarrow.parquet as pq

    root, paths = images
    out = tmp_path / "out"
    assert main(["embed", "--model", str(folder), "--images", str(root), "--out", str(out), "--batch-size", "3",
                 "--shard-size", "4"]) == 0
    summary = json.loads(capsys.readouterr().out.splitlines()[0])
    assert summary["n_items"] == 11 and summary["n_embedded"] == 9 and summary["n_errors"] == 2
    assert sorted(p.name for p in out.glob("part-*.parquet")) == [f"part-0000{i}.parquet" for i in range(3)]
    errors = [json.loads(line) for line in (out / "errors.jsonl").read_text().splitlines()]
    assert sorted(e["id"] for e in errors) == ["broken.jpg", "sub/truncated.png"]
    assert all(os.path.isabs(e["path"]) and e["error"] for e in errors)
    table = pq.read_table(out / "part-00000.parquet")
    assert table.column_names == ["id", "path", "embedding"]
    assert str(table.schema.field("embedding").type) == "fixed_size_list<element: float>[8]"
    rows = read_embeddings(out)
    assert rows["id"] == [p.relative_to(root).as_posix() for p in paths]
    assert rows["path"] == [str(p.resolve()) for p in paths]
    np.testing.assert_allclose(rows["embedding"], _hf_images(hf, paths), atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(rows["embedding"], axis=1), 1, atol=1e-6)


def test_embed_texts(folder, hf, tmp_path):
    path = tmp_path / "texts.txt"
    path.write_text("\n".join(TEXTS) + "\n", encoding="utf-8")
    summary = embed_corpus(text_source(path), tmp_path / "out", folder, batch_size=2, shard_size=3)
    assert summary["n_embedded"] == 4 and summary["n_errors"] == 0 and summary["n_shards"] == 2
    rows = read_embeddings(tmp_path / "out")
    assert rows["id"] == ["0", "2", "3", "4"] and rows["text"] == [t for t in TEXTS if t]
    np.testing.assert_allclose(rows["embedding"], _hf_texts(hf, [t for t in TEXTS if t]), atol=1e-5)


@pytest.mark.parametrize("backend", ["tf", "flax"])
def test_backends_give_the_same_shards(backend, folder, images, tmp_path):
    pytest.importorskip("tensorflow" if backend == "tf" else "flax")
    root, _ = images
    texts = tmp_path / "texts.txt"
    texts.write_text("\n".join(TEXTS), encoding="utf-8")
    for name, corpus in (("images", image_source(root)), ("texts", text_source(texts))):
        embed_corpus(corpus, tmp_path / f"pt-{name}", folder, "pt", batch_size=4, shard_size=5)
        embed_corpus(corpus, tmp_path / f"{backend}-{name}", folder, backend, batch_size=4, shard_size=5)
        ours, theirs = read_embeddings(tmp_path / f"{backend}-{name}"), read_embeddings(tmp_path / f"pt-{name}")
        assert ours["id"] == theirs["id"]
        np.testing.assert_allclose(ours["embedding"], theirs["embedding"], atol=1e-5)


def test_list_file_and_parquet_sources(folder, hf, images, tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    root, paths = images
    listing = root / "list.txt"
    listing.write_text("# two images, relative to this file\nsub/001.jpg\n\n004.jpg\n")
    embed_corpus(image_source(listing), tmp_path / "a", folder)
    rows = read_embeddings(tmp_path / "a")
    assert rows["id"] == ["sub/001.jpg", "004.jpg"]
    np.testing.assert_allclose(rows["embedding"], _hf_images(hf, [root / "sub/001.jpg", root / "004.jpg"]),
                               atol=1e-5)
    table = pa.table({"path": ["004.jpg", "missing.jpg", "sub/003.jpg"], "id": ["a", "b", "c"],
                      "caption": ["four", "none", "three"]})
    pq.write_table(table, root / "paths.parquet")
    summary = embed_corpus(image_source(root / "paths.parquet"), tmp_path / "b", folder)
    rows = read_embeddings(tmp_path / "b")
    assert summary["n_errors"] == 1 and rows["id"] == ["a", "c"] and rows["caption"] == ["four", "three"]
    np.testing.assert_allclose(rows["embedding"], _hf_images(hf, [root / "004.jpg", root / "sub/003.jpg"]),
                               atol=1e-5)


def test_bad_sources_and_other_jobs(folder, images, tmp_path, capsys):
    root, _ = images
    assert main(["embed", "--model", str(folder), "--images", str(tmp_path / "nope"), "--out", str(tmp_path)]) == 2
    assert "image source not found" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert main(["embed", "--model", str(folder), "--images", str(tmp_path / "empty"), "--out", str(tmp_path)]) == 2
    assert "no image files" in capsys.readouterr().err
    out = str(tmp_path / "out")
    assert main(["embed", "--model", str(folder), "--images", str(root), "--out", out, "--shard-size", "5"]) == 0
    assert main(["embed", "--model", str(folder), "--images", str(root), "--out", out, "--shard-size", "6"]) == 2
    assert "another embedding job" in capsys.readouterr().err
    assert main(["embed", "--model", str(folder), "--images", str(root), "--out", out, "--shard-size", "6",
                 "--overwrite"]) == 0
    assert len(list((tmp_path / "out").glob("part-*.parquet"))) == 2


def test_killed_run_resumes(folder, tmp_path):
    """Kill the CLI (SIGKILL) once its first shard is on disk; the rerun keeps the finished shards (same bytes,
    untouched) and the result equals an uninterrupted run."""
    root = tmp_path / "images"
    write_images(root, 40, seed=3)
    out, ref = tmp_path / "out", tmp_path / "ref"
    args = ["embed", "--model", str(folder), "--images", str(root), "--batch-size", "1", "--shard-size", "1"]
    env = dict(os.environ, TRICLIP_NO_PROGRESS="1", PYTHONPATH=str(ROOT))
    proc = subprocess.Popen([sys.executable, "-m", "clip_core.cli", *args, "--out", str(out)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while not (out / "part-00000.parquet").exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.002)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done = {p.name: (p.stat().st_mtime_ns, p.read_bytes()) for p in out.glob("part-*.parquet")}
    assert 1 <= len(done) < 40, len(done)
    assert not (out / "summary.json").exists()
    assert main([*args, "--out", str(out)]) == 0
    assert main([*args, "--out", str(ref)]) == 0
    for name, (mtime, data) in done.items():
        assert (out / name).stat().st_mtime_ns == mtime and (out / name).read_bytes() == data
    assert not list(out.glob(".*.tmp"))
    got, want = read_embeddings(out), read_embeddings(ref)
    assert got["id"] == want["id"] and len(got["id"]) == 40
    np.testing.assert_array_equal(got["embedding"], want["embedding"])
    assert json.loads((out / "summary.json").read_text())["n_embedded"] == 40
