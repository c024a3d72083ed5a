"""Checkpoint formats: reading transformers' files, round trips, transformers reading ours, errors, corruption."""

from __future__ import annotations

import os

os.environ["TF_USE_LEGACY_KERAS"] = "1"  # transformers' TF classes need tf-keras; before any TensorFlow import

import json  # noqa: E402
import pickle  # noqa: E402
import shutil  # noqa: E402
import signal  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tracemalloc  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402

from clip_core import checkpoints as ck  # noqa: E402
from clip_core.checkpoints import (CorruptCheckpointError, UnsafeCheckpointError,  # noqa: E402
                                   UnsupportedCheckpointError, load_checkpoint, save_checkpoint)
from clip_core.config import CLIPConfig, CLIPTextConfig, CLIPVisionConfig  # noqa: E402
from clip_core.formats import flax_msgpack, keras_h5  # noqa: E402
from clip_core.weights import (StateMismatchError, flatten_tree, flax_path, init_state, param_table,  # noqa: E402
                               tf_name, to_flax_tree, to_framework_layout)
from tests.conftest import ROOT, WEIGHT_FILES, shared_path, single_format_dir  # noqa: E402

ARCHS = ("clip", "text", "text_projection", "vision", "vision_projection")
ALL_ARCHS = ARCHS + ("image_classification",)
FORMAT_OF = {"model.safetensors": "safetensors", "pytorch_model.bin": "pytorch", "tf_model.h5": "tf",
             "flax_model.msgpack": "flax"}
DOCUMENTED = (CorruptCheckpointError, UnsafeCheckpointError, UnsupportedCheckpointError, StateMismatchError)


def micro_config() -> CLIPConfig:
    """A CLIP small enough for dozens of round trips (projection 4 everywhere, so every arch is consistent)."""
    return CLIPConfig(
        projection_dim=4,
        text_config=dict(vocab_size=50, hidden_size=8, intermediate_size=16, num_hidden_layers=2,
                         num_attention_heads=2, max_position_embeddings=6, projection_dim=4),
        vision_config=dict(hidden_size=8, intermediate_size=16, num_hidden_layers=2, num_attention_heads=2,
                           image_size=8, patch_size=4, projection_dim=4))


def arch_config(arch: str):
    config = micro_config()
    return config if arch == "clip" else ck.config_for_arch(config, arch)


def assert_same_state(got: dict, want: dict, dtype_too: bool = True) -> None:
    assert list(got) == list(want) or sorted(got) == sorted(want), set(got) ^ set(want)
    for name, value in want.items():
        assert got[name].shape == value.shape, name
        if dtype_too:
            assert got[name].dtype == value.dtype, name
        assert got[name].tobytes() == np.asarray(value, dtype=got[name].dtype).tobytes(), name


@pytest.fixture(scope="module")
def fixture_dir() -> Path:
    return shared_path("fixtures", "hf-tiny")


@pytest.fixture(scope="module")
def fixture_state(fixture_dir):
    return load_checkpoint(fixture_dir)


# ---------------------------------------------------------------------------------------------- transformers' files
@pytest.mark.parametrize("weight_file", WEIGHT_FILES)
def test_every_fixture_format_reads_the_same_state(hf_fixture, weight_file, tmp_path):
    from safetensors.numpy import load_file

    reference = load_file(hf_fixture / "model.safetensors")
    config, state = load_checkpoint(single_format_dir(hf_fixture, weight_file, tmp_path))
    assert isinstance(config, CLIPConfig)
    assert config == CLIPConfig.from_json_file(hf_fixture / "config.json")
    assert_same_state(state, reference)
    assert state["logit_scale"].shape == () and state["logit_scale"] == np.float32(2.3)
    # the same file named directly, and through the format filter
    _, direct = load_checkpoint(hf_fixture / weight_file)
    assert_same_state(direct, reference)
    _, filtered = load_checkpoint(hf_fixture, format=FORMAT_OF[weight_file])
    assert_same_state(filtered, reference)


@pytest.mark.parametrize("arch", ARCHS + ("image_classification",))
def test_towers_load_from_a_full_checkpoint(fixture_dir, fixture_state, arch):
    _, full = fixture_state
    config, state = load_checkpoint(fixture_dir, arch=arch)
    expected_class = {"clip": CLIPConfig, "image_classification": CLIPConfig}.get(
        arch, CLIPTextConfig if arch.startswith("text") else CLIPVisionConfig)
    assert type(config) is expected_class
    assert list(state) == list(param_table(config, arch))
    for name, value in state.items():
        if not name.startswith("classifier."):
            assert value.tobytes() == full[name].tobytes(), name
    if arch.endswith("projection"):
        # config.json's tower configs say projection_dim 512 (stale, as transformers writes it); the weights say 32
        assert json.loads((fixture_dir / "config.json").read_text())["text_config"]["projection_dim"] == 512
        assert config.projection_dim == 32


def test_fixture_writers_match_transformers_byte_for_byte(fixture_dir, fixture_state, tmp_path):
    """Our flax msgpack is byte-identical to FlaxCLIPModel's; our h5 has the same layout, names and values."""
    import h5py

    config, state = fixture_state
    save_checkpoint(tmp_path / "out", config, state, formats=["flax", "tf"])
    assert (tmp_path / "out" / "flax_model.msgpack").read_bytes() == (fixture_dir / "flax_model.msgpack").read_bytes()
    with h5py.File(fixture_dir / "tf_model.h5") as theirs, h5py.File(tmp_path / "out" / "tf_model.h5") as ours:
        assert set(ours.attrs) == set(theirs.attrs) == {"layer_names", "backend", "keras_version"}
        assert list(ours.attrs["layer_names"]) == list(theirs.attrs["layer_names"]) == ["clip"]
        assert set(ours) == set(theirs) == {"clip", "top_level_model_weights"}

        def weights(f):
            return {n.split("/", 1)[1]: f["clip"][n][()] for n in f["clip"].attrs["weight_names"]}
        theirs_w, ours_w = weights(theirs), weights(ours)
        assert set(ours_w) == set(theirs_w)
        for name in theirs_w:
            assert ours_w[name].dtype == theirs_w[name].dtype and np.array_equal(ours_w[name], theirs_w[name]), name
        assert all(n.startswith("tfclip_model/clip/") for n in ours["clip"].attrs["weight_names"])


# ---------------------------------------------------------------------------------------------- round trips
@pytest.mark.parametrize("fmt", ck.FORMATS)
@pytest.mark.parametrize("arch", ALL_ARCHS)
def test_round_trip_is_bit_exact(arch, fmt, tmp_path):
    config = arch_config(arch)
    state = init_state(config, arch, seed=3)
    save_checkpoint(tmp_path / "ckpt", config, state, formats=fmt, arch=arch)
    assert sorted(os.listdir(tmp_path / "ckpt")) == sorted(["config.json", ck.WEIGHTS_NAMES[fmt]])
    if fmt == "safetensors":
        from safetensors import safe_open
        with safe_open(str(tmp_path / "ckpt" / "model.safetensors"), framework="np") as f:
            assert f.metadata() == {"format": "pt"}
    loaded_config, loaded = load_checkpoint(tmp_path / "ckpt", arch=arch)
    assert_same_state(loaded, state)
    assert loaded_config.to_dict() == {**config.to_dict(), "architectures": [ck.HF_CLASSES[arch]]}
    again_config, again, detected = ck.load_any(tmp_path / "ckpt")
    assert detected == arch and again_config == loaded_config
    assert_same_state(again, state)


@pytest.mark.parametrize("source", ck.FORMATS)
def test_conversion_between_every_pair_of_formats_is_lossless(source, tmp_path):
    config = micro_config()
    state = init_state(config, "clip", seed=5)
    save_checkpoint(tmp_path / "src", config, state, formats=source)
    for target in ck.FORMATS:
        ck.convert_checkpoint(tmp_path / "src", tmp_path / target, formats=target)
        _, converted = load_checkpoint(tmp_path / target, format=target)
        assert_same_state(converted, state)


@pytest.mark.parametrize("fmt", ck.FORMATS)
def test_float16_stays_float16(fmt, tmp_path):
    config = micro_config()
    state = {k: v.astype(np.float16) for k, v in init_state(config, "clip", seed=1).items()}
    save_checkpoint(tmp_path / "ckpt", config, state, formats=fmt)
    _, loaded = load_checkpoint(tmp_path / "ckpt")
    assert_same_state(loaded, state)


def test_bfloat16_written_as_bfloat16_read_as_float32(tmp_path):
    ml_dtypes = pytest.importorskip("ml_dtypes")
    from safetensors import safe_open

    config = micro_config()
    state = {k: v.astype(ml_dtypes.bfloat16) for k, v in init_state(config, "clip", seed=2).items()}
    save_checkpoint(tmp_path / "ckpt", config, state, formats="all")
    with safe_open(str(tmp_path / "ckpt" / "model.safetensors"), framework="np") as f:
        assert {f.get_slice(k).get_dtype() for k in f.keys()} == {"BF16"}
    widened = {k: v.astype(np.float32) for k, v in state.items()}
    for fmt in ck.FORMATS:
        _, loaded = load_checkpoint(tmp_path / "ckpt", format=fmt)
        assert_same_state(loaded, widened)


def test_sharded_safetensors_and_pytorch(tmp_path, fixture_state):
    config, state = fixture_state
    save_checkpoint(tmp_path / "ckpt", config, state, formats=["safetensors", "pytorch"], max_shard_size="200KB")
    files = sorted(os.listdir(tmp_path / "ckpt"))
    shards = [f for f in files if f.startswith("model-")]
    assert len(shards) > 2 and all(f.endswith(f"-of-{len(shards):05d}.safetensors") for f in shards)
    index = json.loads((tmp_path / "ckpt" / "model.safetensors.index.json").read_text())
    assert set(index["weight_map"]) == set(state) and set(index["weight_map"].values()) == set(shards)
    assert index["metadata"]["total_size"] == sum(v.nbytes for v in state.values())
    for shard in shards[:-1]:  # every shard but the last holds one tensor at most past the limit
        assert (tmp_path / "ckpt" / shard).stat().st_size < 200_000 + 1000 + max(v.nbytes for v in state.values())
    for fmt in ("safetensors", "pytorch"):
        _, loaded = load_checkpoint(tmp_path / "ckpt", format=fmt)
        assert_same_state(loaded, state)
    _, via_index = load_checkpoint(tmp_path / "ckpt" / "pytorch_model.bin.index.json")
    assert_same_state(via_index, state)
    # saving again unsharded replaces the shards: nothing stale is left to be preferred on load
    save_checkpoint(tmp_path / "ckpt", config, state, formats="flax")
    assert sorted(os.listdir(tmp_path / "ckpt")) == ["config.json", "flax_model.msgpack"]
    assert ck.parse_size("2GB") == 2 * 10 ** 9 and ck.parse_size("1MiB") == 2 ** 20 and ck.parse_size(7) == 7
    with pytest.raises(ValueError, match="max_shard_size"):
        ck.parse_size("lots")


def test_flax_msgpack_against_flax_itself(tmp_path, monkeypatch, fixture_state):
    """flax reads what we write (chunked arrays too) and we read flax's scalar and complex extension types."""
    serialization = pytest.importorskip("flax.serialization")
    config, state = fixture_state
    table = param_table(config)
    monkeypatch.setattr(flax_msgpack, "FLAX_MAX_CHUNK_SIZE", 4096)  # force flax's chunked form for the big tables
    ck.write_flax_msgpack(tmp_path / "flax_model.msgpack", state, table)
    restored = serialization.msgpack_restore((tmp_path / "flax_model.msgpack").read_bytes())
    expected = dict(flatten_tree(to_flax_tree(state, table)))
    got = dict(flatten_tree(restored))
    assert set(got) == set(expected)
    for path, value in expected.items():
        assert np.array_equal(np.asarray(got[path]), value), path
    _, back = load_checkpoint(tmp_path / "flax_model.msgpack", config=config)
    assert_same_state(back, state)
    theirs = serialization.msgpack_serialize({"a": np.float32(1.5), "b": complex(1, -2), "c": {"d": np.arange(3.0)},
                                              "e": np.zeros((2, 0), np.float16)})
    ours = ck.flax_msgpack_loads(theirs)
    assert ours["a"] == np.float32(1.5) and ours["b"] == complex(1, -2)
    assert np.array_equal(ours["c"]["d"], np.arange(3.0)) and ours["e"].shape == (2, 0)


def test_h5_with_chunked_weight_names(tmp_path, fixture_dir, fixture_state):
    """Keras splits attributes over 64 KiB into weight_names0, weight_names1, ...: both spellings read."""
    import h5py

    path = tmp_path / "tf_model.h5"
    shutil.copy(fixture_dir / "tf_model.h5", path)
    with h5py.File(path, "r+") as f:
        names = list(f["clip"].attrs["weight_names"])
        del f["clip"].attrs["weight_names"]
        for i, part in enumerate(np.array_split(np.array(names, dtype=h5py.string_dtype()), 3)):
            f["clip"].attrs[f"weight_names{i}"] = part
    _, state = load_checkpoint(path, config=fixture_state[0])
    assert_same_state(state, fixture_state[1])


@pytest.mark.parametrize("framework", ["tf", "flax"])
def test_safetensors_written_by_transformers_tf_and_flax_models(framework, tmp_path, fixture_state):
    """TFCLIPModel / FlaxCLIPModel ``save_pretrained(safe_serialization=True)`` keep their own names and layouts
    (``clip/text_model/.../kernel:0`` with metadata format "tf"; ``text_model....kernel`` with format "flax")."""
    from safetensors.numpy import save_file

    config, state = fixture_state
    table = param_table(config)
    if framework == "tf":
        theirs = {f"clip/{tf_name(spec)}": to_framework_layout(state[n], spec.kind, "tf") for n, spec in table.items()}
    else:
        theirs = {".".join(flax_path(spec)): to_framework_layout(state[n], spec.kind, "flax")
                  for n, spec in table.items()}
    config.save_pretrained(tmp_path)
    save_file(theirs, str(tmp_path / "model.safetensors"), metadata={"format": framework})
    _, loaded = load_checkpoint(tmp_path)
    assert_same_state(loaded, state)


def test_hub_repo_ids_resolve_through_hub_module(monkeypatch, fixture_dir, fixture_state):
    files = {"config.json", "tf_model.h5"}

    def fake_resolve(repo, filename, *, required=True, revision=None, cache_dir=None, token=None):
        assert repo == "someone/tiny-clip" and revision == "abc"
        if filename in files:
            return fixture_dir / filename
        if required:
            raise FileNotFoundError(filename)
        return None

    monkeypatch.setattr(ck, "resolve_file", fake_resolve)
    config, state = load_checkpoint("someone/tiny-clip", revision="abc")
    assert config == fixture_state[0]
    assert_same_state(state, fixture_state[1])
    files.discard("tf_model.h5")
    with pytest.raises(FileNotFoundError, match=r"someone/tiny-clip.*model\.safetensors.*flax_model\.msgpack"):
        load_checkpoint("someone/tiny-clip", revision="abc")


def test_progress_bar_only_for_large_files_on_a_tty(monkeypatch):
    class Tty:
        def isatty(self):
            return True

        def write(self, text):
            pass

        def flush(self):
            pass

    monkeypatch.delenv("TRICLIP_NO_PROGRESS", raising=False)
    monkeypatch.setattr(sys, "stderr", Tty())
    assert isinstance(ck._progress(10 ** 6, "small"), ck._NoProgress)
    bar = ck._progress(10 ** 9, "large")
    assert not isinstance(bar, ck._NoProgress)
    bar.close()
    monkeypatch.setenv("TRICLIP_NO_PROGRESS", "1")
    assert isinstance(ck._progress(10 ** 9, "large"), ck._NoProgress)
    monkeypatch.delenv("TRICLIP_NO_PROGRESS")
    monkeypatch.setattr(sys, "stderr", open(os.devnull, "w"))
    assert isinstance(ck._progress(10 ** 9, "large"), ck._NoProgress)


# ---------------------------------------------------------------------------------------------- transformers
@pytest.fixture(scope="module")
def ours_for_transformers(tmp_path_factory, fixture_dir):
    """The fixture's weights saved by us, in every format, for every arch: {arch: (config, state, directory)}."""
    out = {}
    for arch in ARCHS:
        config, state = load_checkpoint(fixture_dir, arch=arch)
        directory = tmp_path_factory.mktemp(f"ours-{arch}")
        save_checkpoint(directory, config, state, formats="all", arch=arch, overwrite=True)
        out[arch] = (config, state, directory)
    return out


def _only(directory: Path, weight_file: str, tmp: Path) -> Path:
    tmp.mkdir(parents=True, exist_ok=True)
    return single_format_dir(directory, weight_file, tmp)


PT_CLASSES = {"clip": "CLIPModel", "text": "CLIPTextModel", "text_projection": "CLIPTextModelWithProjection",
              "vision": "CLIPVisionModel", "vision_projection": "CLIPVisionModelWithProjection"}


@pytest.mark.parametrize("arch", ARCHS)
def test_transformers_pytorch_reads_ours_and_we_read_theirs(arch, ours_for_transformers, tmp_path):
    pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    config, state, directory = ours_for_transformers[arch]
    cls = getattr(transformers, PT_CLASSES[arch])
    for weight_file in ("model.safetensors", "pytorch_model.bin"):
        model, info = cls.from_pretrained(_only(directory, weight_file, tmp_path / weight_file),
                                          output_loading_info=True)
        assert not (info["missing_keys"] or info["unexpected_keys"] or info["mismatched_keys"]), info
        theirs = {k: v.detach().numpy() for k, v in model.state_dict().items() if not k.endswith("position_ids")}
        assert_same_state(theirs, state)
    model.save_pretrained(tmp_path / "theirs", safe_serialization=False)
    loaded_config, loaded = load_checkpoint(tmp_path / "theirs", arch=arch)
    assert_same_state(loaded, state)
    assert loaded_config.projection_dim == config.projection_dim


TF_CLASSES = {"clip": "TFCLIPModel", "text": "TFCLIPTextModel", "vision": "TFCLIPVisionModel"}


@pytest.mark.parametrize("arch", list(TF_CLASSES))
def test_transformers_tensorflow_reads_ours_and_we_read_theirs(arch, ours_for_transformers, tmp_path):
    pytest.importorskip("tensorflow")
    pytest.importorskip("tf_keras")
    transformers = pytest.importorskip("transformers")
    config, state, directory = ours_for_transformers[arch]
    cls = getattr(transformers, TF_CLASSES[arch])
    model, info = cls.from_pretrained(_only(directory, "tf_model.h5", tmp_path), output_loading_info=True)
    assert not (info["missing_keys"] or info["unexpected_keys"] or info["mismatched_keys"]), info
    table = param_table(config, arch)
    theirs = {"/".join(v.name.split("/")[1:]): v.numpy() for v in model.weights}
    expected = {f"clip/{tf_name(spec)}": to_framework_layout(state[name], spec.kind, "tf")
                for name, spec in table.items()}
    assert set(theirs) == set(expected)
    for name, value in expected.items():
        assert np.array_equal(theirs[name], value), name
    model.save_pretrained(tmp_path / "theirs")  # e.g. tfclip_text_model/clip/text_model/...
    _, loaded = load_checkpoint(tmp_path / "theirs", arch=arch)
    assert_same_state(loaded, state)


FLAX_CLASSES = {"clip": "FlaxCLIPModel", "text": "FlaxCLIPTextModel",
                "text_projection": "FlaxCLIPTextModelWithProjection", "vision": "FlaxCLIPVisionModel"}


@pytest.mark.parametrize("arch", list(FLAX_CLASSES))
def test_transformers_flax_reads_ours_and_we_read_theirs(arch, ours_for_transformers, tmp_path):
    pytest.importorskip("flax")
    transformers = pytest.importorskip("transformers")
    config, state, directory = ours_for_transformers[arch]
    cls = getattr(transformers, FLAX_CLASSES[arch])
    model = cls.from_pretrained(_only(directory, "flax_model.msgpack", tmp_path))
    theirs = dict(flatten_tree(model.params))
    expected = dict(flatten_tree(to_flax_tree(state, param_table(config, arch))))
    assert set(theirs) == set(expected)  # nothing missing, nothing left over
    for path, value in expected.items():
        assert np.array_equal(np.asarray(theirs[path]), value), path
    model.save_pretrained(tmp_path / "theirs")
    _, loaded = load_checkpoint(tmp_path / "theirs", arch=arch)
    assert_same_state(loaded, state)


# ---------------------------------------------------------------------------------------------- errors
def test_missing_paths_and_empty_directories(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere"):
        load_checkpoint(tmp_path / "nowhere")
    with pytest.raises(FileNotFoundError, match="gone.safetensors"):
        ck.read_state_file(tmp_path / "gone.safetensors")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError) as err:
        load_checkpoint(tmp_path / "empty")
    message = str(err.value)
    assert str(tmp_path / "empty") in message and all(name in message for name in ck.SEARCH_ORDER[:6])
    micro_config().save_pretrained(tmp_path / "config-only")
    with pytest.raises(FileNotFoundError, match="config-only"):
        load_checkpoint(tmp_path / "config-only")
    save_checkpoint(tmp_path / "no-config", micro_config(), init_state(micro_config()))
    (tmp_path / "no-config" / "config.json").unlink()
    with pytest.raises(FileNotFoundError, match="config.json"):
        load_checkpoint(tmp_path / "no-config")
    with pytest.raises(ValueError, match="format"):
        save_checkpoint(tmp_path / "x", micro_config(), init_state(micro_config()), formats="onnx")


@pytest.mark.parametrize("weight_file", WEIGHT_FILES)
def test_truncated_files_raise_corrupt_naming_the_file(weight_file, tmp_path, fixture_dir):
    data = (fixture_dir / weight_file).read_bytes()
    for cut in (0, 7, 100, len(data) // 2, len(data) - 1):
        folder = tmp_path / f"cut{cut}"
        folder.mkdir()
        shutil.copy(fixture_dir / "config.json", folder)
        (folder / weight_file).write_bytes(data[:cut])
        with pytest.raises(CorruptCheckpointError, match=str(folder / weight_file).replace(".", r"\.")):
            load_checkpoint(folder)


def _evil(marker: Path):
    class Evil:
        def __reduce__(self):
            return os.system, (f"touch {marker}",)
    return Evil()


def test_malicious_pickles_are_refused_without_running(tmp_path):
    torch = pytest.importorskip("torch")
    marker = tmp_path / "PWNED"
    state = {"text_model.embeddings.token_embedding.weight": torch.ones(2, 2), "payload": _evil(marker)}
    # a legacy (non-zip) pickle and a torch.save zip, both as pytorch_model.bin
    (tmp_path / "legacy").mkdir()
    (tmp_path / "legacy" / "pytorch_model.bin").write_bytes(pickle.dumps(state))
    (tmp_path / "zip").mkdir()
    torch.save(state, tmp_path / "zip" / "pytorch_model.bin")
    for folder in ("legacy", "zip"):
        micro_config().save_pretrained(tmp_path / folder)
        with pytest.raises(UnsafeCheckpointError, match="pytorch_model.bin") as err:
            load_checkpoint(tmp_path / folder)
        assert isinstance(err.value, ValueError) and "not a plain weights pickle" in str(err.value)
    # the restricted reader (TorchScript archives, or torch missing) refuses it too
    with pytest.raises(UnsafeCheckpointError, match="posix.system|os.system"):
        from clip_core.openai import read_torch_zip
        read_torch_zip(tmp_path / "zip" / "pytorch_model.bin")
    assert not marker.exists()


def test_mis_shaped_missing_and_unexpected_tensors_are_all_named(tmp_path):
    from safetensors.numpy import save_file

    config = micro_config()
    state = init_state(config)
    state["text_model.encoder.layers.0.mlp.fc1.weight"] = np.zeros((5, 8), np.float32)
    del state["vision_model.post_layernorm.bias"]
    state["vision_model.extra.weight"] = np.zeros(3, np.float32)
    config.save_pretrained(tmp_path)
    save_file(state, str(tmp_path / "model.safetensors"))
    with pytest.raises(StateMismatchError) as err:
        load_checkpoint(tmp_path)
    message = str(err.value)
    assert "text_model.encoder.layers.0.mlp.fc1.weight: expected (16, 8), found (5, 8)" in message
    assert "vision_model.post_layernorm.bias" in message and "vision_model.extra.weight" in message
    assert str(tmp_path / "model.safetensors") in message
    assert err.value.missing == ["vision_model.post_layernorm.bias"]
    assert err.value.unexpected == ["vision_model.extra.weight"]
    with pytest.raises(StateMismatchError, match="fc1.weight: expected"):  # refused on save too
        save_checkpoint(tmp_path / "out", config, state)
    assert not (tmp_path / "out").exists()


def test_config_that_disagrees_with_the_weights(tmp_path, fixture_dir):
    folder = single_format_dir(fixture_dir, "tf_model.h5", tmp_path)
    data = json.loads((fixture_dir / "config.json").read_text())
    data["vision_config"]["intermediate_size"] = 100
    data["projection_dim"] = 16
    (folder / "config.json").unlink()
    (folder / "config.json").write_text(json.dumps(data))
    with pytest.raises(StateMismatchError) as err:
        load_checkpoint(folder)
    message = str(err.value)
    assert "vision_model.encoder.layers.1.mlp.fc1.weight: expected (100, 48), found (96, 48)" in message
    assert "text_projection.weight: expected (16, 64), found (32, 64)" in message
    assert isinstance(err.value, ValueError)


def test_overwrite_refusal_and_atomic_writes(tmp_path, monkeypatch):
    config, state = micro_config(), init_state(micro_config())
    precious = tmp_path / "precious"
    precious.mkdir()
    (precious / "notes.txt").write_text("keep me")
    with pytest.raises(FileExistsError, match="precious"):
        save_checkpoint(precious, config, state)
    assert os.listdir(precious) == ["notes.txt"]
    save_checkpoint(precious, config, state, overwrite=True)
    assert sorted(os.listdir(precious)) == ["config.json", "model.safetensors", "notes.txt"]

    # a failure in the second format leaves an existing checkpoint exactly as it was
    existing = tmp_path / "existing"
    save_checkpoint(existing, config, state, formats=["safetensors", "pytorch"])
    before = {p.name: p.read_bytes() for p in existing.iterdir()}

    def broken(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(keras_h5, "write_tf_h5", broken)
    other = init_state(config, seed=9)
    with pytest.raises(OSError, match="disk full"):  # any write failure is an OSError naming its cause
        save_checkpoint(existing, config, other, formats=["safetensors", "tf"])
    assert {p.name: p.read_bytes() for p in existing.iterdir()} == before
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(tmp_path / "fresh", config, other, formats=["flax", "tf"])
    assert not (tmp_path / "fresh").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["existing", "precious"]  # no temporary left behind


# ---------------------------------------------------------------------------------------------- corruption fuzzer
class _Timeout(Exception):
    pass


@pytest.mark.parametrize("weight_file", WEIGHT_FILES + ("torch-zip-restricted",))
def test_fuzzed_files_load_or_raise_documented_errors(weight_file, tmp_path, fixture_dir, monkeypatch):
    """~30 seeded truncations and bit flips per reader; ``torch-zip-restricted`` is pytorch_model.bin through the
    reader that needs no torch (the TorchScript one)."""
    if weight_file == "torch-zip-restricted":
        from clip_core import openai
        monkeypatch.setitem(ck._READERS, "pytorch", openai.read_torch_zip)
        weight_file = "pytorch_model.bin"
    rng = np.random.default_rng(sum(map(ord, weight_file)))
    original = (fixture_dir / weight_file).read_bytes()
    folder = tmp_path / "fuzz"
    folder.mkdir()
    shutil.copy(fixture_dir / "config.json", folder)
    target = folder / weight_file
    outcomes = {"loaded": 0, "refused": 0}

    def alarm(signum, frame):
        raise _Timeout(f"reading a fuzzed {weight_file} took more than 60 s")

    previous = signal.signal(signal.SIGALRM, alarm)
    signal.alarm(60)
    try:
        for case in range(30):
            data = bytearray(original)
            if case % 3 == 0:
                data = data[: int(rng.integers(0, len(data)))]
            else:
                for _ in range(int(rng.integers(1, 4))):
                    # half the flips land in the first or last 4 KiB, where the headers and indexes live
                    region = rng.integers(3)
                    low, high = [(0, len(data)), (0, 4096), (len(data) - 4096, len(data))][region]
                    position = int(rng.integers(max(low, 0), high))
                    data[position] ^= 1 << int(rng.integers(8))
            target.write_bytes(bytes(data))
            try:
                config, state = load_checkpoint(folder)
            except DOCUMENTED as err:
                assert not isinstance(err, CorruptCheckpointError) or str(target) in str(err)
                outcomes["refused"] += 1
            else:
                ck.validate_state(state, param_table(config))
                outcomes["loaded"] += 1
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
    assert outcomes["refused"] >= 10  # every truncation at least


# ---------------------------------------------------------------------------------------------- imports and memory
def test_reading_every_format_imports_no_other_framework(fixture_dir):
    script = f"""
import sys
sys.path.insert(0, {str(ROOT)!r})
from clip_core import checkpoints
for name in ("model.safetensors", "tf_model.h5", "flax_model.msgpack"):
    checkpoints.load_checkpoint({str(fixture_dir)!r} + "/" + name)
    assert "torch" not in sys.modules, name
checkpoints.load_checkpoint({str(fixture_dir)!r} + "/pytorch_model.bin")
bad = sorted(m for m in sys.modules if m.split(".")[0] in ("tensorflow", "jax", "flax", "keras", "tf_keras"))
assert not bad, bad
print("ok", "torch" in sys.modules)
"""
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["ok", "True"]


def test_safetensors_peak_memory_stays_below_twice_the_file(tmp_path):
    config = CLIPTextConfig(vocab_size=190_000, hidden_size=64, intermediate_size=128, num_hidden_layers=1,
                            num_attention_heads=2, max_position_embeddings=8)
    state = init_state(config, "text")
    save_checkpoint(tmp_path / "big", config, state, arch="text")
    del state
    size = (tmp_path / "big" / "model.safetensors").stat().st_size
    assert size > 45e6
    tracemalloc.start()
    try:
        _, loaded = load_checkpoint(tmp_path / "big", arch="text")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert sum(v.nbytes for v in loaded.values()) > 45e6
    assert peak < 2 * size, f"peak {peak / 1e6:.1f} MB for a {size / 1e6:.1f} MB file"
