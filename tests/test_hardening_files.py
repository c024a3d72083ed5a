"""Hardening of checkpoint files: a loaded model is independent of its file (class 1), HDF5 files stay inside
themselves (class 2), small files never expand into gigabytes (class 4). The cases are written here, not taken
from the adversarial review; every case asserts the exception type and that the message names the culprit."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from clip_core.checkpoints import (CorruptCheckpointError, UnsafeCheckpointError, UnsupportedCheckpointError,
                                   load_checkpoint, read_safetensors, save_checkpoint)
from clip_core.weights import init_state

from tests.test_errors import CONFIG  # noqa: E402  (the tiny CLIP every error test uses)
IDS = np.array([[48, 5, 6, 49, 0]], dtype=np.int64)
MASK = np.array([[1, 1, 1, 1, 0]], dtype=np.int64)


def _checkpoint(folder, seed=0, formats="safetensors"):
    save_checkpoint(folder, CONFIG, init_state(CONFIG, "clip", seed=seed), formats=formats)
    return folder


# ---------------------------------------------------------------------------------------------- class 1
def _text_features(backend, folder):
    if backend == "pt":
        import torch
        from clip_pt import CLIPModel
        model = CLIPModel.from_pretrained(folder)

        def run():
            with torch.no_grad():
                return model.get_text_features(torch.from_numpy(IDS), torch.from_numpy(MASK)).numpy().copy()
    elif backend == "tf":
        from clip_tf import TFCLIPModel
        model = TFCLIPModel.from_pretrained(folder)

        def run():
            return np.asarray(model.get_text_features(input_ids=IDS, attention_mask=MASK)).copy()
    else:
        from clip_flax import FlaxCLIPModel
        model = FlaxCLIPModel.from_pretrained(folder)

        def run():
            return np.asarray(model.get_text_features(input_ids=IDS, attention_mask=MASK)).copy()
    return run


@pytest.mark.parametrize("backend", ["pt", "tf", "flax"])
def test_a_loaded_model_ignores_later_rewrites_of_its_file(tmp_path, backend):
    folder = _checkpoint(tmp_path / "a", seed=0)
    other = _checkpoint(tmp_path / "b", seed=1)
    run = _text_features(backend, folder)
    before = run()
    fresh_b = _text_features(backend, other)()
    assert np.abs(before - fresh_b).max() > 1e-3  # the two checkpoints really differ
    target = folder / "model.safetensors"
    with open(target, "r+b") as handle:  # cp other over it: the same inode, rewritten in place
        handle.write((other / "model.safetensors").read_bytes())
    np.testing.assert_array_equal(run(), before)
    with open(target, "r+b") as handle:
        handle.truncate(0)
    np.testing.assert_array_equal(run(), before)


def test_truncating_the_file_after_load_does_not_kill_the_process(tmp_path):
    folder = _checkpoint(tmp_path / "a")
    script = textwrap.dedent(f"""
        import os, numpy as np
        from clip_core.checkpoints import load_checkpoint
        _, state = load_checkpoint({str(folder)!r})
        total = sum(float(np.asarray(v, np.float64).sum()) for v in state.values())
        os.truncate({str(folder / 'model.safetensors')!r}, 0)
        again = sum(float(np.asarray(v, np.float64).sum()) for v in state.values())
        print(total == again)
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]  # -7 would be SIGBUS
    assert done.stdout.strip() == "True"


def test_mmap_is_an_opt_in_with_the_documented_caveat(tmp_path):
    folder = _checkpoint(tmp_path / "a", seed=0)
    other = _checkpoint(tmp_path / "b", seed=1)
    owned = read_safetensors(folder / "model.safetensors")
    mapped = read_safetensors(folder / "model.safetensors", mmap=True)
    name = "text_model.embeddings.token_embedding.weight"
    assert owned[name].flags.owndata or owned[name].base is not None and owned[name].flags.writeable
    np.testing.assert_array_equal(owned[name], mapped[name])
    expected_new = read_safetensors(other / "model.safetensors")[name]
    with open(folder / "model.safetensors", "r+b") as handle:
        handle.write((other / "model.safetensors").read_bytes())
    np.testing.assert_array_equal(mapped[name], expected_new)  # the caveat: a mapping follows the file
    assert not np.array_equal(owned[name], expected_new)
    _, state = load_checkpoint(folder, mmap=True)
    np.testing.assert_array_equal(state[name], expected_new)


def test_float8_safetensors_are_widened_not_called_corrupt(tmp_path):
    ml_dtypes = pytest.importorskip("ml_dtypes")
    from safetensors.numpy import save_file
    values = np.array([0.5, -2.0, 448.0, 0.0], dtype=np.float32)
    save_file({"e4m3": values.astype(ml_dtypes.float8_e4m3fn), "e5m2": values.astype(ml_dtypes.float8_e5m2)},
              str(tmp_path / "f8.safetensors"))
    state = read_safetensors(tmp_path / "f8.safetensors")
    np.testing.assert_array_equal(state["e4m3"], values)  # each value is exact in both float8 formats
    np.testing.assert_array_equal(state["e5m2"], values)
    assert state["e4m3"].dtype == np.float32


def test_unknown_safetensors_dtype_is_unsupported_naming_tensor_and_dtype(tmp_path):
    import json
    import struct
    header = json.dumps({"w": {"dtype": "F4", "shape": [2], "data_offsets": [0, 1]}}).encode()
    (tmp_path / "f4.safetensors").write_bytes(struct.pack("<Q", len(header)) + header + b"\0")
    with pytest.raises(UnsupportedCheckpointError, match=r"f4\.safetensors.*tensor w.*F4"):
        read_safetensors(tmp_path / "f4.safetensors")


# ---------------------------------------------------------------------------------------------- class 2
_WEIGHT = "tfclip_model/clip/text_model/final_layer_norm/gamma:0"


def _h5_with(tmp_path, make):
    """A tf_model.h5 whose final_layer_norm gamma is replaced by what ``make(group, name)`` creates."""
    h5py = pytest.importorskip("h5py")
    folder = _checkpoint(tmp_path / "h5", formats="tf")
    with h5py.File(folder / "tf_model.h5", "r+") as archive:
        group = archive["clip"]
        del group[_WEIGHT]
        make(group, _WEIGHT)
    return folder


def _secret(tmp_path):
    secret = tmp_path / "secret.bin"
    secret.write_bytes(np.arange(16, dtype=np.float32).tobytes())
    return secret


@pytest.mark.parametrize("case, error, pattern", [
    ("external storage", UnsafeCheckpointError, r"gamma:0 keeps its data outside the file.*secret\.bin"),
    ("external link", UnsafeCheckpointError, r"gamma:0 is an external link to .*secret\.h5:/data"),
    ("soft link", UnsupportedCheckpointError, r"gamma:0 is a soft link .*beta:0"),
    ("fifo external link", UnsafeCheckpointError, r"gamma:0 is an external link to .*fifo"),
    ("fifo external storage", UnsafeCheckpointError, r"outside the file.*fifo"),
    ("chunked, never written", UnsupportedCheckpointError, r"gamma:0 is chunked"),
    ("gzip", UnsupportedCheckpointError, r"gamma:0 is compressed \(deflate\)"),
    ("contiguous, never written", CorruptCheckpointError, r"gamma:0 stores 0 bytes.*never written"),
    ("integer dataset", UnsupportedCheckpointError, r"gamma:0 is a dataset of int32"),
    ("virtual dataset", UnsafeCheckpointError, r"gamma:0 is virtual"),
])
def test_hdf5_reaching_outside_itself_is_refused_by_name(tmp_path, case, error, pattern):
    h5py = pytest.importorskip("h5py")
    secret = _secret(tmp_path)
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    other = tmp_path / "secret.h5"
    with h5py.File(other, "w") as handle:
        handle["data"] = np.arange(16, dtype=np.float32)
    beta = _WEIGHT.replace("gamma", "beta")
    makers = {
        "external storage": lambda g, n: g.create_dataset(n, (16,), "f4", external=[(str(secret), 0, 64)]),
        "external link": lambda g, n: g.__setitem__(n, h5py.ExternalLink(str(other), "/data")),
        "soft link": lambda g, n: g.__setitem__(n, h5py.SoftLink(f"/clip/{beta}")),
        "fifo external link": lambda g, n: g.__setitem__(n, h5py.ExternalLink(str(fifo), "/data")),
        "fifo external storage": lambda g, n: g.create_dataset(n, (16,), "f4", external=[(str(fifo), 0, 64)]),
        "chunked, never written": lambda g, n: g.create_dataset(n, (16,), "f4", chunks=(4,)),
        "gzip": lambda g, n: g.create_dataset(n, data=np.zeros(16, np.float32), compression="gzip"),
        "contiguous, never written": lambda g, n: g.create_dataset(n, (16,), "f4"),
        "integer dataset": lambda g, n: g.create_dataset(n, data=np.zeros(16, np.int32)),
        "virtual dataset": lambda g, n: g.create_virtual_dataset(n, _virtual(h5py, other)),
    }
    folder = _h5_with(tmp_path, makers[case])
    with pytest.raises(error, match=pattern) as caught:
        load_checkpoint(folder)  # returns at once: a FIFO is never opened
    assert "tf_model.h5" in str(caught.value)


def _virtual(h5py, other):
    layout = h5py.VirtualLayout(shape=(16,), dtype="f4")
    layout[:] = h5py.VirtualSource(str(other), "data", shape=(16,))
    return layout


def test_hdf5_gzip_bomb_is_refused_before_decompressing(tmp_path):
    h5py = pytest.importorskip("h5py")
    folder = _checkpoint(tmp_path / "h5", formats="tf")
    with h5py.File(folder / "tf_model.h5", "r+") as archive:  # 4 GiB of zeros in a few MB: never inflated
        archive["clip"].create_dataset("tfclip_model/clip/bomb:0", (2 ** 30,), "f4", chunks=(2 ** 24,),
                                       compression="gzip", fillvalue=0.0)
        names = list(archive["clip"].attrs["weight_names"]) + ["tfclip_model/clip/bomb:0"]
        archive["clip"].attrs["weight_names"] = np.array(names, dtype=h5py.string_dtype())
    assert (folder / "tf_model.h5").stat().st_size < 2 ** 20
    with pytest.raises(UnsupportedCheckpointError, match=r"bomb:0 is c"):
        load_checkpoint(folder)


# ---------------------------------------------------------------------------------------------- class 4
def _torch_file(tmp_path, tensors, name="pytorch_model.bin"):
    torch = pytest.importorskip("torch")
    path = tmp_path / name
    torch.save(tensors, path)
    return path


@pytest.mark.parametrize("reader", ["read_pytorch", "read_torch_zip"])
def test_repeated_broadcast_views_are_refused_cumulatively(tmp_path, reader):
    torch = pytest.importorskip("torch")
    from clip_core.formats import pytorch
    # 20 stride-0 views of one element, each 2**24 elements: 1.3 GB from a 6 KB file, each view below any
    # per-tensor limit
    path = _torch_file(tmp_path, {f"w{i}": torch.zeros(1).expand(2 ** 24) for i in range(20)})
    assert path.stat().st_size < 20_000
    with pytest.raises(CorruptCheckpointError, match=r"pytorch_model\.bin: its tensors would take .* bytes in memory"):
        getattr(pytorch, reader)(path)


def test_a_tied_weight_is_not_counted_twice(tmp_path):
    torch = pytest.importorskip("torch")
    from clip_core.formats.pytorch import read_pytorch
    shared = torch.arange(2 ** 22, dtype=torch.float32)  # 16 MiB, saved under three names (one storage)
    path = _torch_file(tmp_path, {"a": shared, "b": shared, "c": shared})
    state = read_pytorch(path)
    np.testing.assert_array_equal(state["c"][-3:], [2 ** 22 - 3, 2 ** 22 - 2, 2 ** 22 - 1])


@pytest.mark.parametrize("reader", ["read_pytorch", "read_torch_zip"])
def test_deflated_torch_zip_is_refused_before_inflating(tmp_path, reader):
    import zipfile
    torch = pytest.importorskip("torch")
    from clip_core.formats import pytorch
    plain = _torch_file(tmp_path, {"w": torch.zeros(2 ** 24)}, "plain.bin")
    bomb = tmp_path / "pytorch_model.bin"
    with zipfile.ZipFile(plain) as src, zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as dst:
        for info in src.infolist():
            dst.writestr(info.filename, src.read(info))
    assert bomb.stat().st_size < plain.stat().st_size // 100  # 64 MiB of zeros in well under 1 MB
    with pytest.raises(UnsupportedCheckpointError, match=r"pytorch_model\.bin: its entry .* is compressed"):
        getattr(pytorch, reader)(bomb)


def test_unsafe_pickle_names_the_refused_global(tmp_path):
    pytest.importorskip("torch")

    class Payload:
        def __reduce__(self):
            return (os.getpid, ())

    path = _torch_file(tmp_path, {"w": __import__("torch").zeros(2), "x": Payload()})
    with pytest.raises(UnsafeCheckpointError, match=r"pytorch_model\.bin.*it references (posix|os)\.getpid"):
        load_checkpoint(path, config=CONFIG)


@pytest.mark.parametrize("shape", ["wide", "deep"])
def test_huge_msgpack_trees_are_refused_as_they_are_met(tmp_path, shape):
    msgpack = pytest.importorskip("msgpack")
    from clip_core.formats.flax_msgpack import read_flax_msgpack
    tree = {str(i): 0 for i in range(1_200_000)} if shape == "wide" else \
        {str(i): {str(j): 0 for j in range(1500)} for i in range(800)}
    path = tmp_path / "flax_model.msgpack"
    path.write_bytes(msgpack.packb(tree))
    with pytest.raises(CorruptCheckpointError, match=r"flax_model\.msgpack: .*(1,000,000 items|1,000,000 entries)"):
        read_flax_msgpack(path)
