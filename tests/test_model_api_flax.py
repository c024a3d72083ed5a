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


# ---------------------------------------------------------------------------------------------- module classes
def _module_cases():
    """(our model class, transformers' model class, our config, transformers' config, module inputs, positional
    arguments of transformers' module) for the four classes transformers has."""
    from clip_flax import FlaxCLIPTextModel, FlaxCLIPTextModelWithProjection
    ids = jnp.asarray(IDS, jnp.int32)
    mask = jnp.asarray(MASK, jnp.int32)
    positions = jnp.broadcast_to(jnp.arange(ids.shape[1]), ids.shape)
    nhwc = jnp.transpose(jnp.asarray(PIXELS), (0, 2, 3, 1))
    text, vision = CONFIG.text_config, CONFIG.vision_config
    return [(FlaxCLIPTextModel, transformers.FlaxCLIPTextModel, text, transformers.CLIPTextConfig,
             (ids, mask, positions)),
            (FlaxCLIPTextModelWithProjection, transformers.FlaxCLIPTextModelWithProjection, text,
             transformers.CLIPTextConfig, (ids, mask, positions)),
            (FlaxCLIPVisionModel, transformers.FlaxCLIPVisionModel, vision, transformers.CLIPVisionConfig, (nhwc,)),
            (FlaxCLIPModel, transformers.FlaxCLIPModel, CONFIG, transformers.CLIPConfig, (ids, nhwc, mask, positions))]


def _assert_trees_close(ours, theirs, what):
    """The same fields (keys of outputs, lengths of tuples, nested alike) holding the same values (1e-4)."""
    if hasattr(theirs, "keys"):
        assert list(ours.keys()) == list(theirs.keys()), what
        ours, theirs = ours.to_tuple(), theirs.to_tuple()
    if isinstance(theirs, tuple):
        assert isinstance(ours, tuple) and len(ours) == len(theirs), what
        for x, y in zip(ours, theirs):
            _assert_trees_close(x, y, what)
        return
    np.testing.assert_allclose(np.asarray(ours), np.asarray(theirs), atol=1e-4, err_msg=what)


@pytest.mark.parametrize("index", [0, 1, 2, 3])
def test_module_classes_apply_as_transformers_modules(index):
    """``FlaxCLIPTextModule`` and friends: transformers' names (what its ``test_naming_convention`` looks up in the
    model's module), ``model.module`` one of them, and applied with transformers' parameters and transformers'
    module arguments (pixels NHWC, ``deterministic``, the output flags, ``return_dict``) they give transformers'
    module's outputs."""
    import clip_flax.modeling
    ours_cls, theirs_cls, config, their_config_cls, args = _module_cases()[index]
    theirs = theirs_cls(their_config_cls.from_dict(config.to_dict()), seed=0)
    name = theirs_cls.module_class.__name__
    assert ours_cls.module_class is getattr(clip_flax.modeling, name)
    module = ours_cls.module_class(config, jnp.float32)  # transformers' (config, dtype)
    ours = ours_cls(config, seed=0)
    assert type(ours.module) is ours_cls.module_class
    for flags in ((True, False, False, True), (True, True, True, True), (True, False, False, False)):
        expected = theirs.module.apply({"params": theirs.params}, *args, *flags)
        _assert_trees_close(module.apply({"params": theirs.params}, *args, *flags), expected, f"{name} {flags}")
    # return_dict=False with hidden states: transformers' encoder drops them and the attentions; triclip keeps them
    full = module.apply({"params": theirs.params}, *args, True, True, True, False)
    _assert_trees_close(full, module.apply({"params": theirs.params}, *args, True, True, True, True).to_tuple(), name)
    if index != 3:
        _assert_trees_close(full[:2], theirs.module.apply({"params": theirs.params}, *args, True, True, True, False),
                            name)
    call = {2: (PIXELS,), 3: (IDS, PIXELS, MASK)}.get(index, (IDS, MASK))  # the model takes NCHW pixels
    _assert_trees_close(ours.module.apply({"params": ours.params}, *args), ours(*call), f"{name} vs the model")
    made = module.init(jax.random.PRNGKey(0), *args)["params"]
    their_made = theirs.module.init(jax.random.PRNGKey(0), *args)["params"]
    assert {k: v.shape for k, v in flatten_dict(made).items()} == \
        {k: v.shape for k, v in flatten_dict(their_made).items()}


# ---------------------------------------------------------------------------------------------- _do_init=False
@pytest.mark.parametrize("index", [0, 1, 2, 3])
def test_do_init_false_leaves_missing_weights_out(tmp_path, index, caplog):
    """A checkpoint lacking a weight (written by transformers' ``save_pretrained(params=...)``), loaded with
    ``_do_init=False``: the weight stays out of the returned ``params``, with transformers' warning, and
    ``init_weights(key, shape, params=params)`` fills it, as in transformers; a plain load fills it at once."""
    ours_cls, theirs_cls, config, their_config_cls, _ = _module_cases()[index]
    theirs = theirs_cls(their_config_cls.from_dict(config.to_dict()), seed=0)
    flat = flatten_dict(theirs.params)
    dropped = sorted(flat)[len(flat) // 2]
    from flax.traverse_util import unflatten_dict
    partial = unflatten_dict({k: v for k, v in flat.items() if k != dropped})
    theirs.save_pretrained(tmp_path, params=partial)
    their_model, their_params = theirs_cls.from_pretrained(tmp_path, _do_init=False)
    with caplog.at_level("WARNING"):
        model, params = ours_cls.from_pretrained(tmp_path, _do_init=False)
    assert set(flatten_dict(params)) == set(flatten_dict(their_params)) == set(flat) - {dropped}
    assert "missing required keys" in caplog.text and "init_weights" in caplog.text
    with pytest.raises(ValueError):
        model.params
    filled = model.init_weights(model.key, model.input_shape, params=params)
    their_filled = their_model.init_weights(their_model.key, their_model.input_shape, params=their_params)
    assert {k: v.shape for k, v in flatten_dict(filled).items()} == \
        {k: v.shape for k, v in flatten_dict(their_filled).items()}
    for key in set(flat) - {dropped}:
        np.testing.assert_array_equal(np.asarray(flatten_dict(filled)[key]), np.asarray(flat[key]))
    assert set(flatten_dict(ours_cls.from_pretrained(tmp_path).params)) == set(flat)


def _partial(tree, dropped):
    from flax.traverse_util import unflatten_dict
    return unflatten_dict({k: v for k, v in flatten_dict(tree).items() if k != dropped})


@pytest.mark.parametrize("safe", [False, True], ids=["msgpack", "safetensors"])
def test_save_params_lacking_a_weight_as_transformers(tmp_path, pair, safe):
    """``save_pretrained(dir, params=tree lacking a weight)`` writes the weights the tree holds, as transformers'
    ``FlaxCLIPModel`` does with the same tree (the same msgpack keys; a safetensors file under PyTorch names, the
    ones transformers' ``CLIPModel`` has, less the dropped one); reloading either folder gives the same result:
    the dropped weight left out with ``_do_init=False``, newly initialised by a plain load, the others as saved."""
    from flax.serialization import msgpack_restore
    from safetensors import safe_open
    ours, theirs = pair
    dropped = ("text_projection", "kernel")
    partial = _partial(theirs.params, dropped)
    kept = {k: v for k, v in flatten_dict(theirs.params).items() if k != dropped}
    theirs.save_pretrained(tmp_path / "theirs", params=partial, safe_serialization=safe)
    ours.save_pretrained(tmp_path / "ours", params=partial, safe_serialization=safe)
    assert sorted(p.name for p in (tmp_path / "ours").iterdir()) == \
        sorted(p.name for p in (tmp_path / "theirs").iterdir())
    if safe:
        with safe_open(tmp_path / "ours" / "model.safetensors", "np") as handle:
            keys = set(handle.keys())
        pt_names = transformers.CLIPModel(transformers.CLIPConfig.from_dict(CONFIG.to_dict())).state_dict()
        assert keys == set(pt_names) - {"text_projection.weight"}
    else:
        def msgpack_keys(folder):
            return set(flatten_dict(msgpack_restore((folder / "flax_model.msgpack").read_bytes())))
        assert msgpack_keys(tmp_path / "ours") == msgpack_keys(tmp_path / "theirs") == set(kept)
    for folder in ("ours", "theirs"):
        model, params = FlaxCLIPModel.from_pretrained(tmp_path / folder, _do_init=False)
        assert set(flatten_dict(params)) == set(kept), folder
        if folder == "ours":  # saved again by the model that holds no parameters, as transformers' test does
            model.save_pretrained(tmp_path / "again", params=params, safe_serialization=safe)
            _, params = FlaxCLIPModel.from_pretrained(tmp_path / "again", _do_init=False)
            assert set(flatten_dict(params)) == set(kept)
        full = flatten_dict(FlaxCLIPModel.from_pretrained(tmp_path / folder).params)
        their_full = flatten_dict(transformers.FlaxCLIPModel.from_pretrained(tmp_path / folder).params)
        assert {k: v.shape for k, v in full.items()} == {k: v.shape for k, v in their_full.items()}, folder
        for key, value in kept.items():
            np.testing.assert_array_equal(np.asarray(full[key]), np.asarray(value))
            np.testing.assert_array_equal(np.asarray(their_full[key]), np.asarray(value))
    if not safe:  # transformers' Flax loader reads a PyTorch-named file only with _do_init=True
        _, their_params = transformers.FlaxCLIPModel.from_pretrained(tmp_path / "ours", _do_init=False)
        assert set(flatten_dict(their_params)) == set(kept)


def test_save_refuses_a_misshaped_weight(tmp_path, pair):
    """transformers writes a tree holding a weight at the wrong shape and then cannot load it (a ``ValueError``);
    triclip refuses it at the save, naming the weight and both shapes, and writes nothing (with a weight missing
    too)."""
    from flax.traverse_util import unflatten_dict

    from clip_core.weights import StateMismatchError
    ours, theirs = pair
    flat = flatten_dict(_partial(theirs.params, ("logit_scale",)))
    flat[("text_projection", "kernel")] = jnp.zeros((3, 5))
    bad = unflatten_dict(flat)
    theirs.save_pretrained(tmp_path / "theirs", params=bad)
    with pytest.raises(ValueError):
        transformers.FlaxCLIPModel.from_pretrained(tmp_path / "theirs")
    with pytest.raises(StateMismatchError, match=r"text_projection.weight: expected \(8, 16\), found \(5, 3\)"):
        ours.save_pretrained(tmp_path / "ours", params=bad, safe_serialization=False)
    assert not (tmp_path / "ours").exists()


@pytest.mark.parametrize("case", ["unknown", "int", "not_an_array", "empty"])
def test_save_refuses_params_that_are_not_weights(tmp_path, pair, case):
    """What would make a wrong file is refused, naming it, nothing written: a path the model lacks (transformers
    writes it and drops it at the load; under PyTorch names it has no name), a non-float weight, a leaf that is not
    an array, a tree holding none of the weights."""
    from flax.traverse_util import unflatten_dict

    from clip_core.weights import StateMismatchError
    ours, _ = pair
    flat = flatten_dict(ours.params)
    kernel = ("text_projection", "kernel")
    flat = {"unknown": {**flat, ("text_model", "extra", "kernel"): jnp.zeros((2, 2))},
            "int": {**flat, kernel: jnp.zeros(flat[kernel].shape, jnp.int32)},
            "not_an_array": {**flat, ("logit_scale",): "2.66"},
            "empty": {}}[case]
    error, match = {"unknown": (StateMismatchError, "text_model/extra/kernel"),
                    "int": (TypeError, "text_projection.weight has dtype int32"),
                    "not_an_array": (TypeError, "logit_scale is a str, not an array"),
                    "empty": (StateMismatchError, "46 missing")}[case]
    for fmt in ("flax", "safetensors"):
        with pytest.raises(error, match=match):
            ours.save_pretrained(tmp_path / "out", format=fmt, params=unflatten_dict(flat))
        assert not (tmp_path / "out").exists()


def test_save_pytorch_state_dict_lacking_a_weight_as_transformers(tmp_path):
    """The same shared save path for PyTorch: ``save_pretrained(state_dict=partial)`` writes the tensors it holds,
    as transformers' ``CLIPModel`` does (the same safetensors keys and values)."""
    import clip_pt
    from safetensors.numpy import load_file
    theirs = transformers.CLIPModel(transformers.CLIPConfig.from_dict(CONFIG.to_dict()))
    partial = {k: v for k, v in theirs.state_dict().items() if k != "visual_projection.weight"}
    theirs.save_pretrained(tmp_path / "theirs", state_dict=partial)
    clip_pt.CLIPModel(CONFIG).save_pretrained(tmp_path / "ours", state_dict=partial)
    a, b = load_file(tmp_path / "ours" / "model.safetensors"), load_file(tmp_path / "theirs" / "model.safetensors")
    assert sorted(a) == sorted(b) == sorted(partial)
    for key in b:
        np.testing.assert_array_equal(a[key], b[key])


def test_checkpointed_outputs_equal_and_nest_as_transformers(pair):
    """``enable_gradient_checkpointing`` (transformers' CLIP raises ``NotImplementedError``): every output exactly
    equal to the plain model's, and ``to_tuple()`` nested as transformers' (so its common test's element-wise
    ``(a == b).all()`` cannot compare the tower outputs)."""
    ours, theirs = pair
    plain = FlaxCLIPModel(CONFIG, seed=0)
    checkpointed = FlaxCLIPModel(CONFIG, seed=0)
    checkpointed.enable_gradient_checkpointing()
    with pytest.raises(NotImplementedError):
        transformers.FlaxCLIPModel(transformers.CLIPConfig.from_dict(CONFIG.to_dict())).enable_gradient_checkpointing()
    for flags in ({}, {"output_hidden_states": True, "output_attentions": True}):
        a, b = plain(IDS, PIXELS, MASK, **flags), checkpointed(IDS, PIXELS, MASK, **flags)
        assert a.keys() == b.keys()
        for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b), strict=True):
            np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
    def nesting(values):
        return [len(v) if isinstance(v, tuple) else None for v in values]
    assert nesting(plain(IDS, PIXELS, MASK).to_tuple()) == nesting(theirs(IDS, PIXELS, MASK).to_tuple()) == \
        [None] * 4 + [2, 2]
