"""Zero-shot classification and patch similarity maps, against transformers 4.57.6 live and OpenAI's recipe."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from clip_core import CLIPProcessor
from clip_core.tasks import ZeroShotClassifier, ZeroShotImageClassification, patch_similarity, render_heatmap

from tests._tasks_util import random_image, save_tiny_model, write_images

LABELS = ["cat", "dog", "red car", "a tree in winter"]
TEMPLATES = ("a photo of a {}.", "a blurry photo of the {}.", "art of {}")


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return save_tiny_model(tmp_path_factory.mktemp("tiny-clip"))


@pytest.fixture(scope="module")
def hf(folder):
    transformers = pytest.importorskip("transformers")
    model = transformers.CLIPModel.from_pretrained(folder).eval()
    return transformers, model, transformers.CLIPTokenizerFast.from_pretrained(folder), \
        transformers.CLIPImageProcessor.from_pretrained(folder)


def _backend_model(name, folder):
    if name == "pt":
        from clip_pt import CLIPModel
        return CLIPModel.from_pretrained(folder)
    if name == "tf":
        pytest.importorskip("tensorflow")
        from clip_tf import TFCLIPModel
        return TFCLIPModel.from_pretrained(folder)
    pytest.importorskip("flax")
    from clip_flax import FlaxCLIPModel
    return FlaxCLIPModel.from_pretrained(folder)


def _images(n, seed=0):
    rng = np.random.default_rng(seed)
    return [random_image(rng, 30 + 7 * i, 41 + 3 * i) for i in range(n)]


@pytest.mark.parametrize("backend", ["pt", "tf", "flax"])
def test_pipeline_matches_transformers_pipeline(backend, folder, hf):
    transformers, model, tok, ip = hf
    theirs = transformers.pipeline("zero-shot-image-classification", model=model, tokenizer=tok, image_processor=ip,
                                   framework="pt")
    ours = ZeroShotImageClassification(_backend_model(backend, folder), CLIPProcessor.from_pretrained(folder))
    images = _images(3)
    for kwargs in ({}, {"hypothesis_template": "a photo of a {}."}):
        for image in images:
            expected, got = theirs(image, candidate_labels=LABELS, **kwargs), ours(image, candidate_labels=LABELS,
                                                                                   **kwargs)
            assert [r["label"] for r in got] == [r["label"] for r in expected]
            np.testing.assert_allclose([r["score"] for r in got], [r["score"] for r in expected], atol=1e-5)
            assert set(got[0]) == {"score", "label"} and isinstance(got[0]["score"], float)
    batch = ours(images, candidate_labels=LABELS)
    assert len(batch) == 3 and [r["label"] for r in batch[1]] == [r["label"] for r in ours(images[1], LABELS)]


def test_pipeline_accepts_a_path(folder, hf, tmp_path):
    transformers, model, tok, ip = hf
    path = tmp_path / "x.png"
    _images(1)[0].save(path)
    theirs = transformers.pipeline("zero-shot-image-classification", model=model, tokenizer=tok, image_processor=ip)
    ours = ZeroShotImageClassification(_backend_model("pt", folder), CLIPProcessor.from_pretrained(folder))
    expected, got = theirs(str(path), candidate_labels=LABELS), ours(str(path), candidate_labels=LABELS)
    np.testing.assert_allclose([r["score"] for r in got], [r["score"] for r in expected], atol=1e-5)


def _hf_zero_shot(model, tok, ip, labels, templates, images):
    """OpenAI's recipe with transformers' model: ``(weights, probabilities)``."""
    import torch

    with torch.no_grad():
        rows = []
        for label in labels:
            emb = model.get_text_features(**tok([t.format(label) for t in templates], padding=True,
                                                return_tensors="pt"))
            mean = (emb / emb.norm(dim=-1, keepdim=True)).mean(0)
            rows.append((mean / mean.norm()).numpy())
        weights = np.stack(rows)
        img = model.get_image_features(**ip(images, return_tensors="pt"))
        img = (img / img.norm(dim=-1, keepdim=True)).numpy()
        logits = torch.from_numpy(model.logit_scale.exp().item() * img @ weights.T)
        return weights, torch.softmax(logits, -1).numpy()


def test_classifier_is_openai_recipe(folder, hf):
    """Weights: per class, the mean of the templates' normalised text embeddings, renormalised (OpenAI's notebook);
    probabilities: softmax(exp(logit_scale) * image @ W.T); all computed here with transformers' model."""
    _, model, tok, ip = hf
    ours = ZeroShotClassifier(_backend_model("pt", folder), CLIPProcessor.from_pretrained(folder), LABELS, TEMPLATES)
    images = _images(4, seed=3)
    weights, probs = _hf_zero_shot(model, tok, ip, LABELS, TEMPLATES, images)
    np.testing.assert_allclose(ours.weights, weights, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(ours.weights, axis=1), 1, atol=1e-6)
    np.testing.assert_allclose(ours.predict(images), probs, atol=1e-5)
    top = ours.topk(images, k=2)
    for row, p in zip(top, probs):
        assert [name for name, _ in row] == [LABELS[j] for j in np.argsort(-p)[:2]]
        np.testing.assert_allclose([s for _, s in row], np.sort(p)[::-1][:2], atol=1e-5)


def test_bad_arguments(folder):
    model, processor = _backend_model("pt", folder), CLIPProcessor.from_pretrained(folder)
    with pytest.raises(ValueError, match="exactly one"):
        ZeroShotClassifier(model, processor, LABELS, ["a photo"])
    with pytest.raises(ValueError, match="class_names"):
        ZeroShotClassifier(model, processor, [], TEMPLATES)
    with pytest.raises(ValueError, match="candidate_labels"):
        ZeroShotImageClassification(model, processor)(_images(1)[0], candidate_labels=[])
    with pytest.raises(ValueError, match="URL"):
        ZeroShotImageClassification(model, processor)("https://example.com/x.jpg", candidate_labels=LABELS)


def test_patch_similarity_matches_transformers(folder, hf, tmp_path):
    """Each patch's final state through post_layernorm + visual_projection (transformers' modules), cosine with the
    caption's text embedding; the class token through the same head is get_image_features."""
    import torch

    _, model, tok, ip = hf
    image, text = _images(1, seed=7)[0], "a red square"
    with torch.no_grad():
        states = model.vision_model(**ip([image], return_tensors="pt")).last_hidden_state
        patches = model.visual_projection(model.vision_model.post_layernorm(states[0, 1:]))
        patches = patches / patches.norm(dim=-1, keepdim=True)
        txt = model.get_text_features(**tok([text], return_tensors="pt"))[0]
        expected = (patches @ (txt / txt.norm())).numpy().reshape(4, 4)
    processor = CLIPProcessor.from_pretrained(folder)
    for backend in ("pt", "flax"):
        got = patch_similarity(_backend_model(backend, folder), processor, image, text)
        assert got.shape == (4, 4)
        np.testing.assert_allclose(got, expected, atol=1e-5)
    png = render_heatmap(image, got, tmp_path / "map.png", processor=processor)
    with Image.open(png) as out:
        assert out.format == "PNG" and out.size == (32, 32) and out.mode == "RGB"
    with pytest.raises(ValueError, match="finite"):
        render_heatmap(image, np.full((4, 4), np.nan), tmp_path / "bad.png")


@pytest.mark.slow
def test_eval_zeroshot_cli_backends_agree(folder, hf, tmp_path, capsys):
    """triclip eval zeroshot on an image folder: top-1 / top-5 / per-class from the classifier's own predictions
    recomputed here, and the same numbers from every backend."""
    from clip_core.cli import main

    data = tmp_path / "data"
    for k, name in enumerate(["red_car", "cat", "tree"]):
        write_images(data / name, 4, seed=k, fmt="PNG")
    templates = tmp_path / "templates.txt"
    templates.write_text("# prompts\na photo of a {}.\nart of {}\n")
    results = {}
    for backend in ("pt", "tf", "flax", "onnx"):
        out = tmp_path / f"{backend}.json"
        assert main(["eval", "zeroshot", "--model", str(folder), "--backend", backend, "--data", str(data),
                     "--templates", str(templates), "--out", str(out)]) == 0
        results[backend] = json.loads(out.read_text())
    assert "top1" in capsys.readouterr().out
    paths = [p for c in ("cat", "red_car", "tree") for p in sorted((data / c).rglob("*.png"))]
    truth = np.repeat(np.arange(3), 4)
    _, model, tok, ip = hf
    _, probs = _hf_zero_shot(model, tok, ip, ["cat", "red car", "tree"], ["a photo of a {}.", "art of {}"],
                             [Image.open(p).convert("RGB") for p in paths])
    pred = probs.argmax(1)
    r = results["pt"]
    assert r["n_images"] == 12 and r["n_classes"] == 3 and r["top3"] == 1.0
    assert r["top1"] == pytest.approx(float(np.mean(pred == truth)))
    for c, name in enumerate(["cat", "red car", "tree"]):
        assert r["per_class_top1"][name] == pytest.approx(float(np.mean(pred[truth == c] == c)))
    for backend in ("tf", "flax", "onnx"):
        assert results[backend]["top1"] == r["top1"] and results[backend]["per_class_top1"] == r["per_class_top1"]


def test_eval_zeroshot_on_labelled_rows(folder, hf, tmp_path):
    """--data as (image, caption) rows: the project's shapes dataset, captions as class names."""
    from clip_core.cli import main
    from clip_core.tasks import make_shapes_dataset, read_pairs

    split = make_shapes_dataset(tmp_path / "shapes", n_train=1, n_heldout=12, image_size=32)["heldout"]
    out = tmp_path / "r.json"
    assert main(["eval", "zeroshot", "--model", str(folder), "--data", str(split), "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    pairs = read_pairs(split)
    names = sorted({p.caption for p in pairs})
    truth = np.array([names.index(p.caption) for p in pairs])
    _, model, tok, ip = hf
    _, probs = _hf_zero_shot(model, tok, ip, names, ["a photo of a {}."],
                             [Image.open(p.image).convert("RGB") for p in pairs])
    order = np.argsort(-probs, axis=1)
    assert result["n_classes"] == len(names) == 6 and result["n_images"] == 12
    assert result["top1"] == pytest.approx(float(np.mean(order[:, 0] == truth)))
    assert result["top5"] == pytest.approx(float(np.mean((order[:, :5] == truth[:, None]).any(1))))
