"""clip_pt against the transformers-made fixtures and, live, against transformers 4.57.6's PyTorch CLIP classes."""

from __future__ import annotations

import os

# transformers imports TensorFlow when it loads; the TF test module needs Keras 2, whichever module imports first.
os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

import json  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402

torch = pytest.importorskip("torch")

from clip_core.weights import param_table  # noqa: E402
from clip_pt import (CLIPConfig, CLIPForImageClassification, CLIPModel, CLIPTextConfig, CLIPTextModel,  # noqa: E402
                     CLIPTextModelWithProjection, CLIPVisionConfig, CLIPVisionModel, CLIPVisionModelWithProjection)
from clip_pt.modeling import attention_bias, interpolate_pos_encoding, pool_text  # noqa: E402
from tests.conftest import (ROOT, WEIGHT_FILES, assert_close, load_expected, shared_path,  # noqa: E402
                            single_format_dir, to_numpy, unit)

# Tolerances from DESIGN.md (float32, CPU): embeddings and pooled outputs 1e-5, logits and hidden states 1e-4.
EMBED_TOL, STATE_TOL = 1e-5, 1e-4
OURS = {"clip": CLIPModel, "text": CLIPTextModel, "text_projection": CLIPTextModelWithProjection,
        "vision": CLIPVisionModel, "vision_projection": CLIPVisionModelWithProjection,
        "image_classification": CLIPForImageClassification}








def _inputs(folder):
    exp = load_expected(folder)
    return exp, {k: torch.from_numpy(exp[k]) for k in ("input_ids", "attention_mask", "pixel_values")}


# ============================================================================================ reference fixtures
@pytest.mark.parametrize("weight_file", WEIGHT_FILES)
def test_fixture_outputs_from_each_weight_file(hf_fixture, weight_file, tmp_path):
    exp, x = _inputs(hf_fixture)
    model = CLIPModel.from_pretrained(single_format_dir(hf_fixture, weight_file, tmp_path))
    assert not model.training
    with torch.no_grad():
        out = model(**x, return_loss=True)
    text, vision = out.text_model_output, out.vision_model_output
    checks = [("logits_per_image", out.logits_per_image, STATE_TOL), ("text_embeds", out.text_embeds, EMBED_TOL),
              ("image_embeds", out.image_embeds, EMBED_TOL), ("loss", out.loss, STATE_TOL),
              ("text_last_hidden_state", text.last_hidden_state, STATE_TOL),
              ("text_pooler_output", text.pooler_output, EMBED_TOL),
              ("vision_last_hidden_state", vision.last_hidden_state, STATE_TOL),
              ("vision_pooler_output", vision.pooler_output, EMBED_TOL)]
    for key, value, tol in checks:
        assert_close(value, exp[f"pt_{key}"], tol, key)
    assert_close(out.logits_per_text, exp["pt_logits_per_image"].T, STATE_TOL, "logits_per_text")
    for other in ("tf", "flax"):
        assert_close(out.text_embeds, exp[f"{other}_text_embeds"], EMBED_TOL, f"{other}_text_embeds")
        assert_close(out.image_embeds, exp[f"{other}_image_embeds"], EMBED_TOL, f"{other}_image_embeds")


@pytest.mark.parametrize("weight_file", WEIGHT_FILES)
def test_fixture_sub_models_load_from_the_full_checkpoint(hf_fixture, weight_file, tmp_path):
    exp, x = _inputs(hf_fixture)
    folder = single_format_dir(hf_fixture, weight_file, tmp_path)
    text_x = {"input_ids": x["input_ids"], "attention_mask": x["attention_mask"]}
    with torch.no_grad():
        text = CLIPTextModel.from_pretrained(folder)(**text_x)
        text_proj = CLIPTextModelWithProjection.from_pretrained(folder)(**text_x)
        vision = CLIPVisionModel.from_pretrained(folder)(x["pixel_values"])
        vision_proj = CLIPVisionModelWithProjection.from_pretrained(folder)(x["pixel_values"])
    assert_close(text.last_hidden_state, exp["pt_text_last_hidden_state"], STATE_TOL, "text last_hidden_state")
    assert_close(text.pooler_output, exp["pt_text_pooler_output"], EMBED_TOL, "text pooler_output")
    assert_close(text_proj.last_hidden_state, exp["pt_text_last_hidden_state"], STATE_TOL, "text_proj states")
    assert_close(unit(text_proj.text_embeds), exp["pt_text_embeds"], EMBED_TOL, "text_embeds")
    assert_close(vision.last_hidden_state, exp["pt_vision_last_hidden_state"], STATE_TOL, "vision last_hidden_state")
    assert_close(vision.pooler_output, exp["pt_vision_pooler_output"], EMBED_TOL, "vision pooler_output")
    assert_close(unit(vision_proj.image_embeds), exp["pt_image_embeds"], EMBED_TOL, "image_embeds")


def test_get_features_are_projected_and_unnormalised():
    folder = shared_path("fixtures", "hf-tiny")
    exp, x = _inputs(folder)
    model = CLIPModel.from_pretrained(folder)
    with torch.no_grad():
        t = model.get_text_features(x["input_ids"], x["attention_mask"])
        i = model.get_image_features(x["pixel_values"])
    assert t.shape == (3, 32) and i.shape == (3, 32)
    assert not np.allclose(np.linalg.norm(to_numpy(t), axis=-1), 1.0)
    assert_close(unit(t), exp["pt_text_embeds"], EMBED_TOL, "text features")
    assert_close(unit(i), exp["pt_image_embeds"], EMBED_TOL, "image features")


@pytest.mark.parametrize("dtype", [torch.bfloat16, "bfloat16", torch.float16, "float16"])
def test_reduced_precision_load(dtype):
    folder = shared_path("fixtures", "hf-tiny")
    exp, x = _inputs(folder)
    model = CLIPModel.from_pretrained(folder, dtype=dtype)
    want = dtype if isinstance(dtype, torch.dtype) else getattr(torch, dtype)
    assert model.dtype == want and all(p.dtype == want for p in model.parameters())
    with torch.no_grad():
        out = model(**x)
    for key in ("text_embeds", "image_embeds"):
        ours, ref = to_numpy(out[key]), exp[f"pt_{key}"]
        assert out[key].dtype == want
        assert_close(ours, ref, 2e-2, key)
        cosine = np.sum(unit(ours) * ref, axis=-1)
        assert cosine.min() > 0.999, f"{key}: cosine {cosine.min()}"
    state = model.export_state()
    expected_np = np.float16 if want == torch.float16 else np.float32  # numpy has no bfloat16: bf16 exports float32
    assert {a.dtype for a in state.values()} == {np.dtype(expected_np)}


def test_torch_dtype_alias_and_bad_dtypes():
    folder = shared_path("fixtures", "hf-tiny")
    assert CLIPVisionModel.from_pretrained(folder, torch_dtype=torch.bfloat16).dtype == torch.bfloat16
    assert CLIPVisionModel.from_pretrained(folder, dtype="float32").dtype == torch.float32
    assert CLIPVisionModel.from_pretrained(folder).dtype == torch.float32
    with pytest.raises(ValueError, match="dtype"):
        CLIPVisionModel.from_pretrained(folder, dtype="int8")
    with pytest.raises(TypeError, match="unexpected"):
        CLIPVisionModel.from_pretrained(folder, no_such_option=1)


def test_with_projection_classes_take_projection_size_from_a_stale_full_config(tmp_path):
    """A full config whose tower configs say projection_dim=512 while the checkpoint's projections are 32 wide."""
    src = shared_path("fixtures", "hf-tiny")
    exp, x = _inputs(src)
    data = json.loads((src / "config.json").read_text())
    data["text_config"]["projection_dim"] = 512
    data["vision_config"]["projection_dim"] = 512
    (tmp_path / "config.json").write_text(json.dumps(data))
    (tmp_path / "model.safetensors").symlink_to(src / "model.safetensors")
    text = CLIPTextModelWithProjection.from_pretrained(tmp_path)
    vision = CLIPVisionModelWithProjection.from_pretrained(tmp_path)
    assert text.config.projection_dim == 32 and vision.config.projection_dim == 32
    assert text.text_projection.weight.shape == (32, 64)
    with torch.no_grad():
        t = text(x["input_ids"], x["attention_mask"]).text_embeds
        i = vision(x["pixel_values"]).image_embeds
    assert_close(unit(t), exp["pt_text_embeds"], EMBED_TOL, "text_embeds")
    assert_close(unit(i), exp["pt_image_embeds"], EMBED_TOL, "image_embeds")


# ============================================================================================ live vs transformers
LIVE_CONFIGS = {
    # legacy pooling (argmax), exact gelu text, 3 text heads, 5 vision heads
    "legacy-gelu": dict(
        text_config=dict(vocab_size=99, hidden_size=24, intermediate_size=37, num_hidden_layers=2,
                         num_attention_heads=3, max_position_embeddings=12, hidden_act="gelu", eos_token_id=2,
                         bos_token_id=97, pad_token_id=1, projection_dim=16),
        vision_config=dict(hidden_size=20, intermediate_size=30, num_hidden_layers=2, num_attention_heads=5,
                           image_size=24, patch_size=6, hidden_act="quick_gelu", projection_dim=16),
        projection_dim=16, num_labels=4),
    # first-eos pooling with eos in the middle of the vocabulary (argmax would pick another token), 5 text heads
    "eos-quick-gelu": dict(
        text_config=dict(vocab_size=97, hidden_size=40, intermediate_size=48, num_hidden_layers=3,
                         num_attention_heads=5, max_position_embeddings=10, hidden_act="quick_gelu",
                         eos_token_id=50, bos_token_id=49, pad_token_id=50, projection_dim=8),
        vision_config=dict(hidden_size=24, intermediate_size=20, num_hidden_layers=1, num_attention_heads=3,
                           image_size=28, patch_size=7, num_channels=2, hidden_act="gelu_new", projection_dim=8),
        projection_dim=8, logit_scale_init_value=1.5, num_labels=3),
    "silu-tanh": dict(
        text_config=dict(vocab_size=64, hidden_size=16, intermediate_size=24, num_hidden_layers=1,
                         num_attention_heads=1, max_position_embeddings=7, hidden_act="silu", eos_token_id=63,
                         bos_token_id=62, pad_token_id=0, projection_dim=6),
        vision_config=dict(hidden_size=18, intermediate_size=22, num_hidden_layers=2, num_attention_heads=2,
                           image_size=16, patch_size=4, hidden_act="gelu_pytorch_tanh", projection_dim=6,
                           layer_norm_eps=1e-6),
        projection_dim=6, num_labels=2),
}


def _their_class(arch):
    import transformers

    return {"clip": transformers.CLIPModel, "text": transformers.CLIPTextModel,
            "text_projection": transformers.CLIPTextModelWithProjection, "vision": transformers.CLIPVisionModel,
            "vision_projection": transformers.CLIPVisionModelWithProjection,
            "image_classification": transformers.CLIPForImageClassification}[arch]


def _their_config(arch, spec):
    import transformers

    full = transformers.CLIPConfig(**spec)
    return {"text": full.text_config, "text_projection": full.text_config, "vision": full.vision_config,
            "vision_projection": full.vision_config}.get(arch, full)


def _make_theirs(arch, spec, seed):
    """A transformers model with every parameter perturbed (layer norms and biases not trivially 1 / 0)."""
    torch.manual_seed(seed)
    model = _their_class(arch)._from_config(_their_config(arch, spec), attn_implementation="eager")
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.1 * torch.randn_like(p))
    return model.eval()


def _text_inputs(tc, seed, batch=3):
    gen = torch.Generator().manual_seed(seed)
    seq = tc["max_position_embeddings"] - 1
    eos, vocab, legacy = tc["eos_token_id"], tc["vocab_size"], tc["eos_token_id"] == 2
    end = vocab - 1 if legacy else eos  # legacy: the end token is the highest id, as in OpenAI's vocabulary
    ids = torch.randint(3, vocab - 1, (batch, seq), generator=gen)
    ids[ids == eos] = 3
    mask = torch.ones(batch, seq, dtype=torch.long)
    for row, length in enumerate([seq, 4, 2][:batch]):
        ids[row, length - 1] = end
        ids[row, length:] = tc["pad_token_id"]
        mask[row, length:] = 0
    positions = torch.randint(0, tc["max_position_embeddings"], (batch, seq), generator=gen)
    return ids, mask, positions


def _pixels(vc, seed, batch=3, size=None):
    gen = torch.Generator().manual_seed(seed)
    h, w = size or (vc["image_size"], vc["image_size"])
    return torch.randn(batch, vc.get("num_channels", 3), h, w, generator=gen)


def _compare_tower(ours, theirs, what, pooled=True):
    assert_close(ours.last_hidden_state, theirs.last_hidden_state, STATE_TOL, f"{what} last_hidden_state")
    if pooled:
        assert_close(ours.pooler_output, theirs.pooler_output, EMBED_TOL, f"{what} pooler_output")
    if theirs.hidden_states is not None:
        assert len(ours.hidden_states) == len(theirs.hidden_states)
        for i, (a, b) in enumerate(zip(ours.hidden_states, theirs.hidden_states)):
            assert_close(a, b, STATE_TOL, f"{what} hidden_states[{i}]")
    if theirs.attentions is not None:
        assert len(ours.attentions) == len(theirs.attentions)
        for i, (a, b) in enumerate(zip(ours.attentions, theirs.attentions)):
            assert_close(a, b, EMBED_TOL, f"{what} attentions[{i}]")


def _assert_nested_close(ours, theirs, what):
    if isinstance(theirs, (tuple, list)):
        assert isinstance(ours, tuple) and len(ours) == len(theirs), what
        for i, (a, b) in enumerate(zip(ours, theirs)):
            _assert_nested_close(a, b, f"{what}[{i}]")
    else:
        assert_close(ours, theirs, STATE_TOL, what)


@pytest.fixture(scope="module", params=sorted(LIVE_CONFIGS))
def live_clip(request, tmp_path_factory):
    """(spec, their CLIPModel, our CLIPModel loaded from the checkpoint transformers saved)."""
    spec = LIVE_CONFIGS[request.param]
    theirs = _make_theirs("clip", spec, seed=sorted(LIVE_CONFIGS).index(request.param))
    folder = tmp_path_factory.mktemp("theirs")
    theirs.save_pretrained(folder)
    return spec, theirs, CLIPModel.from_pretrained(folder)


@torch.no_grad()
def test_live_clip_model(live_clip):
    spec, theirs, ours = live_clip
    ids, mask, positions = _text_inputs(spec["text_config"], 1)
    pixels = _pixels(spec["vision_config"], 2)
    for kwargs in [dict(attention_mask=mask),
                   dict(attention_mask=mask, position_ids=positions, return_loss=True, output_hidden_states=True,
                        output_attentions=True),
                   dict()]:
        a = ours(input_ids=ids, pixel_values=pixels, **kwargs)
        b = theirs(input_ids=ids, pixel_values=pixels, **kwargs)
        assert list(a.keys()) == list(b.keys())
        assert_close(a.logits_per_image, b.logits_per_image, STATE_TOL, "logits_per_image")
        assert_close(a.logits_per_text, b.logits_per_text, STATE_TOL, "logits_per_text")
        assert_close(a.text_embeds, b.text_embeds, EMBED_TOL, "text_embeds")
        assert_close(a.image_embeds, b.image_embeds, EMBED_TOL, "image_embeds")
        if kwargs.get("return_loss"):
            assert_close(a.loss, b.loss, STATE_TOL, "loss")
        _compare_tower(a.text_model_output, b.text_model_output, "text")
        _compare_tower(a.vision_model_output, b.vision_model_output, "vision")
    # tuples, nested like transformers'
    a = ours(input_ids=ids, pixel_values=pixels, attention_mask=mask, return_loss=True, return_dict=False)
    b = theirs(input_ids=ids, pixel_values=pixels, attention_mask=mask, return_loss=True, return_dict=False)
    _assert_nested_close(a, b, "return_dict=False")
    assert_close(ours.get_text_features(ids, mask, positions), theirs.get_text_features(ids, mask, positions),
                 EMBED_TOL, "get_text_features")
    assert_close(ours.get_image_features(pixels), theirs.get_image_features(pixels), EMBED_TOL,
                 "get_image_features")


@torch.no_grad()
def test_live_interpolate_pos_encoding_non_square(live_clip):
    spec, theirs, ours = live_clip
    vc = spec["vision_config"]
    p = vc["patch_size"]
    for size in [(3 * p + 2, 5 * p + 1), (vc["image_size"] + 2 * p, vc["image_size"])]:  # floors like the conv
        pixels = _pixels(vc, 3, batch=2, size=size)
        a = ours.get_image_features(pixels, interpolate_pos_encoding=True)
        b = theirs.get_image_features(pixels, interpolate_pos_encoding=True)
        assert_close(a, b, EMBED_TOL, f"image features at {size}")
        ids, mask, _ = _text_inputs(spec["text_config"], 4, batch=2)
        a = ours(ids, pixels, mask, interpolate_pos_encoding=True, output_hidden_states=True)
        b = theirs(ids, pixels, mask, interpolate_pos_encoding=True, output_hidden_states=True)
        assert_close(a.logits_per_image, b.logits_per_image, STATE_TOL, "logits_per_image")
        _compare_tower(a.vision_model_output, b.vision_model_output, f"vision at {size}")


@pytest.mark.parametrize("fmt", ["safetensors", "pytorch"])
@torch.no_grad()
def test_live_our_checkpoint_loads_in_transformers(live_clip, fmt, tmp_path):
    import transformers

    spec, _, ours = live_clip
    ours.save_pretrained(tmp_path, format=fmt)
    theirs, info = transformers.CLIPModel.from_pretrained(tmp_path, output_loading_info=True)
    assert not any(info.values()), info
    ids, mask, _ = _text_inputs(spec["text_config"], 5)
    pixels = _pixels(spec["vision_config"], 6)
    a, b = ours(ids, pixels, mask), theirs(ids, pixels, mask)
    assert_close(a.logits_per_image, b.logits_per_image, STATE_TOL, "logits_per_image")
    assert_close(a.text_embeds, b.text_embeds, EMBED_TOL, "text_embeds")


@pytest.mark.parametrize("arch", ["text", "text_projection", "vision", "vision_projection", "image_classification"])
@pytest.mark.parametrize("name", ["legacy-gelu", "eos-quick-gelu"])
@torch.no_grad()
def test_live_sub_models_both_ways(arch, name, tmp_path):
    import transformers

    spec = LIVE_CONFIGS[name]
    theirs = _make_theirs(arch, spec, seed=7)
    theirs.save_pretrained(tmp_path / "theirs")
    ours = OURS[arch].from_pretrained(tmp_path / "theirs")
    ids, mask, positions = _text_inputs(spec["text_config"], 8)
    pixels = _pixels(spec["vision_config"], 9)
    if arch.startswith("text"):
        args = dict(input_ids=ids, attention_mask=mask, position_ids=positions)
    elif arch == "image_classification":
        args = dict(pixel_values=pixels, labels=torch.tensor([0, spec["num_labels"] - 1, 1]))
    else:
        args = dict(pixel_values=pixels)
    a = ours(**args, output_hidden_states=True, output_attentions=True)
    b = theirs(**args, output_hidden_states=True, output_attentions=True)
    assert list(a.keys()) == list(b.keys())
    if arch == "image_classification":
        assert a.logits.shape == (3, spec["num_labels"])
        assert_close(a.logits, b.logits, STATE_TOL, "logits")
        assert_close(a.loss, b.loss, STATE_TOL, "loss")
        for i, (x, y) in enumerate(zip(a.hidden_states, b.hidden_states)):
            assert_close(x, y, STATE_TOL, f"hidden_states[{i}]")
        for i, (x, y) in enumerate(zip(a.attentions, b.attentions)):
            assert_close(x, y, EMBED_TOL, f"attentions[{i}]")
    else:
        _compare_tower(a, b, arch, pooled=arch in ("text", "vision"))
        for key in ("text_embeds", "image_embeds"):
            if key in b:
                assert_close(a[key], b[key], EMBED_TOL, key)
    _assert_nested_close(ours(**args, return_dict=False), theirs(**args, return_dict=False), "return_dict=False")
    # and back: ours saved as safetensors and as pytorch_model.bin loads in transformers with no missing keys
    for fmt in ("safetensors", "pytorch"):
        ours.save_pretrained(tmp_path / fmt, format=fmt)
        again, info = _their_class(arch).from_pretrained(tmp_path / fmt, output_loading_info=True)
        assert not any(info.values()), (fmt, info)
        for name_, value in again.state_dict().items():
            assert torch.equal(value, theirs.state_dict()[name_]), (fmt, name_)


@torch.no_grad()
def test_our_random_init_loads_in_transformers(tmp_path):
    import transformers

    spec = LIVE_CONFIGS["eos-quick-gelu"]
    ours = CLIPModel(CLIPConfig(**spec), seed=11)
    ours.save_pretrained(tmp_path)
    theirs = transformers.CLIPModel.from_pretrained(tmp_path).eval()
    ids, mask, _ = _text_inputs(spec["text_config"], 12)
    pixels = _pixels(spec["vision_config"], 13)
    ours.eval()
    a, b = ours(ids, pixels, mask, return_loss=True), theirs(ids, pixels, mask, return_loss=True)
    assert_close(a.logits_per_image, b.logits_per_image, STATE_TOL, "logits_per_image")
    assert_close(a.loss, b.loss, STATE_TOL, "loss")


# ============================================================================================ attention paths
@torch.no_grad()
def test_sdpa_equals_explicit_softmax():
    model = CLIPModel.from_pretrained(shared_path("fixtures", "hf-tiny"))
    _, x = _inputs(shared_path("fixtures", "hf-tiny"))
    fast = model(**x, output_hidden_states=True)
    slow = model(**x, output_hidden_states=True, output_attentions=True)
    assert fast.text_model_output.attentions is None and len(slow.text_model_output.attentions) == 2
    for key in ("text_embeds", "image_embeds"):
        assert_close(fast[key], slow[key], EMBED_TOL, key)
    assert_close(fast.logits_per_image, slow.logits_per_image, STATE_TOL, "logits")
    for tower in ("text_model_output", "vision_model_output"):
        for a, b in zip(fast[tower].hidden_states, slow[tower].hidden_states):
            assert_close(a, b, STATE_TOL, tower)
    probs = slow.text_model_output.attentions[0]  # [b, heads, q, k]: causal and padded keys get no weight
    assert probs.shape == (3, 4, 16, 16)
    assert_close(probs.sum(-1), torch.ones(3, 4, 16), 1e-6, "rows sum to 1")
    assert torch.all(torch.triu(probs, diagonal=1) == 0)
    assert torch.all(probs[2, :, :, 3:] == 0)  # the third row has 3 tokens


def test_helpers():
    bias = attention_bias(torch.tensor([[1, 1, 0]]), 3, True, torch.float32)
    allowed = (bias == 0).int()[0, 0]
    assert allowed.tolist() == [[1, 0, 0], [1, 1, 0], [1, 1, 0]]
    assert attention_bias(None, 4, False, torch.float32) is None
    assert attention_bias(None, 2, True, torch.bfloat16).dtype == torch.bfloat16
    states = torch.arange(2 * 4 * 1.0).reshape(2, 4, 1)
    ids = torch.tensor([[5, 9, 7, 9], [9, 3, 9, 1]])
    assert pool_text(states, ids, 9)[:, 0].tolist() == [1.0, 4.0]  # first eos
    assert pool_text(states, ids, 2)[:, 0].tolist() == [1.0, 4.0]  # argmax, its first occurrence
    assert pool_text(states, torch.tensor([[5, 9, 7, 3], [1, 3, 9, 1]]), 7)[:, 0].tolist() == [2.0, 4.0]
    table = torch.randn(1 + 16, 3)
    assert torch.equal(interpolate_pos_encoding(table, 4, 4), table)
    grid = table[1:].reshape(1, 4, 4, 3).permute(0, 3, 1, 2)
    ref = torch.nn.functional.interpolate(grid, size=(3, 6), mode="bicubic", align_corners=False)
    ours = interpolate_pos_encoding(table, 3, 6)
    assert_close(ours[1:], ref.permute(0, 2, 3, 1).reshape(18, 3), EMBED_TOL, "bicubic")
    assert torch.equal(ours[0], table[0])


def test_dropout_only_in_training():
    config = CLIPVisionConfig(hidden_size=16, intermediate_size=16, num_hidden_layers=1, num_attention_heads=2,
                              image_size=8, patch_size=4, attention_dropout=0.5)
    model = CLIPVisionModel(config, seed=0)
    x = torch.randn(2, 3, 8, 8)
    with torch.no_grad():
        assert model.training  # constructed models train, loaded ones evaluate, as in transformers
        assert not torch.equal(model(x).last_hidden_state, model(x).last_hidden_state)
        model.eval()
        assert torch.equal(model(x).last_hidden_state, model(x).last_hidden_state)


def test_compiles_exports_and_trains():
    """fullgraph torch.compile and torch.export (the pooling gather and the checks trace), and gradients flow."""
    folder = shared_path("fixtures", "hf-tiny")
    exp, x = _inputs(folder)
    model = CLIPModel.from_pretrained(folder)
    args = (x["input_ids"], x["pixel_values"], x["attention_mask"])
    with torch.no_grad():
        compiled = torch.compile(model, backend="eager", fullgraph=True)(*args)
        exported = torch.export.export(model, args).module()(*args)
    for out in (compiled, exported):
        assert_close(out.text_embeds, exp["pt_text_embeds"], EMBED_TOL, "text_embeds")
        assert_close(out.logits_per_image, exp["pt_logits_per_image"], STATE_TOL, "logits_per_image")
    model.train()
    model(*args, return_loss=True).loss.backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())


# ============================================================================================ construction, state
@pytest.mark.parametrize("arch", sorted(OURS))
def test_state_dict_keys_are_the_canonical_names(arch):
    config = CLIPConfig.preset("tiny")
    if arch.startswith("text"):
        config = config.text_config
    elif arch.startswith("vision"):
        config = config.vision_config
    model = OURS[arch](config, seed=3)
    table = param_table(config, arch)
    state = model.state_dict()
    assert sorted(state) == sorted(table)
    assert all(tuple(state[k].shape) == spec.shape for k, spec in table.items())
    reference = model.random_state(config, 3)
    for name, value in model.export_state().items():
        assert value.dtype == np.float32 and np.array_equal(value, reference[name]), name
    assert model.num_parameters() == sum(int(np.prod(s.shape)) for s in table.values())
    assert model.dtype == torch.float32 and model.device.type == "cpu"
    assert model.config is not None and model.config == config


def test_seeds():
    config = CLIPConfig.preset("tiny")
    a, b, c = CLIPModel(config, seed=5), CLIPModel(config, seed=5), CLIPModel(config, seed=6)
    name = "text_model.encoder.layers.0.self_attn.q_proj.weight"
    assert torch.equal(a.state_dict()[name], b.state_dict()[name])
    assert not torch.equal(a.state_dict()[name], c.state_dict()[name])
    torch.manual_seed(0)
    d = CLIPModel(config)
    torch.manual_seed(0)
    e = CLIPModel(config)
    f = CLIPModel(config)
    assert torch.equal(d.state_dict()[name], e.state_dict()[name])
    assert not torch.equal(e.state_dict()[name], f.state_dict()[name])
    assert float(a.logit_scale.detach()) == pytest.approx(config.logit_scale_init_value)


def test_loading_shares_memory_with_the_state():
    config = CLIPConfig.preset("tiny")
    state = CLIPModel.random_state(config, 0)
    model = CLIPModel._from_state(config, state)
    name = "vision_model.embeddings.patch_embedding.weight"
    assert np.shares_memory(model.state_dict()[name].numpy(), state[name])  # no copy when dtypes agree
    assert not any(p.is_meta for p in model.parameters())
    assert not model.training
    half = CLIPModel._from_state(config, state, dtype=torch.bfloat16)
    assert half.state_dict()[name].dtype == torch.bfloat16
    exported = half.export_state()[name]
    assert exported.dtype == np.float32
    assert_close(exported, state[name], 1e-2, "bf16 round trip")
    fp16 = {k: v.astype(np.float16) for k, v in state.items()}
    assert CLIPModel._from_state(config, fp16, dtype="auto").dtype == torch.float16  # transformers' "auto"
    assert CLIPModel._from_state(config, fp16).dtype == torch.float32  # default float32, as transformers


def test_save_and_reload_round_trip(tmp_path):
    folder = shared_path("fixtures", "hf-tiny")
    model = CLIPModel.from_pretrained(folder)
    model.save_pretrained(tmp_path / "out")
    again = CLIPModel.from_pretrained(tmp_path / "out")
    for name, value in model.state_dict().items():
        assert torch.equal(value, again.state_dict()[name]), name


# ============================================================================================ error paths
def test_wrong_config_type():
    with pytest.raises(TypeError, match="CLIPConfig"):
        CLIPModel(CLIPTextConfig())
    with pytest.raises(TypeError, match="CLIPTextConfig"):
        CLIPTextModel(CLIPVisionConfig())
    with pytest.raises(TypeError, match="CLIPVisionConfig"):
        CLIPVisionModelWithProjection(CLIPConfig.preset("tiny"))


def test_bad_inputs_name_the_argument():
    model = CLIPModel(CLIPConfig.preset("tiny"), seed=0).eval()
    ids = torch.randint(0, 100, (2, 8))
    pixels = torch.randn(2, 3, 32, 32)
    cases = [
        (dict(input_ids=ids[0], pixel_values=pixels), "input_ids"),
        (dict(input_ids=torch.full((2, 8), 49408), pixel_values=pixels), "input_ids"),
        (dict(input_ids=-ids - 1, pixel_values=pixels), "input_ids"),
        (dict(input_ids=torch.zeros(2, 78, dtype=torch.long), pixel_values=pixels), "input_ids"),
        (dict(input_ids=ids, pixel_values=pixels, attention_mask=torch.ones(2, 7)), "attention_mask"),
        (dict(input_ids=ids, pixel_values=pixels, position_ids=torch.full((1, 8), 77)), "position_ids"),
        (dict(input_ids=ids, pixel_values=pixels.permute(0, 2, 3, 1)), "pixel_values"),
        (dict(input_ids=ids, pixel_values=torch.randn(2, 3, 40, 40)), "pixel_values"),
        (dict(input_ids=ids, pixel_values=torch.randn(2, 3, 4, 40), interpolate_pos_encoding=True),
         "pixel_values"),
        (dict(input_ids=ids, pixel_values=torch.full((2, 3, 32, 32), float("nan"))), "pixel_values"),
        (dict(input_ids=ids, pixel_values=pixels[:1], return_loss=True), "return_loss"),
        (dict(input_ids=None, pixel_values=pixels), "input_ids"),
        (dict(input_ids=ids, pixel_values=None), "pixel_values"),
    ]
    for kwargs, culprit in cases:
        with pytest.raises(ValueError, match=culprit):
            model(**kwargs)
    classifier = CLIPForImageClassification(CLIPConfig.preset("tiny"), seed=0)
    with pytest.raises(ValueError, match="labels"):
        classifier(pixels, labels=torch.tensor([0.5, 1.0]))


# ============================================================================================ imports
def _imported(code):
    script = code + "; import sys, json; print(json.dumps(sorted(m.split('.')[0] for m in sys.modules)))"
    out = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, check=True)
    return set(json.loads(out.stdout.strip().splitlines()[-1]))


def test_import_clip_pt_imports_neither_tensorflow_nor_jax():
    modules = _imported("import clip_pt; clip_pt.CLIPModel")
    assert "torch" in modules
    assert not modules & {"tensorflow", "jax", "flax", "keras", "tf_keras", "jaxlib"}, modules


def test_import_clip_core_imports_no_framework():
    modules = _imported("import clip_core, clip_core.config, clip_core.weights, clip_core.modeling_utils, "
                        "clip_core.checkpoints, clip_core.outputs")
    assert not modules & {"torch", "tensorflow", "jax", "flax", "keras", "tf_keras", "jaxlib"}, modules
