"""Exported artifacts against their source model: every artifact of an export folder (``triclip export``) is loaded
with its own runtime -- ONNX Runtime, a fresh ``tf.saved_model.load``, the LiteRT interpreter, ``jax.export
.deserialize`` -- and run on the folder's reference inputs (two batch sizes, two text lengths); every output is
compared with the float32 source model's.

Tolerances (DESIGN.md): float32 artifacts -- L2-normalised features and embeddings within 1e-5, logits within 1e-4;
float16 / bfloat16 artifacts against the float32 source -- normalised features within 2e-2 with every row's cosine
above 0.999, logits divided by ``exp(logit_scale)`` (cosines) within 2e-2.

    from conformance import run_artifact_conformance
    report = run_artifact_conformance("out/")              # or checkpoint=... to recompute the reference
    assert report.ok, report.table()
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Mapping

import numpy as np

from clip_core import exporting

_FEATURES = ("text_features", "image_features")
_EMBEDS = ("text_embeds", "image_embeds")
_LOGITS = ("logits_per_image", "logits_per_text")


@dataclass
class ArtifactRow:
    """One output of one artifact on one reference case against the source model."""

    artifact: str
    output: str
    case: str
    max_abs: float
    tolerance: float
    cosine: float | None = None
    min_cosine: float | None = None
    error: str | None = None

    @property
    def ok(self) -> bool:
        if self.error is not None:
            return False
        close = math.isfinite(self.max_abs) and self.max_abs <= self.tolerance
        return close and (self.min_cosine is None or (self.cosine is not None and self.cosine > self.min_cosine))


@dataclass
class ArtifactReport:
    """Every comparison of an export folder; ``ok`` when there is at least one and all pass."""

    folder: str
    dtype: str
    rows: list[ArtifactRow] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return bool(self.rows) and all(row.ok for row in self.rows)

    @property
    def failures(self) -> list[ArtifactRow]:
        return [row for row in self.rows if not row.ok]

    def table(self) -> str:
        """A fixed-width table: artifact, output, case (batch x length), max abs difference, tolerance, result."""
        head = f"{'artifact':<34} {'output':<22} {'case':<12} {'max abs diff':>12} {'tolerance':>9}  result"
        lines = [f"artifacts in {self.folder} ({self.dtype}) against the float32 source model", head,
                 "-" * len(head)]
        for row in self.rows:
            if row.error is not None:
                lines.append(f"{row.artifact:<34} {row.output:<22} {row.case:<12} {'-':>12} {'-':>9}  FAIL "
                             f"({row.error})")
                continue
            extra = f" (cos {row.cosine:.6f} > {row.min_cosine})" if row.min_cosine is not None else ""
            lines.append(f"{row.artifact:<34} {row.output:<22} {row.case:<12} {row.max_abs:>12.3e} "
                         f"{row.tolerance:>9.0e}  {'PASS' if row.ok else 'FAIL'}{extra}")
        verdict = "all within tolerance" if self.ok else f"{len(self.failures)} comparison(s) FAILED"
        lines.append(f"{len(self.rows)} comparisons: {verdict}")
        return "\n".join(lines)


# ---------------------------------------------------------------------------------------------- runtimes
def _onnx_runner(folder: Path, artifact: dict) -> Callable:
    import onnxruntime

    session = onnxruntime.InferenceSession(str(folder / artifact["path"]), providers=["CPUExecutionProvider"])
    names = [o["name"] for o in artifact["outputs"]]
    return lambda feed: dict(zip(names, session.run(names, feed)))


def _savedmodel_runner(folder: Path, artifact: dict, cache: dict) -> Callable:
    import tensorflow as tf

    path = str(folder / artifact["path"])
    if path not in cache:  # one fresh load per SavedModel, shared by its signatures
        cache[path] = tf.saved_model.load(path)
    signature = cache[path].signatures[artifact["signature"]]
    return lambda feed: {k: v.numpy() for k, v in signature(**{k: tf.constant(v) for k, v in feed.items()}).items()}


def _litert_runner(folder: Path, artifact: dict) -> Callable:
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:  # TensorFlow's own interpreter serves as well
        import tensorflow as tf

        Interpreter = tf.lite.Interpreter
    interpreter = Interpreter(model_path=str(folder / artifact["path"]))
    runner = interpreter.get_signature_runner(artifact.get("signature", "serving_default"))
    return lambda feed: runner(**feed)  # the runner resizes its inputs to each call's shapes


def _stablehlo_runner(folder: Path, artifact: dict) -> Callable:
    from jax import export as jax_export

    exported = jax_export.deserialize(bytearray((folder / artifact["path"]).read_bytes()))
    names = [o["name"] for o in artifact["outputs"]]
    inputs = [i["name"] for i in artifact["inputs"]]

    def run(feed):
        out = exported.call(*(feed[n] for n in inputs))
        out = out if isinstance(out, (tuple, list)) else (out,)
        return {n: np.asarray(v) for n, v in zip(names, out)}
    return run


def load_artifact(folder: str | os.PathLike, artifact: dict, cache: dict | None = None) -> Callable:
    """A function ``feed (dict of numpy inputs) -> dict of numpy outputs`` running ``artifact`` (a manifest
    record) in its own runtime."""
    folder, fmt = Path(folder), artifact["format"]
    if fmt == "onnx":
        return _onnx_runner(folder, artifact)
    if fmt == "savedmodel":
        return _savedmodel_runner(folder, artifact, {} if cache is None else cache)
    if fmt == "litert":
        return _litert_runner(folder, artifact)
    if fmt == "stablehlo":
        return _stablehlo_runner(folder, artifact)
    raise ValueError(f"unknown artifact format {fmt!r}")


# ---------------------------------------------------------------------------------------------- comparisons
def _unit(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, np.float64)
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def compare_output(name: str, ours: np.ndarray, ref: np.ndarray, dtype: str, logit_scale: float) -> list[tuple]:
    """The comparisons of one output with the reference, each ``(label, max_abs, tolerance, cosine or None,
    min_cosine or None)``: logits (float16 / bfloat16: divided by ``exp(logit_scale)``); features and embeddings
    as directions (L2-normalised, with the smallest row cosine) and, for the unnormalised features, their values
    relative to the largest reference magnitude."""
    tol = exporting.TOLERANCES[dtype]
    ours, ref = np.asarray(ours, np.float64), np.asarray(ref, np.float64)
    if ours.shape != ref.shape:
        raise ValueError(f"shape {ours.shape}, expected {ref.shape}")
    diff = float(np.max(np.abs(ours - ref))) if ref.size else 0.0
    if name in _LOGITS:
        scale = 1.0 if dtype == "float32" else math.exp(logit_scale)
        return [(name, diff / scale, tol["logits"], None, None)]
    a, b = _unit(ours), _unit(ref)
    cosine = float(np.min(np.sum(a * b, axis=-1)))
    rows = [(name if name in _EMBEDS else f"{name} (unit)", float(np.max(np.abs(a - b))), tol["unit"], cosine,
             tol["cosine"])]
    if name in _FEATURES:  # the norm matters too: get_*_features are unnormalised
        rows.append((f"{name} (rel)", diff / max(float(np.max(np.abs(ref))), 1e-12), tol["logits"], None, None))
    return rows


def _feed(artifact: dict, case: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    return {i["name"]: np.asarray(case[i["name"]]).astype(i["dtype"]) for i in artifact["inputs"]}


def _case_name(case: Mapping[str, np.ndarray], artifact: dict) -> str:
    names = {i["name"] for i in artifact["inputs"]}
    parts = []
    if "input_ids" in names:
        parts.append("x".join(map(str, case["input_ids"].shape)))
    if "pixel_values" in names:
        parts.append(f"img{case['pixel_values'].shape[0]}")
    return ",".join(parts)


def reference_from_checkpoint(checkpoint: str | os.PathLike, cases) -> list[dict[str, np.ndarray]]:
    """The reference outputs recomputed from a checkpoint by the first installed backend (PyTorch, TensorFlow,
    Flax), in float32."""
    for backend in ("clip_pt", "clip_tf", "clip_flax"):
        try:
            package = __import__(backend)
            module = __import__(f"{backend}.export", fromlist=["reference_outputs"])
        except ImportError:
            continue
        cls = getattr(package, {"clip_pt": "CLIPModel", "clip_tf": "TFCLIPModel", "clip_flax": "FlaxCLIPModel"}[
            backend])
        return module.reference_outputs(cls.from_pretrained(checkpoint), cases)
    raise ImportError("recomputing the reference needs one of clip_pt, clip_tf, clip_flax with its framework")


def run_artifact_conformance(folder: str | os.PathLike, checkpoint: str | os.PathLike | None = None,
                             formats=None) -> ArtifactReport:
    """Run every artifact of the export ``folder`` (or only those of ``formats``) on the reference cases and
    compare with the source model's float32 outputs (``reference.npz``, or recomputed from ``checkpoint``).

    An artifact that fails to load or run is a failed row naming the error, not an exception.
    """
    folder = Path(folder)
    manifest = exporting.read_manifest(folder)
    cases, logit_scale = exporting.read_reference(folder)
    if checkpoint is not None:
        expected = reference_from_checkpoint(checkpoint, cases)
        cases = [{**{k: c[k] for k in ("input_ids", "attention_mask", "pixel_values")}, **e}
                 for c, e in zip(cases, expected)]
    wanted = None if formats is None else set(exporting.check_formats(formats))
    report = ArtifactReport(str(folder), manifest["dtype"])
    cache: dict = {}
    for artifact in manifest["artifacts"]:
        if wanted is not None and artifact["format"] not in wanted:
            continue
        label = artifact["path"] + (f":{artifact['signature']}" if artifact["format"] == "savedmodel" else "")
        try:
            run = load_artifact(folder, artifact, cache)
        except Exception as err:  # reported, not raised: the other artifacts still run
            report.rows.append(ArtifactRow(label, "(load)", "-", math.nan, 0.0, error=_short(err)))
            continue
        for case in cases:
            case_name = _case_name(case, artifact)
            try:
                out = run(_feed(artifact, case))
            except Exception as err:
                report.rows.append(ArtifactRow(label, "(run)", case_name, math.nan, 0.0, error=_short(err)))
                continue
            for spec in artifact["outputs"]:
                name = spec["name"]
                try:
                    for output, diff, tol, cosine, min_cos in compare_output(name, out[name], case[name],
                                                                             artifact["dtype"], logit_scale):
                        report.rows.append(ArtifactRow(label, output, case_name, diff, tol, cosine, min_cos))
                except Exception as err:
                    report.rows.append(ArtifactRow(label, name, case_name, math.nan, 0.0, error=_short(err)))
    return report


def _short(err: Exception) -> str:
    message = " ".join(str(err).split())
    return f"{type(err).__name__}: {message[:200]}"


__all__ = ["run_artifact_conformance", "ArtifactReport", "ArtifactRow", "load_artifact", "compare_output",
           "reference_from_checkpoint"]
