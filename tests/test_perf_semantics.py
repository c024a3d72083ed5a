"""What the speed-ups (docs/performance.md) must not change, in each backend.

- Text is never padded beyond what the caller asked for; the processor pads to the longest text of the batch by
  default, and features at that padding equal features at padding 77 (within 1e-5 on normalised embeddings).
- ``get_text_features`` / ``get_image_features`` compute only the pooled rows in the last layer and cut text columns
  after the last pooled token: they equal the full forward pass, for right and left padding, rows whose pooled token
  sees no unmasked token, and the legacy ``eos_token_id == 2`` pooling.
- Loading maps a safetensors file copy-on-write; saving over a mapped checkpoint is safe.
"""

from __future__ import annotations

import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

from clip_core.config import CLIPConfig  # noqa: E402
from tests.conftest import shared_path  # noqa: E402

EMBED_TOL = 1e-5
CAPTIONS = ["a photo of a cat", "two dogs playing in the snow near a red barn", "a bowl of ramen",
            "an astronaut riding a horse on the moon, digital art, highly detailed"]


def _unit(x) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def _close(a, b, what):
    diff = float(np.abs(_unit(a) - _unit(b)).max())
    assert diff <= EMBED_TOL, f"{what}: normalised embeddings differ by {diff:.3g}"


@pytest.fixture(scope="module")
def batches():
    """The same captions padded to the longest (the processor's default) and to 77, plus random pixels."""
    from clip_core.image_processing import CLIPImageProcessor
    from clip_core.processor import CLIPProcessor
    from clip_core.tokenizer import CLIPTokenizerFast

    processor = CLIPProcessor(CLIPImageProcessor(), CLIPTokenizerFast.from_pretrained(shared_path("data", "clip-bpe")))
    longest = processor(text=CAPTIONS, return_tensors="np")
    padded = processor(text=CAPTIONS, padding="max_length", max_length=77, return_tensors="np")
    pixels = np.random.default_rng(0).standard_normal((len(CAPTIONS), 3, 32, 32)).astype(np.float32)
    return {"longest": dict(longest), "77": dict(padded), "pixels": pixels}


def test_processor_pads_to_the_longest_text_by_default(batches):
    longest, padded = batches["longest"], batches["77"]
    lengths = longest["attention_mask"].sum(axis=1)
    assert longest["input_ids"].shape == (len(CAPTIONS), lengths.max()) and lengths.max() < 77
    assert padded["input_ids"].shape == (len(CAPTIONS), 77)
    np.testing.assert_array_equal(padded["input_ids"][:, :lengths.max()], longest["input_ids"])


def _edge_cases():
    """(name, ids, mask): right padding, left padding, a row that sees no unmasked token, one row, no mask."""
    rng = np.random.default_rng(1)
    ids = rng.integers(1, 49406, size=(3, 20))
    ids[:, 0] = 49406
    for row, eos in enumerate((5, 9, 3)):
        ids[row, eos] = 49407
        ids[row, eos + 1:] = 49407  # padded with the eos id, as OpenAI's tokenizer output
    mask = (np.arange(20) <= np.array([5, 9, 3])[:, None]).astype(np.int64)
    left = np.zeros_like(ids) + 49407
    left[0, 14:] = [49406, 320, 1125, 539, 320, 49407]
    left[1, 17:] = [49406, 1929, 49407]
    left[2, :] = ids[1]
    left_mask = (left != 49407).astype(np.int64) | (np.arange(20) == np.array([[19], [19], [9]])).astype(np.int64)
    blind = mask.copy()
    blind[1, :10] = 0  # row 1's pooled token (position 9) sees nothing: then nothing may be cut
    return [("right", ids, mask), ("left", left, left_mask), ("blind", ids, blind), ("one row", ids[:1], mask[:1]),
            ("no mask", ids, None)]


def _legacy_config():
    config = CLIPConfig.preset("tiny")
    config.text_config.eos_token_id = 2  # pools at argmax(input_ids)
    return config


# ---------------------------------------------------------------------------------------------- PyTorch
def test_pt_features(batches):
    torch = pytest.importorskip("torch")
    from clip_pt import CLIPModel

    model = CLIPModel(CLIPConfig.preset("tiny"), seed=0).eval()

    def text(batch, grad=False):
        with torch.set_grad_enabled(grad):
            return model.get_text_features(torch.from_numpy(batch["input_ids"]),
                                           torch.from_numpy(batch["attention_mask"])).detach().numpy()

    longest, padded = text(batches["longest"]), text(batches["77"])
    _close(longest, padded, "longest vs 77")
    _close(text(batches["77"], grad=True), padded, "with autograd (nn.Linear) vs without (oneDNN)")
    pixels = torch.from_numpy(batches["pixels"])
    with torch.inference_mode():
        full = model(input_ids=torch.from_numpy(batches["77"]["input_ids"]), pixel_values=pixels,
                     attention_mask=torch.from_numpy(batches["77"]["attention_mask"]))
        _close(longest, full.text_embeds, "features vs the full forward")
        _close(model.get_image_features(pixels), full.image_embeds, "image features vs the full forward")
    for config in (CLIPConfig.preset("tiny"), _legacy_config()):
        model = CLIPModel(config, seed=1).eval()
        for name, ids, mask in _edge_cases():
            ids_t = torch.from_numpy(ids)
            mask_t = None if mask is None else torch.from_numpy(mask)
            with torch.no_grad():
                features = model.get_text_features(ids_t, mask_t)
                full = model.text_model(ids_t, mask_t).pooler_output @ model.text_projection.weight.t()
            _close(features, full, f"{name} (eos {config.text_config.eos_token_id})")


def test_pt_trim_text():
    torch = pytest.importorskip("torch")
    from clip_pt.modeling import trim_text

    ids = torch.tensor([[49406, 320, 49407, 0, 0, 0], [49406, 320, 321, 49407, 0, 0]])
    mask = (ids != 0).long()
    cut = trim_text(ids, mask, None, 49407)
    assert cut[0].shape == (2, 4) and cut[1].shape == (2, 4) and cut[2] is None
    blind = mask.clone()
    blind[0, :3] = 0
    assert trim_text(ids, blind, None, 49407)[0].shape == (2, 6)  # row 0 sees nothing: unchanged
    assert trim_text(ids, None, torch.arange(6)[None], 49407)[2].shape == (1, 4)


# ---------------------------------------------------------------------------------------------- TensorFlow
def test_tf_features(batches):
    tf = pytest.importorskip("tensorflow")
    from clip_tf import TFCLIPModel

    model = TFCLIPModel(CLIPConfig.preset("tiny"), seed=0)
    model.jit_compile = True  # the lengths XLA compiles for (the default "auto" compiles only repeated shapes)

    def text(batch):
        return model.get_text_features(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).numpy()

    longest, padded = text(batches["longest"]), text(batches["77"])
    _close(longest, padded, "longest vs 77")
    lengths = {key[2][0][1][1] for key in model._compiled.functions if key[0] == "_text_features"}
    width = batches["longest"]["input_ids"].shape[1]  # the 77 columns are cut to a power of two >= width
    assert lengths == {width, min(77, max(8, 1 << (width - 1).bit_length()))}, lengths
    model.jit_compile = False
    _close(text(batches["77"]), padded, "eager vs XLA")
    model.jit_compile = True

    @tf.function(jit_compile=True)
    def inside(ids, mask):  # inside a caller's graph the values are unknown: nothing is cut
        return model.get_text_features(ids, mask)

    _close(inside(tf.constant(batches["77"]["input_ids"]), tf.constant(batches["77"]["attention_mask"])), padded,
           "inside a tf.function")
    full = model(input_ids=batches["77"]["input_ids"], pixel_values=batches["pixels"],
                 attention_mask=batches["77"]["attention_mask"])
    _close(longest, full.text_embeds, "features vs the full forward")
    _close(model.get_image_features(batches["pixels"]), full.image_embeds, "image features vs the full forward")
    for config in (CLIPConfig.preset("tiny"), _legacy_config()):
        model = TFCLIPModel(config, seed=1)
        for name, ids, mask in _edge_cases():
            features = model.get_text_features(input_ids=ids, attention_mask=mask)
            pooled = model.text_model(tf.constant(ids, tf.int32), None if mask is None else tf.constant(mask))
            full = tf.matmul(pooled.pooler_output, model.params["text_projection.weight"])
            _close(features, full, f"{name} (eos {config.text_config.eos_token_id})")


# ---------------------------------------------------------------------------------------------- Flax
def test_flax_features(batches):
    jax = pytest.importorskip("jax")
    pytest.importorskip("flax")
    from clip_flax import FlaxCLIPModel

    model = FlaxCLIPModel(CLIPConfig.preset("tiny"), seed=0)

    def text(batch):
        return model.get_text_features(batch["input_ids"], batch["attention_mask"])

    longest, padded = text(batches["longest"]), text(batches["77"])
    _close(longest, padded, "longest vs 77")
    jitted = jax.jit(lambda p, i, m: model.get_text_features(i, m, params=p))
    _close(jitted(model.params, batches["77"]["input_ids"], batches["77"]["attention_mask"]), padded,
           "inside jax.jit (nothing cut) vs the plain call")
    full = model(batches["77"]["input_ids"], batches["pixels"], attention_mask=batches["77"]["attention_mask"])
    _close(longest, full.text_embeds, "features vs the full forward")
    _close(model.get_image_features(batches["pixels"]), full.image_embeds, "image features vs the full forward")
    for config in (CLIPConfig.preset("tiny"), _legacy_config()):
        model = FlaxCLIPModel(config, seed=1)
        projection = model.params["text_projection"]["kernel"]
        for name, ids, mask in _edge_cases():
            features = model.get_text_features(ids, mask)
            pooled = model.module.apply({"params": model.params}, ids, mask, None,
                                        method=lambda module, i, m, p: module.text_model(i, m, p))
            _close(features, pooled.pooler_output @ projection, f"{name} (eos {config.text_config.eos_token_id})")


# ---------------------------------------------------------------------------------------------- loading
def test_safetensors_are_mapped_copy_on_write_and_saving_over_them_is_safe(tmp_path):
    from clip_core.checkpoints import load_checkpoint, read_safetensors, save_checkpoint
    from clip_core.weights import init_state

    config = CLIPConfig.preset("tiny")
    save_checkpoint(tmp_path / "ckpt", config, init_state(config, "clip", seed=0))
    path = tmp_path / "ckpt" / "model.safetensors"
    before = path.read_bytes()
    state = read_safetensors(path, mmap=True)  # the opt-in mapping (the default reads into owned memory)
    name = "text_model.embeddings.token_embedding.weight"
    array = state[name]
    assert not array.flags.owndata and array.flags.writeable and array.flags.c_contiguous
    original = array[0].copy()
    array[0] += 1  # changes this process's copy only
    assert path.read_bytes() == before
    _, mapped = load_checkpoint(tmp_path / "ckpt", mmap=True)
    np.testing.assert_array_equal(mapped[name][0], original)
    other = init_state(config, "clip", seed=1)
    save_checkpoint(tmp_path / "ckpt", config, other)  # replaces the file under the mapped arrays: they stay valid
    np.testing.assert_array_equal(mapped[name][0], original)
    np.testing.assert_array_equal(read_safetensors(path)[name], other[name])
