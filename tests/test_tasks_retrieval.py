"""Retrieval metrics against hand-computed cases and a brute-force numpy reference; chunking never changes them."""

from __future__ import annotations

import csv
import json
import tracemalloc

import numpy as np
import pytest

from clip_core.tasks import retrieval_metrics
from clip_core.tasks.retrieval import retrieval_ranks

from tests._tasks_util import save_tiny_model, write_images


def test_hand_computed_case():
    # 3 images on the axes; 5 captions: 0,1 -> image 0; 2 -> image 1; 3,4 -> image 2
    images = np.eye(3)
    texts = np.array([[1, 0, 0], [0, 1, 0.5], [0, 1, 0], [0.6, 0, 0.8], [0, 0.8, 0.6]])
    t2i = [0, 0, 1, 2, 2]
    # text -> image: t0 -> i0 rank 1; t1 scores (0, .894, .447) -> i0 is 3rd; t2 rank 1;
    # t3 scores (.6, 0, .8) -> rank 1; t4 scores (0, .8, .6) -> rank 2
    # image -> text (best caption, others of the same image never count):
    # i0: t0 scores 1, nobody higher -> 1; i1: t2 scores 1 -> 1; i2: best caption t3 .8, t1 (.447) lower -> 1
    t_rank, i_rank = retrieval_ranks(images, texts, t2i)
    assert t_rank.tolist() == [1, 3, 1, 1, 2] and i_rank.tolist() == [1, 1, 1]
    m = retrieval_metrics(images, texts, t2i, ks=(1, 2))
    assert m["text_to_image_R@1"] == pytest.approx(3 / 5) and m["text_to_image_R@2"] == pytest.approx(4 / 5)
    assert m["text_to_image_mrr"] == pytest.approx((1 + 1 / 3 + 1 + 1 + 1 / 2) / 5)
    assert m["text_to_image_mean_rank"] == pytest.approx(8 / 5) and m["text_to_image_median_rank"] == 1
    assert m["image_to_text_R@1"] == 1 and m["image_to_text_mrr"] == 1 and m["n_images"] == 3 and m["n_texts"] == 5


def test_ties_count_for_the_query():
    # image 1 duplicates image 0: caption 0 (of image 0) ties between them -> rank 1 (ties in the query's favour)
    images = np.array([[1.0, 0], [1.0, 0], [0, 1.0]])
    texts = np.array([[1.0, 0], [0, 1.0], [0.5, 0.5]])
    t_rank, i_rank = retrieval_ranks(images, texts, [0, 2, 1])
    # text 2 (of image 1): scores (.707, .707, .707) all tie -> rank 1; image 1: best caption t2 .707, but t0 scores
    # 1 > .707 -> rank 2
    assert t_rank.tolist() == [1, 1, 1] and i_rank.tolist() == [1, 2, 1]


def _reference(img, txt, t2i, ks):
    """Brute force on the full matrix: sort every row, find the correct item's place."""
    img = img / np.linalg.norm(img, axis=1, keepdims=True)
    txt = txt / np.linalg.norm(txt, axis=1, keepdims=True)
    sims = txt.astype(np.float64) @ img.T.astype(np.float64)
    t_rank = np.array([np.where(np.argsort(-row, kind="stable") == t2i[j])[0][0] + 1 for j, row in enumerate(sims)])
    i_rank = np.array([min(np.where(np.argsort(-sims[:, i], kind="stable") == j)[0][0]
                           for j in np.flatnonzero(t2i == i)) + 1 for i in range(len(img))])
    out = {}
    for name, r in (("text_to_image", t_rank), ("image_to_text", i_rank)):
        out.update({f"{name}_R@{k}": np.mean(r <= k) for k in ks})
        out.update({f"{name}_mrr": np.mean(1 / r), f"{name}_mean_rank": r.mean(), f"{name}_median_rank": np.median(r)})
    return out


@pytest.mark.parametrize("seed", [0, 1])
def test_brute_force_reference_several_captions_per_image(seed):
    rng = np.random.default_rng(seed)
    n_img, dim = 60, 16
    img = rng.standard_normal((n_img, dim))
    t2i = np.concatenate([np.arange(n_img), rng.integers(0, n_img, 140)])  # 1 to several captions per image
    txt = img[t2i] + 1.2 * rng.standard_normal((len(t2i), dim))
    expected = _reference(img, txt, t2i, (1, 5, 10))
    got = retrieval_metrics(img, txt, t2i)
    assert set(got) == set(expected) | {"n_images", "n_texts"}
    for key, value in expected.items():
        assert got[key] == pytest.approx(value, abs=1e-12), key
    for chunk in (1, 7, 199, 10_000):
        assert retrieval_metrics(img, txt, t2i, chunk_size=chunk) == got


def test_memory_stays_bounded():
    """20k x 20k pairs: the full float32 matrix would be 1.6 GB; the chunked pass stays far below."""
    rng = np.random.default_rng(0)
    img = rng.standard_normal((20_000, 16)).astype(np.float32)
    txt = img + rng.standard_normal(img.shape).astype(np.float32)
    tracemalloc.start()
    try:
        metrics = retrieval_metrics(img, txt, np.arange(20_000))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 400 * 2 ** 20, peak
    assert 0 < metrics["text_to_image_R@10"] < 1


@pytest.mark.parametrize("bad, match", [
    (dict(text_to_image=[0, 0, 5]), "not an image index"),
    (dict(text_to_image=[0, 0, 0]), "no caption"),
    (dict(text_to_image=[0, 1]), "text_to_image must be 3"),
    (dict(text_embeds=np.ones((3, 5))), "one dim"),
    (dict(ks=(0,)), "positive"),
])
def test_bad_input(bad, match):
    args = dict(image_embeds=np.eye(2, 4), text_embeds=np.ones((3, 4)), text_to_image=[0, 1, 1])
    args.update(bad)
    with pytest.raises(ValueError, match=match):
        retrieval_metrics(**args)


@pytest.mark.slow
def test_eval_retrieval_cli(tmp_path, capsys):
    """triclip eval retrieval on a captions CSV (two captions for some images) equals the metrics of embeddings
    computed here with transformers' model, and is the same on every backend."""
    transformers = pytest.importorskip("transformers")
    import torch
    from PIL import Image

    from clip_core.cli import main

    folder = save_tiny_model(tmp_path / "model")
    paths = write_images(tmp_path / "data" / "images", 6, fmt="PNG")
    rows = [(p, f"caption {i} of {p.stem}") for p in paths for i in range(1 + int(p.stem) % 2)]
    captions = tmp_path / "data" / "captions.csv"
    with open(captions, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["image", "caption"])
        writer.writerows((p.relative_to(captions.parent).as_posix(), c) for p, c in rows)
    model = transformers.CLIPModel.from_pretrained(folder).eval()
    tok = transformers.CLIPTokenizerFast.from_pretrained(folder)
    ip = transformers.CLIPImageProcessor.from_pretrained(folder)
    with torch.no_grad():
        img = model.get_image_features(**ip([Image.open(p).convert("RGB") for p in paths], return_tensors="pt"))
        txt = model.get_text_features(**tok([c for _, c in rows], padding=True, return_tensors="pt"))
    t2i = [paths.index(p) for p, _ in rows]
    expected = _reference(img.numpy(), txt.numpy(), np.array(t2i), (1, 2))
    results = {}
    for backend in ("pt", "flax", "tf", "onnx"):
        out = tmp_path / f"{backend}.json"
        assert main(["eval", "retrieval", "--model", str(folder), "--backend", backend, "--data", str(captions),
                     "--ks", "1,2", "--out", str(out)]) == 0
        results[backend] = json.loads(out.read_text())
    assert "image_to_text_R@1" in capsys.readouterr().out
    for backend, got in results.items():
        assert got["n_images"] == 6 and got["n_texts"] == len(rows)
        for key, value in expected.items():
            assert got[key] == pytest.approx(value, abs=1e-12), (backend, key)


def test_task_modules_import_no_framework():
    import subprocess
    import sys

    from tests.conftest import ROOT

    code = ("import sys, clip_core.tasks.embed, clip_core.tasks.index, clip_core.tasks.ray_engine, "
            "clip_core.tasks.zeroshot, clip_core.tasks.similarity_map, clip_core.tasks.evaluate, clip_core.cli; "
            "print(sorted(m for m in ('torch', 'tensorflow', 'jax', 'ray', 'faiss', 'pyarrow') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert out.stdout.strip() == "[]"
