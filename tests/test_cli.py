"""``triclip convert``: OpenAI's format into every backend and into transformers; exit codes and error lines."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from clip_core.cli import main
from tests.conftest import ROOT, shared_path

TOL = 1e-4


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    """openai-tiny converted to every format by the CLI, once for the module."""
    src = shared_path("fixtures", "openai-tiny")
    dst = tmp_path_factory.mktemp("cli") / "openai-tiny-hf"
    code = main(["convert", str(src / "openai_state_dict.pt"), str(dst), "--format", "all",
                 "--hparams", str(src / "openai_hparams.json")])
    assert code == 0
    with np.load(src / "expected.npz") as data:
        expected = {k: data[k] for k in data.files}
    return dst, expected


def _check(expected, image_features, text_features, logits_per_image):
    np.testing.assert_allclose(np.asarray(image_features), expected["image_features"], atol=TOL, rtol=0)
    np.testing.assert_allclose(np.asarray(text_features), expected["text_features"], atol=TOL, rtol=0)
    np.testing.assert_allclose(np.asarray(logits_per_image), expected["logits_per_image"], atol=TOL, rtol=0)


def test_converted_config_pools_like_openai(converted):
    dst, _ = converted
    config = json.loads((dst / "config.json").read_text())
    assert config["text_config"]["eos_token_id"] == 2  # argmax pooling, as OpenAI's encode_text
    assert config["text_config"]["num_attention_heads"] == 4 and config["vision_config"]["num_attention_heads"] == 2
    assert sorted(p.name for p in dst.iterdir()) == ["config.json", "flax_model.msgpack", "model.safetensors",
                                                     "pytorch_model.bin", "tf_model.h5"]


@pytest.mark.parametrize("weights", ["model.safetensors", "pytorch_model.bin", "tf_model.h5", "flax_model.msgpack"])
def test_pytorch_reproduces_openai_from_each_file(converted, weights, tmp_path):
    torch = pytest.importorskip("torch")
    from clip_pt import CLIPModel
    from tests.conftest import single_format_dir

    dst, exp = converted
    model = CLIPModel.from_pretrained(single_format_dir(dst, weights, tmp_path))
    ids, pix = torch.from_numpy(exp["input_ids"]), torch.from_numpy(exp["pixel_values"])
    with torch.no_grad():
        out = model(input_ids=ids, pixel_values=pix)
        _check(exp, model.get_image_features(pixel_values=pix), model.get_text_features(input_ids=ids),
               out.logits_per_image)


def test_tensorflow_reproduces_openai(converted):
    pytest.importorskip("tensorflow")
    from clip_tf import TFCLIPModel

    dst, exp = converted
    model = TFCLIPModel.from_pretrained(dst)
    out = model(input_ids=exp["input_ids"], pixel_values=exp["pixel_values"])
    _check(exp, model.get_image_features(pixel_values=exp["pixel_values"]),
           model.get_text_features(input_ids=exp["input_ids"]), out.logits_per_image)


def test_flax_reproduces_openai(converted):
    pytest.importorskip("flax")
    from clip_flax import FlaxCLIPModel

    dst, exp = converted
    model = FlaxCLIPModel.from_pretrained(dst)
    out = model(input_ids=exp["input_ids"], pixel_values=exp["pixel_values"])
    _check(exp, model.get_image_features(exp["pixel_values"]), model.get_text_features(exp["input_ids"]),
           out.logits_per_image)


def test_transformers_loads_the_converted_files_in_all_three_frameworks(converted, tmp_path):
    transformers = pytest.importorskip("transformers")
    torch = pytest.importorskip("torch")
    from tests.conftest import single_format_dir

    dst, exp = converted
    pt = transformers.CLIPModel.from_pretrained(single_format_dir(dst, "pytorch_model.bin", tmp_path))
    with torch.no_grad():
        ids, pix = torch.from_numpy(exp["input_ids"]), torch.from_numpy(exp["pixel_values"])
        _check(exp, pt.get_image_features(pixel_values=pix), pt.get_text_features(input_ids=ids),
               pt(input_ids=ids, pixel_values=pix).logits_per_image)
    tf_model = transformers.TFCLIPModel.from_pretrained(single_format_dir(dst, "tf_model.h5", tmp_path))
    ids32 = exp["input_ids"].astype(np.int32)
    import tensorflow as tf
    _check(exp, tf_model.get_image_features(pixel_values=tf.constant(exp["pixel_values"])),
           tf_model.get_text_features(input_ids=tf.constant(ids32)),
           tf_model(input_ids=tf.constant(ids32), pixel_values=tf.constant(exp["pixel_values"])).logits_per_image)
    fx = transformers.FlaxCLIPModel.from_pretrained(single_format_dir(dst, "flax_model.msgpack", tmp_path))
    _check(exp, fx.get_image_features(exp["pixel_values"]), fx.get_text_features(ids32),
           fx(input_ids=ids32, pixel_values=exp["pixel_values"]).logits_per_image)


def test_convert_between_formats_is_bit_exact(converted, tmp_path):
    from clip_core.checkpoints import load_checkpoint

    dst, _ = converted
    _, reference = load_checkpoint(dst, format="safetensors")
    previous = dst
    for fmt in ("tf", "flax", "pytorch", "safetensors"):
        out = tmp_path / fmt
        assert main(["convert", str(previous), str(out), "--format", fmt]) == 0
        _, state = load_checkpoint(out, format=fmt)
        assert all(state[k].tobytes() == reference[k].tobytes() for k in reference)
        previous = out


def test_convert_casts_dtype(converted, tmp_path):
    from clip_core.checkpoints import load_checkpoint

    dst, _ = converted
    assert main(["convert", str(dst), str(tmp_path / "half"), "--dtype", "float16", "--format", "safetensors,tf"]) == 0
    for fmt in ("safetensors", "tf"):
        _, state = load_checkpoint(tmp_path / "half", format=fmt)
        assert all(v.dtype == np.float16 for v in state.values())


def test_errors_are_one_line_and_leave_nothing(converted, tmp_path, capsys):
    dst, _ = converted
    cases = [
        (["convert", str(tmp_path / "missing"), str(tmp_path / "out")], "missing"),
        (["convert", str(dst), str(tmp_path / "out"), "--format", "onnx"], "onnx"),
        (["conformance", "--config", str(tmp_path / "nope.json")], "nope.json"),
    ]
    for argv, culprit in cases:
        assert main(argv) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and culprit in err and "Traceback" not in err
    assert not (tmp_path / "out").exists()
    photos = tmp_path / "photos"
    photos.mkdir()
    (photos / "cat.jpg").write_bytes(b"jpeg")
    assert main(["convert", str(dst), str(photos)]) == 2
    assert "photos" in capsys.readouterr().err
    assert sorted(p.name for p in photos.iterdir()) == ["cat.jpg"]  # untouched
    assert main(["convert", str(dst), str(photos), "--overwrite"]) == 0
    assert (photos / "model.safetensors").is_file() and (photos / "cat.jpg").is_file()
    leftovers = [p.name for p in tmp_path.iterdir() if p.name.startswith(".")]
    assert leftovers == []  # no temporary directories left behind


def test_a_corrupt_source_fails_without_writing(tmp_path, capsys):
    src = tmp_path / "broken"
    src.mkdir()
    folder = shared_path("fixtures", "hf-tiny")
    (src / "config.json").write_text((folder / "config.json").read_text())
    (src / "model.safetensors").write_bytes((folder / "model.safetensors").read_bytes()[:5000])
    assert main(["convert", str(src), str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "model.safetensors" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()


def test_console_script_debug_shows_the_traceback(tmp_path):
    cmd = [sys.executable, "-m", "clip_core.cli"]
    plain = subprocess.run(cmd + ["convert", str(tmp_path / "x"), str(tmp_path / "y")], capture_output=True,
                           text=True, cwd=ROOT, timeout=120)
    assert plain.returncode == 2 and "Traceback" not in plain.stderr
    debug = subprocess.run(cmd + ["--debug", "convert", str(tmp_path / "x"), str(tmp_path / "y")],
                           capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert debug.returncode != 0 and "Traceback" in debug.stderr and "FileNotFoundError" in debug.stderr


def _narrow_openai_state(text_width: int = 32, vision_width: int = 48, embed: int = 16) -> dict:
    """A one-block OpenAI state dict (OpenAI's clip/model.py names and shapes) whose towers are narrower than 64."""
    rng = np.random.default_rng(0)

    def block(prefix: str, w: int) -> dict:
        shapes = {"attn.in_proj_weight": (3 * w, w), "attn.in_proj_bias": (3 * w,), "attn.out_proj.weight": (w, w),
                  "attn.out_proj.bias": (w,), "ln_1.weight": (w,), "ln_1.bias": (w,), "ln_2.weight": (w,),
                  "ln_2.bias": (w,), "mlp.c_fc.weight": (4 * w, w), "mlp.c_fc.bias": (4 * w,),
                  "mlp.c_proj.weight": (w, 4 * w), "mlp.c_proj.bias": (w,)}
        return {f"{prefix}transformer.resblocks.0.{k}": s for k, s in shapes.items()}

    vw, tw = vision_width, text_width
    shapes = {"visual.conv1.weight": (vw, 3, 8, 8), "visual.class_embedding": (vw,),
              "visual.positional_embedding": (5, vw), "visual.ln_pre.weight": (vw,), "visual.ln_pre.bias": (vw,),
              "visual.ln_post.weight": (vw,), "visual.ln_post.bias": (vw,), "visual.proj": (vw, embed),
              "token_embedding.weight": (100, tw), "positional_embedding": (7, tw), "ln_final.weight": (tw,),
              "ln_final.bias": (tw,), "text_projection": (tw, embed), "logit_scale": (),
              **block("visual.", vw), **block("", tw)}
    return {k: rng.standard_normal(s).astype(np.float32) for k, s in shapes.items()}


def test_openai_checkpoint_narrower_than_64_asks_for_head_counts(tmp_path, capsys):
    torch = pytest.importorskip("torch")
    from clip_core.checkpoints import convert_checkpoint, load_checkpoint

    raw = _narrow_openai_state()
    src = tmp_path / "narrow.pt"
    torch.save({k: torch.from_numpy(v) for k, v in raw.items()}, src)
    out = tmp_path / "out"
    assert main(["convert", str(src), str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    for words in ("do not record head counts", "transformer_width // 64 gives 0", "width 32", "--hparams",
                  '"transformer_heads"', '"vision_heads"'):
        assert words in err, (words, err)
    assert not out.exists()
    existing = tmp_path / "existing"
    existing.mkdir()
    (existing / "notes.txt").write_text("keep")
    with pytest.raises(ValueError, match="do not record head counts"):
        convert_checkpoint(src, existing)
    with pytest.raises(ValueError, match="vision_width // 64 gives 0 for its width 48"):
        convert_checkpoint(src, tmp_path / "out2", hparams={"transformer_heads": 2})
    with pytest.raises(ValueError, match="hparams"):
        load_checkpoint(src)
    assert [p.name for p in existing.iterdir()] == ["notes.txt"] and not (tmp_path / "out2").exists()

    heads = tmp_path / "heads.json"
    heads.write_text(json.dumps({"transformer_heads": 2, "vision_heads": 3}))
    assert main(["convert", str(src), str(out), "--hparams", str(heads)]) == 0
    written = json.loads((out / "config.json").read_text())
    assert written["text_config"]["num_attention_heads"] == 2 and written["vision_config"]["num_attention_heads"] == 3
    _, state = load_checkpoint(out)
    np.testing.assert_array_equal(state["text_model.encoder.layers.0.self_attn.k_proj.weight"],
                                  raw["transformer.resblocks.0.attn.in_proj_weight"][32:64])
    transformers = pytest.importorskip("transformers")
    model = transformers.CLIPModel.from_pretrained(out)  # transformers reads the same heads and every weight
    assert model.text_model.encoder.layers[0].self_attn.num_heads == 2
    assert model.vision_model.encoder.layers[0].self_attn.num_heads == 3
    np.testing.assert_array_equal(model.visual_projection.weight.detach().numpy(), raw["visual.proj"].T)
