"""Config values that would break a model silently or crash it late are refused when set, naming the field.

Also: config.json files that Python's json module reads badly (deep nesting, NaN / Infinity, bytes that are not
UTF-8, huge files) give one ValueError naming the file, and sizes that cannot fit in memory fail at model build
with the size they would need.
"""

from __future__ import annotations

import json
import math

import pytest
import transformers

from clip_core.config import CLIPConfig, CLIPTextConfig, CLIPVisionConfig
from clip_core.config_checks import estimated_parameter_bytes, physical_memory_bytes
from clip_core.jsonio import JSONFileError, read_json

BAD_TOWER_VALUES = [
    ("layer_norm_eps", math.inf), ("layer_norm_eps", math.nan), ("layer_norm_eps", 1e30), ("layer_norm_eps", -1e-5),
    ("layer_norm_eps", 1e-50), ("layer_norm_eps", "1e-5"), ("hidden_act", None), ("hidden_act", "tanh"),
    ("attention_dropout", -0.1), ("attention_dropout", 1.5), ("attention_dropout", math.nan),
    ("initializer_range", "0.02"), ("initializer_range", math.inf), ("initializer_range", -1.0),
    ("initializer_factor", None), ("hidden_size", 0), ("hidden_size", 64.0), ("hidden_size", True),
    ("num_hidden_layers", -2), ("projection_dim", "512"), ("num_labels", -1), ("num_labels", 2.5),
    ("id2label", "cat,dog"), ("id2label", {"first": "cat"}), ("id2label", {"-1": "cat"}), ("id2label", {0: 5}),
    ("label2id", "cat"), ("problem_type", "ranking"), ("return_dict", "yes"), ("output_hidden_states", 1),
    ("bos_token_id", "<s>"), ("pad_token_id", -1), ("bos_token_id", 1.0), ("architectures", "CLIPModel"),
    ("dtype", 3),
]


@pytest.mark.parametrize("field, value", BAD_TOWER_VALUES)
@pytest.mark.parametrize("cls", [CLIPTextConfig, CLIPVisionConfig])
def test_bad_values_are_refused_at_construction_and_when_set(cls, field, value):
    with pytest.raises(ValueError, match=rf"{cls.__name__}\.{field} must (be|map)"):
        cls(**{field: value})
    config = cls()
    with pytest.raises(ValueError, match=rf"{cls.__name__}\.{field} must (be|map)"):
        setattr(config, field, value)
    assert config == cls()  # a refused value leaves the config as it was


@pytest.mark.parametrize("value", [None, "</s>", -1, 2.0, [49407]])
def test_text_eos_token_id_must_be_a_token_id(value):
    with pytest.raises(ValueError, match=r"CLIPTextConfig\.eos_token_id must be a token id"):
        CLIPTextConfig(eos_token_id=value)


@pytest.mark.parametrize("field, value", [("projection_dim", 0), ("logit_scale_init_value", math.inf),
                                          ("logit_scale_init_value", 1e4), ("logit_scale_init_value", "2.6"),
                                          ("initializer_factor", -1)])
def test_bad_full_config_values(field, value):
    with pytest.raises(ValueError, match=rf"CLIPConfig\.{field} must be"):
        CLIPConfig(**{field: value})
    with pytest.raises(ValueError, match=r"CLIPConfig\.text_config\b|CLIPTextConfig\.hidden_act"):
        CLIPConfig(text_config={"hidden_act": None})


def test_transformers_accepts_what_we_refuse_at_the_same_point():
    """The same wrong id2label / problem_type that transformers refuses raise the same type here."""
    for kwargs in (dict(id2label="cat,dog"), dict(problem_type="ranking")):
        with pytest.raises(ValueError):
            transformers.CLIPConfig(**kwargs)
        with pytest.raises(ValueError):
            CLIPConfig(**kwargs)


def test_good_values_pass_unchanged():
    config = CLIPTextConfig(layer_norm_eps=1e-12, attention_dropout=1.0, initializer_range=0, pad_token_id=None,
                            id2label={"0": "cat", "1": "dog"}, dtype="bfloat16", architectures=["CLIPTextModel"])
    assert config.id2label == {0: "cat", 1: "dog"} and config.layer_norm_eps == 1e-12
    config.layer_norm_eps = 1e-6
    config.hidden_act = "gelu"
    assert (config.layer_norm_eps, config.hidden_act) == (1e-6, "gelu")
    import torch

    config.dtype = torch.float16  # a dtype object is stored by its name, JSON-serialisable
    assert config.dtype == "float16" and json.loads(config.to_json_string())["dtype"] == "float16"


# ---------------------------------------------------------------------------------------------- config.json files
def _write(folder, data: str | bytes):
    path = folder / "config.json"
    path.write_bytes(data if isinstance(data, bytes) else data.encode())
    return path


@pytest.mark.parametrize("literal", ["Infinity", "-Infinity", "NaN"])
def test_non_finite_numbers_in_config_json_name_field_and_file(tmp_path, literal):
    text = json.dumps(CLIPConfig().to_dict()).replace('"layer_norm_eps": 1e-05', f'"layer_norm_eps": {literal}', 1)
    assert literal in text
    path = _write(tmp_path, text)
    with pytest.raises(ValueError, match=rf"{path}.*text_config\.layer_norm_eps is {literal}"):
        CLIPConfig.from_pretrained(tmp_path)
    with pytest.raises(ValueError, match=rf"{path}.*layer_norm_eps is {literal}"):
        CLIPTextConfig.from_pretrained(tmp_path)


def test_bad_values_in_config_json_name_field_and_file(tmp_path):
    path = _write(tmp_path, json.dumps({"model_type": "clip", "text_config": {"eos_token_id": "</s>"}}))
    with pytest.raises(ValueError, match=rf"{path}: CLIPTextConfig\.eos_token_id must be a token id"):
        CLIPConfig.from_pretrained(tmp_path)
    _write(tmp_path, json.dumps({"model_type": "clip_vision_model", "hidden_act": None}))
    with pytest.raises(ValueError, match=rf"{path}: CLIPVisionConfig\.hidden_act must be one of"):
        CLIPVisionConfig.from_pretrained(tmp_path)


def test_deeply_nested_config_json(tmp_path):
    depth = 100_000
    path = _write(tmp_path, '{"model_type": "clip", "extra": ' + "[" * depth + "]" * depth + "}")
    with pytest.raises(RecursionError):  # what Python's json module does with it
        json.loads(path.read_text())
    with pytest.raises(ValueError, match=rf"{path} is nested too deeply"):
        CLIPConfig.from_pretrained(tmp_path)


def test_unreadable_config_json(tmp_path):
    path = _write(tmp_path, b'{"model_type": "clip", "note": "\xff\xfe"}')
    with pytest.raises(ValueError, match=rf"{path} is not UTF-8"):
        CLIPConfig.from_pretrained(tmp_path)
    _write(tmp_path, "[1, 2]")
    with pytest.raises(ValueError, match=rf"{path} must hold a JSON object, found an array"):
        CLIPConfig.from_pretrained(tmp_path)
    _write(tmp_path, '{"model_type": "clip",')
    with pytest.raises(ValueError, match=rf"{path} is not valid JSON"):
        CLIPConfig.from_pretrained(tmp_path)


def test_read_json_caps_size_and_checks_type(tmp_path):
    path = tmp_path / "vocab.json"
    path.write_text(json.dumps({"a": 1, "b": [1.5, 2]}))
    assert read_json(path, "vocab.json") == {"a": 1, "b": [1.5, 2]}
    with pytest.raises(JSONFileError, match=r"vocab\.json is 2\d bytes, more than the 10 bytes"):
        read_json(path, "vocab.json", max_bytes=10)
    with pytest.raises(JSONFileError, match=r"vocab\.json must hold a JSON array, found an object"):
        read_json(path, "vocab.json", expect=list)
    path.write_text('{"a": [1, {"b": NaN}]}')
    with pytest.raises(JSONFileError, match=r"a\[1\]\.b is NaN"):
        read_json(path)
    assert math.isnan(read_json(path, allow_nonfinite=True)["a"][1]["b"])
    with pytest.raises(FileNotFoundError, match="missing.json"):
        read_json(tmp_path / "missing.json")
    assert issubclass(JSONFileError, ValueError)


# ---------------------------------------------------------------------------------------------- memory
def test_parameter_bytes_match_known_counts():
    # OpenAI's ViT-B/32 and ViT-L/14 have 151,277,313 and 427,616,513 parameters
    assert estimated_parameter_bytes(CLIPConfig.preset("ViT-B/32")) == 151_277_313 * 4
    assert estimated_parameter_bytes(CLIPConfig.preset("ViT-L/14"), bytes_per_value=2) == 427_616_513 * 2
    # and transformers' own models of a small odd config, for every architecture
    config = CLIPConfig(projection_dim=6, num_labels=5,
                        text_config=dict(vocab_size=30, hidden_size=8, intermediate_size=12, num_hidden_layers=3,
                                         num_attention_heads=2, max_position_embeddings=5, projection_dim=7),
                        vision_config=dict(hidden_size=10, intermediate_size=14, num_hidden_layers=4,
                                           num_attention_heads=5, image_size=12, patch_size=4, projection_dim=9))
    theirs = transformers.CLIPConfig(**config.to_dict())
    cases = [("clip", transformers.CLIPModel, theirs, config),
             ("image_classification", transformers.CLIPForImageClassification, theirs, config),
             ("text", transformers.CLIPTextModel, theirs.text_config, config.text_config),
             ("text_projection", transformers.CLIPTextModelWithProjection, theirs.text_config, config.text_config),
             ("vision", transformers.CLIPVisionModel, theirs.vision_config, config.vision_config),
             ("vision_projection", transformers.CLIPVisionModelWithProjection, theirs.vision_config,
              config.vision_config)]
    for arch, cls, their_config, our_config in cases:
        count = sum(p.numel() for p in cls(their_config).parameters())
        assert estimated_parameter_bytes(our_config, arch) == 4 * count, arch


def test_absurd_sizes_fail_at_build_with_the_memory_they_need():
    ram = physical_memory_bytes()
    assert ram is not None and ram > 2**28
    config = CLIPConfig(vision_config=dict(hidden_size=10**9, num_attention_heads=1))  # fine to describe
    need = estimated_parameter_bytes(config)
    assert need > 4 * 12 * 4 * 10**18  # 12 layers of 4 (1e9 x 1e9) float32 attention matrices at least
    with pytest.raises(ValueError, match=r"would need [\d,.]+ TB for its float32 parameters .* physical memory"):
        config.check_buildable()
    deep = CLIPTextConfig(num_hidden_layers=10**12)  # the estimate does not build a table of 10**12 layers
    with pytest.raises(ValueError, match="physical memory"):
        deep.check_buildable("text")
    CLIPConfig.preset("tiny").check_buildable()


def test_checkpoint_loading_reads_config_json_safely(tmp_path):
    """load_checkpoint (every backend's from_pretrained) reads config.json through the same safe reader."""
    from clip_core.checkpoints import load_checkpoint
    from tests.conftest import shared_path

    fixture = shared_path("fixtures", "hf-tiny")
    (tmp_path / "model.safetensors").write_bytes((fixture / "model.safetensors").read_bytes())
    good = json.loads((fixture / "config.json").read_text())
    path = tmp_path / "config.json"
    path.write_text(json.dumps(good).replace('"layer_norm_eps": 1e-05', '"layer_norm_eps": NaN', 1))
    with pytest.raises(ValueError, match=rf"{path}: text_config\.layer_norm_eps is NaN"):
        load_checkpoint(tmp_path)
    path.write_text(json.dumps(good)[:-1] + ', "extra": ' + "[" * 10**5 + "]" * 10**5 + "}")
    with pytest.raises(ValueError, match=rf"{path} is nested too deeply"):
        load_checkpoint(tmp_path)
    path.write_text(json.dumps({**good, "vision_config": {**good["vision_config"], "hidden_act": None}}))
    with pytest.raises(ValueError, match=rf"{path}: CLIPVisionConfig\.hidden_act must be one of"):
        load_checkpoint(tmp_path)
    path.write_text(json.dumps(good))
    config, state = load_checkpoint(tmp_path)
    assert config.text_config.eos_token_id == 999 and len(state) > 0
