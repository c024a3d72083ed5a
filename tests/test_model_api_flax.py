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


def _classes():
    from clip_flax import FlaxCLIPTextModel
    text, vision = CONFIG.text_config, CONFIG.vision_config
    return [(FlaxCLIPModel, transformers.FlaxCLIPModel, CONFIG, transformers.CLIPConfig),
            (FlaxCLIPTextModel, transformers.FlaxCLIPTextModel, text, transformers.CLIPTextConfig),
            (FlaxCLIPVisionModel, transformers.FlaxCLIPVisionModel, vision, transformers.CLIPVisionConfig)]


@pytest.mark.parametrize("index", [0, 1, 2])
def test_key_input_shape_and_shape_tree(index):
    ours_cls, theirs_cls, config, their_config_cls = _classes()[index]
    ours = ours_cls(config, seed=3)
    theirs = theirs_cls(their_config_cls.from_dict(config.to_dict()), seed=3)
    np.testing.assert_array_equal(np.asarray(jax.random.key_data(ours.key)),
                                  np.asarray(jax.random.key_data(theirs.key)))
    assert ours.input_shape == theirs.input_shape
    shapes = {k: (v.shape, v.dtype) for k, v in flatten_dict(ours.params_shape_tree).items()}
    assert shapes == {k: (v.shape, v.dtype) for k, v in flatten_dict(theirs.params_shape_tree).items()}
    assert ours_cls.can_generate() == theirs_cls.can_generate() is False
    assert ours_cls.config_class.model_type == theirs_cls.config_class.model_type
    fresh = ours.init_weights(ours.key, ours.input_shape)
    assert {k: v.shape for k, v in flatten_dict(fresh).items()} == {k: v[0] for k, v in shapes.items()}


def test_params_of_a_model_without_init_cannot_be_set(pair):
    ours, theirs = pair
    empty = FlaxCLIPModel(CONFIG, _do_init=False)
    their_empty = transformers.FlaxCLIPModel(transformers.CLIPConfig.from_dict(CONFIG.to_dict()), _do_init=False)
    for model, params in ((empty, ours.params), (their_empty, theirs.params)):
        with pytest.raises(ValueError):
            model.params
        with pytest.raises(ValueError):
            model.params = params
    np.testing.assert_allclose(np.asarray(empty(IDS, PIXELS, MASK, params=ours.params).logits_per_image),
                               np.asarray(ours(IDS, PIXELS, MASK).logits_per_image), atol=1e-6)


@pytest.mark.parametrize("fmt", ["safetensors", "flax"])
@pytest.mark.parametrize("method", ["to_bf16", "to_fp16"])
def test_half_params_reload_in_their_dtype(tmp_path, pair, method, fmt, caplog):
    """A plain ``from_pretrained`` keeps half-precision weights as saved (transformers' Flax loader does, with a
    warning), whatever the file format."""
    ours, _ = pair
    ours.save_pretrained(tmp_path, params=getattr(ours, method)(), format=fmt)
    with caplog.at_level("WARNING"):
        back = FlaxCLIPModel.from_pretrained(tmp_path)
    theirs = transformers.FlaxCLIPModel.from_pretrained(tmp_path)
    assert _dtypes(back.params) == _dtypes(theirs.params)
    assert set(_dtypes(back.params).values()) == {"bfloat16" if method == "to_bf16" else "float16"}
    assert "UPCAST" in caplog.text
    a, b = back(IDS, PIXELS, MASK), theirs(IDS, PIXELS, MASK)
    for key in ("text_embeds", "image_embeds"):  # the half-precision tolerances (XLA may or may not round the
        assert a[key].dtype == b[key].dtype      # sum of two bfloat16 embedding tables before the float32 math)
        x, y = np.asarray(a[key], np.float32), np.asarray(b[key], np.float32)
        np.testing.assert_allclose(x, y, atol=2e-2)
        assert np.min(np.sum(x * y, -1) / np.linalg.norm(x, axis=-1) / np.linalg.norm(y, axis=-1)) > 0.999
    assert set(_dtypes(FlaxCLIPModel.from_pretrained(tmp_path, param_dtype=jnp.float32).params).values()) == \
        {"float32"}
