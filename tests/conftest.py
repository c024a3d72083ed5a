"""Shared test fixtures: where ../shared is, and the reference fixtures in it.

Tests never download anything. ``../shared`` (or ``$TRICLIP_SHARED``) holds the reference fixtures; a test that needs
it and cannot find it fails when ``CI`` is set and is skipped otherwise.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

# transformers' TF classes (the reference oracle) need Keras 2; set before anything imports TensorFlow/transformers.
# triclip itself never imports Keras.
os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("HF_HUB_OFFLINE", "1")  # tests never touch the network
if not os.environ.get("TRICLIP_CACHE"):  # ONNX exports made by tests go to a temporary cache, never ~/.cache
    import atexit
    import shutil
    import tempfile

    os.environ["TRICLIP_CACHE"] = tempfile.mkdtemp(prefix="triclip-test-cache-")
    atexit.register(shutil.rmtree, os.environ["TRICLIP_CACHE"], True)

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # tests run against the checkout even when the package is not installed
    sys.path.insert(0, str(ROOT))

SHARED = Path(os.environ.get("TRICLIP_SHARED", ROOT.parent / "shared"))
FIXTURES = SHARED / "fixtures"
HF_FIXTURES = ("hf-tiny", "hf-tiny-legacy-eos")
WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin", "tf_model.h5", "flax_model.msgpack")


def shared_path(*parts: str) -> Path:
    """A path inside ../shared; fails (in CI) or skips (elsewhere) when it is missing."""
    path = SHARED.joinpath(*parts)
    if not path.exists():
        message = f"reference data missing: {path} (set TRICLIP_SHARED to the shared folder)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return path


@pytest.fixture(params=HF_FIXTURES)
def hf_fixture(request) -> Path:
    """Each transformers-made tiny checkpoint folder in turn."""
    return shared_path("fixtures", request.param)


def single_format_dir(src: Path, weight_file: str, tmp_path: Path) -> Path:
    """A folder holding ``config.json`` and only ``weight_file`` from ``src`` (symlinks, nothing copied)."""
    out = tmp_path / f"{src.name}-{weight_file.split('.')[0]}"
    out.mkdir()
    for name in ("config.json", weight_file):
        (out / name).symlink_to(src / name)
    return out


def load_expected(folder: Path) -> dict[str, np.ndarray]:
    with np.load(folder / "expected.npz") as data:
        return {k: data[k] for k in data.files}


def to_numpy(x) -> np.ndarray:
    """A float-friendly numpy copy of a torch / tf / jax / numpy value (bfloat16 widened to float32)."""
    if hasattr(x, "detach"):  # torch
        x = x.detach().cpu()
        x = x.float() if x.dtype.is_floating_point else x
        return x.numpy()
    if hasattr(x, "numpy") and not isinstance(x, np.ndarray):  # tf
        x = x.numpy()
    x = np.asarray(x)
    return x.astype(np.float32) if x.dtype.name in ("bfloat16", "float16") else x


def assert_close(ours, ref, atol: float, what: str = "") -> float:
    """Assert equal shapes and max abs difference <= ``atol``; returns the difference."""
    ours, ref = to_numpy(ours), to_numpy(ref)
    assert ours.shape == ref.shape, f"{what}: shape {ours.shape} != {ref.shape}"
    diff = float(np.max(np.abs(ours.astype(np.float64) - ref.astype(np.float64)))) if ours.size else 0.0
    assert diff <= atol, f"{what}: max abs difference {diff:.3g} > {atol}"
    return diff


def unit(x) -> np.ndarray:
    """``x`` L2-normalised over its last axis, as numpy."""
    x = to_numpy(x)
    return x / np.linalg.norm(x, axis=-1, keepdims=True)
