"""``--backend onnx``: a model run by a real ONNX Runtime, exported once by PyTorch into the cache. Its embeddings,
zero-shot scores and exports agree with transformers 4.57.6 live; the cache is reused across processes without
importing torch and follows changes of the model's files; a graph that disagrees with its source is refused."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from clip_core import CLIPProcessor
from clip_core.tasks import ZeroShotImageClassification
from clip_core.tasks.corpus import image_source, text_source
from clip_core.tasks.embed import embed_corpus, read_embeddings

from tests._tasks_util import random_image, save_tiny_model, write_images
from tests.conftest import ROOT

ort = pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")  # the PyTorch exporter's ONNX writer

TEXTS = ["a photo of a cat", "a dog on the beach", "Grace Hopper in uniform, 1984", "x " * 100]


@pytest.fixture()
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("TRICLIP_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("TRICLIP_NO_PROGRESS", "1")
    return tmp_path / "cache"


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return save_tiny_model(tmp_path_factory.mktemp("tiny-clip"))


@pytest.fixture(scope="module")
def hf(folder):
    transformers = pytest.importorskip("transformers")
    return transformers, transformers.CLIPModel.from_pretrained(folder).eval(), \
        transformers.CLIPTokenizerFast.from_pretrained(folder), transformers.CLIPImageProcessor.from_pretrained(folder)


def _hf_features(hf, paths=None, texts=None):
    import torch

    _, model, tok, ip = hf
    with torch.no_grad():
        if texts is not None:
            out = model.get_text_features(**tok(texts, padding=True, truncation=True, return_tensors="pt"))
        else:
            out = model.get_image_features(**ip([Image.open(p).convert("RGB") for p in paths], return_tensors="pt"))
    return (out / out.norm(dim=-1, keepdim=True)).numpy()


def test_embed_images_and_texts_match_transformers(folder, hf, cache, tmp_path):
    root = tmp_path / "images"
    paths = write_images(root, 7)
    (root / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not a jpeg")
    summary = embed_corpus(image_source(root), tmp_path / "img", folder, "onnx", batch_size=3, shard_size=4)
    assert summary["n_embedded"] == 7 and summary["n_errors"] == 1
    rows = read_embeddings(tmp_path / "img")
    assert rows["manifest"]["backend"] == "onnx"
    assert rows["id"] == [p.relative_to(root).as_posix() for p in paths]
    np.testing.assert_allclose(rows["embedding"], _hf_features(hf, paths=paths), atol=1e-5)
    texts = tmp_path / "texts.txt"
    texts.write_text("\n".join(TEXTS), encoding="utf-8")
    embed_corpus(text_source(texts), tmp_path / "txt", folder, "onnx", batch_size=3, shard_size=2)
    np.testing.assert_allclose(read_embeddings(tmp_path / "txt")["embedding"], _hf_features(hf, texts=TEXTS),
                               atol=1e-5)
    entries = list((cache / "onnx").iterdir())  # one export served both jobs
    assert len(entries) == 1 and sorted(p.name for p in entries[0].glob("*.onnx")) == ["text.onnx", "vision.onnx"]


def test_cache_is_reused_without_torch_and_follows_the_model(hf, cache, tmp_path):
    from clip_core.tasks.onnx_model import OnnxCLIPModel, exported_folder

    model_dir = save_tiny_model(tmp_path / "model", seed=3)
    entry = exported_folder(model_dir)
    stamp = (entry / "vision.onnx").stat().st_mtime_ns
    assert exported_folder(model_dir) == entry and (entry / "vision.onnx").stat().st_mtime_ns == stamp
    pixels = np.random.default_rng(0).standard_normal((2, 3, 32, 32)).astype(np.float32)
    script = ("import sys, json, numpy as np\n"
              "from clip_core.tasks.onnx_model import OnnxCLIPModel\n"
              f"m = OnnxCLIPModel.from_pretrained({str(model_dir)!r})\n"
              f"x = np.load({str(tmp_path / 'x.npy')!r})\n"
              "print(json.dumps({'features': m.get_image_features(x).tolist(), 'folder': str(m.folder),\n"
              "                  'torch': 'torch' in sys.modules}))\n")
    np.save(tmp_path / "x.npy", pixels)
    out = subprocess.run([sys.executable, "-c", script], check=True, capture_output=True, text=True, cwd=ROOT)
    got = json.loads(out.stdout.strip().splitlines()[-1])
    assert got["folder"] == str(entry) and got["torch"] is False
    import torch
    import transformers

    theirs = transformers.CLIPModel.from_pretrained(model_dir).eval()
    with torch.no_grad():
        expected = theirs.get_image_features(pixel_values=torch.from_numpy(pixels)).numpy()
    np.testing.assert_allclose(np.array(got["features"]), expected, atol=1e-5)
    # new weights in the same folder: a new cache entry, with the new model's features
    save_tiny_model(model_dir, seed=4)
    assert exported_folder(model_dir) != entry
    theirs = transformers.CLIPModel.from_pretrained(model_dir).eval()
    with torch.no_grad():
        expected = theirs.get_image_features(pixel_values=torch.from_numpy(pixels)).numpy()
    np.testing.assert_allclose(OnnxCLIPModel.from_pretrained(model_dir).get_image_features(pixels), expected,
                               atol=1e-5)


def test_zero_shot_pipeline_matches_transformers(folder, hf, cache):
    from clip_core.tasks.onnx_model import OnnxCLIPModel

    transformers, model, tok, ip = hf
    theirs = transformers.pipeline("zero-shot-image-classification", model=model, tokenizer=tok, image_processor=ip,
                                   framework="pt")
    ours = ZeroShotImageClassification(OnnxCLIPModel.from_pretrained(folder), CLIPProcessor.from_pretrained(folder))
    rng = np.random.default_rng(1)
    labels = ["cat", "dog", "red car"]
    for image in (random_image(rng, 30, 41), random_image(rng, 52, 33)):
        expected, got = theirs(image, candidate_labels=labels), ours(image, candidate_labels=labels)
        assert [g["label"] for g in got] == [e["label"] for e in expected]
        np.testing.assert_allclose([g["score"] for g in got], [e["score"] for e in expected], atol=1e-5)


def test_an_export_folder_runs_jobs_alone(folder, hf, cache, tmp_path):
    """`triclip export --to onnx` copies the tokenizer and image processor: the folder alone embeds texts and
    images (without preprocessor_config.json, the image size comes from export.json)."""
    from clip_core.cli import main
    from clip_core.tasks.onnx_model import OnnxCLIPModel

    export = tmp_path / "export"
    assert main(["export", str(folder), str(export), "--to", "onnx"]) == 0
    assert {"tokenizer.json", "vocab.json", "merges.txt", "preprocessor_config.json"} <= \
        {p.name for p in export.iterdir()}
    assert OnnxCLIPModel.from_pretrained(export).folder == export and not cache.exists()
    texts = tmp_path / "texts.txt"
    texts.write_text("\n".join(TEXTS), encoding="utf-8")
    embed_corpus(text_source(texts), tmp_path / "txt", export, "onnx", batch_size=3)
    np.testing.assert_allclose(read_embeddings(tmp_path / "txt")["embedding"], _hf_features(hf, texts=TEXTS),
                               atol=1e-5)
    (export / "preprocessor_config.json").unlink()
    root = tmp_path / "images"
    paths = write_images(root, 3)
    embed_corpus(image_source(root), tmp_path / "img", export, "onnx", batch_size=2)
    np.testing.assert_allclose(read_embeddings(tmp_path / "img")["embedding"], _hf_features(hf, paths=paths),
                               atol=1e-5)


def test_bad_requests_and_a_wrong_graph_are_refused(folder, cache, tmp_path):
    from clip_core.tasks.onnx_model import OnnxCLIPModel, _check_against_reference, exported_folder

    with pytest.raises(ValueError, match="bfloat16"):
        exported_folder(folder, dtype="bfloat16")
    model = OnnxCLIPModel.from_pretrained(folder)
    with pytest.raises(TypeError, match="get_text_features and get_image_features only"):
        model(pixel_values=np.zeros((1, 3, 32, 32), np.float32))
    with pytest.raises(ValueError, match="pixel_values must be"):
        model.get_image_features(np.zeros((3, 32, 32), np.float32))
    with pytest.raises(ValueError, match="input_ids must be"):
        model.get_text_features(np.array([1, 2, 3]))
    # an entry whose image graph is another model's: the reference check refuses it
    other = exported_folder(save_tiny_model(tmp_path / "other", seed=9))
    (model.folder / "vision.onnx").write_bytes((other / "vision.onnx").read_bytes())
    with pytest.raises(RuntimeError, match="image_features .* away from the PyTorch model's"):
        _check_against_reference(model.folder)


def test_cli_embed_on_onnx(folder, cache, tmp_path, capsys):
    from clip_core.cli import main

    root = tmp_path / "images"
    write_images(root, 4)
    assert main(["embed", "--model", str(folder), "--backend", "onnx", "--images", str(root), "--out",
                 str(tmp_path / "onnx"), "--batch-size", "3"]) == 0
    assert main(["embed", "--model", str(folder), "--images", str(root), "--out", str(tmp_path / "pt"),
                 "--batch-size", "3"]) == 0
    np.testing.assert_allclose(read_embeddings(tmp_path / "onnx")["embedding"],
                               read_embeddings(tmp_path / "pt")["embedding"], atol=1e-5)
    capsys.readouterr()
    with pytest.raises(SystemExit):
        main(["embed", "--model", str(folder), "--backend", "onnxx", "--images", str(root), "--out",
              str(tmp_path / "x")])
    assert "onnxx" in capsys.readouterr().err
