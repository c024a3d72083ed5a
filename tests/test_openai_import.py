"""OpenAI / open_clip checkpoints: config inference, conversion, TorchScript archives read without running code."""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

from clip_core import checkpoints as ck
from clip_core import openai
from clip_core.checkpoints import UnsafeCheckpointError, UnsupportedCheckpointError, load_checkpoint
from clip_core.weights import StateMismatchError
from tests.conftest import ROOT, load_expected, shared_path

torch = pytest.importorskip("torch")
nn = torch.nn
pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:DeprecationWarning")


@pytest.fixture(scope="module")
def openai_dir() -> Path:
    return shared_path("fixtures", "openai-tiny")


@pytest.fixture(scope="module")
def hparams(openai_dir) -> dict:
    return json.loads((openai_dir / "openai_hparams.json").read_text())


@pytest.fixture(scope="module")
def raw_state(openai_dir) -> dict:
    return {k: v.numpy() for k, v in torch.load(openai_dir / "openai_state_dict.pt", weights_only=True).items()}


@pytest.fixture(scope="module")
def converted(openai_dir, hparams):
    return openai.read_openai(openai_dir / "openai_state_dict.pt", hparams=hparams)


class Holder(nn.Module):
    """A module that only holds parameters (scripted with OpenAI's parameter names)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


def scripted(state: dict, path: Path, dtype=torch.float32) -> Path:
    """A TorchScript archive whose module tree carries ``state`` under OpenAI's names, like OpenAI's releases
    (plus a non-parameter ``attn_mask`` tensor and an int attribute, as the real ones have)."""
    root = Holder()
    for name, value in state.items():
        *parents, leaf = name.split(".")
        node = root
        for part in parents:
            if not hasattr(node, part):
                node.add_module(part, Holder())
            node = getattr(node, part)
        node.register_parameter(leaf, nn.Parameter(torch.from_numpy(np.array(value)).to(dtype), requires_grad=False))
    getattr(root.transformer.resblocks, "0").register_buffer("attn_mask", torch.full((4, 4), -1e9).triu(1),
                                                             persistent=False)
    root.visual.input_resolution = 32
    torch.jit.script(root).save(str(path))
    return path


def identical(got: dict, want: dict) -> None:
    assert sorted(got) == sorted(want), set(got) ^ set(want)
    for name, value in want.items():
        assert got[name].dtype == value.dtype and got[name].shape == value.shape, name
        assert got[name].tobytes() == value.tobytes(), name


# ---------------------------------------------------------------------------------------------- config inference
def test_inferred_config_follows_openai_build_model(openai_dir, hparams):
    config, _ = openai.read_openai(openai_dir / "openai_state_dict.pt")
    text, vision = config.text_config, config.vision_config
    assert (vision.hidden_size, vision.num_hidden_layers, vision.patch_size, vision.image_size) == (
        hparams["vision_width"], hparams["vision_layers"], hparams["vision_patch_size"], hparams["image_resolution"])
    assert (text.hidden_size, text.num_hidden_layers, text.max_position_embeddings, text.vocab_size) == (
        hparams["transformer_width"], hparams["transformer_layers"], hparams["context_length"], hparams["vocab_size"])
    assert config.projection_dim == text.projection_dim == vision.projection_dim == hparams["embed_dim"]
    # build_model's rule: heads = width // 64 for both towers; MLPs 4x wide; quick_gelu; argmax pooling
    assert vision.num_attention_heads == hparams["vision_width"] // 64 == 2
    assert text.num_attention_heads == hparams["transformer_width"] // 64 == 1
    assert (text.intermediate_size, vision.intermediate_size) == (4 * text.hidden_size, 4 * vision.hidden_size)
    assert text.hidden_act == vision.hidden_act == "quick_gelu"
    assert text.eos_token_id == 2  # transformers then pools at argmax(input_ids), as OpenAI does


def test_hparams_supply_what_shapes_cannot(openai_dir, hparams, converted):
    config, _ = converted
    assert config.text_config.num_attention_heads == hparams["transformer_heads"] == 4
    assert config.vision_config.num_attention_heads == 2
    same, _ = openai.read_openai(openai_dir / "openai_state_dict.pt", hparams=openai_dir / "openai_hparams.json")
    assert same == config
    with pytest.raises(ValueError, match="vision_width=256 .* 128"):
        openai.read_openai(openai_dir / "openai_state_dict.pt", hparams={**hparams, "vision_width": 256})


def test_conversion_rules(raw_state, converted):
    _, state = converted
    in_proj = raw_state["transformer.resblocks.1.attn.in_proj_weight"]
    for i, proj in enumerate(("q_proj", "k_proj", "v_proj")):
        want = in_proj[64 * i:64 * (i + 1)]
        assert np.array_equal(state[f"text_model.encoder.layers.1.self_attn.{proj}.weight"], want)
    bias = raw_state["visual.transformer.resblocks.0.attn.in_proj_bias"]
    assert np.array_equal(state["vision_model.encoder.layers.0.self_attn.v_proj.bias"], bias[256:])
    assert np.array_equal(state["text_projection.weight"], raw_state["text_projection"].T)
    assert np.array_equal(state["visual_projection.weight"], raw_state["visual.proj"].T)
    assert np.array_equal(state["vision_model.embeddings.patch_embedding.weight"], raw_state["visual.conv1.weight"])
    assert np.array_equal(state["vision_model.encoder.layers.1.mlp.fc2.weight"],
                          raw_state["visual.transformer.resblocks.1.mlp.c_proj.weight"])
    assert state["logit_scale"].shape == ()


# ---------------------------------------------------------------------------------------------- oracle
def test_transformers_reproduces_openai_outputs_from_our_conversion(openai_dir, converted, tmp_path):
    transformers = pytest.importorskip("transformers")
    config, state = converted
    ck.save_checkpoint(tmp_path / "converted", config, state)
    model = transformers.CLIPModel.from_pretrained(tmp_path / "converted", attn_implementation="eager").eval()
    expected = load_expected(openai_dir)
    with torch.no_grad():
        ids = torch.from_numpy(expected["input_ids"]).long()
        pixels = torch.from_numpy(expected["pixel_values"])
        image = model.get_image_features(pixel_values=pixels).numpy()
        text = model.get_text_features(input_ids=ids).numpy()
        logits = model(input_ids=ids, pixel_values=pixels).logits_per_image.numpy()
    np.testing.assert_allclose(image, expected["image_features"], atol=1e-4, rtol=0)
    np.testing.assert_allclose(text, expected["text_features"], atol=1e-4, rtol=0)
    np.testing.assert_allclose(logits, expected["logits_per_image"], atol=1e-4, rtol=0)


# ---------------------------------------------------------------------------------------------- TorchScript
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_torchscript_archive_reads_like_the_state_dict(dtype, openai_dir, raw_state, hparams, tmp_path):
    archive = scripted(raw_state, tmp_path / "ViT-tiny.pt", dtype)
    assert openai.is_torchscript(archive) and not openai.is_torchscript(openai_dir / "openai_state_dict.pt")
    config, state = openai.read_openai(archive, hparams=hparams)
    want_config, want = openai.read_openai(openai_dir / "openai_state_dict.pt", hparams=hparams)
    assert config == want_config
    identical(state, {k: v.astype(np.float16) if dtype == torch.float16 else v for k, v in want.items()})
    # and load_checkpoint recognises it on its own (config inferred: heads width // 64)
    inferred, auto = load_checkpoint(archive)
    identical(auto, state)
    assert inferred.vision_config.num_attention_heads == 2


def test_torch_zip_reader_rebuilds_views_and_dtypes_like_torch(tmp_path):
    base = torch.arange(24, dtype=torch.float32).reshape(4, 6)
    tensors = {
        "transposed": base.t(), "sliced": base[1:3, ::2], "scalar": torch.tensor(2.5),
        "half": torch.linspace(-1, 1, 7).half(), "bf16": torch.linspace(-3, 3, 5).bfloat16(),
        "ints": torch.arange(5), "empty": torch.zeros(0, 3),
    }
    torch.save(tensors, tmp_path / "plain.pt")
    ours = openai.read_torch_zip(tmp_path / "plain.pt")
    assert sorted(ours) == sorted(tensors)
    for name, tensor in tensors.items():
        want = tensor.float().numpy() if tensor.dtype == torch.bfloat16 else tensor.numpy()
        assert ours[name].dtype == want.dtype and ours[name].shape == want.shape, name
        assert np.array_equal(ours[name], want), name
    assert ours["transposed"].flags.c_contiguous and ours["transposed"].flags.writeable


def test_zip_checkpoints_read_without_torch(openai_dir):
    fixture = shared_path("fixtures", "hf-tiny")
    script = f"""
import sys
sys.modules["torch"] = None  # import torch now fails
sys.path.insert(0, {str(ROOT)!r})
from clip_core import checkpoints
_, bin_state = checkpoints.load_checkpoint({str(fixture / "pytorch_model.bin")!r})
_, ref = checkpoints.load_checkpoint({str(fixture / "model.safetensors")!r})
assert all(bin_state[k].tobytes() == ref[k].tobytes() and bin_state[k].shape == ref[k].shape for k in ref)
config, state = checkpoints.load_checkpoint({str(openai_dir / "openai_state_dict.pt")!r})
print(len(bin_state), len(state))
"""
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["78", "78"]


# ---------------------------------------------------------------------------------------------- open_clip
def test_open_clip_files_and_wrappers(raw_state, converted, hparams, tmp_path):
    from safetensors.numpy import save_file

    _, want = converted
    wrapped = {"epoch": 3, "name": "run", "state_dict": {f"module.{k}": torch.from_numpy(v) for k, v in
                                                         raw_state.items()}}
    torch.save(wrapped, tmp_path / "epoch_3.pt")
    _, state = load_checkpoint(tmp_path / "epoch_3.pt", config=converted[0])
    identical(state, want)
    # open_clip's Hub layout: open_clip_model.safetensors + open_clip_config.json, no config.json
    hub_dir = tmp_path / "hub"
    hub_dir.mkdir()
    save_file(raw_state, str(hub_dir / "open_clip_model.safetensors"))
    model_cfg = {"embed_dim": 32, "quick_gelu": False,
                 "vision_cfg": {"image_size": 32, "layers": 2, "width": 128, "patch_size": 8, "head_width": 32},
                 "text_cfg": {"context_length": 16, "vocab_size": 1000, "width": 64, "heads": 4, "layers": 2}}
    (hub_dir / "open_clip_config.json").write_text(json.dumps({"model_cfg": model_cfg}))
    config, state = load_checkpoint(hub_dir)
    identical(state, want)
    assert config.text_config.hidden_act == config.vision_config.hidden_act == "gelu"
    assert (config.text_config.num_attention_heads, config.vision_config.num_attention_heads) == (4, 4)
    _, text_only = load_checkpoint(hub_dir, arch="text_projection")
    assert sorted(text_only) == sorted(k for k in want if k.startswith("text_"))


def test_resnet_and_unknown_names_are_refused(raw_state, tmp_path):
    from safetensors.numpy import save_file

    resnet = {**raw_state, "visual.layer1.0.conv1.weight": np.zeros((4, 4, 1, 1), np.float32)}
    save_file(resnet, str(tmp_path / "rn50.safetensors"))
    with pytest.raises(UnsupportedCheckpointError, match="ResNet"):
        load_checkpoint(tmp_path / "rn50.safetensors")
    odd = {**raw_state, "visual.transformer.resblocks.0.ls_1.gamma": np.ones(128, np.float32)}
    save_file(odd, str(tmp_path / "odd.safetensors"))
    with pytest.raises(StateMismatchError, match=r"visual\.transformer\.resblocks\.0\.ls_1\.gamma"):
        load_checkpoint(tmp_path / "odd.safetensors")


def test_malicious_torchscript_archive_is_refused_without_running(tmp_path):
    marker = tmp_path / "PWNED"

    class Evil:
        def __reduce__(self):
            return os.system, (f"touch {marker}",)

    path = tmp_path / "ViT-evil.pt"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("ViT-evil/data.pkl", pickle.dumps(Evil(), protocol=2))
        archive.writestr("ViT-evil/constants.pkl", pickle.dumps((), protocol=2))
        archive.writestr("ViT-evil/code/__torch__.py", "")
    assert openai.is_torchscript(path)
    with pytest.raises(UnsafeCheckpointError, match="ViT-evil.pt") as err:
        load_checkpoint(path)
    assert "system" in str(err.value)
    assert not marker.exists()
