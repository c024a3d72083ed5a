"""Bad-input conformance: every bad input fed to every backend, which must all fail (or all succeed) alike.

One rule per input lives in :mod:`clip_core.modeling_utils` (``check_text_inputs``, ``check_attention_mask``,
``check_position_ids``, ``check_vision_inputs`` / ``check_pixel_values``, ``check_class_labels``) and every backend
applies it. :data:`CASES` lists the inputs (each as a change to a good call and the expected outcome: an exception
type, or ``None`` for success); :func:`run_bad_inputs` feeds each case to each backend, both as numpy arrays and as
the backend's own tensors (or Python lists, where the case says so), and returns one row per (case, backend, form).

Use it from a test::

    from conformance.bad_inputs import run_bad_inputs
    rows = run_bad_inputs(["pt", "tf", "flax"])
    assert all(row.ok for row in rows), [row for row in rows if not row.ok]
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterable

import numpy as np

from clip_core.config import CLIPConfig

#: A tiny model: 50 ids, 7 positions, 16x16 images in 8x8 patches, 3 classes.
CONFIG = CLIPConfig(
    projection_dim=8, num_labels=3,
    text_config=dict(vocab_size=50, hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2,
                     max_position_embeddings=7, bos_token_id=48, eos_token_id=49, pad_token_id=0),
    vision_config=dict(hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2,
                       image_size=16, patch_size=8),
)
IDS = np.array([[48, 5, 6, 49, 0], [48, 7, 49, 0, 0]], dtype=np.int64)
MASK = (np.arange(5) < np.array([[4], [3]])).astype(np.int64)
PIXELS = np.random.default_rng(0).standard_normal((2, 3, 16, 16)).astype(np.float32)
LABELS = np.array([0, 2], dtype=np.int64)


def _pixels(value, dtype=np.float32):
    out = PIXELS.astype(dtype)
    out[0, 0, 0, 0] = value
    return out


def _mask(value):
    out = MASK.astype(np.float32)
    out[0, 1] = value
    return out


@dataclass(frozen=True)
class Case:
    """A change to a good call (``model="clip"``: ``CLIPModel(input_ids, pixel_values, attention_mask)``;
    ``"classifier"``: ``CLIPForImageClassification(pixel_values, labels)``) and its outcome in every backend:
    ``error`` (an exception type) or ``None`` (it runs). ``native``: also feed the backend's own tensors;
    ``as_list``: feed the changed inputs as nested Python lists."""

    name: str
    change: dict
    error: type | None
    model: str = "clip"
    native: bool = True
    as_list: bool = False


CASES = [
    # attention_mask: 0/1 only, of any bool/int/float dtype
    Case("mask of bools", dict(attention_mask=MASK.astype(bool)), None),
    Case("mask of float 0/1", dict(attention_mask=MASK.astype(np.float32)), None),
    Case("mask 0.5", dict(attention_mask=_mask(0.5)), ValueError),
    Case("mask 2", dict(attention_mask=np.where(MASK == 1, 2, 0)), ValueError),
    Case("mask -1", dict(attention_mask=np.where(MASK == 1, 1, -1)), ValueError),
    Case("mask NaN", dict(attention_mask=_mask(np.nan)), ValueError),
    # position_ids: integers, (batch or 1, length), in [0, max_position_embeddings)
    Case("position_ids (1, length)", dict(position_ids=np.arange(5)[None]), None),
    Case("float position_ids", dict(position_ids=np.arange(5, dtype=np.float32)[None].repeat(2, 0)), TypeError),
    Case("1-D position_ids", dict(position_ids=np.arange(5)), ValueError),
    Case("position_ids beyond the table", dict(position_ids=np.arange(3, 8)[None]), ValueError),
    # input_ids: any integer dtype, numpy or lists
    Case("uint8 input_ids", dict(input_ids=IDS.astype(np.uint8)), None),
    Case("int32 input_ids", dict(input_ids=IDS.astype(np.int32)), None),
    Case("input_ids as lists", dict(input_ids=IDS, attention_mask=MASK), None, native=False, as_list=True),
    Case("bool input_ids", dict(input_ids=IDS > 10), TypeError),
    # pixel_values: floating point, finite, within float32
    Case("float16 pixels", dict(pixel_values=PIXELS.astype(np.float16)), None),
    Case("float64 pixels", dict(pixel_values=PIXELS.astype(np.float64)), None),
    Case("pixels as lists", dict(pixel_values=PIXELS), None, native=False, as_list=True),
    Case("uint8 pixels", dict(pixel_values=(PIXELS * 50 + 100).clip(0, 255).astype(np.uint8)), TypeError),
    Case("bool pixels", dict(pixel_values=PIXELS > 0), TypeError),
    Case("complex pixels", dict(pixel_values=PIXELS.astype(np.complex64)), TypeError),
    Case("int pixels", dict(pixel_values=PIXELS.astype(np.int32)), TypeError),
    Case("pixels beyond float32", dict(pixel_values=_pixels(1e39, np.float64)), ValueError, native=False),
    # labels of the image classifier: integers in [0, num_labels) or -100
    Case("labels in range", dict(labels=LABELS), None, model="classifier"),
    Case("label -100 ignored", dict(labels=np.array([-100, 1])), None, model="classifier"),
    Case("label = num_labels", dict(labels=np.array([0, 3])), ValueError, model="classifier"),
    Case("label -1", dict(labels=np.array([-1, 0])), ValueError, model="classifier"),
]


@dataclass
class Row:
    """One case in one backend and input form: the expected and the actual outcome (exception type or None)."""

    case: str
    backend: str
    form: str
    expected: type | None
    got: type | None
    message: str = ""

    @property
    def ok(self) -> bool:
        return self.got is self.expected if self.expected is None else \
            self.got is not None and issubclass(self.got, self.expected)


# ---------------------------------------------------------------------------------------------- backends
def _pt():
    import torch

    from clip_pt import CLIPForImageClassification, CLIPModel

    models = {"clip": CLIPModel(CONFIG, seed=0).eval(), "classifier": CLIPForImageClassification(CONFIG, seed=0)}

    def call(model, kwargs):
        with torch.no_grad():
            return models[model](**kwargs)
    return call, torch.from_numpy


def _tf():
    import tensorflow as tf

    from clip_tf import TFCLIPForImageClassification, TFCLIPModel

    models = {"clip": TFCLIPModel(CONFIG, seed=0), "classifier": TFCLIPForImageClassification(CONFIG, seed=0)}
    return (lambda model, kwargs: models[model](**kwargs)), tf.constant


def _flax():
    import jax.numpy as jnp

    from clip_flax import FlaxCLIPForImageClassification, FlaxCLIPModel

    models = {"clip": FlaxCLIPModel(CONFIG, seed=0), "classifier": FlaxCLIPForImageClassification(CONFIG, seed=0)}
    return (lambda model, kwargs: models[model](**kwargs)), jnp.asarray


RUNNERS: dict[str, Callable] = {"pt": _pt, "tf": _tf, "flax": _flax}


def _base(model: str) -> dict:
    if model == "classifier":
        return dict(pixel_values=PIXELS)
    return dict(input_ids=IDS, pixel_values=PIXELS, attention_mask=MASK)


def run_bad_inputs(backends: Iterable[str] = ("pt", "tf", "flax"), cases: Iterable[Case] = CASES) -> list[Row]:
    """Feed every case to every backend (numpy, and the backend's own tensors or lists) and record the outcomes."""
    rows = []
    for backend in backends:
        call, native = RUNNERS[backend]()
        for case in cases:
            forms = ["list"] if case.as_list else ["numpy"] + (["native"] if case.native else [])
            for form in forms:
                kwargs = _base(case.model)
                for key, value in case.change.items():
                    kwargs[key] = value.tolist() if form == "list" else native(value) if form == "native" else value
                if form == "native":
                    kwargs = {k: (native(v) if isinstance(v, np.ndarray) else v) for k, v in kwargs.items()}
                try:
                    call(case.model, kwargs)
                    got, message = None, ""
                except Exception as err:  # noqa: BLE001 - recorded and compared
                    got, message = type(err), str(err)
                rows.append(Row(case.name, backend, form, case.error, got, message))
    return rows


__all__ = ["CASES", "CONFIG", "Case", "Row", "run_bad_inputs", "RUNNERS"]
