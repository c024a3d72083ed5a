"""clip_core's configs, parameter table and file helpers, checked against transformers 4.57.6."""

from __future__ import annotations

import json

import numpy as np
import pytest
import transformers

from clip_core.config import PRESETS, CLIPConfig, CLIPTextConfig, CLIPVisionConfig
from clip_core.hub import atomic_directory, resolve_file, write_atomic
from clip_core.modeling_utils import check_text_inputs, check_vision_inputs
from clip_core.weights import (ARCHITECTURES, StateMismatchError, init_state, param_table, tf_name,
                               validate_state)
from tests.conftest import shared_path

TEXT = dict(vocab_size=101, hidden_size=24, intermediate_size=40, num_hidden_layers=2, num_attention_heads=3,
            max_position_embeddings=9, projection_dim=12)
VISION = dict(hidden_size=20, intermediate_size=36, num_hidden_layers=3, num_attention_heads=5, image_size=24,
              patch_size=6, projection_dim=12)

HF_CLASSES = {
    "clip": (transformers.CLIPModel, "clip"),
    "text": (transformers.CLIPTextModel, "text"),
    "text_projection": (transformers.CLIPTextModelWithProjection, "text"),
    "vision": (transformers.CLIPVisionModel, "vision"),
    "vision_projection": (transformers.CLIPVisionModelWithProjection, "vision"),
    "image_classification": (transformers.CLIPForImageClassification, "clip"),
}


def _configs():
    ours = CLIPConfig(text_config=TEXT, vision_config=VISION, projection_dim=12, num_labels=7)
    theirs = transformers.CLIPConfig(text_config=TEXT, vision_config=VISION, projection_dim=12, num_labels=7)
    return ours, theirs


# ------------------------------------------------------------------------------------------------ configs
def test_defaults_equal_transformers():
    for ours, theirs in [(CLIPTextConfig(), transformers.CLIPTextConfig()),
                         (CLIPVisionConfig(), transformers.CLIPVisionConfig())]:
        for key, value in ours.to_dict().items():
            assert getattr(theirs, key) == value, key
    ours, theirs = CLIPConfig(), transformers.CLIPConfig()
    assert (ours.projection_dim, ours.logit_scale_init_value) == (theirs.projection_dim, theirs.logit_scale_init_value)


def test_fixture_config_loads_and_round_trips_through_transformers(tmp_path):
    folder = shared_path("fixtures", "hf-tiny")
    config = CLIPConfig.from_pretrained(folder)
    assert config.text_config.eos_token_id == 999 and config.vision_config.patch_size == 8
    assert config.projection_dim == 32 and config.architectures == ["CLIPModel"]
    config.save_pretrained(tmp_path)
    theirs = transformers.CLIPConfig.from_pretrained(tmp_path)
    assert theirs.text_config.eos_token_id == 999 and theirs.vision_config.hidden_size == 48
    assert theirs.projection_dim == 32
    theirs.save_pretrained(tmp_path / "back")
    assert CLIPConfig.from_pretrained(tmp_path / "back") == config


def test_tower_configs_load_from_a_full_config():
    folder = shared_path("fixtures", "hf-tiny")
    assert CLIPTextConfig.from_pretrained(folder).hidden_size == 64
    assert CLIPVisionConfig.from_pretrained(folder).hidden_size == 48


def test_legacy_config_dict_keys_win(tmp_path):
    data = {"model_type": "clip", "text_config": {"hidden_size": 64}, "text_config_dict": {"hidden_size": 32,
            "num_attention_heads": 4}, "vision_config_dict": {"patch_size": 16}, "projection_dim": 16}
    (tmp_path / "config.json").write_text(json.dumps(data))
    ours = CLIPConfig.from_pretrained(tmp_path)
    theirs = transformers.CLIPConfig.from_pretrained(tmp_path)
    assert ours.text_config.hidden_size == theirs.text_config.hidden_size == 32
    assert ours.vision_config.patch_size == theirs.vision_config.patch_size == 16
    assert "text_config_dict" not in ours.to_dict()


def test_from_text_vision_configs_and_dict_round_trip(tmp_path):
    config = CLIPConfig.from_text_vision_configs(CLIPTextConfig(**TEXT), CLIPVisionConfig(**VISION), projection_dim=12)
    assert config.text_config.num_attention_heads == 3 and config.vision_config.num_attention_heads == 5
    assert CLIPConfig.from_dict(config.to_dict()) == config
    config.to_json_file(tmp_path / "c.json")
    assert CLIPConfig.from_json_file(tmp_path / "c.json") == config
    assert CLIPConfig.from_pretrained(tmp_path / "c.json", projection_dim=8).projection_dim == 8


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_presets_build_valid_tables(name):
    config = CLIPConfig.preset(name)
    table = param_table(config)
    n_params = sum(int(np.prod(s.shape)) for s in table.values())
    theirs = transformers.CLIPConfig(**config.to_dict())
    assert theirs.vision_config.image_size == config.vision_config.image_size
    if name == "ViT-B/32":  # OpenAI's ViT-B/32 has 151,277,313 parameters
        assert n_params == 151_277_313
    if name == "ViT-L/14":  # and ViT-L/14 427,616,513
        assert n_params == 427_616_513


@pytest.mark.parametrize("kwargs, culprit", [
    (dict(hidden_size=0), "hidden_size"),
    (dict(num_hidden_layers=-1), "num_hidden_layers"),
    (dict(vocab_size="big"), "vocab_size"),
    (dict(hidden_act="tanhh"), "hidden_act"),
    (dict(layer_norm_eps=0), "layer_norm_eps"),
])
def test_bad_text_config(kwargs, culprit):
    with pytest.raises(ValueError, match=culprit):
        CLIPTextConfig(**kwargs)


def test_coupled_checks_wait_for_the_model_build():
    # as in transformers, fields that must agree can be set one after the other; a model build checks them
    from clip_pt import CLIPTextModel, CLIPVisionModel

    text = CLIPTextConfig(hidden_size=30, num_attention_heads=4)
    with pytest.raises(ValueError, match="num_attention_heads"):
        CLIPTextModel(text)
    vision = CLIPVisionConfig(image_size=30, patch_size=8)
    with pytest.raises(ValueError, match="patch_size"):
        CLIPVisionModel(vision)


def test_bad_vision_and_full_configs(tmp_path):
    with pytest.raises(TypeError, match="text_config"):
        CLIPConfig(text_config=3)
    with pytest.raises(ValueError, match="unknown preset 'ViT-Z'"):
        CLIPConfig.preset("ViT-Z")
    bad = tmp_path / "config.json"
    bad.write_text("{not json")
    with pytest.raises(ValueError, match="config.json"):
        CLIPConfig.from_pretrained(tmp_path)
    with pytest.raises(FileNotFoundError, match="config.json"):
        CLIPConfig.from_pretrained(tmp_path / "nowhere")


# ------------------------------------------------------------------------------------------------ the table
@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_table_matches_transformers_state_dict(arch):
    ours, theirs = _configs()
    cls, which = HF_CLASSES[arch]
    config = {"clip": theirs, "text": theirs.text_config, "vision": theirs.vision_config}[which]
    reference = {k: tuple(v.shape) for k, v in cls(config).state_dict().items() if not k.endswith("position_ids")}
    table = param_table(ours if which == "clip" else getattr(ours, f"{which}_config"), arch)
    assert {k: s.shape for k, s in table.items()} == reference


def test_init_follows_transformers_scheme():
    ours, theirs = _configs()
    import torch
    torch.manual_seed(0)
    reference = {k: v.numpy() for k, v in transformers.CLIPModel(theirs).state_dict().items()}
    state = init_state(ours, "clip", seed=0)
    for name, value in state.items():
        ref = reference[name]
        if ref.ndim == 0 or np.all(ref == ref.flat[0]):  # constants: norms, biases, logit_scale
            np.testing.assert_allclose(value, ref, rtol=1e-6, err_msg=name)
        else:  # random draws: same distribution (std within sampling error)
            assert abs(value.std() - ref.std()) < 0.25 * ref.std(), name
    assert init_state(ours, seed=3)["text_projection.weight"].tobytes() == \
        init_state(ours, seed=3)["text_projection.weight"].tobytes()


def test_validate_state_names_every_problem():
    ours, _ = _configs()
    table = param_table(ours)
    state = init_state(ours)
    del state["logit_scale"]
    state["text_model.final_layer_norm.weight"] = np.zeros(5, np.float32)
    state["extra.weight"] = np.zeros(1, np.float32)
    with pytest.raises(StateMismatchError) as info:
        validate_state(state, table, where="x.safetensors")
    message = str(info.value)
    assert "logit_scale" in message and "extra.weight" in message and "x.safetensors" in message
    assert "text_model.final_layer_norm.weight: expected (24,), found (5,)" in message
    assert isinstance(info.value, ValueError)


def test_tf_names_match_the_fixture_h5():
    import h5py
    config = CLIPConfig.from_pretrained(shared_path("fixtures", "hf-tiny"))
    with h5py.File(shared_path("fixtures", "hf-tiny", "tf_model.h5"), "r") as handle:
        names = set()
        handle["clip"].visititems(lambda n, o: names.add(n.split("/clip/", 1)[1]) if hasattr(o, "shape") else None)
    assert names == {tf_name(spec) for spec in param_table(config).values()}


# ------------------------------------------------------------------------------------------------ helpers
def test_input_checks_name_the_culprit():
    text, vision = CLIPTextConfig(**TEXT), CLIPVisionConfig(**VISION)
    with pytest.raises(ValueError, match="max_position_embeddings"):
        check_text_inputs(text, (2, 10))
    with pytest.raises(ValueError, match="id 101"):
        check_text_inputs(text, (2, 5), (0, 101))
    with pytest.raises(ValueError, match="interpolate_pos_encoding"):
        check_vision_inputs(vision, (1, 3, 30, 24))
    with pytest.raises(ValueError, match="4 channels"):
        check_vision_inputs(vision, (1, 4, 24, 24))
    with pytest.raises(ValueError, match="NaN"):
        check_vision_inputs(vision, (1, 3, 24, 24), finite=False)
    check_vision_inputs(vision, (1, 3, 30, 18), interpolate_pos_encoding=True)


def test_resolve_file_and_atomic_writes(tmp_path, monkeypatch):
    (tmp_path / "a.txt").write_text("x")
    assert resolve_file(tmp_path, "a.txt") == tmp_path / "a.txt"
    assert resolve_file(tmp_path, "b.txt", required=False) is None
    with pytest.raises(FileNotFoundError, match="b.txt"):
        resolve_file(tmp_path, "b.txt")
    with pytest.raises(FileNotFoundError, match="config.json: .*a.txt is not a directory"):
        resolve_file(tmp_path / "a.txt", "config.json")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(FileNotFoundError, match="some-org/some-model"):
        resolve_file("some-org/some-model", "config.json")
    write_atomic(tmp_path / "w.bin", b"123")
    assert (tmp_path / "w.bin").read_bytes() == b"123"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.txt", "w.bin"]


def test_atomic_directory_leaves_destination_alone_on_failure(tmp_path):
    dest = tmp_path / "ckpt"
    with pytest.raises(RuntimeError):
        with atomic_directory(dest) as tmp:
            (tmp / "config.json").write_text("{}")
            raise RuntimeError("boom")
    assert not dest.exists() and list(tmp_path.iterdir()) == []
    other = tmp_path / "photos"
    other.mkdir()
    (other / "cat.jpg").write_bytes(b"x")
    with pytest.raises(FileExistsError, match="photos"):
        with atomic_directory(other):
            pass
    with atomic_directory(other, overwrite=True) as tmp:
        (tmp / "config.json").write_text("{}")
    assert sorted(p.name for p in other.iterdir()) == ["cat.jpg", "config.json"]
