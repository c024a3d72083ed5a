"""Issue 20, classes 4 and 7 (checkpoint side): what the config implies bounds a read before any data is read,
tensors the model lacks are named but not read, and deeply nested pickles / msgpack trees are refused cleanly.

The files are made here: a larger model's checkpoint beside the tiny config (legitimate for its size, far beyond
the config), stride-0 tensors claiming 10**12 values, files of many fat tensors, nestings 100,000 deep.
"""

from __future__ import annotations

import functools
import json
import math
import pickle
import struct
import tracemalloc
import zipfile

import numpy as np
import pytest

from clip_core.checkpoints import CorruptCheckpointError, load_checkpoint, save_checkpoint
from clip_core.config import CLIPConfig
from clip_core.formats import flax_msgpack, keras_h5, pytorch, safetensors
from clip_core.formats._common import UnreadTensor
from clip_core.formats.expect import expectation_for
from clip_core.weights import ParamSpec, StateMismatchError, init_state, param_table

from tests.test_errors import CONFIG  # noqa: E402  (the tiny CLIP every error test uses)

FORMATS = {"safetensors": "model.safetensors", "pytorch": "pytorch_model.bin", "tf": "tf_model.h5",
           "flax": "flax_model.msgpack"}
#: The tiny config's largest parameter: the patch convolution, 16 x 3 x 8 x 8.
LARGEST = 16 * 3 * 8 * 8
#: The same architecture with a 60,000-token vocabulary: a 3.8 MB token table, legitimate in its own file.
BIG = CLIPConfig(projection_dim=8, text_config=dict(CONFIG.text_config.to_dict(), vocab_size=60_000),
                 vision_config=CONFIG.vision_config.to_dict())
TOKEN_TABLE = "text_model.embeddings.token_embedding.weight"


@functools.lru_cache(maxsize=None)
def _reference_bound() -> int:
    """8 bytes per parameter value of CLIPModel + the classifier head (counted by transformers, live) + 64 KiB +
    8 bytes per position (the position_ids buffers)."""
    import transformers

    hf = transformers.CLIPConfig.from_dict(CONFIG.to_dict())
    values = transformers.CLIPModel(hf).num_parameters()
    classifier = transformers.CLIPForImageClassification(hf).classifier
    values += sum(p.numel() for p in classifier.parameters())
    positions = CONFIG.text_config.max_position_embeddings + (16 // 8) ** 2 + 1
    return 8 * values + 64 * 1024 + 8 * positions


def _peak(call) -> tuple[int, BaseException | None]:
    """Peak traced memory (numpy's allocations included) while ``call()`` runs, and what it raised."""
    tracemalloc.start()
    raised = None
    try:
        try:
            call()
        except Exception as err:  # noqa: BLE001 - returned for the caller to check
            raised = err
        return tracemalloc.get_traced_memory()[1], raised
    finally:
        tracemalloc.stop()


# ---------------------------------------------------------------------------------------------- normal loads
@pytest.mark.parametrize("fmt", list(FORMATS) + ["safetensors-sharded", "pytorch-sharded"])
def test_round_trip_still_loads_exactly(tmp_path, fmt):
    if fmt.startswith("pytorch"):
        pytest.importorskip("torch")
    state = init_state(CONFIG, "clip", seed=3)
    sharded = fmt.endswith("-sharded")
    save_checkpoint(tmp_path, CONFIG, state, formats=fmt.split("-")[0], max_shard_size=2_000 if sharded else None)
    if sharded:
        assert len([p for p in tmp_path.iterdir() if "-of-" in p.name]) > 3
    _, loaded = load_checkpoint(tmp_path)
    assert sorted(loaded) == sorted(state)
    for name, value in state.items():
        assert isinstance(loaded[name], np.ndarray), name
        np.testing.assert_array_equal(loaded[name], value, err_msg=name)


# ---------------------------------------------------------------------------------------------- far beyond the config
@pytest.mark.parametrize("fmt", list(FORMATS))
def test_a_larger_models_file_beside_the_tiny_config_is_refused_before_reading(tmp_path, fmt):
    if fmt == "pytorch":
        pytest.importorskip("torch")
    save_checkpoint(tmp_path, BIG, init_state(BIG, "clip"), formats=fmt)
    size = (tmp_path / FORMATS[fmt]).stat().st_size
    assert size > 3_800_000
    # the bigger config's own load reads it all: tracemalloc sees those allocations
    read_peak, raised = _peak(lambda: load_checkpoint(tmp_path, config=BIG))
    assert raised is None and read_peak > size
    CONFIG.save_pretrained(tmp_path)  # now the folder claims the tiny model
    peak, raised = _peak(lambda: load_checkpoint(tmp_path))
    # the model's own parameters at other shapes are not read, only reported (ignore_mismatched_sizes would
    # initialise them anew); every one of them is named with both shapes
    assert isinstance(raised, StateMismatchError), raised
    message = str(raised)
    assert FORMATS[fmt] in message, message
    assert f"{TOKEN_TABLE}: expected (50, 16), found (60000, 16)" in message, message
    if fmt == "flax":  # msgpack decodes the file whole: the array's raw bytes exist, its copy is never made
        assert peak < 0.75 * read_peak, (peak, read_peak)
    else:  # nothing of the table's size was allocated
        assert peak < 1_000_000, peak


@pytest.mark.parametrize("reader", ["read_pytorch", "read_torch_zip"])
def test_a_stride_0_tensor_claiming_10_to_the_12_values_is_never_materialised(tmp_path, reader):
    torch = pytest.importorskip("torch")
    state = {name: torch.from_numpy(value) for name, value in init_state(CONFIG, "clip").items()}
    state[TOKEN_TABLE] = torch.zeros(1).expand(10 ** 6, 10 ** 6)  # one stored value
    path = tmp_path / "pytorch_model.bin"
    torch.save(state, path)
    assert path.stat().st_size < 200_000
    read = getattr(pytorch, reader)
    found = {}
    peak, raised = _peak(lambda: found.update(read(path, expect=expectation_for(CONFIG))))
    assert raised is None, raised
    # one of the model's parameters at another shape: not read, kept by name and shape for the mismatch report
    assert isinstance(found[TOKEN_TABLE], UnreadTensor) and tuple(found[TOKEN_TABLE].shape) == (10 ** 6, 10 ** 6)
    assert peak < 1_000_000, peak
    CONFIG.save_pretrained(tmp_path)  # through the loader, the config read first: the mismatch, named
    with pytest.raises(StateMismatchError, match=r"expected \(50, 16\), found \(1000000, 1000000\)"):
        load_checkpoint(tmp_path)
    del state[TOKEN_TABLE]
    state["text_model.extra.weight"] = torch.zeros(1).expand(10 ** 6, 10 ** 6)  # a tensor the model lacks
    torch.save(state, path)
    peak, raised = _peak(lambda: read(path, expect=expectation_for(CONFIG)))
    assert isinstance(raised, CorruptCheckpointError), raised
    assert str(raised).startswith(f"{path}: tensor text_model.extra.weight has shape (1000000, 1000000) "
                                  "(1,000,000,000,000 values), more than any parameter"), raised
    assert "the config (CLIPConfig) implies at most 3,072 values" in str(raised)
    assert peak < 1_000_000, peak


def _msgpack_array(shape, dtype: str, payload: bytes) -> bytes:
    import msgpack

    inner = msgpack.packb([list(shape), dtype, payload], use_bin_type=True)
    return struct.pack(">BIb", 0xC9, len(inner), 1) + inner


def test_a_msgpack_array_claiming_10_to_the_12_values_is_refused_by_the_config(tmp_path):
    import msgpack

    tree = {"text_model": {"embeddings": {"token_embedding": {"embedding": b"@ARRAY@"}}}}
    body = msgpack.packb(tree, use_bin_type=True)
    body = body.replace(msgpack.packb(b"@ARRAY@", use_bin_type=True), _msgpack_array((10 ** 6, 10 ** 6), "float32",
                                                                                     b"\0" * 4))
    path = tmp_path / "flax_model.msgpack"
    path.write_bytes(body)
    with pytest.raises(CorruptCheckpointError, match=r"malformed array"):  # without a config: the buffer's size
        flax_msgpack.read_flax_msgpack(path)
    with pytest.raises(CorruptCheckpointError, match=r"malformed array"):  # with one: the same, nothing made
        flax_msgpack.read_flax_msgpack(path, expect=expectation_for(CONFIG))


def _fat_state(names, values=LARGEST):
    """Every name a float64 tensor of ``values`` values: each within the largest parameter, together far beyond."""
    return {name: np.full(values, 0.5) for name in names}


@pytest.mark.parametrize("fmt", ["safetensors", "pytorch"])
def test_the_models_names_at_other_shapes_are_reported_not_read(tmp_path, fmt):
    names = list(param_table(CONFIG, "clip"))
    bound = _reference_bound()
    assert len(names) * 8 * LARGEST > 5 * bound  # read, they would pass the bound five times over
    path = tmp_path / FORMATS[fmt]
    if fmt == "safetensors":
        safetensors.write_safetensors(path, _fat_state(names))
    else:
        pytorch.write_pytorch(path, _fat_state(names))
    peak, raised = _peak(lambda: load_checkpoint(path, config=CONFIG))
    assert isinstance(raised, StateMismatchError), raised
    assert f"{TOKEN_TABLE}: expected (50, 16), found ({LARGEST},)" in str(raised), raised
    assert peak < bound, peak  # none of the fat tensors was read


def test_the_total_is_counted_over_every_shard(tmp_path):
    """Shards that each repeat the whole model (at its shapes, in float64): each within the bound, together far
    beyond it; refused at the shard that passes it, before reading it."""
    state = {name: value.astype(np.float64) for name, value in init_state(CONFIG, "clip").items()}
    bound = _reference_bound()
    per_shard = 8 * sum(value.size for value in state.values())
    assert per_shard <= bound < 4 * per_shard
    names = sorted(state)
    weight_map = {}
    for i in range(4):
        shard = f"model-{i + 1:05d}-of-00004.safetensors"
        safetensors.write_safetensors(tmp_path / shard, state)
        weight_map.update({name: shard for name in names[i::4]})
        safetensors.read_safetensors(tmp_path / shard, expect=expectation_for(CONFIG))  # alone: within
    (tmp_path / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    CONFIG.save_pretrained(tmp_path)
    with pytest.raises(CorruptCheckpointError, match=rf"model-0000[2-4]-of-00004\.safetensors: with .* its tensors "
                                                     rf"would take .* implies at most {bound:,} bytes"):
        load_checkpoint(tmp_path)


# ---------------------------------------------------------------------------------------------- unexpected tensors
def _with_extra(fmt, path):
    """A tiny CLIP file holding two tensors the model lacks: ``extra.unused`` (2000 values) and, where the format
    has buffers, ``text_model.embeddings.position_ids``."""
    state = init_state(CONFIG, "clip", seed=5)
    extra = np.arange(2000, dtype=np.float32)
    if fmt == "safetensors":
        safetensors.write_safetensors(path, {**state, "extra.unused": extra,
                                             "text_model.embeddings.position_ids": np.arange(7)[None]})
    elif fmt == "pytorch":
        torch = pytest.importorskip("torch")
        torch.save({**{k: torch.from_numpy(v) for k, v in state.items()}, "extra.unused": torch.from_numpy(extra),
                    "text_model.embeddings.position_ids": torch.arange(7)[None]}, path)
    else:
        table = dict(param_table(CONFIG, "clip"), **{"extra.unused": ParamSpec("extra.unused", (2000,), "vector")})
        writer = keras_h5.write_tf_h5 if fmt == "tf" else flax_msgpack.write_flax_msgpack
        writer(path, {**state, "extra.unused": extra}, table)
    return state


@pytest.mark.parametrize("fmt", list(FORMATS))
def test_tensors_the_model_lacks_are_named_with_their_shape_but_not_read(tmp_path, fmt):
    path = tmp_path / FORMATS[fmt]
    state = _with_extra(fmt, path)
    reader = {"safetensors": safetensors.read_safetensors, "pytorch": pytorch.read_pytorch,
              "tf": keras_h5.read_tf_h5, "flax": flax_msgpack.read_flax_msgpack}[fmt]
    read = reader(path, expect=expectation_for(CONFIG))
    unread = {name for name, value in read.items() if isinstance(value, UnreadTensor)}
    buffers = {"text_model.embeddings.position_ids"} if fmt in ("safetensors", "pytorch") else set()
    assert unread == {"extra.unused"} | buffers
    assert read["extra.unused"].shape == (2000,) and np.asarray(read["extra.unused"]).strides == (0,)
    for name, value in state.items():  # the model's own tensors are read in full
        np.testing.assert_array_equal(read[name], value, err_msg=name)
    everything = reader(path)  # without a config every tensor is read, as before
    np.testing.assert_array_equal(everything["extra.unused"], np.arange(2000, dtype=np.float32))


@pytest.mark.parametrize("fmt", ["safetensors", "pytorch", "tf"])
def test_a_tower_loaded_from_a_full_checkpoint_leaves_the_other_tower_unread(tmp_path, fmt):
    if fmt == "pytorch":
        pytest.importorskip("torch")
    # a large vision tower (4.7 MB of float32) beside the tiny text tower
    config = CLIPConfig(projection_dim=8, text_config=CONFIG.text_config.to_dict(),
                        vision_config=dict(hidden_size=128, intermediate_size=512, num_hidden_layers=6,
                                           num_attention_heads=2, image_size=32, patch_size=8))
    state = init_state(config, "clip")
    save_checkpoint(tmp_path, config, state, formats=fmt)
    size = (tmp_path / FORMATS[fmt]).stat().st_size
    assert size > 4_000_000
    loaded = {}
    peak, raised = _peak(lambda: loaded.update(load_checkpoint(tmp_path, arch="text")[1]))
    assert raised is None, raised
    assert peak < size / 4, (peak, size)
    assert sorted(loaded) == sorted(param_table(config, "text"))
    for name, value in loaded.items():
        np.testing.assert_array_equal(value, state[name], err_msg=name)
    # the reader itself: every vision tensor comes back unread (torch.load's own allocations are invisible to
    # tracemalloc, so this is what shows the PyTorch file's vision storages were never read)
    reader = {"safetensors": safetensors.read_safetensors, "pytorch": pytorch.read_pytorch,
              "tf": keras_h5.read_tf_h5}[fmt]
    read = reader(tmp_path / FORMATS[fmt], expect=expectation_for(config, "text"))
    unread = {name for name, value in read.items() if isinstance(value, UnreadTensor)}
    assert unread == set(param_table(config, "clip")) - set(param_table(config, "text"))


# ---------------------------------------------------------------------------------------------- class 7: nesting
DEPTH = 100_000


def _nested_pickle(kind: str) -> bytes:
    """Protocol-2 pickles nesting lists, dicts or tuples DEPTH deep, written opcode by opcode (pickle.dumps itself
    would overflow the stack)."""
    if kind == "lists":
        return b"\x80\x02" + b"]" * DEPTH + b"a" * (DEPTH - 1) + b"."
    if kind == "dicts":
        return b"\x80\x02" + b"}X\x01\x00\x00\x00a" * DEPTH + b"}" + b"s" * DEPTH + b"."
    return b"\x80\x02)" + b"\x85" * DEPTH + b"."


def _torch_zip(path, data_pkl: bytes, torchscript: bool = False):
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as archive:
        archive.writestr("archive/data.pkl", data_pkl)
        archive.writestr("archive/version", "3\n")
        if torchscript:
            archive.writestr("archive/constants.pkl", pickle.dumps(()))
            archive.writestr("archive/code/__torch__.py", "")
    return path


@pytest.mark.parametrize("kind", ["lists", "dicts", "tuples"])
def test_deeply_nested_torch_pickles_are_corrupt_checkpoints(tmp_path, kind):
    pytest.importorskip("torch")
    path = _torch_zip(tmp_path / "pytorch_model.bin", _nested_pickle(kind))
    script = _torch_zip(tmp_path / "ViT-T.pt", _nested_pickle(kind), torchscript=True)
    assert pytorch.is_torchscript(script) and not pytorch.is_torchscript(path)
    calls = [lambda: pytorch.read_pytorch(path), lambda: pytorch.read_torch_zip(path),  # torch.load, restricted
             lambda: pytorch.read_pytorch(script),  # the TorchScript path
             lambda: load_checkpoint(path, config=CONFIG)]  # the restricted reader the config selects
    for call in calls:
        with pytest.raises(CorruptCheckpointError, match=r"(pytorch_model\.bin|ViT-T\.pt) is nested too deeply to "
                                                         r"be read as a (PyTorch checkpoint|torch zip archive)"):
            call()


def test_a_deeply_nested_legacy_torch_pickle_is_a_corrupt_checkpoint(tmp_path):
    pytest.importorskip("torch")
    path = tmp_path / "pytorch_model.bin"
    header = pickle.dumps(0x1950A86A20F9469CFC6C, protocol=2) + pickle.dumps(1001, protocol=2) + \
        pickle.dumps({"protocol_version": 1001, "little_endian": True, "type_sizes": {"short": 2, "int": 4,
                                                                                       "long": 4}}, protocol=2)
    path.write_bytes(header + _nested_pickle("lists") + pickle.dumps([], protocol=2))
    assert not zipfile.is_zipfile(path)
    with pytest.raises(CorruptCheckpointError, match=r"pytorch_model\.bin is nested too deeply"):
        pytorch.read_pytorch(path)


@pytest.mark.parametrize("depth", [300, DEPTH])
def test_deeply_nested_msgpack_is_a_corrupt_checkpoint(tmp_path, depth):
    path = tmp_path / "flax_model.msgpack"
    path.write_bytes(b"\x81\xa1a" * depth + b"\x80")  # {"a": {"a": ... {}}}
    with pytest.raises(CorruptCheckpointError, match=r"flax_model\.msgpack is nested too deeply to be read as a "
                                                     r"flax msgpack file"):
        flax_msgpack.read_flax_msgpack(path)
    CONFIG.save_pretrained(tmp_path)
    with pytest.raises(CorruptCheckpointError, match=r"nested too deeply"):
        load_checkpoint(tmp_path)


def test_a_state_dict_of_ordinary_depth_still_loads_through_the_nesting_check(tmp_path):
    torch = pytest.importorskip("torch")
    state = init_state(CONFIG, "clip", seed=2)
    wrapped = {"epoch": 3, "state_dict": {f"module.{k}": torch.from_numpy(v) for k, v in state.items()}}
    torch.save(wrapped, tmp_path / "pytorch_model.bin")
    _, loaded = load_checkpoint(tmp_path / "pytorch_model.bin", config=CONFIG)
    for name, value in state.items():
        np.testing.assert_array_equal(loaded[name], value, err_msg=name)
    assert math.isfinite(float(loaded["logit_scale"]))


@pytest.mark.parametrize("fmt", list(FORMATS))
def test_a_tower_config_does_not_size_the_other_towers_tensors(tmp_path, fmt):
    if fmt == "pytorch":
        pytest.importorskip("torch")
    # the vision tower's fc1 (65,536 values) is far larger than anything of the text tower (800 values): loading
    # the text tower with its own config still works, the vision tensors unread and not sized by it
    config = CLIPConfig(projection_dim=8, text_config=dict(CONFIG.text_config.to_dict(), projection_dim=8),
                        vision_config=dict(hidden_size=128, intermediate_size=512, num_hidden_layers=1,
                                           num_attention_heads=2, image_size=16, patch_size=8))
    state = init_state(config, "clip", seed=4)
    save_checkpoint(tmp_path, config, state, formats=fmt)
    text = config.text_config
    assert max(math.prod(spec.shape) for spec in param_table(text, "text_projection").values()) == 800
    _, loaded = load_checkpoint(tmp_path, arch="text", config=text)
    assert sorted(loaded) == sorted(param_table(text, "text"))
    for name, value in loaded.items():
        np.testing.assert_array_equal(value, state[name], err_msg=name)


def test_a_tower_config_still_sizes_its_own_tower(tmp_path):
    state = dict(init_state(CONFIG, "clip"))
    state["text_model.encoder.layers.0.mlp.fc3.weight"] = np.zeros((32, 160), np.float32)  # 5,120 values
    text = CLIPConfig.from_dict(CONFIG.to_dict()).text_config
    text.projection_dim = 8  # the text tower's own largest: its token table, 50 x 16
    path = tmp_path / "model.safetensors"
    safetensors.write_safetensors(path, state)
    with pytest.raises(CorruptCheckpointError, match=r"tensor text_model\.encoder\.layers\.0\.mlp\.fc3\.weight has "
                                                     r"shape \(32, 160\) .* implies at most 800 values in one tensor"):
        safetensors.read_safetensors(path, expect=expectation_for(text, "text"))
