"""The framework-free fine-tuning loop: data -> batches -> a backend's train step -> log, checkpoints, resume, eval.

Everything that decides *what* is trained on is here and framework-free (the data order of
:func:`~clip_core.tasks.datasets.epoch_batches`, the preprocessing of
:func:`~clip_core.tasks.datasets.make_batch`), so one seed feeds the same batches to every backend; the backend
contributes only its ``Trainer`` (``clip_<backend>.training``; ``clip_<backend>.distributed.DistributedTrainer``
when ``cfg.devices > 1``).

Output folder ``out``:

- ``checkpoint-STEP/``: ``config.json``, ``model.safetensors``, the processor files (transformers' layout, so any
  CLIP loader reads it), ``optimizer.safetensors`` (the canonical AdamW state) and ``trainer_state.json`` (step,
  epoch, data position, hyper-parameters). Each is written into a hidden temporary folder and renamed when complete,
  so a killed run leaves only complete checkpoints; ``resume`` continues from the newest one with the same
  subsequent losses as an uninterrupted run.
- ``log.jsonl``: one line per step (``step, epoch, loss, lr, samples_per_s``) and one per evaluation
  (``step, epoch, eval``: recall@k of :func:`~clip_core.tasks.retrieval.retrieval_metrics`).
- the final model (``config.json``, ``model.safetensors``, processor files) in ``out`` itself.
"""

from __future__ import annotations

import dataclasses
import importlib
import json
import math
import os
import re
import shutil
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from clip_core.tasks.datasets import epoch_batches, make_batch, read_pairs
from clip_core.tasks.training import TrainingConfig

BACKENDS = {"pt": ("clip_pt", "CLIPModel"), "tf": ("clip_tf", "TFCLIPModel"), "flax": ("clip_flax", "FlaxCLIPModel")}
CHECKPOINT = re.compile(r"^checkpoint-(\d+)$")
STATE_FILE, OPTIMIZER_FILE, LOG_FILE = "trainer_state.json", "optimizer.safetensors", "log.jsonl"
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".h5", ".msgpack", ".pt", ".pth")


def _backend(backend: str):
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {sorted(BACKENDS)}, got {backend!r}")
    module, name = BACKENDS[backend]
    return getattr(importlib.import_module(module), name), importlib.import_module(f"{module}.training")


def _has_weights(path: Path) -> bool:
    return path.is_file() and path.suffix in WEIGHT_SUFFIXES or path.is_dir() and any(
        p.suffix in WEIGHT_SUFFIXES for p in path.iterdir())


def load_start(model, backend: str, seed: int):
    """The model to start from: ``model`` is a checkpoint (any format, or a Hub id) or, to train from scratch, a
    folder holding only ``config.json`` (and processor files) or a ``config.json`` file: weights then come from
    the seeded initialisation (the same in every backend for one seed)."""
    from clip_core.config import CLIPConfig

    cls, _ = _backend(backend)
    path = Path(model)
    config_file = path if path.suffix == ".json" else path / "config.json"
    if config_file.is_file() and not _has_weights(path):
        return cls(CLIPConfig.from_pretrained(config_file), seed=seed)
    loaded = cls.from_pretrained(model)
    return loaded


def latest_checkpoint(out) -> Path | None:
    """The newest complete ``checkpoint-STEP`` folder in ``out`` (None when there is none)."""
    out = Path(out)
    if not out.is_dir():
        return None
    found = [(int(m.group(1)), p) for p in out.iterdir()
             if (m := CHECKPOINT.match(p.name)) and (p / STATE_FILE).is_file()]
    return max(found)[1] if found else None


def _write_json(path: Path, data) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, path)


def save_training_checkpoint(out: Path, trainer, processor, meta: dict) -> Path:
    """Write ``out/checkpoint-STEP`` atomically (see the module docstring); returns its path."""
    from safetensors.numpy import save_file

    from clip_core.checkpoints import save_checkpoint

    step = trainer.step
    final = out / f"checkpoint-{step}"
    tmp = out / f".checkpoint-{step}.partial-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    save_checkpoint(tmp, trainer.model.config, trainer.export_state())
    processor.save_pretrained(tmp)
    arrays, opt_meta = trainer.optimizer_state()
    save_file({k: np.array(v, np.float32, order="C") for k, v in arrays.items()},  # 0-d stays 0-d
              str(tmp / OPTIMIZER_FILE))
    _write_json(tmp / STATE_FILE, {**meta, "step": step, "optimizer": opt_meta})
    if final.exists():
        shutil.rmtree(final)
    os.replace(tmp, final)
    return final


def _log(path: Path, record: dict) -> None:
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps(record, sort_keys=True) + "\n")
        f.flush()


def _trim_log(path: Path, step: int) -> None:
    """Keep the log lines up to ``step`` (a resumed run rewrites what came after its checkpoint)."""
    if not path.is_file():
        return
    kept = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            if json.loads(line).get("step", 0) <= step:
                kept.append(line)
        except json.JSONDecodeError:  # a line cut by a kill
            continue
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text("".join(line + "\n" for line in kept), encoding="utf-8")
    os.replace(tmp, path)


def evaluate(model, processor, pairs, ks=(1, 5, 10), batch_size: int = 64) -> dict:
    """Recall@k (both directions) of ``model`` on ``pairs`` (caption ``i`` belongs to image ``i``)."""
    from clip_core.tasks.features import image_features, text_features
    from clip_core.tasks.retrieval import retrieval_metrics

    max_length = model.config.text_config.max_position_embeddings
    images, texts = [], []
    for start in range(0, len(pairs), batch_size):
        batch = make_batch(pairs, range(start, min(start + batch_size, len(pairs))), processor, max_length)
        images.append(image_features(model, batch["pixel_values"]))
        texts.append(text_features(model, batch["input_ids"], batch["attention_mask"]))
    ks = tuple(k for k in ks if k <= len(pairs)) or (1,)
    return retrieval_metrics(np.concatenate(images), np.concatenate(texts), np.arange(len(pairs)), ks)


def _make_trainer(backend: str, model, cfg: TrainingConfig):
    if cfg.devices > 1:
        try:
            distributed = importlib.import_module(f"{BACKENDS[backend][0]}.distributed")
        except ModuleNotFoundError as err:
            raise ValueError(f"data-parallel training (devices={cfg.devices}) is not available for backend "
                             f"{backend!r}: {err}") from None
        return distributed.DistributedTrainer(model, cfg)
    return _backend(backend)[1].Trainer(model, cfg)


def _progress(total: int, initial: int, enabled: bool):
    from tqdm.auto import tqdm

    disable = not enabled or os.environ.get("TRICLIP_NO_PROGRESS") == "1"
    return tqdm(total=total, initial=initial, disable=disable, unit="step", desc="finetune", dynamic_ncols=True)


def finetune(model, data, out, *, backend: str = "pt", cfg: TrainingConfig | None = None, steps: int | None = None,
             epochs: int | None = None, save_every: int | None = None, eval_data=None, resume: bool = False,
             processor=None, progress: bool = True, ks=(1, 5, 10)) -> dict:
    """Train ``model`` (a checkpoint path, Hub id, or a config-only folder for training from scratch, see
    :func:`load_start`) on ``data`` (see :func:`~clip_core.tasks.datasets.read_pairs`) with ``backend``'s Trainer,
    for ``steps`` updates or ``epochs`` passes (one of them; ``cfg.total_steps`` is set to match). ``save_every``
    steps (default: every epoch) and at the end a checkpoint is written; ``eval_data`` is evaluated at every
    epoch's end and at the end. ``processor``: a :class:`~clip_core.CLIPProcessor` or its folder (default: the
    model's). ``resume``: continue from the newest checkpoint in ``out`` (a fresh start when there is none).
    Returns ``{"step", "losses" (this call's), "eval" (the last evaluation or None), "out", "seconds"}``."""
    from clip_core.processor import CLIPProcessor

    cfg = TrainingConfig() if cfg is None else cfg
    out = Path(out)
    if (steps is None) == (epochs is None):
        raise ValueError("give exactly one of steps and epochs")
    pairs = read_pairs(data)
    batches_per_epoch = len(pairs) // cfg.batch_size
    if batches_per_epoch < 1:
        raise ValueError(f"{data}: {len(pairs)} rows make no full batch of {cfg.batch_size}")
    total = int(steps) if steps is not None else int(epochs) * batches_per_epoch
    if total < 1:
        raise ValueError(f"steps/epochs must be positive, got steps={steps}, epochs={epochs}")
    cfg = dataclasses.replace(cfg, total_steps=total)
    save_every = batches_per_epoch if save_every is None else int(save_every)
    if save_every < 1:
        raise ValueError(f"save_every must be positive, got {save_every}")
    meta = {"backend": backend, "training_config": cfg.to_dict(), "n_pairs": len(pairs),
            "batches_per_epoch": batches_per_epoch, "total_steps": total}

    out.mkdir(parents=True, exist_ok=True)
    start = latest_checkpoint(out) if resume else None
    if start is not None:
        saved = json.loads((start / STATE_FILE).read_text())
        for key in ("training_config", "n_pairs", "batches_per_epoch", "total_steps"):
            if saved.get(key) != meta[key]:
                raise ValueError(f"cannot resume from {start}: its {key} {saved.get(key)!r} differs from this "
                                 f"run's {meta[key]!r}")
        source = start
    else:
        source = model
        if any(CHECKPOINT.match(p.name) for p in out.iterdir()):
            raise FileExistsError(f"{out} already holds checkpoints: pass resume=True (--resume) or another folder")
    net = load_start(source, backend, cfg.seed)
    if processor is None:
        processor = CLIPProcessor.from_pretrained(source)
    elif not isinstance(processor, CLIPProcessor):
        processor = CLIPProcessor.from_pretrained(processor)
    trainer = _make_trainer(backend, net, cfg)
    main = getattr(trainer, "is_main", True)  # data-parallel PyTorch runs this loop in every rank: rank 0 writes
    if start is not None:
        from safetensors.numpy import load_file

        trainer.load_optimizer_state(load_file(str(start / OPTIMIZER_FILE)), saved["optimizer"])
        if main:
            _trim_log(out / LOG_FILE, trainer.step)
    elif main and (out / LOG_FILE).exists():
        (out / LOG_FILE).unlink()
    eval_pairs = read_pairs(eval_data) if eval_data is not None else None
    max_length = net.config.text_config.max_position_embeddings

    orders: dict[int, list] = {}

    def batch_for(step):
        epoch, position = divmod(step, batches_per_epoch)
        if epoch not in orders:
            orders.clear()
            orders[epoch] = epoch_batches(len(pairs), cfg.batch_size, cfg.seed, epoch)
        return make_batch(pairs, orders[epoch][position], processor, max_length)

    losses, last_eval, began = [], None, time.perf_counter()
    bar = _progress(total, trainer.step, progress and main)
    with ThreadPoolExecutor(max_workers=1) as pool:  # the next batch is read while this one trains
        ahead = pool.submit(batch_for, trainer.step) if trainer.step < total else None
        while trainer.step < total:
            step = trainer.step
            batch = ahead.result()
            ahead = pool.submit(batch_for, step + 1) if step + 1 < total else None
            lr, tick = trainer.learning_rate, time.perf_counter()
            loss = trainer.train_step(batch)
            seconds = time.perf_counter() - tick
            if not math.isfinite(loss):
                raise FloatingPointError(f"step {step}: the loss is {loss}; lower the learning rate")
            losses.append(loss)
            epoch = step // batches_per_epoch
            if main:
                _log(out / LOG_FILE, {"step": step + 1, "epoch": epoch, "loss": loss, "lr": lr,
                                      "samples_per_s": cfg.batch_size / max(seconds, 1e-9)})
            bar.update(1)
            bar.set_postfix(loss=f"{loss:.4f}", lr=f"{lr:.2e}")
            done = trainer.step
            if main and eval_pairs is not None and (done % batches_per_epoch == 0 or done == total):
                last_eval = evaluate(net, processor, eval_pairs, ks)
                _log(out / LOG_FILE, {"step": done, "epoch": epoch, "eval": last_eval})
            if main and (done % save_every == 0 or done == total):
                save_training_checkpoint(out, trainer, processor,
                                         {**meta, "epoch": done // batches_per_epoch,
                                          "batch_in_epoch": done % batches_per_epoch})
    bar.close()
    if main:
        _save_final(out, trainer, processor)
    return {"step": trainer.step, "losses": losses, "eval": last_eval, "out": str(out),
            "seconds": time.perf_counter() - began}


def _save_final(out: Path, trainer, processor) -> None:
    """The final model in ``out`` itself (config, safetensors weights, processor files)."""
    from clip_core.checkpoints import save_checkpoint

    save_checkpoint(out, trainer.model.config, trainer.export_state(), overwrite=True)
    processor.save_pretrained(out)
