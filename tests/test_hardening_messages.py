"""Messages that name the culprit and the true cause (class 7 of the hardening issue, checkpoint parts), OpenAI head
counts (class 10), and the NaN / Inf warning at load."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

from clip_core.checkpoints import (CorruptCheckpointError, NonFiniteWeightsWarning, load_checkpoint,
                                   save_checkpoint, write_safetensors)
from clip_core.formats.openai import OpenAIHeadsWarning, openai_config
from clip_core.weights import StateMismatchError, init_state, param_table, validate_state
from tests.conftest import ROOT, shared_path
from tests.test_errors import CONFIG


def test_a_device_is_not_called_missing():
    with pytest.raises(CorruptCheckpointError, match=r"/dev/zero is a character device, not a regular file"):
        load_checkpoint("/dev/zero", config=CONFIG)


def test_a_fifo_in_place_of_a_weight_file_or_config_is_refused_at_once(tmp_path):
    folder = tmp_path / "ckpt"
    save_checkpoint(folder, CONFIG, init_state(CONFIG))
    os.unlink(folder / "model.safetensors")
    os.mkfifo(folder / "model.safetensors")
    os.mkfifo(tmp_path / "open_clip_config.json")
    script = f"""
import sys; sys.path.insert(0, {str(ROOT)!r})
from clip_core.checkpoints import load_checkpoint
try:
    load_checkpoint({str(folder)!r})
except OSError as err:
    print(type(err).__name__, err)
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert "model.safetensors is a FIFO (named pipe), not a regular file" in done.stdout, done.stderr[-2000:]


def test_a_shard_index_listing_an_index_is_corrupt_not_a_keyerror(tmp_path):
    folder = tmp_path / "ckpt"
    save_checkpoint(folder, CONFIG, init_state(CONFIG))
    os.replace(folder / "model.safetensors", folder / "model-00001-of-00002.safetensors")
    names = list(param_table(CONFIG))
    weight_map = {name: "model-00001-of-00002.safetensors" for name in names[1:]}
    weight_map[names[0]] = "model.safetensors.index.json"
    (folder / "model.safetensors.index.json").write_text(json.dumps({"weight_map": weight_map}))
    with pytest.raises(CorruptCheckpointError, match=r"index\.json names model\.safetensors\.index\.json as a shard"):
        load_checkpoint(folder)
    (folder / "model.safetensors.index.json").write_text(json.dumps({"weight_map": []}))
    with pytest.raises(CorruptCheckpointError, match=r"index\.json: its 'weight_map' must map"):
        load_checkpoint(folder)


def test_a_zero_head_width_is_a_valueerror_not_zerodivision():
    state = _openai_state()
    with pytest.raises(ValueError, match=r"vision_cfg\.head_width \(0\) must be a positive integer"):
        openai_config(state, {"vision_cfg": {"width": 128, "head_width": 0}, "text_cfg": {"heads": 4}})


def test_a_mismatch_over_100000_layers_is_summarised():
    table = param_table(CONFIG)
    state = {name: np.zeros(spec.shape, np.float32) for name, spec in table.items()}
    state.update({f"extra.layers.{i}.weight": np.zeros(1, np.float32) for i in range(100_000)})
    del state["logit_scale"]
    with pytest.raises(StateMismatchError) as caught:
        validate_state(state, table, where="x.safetensors")
    message = str(caught.value)
    assert len(message) < 5_000
    assert "100000 unexpected: extra.layers.0.weight" in message and "... and 99,980 more" in message
    assert "1 missing: logit_scale" in message
    assert len(caught.value.unexpected) == 100_000  # every name is still there for code


def test_nan_and_inf_weights_warn_at_load_naming_them(tmp_path):
    state = init_state(CONFIG)
    state["visual_projection.weight"][0, 0] = np.nan
    state["text_model.final_layer_norm.bias"][3] = -np.inf
    folder = tmp_path / "ckpt"
    save_checkpoint(folder, CONFIG, state)
    with pytest.warns(NonFiniteWeightsWarning, match=r"model\.safetensors: 2 parameter\(s\) hold NaN or infinite"
                                                      r".*(visual_projection\.weight.*final_layer_norm\.bias|"
                                                      r"final_layer_norm\.bias.*visual_projection\.weight)"):
        load_checkpoint(folder)
    with warnings.catch_warnings():
        warnings.simplefilter("error", NonFiniteWeightsWarning)
        save_checkpoint(tmp_path / "fine", CONFIG, init_state(CONFIG))
        load_checkpoint(tmp_path / "fine")


def _openai_state():
    torch = pytest.importorskip("torch")
    path = shared_path("fixtures", "openai-tiny", "openai_state_dict.pt")
    return {k: v.numpy() for k, v in torch.load(path, weights_only=True).items()}


def test_openai_heads_by_the_width_rule_are_announced(tmp_path):
    # the fixture's text tower has 4 heads at width 64: OpenAI's rule says 1, so loading without hyper-parameters
    # is wrong, and says which rule it used
    pytest.importorskip("torch")
    fixture = shared_path("fixtures", "openai-tiny")
    hparams = json.loads((fixture / "openai_hparams.json").read_text())
    with pytest.warns(OpenAIHeadsWarning, match=r"openai_state_dict\.pt: OpenAI checkpoints do not record attention "
                                                r"head counts.*transformer_heads=1 \(text width 64 // 64\) and "
                                                r"vision_heads=2 \(vision width 128 // 64\).*--hparams"):
        config, _ = load_checkpoint(fixture / "openai_state_dict.pt")
    assert config.text_config.num_attention_heads == 1
    with pytest.warns(OpenAIHeadsWarning) as seen:
        config = openai_config(_openai_state(), hparams)
    assert config.text_config.num_attention_heads == 4
    assert "transformer_heads=" not in str(seen[0].message) and "vision_heads=2 (" in str(seen[0].message)
    with warnings.catch_warnings():
        warnings.simplefilter("error", OpenAIHeadsWarning)
        openai_config(_openai_state(), {**hparams, "vision_heads": 2})  # everything given: silent


def test_a_truncated_safetensors_file_still_names_its_cause(tmp_path):
    path = tmp_path / "model.safetensors"
    write_safetensors(path, {"w": np.arange(64, dtype=np.float32)})
    data = path.read_bytes()
    Path(path).write_bytes(data[:-10])
    with pytest.raises(CorruptCheckpointError, match=r"model\.safetensors is not a valid safetensors file.*tensor w"):
        load_checkpoint(path, config=CONFIG)
