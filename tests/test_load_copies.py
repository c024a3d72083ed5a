"""The default (owned-memory) safetensors read makes one copy of the data and nothing more.

- Peak memory traced while reading a ~40 MB file (numpy reports its buffers to tracemalloc) stays below 1.3x the
  file's size, and at least the data's size (so the measure sees the arrays at all).
- The arrays are writeable and own their memory: no ``mmap`` anywhere in their base chain (``mmap=True``'s arrays do
  have one, which shows the check can fail), and rewriting the file in place afterwards leaves them unchanged.
- The float32 arrays become PyTorch tensors without another copy (``torch.from_numpy`` shares them).
"""

from __future__ import annotations

import mmap
import tracemalloc

import numpy as np
import pytest

from clip_core.formats.safetensors import read_safetensors, write_safetensors


def _state() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    state = {f"layer{i}.weight": rng.standard_normal((768, 768), dtype=np.float32) for i in range(16)}  # ~37.7 MB
    state["embed.weight"] = rng.standard_normal((1000, 512), dtype=np.float32).astype(np.float16)
    state["position_ids"] = np.arange(77, dtype=np.int64)[None]
    state["scale"] = np.array(2.6592, dtype=np.float32)
    return state


def _bases(array):
    """``array``, then every object it borrows its memory from (through views and memoryviews)."""
    seen, node = [], array
    while node is not None:
        seen.append(node)
        node = node.obj if isinstance(node, memoryview) else getattr(node, "base", None)
    return seen


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    path = tmp_path_factory.mktemp("copies") / "model.safetensors"
    state = _state()
    write_safetensors(path, state)
    return path, state


def test_the_owned_read_makes_one_copy(written):
    path, state = written
    data = sum(a.nbytes for a in state.values())
    tracemalloc.start()
    try:
        loaded = read_safetensors(path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    size = path.stat().st_size
    assert data <= peak < 1.3 * size, f"peak traced memory {peak:,} bytes for a {size:,}-byte file"
    assert sorted(loaded) == sorted(state)
    for name, array in state.items():
        np.testing.assert_array_equal(loaded[name], array, err_msg=name)
        assert loaded[name].dtype == array.dtype and loaded[name].shape == array.shape, name


def test_the_owned_arrays_are_writeable_and_alias_no_mapping(written):
    path, state = written
    loaded = read_safetensors(path)
    for name, array in loaded.items():
        assert array.flags.writeable, name
        assert not any(isinstance(b, mmap.mmap) for b in _bases(array)), f"{name} borrows a memory map"
    mapped = read_safetensors(path, mmap=True)  # the opt-in does map the file: the check above can fail
    assert any(isinstance(b, mmap.mmap) for b in _bases(mapped["layer0.weight"]))
    del mapped
    with open(path, "r+b") as handle:  # rewrite the data in place (not a rename): owned arrays must not change
        handle.seek(handle.seek(0, 2) - state["layer15.weight"].nbytes // 2)
        handle.write(b"\xff" * (state["layer15.weight"].nbytes // 2))
    try:
        for name, array in state.items():
            np.testing.assert_array_equal(loaded[name], array, err_msg=name)
    finally:
        write_safetensors(path, state)


def test_float32_arrays_become_tensors_without_a_copy(written):
    torch = pytest.importorskip("torch")
    from clip_pt.pretrained import CLIPPreTrainedModel as PreTrainedModel

    path, _ = written
    loaded = read_safetensors(path)
    array = loaded["layer3.weight"]
    tensor = PreTrainedModel._tensor(array, torch.float32)
    assert tensor.data_ptr() == array.ctypes.data
    half = PreTrainedModel._tensor(loaded["embed.weight"], torch.float16)
    assert half.data_ptr() == loaded["embed.weight"].ctypes.data
