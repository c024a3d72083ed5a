"""clip_tf against the reference fixtures, transformers 4.57.6's TF (and, where TF has none, PyTorch) CLIP classes,
and TensorFlow's own machinery: XLA, GradientTape, tf.function, SavedModel."""

from __future__ import annotations

import os

os.environ["TF_USE_LEGACY_KERAS"] = "1"  # transformers' TF classes need tf-keras; set before TensorFlow imports

import subprocess  # noqa: E402
import sys  # noqa: E402
import textwrap  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402

tf = pytest.importorskip("tensorflow")

from clip_core.config import CLIPConfig, CLIPTextConfig, CLIPVisionConfig  # noqa: E402
from clip_core.weights import init_state, param_table, tf_name  # noqa: E402
from clip_tf import (TFCLIPForImageClassification, TFCLIPModel, TFCLIPTextModel,  # noqa: E402
                     TFCLIPTextModelWithProjection, TFCLIPVisionModel, TFCLIPVisionModelWithProjection)
from tests.conftest import (ROOT, WEIGHT_FILES, assert_close, load_expected, shared_path,  # noqa: E402
                            single_format_dir, unit)

EMBED_TOL, LOGIT_TOL = 1e-5, 1e-4






# ------------------------------------------------------------------------------------------------ reference fixtures
@pytest.mark.parametrize("weight_file", WEIGHT_FILES)
def test_fixture_outputs_from_each_weight_file(hf_fixture, weight_file, tmp_path):
    """Every output in expected.npz, from config.json plus one weight file. The default XLA path runs for
    safetensors; the other formats run eagerly (an XLA compile costs seconds; XLA == eager is tested below)."""
    expected = load_expected(hf_fixture)
    model = TFCLIPModel.from_pretrained(single_format_dir(hf_fixture, weight_file, tmp_path))
    model.jit_compile = weight_file == "model.safetensors"
    out = model(input_ids=expected["input_ids"], pixel_values=expected["pixel_values"],
                attention_mask=expected["attention_mask"], return_loss=True)
    assert_close(out.logits_per_image, expected["tf_logits_per_image"], LOGIT_TOL, "logits_per_image")
    assert_close(out.logits_per_text, expected["tf_logits_per_image"].T, LOGIT_TOL, "logits_per_text")
    assert_close(out.text_embeds, expected["tf_text_embeds"], EMBED_TOL, "text_embeds")
    assert_close(out.image_embeds, expected["tf_image_embeds"], EMBED_TOL, "image_embeds")
    assert_close(out.loss, np.reshape(expected["pt_loss"], (1,)), LOGIT_TOL, "loss")
    for tower, output in (("text", out.text_model_output), ("vision", out.vision_model_output)):
        assert_close(output.last_hidden_state, expected[f"pt_{tower}_last_hidden_state"], LOGIT_TOL, f"{tower} states")
        assert_close(output.pooler_output, expected[f"pt_{tower}_pooler_output"], EMBED_TOL, f"{tower} pooled")
    text = model.get_text_features(expected["input_ids"], expected["attention_mask"])
    image = model.get_image_features(expected["pixel_values"])
    assert_close(unit(text), expected["tf_text_embeds"], EMBED_TOL, "get_text_features")
    assert_close(unit(image), expected["tf_image_embeds"], EMBED_TOL, "get_image_features")


@pytest.mark.parametrize("weight_file", WEIGHT_FILES)
def test_fixture_sub_models_load_from_the_full_checkpoint(hf_fixture, weight_file, tmp_path):
    """The text-only, vision-only and with-projection classes load from the CLIPModel checkpoint (eager calls)."""
    expected = load_expected(hf_fixture)
    folder = single_format_dir(hf_fixture, weight_file, tmp_path)
    ids, mask, pixels = expected["input_ids"], expected["attention_mask"], expected["pixel_values"]
    for cls in (TFCLIPTextModel, TFCLIPTextModelWithProjection, TFCLIPVisionModel, TFCLIPVisionModelWithProjection):
        model = cls.from_pretrained(folder)
        model.jit_compile = False  # the XLA path is covered above and in test_xla_equals_eager
        tower = "text" if cls.arch.startswith("text") else "vision"
        out = model(input_ids=ids, attention_mask=mask) if tower == "text" else model(pixel_values=pixels)
        assert_close(out.last_hidden_state, expected[f"pt_{tower}_last_hidden_state"], LOGIT_TOL, f"{cls.__name__}")
        if cls.arch.endswith("projection"):
            embeds = out.text_embeds if tower == "text" else out.image_embeds
            assert_close(unit(embeds), expected[f"tf_{'text' if tower == 'text' else 'image'}_embeds"], EMBED_TOL,
                  f"{cls.__name__} embeds")
        else:
            assert_close(out.pooler_output, expected[f"pt_{tower}_pooler_output"], EMBED_TOL, f"{cls.__name__} pooled")


# ------------------------------------------------------------------------------------------------ transformers, live
@pytest.fixture(scope="module")
def hf():
    transformers = pytest.importorskip("transformers")
    return transformers


TEXT_A = dict(vocab_size=97, hidden_size=48, intermediate_size=72, num_hidden_layers=2, num_attention_heads=3,
              max_position_embeddings=12, hidden_act="gelu", eos_token_id=2, bos_token_id=1, pad_token_id=0,
              projection_dim=20)
VISION_A = dict(hidden_size=40, intermediate_size=56, num_hidden_layers=3, num_attention_heads=5, image_size=24,
                patch_size=8, hidden_act="gelu", projection_dim=20)
TEXT_B = dict(vocab_size=61, hidden_size=30, intermediate_size=44, num_hidden_layers=3, num_attention_heads=5,
              max_position_embeddings=10, hidden_act="quick_gelu", eos_token_id=60, bos_token_id=59,
              pad_token_id=0, layer_norm_eps=1e-6, projection_dim=16)
VISION_B = dict(hidden_size=36, intermediate_size=40, num_hidden_layers=2, num_attention_heads=3, image_size=20,
                patch_size=5, num_channels=2, hidden_act="silu", projection_dim=16)
CONFIGS = {
    "legacy-eos-gelu-3-5-heads": CLIPConfig(text_config=TEXT_A, vision_config=VISION_A, projection_dim=20,
                                            logit_scale_init_value=2.0),
    "eos-quick-gelu-5-3-heads": CLIPConfig(text_config=TEXT_B, vision_config=VISION_B, projection_dim=16),
}


def eager(model):
    """Live comparisons run eagerly: each XLA compile costs seconds, and XLA == eager has its own tests."""
    model.jit_compile = False
    return model


def perturbed_state(config, arch, seed):
    """A random state whose layer norms and biases are not trivially 1/0."""
    state = init_state(config, arch, seed)
    rng = np.random.default_rng(seed + 100)
    for name, spec in param_table(config, arch).items():
        if spec.kind in ("norm_scale", "norm_bias", "bias"):
            state[name] = (state[name] + 0.1 * rng.standard_normal(spec.shape)).astype(np.float32)
    return state


def text_inputs(config: CLIPTextConfig, batch=3, seq=None, seed=0):
    """Right-padded ids ending with the end-of-text token (the highest id for legacy configs), and their mask."""
    rng = np.random.default_rng(seed)
    seq = seq or config.max_position_embeddings
    eos = config.vocab_size - 1 if config.eos_token_id == 2 else config.eos_token_id
    ids = rng.integers(3, min(eos, config.vocab_size - 1), size=(batch, seq))
    mask = np.zeros((batch, seq), np.int64)
    for row, length in enumerate(np.linspace(seq, 2, batch).astype(int)):
        ids[row, length - 1] = eos
        ids[row, length:] = config.pad_token_id if config.eos_token_id != 2 else eos
        mask[row, :length] = 1
    return ids, mask


def pixel_inputs(config: CLIPVisionConfig, batch=3, height=None, width=None, seed=0):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((batch, config.num_channels, height or config.image_size,
                                width or config.image_size)).astype(np.float32)


def tf_inputs(**kwargs):
    """transformers 4.57's TF models reject numpy 2 arrays: hand them tensors."""
    return {k: tf.constant(v) if isinstance(v, np.ndarray) else v for k, v in kwargs.items()}


def hf_tf_model(hf, ours):
    """transformers' TF class for ``ours``, holding our variables (copied by transformers' variable names)."""
    cls = {"clip": hf.TFCLIPModel, "text": hf.TFCLIPTextModel, "vision": hf.TFCLIPVisionModel}[ours.arch]
    config_cls = {"clip": hf.CLIPConfig, "text": hf.CLIPTextConfig, "vision": hf.CLIPVisionConfig}[ours.arch]
    theirs = cls(config_cls.from_dict(ours.config.to_dict()))
    theirs.build_in_name_scope()
    by_name = {tf_name(spec): name for name, spec in ours.table.items()}
    assigned = set()
    for variable in theirs.weights:
        name = by_name[variable.name.split("/", 2)[2]]
        variable.assign(ours.params[name])
        assigned.add(name)
    assert assigned == set(ours.table), "every parameter maps onto one of transformers' variables"
    return theirs


def state_from_hf_tf(theirs, ours_cls, config):
    """A canonical state read from transformers' TF variables."""
    table = param_table(config, ours_cls.arch)
    by_name = {tf_name(spec): (name, spec) for name, spec in table.items()}
    state = {}
    for variable in theirs.weights:
        name, spec = by_name[variable.name.split("/", 2)[2]]
        value = variable.numpy()
        state[name] = value.T if spec.kind == "linear" else (
            value.transpose(3, 2, 0, 1) if spec.kind == "conv" else value.reshape(spec.shape))
    return state


def compare_outputs(ours, theirs, tol_hidden=LOGIT_TOL, what=""):
    """Every tensor field of ``ours`` (ModelOutput, nested) against transformers' output of the same name."""
    count = 0
    for key, value in ours.items():
        other = theirs[key]
        if hasattr(value, "items"):
            count += compare_outputs(value, other, tol_hidden, f"{what}{key}.")
        elif isinstance(value, tuple):
            assert len(value) == len(other), f"{what}{key}: {len(value)} entries, transformers has {len(other)}"
            for i, (a, b) in enumerate(zip(value, other)):
                assert_close(a, np.asarray(b), tol_hidden, f"{what}{key}[{i}]")
                count += 1
        else:
            tol = EMBED_TOL if key in ("text_embeds", "image_embeds", "pooler_output") else tol_hidden
            assert_close(value, np.reshape(np.asarray(other), value.shape), tol, f"{what}{key}")
            count += 1
    return count


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_clip_model_matches_transformers_tf(hf, name):
    """Our TFCLIPModel == transformers' TFCLIPModel, same weights: every output, hidden state and attention map."""
    config = CONFIGS[name]
    ours = eager(TFCLIPModel._from_state(config, perturbed_state(config, "clip", seed=1)))
    theirs = hf_tf_model(hf, ours)
    ids, mask = text_inputs(config.text_config)
    pixels = pixel_inputs(config.vision_config)
    seq = ids.shape[1]
    # transformers' TF CLIP tiles position_ids over the batch, so it takes them of shape (1, seq) only
    for kwargs in (dict(attention_mask=mask, return_loss=True, output_hidden_states=True, output_attentions=True),
                   dict(attention_mask=mask, position_ids=((np.arange(seq) + 2) % seq)[None]),
                   dict(position_ids=np.arange(seq)[::-1][None].copy())):
        out = ours(input_ids=ids, pixel_values=pixels, **kwargs)
        ref = theirs(**tf_inputs(input_ids=ids, pixel_values=pixels, **kwargs))
        n = compare_outputs(out, ref, what=f"{name}:")
        assert n >= 8
        if kwargs.get("output_hidden_states"):
            assert len(out.text_model_output.hidden_states) == config.text_config.num_hidden_layers + 1
            assert out.vision_model_output.attentions[0].shape == (3, config.vision_config.num_attention_heads,
                                                                   config.vision_config.num_patches + 1,
                                                                   config.vision_config.num_patches + 1)
    assert_close(ours.get_text_features(ids, mask), theirs.get_text_features(**tf_inputs(input_ids=ids, attention_mask=mask)),
          EMBED_TOL, "get_text_features")
    assert_close(ours.get_image_features(pixels), theirs.get_image_features(tf.constant(pixels)), EMBED_TOL,
          "get_image_features")
    # and back: transformers' variables load into ours
    back = eager(TFCLIPModel._from_state(config, state_from_hf_tf(theirs, TFCLIPModel, config)))
    ref = theirs(**tf_inputs(input_ids=ids, pixel_values=pixels, attention_mask=mask))
    assert_close(back(input_ids=ids, pixel_values=pixels, attention_mask=mask).logits_per_image, ref.logits_per_image,
          LOGIT_TOL, "round trip")


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_tower_models_match_transformers_tf(hf, name):
    config = CONFIGS[name]
    ids, mask = text_inputs(config.text_config, batch=2, seq=7, seed=3)
    pixels = pixel_inputs(config.vision_config, batch=2, seed=3)
    for cls, tower_config, inputs in ((TFCLIPTextModel, config.text_config, dict(input_ids=ids, attention_mask=mask)),
                                      (TFCLIPVisionModel, config.vision_config, dict(pixel_values=pixels))):
        ours = eager(cls._from_state(tower_config, perturbed_state(tower_config, cls.arch, seed=2)))
        theirs = hf_tf_model(hf, ours)
        flags = dict(output_hidden_states=True, output_attentions=True)
        compare_outputs(ours(**inputs, **flags), theirs(**tf_inputs(**inputs, **flags)), what=f"{cls.__name__}:")
        tuple_out = ours(**inputs, return_dict=False)
        assert isinstance(tuple_out, tuple) and len(tuple_out) == 2
        assert_close(tuple_out[1], theirs(**tf_inputs(**inputs)).pooler_output, EMBED_TOL, "tuple pooler_output")


@pytest.fixture(scope="module")
def hf_torch(hf):
    torch = pytest.importorskip("torch")
    return torch


def hf_pt_model(hf, torch, ours, cls_name):
    """transformers' PyTorch class ``cls_name`` holding our weights (for what transformers' TF classes lack)."""
    cls = getattr(hf, cls_name)
    config_cls = {"clip": hf.CLIPConfig, "image_classification": hf.CLIPConfig, "text_projection": hf.CLIPTextConfig,
                  "vision_projection": hf.CLIPVisionConfig}[ours.arch]
    theirs = cls(config_cls.from_dict(ours.config.to_dict())).eval()
    state = {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in ours.export_state().items()}
    missing, unexpected = theirs.load_state_dict(state, strict=False)
    assert not unexpected and all(k.endswith("position_ids") for k in missing), (missing, unexpected)
    return theirs


def test_interpolate_pos_encoding_matches_transformers_pytorch(hf, hf_torch):
    """transformers' TF CLIP has no interpolate_pos_encoding: compare with its PyTorch CLIP on non-square sizes,
    including sizes that are not multiples of the patch (the convolution floors)."""
    torch = hf_torch
    config = CONFIGS["legacy-eos-gelu-3-5-heads"]
    ours = eager(TFCLIPModel._from_state(config, perturbed_state(config, "clip", seed=4)))
    theirs = hf_pt_model(hf, torch, ours, "CLIPModel")
    ids, mask = text_inputs(config.text_config, batch=2)
    for height, width in ((40, 24), (27, 35)):
        pixels = pixel_inputs(config.vision_config, batch=2, height=height, width=width, seed=5)
        out = ours(input_ids=ids, pixel_values=pixels, attention_mask=mask, interpolate_pos_encoding=True,
                   output_hidden_states=True)
        with torch.no_grad():
            ref = theirs(input_ids=torch.from_numpy(ids), pixel_values=torch.from_numpy(pixels),
                         attention_mask=torch.from_numpy(mask), interpolate_pos_encoding=True,
                         output_hidden_states=True)
        assert_close(out.logits_per_image, ref.logits_per_image.numpy(), LOGIT_TOL, f"{height}x{width} logits")
        assert_close(out.image_embeds, ref.image_embeds.numpy(), EMBED_TOL, f"{height}x{width} image_embeds")
        for i, (a, b) in enumerate(zip(out.vision_model_output.hidden_states, ref.vision_model_output.hidden_states)):
            assert_close(a, b.numpy(), LOGIT_TOL, f"{height}x{width} hidden_states[{i}]")
        image = ours.get_image_features(pixels, interpolate_pos_encoding=True)
        assert_close(image, theirs.get_image_features(torch.from_numpy(pixels), interpolate_pos_encoding=True).detach(),
              EMBED_TOL, "get_image_features")


def test_projection_and_classification_models_match_transformers_pytorch(hf, hf_torch):
    """Classes transformers has only in PyTorch: the with-projection towers and the image classifier."""
    torch = hf_torch
    config = CONFIGS["eos-quick-gelu-5-3-heads"]
    ids, mask = text_inputs(config.text_config, batch=2, seed=6)
    pixels = pixel_inputs(config.vision_config, batch=2, seed=6)
    cases = [(TFCLIPTextModelWithProjection, "CLIPTextModelWithProjection", config.text_config,
              dict(input_ids=ids, attention_mask=mask)),
             (TFCLIPVisionModelWithProjection, "CLIPVisionModelWithProjection", config.vision_config,
              dict(pixel_values=pixels))]
    for cls, hf_name, tower_config, inputs in cases:
        ours = eager(cls._from_state(tower_config, perturbed_state(tower_config, cls.arch, seed=7)))
        theirs = hf_pt_model(hf, torch, ours, hf_name)
        with torch.no_grad():
            ref = theirs(**{k: torch.from_numpy(v) for k, v in inputs.items()}, output_hidden_states=True)
        compare_outputs(ours(**inputs, output_hidden_states=True), {k: v.numpy() if hasattr(v, "numpy") else
                                                                    tuple(t.numpy() for t in v)
                                                                    for k, v in ref.items()}, what=hf_name)
    classifier_config = CLIPConfig(text_config=TEXT_B, vision_config=VISION_B, projection_dim=16, num_labels=5)
    ours = eager(TFCLIPForImageClassification._from_state(
        classifier_config, perturbed_state(classifier_config, "image_classification", seed=8)))
    theirs = hf_pt_model(hf, torch, ours, "CLIPForImageClassification")
    labels = np.array([3, -100])
    out = ours(pixel_values=pixels, labels=labels)
    with torch.no_grad():
        ref = theirs(pixel_values=torch.from_numpy(pixels), labels=torch.from_numpy(labels))
    assert_close(out.logits, ref.logits.numpy(), LOGIT_TOL, "classifier logits")
    assert_close(out.loss, ref.loss.numpy().reshape(1), LOGIT_TOL, "classifier loss")


# ------------------------------------------------------------------------------------------------ checkpoints
def test_our_checkpoints_load_in_transformers(hf, hf_torch, tmp_path):
    """save_pretrained(format="tf") loads in transformers' TFCLIPModel, the default safetensors in its CLIPModel,
    with no missing keys and the same outputs. (transformers 4.57's TF loader cannot read safetensors files with
    safetensors >= 0.8 installed: its pt->tf path iterates a safe_open handle, which is no longer iterable.)"""
    torch = hf_torch
    config = CONFIGS["eos-quick-gelu-5-3-heads"]
    ours = eager(TFCLIPModel._from_state(config, perturbed_state(config, "clip", seed=9)))
    ids, mask = text_inputs(config.text_config)
    pixels = pixel_inputs(config.vision_config)
    out = ours(input_ids=ids, pixel_values=pixels, attention_mask=mask)
    ours.save_pretrained(tmp_path / "tf", format="tf")
    assert (tmp_path / "tf" / "tf_model.h5").exists()
    theirs, info = hf.TFCLIPModel.from_pretrained(tmp_path / "tf", output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"] and not info["mismatched_keys"], info
    ref = theirs(**tf_inputs(input_ids=ids, pixel_values=pixels, attention_mask=mask))
    assert_close(out.logits_per_image, ref.logits_per_image, LOGIT_TOL, "tf_model.h5: logits")
    assert_close(out.text_embeds, ref.text_embeds, EMBED_TOL, "tf_model.h5: text_embeds")
    ours.save_pretrained(tmp_path / "st")
    assert (tmp_path / "st" / "model.safetensors").exists()
    theirs, info = hf.CLIPModel.from_pretrained(tmp_path / "st", output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"] and not info["mismatched_keys"], info
    with torch.no_grad():
        ref = theirs(**{k: torch.from_numpy(v) for k, v in dict(input_ids=ids, pixel_values=pixels,
                                                                 attention_mask=mask).items()})
    assert_close(out.logits_per_image, ref.logits_per_image.numpy(), LOGIT_TOL, "model.safetensors: logits")
    assert_close(out.image_embeds, ref.image_embeds.numpy(), EMBED_TOL, "model.safetensors: image_embeds")


def test_transformers_tf_checkpoint_loads_in_ours(hf, tmp_path):
    config = CONFIGS["legacy-eos-gelu-3-5-heads"]
    donor = TFCLIPModel._from_state(config, perturbed_state(config, "clip", seed=10))
    theirs = hf_tf_model(hf, donor)
    theirs.save_pretrained(tmp_path)
    assert (tmp_path / "tf_model.h5").exists()
    ours = eager(TFCLIPModel.from_pretrained(tmp_path))
    ids, mask = text_inputs(config.text_config)
    pixels = pixel_inputs(config.vision_config)
    ref = theirs(**tf_inputs(input_ids=ids, pixel_values=pixels, attention_mask=mask))
    out = ours(input_ids=ids, pixel_values=pixels, attention_mask=mask)
    assert_close(out.logits_per_image, ref.logits_per_image, LOGIT_TOL, "logits")
    assert_close(out.image_embeds, ref.image_embeds, EMBED_TOL, "image_embeds")
    text = eager(TFCLIPTextModel.from_pretrained(tmp_path))  # a tower from transformers' full TF checkpoint
    assert_close(text(input_ids=ids, attention_mask=mask).pooler_output, ref.text_model_output.pooler_output, EMBED_TOL,
          "text tower")


def test_save_pretrained_round_trip_and_random_init(tmp_path):
    config = CLIPConfig.preset("tiny")
    model = TFCLIPModel(config, seed=3)
    expected = init_state(config, "clip", 3)
    state = model.export_state()
    assert set(state) == set(expected)
    for name in expected:
        np.testing.assert_array_equal(state[name], expected[name], err_msg=name)
    model.save_pretrained(tmp_path)
    again = TFCLIPModel.from_pretrained(tmp_path)
    for a, b in zip(model.trainable_variables, again.trainable_variables):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    assert model.params["logit_scale"].shape == (1,)
    assert model.params["vision_model.embeddings.patch_embedding.weight"].shape == (8, 8, 3, 64)  # HWIO
    assert model.params["text_model.encoder.layers.0.mlp.fc1.weight"].shape == (64, 128)  # [in, out]
    assert TFCLIPModel(config.to_dict(), seed=3).num_parameters() == model.num_parameters()


# ------------------------------------------------------------------------------------------------ TensorFlow machinery
@pytest.fixture(scope="module")
def fixture_model():
    folder = shared_path("fixtures", "hf-tiny")
    return TFCLIPModel.from_pretrained(folder), load_expected(folder)


def test_xla_equals_eager_and_compiled_functions_are_cached(fixture_model):
    model, expected = fixture_model
    inputs = dict(input_ids=expected["input_ids"], pixel_values=expected["pixel_values"],
                  attention_mask=expected["attention_mask"], output_hidden_states=True, output_attentions=True)
    model.jit_compile = True
    compiled = model(**inputs)
    count = len(model._compiled.functions)
    model(**inputs)
    assert len(model._compiled.functions) == count, "same shapes and flags reuse the compiled function"
    try:
        model.jit_compile = False
        eager = model(**inputs)
    finally:
        model.jit_compile = True
    assert len(model._compiled.functions) == count
    assert compare_outputs(compiled, eager) >= 18  # 4 + 2 x 2 pooled/last + 2 x (3 states + 2 attentions)
    # position_ids and a non-square image through interpolate_pos_encoding, compiled and eager
    tall = np.tile(expected["pixel_values"], (1, 1, 2, 1))[..., :27]  # 64 x 27: an 8 x 3 grid
    inputs = dict(input_ids=expected["input_ids"], pixel_values=tall, position_ids=np.arange(16)[::-1][None].copy(),
                  interpolate_pos_encoding=True)
    compiled = model(**inputs)
    try:
        model.jit_compile = False
        eager = model(**inputs)
    finally:
        model.jit_compile = True
    assert compiled.vision_model_output.last_hidden_state.shape == (3, 8 * 3 + 1, 48)
    assert compare_outputs(compiled, eager) > 6
    count = len(model._compiled.functions)
    model(input_ids=expected["input_ids"][:2, :5], pixel_values=expected["pixel_values"][:2])
    assert len(model._compiled.functions) == count + 1, "a new shape compiles a new function"


def test_inputs_as_numpy_lists_and_tensors(fixture_model):
    model, expected = fixture_model
    ids, pixels, mask = expected["input_ids"], expected["pixel_values"], expected["attention_mask"]
    reference = expected["tf_logits_per_image"]
    variants = [dict(input_ids=ids.astype(np.int64), pixel_values=pixels, attention_mask=mask),
                dict(input_ids=ids.tolist(), pixel_values=pixels.tolist(), attention_mask=mask.tolist()),
                dict(input_ids=tf.constant(ids), pixel_values=tf.constant(pixels), attention_mask=tf.constant(mask)),
                dict(input_ids=ids.astype(np.int32), pixel_values=pixels.astype(np.float64),
                     attention_mask=mask.astype(bool))]
    for inputs in variants:
        assert_close(model(**inputs).logits_per_image, reference, LOGIT_TOL, "inputs")
    assert_close(model({"input_ids": ids, "pixel_values": pixels, "attention_mask": mask}).logits_per_image, reference,
          LOGIT_TOL, "a dict as the first argument, as Keras models take it")
    logits_per_image, logits_per_text, text_embeds, image_embeds, text_out, vision_out = model(
        input_ids=ids, pixel_values=pixels, attention_mask=mask, return_dict=False)
    assert isinstance(text_out, tuple) and len(text_out) == 2
    assert_close(logits_per_image, reference, LOGIT_TOL, "return_dict=False")


def test_gradients_reach_every_trainable_variable(fixture_model):
    model, expected = fixture_model
    inputs = dict(input_ids=expected["input_ids"], pixel_values=expected["pixel_values"],
                  attention_mask=expected["attention_mask"], return_loss=True)
    grads = {}
    for jit in (True, False):
        model.jit_compile = jit
        with tf.GradientTape() as tape:
            loss = model(**inputs).loss
        grads[jit] = tape.gradient(loss, model.trainable_variables)
    model.jit_compile = True
    assert len(model.trainable_variables) == len(model.table)
    for variable, g_xla, g_eager in zip(model.trainable_variables, grads[True], grads[False]):
        assert g_xla is not None, f"no gradient for {variable.name}"
        g_xla, g_eager = tf.convert_to_tensor(g_xla).numpy(), tf.convert_to_tensor(g_eager).numpy()
        assert np.all(np.isfinite(g_xla)), variable.name
        assert np.any(g_xla != 0) or "position_embedding" in variable.name or "token_embedding" in variable.name, \
            f"zero gradient for {variable.name}"
        np.testing.assert_allclose(g_xla, g_eager, atol=1e-4, err_msg=variable.name)


def test_runs_inside_user_tf_function_with_jit(fixture_model):
    model, expected = fixture_model

    @tf.function(jit_compile=True)
    def features(ids, mask, pixels):
        out = model(input_ids=ids, attention_mask=mask, pixel_values=pixels)
        return out.logits_per_image, model.get_text_features(ids, mask), model.get_image_features(pixels)

    count = len(model._compiled.functions)
    logits, text, image = features(tf.constant(expected["input_ids"]), tf.constant(expected["attention_mask"]),
                                   tf.constant(expected["pixel_values"]))
    assert len(model._compiled.functions) == count, "inside a tf.function the model traces into the caller's graph"
    assert_close(logits, expected["tf_logits_per_image"], LOGIT_TOL, "logits")
    assert_close(unit(text), expected["tf_text_embeds"], EMBED_TOL, "text")
    assert_close(unit(image), expected["tf_image_embeds"], EMBED_TOL, "image")


def test_user_tf_function_may_return_the_whole_output(fixture_model):
    """TensorFlow rebuilds a returned Mapping as ``type(output)(key_value_pairs)``: the output containers must take
    that form (as transformers' ModelOutput does)."""
    model, expected = fixture_model

    @tf.function
    def run(ids, pixels):
        return model(input_ids=ids, pixel_values=pixels)

    out = run(tf.constant(expected["input_ids"]), tf.constant(expected["pixel_values"]))
    assert type(out).__name__ == "CLIPOutput" and out.text_model_output.pooler_output.shape[0] == 3


def test_saved_model_export_and_reload(fixture_model, tmp_path):
    model, expected = fixture_model
    tf.saved_model.save(model, str(tmp_path / "saved"))
    restored = tf.saved_model.load(str(tmp_path / "saved"))
    serve = restored.signatures["serving_default"]
    out = serve(input_ids=tf.constant(expected["input_ids"], tf.int32), pixel_values=tf.constant(
        expected["pixel_values"]), attention_mask=tf.constant(expected["attention_mask"], tf.int32))
    assert_close(out["text_embeds"], expected["tf_text_embeds"], EMBED_TOL, "saved text_embeds")
    assert_close(out["image_embeds"], expected["tf_image_embeds"], EMBED_TOL, "saved image_embeds")
    assert_close(out["logits_per_image"], expected["tf_logits_per_image"], LOGIT_TOL, "saved logits")
    # dynamic shapes: another batch and sequence length through the same signature
    short = serve(input_ids=tf.constant(expected["input_ids"][:2, :4], tf.int32),
                  pixel_values=tf.constant(expected["pixel_values"][:1]),
                  attention_mask=tf.constant(expected["attention_mask"][:2, :4], tf.int32))
    assert short["logits_per_text"].shape == (2, 1)
    assert len(restored.params) == len(model.table)


def test_bfloat16(fixture_model):
    model, expected = fixture_model
    folder = shared_path("fixtures", "hf-tiny")
    bf16 = TFCLIPModel.from_pretrained(folder, dtype="bfloat16")
    assert bf16.dtype == tf.bfloat16 and all(v.dtype == tf.bfloat16 for v in bf16.trainable_variables)
    out = bf16(input_ids=expected["input_ids"], pixel_values=expected["pixel_values"],
               attention_mask=expected["attention_mask"])
    for key in ("text_embeds", "image_embeds"):
        ours = np.asarray(tf.cast(out[key], tf.float32))
        reference = expected[f"tf_{key}"]
        assert_close(ours, reference, 2e-2, f"bfloat16 {key}")
        cosine = np.sum(unit(ours) * unit(reference), axis=-1)
        assert np.all(cosine > 0.999), cosine
    assert bf16.export_state()["logit_scale"].dtype == np.float32
    with pytest.raises(ValueError, match="dtype"):
        TFCLIPModel.from_pretrained(folder, dtype="int8")


# ------------------------------------------------------------------------------------------------ errors
def test_errors_name_the_culprit(fixture_model):
    model, expected = fixture_model
    ids, pixels, mask = expected["input_ids"], expected["pixel_values"], expected["attention_mask"]
    with pytest.raises(TypeError, match="CLIPConfig"):
        TFCLIPModel(CLIPTextConfig())
    with pytest.raises(TypeError, match="CLIPTextConfig"):
        TFCLIPTextModel(CLIPVisionConfig())
    cases = [
        (dict(input_ids=ids[0], pixel_values=pixels), "input_ids"),
        (dict(input_ids=np.full((3, 17), 5), pixel_values=pixels), "input_ids.*positions"),
        (dict(input_ids=np.where(ids == 999, 1000, ids), pixel_values=pixels), "input_ids.*1000"),
        (dict(input_ids=ids - 1, pixel_values=pixels), "input_ids.*-1"),
        (dict(input_ids=ids, pixel_values=pixels[:, :2]), "pixel_values.*channels"),
        (dict(input_ids=ids, pixel_values=pixels[..., :16]), "pixel_values.*interpolate_pos_encoding"),
        (dict(input_ids=ids, pixel_values=np.where(pixels > 1, np.nan, pixels)), "pixel_values.*NaN"),
        (dict(input_ids=ids, pixel_values=pixels, attention_mask=mask[:, :4]), "attention_mask"),
        (dict(input_ids=ids, pixel_values=pixels, position_ids=np.arange(16)[None] + 1), "position_ids"),
        (dict(input_ids=ids, pixel_values=pixels[:2], return_loss=True), "return_loss"),
        (dict(input_ids=ids), "pixel_values"),
        (dict(pixel_values=pixels), "input_ids"),
    ]
    for kwargs, message in cases:
        with pytest.raises(ValueError, match=message):
            model(**kwargs)
    with pytest.raises(ValueError, match="input_ids.*empty"):
        model(input_ids=ids[:0], pixel_values=pixels)
    with pytest.raises(TypeError, match="input_ids.*float32"):
        model(input_ids=tf.constant(ids, tf.float32), pixel_values=pixels)
    with pytest.raises(TypeError, match="input_ids.*float64"):
        model(input_ids=ids.astype(np.float64).tolist(), pixel_values=pixels)
    with pytest.raises(TypeError):
        model(input_ids=ids, pixel_values=pixels, not_an_argument=1)
    classifier = TFCLIPForImageClassification(CLIPConfig.preset("tiny"), seed=0)
    pixels32 = np.zeros((2, 3, 32, 32), np.float32)
    with pytest.raises(ValueError, match="labels"):
        classifier(pixel_values=pixels32, labels=np.array([0, 2]))
    with pytest.raises(ValueError, match="labels"):
        classifier(pixel_values=pixels32, labels=np.array([0.5, 1.0]))


# ------------------------------------------------------------------------------------------------ imports
def run_python(code: str, **env):
    result = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=ROOT, capture_output=True, text=True,
                            env={**os.environ, "PYTHONPATH": str(ROOT), **env}, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


def test_import_does_not_load_other_frameworks():
    out = run_python("""
        import sys
        import clip_tf
        print(sorted({m.split('.')[0] for m in sys.modules} & {'torch', 'jax', 'flax', 'jaxlib'}))
    """)
    assert out.strip().splitlines()[-1] == "[]", out


def test_works_with_keras_backend_jax_and_jax_in_the_same_process():
    """No Keras in clip_tf: the global Keras backend does not matter, and JAX can live in the same process."""
    folder = shared_path("fixtures", "hf-tiny")
    out = run_python(f"""
        import numpy as np
        import flax.linen
        import jax.numpy as jnp
        import clip_tf
        expected = dict(np.load({str(folder / 'expected.npz')!r}))
        model = clip_tf.TFCLIPModel.from_pretrained({str(folder)!r})
        out = model(input_ids=expected["input_ids"], pixel_values=expected["pixel_values"],
                    attention_mask=expected["attention_mask"])
        print(float(np.abs(out.logits_per_image.numpy() - expected["tf_logits_per_image"]).max()),
              float(jnp.sum(jnp.ones(3))))
    """, KERAS_BACKEND="jax", TF_USE_LEGACY_KERAS="0")
    diff, jax_sum = out.strip().splitlines()[-1].split()
    assert float(diff) <= LOGIT_TOL and float(jax_sum) == 3.0
