"""clip_flax against the transformers-made fixtures and, live, against transformers 4.57.6's Flax CLIP classes."""

from __future__ import annotations

import os

# transformers imports TensorFlow when it loads; the TF test module needs Keras 2, whichever module imports first.
os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

import functools  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402

jax = pytest.importorskip("jax")
pytest.importorskip("flax")
import jax.numpy as jnp  # noqa: E402
from flax.traverse_util import flatten_dict  # noqa: E402

from clip_core.weights import StateMismatchError, init_state, to_flax_tree  # noqa: E402
from clip_flax import (CLIPConfig, CLIPTextConfig, CLIPVisionConfig, FlaxCLIPForImageClassification,  # noqa: E402
                       FlaxCLIPModel, FlaxCLIPTextModel, FlaxCLIPTextModelWithProjection, FlaxCLIPVisionModel,
                       FlaxCLIPVisionModelWithProjection)
from clip_flax.modeling import (_Dense, attention_bias, contrastive_loss, interpolate_pos_encoding,  # noqa: E402
                                pool_text)
from clip_core.outputs import BaseModelOutputWithPooling, CLIPOutput  # noqa: E402
from tests.conftest import (ROOT, WEIGHT_FILES, assert_close, load_expected, single_format_dir,  # noqa: E402
                            to_numpy, unit)

# Tolerances from DESIGN.md (float32, CPU): embeddings and pooled outputs 1e-5, logits and hidden states 1e-4.
EMBED_TOL, STATE_TOL = 1e-5, 1e-4
OURS = {"clip": FlaxCLIPModel, "text": FlaxCLIPTextModel, "text_projection": FlaxCLIPTextModelWithProjection,
        "vision": FlaxCLIPVisionModel, "vision_projection": FlaxCLIPVisionModelWithProjection,
        "image_classification": FlaxCLIPForImageClassification}








def _flat(tree):
    return {"/".join(k): np.asarray(v) for k, v in flatten_dict(dict(jax.device_get(tree))).items()}


def assert_same_params(ours, theirs):
    ours, theirs = _flat(ours), _flat(theirs)
    assert sorted(ours) == sorted(theirs)
    for key in ours:
        assert ours[key].shape == theirs[key].shape, key
        np.testing.assert_array_equal(ours[key], theirs[key], err_msg=key)


def _transformers():
    import transformers
    return transformers


def _jit(method, **static):
    """A transformers Flax method, jitted: its eager path compiles every operation on its own, which is slower."""
    return jax.jit(functools.partial(method, **static))


# ============================================================================================ reference fixtures
def _fixture_inputs(folder):
    exp = load_expected(folder)
    return exp, dict(input_ids=exp["input_ids"], attention_mask=exp["attention_mask"])


@pytest.mark.parametrize("weight_file", WEIGHT_FILES)
def test_fixture_outputs_from_each_weight_file(hf_fixture, weight_file, tmp_path):
    exp, text = _fixture_inputs(hf_fixture)
    model = FlaxCLIPModel.from_pretrained(single_format_dir(hf_fixture, weight_file, tmp_path))
    out = model(pixel_values=exp["pixel_values"], return_loss=True, **text)
    assert isinstance(out, CLIPOutput)
    for prefix in ("flax", "pt", "tf"):
        assert_close(out.logits_per_image, exp[f"{prefix}_logits_per_image"], STATE_TOL, f"{prefix} logits")
        assert_close(out.logits_per_text, exp[f"{prefix}_logits_per_image"].T, STATE_TOL, f"{prefix} logits_per_text")
        assert_close(out.text_embeds, exp[f"{prefix}_text_embeds"], EMBED_TOL, f"{prefix} text_embeds")
        assert_close(out.image_embeds, exp[f"{prefix}_image_embeds"], EMBED_TOL, f"{prefix} image_embeds")
    assert_close(out.loss, exp["pt_loss"], STATE_TOL, "loss")
    for tower, key in (("text", "text_model_output"), ("vision", "vision_model_output")):
        assert_close(out[key].last_hidden_state, exp[f"pt_{tower}_last_hidden_state"], STATE_TOL, tower)
        assert_close(out[key].pooler_output, exp[f"pt_{tower}_pooler_output"], EMBED_TOL, tower)
    assert_close(unit(model.get_text_features(**text)), exp["flax_text_embeds"], EMBED_TOL)
    assert_close(unit(model.get_image_features(exp["pixel_values"])), exp["flax_image_embeds"], EMBED_TOL)


@pytest.mark.parametrize("weight_file", WEIGHT_FILES)
def test_fixture_sub_models_load_from_the_full_checkpoint(hf_fixture, weight_file, tmp_path):
    exp, text = _fixture_inputs(hf_fixture)
    folder = single_format_dir(hf_fixture, weight_file, tmp_path)
    out = FlaxCLIPTextModel.from_pretrained(folder)(**text)
    assert_close(out.last_hidden_state, exp["pt_text_last_hidden_state"], STATE_TOL, "text last_hidden_state")
    assert_close(out.pooler_output, exp["pt_text_pooler_output"], EMBED_TOL, "text pooler_output")
    out = FlaxCLIPTextModelWithProjection.from_pretrained(folder)(**text)
    assert_close(unit(out.text_embeds), exp["flax_text_embeds"], EMBED_TOL, "text_embeds")
    assert_close(out.last_hidden_state, exp["pt_text_last_hidden_state"], STATE_TOL)
    out = FlaxCLIPVisionModel.from_pretrained(folder)(exp["pixel_values"])
    assert_close(out.last_hidden_state, exp["pt_vision_last_hidden_state"], STATE_TOL, "vision last_hidden_state")
    assert_close(out.pooler_output, exp["pt_vision_pooler_output"], EMBED_TOL, "vision pooler_output")
    out = FlaxCLIPVisionModelWithProjection.from_pretrained(folder)(exp["pixel_values"])
    assert_close(unit(out.image_embeds), exp["flax_image_embeds"], EMBED_TOL, "image_embeds")


def test_fixture_params_equal_transformers_msgpack_tree(hf_fixture):
    """The tree we build from model.safetensors is, leaf for leaf, the tree transformers wrote to msgpack."""
    from flax.serialization import msgpack_restore

    theirs = msgpack_restore((hf_fixture / "flax_model.msgpack").read_bytes())
    assert_same_params(FlaxCLIPModel.from_pretrained(hf_fixture).params, theirs)


def test_bfloat16_computation_stays_close(tmp_path):
    folder = ROOT.parent / "shared" / "fixtures" / "hf-tiny"
    exp, text = _fixture_inputs(folder)
    ref = FlaxCLIPModel.from_pretrained(folder)(pixel_values=exp["pixel_values"], **text)
    for model, param_dtype in ((FlaxCLIPModel.from_pretrained(folder, dtype=jnp.bfloat16), np.float32),
                               (FlaxCLIPModel.from_pretrained(folder, dtype="bfloat16", param_dtype=jnp.bfloat16),
                                jnp.bfloat16)):
        assert model.dtype == jnp.bfloat16
        assert {v.dtype for v in _flat(model.params).values()} == {np.dtype(param_dtype)}
        out = model(pixel_values=exp["pixel_values"], **text)
        assert out.text_model_output.pooler_output.dtype == jnp.bfloat16  # the computation ran in bfloat16
        for key in ("text_embeds", "image_embeds"):
            assert_close(out[key], ref[key], 2e-2, key)
            cosine = np.sum(unit(out[key]) * unit(ref[key]), axis=-1)
            assert cosine.min() > 0.999, (key, cosine)
        features = model.get_text_features(**text)
        assert features.dtype == jnp.bfloat16
        cosine = np.sum(unit(features) * unit(exp["flax_text_embeds"]), axis=-1)
        assert cosine.min() > 0.999
    # transformers' way: float32 model, bfloat16 params passed in
    model = FlaxCLIPModel.from_pretrained(folder, dtype=jnp.bfloat16)
    out = model(pixel_values=exp["pixel_values"], params=model.to_bf16(), **text)
    assert_close(out.image_embeds, ref.image_embeds, 2e-2)


def test_bfloat16_on_cpu_multiplies_with_the_float32_weights():
    """XLA:CPU has no bfloat16 matrix product; with float32 weights and a bfloat16 computation the CPU multiplies
    bfloat16 activations by the float32 weights, rather than rounding a copy of every weight on every call."""
    config = CLIPVisionConfig(hidden_size=128, intermediate_size=512, num_hidden_layers=2, num_attention_heads=4,
                              image_size=32, patch_size=8, projection_dim=16)
    full, low = (FlaxCLIPVisionModelWithProjection(config, seed=0, dtype=dtype)
                 for dtype in (jnp.float32, jnp.bfloat16))
    pixels = _pixels(config, seed=1)
    kernels = [v for k, v in _flat(low.params).items() if k.endswith("/kernel") and v.ndim == 2]
    weight_bytes = sum(v.size * v.dtype.itemsize for v in kernels)

    def temp_bytes(model):  # the scratch memory one call needs (a converted copy of the weights would show here)
        fn = jax.jit(lambda p, x: model(pixel_values=x, params=p).image_embeds)
        return fn.lower(model.params, pixels).compile().memory_analysis().temp_size_in_bytes

    assert temp_bytes(low) < temp_bytes(full) + weight_bytes / 4, (temp_bytes(low), temp_bytes(full), weight_bytes)
    # One projection, computed by hand: float32 product of the bfloat16 input, rounded to bfloat16 once.
    x = jnp.asarray(np.random.default_rng(2).standard_normal((3, 128)), jnp.bfloat16)
    w = low.params["visual_projection"]["kernel"]
    out = _Dense(16, use_bias=False, dtype=jnp.bfloat16).apply({"params": {"kernel": w}}, x)
    assert out.dtype == jnp.bfloat16
    expected = (np.asarray(x, np.float32) @ np.asarray(w, np.float32)).astype(jnp.bfloat16).astype(np.float32)
    np.testing.assert_allclose(np.asarray(out, np.float32), expected, rtol=2 ** -8, atol=1e-6)
    rounded = np.asarray(x, np.float32) @ np.asarray(w.astype(jnp.bfloat16), np.float32)
    assert np.abs(rounded - np.asarray(out, np.float32)).max() > 0  # the weights were not rounded


# ============================================================================================ live vs transformers
LIVE_CONFIGS = {
    "odd-heads-gelu-first-eos": dict(
        projection_dim=12,
        text_config=dict(vocab_size=99, hidden_size=30, intermediate_size=44, num_hidden_layers=2,
                         num_attention_heads=3, max_position_embeddings=12, hidden_act="gelu", eos_token_id=5,
                         bos_token_id=4, pad_token_id=0),
        vision_config=dict(hidden_size=40, intermediate_size=28, num_hidden_layers=2, num_attention_heads=5,
                           image_size=24, patch_size=6, hidden_act="quick_gelu")),
    "legacy-eos-quick-gelu": dict(
        projection_dim=8, logit_scale_init_value=1.3,
        text_config=dict(vocab_size=50, hidden_size=20, intermediate_size=36, num_hidden_layers=3,
                         num_attention_heads=5, max_position_embeddings=10, hidden_act="quick_gelu", eos_token_id=2,
                         bos_token_id=1, pad_token_id=0, layer_norm_eps=1e-6),
        vision_config=dict(hidden_size=24, intermediate_size=40, num_hidden_layers=1, num_attention_heads=3,
                           image_size=20, patch_size=5, hidden_act="gelu_new")),
}


def _perturbed(params, seed):
    """Random params with non-trivial layer norms and biases too."""
    rng = np.random.default_rng(seed)
    return jax.tree_util.tree_map(
        lambda x: jnp.asarray(np.asarray(x) + 0.05 * rng.standard_normal(np.shape(x)).astype(np.float32)), params)


def _text_batch(cfg: CLIPTextConfig, seed, batch=3):
    """Right-padded ids: rows of different lengths ending in the pooling token, position_ids reversed. With
    ``eos_token_id`` 2 the end token is the highest id (the legacy argmax rule); otherwise ids above it occur."""
    rng = np.random.default_rng(seed)
    seq = cfg.max_position_embeddings
    legacy = cfg.eos_token_id == 2
    eos = cfg.vocab_size - 1 if legacy else cfg.eos_token_id
    ids = rng.choice(np.setdiff1d(np.arange(3, cfg.vocab_size), [eos, cfg.bos_token_id, cfg.pad_token_id]),
                     size=(batch, seq))
    mask = np.zeros((batch, seq), np.int32)
    for row, length in enumerate([seq, seq // 2, 3][:batch]):
        ids[row, length - 1] = eos
        ids[row, length:] = eos if legacy else cfg.pad_token_id
        mask[row, :length] = 1
    positions = np.broadcast_to(np.arange(seq)[::-1], (batch, seq)).copy()
    return ids.astype(np.int32), mask, positions


def _pixels(cfg: CLIPVisionConfig, seed, batch=3, size=None):
    height, width = size or (cfg.image_size, cfg.image_size)
    return np.random.default_rng(seed).standard_normal((batch, cfg.num_channels, height, width)).astype(np.float32)


def _compare_tower(ours, theirs, what):
    assert_close(ours.last_hidden_state, theirs.last_hidden_state, STATE_TOL, f"{what} last_hidden_state")
    if "pooler_output" in theirs:
        assert_close(ours.pooler_output, theirs.pooler_output, EMBED_TOL, f"{what} pooler_output")
    assert len(ours.hidden_states) == len(theirs.hidden_states)
    for i, (a, b) in enumerate(zip(ours.hidden_states, theirs.hidden_states)):
        assert_close(a, b, STATE_TOL, f"{what} hidden_states[{i}]")
    assert len(ours.attentions) == len(theirs.attentions)
    for i, (a, b) in enumerate(zip(ours.attentions, theirs.attentions)):
        assert_close(a, b, EMBED_TOL, f"{what} attentions[{i}]")


@pytest.fixture(params=sorted(LIVE_CONFIGS))
def live(request):
    config = CLIPConfig(**LIVE_CONFIGS[request.param])
    model = FlaxCLIPModel(config, seed=1)
    model.params = _perturbed(model.params, seed=2)
    return config, model


def test_live_clip_model(live):
    config, model = live
    tr = _transformers()
    theirs = tr.FlaxCLIPModel(tr.CLIPConfig.from_dict(config.to_dict()), _do_init=False)
    ids, mask, positions = _text_batch(config.text_config, seed=3)
    pixels = _pixels(config.vision_config, seed=4)
    flags = dict(output_hidden_states=True, output_attentions=True)
    ref = _jit(theirs.__call__, **flags)(ids, pixels, mask, positions, params=model.params)
    out = model(ids, pixels, attention_mask=mask, position_ids=positions, **flags)
    assert_close(out.logits_per_image, ref.logits_per_image, STATE_TOL, "logits_per_image")
    assert_close(out.logits_per_text, ref.logits_per_text, STATE_TOL, "logits_per_text")
    assert_close(out.text_embeds, ref.text_embeds, EMBED_TOL, "text_embeds")
    assert_close(out.image_embeds, ref.image_embeds, EMBED_TOL, "image_embeds")
    _compare_tower(out.text_model_output, ref.text_model_output, "text")
    _compare_tower(out.vision_model_output, ref.vision_model_output, "vision")
    assert_close(model.get_text_features(ids, mask, positions),
                 _jit(theirs.get_text_features)(ids, mask, positions, params=model.params), EMBED_TOL)
    assert_close(model.get_image_features(pixels), _jit(theirs.get_image_features)(pixels, params=model.params),
                 EMBED_TOL)
    # default position_ids; return_dict=False gives transformers' nested tuples
    ours_tuple = model(ids, pixels, attention_mask=mask, return_dict=False)
    ref_tuple = _jit(theirs.__call__, return_dict=False)(ids, pixels, mask, params=model.params)
    assert len(ours_tuple) == len(ref_tuple) == 6 and isinstance(ours_tuple[4], tuple)
    for i in range(4):
        assert_close(ours_tuple[i], ref_tuple[i], STATE_TOL, f"tuple[{i}]")
    for i in (4, 5):
        assert len(ours_tuple[i]) == len(ref_tuple[i]) == 2
        assert_close(ours_tuple[i][0], ref_tuple[i][0], STATE_TOL)
        assert_close(ours_tuple[i][1], ref_tuple[i][1], EMBED_TOL)


def test_live_tower_models(live):
    config, model = live
    tr = _transformers()
    text_cfg, vision_cfg = config.text_config, config.vision_config
    ids, mask, positions = _text_batch(text_cfg, seed=5)
    pixels = _pixels(vision_cfg, seed=6)
    flags = dict(output_hidden_states=True, output_attentions=True)

    text = FlaxCLIPTextModel(text_cfg, seed=7)
    text.params = _perturbed(text.params, 8)
    theirs = tr.FlaxCLIPTextModel(tr.CLIPTextConfig.from_dict(text_cfg.to_dict()), _do_init=False)
    _compare_tower(text(ids, mask, positions, **flags),
                   _jit(theirs.__call__, **flags)(ids, mask, positions, params=text.params), "text")

    projected = FlaxCLIPTextModelWithProjection(CLIPTextConfig(**{**text_cfg.to_dict(), "projection_dim": 7}), seed=9)
    theirs = tr.FlaxCLIPTextModelWithProjection(tr.CLIPTextConfig.from_dict(projected.config.to_dict()),
                                                _do_init=False)
    out, ref = projected(ids, mask, **flags), _jit(theirs.__call__, **flags)(ids, mask, params=projected.params)
    assert_close(out.text_embeds, ref.text_embeds, EMBED_TOL, "text_embeds")
    _compare_tower(out, ref, "text")

    vision = FlaxCLIPVisionModel(vision_cfg, seed=10)
    vision.params = _perturbed(vision.params, 11)
    theirs = tr.FlaxCLIPVisionModel(tr.CLIPVisionConfig.from_dict(vision_cfg.to_dict()), _do_init=False)
    _compare_tower(vision(pixels, **flags), _jit(theirs.__call__, **flags)(pixels, params=vision.params), "vision")


def test_live_against_transformers_pytorch(live, tmp_path):
    """What transformers' Flax lacks, against its PyTorch classes (loading our model.safetensors): the loss,
    interpolate_pos_encoding on a non-square size that is not a multiple of the patch, the vision projection model
    and the image classifier."""
    torch = pytest.importorskip("torch")
    tr = _transformers()
    config, model = live
    model.save_pretrained(tmp_path / "clip")
    theirs = tr.CLIPModel.from_pretrained(tmp_path / "clip").eval()
    ids, mask, _ = _text_batch(config.text_config, seed=12)
    vcfg = config.vision_config
    pixels = _pixels(vcfg, seed=13, size=(vcfg.image_size + vcfg.patch_size * 2 + 1, vcfg.image_size - vcfg.patch_size))
    out = model(ids, pixels, attention_mask=mask, return_loss=True, interpolate_pos_encoding=True,
                output_hidden_states=True)
    with torch.no_grad():
        ref = theirs(input_ids=torch.from_numpy(ids).long(), pixel_values=torch.from_numpy(pixels),
                     attention_mask=torch.from_numpy(mask), return_loss=True, interpolate_pos_encoding=True,
                     output_hidden_states=True)
    assert_close(out.loss, ref.loss, STATE_TOL, "loss")
    assert_close(out.logits_per_image, ref.logits_per_image, STATE_TOL, "logits_per_image")
    assert_close(out.image_embeds, ref.image_embeds, EMBED_TOL, "image_embeds")
    for i, (a, b) in enumerate(zip(out.vision_model_output.hidden_states, ref.vision_model_output.hidden_states)):
        assert_close(a, b, STATE_TOL, f"vision hidden_states[{i}]")
    features = model.get_image_features(pixels, interpolate_pos_encoding=True)
    with torch.no_grad():
        ref_features = theirs.get_image_features(torch.from_numpy(pixels), interpolate_pos_encoding=True)
    assert_close(features, ref_features, EMBED_TOL)

    vision = FlaxCLIPVisionModelWithProjection(vcfg, seed=14)
    vision.params = _perturbed(vision.params, 15)
    vision.save_pretrained(tmp_path / "vision")
    theirs = tr.CLIPVisionModelWithProjection.from_pretrained(tmp_path / "vision", attn_implementation="eager").eval()
    out = vision(pixels, interpolate_pos_encoding=True, output_attentions=True)
    with torch.no_grad():
        ref = theirs(torch.from_numpy(pixels), interpolate_pos_encoding=True, output_attentions=True)
    assert_close(out.image_embeds, ref.image_embeds, EMBED_TOL, "image_embeds")
    assert_close(out.attentions[-1], ref.attentions[-1], EMBED_TOL, "attentions")

    # to_dict() carries id2label (2 labels by default), which outranks num_labels in transformers and in ours
    settings = {k: v for k, v in config.to_dict().items() if k not in ("id2label", "label2id")}
    classifier = FlaxCLIPForImageClassification(CLIPConfig(**settings, num_labels=3), seed=16)
    classifier.params = _perturbed(classifier.params, 17)
    classifier.save_pretrained(tmp_path / "classifier")
    theirs = tr.CLIPForImageClassification.from_pretrained(tmp_path / "classifier").eval()
    labels = np.array([0, 2, 1])
    pixels = _pixels(vcfg, seed=18)
    out = classifier(pixels, labels)
    with torch.no_grad():
        ref = theirs(torch.from_numpy(pixels), labels=torch.from_numpy(labels))
    assert_close(out.logits, ref.logits, STATE_TOL, "classifier logits")
    assert_close(out.loss, ref.loss, STATE_TOL, "classifier loss")


# ============================================================================================ checkpoints both ways
def _assert_same_outputs(ours, theirs, config, params=None):
    ids, mask, _ = _text_batch(config.text_config, seed=20)
    pixels = _pixels(config.vision_config, seed=21)
    out = ours(ids, pixels, attention_mask=mask)
    ref = _jit(theirs.__call__)(ids, pixels, mask, params=theirs.params if params is None else params)
    assert_close(out.logits_per_image, ref.logits_per_image, STATE_TOL)
    assert_close(out.text_embeds, ref.text_embeds, EMBED_TOL)
    assert_close(out.image_embeds, ref.image_embeds, EMBED_TOL)


@pytest.mark.parametrize("fmt", ["flax", "safetensors"])
def test_our_checkpoint_loads_in_transformers_flax(live, fmt, tmp_path):
    config, model = live
    model.save_pretrained(tmp_path, format=fmt)
    theirs = _transformers().FlaxCLIPModel.from_pretrained(tmp_path)
    assert_same_params(theirs.params, model.params)  # nothing missing, nothing re-initialised
    _assert_same_outputs(model, theirs, config)


def test_transformers_flax_checkpoint_loads_in_ours(tmp_path):
    tr = _transformers()
    config = CLIPConfig(**LIVE_CONFIGS["odd-heads-gelu-first-eos"])
    theirs = tr.FlaxCLIPModel(tr.CLIPConfig.from_dict(config.to_dict()), seed=3)
    theirs.params = _perturbed(theirs.params, 4)
    theirs.save_pretrained(tmp_path / "clip")
    assert (tmp_path / "clip" / "flax_model.msgpack").exists()
    ours = FlaxCLIPModel.from_pretrained(tmp_path / "clip")
    assert_same_params(ours.params, theirs.params)
    _assert_same_outputs(ours, theirs, config)
    # a tower saved on its own by transformers
    vision = tr.FlaxCLIPVisionModel(tr.CLIPVisionConfig.from_dict(config.vision_config.to_dict()), seed=5)
    vision.save_pretrained(tmp_path / "vision")
    ours = FlaxCLIPVisionModel.from_pretrained(tmp_path / "vision")
    assert_same_params(ours.params, vision.params)
    pixels = _pixels(config.vision_config, seed=6)
    assert_close(ours(pixels).pooler_output, _jit(vision.__call__)(pixels, params=vision.params).pooler_output,
                 EMBED_TOL)


def test_save_and_reload_round_trip(tmp_path):
    model = FlaxCLIPModel(CLIPConfig.preset("tiny"), seed=3)
    for fmt in ("safetensors", "flax"):
        model.save_pretrained(tmp_path / fmt, format=fmt)
        assert_same_params(FlaxCLIPModel.from_pretrained(tmp_path / fmt).params, model.params)
    # transformers' params= argument saves the given tree
    other = _perturbed(model.params, 4)
    model.save_pretrained(tmp_path / "other", params=other)
    assert_same_params(FlaxCLIPModel.from_pretrained(tmp_path / "other").params, other)
    assert_same_params(FlaxCLIPModel.from_pretrained(tmp_path / "safetensors").params, model.params)


# ============================================================================================ parameter tree, init
@pytest.mark.parametrize("arch", sorted(OURS))
def test_module_consumes_exactly_the_parameter_tree(arch):
    cls = OURS[arch]
    config = CLIPConfig.preset("tiny")
    config = {"text": config.text_config, "text_projection": config.text_config, "vision": config.vision_config,
              "vision_projection": config.vision_config}.get(arch, config)
    model = cls(config)
    ids, pixels = jnp.zeros((1, 5), jnp.int32), jnp.zeros((1, 3, 32, 32))
    text = dict(input_ids=ids, attention_mask=None, position_ids=None)
    args = {"clip": dict(text, pixel_values=pixels, return_loss=True), "text": text, "text_projection": text}.get(
        arch, dict(pixel_values=pixels))
    flags = dict(output_attentions=False, output_hidden_states=False, deterministic=True)
    made = jax.eval_shape(lambda: model.module.init(jax.random.PRNGKey(0), **args, **flags,
                                                    method=cls._forward))["params"]
    assert {k: v.shape for k, v in _flat(model.params).items()} == {
        "/".join(k): v.shape for k, v in flatten_dict(made).items()}
    table = model.param_table(model.config)
    assert_same_params(model.params, to_flax_tree(init_state(model.config, arch, 0), table))


@pytest.mark.parametrize("name", ["FlaxCLIPModel", "FlaxCLIPTextModel", "FlaxCLIPTextModelWithProjection",
                                  "FlaxCLIPVisionModel"])
def test_parameter_tree_is_transformers_tree(name):
    tr = _transformers()
    config = CLIPConfig.preset("tiny")
    ours_cls = getattr(sys.modules["clip_flax"], name)
    if name == "FlaxCLIPModel":
        hf_config = tr.CLIPConfig.from_dict(config.to_dict())
    elif "Text" in name:
        config, hf_config = config.text_config, tr.CLIPTextConfig.from_dict(config.text_config.to_dict())
    else:
        config, hf_config = config.vision_config, tr.CLIPVisionConfig.from_dict(config.vision_config.to_dict())
    theirs = getattr(tr, name)(hf_config).params
    shapes = {k: (v.shape, v.dtype) for k, v in _flat(theirs).items()}
    assert {k: (v.shape, v.dtype) for k, v in _flat(ours_cls(config).params).items()} == shapes


def test_seeds_and_export_state():
    config = CLIPConfig.preset("tiny")
    a, b = FlaxCLIPModel(config, seed=5), FlaxCLIPModel(config, seed=6)
    state = a.export_state()
    expected = init_state(config, "clip", 5)
    assert sorted(state) == sorted(expected)
    for name in expected:
        np.testing.assert_array_equal(state[name], expected[name], err_msg=name)
    assert not np.array_equal(_flat(a.params)["text_projection/kernel"], _flat(b.params)["text_projection/kernel"])
    assert _flat(a.params)["logit_scale"].shape == ()


def test_do_init_false_and_explicit_params(tmp_path):
    config = CLIPConfig.preset("tiny")
    model = FlaxCLIPModel(config, _do_init=False)
    with pytest.raises(ValueError, match="_do_init=False"):
        model.params
    reference = FlaxCLIPModel(config, seed=0)
    ids, pixels = np.array([[1, 2, 49407]]), _pixels(config.vision_config, 0, batch=1)
    assert_close(model(ids, pixels, params=reference.params).logits_per_image, reference(ids, pixels).logits_per_image,
                 0.0)
    reference.save_pretrained(tmp_path)
    loaded, params = FlaxCLIPModel.from_pretrained(tmp_path, _do_init=False)
    assert_same_params(params, reference.params)
    with pytest.raises(TypeError, match="unexpected"):
        FlaxCLIPModel.from_pretrained(tmp_path, revision_typo=True)
    FlaxCLIPModel.from_pretrained(tmp_path, from_pt=True)  # transformers' spelling is accepted


# ============================================================================================ jit
def _tiny():
    config = CLIPConfig.preset("tiny")
    model = FlaxCLIPModel(config, seed=0)
    ids, mask, _ = _text_batch(CLIPTextConfig(**{**config.text_config.to_dict(), "max_position_embeddings": 9,
                                                 "eos_token_id": 49407}), seed=1)
    return model, ids, mask, _pixels(config.vision_config, seed=2)


def test_user_jit_over_params_equals_plain_call():
    model, ids, mask, pixels = _tiny()

    @jax.jit
    def run(params, input_ids, attention_mask, pixel_values):
        return model(input_ids, pixel_values, attention_mask=attention_mask, params=params, return_loss=True,
                     output_hidden_states=True, output_attentions=True)

    jitted, plain = run(model.params, ids, mask, pixels), model(ids, pixels, attention_mask=mask, return_loss=True,
                                                                output_hidden_states=True, output_attentions=True)
    assert isinstance(jitted, CLIPOutput) and isinstance(jitted.text_model_output, BaseModelOutputWithPooling)
    assert jax.tree_util.tree_structure(jitted) == jax.tree_util.tree_structure(plain)
    for a, b in zip(jax.tree_util.tree_leaves(jitted), jax.tree_util.tree_leaves(plain)):
        assert_close(a, b, 1e-6)
    features = jax.jit(lambda p, x: model.get_text_features(x, params=p))(model.params, ids)
    assert_close(features, model.get_text_features(ids), 1e-6)
    # outputs are pytrees: tree_map keeps the classes and the fields
    zeros = jax.tree_util.tree_map(jnp.zeros_like, plain)
    assert type(zeros) is CLIPOutput and list(zeros.keys()) == list(plain.keys())


def test_gradients_flow_through_the_loss():
    model, ids, mask, pixels = _tiny()
    grads = jax.jit(jax.grad(lambda p: model(ids, pixels, attention_mask=mask, params=p, return_loss=True).loss))(
        model.params)
    assert jax.tree_util.tree_structure(grads) == jax.tree_util.tree_structure(model.params)
    flat = _flat(grads)
    assert all(np.isfinite(v).all() for v in flat.values())
    assert abs(float(flat["logit_scale"])) > 0 and np.abs(flat["vision_model/embeddings/class_embedding"]).max() > 0


def test_user_jit_over_inputs_held_as_jax_arrays():
    """Inputs a caller's function closes over as concrete JAX arrays are still read and checked while jax.jit traces
    it (their reductions used to be staged into the trace: a TracerBoolConversionError); gradients also flow
    through a bfloat16 computation with float32 parameters (the CPU's product of ``_Dense``)."""
    model, ids, mask, pixels = _tiny()
    ids_d, mask_d, pixels_d = (jnp.asarray(v) for v in (ids, mask, pixels))
    logits = jax.jit(lambda p: model(ids_d, pixels_d, attention_mask=mask_d, params=p).logits_per_image)
    assert_close(logits(model.params), model(ids, pixels, attention_mask=mask).logits_per_image, 1e-6)
    bad_pixels, bad_ids = pixels_d.at[0, 0, 0, 0].set(jnp.nan), ids_d.at[0, 0].set(10 ** 6)
    with pytest.raises(ValueError, match="NaN or infinite"):
        jax.jit(lambda p: model.get_image_features(bad_pixels, params=p))(model.params)
    with pytest.raises(ValueError, match="input_ids"):
        jax.jit(lambda p: model.get_text_features(bad_ids, params=p))(model.params)
    low = FlaxCLIPModel(model.config, seed=0, dtype=jnp.bfloat16)
    grads = jax.jit(jax.grad(lambda p: jnp.sum(
        low.get_image_features(pixels_d, params=p).astype(jnp.float32) ** 2)))(low.params)
    kernel = grads["vision_model"]["encoder"]["layers"]["0"]["mlp"]["fc1"]["kernel"]
    assert kernel.dtype == jnp.float32 and np.isfinite(kernel).all() and np.abs(kernel).max() > 0


def test_repeated_shapes_do_not_retrace():
    from clip_flax.pretrained import _CompiledApply

    _CompiledApply._cache.clear()  # shared per config: start from what no earlier test compiled or asked for
    model, ids, mask, pixels = _tiny()
    model(ids, pixels, attention_mask=mask)  # runs at the longest text bucket, compiled now
    model(ids, pixels, attention_mask=mask)  # asked again: still the longest bucket
    model(ids, pixels, attention_mask=mask)  # a third time: its own bucket compiles in the background, once
    model._compiled.wait()
    traces = model._compiled.traces
    rng = np.random.default_rng(0)
    for _ in range(3):  # new values, same shapes
        new_ids = rng.integers(0, 49407, size=ids.shape).astype(np.int32)
        model(new_ids, pixels + rng.standard_normal(pixels.shape).astype(np.float32), attention_mask=mask)
    model(jnp.asarray(ids), jnp.asarray(pixels), attention_mask=jnp.asarray(mask))
    assert model._compiled.traces == traces
    model(ids[:, :4], pixels, attention_mask=mask[:, :4])  # a new length runs in a compiled longer bucket
    assert model._compiled.traces == traces
    model(ids[:, :4], pixels, attention_mask=mask[:, :4])  # asked again: still the longer bucket
    assert model._compiled.traces == traces
    model(ids[:, :4], pixels, attention_mask=mask[:, :4])  # a third time: its bucket compiles in the background
    model._compiled.wait()
    assert model._compiled.traces == traces + 1
    model(ids, pixels, attention_mask=mask, output_hidden_states=True)  # new flags: a new compile (longest length)
    model(ids, pixels, attention_mask=mask, output_hidden_states=True)
    model(ids, pixels, attention_mask=mask, output_hidden_states=True)  # and its own bucket in the background
    model._compiled.wait()
    assert model._compiled.traces == traces + 3
    model(ids, pixels, attention_mask=mask, output_hidden_states=True)
    assert model._compiled.traces == traces + 3


def test_any_padded_length_up_to_max_positions():
    config = CLIPConfig.preset("tiny")
    model = FlaxCLIPTextModel(config.text_config)
    for length in (1, 7, config.text_config.max_position_embeddings):
        ids = np.full((2, length), 49407)
        assert model(ids).last_hidden_state.shape == (2, length, config.text_config.hidden_size)


def test_dropout_only_in_training():
    config = CLIPConfig.preset("tiny")
    config.vision_config.attention_dropout = 0.5
    model = FlaxCLIPVisionModel(config.vision_config)
    pixels = _pixels(config.vision_config, seed=0, batch=2)
    key = jax.random.PRNGKey(0)
    eval_out = model(pixels).pooler_output
    assert_close(model(pixels, dropout_rng=key).pooler_output, eval_out, 0.0)
    train_a = model(pixels, dropout_rng=key, train=True).pooler_output
    assert_close(model(pixels, dropout_rng=key, train=True).pooler_output, train_a, 0.0)
    assert np.abs(to_numpy(train_a) - to_numpy(eval_out)).max() > 1e-3


# ============================================================================================ helpers, errors
def test_helpers():
    hidden = jnp.arange(2 * 4 * 3, dtype=jnp.float32).reshape(2, 4, 3)
    ids = jnp.array([[5, 7, 9, 9], [5, 9, 1, 0]])
    assert_close(pool_text(hidden, ids, 9), hidden[jnp.array([0, 1]), jnp.array([2, 1])], 0.0)
    assert_close(pool_text(hidden, ids, 2), hidden[jnp.array([0, 1]), jnp.array([2, 1])], 0.0)  # argmax rule
    bias = attention_bias(jnp.array([[1, 1, 0]]), 3, True, jnp.float32)
    assert bias.shape == (1, 1, 3, 3) and bias[0, 0, 1, 1] == 0 and bias[0, 0, 0, 1] < -1e30
    assert bias[0, 0, 2, 2] < -1e30 and attention_bias(None, 3, False, jnp.float32) is None
    table = jnp.asarray(np.random.default_rng(0).standard_normal((1 + 16, 5)), jnp.float32)
    assert_close(interpolate_pos_encoding(table, 4, 4), table, 1e-6)  # same grid: the identity
    assert interpolate_pos_encoding(table, 3, 6).shape == (1 + 18, 5)
    logits = jnp.array([[2.0, 0.5], [0.1, 1.0]])
    log_sm = jax.nn.log_softmax
    expected = -(np.mean(np.diag(log_sm(logits, 1))) + np.mean(np.diag(log_sm(logits.T, 1)))) / 2
    assert_close(contrastive_loss(logits), expected, 1e-6)


def test_wrong_config_type():
    with pytest.raises(TypeError, match="CLIPConfig"):
        FlaxCLIPModel(CLIPTextConfig())
    with pytest.raises(TypeError, match="CLIPTextConfig"):
        FlaxCLIPTextModel(CLIPVisionConfig())
    with pytest.raises(TypeError, match="CLIPVisionConfig"):
        FlaxCLIPVisionModelWithProjection(CLIPConfig.preset("tiny"))


def test_bad_inputs_name_the_argument():
    model, ids, mask, pixels = _tiny()
    vocab = model.config.text_config.vocab_size
    cases = [
        (dict(input_ids=ids[0]), "input_ids"),
        (dict(input_ids=np.where(ids == ids[0, 0], vocab, ids)), "input_ids holds the id"),
        (dict(input_ids=jnp.asarray(ids).at[0, 0].set(-1)), "input_ids holds the id -1"),
        (dict(input_ids=np.ones((3, 78), np.int32)), "max_position_embeddings"),
        (dict(attention_mask=mask[:, :3]), "attention_mask"),
        (dict(position_ids=np.full(ids.shape, 77)), "position_ids"),
        (dict(position_ids=np.arange(3)[None]), "position_ids"),
        (dict(position_ids=np.zeros((2, ids.shape[1]), np.int32)), "position_ids"),
        (dict(pixel_values=np.where(np.arange(32) == 3, np.nan, pixels)), "pixel_values contains NaN"),
        (dict(pixel_values=jnp.asarray(pixels).at[0, 0, 0, 0].set(jnp.inf)), "pixel_values contains NaN"),
        (dict(pixel_values=np.transpose(pixels, (0, 2, 3, 1))), "channels"),
        (dict(pixel_values=pixels[..., :16]), "interpolate_pos_encoding"),
        (dict(pixel_values=pixels[:2], return_loss=True), "texts"),
    ]
    for change, message in cases:
        kwargs = {"input_ids": ids, "pixel_values": pixels, "attention_mask": mask, **change}
        with pytest.raises(ValueError, match=message):
            model(**kwargs)
    # under a user's jit the shapes are still checked, the values cannot be
    with pytest.raises(ValueError, match="pixel_values"):
        jax.jit(lambda p: model(ids, p))(pixels[..., :16])
    jax.jit(lambda i: model(i, pixels))(np.where(ids == ids[0, 0], vocab, ids))
    with pytest.raises(ValueError, match="pixel_values"):
        model.get_image_features(np.full_like(pixels, np.nan))
    classifier = FlaxCLIPForImageClassification(model.config)
    with pytest.raises(ValueError, match="labels"):
        classifier(pixels, labels=np.array([0.5, 1.0, 0.0]))
    with pytest.raises(StateMismatchError):
        model.export_state({"text_model": {}})


def test_import_clip_flax_imports_neither_torch_nor_tensorflow():
    code = ("import sys; import clip_flax; "
            "print(sorted(m for m in ('torch', 'tensorflow', 'keras', 'tf_keras') if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                            env={**os.environ, "PYTHONPATH": str(ROOT)}, check=True)
    assert result.stdout.strip() == "[]", result.stdout + result.stderr
