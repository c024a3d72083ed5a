"""Issue 15, PyTorch models: transformers 4.57's model API on triclip's classes, each item against transformers live
(same weights and inputs: the same outputs, attributes, files or exception types)."""

from __future__ import annotations

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from clip_core.config import CLIPConfig, CLIPVisionConfig  # noqa: E402
from clip_pt import (CLIPForImageClassification, CLIPModel, CLIPTextModel,  # noqa: E402
                     CLIPVisionModel, CLIPVisionModelWithProjection)

CONFIG = dict(
    projection_dim=8,
    text_config=dict(vocab_size=50, hidden_size=16, intermediate_size=32, num_hidden_layers=2, num_attention_heads=2,
                     max_position_embeddings=7, bos_token_id=48, eos_token_id=49, pad_token_id=0),
    vision_config=dict(hidden_size=16, intermediate_size=32, num_hidden_layers=2, num_attention_heads=2,
                       image_size=16, patch_size=8),
)
IDS = torch.tensor([[48, 5, 6, 49, 0], [48, 7, 49, 0, 0]])
RIGHT = (torch.arange(5) < torch.tensor([[4], [3]])).long()
LEFT_IDS = torch.tensor([[48, 5, 6, 49, 0], [0, 0, 48, 7, 49]])
LEFT = torch.tensor([[1, 1, 1, 1, 0], [0, 0, 1, 1, 1]])
PIXELS = torch.from_numpy(np.random.default_rng(0).standard_normal((2, 3, 16, 16)).astype(np.float32))


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """A triclip CLIPModel saved to a folder, and transformers' CLIPModel loaded from it."""
    folder = tmp_path_factory.mktemp("clip")
    ours = CLIPModel(CLIPConfig(**CONFIG), seed=0).eval()
    ours.save_pretrained(folder)
    return folder, ours, transformers.CLIPModel.from_pretrained(folder).eval()


def test_class_attributes_match_transformers():
    for name in ("CLIPModel", "CLIPTextModel", "CLIPVisionModel", "CLIPVisionModelWithProjection",
                 "CLIPForImageClassification"):
        ours, theirs = getattr(__import__("clip_pt"), name), getattr(transformers, name)
        assert ours.main_input_name == theirs.main_input_name, name
        assert ours.base_model_prefix == theirs.base_model_prefix, name
        assert ours.can_generate() == theirs.can_generate(), name
        assert ours.supports_gradient_checkpointing == theirs.supports_gradient_checkpointing, name


def test_config_flags_are_honoured(saved):
    _, ours, theirs = saved
    for model in (ours, theirs):
        model.config.output_hidden_states, model.config.return_dict = True, False
    try:
        with torch.no_grad():
            a = ours(input_ids=IDS, pixel_values=PIXELS, attention_mask=RIGHT)
            b = theirs(input_ids=IDS, pixel_values=PIXELS, attention_mask=RIGHT)
    finally:
        for model in (ours, theirs):
            model.config.output_hidden_states, model.config.return_dict = False, True
    assert isinstance(a, tuple) and isinstance(b, tuple) and len(a) == len(b)
    assert len(a[4][2]) == len(b[4][2]) == 3  # text hidden states: embeddings + 2 layers
    torch.testing.assert_close(a[4][2][-1], b[4][2][-1], atol=1e-5, rtol=0)


@pytest.mark.parametrize("dtype, atol", [(torch.float32, 1e-5), (torch.bfloat16, 3e-2), (torch.float16, 3e-3)])
@pytest.mark.parametrize("padding", ["right", "left"])
def test_eager_equals_sdpa(saved, dtype, atol, padding):
    """transformers' eager-vs-SDPA check, on ours and against transformers' own eager model."""
    folder, _, _ = saved
    ids, mask = (IDS, RIGHT) if padding == "right" else (LEFT_IDS, LEFT)
    outs = {}
    for impl in ("eager", "sdpa"):
        model = CLIPModel.from_pretrained(folder, dtype=dtype, attn_implementation=impl)
        assert model.config._attn_implementation == impl
        with torch.no_grad():
            outs[impl] = model(input_ids=ids, pixel_values=PIXELS.to(dtype), attention_mask=mask)
    theirs = transformers.CLIPModel.from_pretrained(folder, dtype=dtype, attn_implementation="eager").eval()
    with torch.no_grad():
        ref = theirs(input_ids=ids, pixel_values=PIXELS.to(dtype), attention_mask=mask)
    for key in ("text_embeds", "image_embeds"):
        torch.testing.assert_close(outs["eager"][key].float(), outs["sdpa"][key].float(), atol=atol, rtol=0)
        torch.testing.assert_close(outs["eager"][key].float(), ref[key].float(), atol=atol, rtol=0)


def test_unknown_attention_is_a_value_error(saved):
    folder, _, _ = saved
    for cls in (CLIPModel, transformers.CLIPModel):
        with pytest.raises(ValueError, match="attn_implementation"):
            cls.from_pretrained(folder, attn_implementation="no-such-attention")


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_save_keeps_dtype_and_auto_restores_it(tmp_path, saved, dtype):
    folder, _, _ = saved
    ours = CLIPModel.from_pretrained(folder).to(dtype)
    theirs = transformers.CLIPModel.from_pretrained(folder).to(dtype)
    ours.save_pretrained(tmp_path / "ours")
    theirs.save_pretrained(tmp_path / "theirs")
    for name in ("ours", "theirs"):
        assert json.loads((tmp_path / name / "config.json").read_text())["dtype"] == str(dtype).split(".")[1]
    size = (tmp_path / "ours" / "model.safetensors").stat().st_size
    assert size < 0.6 * (folder / "model.safetensors").stat().st_size
    assert CLIPModel.from_pretrained(tmp_path / "ours", dtype="auto").dtype == dtype
    assert CLIPModel.from_pretrained(tmp_path / "theirs", torch_dtype="auto").dtype == dtype
    assert transformers.CLIPModel.from_pretrained(tmp_path / "ours", dtype="auto").dtype == dtype
    assert CLIPModel.from_pretrained(tmp_path / "ours").dtype == torch.float32  # as transformers 4.57's default


def test_loading_kwargs(saved):
    folder, ours, theirs = saved
    a, info = CLIPModel.from_pretrained(folder, output_loading_info=True, low_cpu_mem_usage=True, device_map="cpu")
    b, their_info = transformers.CLIPModel.from_pretrained(folder, output_loading_info=True, low_cpu_mem_usage=True,
                                                           device_map="cpu")
    assert sorted(info) == sorted(their_info) and all(not v for v in info.values())
    assert a.device == b.device == torch.device("cpu")
    with torch.no_grad():
        torch.testing.assert_close(a(input_ids=IDS, pixel_values=PIXELS).logits_per_image,
                                   b(input_ids=IDS, pixel_values=PIXELS).logits_per_image, atol=1e-4, rtol=0)
    # from a state dict alone
    c = CLIPModel.from_pretrained(None, config=ours.config, state_dict=theirs.state_dict())
    with torch.no_grad():
        torch.testing.assert_close(c(input_ids=IDS, pixel_values=PIXELS).logits_per_image,
                                   b(input_ids=IDS, pixel_values=PIXELS).logits_per_image, atol=1e-4, rtol=0)


def test_config_overrides(saved):
    folder, _, _ = saved
    labels = {0: "cat", 1: "dog", 2: "bird", 3: "fish"}
    ours = CLIPForImageClassification.from_pretrained(folder, num_labels=4, id2label=labels)
    theirs = transformers.CLIPForImageClassification.from_pretrained(folder, num_labels=4, id2label=labels)
    assert ours.classifier.weight.shape == theirs.classifier.weight.shape == (4, 16)
    assert ours.config.id2label == theirs.config.id2label
    a = CLIPModel.from_pretrained(folder, output_hidden_states=True)
    assert a.config.output_hidden_states is True
    assert a(input_ids=IDS, pixel_values=PIXELS).vision_model_output.hidden_states is not None


def test_input_embeddings_and_resize():
    text_config = CLIPConfig(**CONFIG).text_config
    ours = CLIPTextModel(text_config, seed=0)
    theirs = transformers.CLIPTextModel(transformers.CLIPTextConfig(**CONFIG["text_config"]))
    assert type(ours.get_input_embeddings()) is type(theirs.get_input_embeddings())
    assert ours.get_input_embeddings().weight.shape == theirs.get_input_embeddings().weight.shape
    old = ours.get_input_embeddings().weight.detach().clone()
    for model in (ours, theirs):
        table = model.resize_token_embeddings(61, pad_to_multiple_of=8)
        assert table.weight.shape == (64, 16) and model.config.vocab_size == 64
    torch.testing.assert_close(ours.get_input_embeddings().weight[:50], old)
    assert ours(input_ids=torch.tensor([[48, 63, 49]])).pooler_output.shape == (1, 16)
    vision = CLIPVisionModel(CLIPConfig(**CONFIG).vision_config, seed=0)
    their_vision = transformers.CLIPVisionModel(transformers.CLIPVisionConfig(**CONFIG["vision_config"]))
    assert type(vision.get_input_embeddings()) is type(their_vision.get_input_embeddings()) is torch.nn.Conv2d
    for model in (CLIPModel(CLIPConfig(**CONFIG)), transformers.CLIPModel(transformers.CLIPConfig(**CONFIG))):
        with pytest.raises(NotImplementedError):
            model.get_input_embeddings()
    new = torch.nn.Embedding(50, 16)
    ours.set_input_embeddings(new)
    assert ours.get_input_embeddings() is new and ours.config.vocab_size == 50


def test_num_parameters_matches_transformers(saved):
    _, ours, theirs = saved
    assert ours.num_parameters() == theirs.num_parameters()
    assert ours.num_parameters(exclude_embeddings=True) == theirs.num_parameters(exclude_embeddings=True)
    vision = CLIPVisionModelWithProjection(CLIPVisionConfig(**CONFIG["vision_config"], projection_dim=8))
    assert vision.num_parameters() == transformers.CLIPVisionModelWithProjection(
        transformers.CLIPVisionConfig(**CONFIG["vision_config"], projection_dim=8)).num_parameters()


@pytest.mark.parametrize("num_labels, labels", [
    (1, torch.tensor([0.5, -1.0])),                       # regression
    (3, torch.tensor([[0.0, 1.0, 1.0], [1.0, 0.0, 0.0]])),  # multi-label: float labels
    (3, torch.tensor([2, 0])),                            # single-label: integer labels
])
def test_problem_type_losses(tmp_path, num_labels, labels):
    config = CLIPConfig(**CONFIG)
    config.num_labels = num_labels
    ours = CLIPForImageClassification(config, seed=0)
    ours.save_pretrained(tmp_path)
    theirs = transformers.CLIPForImageClassification.from_pretrained(tmp_path)
    a, b = ours(PIXELS, labels=labels), theirs(PIXELS, labels=labels)
    torch.testing.assert_close(a.loss, b.loss, atol=1e-5, rtol=0)
    assert ours.config.problem_type == theirs.config.problem_type


def test_numpy_and_list_inputs(saved):
    _, ours, _ = saved
    with torch.no_grad():
        want = ours(input_ids=IDS, pixel_values=PIXELS, attention_mask=RIGHT).logits_per_image
        got = ours(input_ids=IDS.numpy().astype(np.uint8), pixel_values=PIXELS.numpy(),
                   attention_mask=RIGHT.tolist()).logits_per_image
    torch.testing.assert_close(got, want)
    with pytest.raises(TypeError, match="input_ids"):
        ours(input_ids="a cat", pixel_values=PIXELS)


def test_construction_under_meta_device():
    with torch.device("meta"):
        ours = CLIPModel(CLIPConfig(**CONFIG))
        theirs = transformers.CLIPModel(transformers.CLIPConfig(**CONFIG))
    assert ours.device.type == next(theirs.parameters()).device.type == "meta"
    assert ours.num_parameters() == theirs.num_parameters()


def _labels(model):
    config = model.config
    return config._attn_implementation, {key: getattr(config, key)._attn_implementation
                                         for key in ("text_config", "vision_config") if hasattr(config, key)}


def _pair(name):
    """A fresh (ours, transformers') config pair for the class ``name``."""
    ours, theirs = CLIPConfig(**CONFIG), transformers.CLIPConfig(**CONFIG)
    if name.startswith("CLIPTextModel"):
        return ours.text_config, theirs.text_config
    if name.startswith("CLIPVisionModel"):
        return ours.vision_config, theirs.vision_config
    return ours, theirs


@pytest.mark.parametrize("name", ["CLIPModel", "CLIPTextModel", "CLIPVisionModel", "CLIPForImageClassification"])
def test_attention_asked_by_the_config(name):
    """``config._attn_implementation`` (a name, a dict per sub-config, or a tower config's) chooses the attention of
    a new model, and ``{"": ...}`` labels a composite model's own config only: transformers' labels, and our layers
    run what the labels say."""
    ours_cls, theirs_cls = getattr(__import__("clip_pt"), name), getattr(transformers, name)
    asks = ["eager", {"": "eager", "text_config": "eager", "vision_config": "sdpa"}, "tower"]
    for ask in asks:
        got = []
        for cls, config in zip((ours_cls, theirs_cls), _pair(name)):
            if ask == "tower":
                if not hasattr(config, "text_config"):
                    continue
                config.text_config._attn_implementation = "eager"
            elif isinstance(ask, dict) and not hasattr(config, "text_config"):
                config._attn_implementation = {"": "eager"}
            else:
                config._attn_implementation = ask
            model = cls(config)
            got.append(_labels(model))
            model.set_attn_implementation({"": "sdpa"})
            got.append(_labels(model))
            if cls is ours_cls:
                for tower in ("text_model", "vision_model"):
                    if hasattr(model, tower):
                        want = model.config.get_text_config() if tower == "text_model" else \
                            getattr(model.config, "vision_config", model.config)
                        want = want._attn_implementation if hasattr(model.config, "text_config") else \
                            model.config._attn_implementation
                        assert {m.attn_implementation for m in getattr(model, tower).modules()
                                if hasattr(m, "attn_implementation")} == {want}, (ask, tower)
        assert not got or got[:2] == got[2:], (ask, got)
    model = ours_cls(_pair(name)[0])
    with pytest.raises(ValueError, match='Specified `attn_implementation="foo"` is not supported'):
        model.set_attn_implementation("foo")


@pytest.mark.parametrize("name", ["CLIPModel", "CLIPTextModel", "CLIPVisionModel"])
def test_gradient_checkpointing_asked_by_the_config(name):
    got = []
    for cls, config in zip((getattr(__import__("clip_pt"), name), getattr(transformers, name)), _pair(name)):
        config.gradient_checkpointing = True
        model = cls(config)
        got.append((model.is_gradient_checkpointing, hasattr(model.config, "gradient_checkpointing"),
                    "gradient_checkpointing" in model.config.to_dict()))
    assert got[0] == got[1] == (True, False, False)


def test_resize_records_vocab_size_and_checks_the_multiple():
    ours, theirs = (cls(config) for cls, config in zip((CLIPTextModel, transformers.CLIPTextModel),
                                                       _pair("CLIPTextModel")))
    for model in (ours, theirs):
        model.resize_token_embeddings(61, pad_to_multiple_of=8)
    assert ours.vocab_size == theirs.vocab_size == 64
    for model in (ours, theirs):
        with pytest.raises(ValueError, match="not and integer"):
            model.resize_token_embeddings(50, pad_to_multiple_of=1.3)


def test_config_class_is_a_class_attribute():
    for name in ("CLIPModel", "CLIPTextModel", "CLIPTextModelWithProjection", "CLIPVisionModel",
                 "CLIPVisionModelWithProjection", "CLIPForImageClassification"):
        ours, theirs = getattr(__import__("clip_pt"), name), getattr(transformers, name)
        assert ours.config_class.model_type == theirs.config_class.model_type, name
        assert ours.config_class.__name__ == theirs.config_class.__name__, name
