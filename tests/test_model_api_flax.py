"""Issue 15, Flax models: transformers 4.57's Flax model API on triclip's classes, against transformers live."""

from __future__ import annotations

import json

import numpy as np
import pytest

jax = pytest.importorskip("jax")
pytest.importorskip("flax")
transformers = pytest.importorskip("transformers")
import jax.numpy as jnp  # noqa: E402
from flax.traverse_util import flatten_dict  # noqa: E402

from clip_flax import FlaxCLIPModel, FlaxCLIPVisionModel  # noqa: E402
from conformance.bad_inputs import CONFIG, IDS, MASK, PIXELS  # noqa: E402


@pytest.fixture(scope="module")
def pair():
    ours = FlaxCLIPModel(CONFIG, seed=0)
    theirs = transformers.FlaxCLIPModel(transformers.CLIPConfig.from_dict(CONFIG.to_dict()), seed=0)
    return ours, theirs


def _dtypes(tree):
    return {k: v.dtype.name for k, v in flatten_dict(tree).items()}


def test_attributes_and_tree(pair):
    ours, theirs = pair
    assert ours.main_input_name == theirs.main_input_name == "input_ids"
    assert FlaxCLIPVisionModel.main_input_name == transformers.FlaxCLIPVisionModel.main_input_name
    assert ours.required_params == theirs.required_params
    assert ours.num_parameters() == sum(int(np.prod(v.shape)) for v in jax.tree_util.tree_leaves(theirs.params))
    fresh = ours.init_weights(jax.random.PRNGKey(1), (1, 5))
    their_fresh = theirs.init_weights(jax.random.PRNGKey(1), theirs.input_shape)
    assert {k: v.shape for k, v in flatten_dict(fresh).items()} == \
        {k: v.shape for k, v in flatten_dict(their_fresh).items()}


@pytest.mark.parametrize("method", ["to_bf16", "to_fp16", "to_fp32"])
def test_casts_with_a_mask(pair, method):
    ours, theirs = pair
    mask = jax.tree_util.tree_map(lambda x: x.ndim > 1, theirs.params)
    start = theirs.to_fp16(theirs.params) if method == "to_fp32" else theirs.params
    assert _dtypes(getattr(ours, method)(start, mask)) == _dtypes(getattr(theirs, method)(start, mask))
    assert _dtypes(getattr(ours, method)(start)) == _dtypes(getattr(theirs, method)(start))


def test_bfloat16_outputs_match_transformers_dtypes():
    ours = FlaxCLIPModel(CONFIG, seed=0, dtype=jnp.bfloat16)
    theirs = transformers.FlaxCLIPModel(transformers.CLIPConfig.from_dict(CONFIG.to_dict()), dtype=jnp.bfloat16)
    a, b = ours(IDS, PIXELS, MASK), theirs(IDS, PIXELS, MASK)
    for key in ("text_embeds", "image_embeds", "logits_per_image"):
        assert a[key].dtype == b[key].dtype, key
    assert ours.get_text_features(IDS).dtype == theirs.get_text_features(IDS).dtype


def test_bf16_save_and_auto_reload(tmp_path, pair):
    ours, _ = pair
    model = FlaxCLIPModel(CONFIG, seed=0)
    model.params = model.to_bf16(model.params)
    model.save_pretrained(tmp_path)
    assert json.loads((tmp_path / "config.json").read_text())["dtype"] == "bfloat16"
    back = FlaxCLIPModel.from_pretrained(tmp_path, dtype="auto")
    assert set(_dtypes(back.params).values()) == {"bfloat16"}
    theirs = transformers.CLIPModel.from_pretrained(tmp_path, dtype="auto")  # the PyTorch file reader agrees
    assert str(theirs.dtype) == "torch.bfloat16"
    np.testing.assert_array_equal(np.asarray(back.params["logit_scale"], np.float32),
                                  np.asarray(model.params["logit_scale"], np.float32))
