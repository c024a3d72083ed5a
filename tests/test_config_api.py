"""The transformers config API beyond construction, checked against transformers 4.57.6 live.

Attributes set after construction, num_labels / id2label, sub_configs, get_text_config, subfolder loading, edits of
coupled fields one at a time, and transformers' own config objects accepted by our models.
"""

from __future__ import annotations

import json

import pytest
import transformers

from clip_core.config import CLIPConfig, CLIPTextConfig, CLIPVisionConfig

TEXT = dict(vocab_size=64, hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2,
            max_position_embeddings=8, bos_token_id=62, eos_token_id=63, pad_token_id=0)
VISION = dict(hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2, image_size=16,
              patch_size=8)
PAIRS = [(CLIPTextConfig, transformers.CLIPTextConfig), (CLIPVisionConfig, transformers.CLIPVisionConfig),
         (CLIPConfig, transformers.CLIPConfig)]
# transformers' to_dict also lists generation arguments and bookkeeping that mean nothing to CLIP
NOT_OURS = {"transformers_version", "_name_or_path", "max_length", "min_length", "do_sample", "early_stopping",
            "num_beams", "temperature", "top_k", "top_p", "typical_p", "repetition_penalty", "length_penalty",
            "no_repeat_ngram_size", "encoder_no_repeat_ngram_size", "bad_words_ids", "num_return_sequences",
            "output_scores", "return_dict_in_generate", "forced_bos_token_id", "forced_eos_token_id",
            "remove_invalid_values", "exponential_decay_length_penalty", "suppress_tokens", "begin_suppress_tokens",
            "num_beam_groups", "diversity_penalty"}


def _edit(config):
    config.num_labels = 3
    config.problem_type = "multi_label_classification"
    config.finetuning_task = "flowers"
    return config


def _tiny(cls):
    return cls(text_config=TEXT, vision_config=VISION, projection_dim=8) if cls.model_type == "clip" else \
        cls(**(TEXT if cls.model_type == "clip_text_model" else VISION))


@pytest.mark.parametrize("ours_cls, theirs_cls", PAIRS)
def test_to_dict_has_transformers_attributes_and_values(ours_cls, theirs_cls):
    ours, theirs = ours_cls(), theirs_cls()
    expected = {k: v for k, v in theirs.to_dict().items() if k not in NOT_OURS}
    got = ours.to_dict()
    if ours_cls is CLIPConfig:
        for key in ("text_config", "vision_config"):
            expected[key] = {k: v for k, v in expected[key].items() if k not in NOT_OURS}
    assert got == expected
    assert ours.num_labels == theirs.num_labels == 2 and ours.is_encoder_decoder is theirs.is_encoder_decoder
    assert ours.use_return_dict is theirs.use_return_dict is True


@pytest.mark.parametrize("ours_cls, theirs_cls", PAIRS)
def test_attributes_set_after_construction_are_saved(tmp_path, ours_cls, theirs_cls):
    ours, theirs = _edit(_tiny(ours_cls)), _edit(_tiny(theirs_cls))
    assert ours.id2label == theirs.id2label == {0: "LABEL_0", 1: "LABEL_1", 2: "LABEL_2"}
    assert ours.label2id == theirs.label2id
    ours.my_note = "kept"  # an attribute of one's own, as transformers keeps it
    theirs.my_note = "kept"
    ours.save_pretrained(tmp_path / "ours")
    theirs.save_pretrained(tmp_path / "theirs")
    saved_ours = json.loads((tmp_path / "ours" / "config.json").read_text())
    saved_theirs = json.loads((tmp_path / "theirs" / "config.json").read_text())
    for key in ("id2label", "label2id", "problem_type", "finetuning_task", "my_note"):
        assert saved_ours[key] == saved_theirs[key], key
    for folder in ("ours", "theirs"):  # each library reads both files the same way
        a, b = ours_cls.from_pretrained(tmp_path / folder), theirs_cls.from_pretrained(tmp_path / folder)
        assert a.num_labels == b.num_labels == 3 and a.id2label == b.id2label
        assert a.problem_type == b.problem_type == "multi_label_classification"
        assert a.my_note == b.my_note == "kept"
    assert ours_cls.from_pretrained(tmp_path / "ours") == ours


def test_num_labels_and_id2label_follow_transformers():
    for kwargs in (dict(num_labels=5), dict(id2label={"0": "cat", "1": "dog"}), dict(id2label={0: "a"}, num_labels=1),
                   dict(label2id={"x": 0}), {}):
        ours, theirs = CLIPConfig(**kwargs), transformers.CLIPConfig(**kwargs)
        assert (ours.num_labels, ours.id2label, ours.label2id) == \
            (theirs.num_labels, theirs.id2label, theirs.label2id), kwargs
    ours, theirs = CLIPConfig(num_labels=3), transformers.CLIPConfig(num_labels=3)
    ours.id2label = {"0": "a", "1": "b"}  # JSON-style keys become ints, as transformers' loader makes them
    theirs.id2label = {0: "a", 1: "b"}
    assert ours.num_labels == theirs.num_labels == 2
    ours.num_labels = theirs.num_labels = 2  # same length: the names stay
    assert ours.id2label == theirs.id2label == {0: "a", 1: "b"}


def test_sub_configs_and_get_text_config():
    ours, theirs = CLIPConfig(), transformers.CLIPConfig()
    assert sorted(ours.sub_configs) == sorted(theirs.sub_configs)
    assert {k: v.__name__ for k, v in ours.sub_configs.items()} == {k: v.__name__ for k, v in theirs.sub_configs.items()}
    for kwargs in ({}, dict(decoder=True), dict(encoder=True), dict(decoder=True, encoder=True)):
        a, b = ours.get_text_config(**kwargs), theirs.get_text_config(**kwargs)
        assert type(a).__name__ == type(b).__name__, kwargs
    assert ours.get_text_config() is ours.text_config
    for ours_cls, theirs_cls in PAIRS[:2]:
        assert ours_cls().get_text_config().model_type == theirs_cls().get_text_config().model_type
        assert ours_cls.sub_configs == {} and theirs_cls.sub_configs == {}
        assert ours_cls.base_config_key == theirs_cls.base_config_key


def test_sub_config_assignment_accepts_a_dict_or_a_config():
    ours = CLIPConfig()
    ours.text_config = dict(TEXT)
    assert isinstance(ours.text_config, CLIPTextConfig) and ours.text_config.vocab_size == 64
    ours.vision_config = CLIPVisionConfig(**VISION)
    assert ours.to_dict()["vision_config"]["image_size"] == 16
    with pytest.raises(TypeError, match="vision_config"):
        ours.vision_config = 3


def test_from_pretrained_subfolder(tmp_path):
    _tiny(transformers.CLIPConfig).save_pretrained(tmp_path / "repo" / "model")
    for cls, theirs_cls in PAIRS:
        a = cls.from_pretrained(tmp_path / "repo", subfolder="model")
        b = theirs_cls.from_pretrained(tmp_path / "repo", subfolder="model")
        assert a.to_dict()["model_type"] == b.model_type
        assert a.to_dict().get("hidden_size", 16) == getattr(b, "hidden_size", 16) == 16
    # (transformers 4.57.6 returns a default CLIPConfig here without a word; a missing file is an error for us)
    with pytest.raises(FileNotFoundError, match="config.json not found in .*nowhere"):
        CLIPConfig.from_pretrained(tmp_path / "repo", subfolder="nowhere")


def test_from_pretrained_and_from_dict_kwargs_as_transformers(tmp_path):
    _tiny(CLIPConfig).save_pretrained(tmp_path)
    for cls, theirs_cls in PAIRS:
        a, unused_a = cls.from_pretrained(tmp_path, projection_dim=4, foo=1, return_unused_kwargs=True)
        b, unused_b = theirs_cls.from_pretrained(tmp_path, projection_dim=4, foo=1, return_unused_kwargs=True)
        assert a.projection_dim == b.projection_dim == 4 and unused_a == unused_b == {"foo": 1}
        assert not hasattr(a, "foo") and not hasattr(b, "foo")
    a = CLIPConfig.from_dict({"projection_dim": 4}, num_labels=4)
    b = transformers.CLIPConfig.from_dict({"projection_dim": 4}, num_labels=4)
    assert a.num_labels == b.num_labels == 4


def test_coupled_fields_edited_one_at_a_time():
    ours, theirs = CLIPTextConfig(), transformers.CLIPTextConfig()
    for config in (ours, theirs):  # 512/8 -> 30/8 (invalid in between) -> 30/5
        config.hidden_size = 30
        config.num_attention_heads = 5
    assert ours.hidden_size == theirs.hidden_size == 30
    ours.check_buildable(memory=False)
    vision = CLIPVisionConfig()
    vision.patch_size = 7
    vision.image_size = 28
    vision.check_buildable(memory=False)
    assert vision.num_patches == 16


@pytest.mark.parametrize("ours_cls, theirs_cls", PAIRS)
def test_transformers_config_objects_convert(ours_cls, theirs_cls):
    theirs = _edit(_tiny(theirs_cls))
    ours = ours_cls.coerce(theirs)
    assert type(ours) is ours_cls
    assert ours.num_labels == 3 and ours.problem_type == theirs.problem_type
    expected = _edit(_tiny(ours_cls))
    assert ours == expected
    assert ours_cls.coerce(expected) is expected
    assert ours_cls.coerce(theirs.to_dict()) == expected


def test_transformers_config_with_dtype_and_wrong_kind():
    theirs = transformers.CLIPTextConfig(**TEXT, dtype="bfloat16")
    assert CLIPTextConfig.coerce(theirs).dtype == "bfloat16"
    with pytest.raises(TypeError, match="clip_vision_model"):
        CLIPTextConfig.coerce(transformers.CLIPVisionConfig())
    with pytest.raises(TypeError, match="CLIPTextConfig"):
        CLIPTextConfig.coerce(CLIPConfig())
    with pytest.raises(TypeError, match="BertConfig"):
        CLIPConfig.coerce(transformers.BertConfig())
    ours = CLIPConfig(text_config=transformers.CLIPTextConfig(**TEXT), vision_config=transformers.CLIPVisionConfig())
    assert ours.text_config.vocab_size == 64 and isinstance(ours.vision_config, CLIPVisionConfig)


# ---------------------------------------------------------------------------------------------- at model build
def test_models_accept_transformers_configs_and_check_coupled_fields_at_build():
    torch = pytest.importorskip("torch")
    from clip_pt import CLIPModel, CLIPTextModel

    theirs = _tiny(transformers.CLIPConfig)
    model = CLIPModel(theirs, seed=0)
    assert type(model.config) is CLIPConfig and model.config == CLIPConfig.coerce(theirs)
    assert model.text_model.embeddings.token_embedding.weight.shape == torch.Size([64, 16])
    with pytest.raises(TypeError, match=r"CLIPModel: expected a CLIPConfig .*got a .*CLIPTextConfig"):
        CLIPModel(transformers.CLIPTextConfig())
    # heads that do not divide the width: both libraries accept the config and refuse the model, with ValueError
    ours, hf = CLIPTextConfig(**TEXT), transformers.CLIPTextConfig(**TEXT)
    ours.hidden_size = hf.hidden_size = 15
    with pytest.raises(ValueError):
        transformers.CLIPTextModel(hf)
    with pytest.raises(ValueError, match=r"hidden_size \(15\) must be divisible by num_attention_heads \(2\)"):
        CLIPTextModel(ours)
    ours.num_attention_heads = 3  # the second edit makes it whole
    assert CLIPTextModel(ours, seed=0).config.hidden_size == 15


def test_absurd_config_fails_at_model_build_before_allocating():
    pytest.importorskip("torch")
    from clip_pt import CLIPVisionModel

    config = CLIPVisionConfig(hidden_size=2**30, num_attention_heads=1)
    with pytest.raises(ValueError, match=r"'vision' model .* would need [\d,.]+ TB .* physical memory"):
        CLIPVisionModel(config)


def test_num_labels_set_after_construction_survives_save_and_reload(tmp_path):
    pytest.importorskip("torch")
    from clip_pt import CLIPForImageClassification

    config = _tiny(CLIPConfig)
    config.num_labels = 3
    config.id2label = {0: "cat", 1: "dog", 2: "bird"}
    config.label2id = {"cat": 0, "dog": 1, "bird": 2}
    config.problem_type = "single_label_classification"
    model = CLIPForImageClassification(config, seed=1)
    model.save_pretrained(tmp_path)
    again = CLIPForImageClassification.from_pretrained(tmp_path)
    theirs = transformers.CLIPForImageClassification.from_pretrained(tmp_path)
    assert again.classifier.weight.shape == theirs.classifier.weight.shape == (3, 16)
    assert again.config.id2label == theirs.config.id2label == {0: "cat", 1: "dog", 2: "bird"}
    assert again.config.problem_type == theirs.config.problem_type == "single_label_classification"


@pytest.mark.slow
def test_tf_and_flax_models_accept_transformers_configs():
    pytest.importorskip("tensorflow")
    pytest.importorskip("flax")
    from clip_flax import FlaxCLIPVisionModel
    from clip_tf import TFCLIPTextModel

    assert type(TFCLIPTextModel(transformers.CLIPTextConfig(**TEXT), seed=0).config) is CLIPTextConfig
    assert type(FlaxCLIPVisionModel(transformers.CLIPVisionConfig(**VISION), seed=0).config) is CLIPVisionConfig
    with pytest.raises(TypeError, match="TFCLIPTextModel: expected a CLIPTextConfig"):
        TFCLIPTextModel(transformers.CLIPVisionConfig())
