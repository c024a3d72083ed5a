"""triclip finetune: the framework-free loop, checkpoints in transformers' layout, kill/resume, the same batches in
every backend, and the end-to-end example of docs/training.md at reduced size."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from clip_core.tasks.finetune import finetune, latest_checkpoint
from clip_core.tasks.synthetic import class_captions, make_shapes_dataset
from clip_core.tasks.training import TrainingConfig

ROOT = Path(__file__).resolve().parents[1]
CFG = TrainingConfig(lr=2e-3, weight_decay=0.1, warmup_steps=3, batch_size=8, seed=5)


@pytest.fixture(scope="module")
def shapes(tmp_path_factory):
    return make_shapes_dataset(tmp_path_factory.mktemp("shapes"), n_train=64, n_heldout=12, image_size=32)


def _log(out):
    return [json.loads(line) for line in (Path(out) / "log.jsonl").read_text().splitlines()]


def test_checkpoints_are_transformers_checkpoints(shapes, tmp_path):
    import torch
    import transformers

    out = tmp_path / "run"
    result = finetune(shapes["model"], shapes["train"], out, backend="pt", cfg=CFG, steps=4, save_every=2,
                      eval_data=shapes["heldout"], progress=False)
    assert result["step"] == 4 and len(result["losses"]) == 4
    assert latest_checkpoint(out).name == "checkpoint-4" and (out / "checkpoint-2" / "optimizer.safetensors").is_file()
    assert not [p for p in out.iterdir() if p.name.startswith((".checkpoint", ".log"))]  # no temporaries left
    log = _log(out)
    steps = [r for r in log if "loss" in r]
    assert [r["step"] for r in steps] == [1, 2, 3, 4] and [r["loss"] for r in steps] == result["losses"]
    assert steps[0]["lr"] == pytest.approx(CFG.lr / 3) and all(r["samples_per_s"] > 0 for r in steps)
    assert "text_to_image_R@1" in log[-1]["eval"] and log[-1]["step"] == 4
    # transformers reads the checkpoint and its processor, and gives the logits of our own final model
    hf = transformers.CLIPModel.from_pretrained(out / "checkpoint-4", attn_implementation="eager").eval()
    proc = transformers.CLIPProcessor.from_pretrained(out / "checkpoint-4")
    from clip_pt import CLIPModel
    from clip_core import CLIPProcessor
    ours, our_proc = CLIPModel.from_pretrained(out), CLIPProcessor.from_pretrained(out)
    from PIL import Image
    image = Image.open(shapes["root"] / "images" / "heldout-00000.png")
    texts = class_captions()[:5]
    a = proc(text=texts, images=image, return_tensors="pt", padding=True)
    b = our_proc(text=texts, images=image, return_tensors="pt", padding=True)
    assert np.array_equal(a["input_ids"].numpy(), b["input_ids"].numpy())
    with torch.no_grad():
        diff = (hf(**a).logits_per_image - ours(**b).logits_per_image).abs().max()
    assert float(diff) < 1e-4


def test_refuses_to_mix_runs(shapes, tmp_path):
    out = tmp_path / "run"
    finetune(shapes["model"], shapes["train"], out, cfg=CFG, steps=2, progress=False)
    with pytest.raises(FileExistsError, match="already holds checkpoints"):
        finetune(shapes["model"], shapes["train"], out, cfg=CFG, steps=2, progress=False)
    with pytest.raises(ValueError, match="training_config"):
        finetune(shapes["model"], shapes["train"], out, cfg=TrainingConfig(lr=1.0, batch_size=8), steps=2,
                 resume=True, progress=False)
    with pytest.raises(ValueError, match="exactly one of steps and epochs"):
        finetune(shapes["model"], shapes["train"], out, cfg=CFG, progress=False)
    with pytest.raises(ValueError, match="no full batch"):
        finetune(shapes["model"], shapes["train"], tmp_path / "x", cfg=TrainingConfig(batch_size=1000), steps=1,
                 progress=False)


def test_killed_run_resumes_with_the_same_losses(shapes, tmp_path):
    """SIGKILL a `triclip finetune` process after a checkpoint; --resume gives the losses of an uninterrupted run."""
    total = 12
    reference = finetune(shapes["model"], shapes["train"], tmp_path / "ref", cfg=CFG, steps=total, save_every=2,
                         progress=False)["losses"]
    out = tmp_path / "killed"
    command = [sys.executable, "-m", "clip_core.cli", "finetune", "--model", str(shapes["model"]), "--data",
               str(shapes["train"]), "--out", str(out), "--steps", str(total), "--batch-size", "8", "--lr", "2e-3",
               "--warmup", "3", "--weight-decay", "0.1", "--seed", "5", "--save-every", "2", "--no-progress"]
    env = {**os.environ, "TRICLIP_NO_PROGRESS": "1", "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 120
        while latest_checkpoint(out) is None and proc.poll() is None and time.time() < deadline:
            time.sleep(0.02)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait()
    killed_at = latest_checkpoint(out)
    assert killed_at is not None and killed_at.name != f"checkpoint-{total}", "the run ended before the kill"
    done = int(killed_at.name.split("-")[1])
    resumed = subprocess.run(command + ["--resume"], env=env, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    losses = [r["loss"] for r in _log(out) if "loss" in r]
    assert [r["step"] for r in _log(out) if "loss" in r] == list(range(1, total + 1))
    assert np.abs(np.array(losses[done:]) - reference[done:]).max() < 1e-6


@pytest.mark.slow
def test_end_to_end_shapes_example_beats_chance(tmp_path):
    """docs/training.md's example at reduced size: a tiny CLIP trained from scratch (Flax, 90 steps) classifies
    held-out colour x shape combinations zero-shot far above chance (1/24); PyTorch sees the same first losses."""
    from clip_core import CLIPProcessor
    from clip_core.tasks.datasets import load_image, read_pairs
    from clip_core.tasks.features import load_model
    from clip_core.tasks.zeroshot import ZeroShotClassifier

    data = make_shapes_dataset(tmp_path / "data", n_train=480, n_heldout=60, seed=0)
    cfg = TrainingConfig(lr=2e-3, warmup_steps=20, weight_decay=0.1, batch_size=32)
    result = finetune(data["model"], data["train"], tmp_path / "flax", backend="flax", cfg=cfg, epochs=6,
                      progress=False)
    assert result["step"] == 90 and result["losses"][-1] < 0.5 * result["losses"][0]
    model, processor = load_model(tmp_path / "flax", "flax"), CLIPProcessor.from_pretrained(tmp_path / "flax")
    classes = class_captions()
    held = read_pairs(data["heldout"])
    predicted = ZeroShotClassifier(model, processor, classes, templates=("{}",)).predict(
        [load_image(p) for p in held]).argmax(axis=1)
    accuracy = float(np.mean([classes[i] == p.caption for i, p in zip(predicted, held)]))
    assert accuracy > 0.25, accuracy  # chance: 1/24
    pt = finetune(data["model"], data["train"], tmp_path / "pt", backend="pt", cfg=cfg, steps=3, progress=False)
    flax_first = finetune(data["model"], data["train"], tmp_path / "flax3", backend="flax", cfg=cfg, steps=3,
                          progress=False)
    assert np.abs(np.array(pt["losses"]) - flax_first["losses"]).max() < 1e-4
