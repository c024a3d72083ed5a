"""The bad-input catalogue, run against every backend: the same mistakes get the same clear exceptions.

Each case names what the message must mention (the argument, the offending value or shape, the way out).
Checkpoint, tokenizer, image and CLI errors have their own tests (test_checkpoints, test_tokenizer,
test_image_processing, test_cli); docs/errors.md lists them all.
"""

from __future__ import annotations

import numpy as np
import pytest

from clip_core.config import CLIPConfig

CONFIG = CLIPConfig(
    projection_dim=8,
    text_config=dict(vocab_size=50, hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2,
                     max_position_embeddings=7, bos_token_id=48, eos_token_id=49, pad_token_id=0),
    vision_config=dict(hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2,
                       image_size=16, patch_size=8),
)
IDS = np.array([[48, 5, 6, 49, 0], [48, 7, 49, 0, 0]], dtype=np.int64)
MASK = (np.arange(5) < np.array([[4], [3]])).astype(np.int64)
PIXELS = np.random.default_rng(0).standard_normal((2, 3, 16, 16)).astype(np.float32)


def _pixels(**change):
    shape = change.pop("shape", PIXELS.shape)
    out = np.random.default_rng(1).standard_normal(shape).astype(np.float32)
    if change.get("nan"):
        out[0, 0, 0, 0] = np.nan
    if change.get("inf"):
        out[-1, -1, -1, -1] = np.inf
    return out


# (name, call kwargs, exception type, regex the message must match)
CASES = [
    ("id above the vocabulary", dict(input_ids=np.where(IDS == 5, 50, IDS)), ValueError, r"50.*vocabulary"),
    ("negative id", dict(input_ids=np.where(IDS == 5, -3, IDS)), ValueError, r"-3.*vocabulary"),
    ("text longer than the positions", dict(input_ids=np.zeros((2, 8), np.int64)), ValueError,
     r"max_position_embeddings"),
    ("1-D input_ids", dict(input_ids=IDS[0]), ValueError, r"input_ids.*shape"),
    ("mask of another shape", dict(attention_mask=MASK[:, :4]), ValueError, r"attention_mask"),
    ("float input_ids", dict(input_ids=IDS.astype(np.float32)), TypeError, r"input_ids.*(integer|int)"),
    ("image of another size", dict(pixel_values=_pixels(shape=(2, 3, 24, 16))), ValueError,
     r"interpolate_pos_encoding"),
    ("image with 4 channels", dict(pixel_values=_pixels(shape=(2, 4, 16, 16))), ValueError, r"4 channels"),
    ("channels-last image", dict(pixel_values=_pixels(shape=(2, 16, 16, 3))), ValueError, r"channels"),
    ("3-D pixel_values", dict(pixel_values=PIXELS[0]), ValueError, r"pixel_values.*shape"),
    ("huge image with interpolate_pos_encoding",  # 262,145 tokens: 550 GB of attention scores per layer
     dict(pixel_values=np.zeros((1, 3, 4096, 4096), np.float32), interpolate_pos_encoding=True), ValueError,
     r"4096x4096 makes 262,145 tokens.*attention scores.*549.8 GB.*physical memory"),
    ("NaN pixel", dict(pixel_values=_pixels(nan=True)), ValueError, r"NaN"),
    ("infinite pixel", dict(pixel_values=_pixels(inf=True)), ValueError, r"infinite"),
    ("empty text batch", dict(input_ids=IDS[:0], attention_mask=MASK[:0]), ValueError, r"input_ids is empty"),
    ("empty image batch", dict(pixel_values=PIXELS[:0]), ValueError, r"pixel_values is an empty batch"),
    ("loss with unequal batches", dict(pixel_values=PIXELS[:1], return_loss=True), ValueError,
     r"return_loss.*2 texts.*1 images"),
    ("no text", dict(input_ids=None), ValueError, r"input_ids"),
    ("no image", dict(pixel_values=None), ValueError, r"pixel_values"),
]


def _pt():
    torch = pytest.importorskip("torch")
    from clip_pt import CLIPModel

    model = CLIPModel(CONFIG, seed=0).eval()

    def call(**kw):
        kw = {k: (torch.from_numpy(v) if isinstance(v, np.ndarray) else v) for k, v in kw.items()}
        with torch.no_grad():
            return model(**kw)
    return call


def _tf():
    pytest.importorskip("tensorflow")
    from clip_tf import TFCLIPModel

    model = TFCLIPModel(CONFIG, seed=0)
    return lambda **kw: model(**kw)


def _flax():
    pytest.importorskip("flax")
    from clip_flax import FlaxCLIPModel

    model = FlaxCLIPModel(CONFIG, seed=0)
    return lambda **kw: model(**kw)


@pytest.fixture(scope="module", params=["pt", "tf", "flax"])
def call(request):
    return {"pt": _pt, "tf": _tf, "flax": _flax}[request.param]()


def test_good_inputs_run(call):
    out = call(input_ids=IDS, attention_mask=MASK, pixel_values=PIXELS, return_loss=True)
    assert np.asarray(out["logits_per_image"]).shape == (2, 2)


@pytest.mark.parametrize("name, change, error, pattern", CASES, ids=[c[0] for c in CASES])
def test_bad_input(call, name, change, error, pattern):
    kwargs = dict(input_ids=IDS, attention_mask=MASK, pixel_values=PIXELS)
    kwargs.update(change)
    with pytest.raises(error, match=pattern):
        call(**kwargs)
