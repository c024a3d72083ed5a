"""Weights that do not fit the model, as transformers 4.57.6 loads them (issue 15): missing parameters newly
initialised, unexpected tensors dropped, mis-shaped ones an error unless ``ignore_mismatched_sizes``, each with a
warning naming them, and ``output_loading_info`` listing the same keys as transformers' for the same files, in
each backend's format. A checkpoint sharing no parameter with the model loads as in transformers (every parameter
newly initialised and reported missing, its tensors unexpected); ``strict=True`` and
:func:`clip_core.checkpoints.load_checkpoint` stay strict and refuse it. ``subfolder=`` loads a folder inside a
directory or a Hub repo.

The reference is transformers itself, loading the very same files (PyTorch, and its TF / Flax classes of 4.57).
"""

from __future__ import annotations

import ast
import json
import logging
import re
from pathlib import Path

import numpy as np
import pytest

from clip_core.checkpoints import CorruptCheckpointError, convert_checkpoint, load_checkpoint, save_checkpoint
from clip_core.config import CLIPConfig
from clip_core.formats.flax_msgpack import write_flax_msgpack
from clip_core.formats.keras_h5 import write_tf_h5
from clip_core.weights import ParamSpec, StateMismatchError, init_state, param_table
from tests.test_errors import CONFIG

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
from safetensors.numpy import save_file  # noqa: E402

import clip_pt  # noqa: E402

LOGGER = "clip_core.pretrained"
DROPPED = ["text_model.final_layer_norm.bias", "text_projection.weight"]
PIXELS = np.random.default_rng(3).standard_normal((2, 3, 16, 16)).astype(np.float32)
IDS = np.array([[48, 5, 6, 49, 0], [48, 7, 49, 0, 0]], dtype=np.int64)


def _config(**changes) -> CLIPConfig:
    return CLIPConfig.from_dict({**CONFIG.to_dict(), "architectures": ["CLIPModel"], **changes})


def _write(folder: Path, state: dict, fmt: str = "safetensors", config: CLIPConfig | None = None) -> Path:
    """``state`` as transformers' PyTorch would write it (no validation: it may not fit the config)."""
    folder.mkdir(parents=True, exist_ok=True)
    (config or _config()).save_pretrained(folder)
    if fmt == "safetensors":
        save_file({k: np.array(v, order="C") for k, v in state.items()}, str(folder / "model.safetensors"),
                  metadata={"format": "pt"})
    else:
        torch.save({k: torch.from_numpy(np.array(v)) for k, v in state.items()}, folder / "pytorch_model.bin")
    return folder


def _broken_state() -> dict:
    state = init_state(CONFIG, "clip", seed=1)
    for name in DROPPED:
        del state[name]
    state["foo.bar"] = np.zeros(3, np.float32)
    return state


def _messages(caplog, level=logging.WARNING) -> str:
    return "\n".join(r.getMessage() for r in caplog.records if r.name == LOGGER and r.levelno >= level)


# ---------------------------------------------------------------------------------------------- PyTorch
@pytest.mark.parametrize("fmt", ["safetensors", "pytorch"])
def test_missing_and_unexpected_as_transformers(fmt, tmp_path, caplog):
    state = _broken_state()
    folder = _write(tmp_path / fmt, state, fmt)
    theirs, their_info = transformers.CLIPModel.from_pretrained(folder, output_loading_info=True)
    with caplog.at_level(logging.INFO, logger=LOGGER):
        ours, info = clip_pt.CLIPModel.from_pretrained(folder, output_loading_info=True)
    assert info == their_info
    assert info["missing_keys"] == DROPPED and info["unexpected_keys"] == ["foo.bar"]
    warned = _messages(caplog)
    assert all(name in warned for name in DROPPED + ["foo.bar"]), warned
    assert "newly initialized" in warned and "were not used when initializing CLIPModel" in warned
    loaded = {k: v.detach().numpy() for k, v in ours.state_dict().items() if not k.endswith("position_ids")}
    for name, value in state.items():  # every parameter the file holds is the file's
        if name in loaded:
            np.testing.assert_array_equal(loaded[name], value, err_msg=name)
    # the re-initialised ones follow transformers' initialisation: normal with std d**-0.5, biases zero
    projection = loaded["text_projection.weight"]
    assert abs(projection.std() - 16 ** -0.5) < 0.05 and abs(projection.mean()) < 0.05
    np.testing.assert_array_equal(loaded["text_model.final_layer_norm.bias"], 0)
    np.testing.assert_array_equal(theirs.text_model.final_layer_norm.bias.detach().numpy(), 0)
    with torch.no_grad():  # what the checkpoint fully holds computes as transformers' model of the same file
        np.testing.assert_allclose(ours.get_image_features(pixel_values=torch.from_numpy(PIXELS)).numpy(),
                                   theirs.get_image_features(pixel_values=torch.from_numpy(PIXELS)).numpy(),
                                   atol=1e-5, rtol=0)


def test_mismatched_shapes_as_transformers(tmp_path, caplog):
    state = init_state(CONFIG, "clip", seed=2)
    state["text_projection.weight"] = np.ones((4, 16), np.float32)
    folder = _write(tmp_path / "m", state)
    with pytest.raises(RuntimeError):
        transformers.CLIPModel.from_pretrained(folder)
    with pytest.raises(RuntimeError) as caught:
        clip_pt.CLIPModel.from_pretrained(folder)
    assert isinstance(caught.value, (StateMismatchError, ValueError))
    assert "text_projection.weight: expected (8, 16), found (4, 16)" in str(caught.value)
    assert "ignore_mismatched_sizes=True" in str(caught.value)
    _, their_info = transformers.CLIPModel.from_pretrained(folder, output_loading_info=True,
                                                           ignore_mismatched_sizes=True)
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        ours, info = clip_pt.CLIPModel.from_pretrained(folder, output_loading_info=True, ignore_mismatched_sizes=True)
    assert info == their_info == {"missing_keys": [], "unexpected_keys": [],
                                  "mismatched_keys": ["text_projection.weight"], "error_msgs": []}
    warned = _messages(caplog)
    assert "the shapes did not match" in warned
    assert "text_projection.weight: found shape (4, 16) in the checkpoint and (8, 16) in the model" in warned
    weight = ours.text_projection.weight.detach().numpy()
    assert weight.shape == (8, 16) and abs(weight.std() - 16 ** -0.5) < 0.05  # drawn anew, not the file's ones


@pytest.mark.parametrize("fmt", ["safetensors", "pytorch", "flax"])
def test_a_larger_vocabulary_than_the_model_any_format(fmt, tmp_path):
    """A checkpoint whose token table is far larger than any parameter the config implies (so its reader never
    reads it: the config bounds the read) still loads with ignore_mismatched_sizes, as in transformers."""
    big = CLIPConfig.from_dict({**CONFIG.to_dict(), "text_config": {**CONFIG.text_config.to_dict(),
                                                                    "vocab_size": 5000}})
    save_checkpoint(tmp_path, big, init_state(big, "clip", seed=1), formats=fmt)
    small = {"text_config": {"vocab_size": 50}}
    with pytest.raises(RuntimeError, match=r"token_embedding.weight: expected \(50, 16\), found \(5000, 16\)"):
        clip_pt.CLIPModel.from_pretrained(tmp_path, **small)
    if fmt != "flax":  # transformers' PyTorch class reads the PyTorch formats only
        _, theirs = transformers.CLIPModel.from_pretrained(tmp_path, text_config=dict(vocab_size=50),
                                                           ignore_mismatched_sizes=True, output_loading_info=True)
        assert theirs["mismatched_keys"] == ["text_model.embeddings.token_embedding.weight"]
    model, info = clip_pt.CLIPModel.from_pretrained(tmp_path, **small, ignore_mismatched_sizes=True,
                                                    output_loading_info=True)
    assert info["mismatched_keys"] == ["text_model.embeddings.token_embedding.weight"]
    assert tuple(model.text_model.embeddings.token_embedding.weight.shape) == (50, 16)


def test_classifier_head_from_a_clip_checkpoint(tmp_path, caplog):
    """The head a CLIP checkpoint lacks: newly initialised, with the warning; a head of another size: mismatched."""
    folder = _write(tmp_path / "clip", init_state(CONFIG, "clip", seed=4))
    _, their_info = transformers.CLIPForImageClassification.from_pretrained(folder, output_loading_info=True)
    with caplog.at_level(logging.INFO, logger=LOGGER):
        ours, info = clip_pt.CLIPForImageClassification.from_pretrained(folder, output_loading_info=True)
    assert info == their_info and info["missing_keys"] == ["classifier.bias", "classifier.weight"]
    assert "classifier.weight" in _messages(caplog)
    for strict in (True, False):  # the same head in the strict mode (the special case kept)
        again = clip_pt.CLIPForImageClassification.from_pretrained(folder, strict=strict)
        torch.testing.assert_close(again.classifier.weight, ours.classifier.weight, rtol=0, atol=0)
    assert abs(ours.classifier.weight.detach().numpy().std() - 16 ** -0.5) < 0.1
    saved = tmp_path / "head"
    ours.save_pretrained(saved)  # two labels; asked for five
    with pytest.raises(RuntimeError):
        transformers.CLIPForImageClassification.from_pretrained(saved, num_labels=5)
    with pytest.raises(RuntimeError):
        clip_pt.CLIPForImageClassification.from_pretrained(saved, num_labels=5)
    _, their_info = transformers.CLIPForImageClassification.from_pretrained(
        saved, num_labels=5, ignore_mismatched_sizes=True, output_loading_info=True)
    model, info = clip_pt.CLIPForImageClassification.from_pretrained(
        saved, num_labels=5, ignore_mismatched_sizes=True, output_loading_info=True)
    assert sorted(info["mismatched_keys"]) == sorted(their_info["mismatched_keys"]) == ["classifier.bias",
                                                                                        "classifier.weight"]
    assert model(pixel_values=torch.from_numpy(PIXELS)).logits.shape == (2, 5)


@pytest.mark.parametrize("cls", ["CLIPTextModel", "CLIPVisionModel"])  # (WithProjection: theirs fail, stale size)
def test_towers_report_the_other_parts_as_unexpected(cls, tmp_path, caplog):
    folder = _write(tmp_path / "clip", init_state(CONFIG, "clip", seed=5))
    _, their_info = getattr(transformers, cls).from_pretrained(folder, output_loading_info=True)
    with caplog.at_level(logging.INFO, logger=LOGGER):
        _, info = getattr(clip_pt, cls).from_pretrained(folder, output_loading_info=True)
    assert info == their_info and info["unexpected_keys"]
    # as transformers: only informative (the checkpoint was saved from another class)
    assert not _messages(caplog) and "were not used" in _messages(caplog, logging.INFO)


def test_from_pretrained_inside_a_meta_device_context(tmp_path):
    folder = _write(tmp_path / "clip", init_state(CONFIG, "clip", seed=14))
    with torch.device("meta"):
        with pytest.raises(RuntimeError, match="meta device context manager"):
            transformers.CLIPModel.from_pretrained(folder)
        with pytest.raises(RuntimeError, match="meta device context manager"):
            clip_pt.CLIPModel.from_pretrained(folder)
        model = clip_pt.CLIPModel(CONFIG)  # building from a config there is fine
    assert model.text_projection.weight.is_meta
    assert clip_pt.CLIPModel.from_pretrained(folder).text_projection.weight.device.type == "cpu"


def test_state_dict_without_a_path(tmp_path):
    state = _broken_state()
    their_config = transformers.CLIPConfig.from_dict(CONFIG.to_dict())
    _, their_info = transformers.CLIPModel.from_pretrained(
        None, config=their_config, state_dict={k: torch.from_numpy(v) for k, v in state.items()},
        output_loading_info=True)
    _, info = clip_pt.CLIPModel.from_pretrained(None, config=CONFIG, state_dict=state, output_loading_info=True)
    assert info == their_info
    with pytest.raises(StateMismatchError):
        clip_pt.CLIPModel.from_pretrained(None, config=CONFIG, state_dict=state, strict=True)


# ---------------------------------------------------------------------------------------------- strict and refusals
def test_strict_mode_and_load_checkpoint_stay_strict(tmp_path):
    folder = _write(tmp_path / "broken", _broken_state())
    with pytest.raises(StateMismatchError) as caught:
        clip_pt.CLIPModel.from_pretrained(folder, strict=True)
    assert caught.value.missing == DROPPED and caught.value.unexpected == ["foo.bar"]
    with pytest.raises(StateMismatchError):
        load_checkpoint(folder)
    with pytest.raises(StateMismatchError):  # `triclip convert` too
        convert_checkpoint(folder, tmp_path / "converted")
    assert not (tmp_path / "converted").exists()
    # a tower loading a full checkpoint is fine when strict too (the other parts are the checkpoint's own)
    full = _write(tmp_path / "full", init_state(CONFIG, "clip", seed=6))
    _, info = clip_pt.CLIPTextModel.from_pretrained(full, strict=True, output_loading_info=True)
    assert info["unexpected_keys"] and not info["missing_keys"]


def _their_messages(logger_name: str, load):
    """What ``load()`` returns and the messages transformers' ``logger_name`` logged at warning level meanwhile."""
    their_logger = transformers.utils.logging.get_logger(logger_name)
    handler = _Records()
    their_logger.addHandler(handler)
    verbosity = transformers.utils.logging.get_verbosity()  # another test (or import) may have quietened it
    transformers.utils.logging.set_verbosity_warning()
    try:
        result = load()
    finally:
        transformers.utils.logging.set_verbosity(verbosity)
        their_logger.removeHandler(handler)
    return result, handler.messages


UNRELATED = {"tensor": np.array([1, 2])}  # transformers' test_model_weights_reload_no_missing_tied_weights


@pytest.mark.parametrize("fmt", ["safetensors", "pytorch"])
def test_a_checkpoint_sharing_no_parameter_loads_as_transformers(fmt, tmp_path, caplog):
    """transformers (non-strict, its default) loads it: every parameter newly initialised with its warning,
    reported missing, the file's tensors unexpected; strict loads refuse it, naming the problem."""
    folder = _write(tmp_path / "other", UNRELATED, fmt)
    (theirs, their_info), their_messages = _their_messages(
        "transformers.modeling_utils", lambda: transformers.CLIPModel.from_pretrained(folder, output_loading_info=True))
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        ours, info = clip_pt.CLIPModel.from_pretrained(folder, output_loading_info=True)
    assert info == their_info and info["unexpected_keys"] == ["tensor"]
    assert len(info["missing_keys"]) == 46 and "vision_model.embeddings.class_embedding" in info["missing_keys"]
    messages = [r.getMessage() for r in caplog.records if r.name == LOGGER]
    assert len(messages) == len(their_messages) == 2  # the file's tensor not used, every parameter newly initialised
    assert messages[0].split("\n")[0] == their_messages[0].split("\n")[0]  # transformers' first sentence
    assert messages[1] == their_messages[1]  # the missing-weights warning, word for word
    assert messages[1].startswith("Some weights of CLIPModel were not initialized from the model checkpoint at ")
    loaded = {k: v.detach().numpy() for k, v in ours.state_dict().items()}
    # transformers' initialisation: layer norms 1 / 0, biases 0, float32; logit_scale its init value (transformers
    # 4.57.6 leaves that one uninitialised memory in this case: not compared)
    for name, value in theirs.state_dict().items():
        if name.endswith(("layer_norm1.weight", "post_layernorm.weight", "bias")):
            np.testing.assert_array_equal(loaded[name], value.numpy(), err_msg=name)
    assert loaded["logit_scale"] == np.float32(transformers.CLIPConfig().logit_scale_init_value) == np.float32(2.6592)
    assert ours.dtype == theirs.dtype == torch.float32
    assert abs(loaded["visual_projection.weight"].std() - 16 ** -0.5) < 0.05
    # a tower from the other tower's weights: the same
    vision = _write(tmp_path / "vision", {k: v for k, v in init_state(CONFIG, "clip").items()
                                          if k.startswith("vision_model.")}, fmt)
    _, their_info = transformers.CLIPTextModel.from_pretrained(vision, output_loading_info=True)
    _, info = clip_pt.CLIPTextModel.from_pretrained(vision, output_loading_info=True)
    assert info == their_info and len(info["missing_keys"]) == 20
    # strict: refused, naming every missing tensor and the file's one
    for load in (lambda: clip_pt.CLIPModel.from_pretrained(folder, strict=True), lambda: load_checkpoint(folder),
                 lambda: convert_checkpoint(folder, tmp_path / "converted")):
        with pytest.raises(StateMismatchError, match="shares no parameter with the model") as caught:
            load()
        assert len(caught.value.missing) == 46 and caught.value.unexpected == ["tensor"]
    assert not (tmp_path / "converted").exists()
    with pytest.raises(StateMismatchError, match="shares no parameter"):
        clip_pt.CLIPModel.from_pretrained(None, config=CONFIG, state_dict=UNRELATED, strict=True)
    _, their_info = transformers.CLIPModel.from_pretrained(
        None, config=transformers.CLIPConfig.from_dict(CONFIG.to_dict()),
        state_dict={"tensor": torch.tensor([1, 2])}, output_loading_info=True)
    _, info = clip_pt.CLIPModel.from_pretrained(None, config=CONFIG, state_dict=UNRELATED, output_loading_info=True)
    assert info == their_info


def test_keys_to_ignore_on_load_as_transformers(tmp_path, caplog):
    """transformers' ``_keys_to_ignore_on_load_missing`` / ``_unexpected`` (``None`` in CLIP, set by a subclass):
    the matching keys are neither reported nor warned about."""
    assert clip_pt.CLIPModel._keys_to_ignore_on_load_missing is transformers.CLIPModel._keys_to_ignore_on_load_missing
    assert clip_pt.CLIPModel._keys_to_ignore_on_load_unexpected is None
    folder = _write(tmp_path / "broken", _broken_state())
    ignore = {"_keys_to_ignore_on_load_missing": [r"projection"], "_keys_to_ignore_on_load_unexpected": [r"^foo\."]}
    _, their_info = type("Theirs", (transformers.CLIPModel,), ignore).from_pretrained(folder, output_loading_info=True)
    with caplog.at_level(logging.INFO, logger=LOGGER):
        _, info = type("Ours", (clip_pt.CLIPModel,), ignore).from_pretrained(folder, output_loading_info=True)
    assert info == their_info and info["missing_keys"] == ["text_model.final_layer_norm.bias"]
    assert not info["unexpected_keys"] and "foo.bar" not in _messages(caplog, logging.INFO)


def test_an_unrelated_tensor_is_still_bounded_by_the_largest_parameter(tmp_path):
    """Not read, only reported: one of up to 3,072 values (the patch embedding, 16 x 3 x 8 x 8) loads as in
    transformers; one value more is refused before it is read (the #20 bound; transformers would read it)."""
    fits = _write(tmp_path / "fits", {"tensor": np.zeros(3072, np.float32)})
    _, their_info = transformers.CLIPModel.from_pretrained(fits, output_loading_info=True)
    _, info = clip_pt.CLIPModel.from_pretrained(fits, output_loading_info=True)
    assert info == their_info and info["unexpected_keys"] == ["tensor"]
    big = _write(tmp_path / "big", {"tensor": np.zeros(3073, np.float32)})
    with pytest.raises(CorruptCheckpointError, match=r"tensor tensor has shape \(3073,\).* at most 3,072 values"):
        clip_pt.CLIPModel.from_pretrained(big)


# ---------------------------------------------------------------------------------------------- TensorFlow
@pytest.fixture(scope="module")
def tf_modules():
    pytest.importorskip("tensorflow")
    pytest.importorskip("tf_keras")
    import clip_tf
    return clip_tf


def test_tensorflow_from_a_pytorch_file(tf_modules, tmp_path, caplog):
    state = _broken_state()
    folder = _write(tmp_path / "bin", state, "pytorch")
    _, their_info = transformers.TFCLIPModel.from_pretrained(folder, from_pt=True, output_loading_info=True)
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        ours, info = tf_modules.TFCLIPModel.from_pretrained(folder, output_loading_info=True)
    assert set(info) == set(their_info) == {"missing_keys", "unexpected_keys", "mismatched_keys"}
    assert sorted(info["missing_keys"]) == sorted(their_info["missing_keys"]) == DROPPED
    assert sorted(info["unexpected_keys"]) == sorted(their_info["unexpected_keys"]) == ["foo.bar"]
    warned = _messages(caplog)
    assert "newly initialized" in warned and all(name in warned for name in DROPPED + ["foo.bar"])
    exported = ours.export_state()
    for name, value in state.items():
        if name in exported and name not in DROPPED:
            np.testing.assert_array_equal(exported[name], value, err_msg=name)
    assert abs(exported["text_projection.weight"].std() - 16 ** -0.5) < 0.05


def test_tensorflow_from_h5_files(tf_modules, tmp_path):
    full = tmp_path / "full"
    save_checkpoint(full, CONFIG, init_state(CONFIG, "clip", seed=7), formats="tf")
    _, their_info = transformers.TFCLIPTextModel.from_pretrained(full, output_loading_info=True)
    _, info = tf_modules.TFCLIPTextModel.from_pretrained(full, output_loading_info=True)
    assert sorted(info["unexpected_keys"]) == sorted(their_info["unexpected_keys"])
    assert "clip/vision_model/pre_layrnorm/gamma:0" in info["unexpected_keys"]
    assert info["missing_keys"] == their_info["missing_keys"] == []
    # a text-only h5 into the full model: the vision tower and the projections are missing (names as transformers')
    text = tmp_path / "text"
    save_checkpoint(text, CONFIG, init_state(CONFIG, "text", seed=7), formats="tf", arch="text")
    their_config = transformers.CLIPConfig.from_dict(CONFIG.to_dict())
    _, their_info = transformers.TFCLIPModel.from_pretrained(text, config=their_config, output_loading_info=True)
    _, info = tf_modules.TFCLIPModel.from_pretrained(text, config=CONFIG, output_loading_info=True)
    assert sorted(info["missing_keys"]) == sorted(their_info["missing_keys"])
    assert "clip/vision_model/embeddings/position_embedding/weight:0" in info["missing_keys"]
    assert sorted(info["unexpected_keys"]) == sorted(their_info["unexpected_keys"]) == []
    # an h5 of another projection size, re-initialised with both shapes in TF layouts
    small = _config(projection_dim=4)
    other = tmp_path / "other"
    save_checkpoint(other, small, init_state(small, "clip", seed=8), formats="tf")
    with pytest.raises(ValueError):
        tf_modules.TFCLIPModel.from_pretrained(other, config=CONFIG)
    _, their_info = transformers.TFCLIPModel.from_pretrained(other, config=their_config, output_loading_info=True,
                                                             ignore_mismatched_sizes=True)
    model, info = tf_modules.TFCLIPModel.from_pretrained(other, config=CONFIG, output_loading_info=True,
                                                         ignore_mismatched_sizes=True)
    assert sorted(info["mismatched_keys"]) == sorted((k, tuple(a), tuple(b)) for k, a, b in
                                                     their_info["mismatched_keys"])
    assert ("clip/text_projection/kernel:0", (16, 4), (16, 8)) in info["mismatched_keys"]
    assert model.export_state()["text_projection.weight"].shape == (8, 16)


# ---------------------------------------------------------------------------------------------- Flax
@pytest.fixture(scope="module")
def flax_modules():
    pytest.importorskip("flax")
    import clip_flax
    return clip_flax


class _Records(logging.Handler):
    def __init__(self):
        super().__init__()
        self.messages = []

    def emit(self, record):
        self.messages.append(record.getMessage())


def _their_flax_report(load) -> dict:
    """The keys transformers' Flax loader names in its warnings (it has no ``output_loading_info``)."""
    their_logger = transformers.utils.logging.get_logger("transformers.modeling_flax_utils")
    handler = _Records()
    their_logger.addHandler(handler)
    verbosity = transformers.utils.logging.get_verbosity()  # another test (or import) may have quietened it
    transformers.utils.logging.set_verbosity_warning()
    try:
        load()
    finally:
        transformers.utils.logging.set_verbosity(verbosity)
        their_logger.removeHandler(handler)
    text = "\n".join(handler.messages)
    found = {}
    for key, pattern in (("unexpected_keys", r"were not used when initializing \w+: (\{.*?\})\n"),
                         ("missing_keys", r"are newly initialized: (\{.*?\})\n")):
        match = re.search(pattern, text)
        found[key] = ast.literal_eval(match.group(1)) if match else set()
    found["mismatched_keys"] = [(ast.literal_eval(k), ast.literal_eval(a), ast.literal_eval(b)) for k, a, b in
                                re.findall(r"- (\(.*?\)): found shape (\(.*?\)) in the checkpoint and (\(.*?\)) in",
                                           text)]
    return found


def test_flax_from_a_pytorch_file(flax_modules, tmp_path, caplog):
    folder = _write(tmp_path / "st", _broken_state())
    theirs = _their_flax_report(lambda: transformers.FlaxCLIPModel.from_pretrained(folder))
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        ours, info = flax_modules.FlaxCLIPModel.from_pretrained(folder, output_loading_info=True)
    assert info == theirs
    assert info["missing_keys"] == {("text_model", "final_layer_norm", "bias"), ("text_projection", "kernel")}
    assert "('text_projection', 'kernel')" in _messages(caplog)
    # a tower from a full checkpoint: transformers' PyTorch-to-Flax renaming of the tensors it does not use
    full = _write(tmp_path / "full", init_state(CONFIG, "clip", seed=9))
    theirs = _their_flax_report(lambda: transformers.FlaxCLIPTextModel.from_pretrained(full))
    _, info = flax_modules.FlaxCLIPTextModel.from_pretrained(full, output_loading_info=True)
    assert info == theirs and ("vision_model", "pre_layrnorm", "kernel") in info["unexpected_keys"]


def test_a_position_ids_buffer_as_each_loader_reports_it(tf_modules, flax_modules, tmp_path):
    """Older checkpoints hold ``position_ids``: dropped everywhere; only transformers' Flax loader names it."""
    state = init_state(CONFIG, "clip", seed=13)
    state["text_model.embeddings.position_ids"] = np.arange(7, dtype=np.int64)[None]
    folder = _write(tmp_path / "st", state)
    _, their_info = transformers.CLIPModel.from_pretrained(folder, output_loading_info=True)
    _, info = clip_pt.CLIPModel.from_pretrained(folder, output_loading_info=True)
    assert info == their_info and not info["unexpected_keys"]
    _, info = tf_modules.TFCLIPModel.from_pretrained(folder, output_loading_info=True)
    assert not info["unexpected_keys"]  # transformers' TF classes ignore position_ids by pattern
    theirs = _their_flax_report(lambda: transformers.FlaxCLIPModel.from_pretrained(folder))
    _, info = flax_modules.FlaxCLIPModel.from_pretrained(folder, output_loading_info=True)
    assert info == theirs and info["unexpected_keys"] == {("text_model", "embeddings", "position_ids")}


def test_flax_from_a_msgpack_of_another_size(flax_modules, tmp_path):
    small = _config(projection_dim=4)
    folder = tmp_path / "small"
    save_checkpoint(folder, small, init_state(small, "clip", seed=10), formats="flax")
    their_config = transformers.CLIPConfig.from_dict(CONFIG.to_dict())
    with pytest.raises(ValueError):
        transformers.FlaxCLIPModel.from_pretrained(folder, config=their_config)
    with pytest.raises(ValueError):
        flax_modules.FlaxCLIPModel.from_pretrained(folder, config=CONFIG)
    theirs = _their_flax_report(lambda: transformers.FlaxCLIPModel.from_pretrained(
        folder, config=their_config, ignore_mismatched_sizes=True))
    model, info = flax_modules.FlaxCLIPModel.from_pretrained(folder, config=CONFIG, ignore_mismatched_sizes=True,
                                                             output_loading_info=True)
    assert sorted(info["mismatched_keys"]) == sorted(theirs["mismatched_keys"])
    assert (("text_projection", "kernel"), (16, 4), (16, 8)) in info["mismatched_keys"]
    assert np.asarray(model.params["text_projection"]["kernel"]).shape == (16, 8)


@pytest.mark.parametrize("fmt", ["safetensors", "pytorch", "native"])
def test_tf_and_flax_from_a_checkpoint_sharing_no_parameter(tf_modules, flax_modules, fmt, tmp_path, caplog):
    """As transformers' TF and Flax classes: every parameter newly initialised and missing, the file's tensor
    unexpected (named as each loader names it), from a PyTorch file and from each backend's own format."""
    their_config = transformers.CLIPConfig.from_dict(CONFIG.to_dict())
    if fmt == "native":
        spec = {"tensor": ParamSpec("tensor", (2,), "vector")}
        tf_folder, flax_folder = tmp_path / "h5", tmp_path / "msgpack"
        for folder in (tf_folder, flax_folder):
            _config().save_pretrained(folder)
        write_tf_h5(tf_folder / "tf_model.h5", {"tensor": np.array([1.0, 2.0], np.float32)}, spec)
        write_flax_msgpack(flax_folder / "flax_model.msgpack", {"tensor": np.array([1.0, 2.0], np.float32)}, spec)
    else:
        tf_folder = flax_folder = _write(tmp_path / fmt, UNRELATED, fmt)
    _, their_info = transformers.TFCLIPModel.from_pretrained(tf_folder, config=their_config, from_pt=fmt != "native",
                                                             output_loading_info=True)
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        tf_model, info = tf_modules.TFCLIPModel.from_pretrained(tf_folder, output_loading_info=True)
    assert sorted(info["missing_keys"]) == sorted(their_info["missing_keys"]) and len(info["missing_keys"]) == 46
    assert info["unexpected_keys"] == their_info["unexpected_keys"] == (["clip/tensor:0"] if fmt == "native"
                                                                        else ["tensor"])
    assert info["mismatched_keys"] == their_info["mismatched_keys"] == []
    head = "Some layers of TFCLIPModel were not initialized from the model checkpoint" if fmt == "native" else \
        "Some weights or buffers of the TF 2.0 model TFCLIPModel were not initialized from the PyTorch model"
    assert head in _messages(caplog) and "newly initialized" in _messages(caplog)
    theirs = _their_flax_report(lambda: transformers.FlaxCLIPModel.from_pretrained(flax_folder, config=their_config,
                                                                                   from_pt=fmt != "native"))
    flax_model, info = flax_modules.FlaxCLIPModel.from_pretrained(flax_folder, output_loading_info=True)
    assert info == theirs and len(info["missing_keys"]) == 46 and info["unexpected_keys"] == {("tensor",)}
    # transformers' initialisation, the same seeded values in every backend (float32)
    pt_state = clip_pt.CLIPModel.from_pretrained(tf_folder if fmt != "native" else _write(
        tmp_path / "pt", UNRELATED)).export_state()
    for model in (tf_model, flax_model):
        exported = model.export_state()
        np.testing.assert_array_equal(exported["logit_scale"], np.float32(2.6592))  # transformers' init value
        np.testing.assert_array_equal(exported["vision_model.post_layernorm.weight"], 1)
        for name, value in pt_state.items():
            assert exported[name].dtype == np.float32, name
            np.testing.assert_array_equal(exported[name], value, err_msg=name)


def test_strict_and_refusals_in_every_backend(tf_modules, flax_modules, tmp_path):
    broken = _write(tmp_path / "broken", _broken_state())
    other = _write(tmp_path / "other", {"tensor": np.array([1.0, 2.0], np.float32)})
    state = init_state(CONFIG, "clip", seed=12)
    state["text_projection.weight"] = np.ones((4, 16), np.float32)
    resized = _write(tmp_path / "resized", state)
    for cls in (tf_modules.TFCLIPModel, flax_modules.FlaxCLIPModel):
        with pytest.raises(StateMismatchError):
            cls.from_pretrained(broken, strict=True)
        with pytest.raises(StateMismatchError, match="shares no parameter"):
            cls.from_pretrained(other, strict=True)
        with pytest.raises(RuntimeError, match="ignore_mismatched_sizes"):
            cls.from_pretrained(resized)
        # (transformers 4.57.6's TF and Flax loaders fail here even with ignore_mismatched_sizes)
        model, info = cls.from_pretrained(resized, ignore_mismatched_sizes=True, output_loading_info=True)
        assert len(info["mismatched_keys"]) == 1 and model.export_state()["text_projection.weight"].shape == (8, 16)
        np.testing.assert_array_equal(model.export_state()["logit_scale"], state["logit_scale"])


# ---------------------------------------------------------------------------------------------- subfolder
def _fake_hub_cache(root: Path, repo: str, files: dict[str, Path]) -> Path:
    """huggingface_hub's cache layout (refs/main -> a snapshot holding the files), written by hand."""
    folder = root / f"models--{repo.replace('/', '--')}"
    snapshot = folder / "snapshots" / ("0" * 40)
    for name, source in files.items():
        (snapshot / name).parent.mkdir(parents=True, exist_ok=True)
        (snapshot / name).write_bytes(source.read_bytes())
    (folder / "refs").mkdir(parents=True)
    (folder / "refs" / "main").write_text("0" * 40)
    return root


def test_subfolder_in_a_folder_and_a_hub_repo(tf_modules, flax_modules, tmp_path):
    state = init_state(CONFIG, "clip", seed=11)
    save_checkpoint(tmp_path / "repo" / "model", CONFIG, state)
    (tmp_path / "repo" / "config.json").write_text(json.dumps({"model_type": "clip", "projection_dim": 3}))
    theirs = transformers.CLIPModel.from_pretrained(tmp_path / "repo", subfolder="model")
    for cls in (clip_pt.CLIPModel, tf_modules.TFCLIPModel, flax_modules.FlaxCLIPModel):
        model = cls.from_pretrained(tmp_path / "repo", subfolder="model")
        assert model.config.projection_dim == theirs.config.projection_dim == 8
        exported = model.export_state()
        for name in param_table(CONFIG, "clip"):
            np.testing.assert_array_equal(exported[name], state[name], err_msg=name)
    with pytest.raises(FileNotFoundError, match="nope"):
        clip_pt.CLIPModel.from_pretrained(tmp_path / "repo", subfolder="nope")
    repo = "some-org/nested-clip"
    broken = _write(tmp_path / "broken", _broken_state())
    cache = _fake_hub_cache(tmp_path / "cache", repo, {
        "model/config.json": tmp_path / "repo" / "model" / "config.json",
        "model/model.safetensors": tmp_path / "repo" / "model" / "model.safetensors",
        "broken/config.json": broken / "config.json", "broken/model.safetensors": broken / "model.safetensors"})
    # config overrides with weights that do not fit (the config is read alone, then the weights fitted)
    _, their_info = transformers.CLIPModel.from_pretrained(repo, subfolder="broken", cache_dir=cache,
                                                           output_hidden_states=True, output_loading_info=True)
    model, info = clip_pt.CLIPModel.from_pretrained(repo, subfolder="broken", cache_dir=cache,
                                                    output_hidden_states=True, output_loading_info=True)
    assert info == their_info and model.config.output_hidden_states
    theirs = transformers.CLIPModel.from_pretrained(repo, subfolder="model", cache_dir=cache)
    ours = clip_pt.CLIPModel.from_pretrained(repo, subfolder="model", cache_dir=cache)
    with torch.no_grad():
        torch.testing.assert_close(ours.get_image_features(pixel_values=torch.from_numpy(PIXELS)),
                                   theirs.get_image_features(pixel_values=torch.from_numpy(PIXELS)),
                                   atol=1e-5, rtol=0)
