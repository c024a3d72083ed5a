"""Forward parity: one canonical state, every installed backend, every output compared pairwise.

Each backend is fed the same inputs (right-padded text of several lengths and random images, :func:`make_inputs`);
its outputs become numpy arrays under common names (``logits_per_image``, ``text_embeds``, ``vision_hidden_states``,
...), and every pair of backends is compared with DESIGN.md's tolerances. ``"hf"`` (transformers' PyTorch
``CLIPModel`` loaded from the same state) is an independent reference. Given a fixture folder holding
``expected.npz`` (inputs and outputs written by an independent implementation), every backend is also compared with
those numbers.
"""

from __future__ import annotations

import importlib.util
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Mapping

import numpy as np

from clip_core.config import CLIPConfig
from clip_core.weights import init_state

#: Backend name -> the module it needs; "hf" is transformers' PyTorch CLIPModel, an independent reference.
BACKENDS = {"pt": "torch", "tf": "tensorflow", "flax": "flax", "hf": "transformers"}
DEFAULT_BACKENDS = ("pt", "tf", "flax")

#: float32 tolerances (max abs difference) by output; DESIGN.md "Tolerances".
TOLERANCES = {
    "text_embeds": 1e-5, "image_embeds": 1e-5, "text_pooler_output": 1e-5, "vision_pooler_output": 1e-5,
    "logits_per_image": 1e-4, "logits_per_text": 1e-4, "loss": 1e-4,
    "text_last_hidden_state": 1e-4, "vision_last_hidden_state": 1e-4,
    "text_hidden_states": 1e-4, "vision_hidden_states": 1e-4,
}
#: Reduced precision: embeddings within this of the float32 reference, and cosine similarity above REDUCED_COSINE.
REDUCED_TOLERANCE, REDUCED_COSINE = 2e-2, 0.999
REDUCED_OUTPUTS = ("text_embeds", "image_embeds")


def available_backends(names: Iterable[str] = DEFAULT_BACKENDS) -> list[str]:
    """The backends among ``names`` whose framework is installed."""
    unknown = [n for n in names if n not in BACKENDS]
    if unknown:
        raise ValueError(f"unknown backend(s) {unknown}; choose from {sorted(BACKENDS)}")
    return [n for n in names if importlib.util.find_spec(BACKENDS[n]) is not None]


# ---------------------------------------------------------------------------------------------- inputs
def make_inputs(config: CLIPConfig, batch: int = 3, seed: int = 0) -> dict[str, np.ndarray]:
    """Right-padded text rows of decreasing lengths (full, about half, 3 tokens) and random NCHW images.

    Every id lies inside the vocabulary, whatever the config's special ids. Each row is ``bos, tokens..., end`` then
    padding; ``bos`` and the padding are the config's ids when they lie inside the vocabulary (``0`` otherwise), and
    ``end`` is what the config's pooling rule looks for, so that every backend must apply that rule:

    - legacy ``eos_token_id == 2`` (``argmax(input_ids)``): ``end`` is the highest id, and rows pad with it;
    - ``eos_token_id`` inside the vocabulary (its first occurrence): ``end`` is it, and no other token equals it;
    - ``eos_token_id`` outside the vocabulary (a config with a small vocabulary and transformers' default special
      ids): it never occurs, so transformers pools at position 0 (the ``argmax`` of a row without it); the rows
      end with an ordinary token and every backend must pool position 0 too.
    """
    rng = np.random.default_rng(seed)
    text, vision = config.text_config, config.vision_config
    length, vocab = text.max_position_embeddings, text.vocab_size
    legacy = text.eos_token_id == 2
    if legacy:
        end = vocab - 1
    else:
        end = text.eos_token_id if 0 <= text.eos_token_id < vocab else None  # None: the end id never occurs
    bos = text.bos_token_id if 0 <= text.bos_token_id < vocab else 0
    pad = text.pad_token_id if text.pad_token_id is not None and 0 <= text.pad_token_id < vocab else 0
    pad = pad if not legacy else end  # legacy rows pad with the end token itself, as the fixtures do
    low, high = 1, vocab - 1  # ordinary tokens: never the highest id
    input_ids = np.full((batch, length), pad, dtype=np.int64)
    mask = np.zeros((batch, length), dtype=np.int64)
    for row in range(batch):
        n = max(3, length - row * (length // batch)) if row < batch - 1 else min(3, length)
        tokens = rng.integers(low, high, size=n)
        while (end is not None and np.any(tokens == end)) or np.any(tokens == bos):
            tokens = rng.integers(low, high, size=n)
        tokens[0] = bos
        if end is not None:
            tokens[-1] = end
        input_ids[row, :n], mask[row, :n] = tokens, 1
    size = vision.image_size
    pixels = rng.standard_normal((batch, vision.num_channels, size, size)).astype(np.float32)
    return {"input_ids": input_ids, "attention_mask": mask, "pixel_values": pixels}


# ---------------------------------------------------------------------------------------------- backends
def _flatten(out) -> dict[str, np.ndarray]:
    text, vision = out["text_model_output"], out["vision_model_output"]
    result = {name: out[name] for name in ("logits_per_image", "logits_per_text", "text_embeds", "image_embeds")}
    if "loss" in out:  # transformers' TF convention gives the loss shape (1,): compare it as a scalar
        result["loss"] = np.reshape(np.asarray(out["loss"], dtype=np.float32), ())
    for prefix, tower in (("text", text), ("vision", vision)):
        result[f"{prefix}_last_hidden_state"] = tower["last_hidden_state"]
        result[f"{prefix}_pooler_output"] = tower["pooler_output"]
        if "hidden_states" in tower:
            result[f"{prefix}_hidden_states"] = np.stack([np.asarray(h, dtype=np.float32)
                                                          for h in tower["hidden_states"]])
    return {k: np.asarray(v, dtype=np.float32) for k, v in result.items()}


def _run_pt(config, state, inputs, dtype):
    import torch

    from clip_pt import CLIPModel

    model = CLIPModel._from_state(config, state, dtype=dtype)
    with torch.no_grad():
        out = model(**{k: torch.from_numpy(v) for k, v in inputs.items()}, return_loss=True,
                    output_hidden_states=True)
    return _flatten(_to_numpy(out, lambda t: t.float().numpy()))


def _run_tf(config, state, inputs, dtype):
    from clip_tf import TFCLIPModel

    model = TFCLIPModel._from_state(config, state, dtype=dtype)
    out = model(**inputs, return_loss=True, output_hidden_states=True)
    return _flatten(_to_numpy(out, lambda t: np.asarray(t.numpy(), dtype=np.float32)))


def _run_flax(config, state, inputs, dtype):
    from clip_flax import FlaxCLIPModel

    model = FlaxCLIPModel._from_state(config, state, dtype=dtype)
    out = model(**inputs, return_loss=True, output_hidden_states=True)
    return _flatten(_to_numpy(out, lambda t: np.asarray(t, dtype=np.float32)))


def _run_hf(config, state, inputs, dtype):
    """transformers' own PyTorch CLIPModel, loaded from the same state: an independent reference."""
    import tempfile

    import torch
    import transformers

    from clip_core.checkpoints import save_checkpoint

    with tempfile.TemporaryDirectory() as tmp:
        save_checkpoint(Path(tmp) / "ckpt", config, state)
        model = transformers.CLIPModel.from_pretrained(Path(tmp) / "ckpt", attn_implementation="eager")
    torch_dtype = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[dtype]
    model = model.to(torch_dtype).eval()
    with torch.no_grad():
        tensors = {k: torch.from_numpy(v) for k, v in inputs.items()}
        tensors["pixel_values"] = tensors["pixel_values"].to(torch_dtype)
        out = model(**tensors, return_loss=True, output_hidden_states=True)
    return _flatten(_to_numpy(out, lambda t: t.float().numpy()))


RUNNERS: dict[str, Callable] = {"pt": _run_pt, "tf": _run_tf, "flax": _run_flax, "hf": _run_hf}


def _to_numpy(value, convert):
    if isinstance(value, Mapping):
        return {k: _to_numpy(v, convert) for k, v in value.items() if v is not None}
    if isinstance(value, (tuple, list)):
        return [_to_numpy(v, convert) for v in value]
    return convert(value)


# ---------------------------------------------------------------------------------------------- the report
@dataclass
class Row:
    """One comparison: an output of two sources (backends or ``reference``), their max abs difference."""

    output: str
    pair: str
    max_abs: float
    tolerance: float
    cosine: float | None = None

    @property
    def ok(self) -> bool:
        close = math.isfinite(self.max_abs) and self.max_abs <= self.tolerance
        return close and (self.cosine is None or self.cosine > REDUCED_COSINE)


@dataclass
class Report:
    """All comparisons of a run; ``ok`` when every row is within its tolerance."""

    rows: list[Row] = field(default_factory=list)
    backends: list[str] = field(default_factory=list)
    title: str = ""

    @property
    def ok(self) -> bool:
        return bool(self.rows) and all(row.ok for row in self.rows)

    @property
    def failures(self) -> list[Row]:
        return [row for row in self.rows if not row.ok]

    def table(self) -> str:
        """The report as a fixed-width table: output x pair -> max abs difference, tolerance, PASS/FAIL."""
        head = f"{'output':<26} {'pair':<22} {'max abs diff':>13} {'tolerance':>10}  result"
        lines = [self.title, head, "-" * len(head)] if self.title else [head, "-" * len(head)]
        for row in self.rows:
            extra = f" (cos {row.cosine:.6f})" if row.cosine is not None else ""
            lines.append(f"{row.output:<26} {row.pair:<22} {row.max_abs:>13.3e} {row.tolerance:>10.0e}  "
                         f"{'PASS' if row.ok else 'FAIL'}{extra}")
        verdict = "all within tolerance" if self.ok else f"{len(self.failures)} comparison(s) FAILED"
        lines.append(f"{len(self.rows)} comparisons over backends {', '.join(self.backends)}: {verdict}")
        return "\n".join(lines)


def _compare(rows: list[Row], a: Mapping, b: Mapping, pair: str, outputs: Iterable[str], reduced: bool) -> None:
    for name in outputs:
        if name not in a or name not in b:
            continue
        x, y = np.asarray(a[name], np.float64), np.asarray(b[name], np.float64)
        if x.shape != y.shape:
            rows.append(Row(name, pair, float("inf"), TOLERANCES.get(name, 1e-4)))
            continue
        diff = float(np.max(np.abs(x - y))) if x.size else 0.0
        if reduced:
            cos = np.sum(x * y, -1) / (np.linalg.norm(x, axis=-1) * np.linalg.norm(y, axis=-1))
            rows.append(Row(name, pair, diff, REDUCED_TOLERANCE, float(np.min(cos))))
        else:
            rows.append(Row(name, pair, diff, TOLERANCES.get(name, 1e-4)))


#: expected.npz key suffix -> our output name
FIXTURE_KEYS = {
    "logits_per_image": "logits_per_image", "text_embeds": "text_embeds", "image_embeds": "image_embeds",
    "text_last_hidden_state": "text_last_hidden_state", "text_pooler_output": "text_pooler_output",
    "vision_last_hidden_state": "vision_last_hidden_state", "vision_pooler_output": "vision_pooler_output",
    "loss": "loss",
}


def run_conformance(*, config: CLIPConfig | None = None, state: Mapping[str, np.ndarray] | None = None,
                    checkpoint: str | Path | None = None, preset: str | None = None,
                    backends: Iterable[str] | None = None, dtype: str = "float32", seed: int = 0,
                    fixture: str | Path | None = None, inputs: Mapping[str, np.ndarray] | None = None) -> Report:
    """Run every backend on one canonical state and compare all outputs pairwise (and with ``fixture``).

    The state comes from ``checkpoint`` (any format), or ``state`` + ``config``, or a random state drawn with
    ``seed`` for ``config`` / ``preset`` (default: the built-in ``"tiny"`` preset). ``fixture`` is a folder with an
    ``expected.npz`` (its inputs are then used and its outputs compared with every backend). With ``dtype`` other
    than float32, each backend's embeddings are compared with a float32 run of the first backend instead.
    """
    if dtype not in ("float32", "bfloat16", "float16"):
        raise ValueError(f"dtype must be float32, bfloat16 or float16, got {dtype!r}")
    if fixture is not None and checkpoint is None and state is None:
        checkpoint = fixture
    if checkpoint is not None:
        from clip_core.checkpoints import load_checkpoint

        config, state = load_checkpoint(checkpoint, arch="clip")
    elif config is None:
        config = CLIPConfig.preset(preset or "tiny")
    if state is None:
        state = init_state(config, "clip", seed)
    names = available_backends(backends or DEFAULT_BACKENDS)
    if not names:
        raise RuntimeError("no backend is installed: install triclip[torch], triclip[tf] or triclip[jax]")
    if len(names) < 2 and fixture is None:
        raise ValueError(f"nothing to compare: only the backend {names} is available; name two or more backends "
                         "(pt, tf, flax, hf) or give a fixture with expected outputs")
    expected = None
    if fixture is not None:
        with np.load(Path(fixture) / "expected.npz") as data:
            expected = {k: data[k] for k in data.files}
        inputs = {k: expected[k] for k in ("input_ids", "attention_mask", "pixel_values")}
    inputs = dict(inputs) if inputs is not None else make_inputs(config, seed=seed)

    reduced = dtype != "float32"
    results = {name: RUNNERS[name](config, state, inputs, dtype) for name in names}
    report = Report(backends=names, title=f"triclip conformance: dtype {dtype}, backends {', '.join(names)}")
    outputs = REDUCED_OUTPUTS if reduced else tuple(TOLERANCES)
    if reduced:
        reference = RUNNERS[names[0]](config, state, inputs, "float32")
        for name in names:
            _compare(report.rows, results[name], reference, f"{name}/{names[0]}-fp32", outputs, True)
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            _compare(report.rows, results[a], results[b], f"{a}/{b}", outputs, reduced)
    if expected is not None and not reduced:
        for name in names:
            for prefix in ("pt", "tf", "flax"):
                ref = {FIXTURE_KEYS[k[len(prefix) + 1:]]: v for k, v in expected.items()
                       if k.startswith(prefix + "_") and k[len(prefix) + 1:] in FIXTURE_KEYS}
                _compare(report.rows, results[name], ref, f"{name}/fixture-{prefix}", outputs, False)
    return report


__all__ = ["run_conformance", "Report", "Row", "make_inputs", "available_backends", "TOLERANCES", "BACKENDS",
           "DEFAULT_BACKENDS", "REDUCED_TOLERANCE", "REDUCED_COSINE"]
