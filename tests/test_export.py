"""Deployment artifacts (``triclip export``): every artifact, in its own runtime, against transformers 4.57.6 live.

The source is a transformers CLIPModel with perturbed weights, saved by transformers; ``triclip export`` turns its
checkpoint into ONNX (PyTorch), SavedModel and LiteRT (TensorFlow) and StableHLO (Flax) artifacts, which are then
run by ONNX Runtime, a fresh ``tf.saved_model.load``, the LiteRT interpreter and ``jax.export.deserialize`` at two
batch sizes and two text lengths (none of them the traced shape) and compared with transformers' own
``get_text_features`` / ``get_image_features`` and full forward. Tolerances: DESIGN.md's.
"""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

from clip_core import exporting
from clip_core.cli import main
from tests.conftest import assert_close, unit

SPEC = dict(
    text_config=dict(vocab_size=64, hidden_size=16, intermediate_size=24, num_hidden_layers=2, num_attention_heads=2,
                     max_position_embeddings=12, hidden_act="quick_gelu", eos_token_id=40, bos_token_id=62,
                     pad_token_id=0, projection_dim=8),
    vision_config=dict(hidden_size=16, intermediate_size=24, num_hidden_layers=2, num_attention_heads=2,
                       image_size=16, patch_size=8, hidden_act="quick_gelu", projection_dim=8),
    projection_dim=8, logit_scale_init_value=2.3)
EMBED_TOL, LOGIT_TOL = 1e-5, 1e-4  # DESIGN.md, float32
# (text batch, text length, image batch): two batch sizes, two lengths, none of them the traced (2, 8, 3)
SHAPES = [(1, 5, 4), (4, 12, 1)]
ALL_FILES = {"text.onnx", "vision.onnx", "model.onnx", "savedmodel", "text.tflite", "vision.tflite", "model.tflite",
             "text.stablehlo", "vision.stablehlo", "model.stablehlo", "export.json", "reference.npz"}


def _theirs():
    import transformers

    torch.manual_seed(0)
    model = transformers.CLIPModel._from_config(transformers.CLIPConfig(**SPEC), attn_implementation="eager")
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.1 * torch.randn_like(p))
    return model.eval()


def _inputs(batch, length, image_batch, seed):
    """Ids with the end token (40, mid-vocabulary: argmax would pick another) first seen at different places, tokens
    after it in some rows, padding in others; NCHW pixels."""
    rng = np.random.default_rng(seed)
    ids = rng.integers(41, 62, (batch, length))
    ids[:, 0] = 62
    mask = np.ones((batch, length), np.int64)
    for row in range(batch):
        end = max(1, length - 1 - 3 * row)
        ids[row, end] = 40
        if row % 2:
            ids[row, end + 1:], mask[row, end + 1:] = 0, 0
    pixels = rng.standard_normal((image_batch, 3, 16, 16)).astype(np.float32)
    return {"input_ids": ids.astype(np.int64), "attention_mask": mask, "pixel_values": pixels}


def _expected(theirs, inputs):
    t = {k: torch.from_numpy(v) for k, v in inputs.items()}
    with torch.no_grad():
        out = theirs(**t)
        return {"text_features": theirs.get_text_features(t["input_ids"], t["attention_mask"]).numpy(),
                "image_features": theirs.get_image_features(t["pixel_values"]).numpy(),
                **{k: out[k].numpy() for k in exporting.FORWARD_OUTPUTS}}


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    """(transformers model, its checkpoint folder)."""
    theirs = _theirs()
    folder = tmp_path_factory.mktemp("source")
    theirs.save_pretrained(folder)
    return theirs, folder


@pytest.fixture(scope="module")
def exported(source, tmp_path_factory):
    """Every format, float32, written by the command line."""
    out = tmp_path_factory.mktemp("export") / "out"
    assert main(["export", str(source[1]), str(out), "--to", "all"]) == 0
    return out


def _check_against(theirs, folder, dtype="float32"):
    """Run every artifact of ``folder`` at SHAPES; compare with transformers (float32 tolerances, or the float16 /
    bfloat16 ones); returns the largest normalised-feature difference seen."""
    from conformance.artifacts import load_artifact

    manifest = exporting.read_manifest(folder)
    cases = [_inputs(*shape, seed=i) for i, shape in enumerate(SHAPES)]
    expected = [_expected(theirs, case) for case in cases]
    scale = float(theirs.logit_scale.detach().exp())
    worst, cache = 0.0, {}
    for artifact in manifest["artifacts"]:
        run = load_artifact(folder, artifact, cache)
        for case, want in zip(cases, expected):
            feed = {i["name"]: case[i["name"]].astype(i["dtype"]) for i in artifact["inputs"]}
            got = run(feed)
            what = f"{artifact['path']}:{artifact['function']} at {case['input_ids'].shape}/" \
                   f"{case['pixel_values'].shape[0]}"
            for spec in artifact["outputs"]:
                name, ours, ref = spec["name"], got[spec["name"]], want[spec["name"]]
                assert ours.dtype == np.float32, what
                if name.startswith("logits"):
                    if dtype == "float32":
                        assert_close(ours, ref, LOGIT_TOL, f"{what} {name}")
                    else:
                        assert_close(ours / scale, ref / scale, 2e-2, f"{what} {name} / exp(logit_scale)")
                    continue
                tol = EMBED_TOL if dtype == "float32" else 2e-2
                worst = max(worst, assert_close(unit(ours), unit(ref), tol, f"{what} {name} normalised"))
                if name.endswith("features"):  # unnormalised: the values too
                    assert_close(ours, ref, 1e-4 * max(1.0, np.abs(ref).max()) if dtype == "float32"
                                 else 2e-2 * np.abs(ref).max(), f"{what} {name}")
                if dtype != "float32":
                    cosine = np.sum(unit(ours) * unit(ref), axis=-1)
                    assert cosine.min() > 0.999, f"{what} {name}: cosine {cosine.min()}"
    return worst


# ============================================================================================ every format, float32
@pytest.mark.slow
def test_every_artifact_matches_transformers(source, exported):
    assert {p.name for p in exported.iterdir()} == ALL_FILES
    worst = _check_against(source[0], exported)
    assert worst > 0  # the runtimes computed something of their own (not a copy of the reference)


@pytest.mark.slow
def test_manifest_describes_every_artifact(exported):
    manifest = json.loads((exported / "export.json").read_text())
    assert manifest["dtype"] == "float32" and manifest["config"]["text_config"]["max_position_embeddings"] == 12
    by_key = {(a["format"], a["function"]): a for a in manifest["artifacts"]}
    assert set(by_key) == {(f, fn) for f in exporting.FORMATS for fn in exporting.FUNCTIONS}
    assert by_key[("savedmodel", "forward")]["signature"] == "serving_default"
    assert {a["signature"] for a in manifest["artifacts"] if a["format"] == "savedmodel"} == {
        "text_features", "image_features", "serving_default"}
    for (fmt, function), artifact in by_key.items():
        ints = {i["dtype"] for i in artifact["inputs"] if i["name"] != "pixel_values"}
        assert ints <= {"int64" if fmt == "onnx" else "int32"}, (fmt, ints)
        names = [i["name"] for i in artifact["inputs"]]
        if function != "image_features":
            assert names[:2] == ["input_ids", "attention_mask"]
            assert artifact["inputs"][0]["dynamic_axes"] == {"0": "batch", "1": "length"}
        if function != "text_features":
            pixels = artifact["inputs"][-1]
            assert pixels["shape"] == ["image_batch", 3, 16, 16] and pixels["dtype"] == "float32"
        assert all(o["dtype"] == "float32" for o in artifact["outputs"])
    assert [o["name"] for o in by_key[("onnx", "forward")]["outputs"]] == list(exporting.FORWARD_OUTPUTS)


@pytest.mark.slow
def test_onnx_graphs_declare_dynamic_axes(exported):
    import onnxruntime

    session = onnxruntime.InferenceSession(str(exported / "text.onnx"), providers=["CPUExecutionProvider"])
    shapes = {i.name: (i.shape, i.type) for i in session.get_inputs()}
    assert shapes == {"input_ids": (["batch", "length"], "tensor(int64)"),
                      "attention_mask": (["batch", "length"], "tensor(int64)")}


@pytest.mark.slow
def test_conformance_command_passes_and_catches_a_broken_artifact(exported, tmp_path, capsys):
    assert main(["conformance", "--artifact", str(exported)]) == 0
    table = capsys.readouterr().out
    assert "FAIL" not in table and "all within tolerance" in table
    for name in ("text.onnx", "savedmodel:serving_default", "vision.tflite", "model.stablehlo", "3x12"):
        assert name in table
    # a copy expecting other text features (rows reversed) and with a truncated LiteRT file: both reported, exit 1
    broken = tmp_path / "broken"
    shutil.copytree(exported, broken)
    with np.load(broken / "reference.npz") as data:
        arrays = {k: data[k] for k in data.files}
    arrays["case1/text_features"] = arrays["case1/text_features"][::-1].copy()
    np.savez(broken / "reference.npz", **arrays)
    (broken / "vision.tflite").write_bytes((broken / "vision.tflite").read_bytes()[:1000])
    assert main(["conformance", "--artifact", str(broken)]) == 1
    failed = {tuple(line.split()[:2]) for line in capsys.readouterr().out.splitlines() if "FAIL" in line.split()}
    assert ("vision.tflite", "(load)") in failed
    for artifact in ("text.onnx", "text.tflite", "text.stablehlo", "savedmodel:text_features"):
        assert (artifact, "text_features") in failed, (artifact, failed)
    assert not any(a.startswith("model.") for a, _ in failed)  # the forward's outputs were not touched


@pytest.mark.slow
def test_conformance_recomputes_the_reference_from_the_checkpoint(source, exported):
    from conformance import run_artifact_conformance

    report = run_artifact_conformance(exported, checkpoint=source[1], formats="stablehlo")
    assert report.ok, report.table()
    assert {row.artifact for row in report.rows} == {"text.stablehlo", "vision.stablehlo", "model.stablehlo"}


# ============================================================================================ float16 / bfloat16
@pytest.mark.slow
@pytest.mark.parametrize("backend,to,dtype", [("pt", "onnx", "float16"), ("tf", "litert", "float16"),
                                              ("flax", "stablehlo", "bfloat16")])
def test_reduced_precision_artifacts(source, tmp_path, backend, to, dtype):
    import importlib

    from conformance import run_artifact_conformance

    cls = {"pt": "CLIPModel", "tf": "TFCLIPModel", "flax": "FlaxCLIPModel"}[backend]
    model = getattr(importlib.import_module(f"clip_{backend}"), cls).from_pretrained(source[1])
    exporter = importlib.import_module(f"clip_{backend}.export")
    manifest = exporter.export(model, tmp_path / "out", to=to, dtype=dtype)
    assert {a["dtype"] for a in manifest["artifacts"]} == {dtype}
    worst = _check_against(source[0], tmp_path / "out", dtype)
    assert worst > 1e-5  # really reduced precision (a float32 artifact would be within 1e-6)
    report = run_artifact_conformance(tmp_path / "out")
    assert report.ok, report.table()
    assert {row.tolerance for row in report.rows} == {2e-2}


# ============================================================================================ torch.export
PT_CLASSES = ["CLIPModel", "CLIPTextModel", "CLIPTextModelWithProjection", "CLIPVisionModel",
              "CLIPVisionModelWithProjection", "CLIPForImageClassification"]


@pytest.mark.slow
@pytest.mark.parametrize("name", PT_CLASSES)
def test_torch_export_with_dynamic_batch_and_length(name, source, tmp_path):
    """``torch.export`` with ``Dim`` batch and length, on every PyTorch model class, against transformers."""
    import transformers

    import clip_pt
    from clip_pt.export import input_specs

    theirs = getattr(transformers, name).from_pretrained(source[1], attn_implementation="eager").eval()
    theirs.save_pretrained(tmp_path)  # the classifier head is new: ours loads the same one
    ours = getattr(clip_pt, name).from_pretrained(tmp_path)
    text, vision = "Vision" not in name and name != "CLIPForImageClassification", "Text" not in name

    def kwargs(batch, length, image_batch, seed):
        case = _inputs(batch, length, image_batch if text and vision else batch, seed)
        return {k: torch.from_numpy(v) for k, v in case.items()
                if (k == "pixel_values" and vision) or (k != "pixel_values" and text)}

    example = kwargs(2, 8, 3, seed=9)
    with torch.no_grad():
        program = torch.export.export(ours, (), kwargs=example, dynamic_shapes=input_specs(example, ours.config))
    for i, shape in enumerate(SHAPES):
        inputs = kwargs(*shape, seed=i)
        got = program.module()(**inputs)
        with torch.no_grad():
            want = theirs(**inputs)
        for key in want.keys():
            if key in ("text_model_output", "vision_model_output"):
                continue
            tol = LOGIT_TOL if key.startswith("logits") or key == "last_hidden_state" else EMBED_TOL
            assert_close(got[key], want[key], tol, f"{name} {key} at {shape}")


# ============================================================================================ folders and errors
def test_staged_folder_leaves_nothing_on_failure_and_refuses_an_existing_one(tmp_path):
    out = tmp_path / "out"
    with pytest.raises(RuntimeError, match="midway"):
        with exporting.staged_folder(out) as tmp:
            (tmp / "text.onnx").write_bytes(b"half")
            raise RuntimeError("midway")
    assert list(tmp_path.iterdir()) == []
    out.mkdir()
    (out / "keep").write_text("mine")
    with pytest.raises(FileExistsError, match="overwrite"):
        with exporting.staged_folder(out):
            pass
    with pytest.raises(RuntimeError):  # even with overwrite, a failure keeps the old folder as it was
        with exporting.staged_folder(out, overwrite=True) as tmp:
            (tmp / "new").write_text("x")
            raise RuntimeError("midway")
    assert [p.name for p in tmp_path.iterdir()] == ["out"] and (out / "keep").read_text() == "mine"
    with exporting.staged_folder(out, overwrite=True) as tmp:
        (tmp / "new").write_text("x")
    assert [p.name for p in out.iterdir()] == ["new"] and [p.name for p in tmp_path.iterdir()] == ["out"]


def test_failed_export_leaves_nothing(tmp_path):
    """A text-only checkpoint cannot give the image tower: the export fails and writes nothing."""
    from clip_pt import CLIPTextModel

    from clip_core.config import CLIPConfig

    CLIPTextModel(CLIPConfig(**SPEC).text_config, seed=0).save_pretrained(tmp_path / "text-only")
    assert main(["export", str(tmp_path / "text-only"), str(tmp_path / "out"), "--to", "stablehlo"]) == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["text-only"]


def test_existing_folder_needs_overwrite(tmp_path, capsys):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "keep").write_text("mine")
    assert main(["export", str(tmp_path / "nowhere"), str(tmp_path / "out")]) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert (tmp_path / "out" / "keep").read_text() == "mine"


def test_bad_export_requests_fail_clearly(tmp_path):
    from clip_core.config import CLIPConfig
    from clip_pt import CLIPModel, CLIPTextModel
    from clip_pt.export import export as pt_export

    with pytest.raises(ValueError, match="tflite.*onnx, savedmodel, litert, stablehlo"):
        exporting.check_formats("tflite")
    with pytest.raises(ValueError, match="savedmodel.*tf backend"):
        exporting.check_formats("savedmodel", "pt")
    with pytest.raises(ValueError, match="litert.*bfloat16.*float32 or float16"):
        exporting.check_dtype("bfloat16", ["stablehlo", "litert"])
    with pytest.raises(ValueError, match="onnx.*bfloat16"):
        exporting.check_dtype("bf16", ["onnx"])
    with pytest.raises(ValueError, match="int8"):
        exporting.check_dtype("int8")
    assert exporting.check_formats("all", "tf") == ["savedmodel", "litert"]
    assert exporting.check_formats("stablehlo, onnx") == ["onnx", "stablehlo"]
    config = CLIPConfig(**SPEC)
    with pytest.raises(TypeError, match="CLIPModel.*CLIPTextModel"):
        pt_export(CLIPTextModel(config.text_config, seed=0), tmp_path / "out")
    with pytest.raises(ValueError, match="bfloat16"):
        pt_export(CLIPModel(config, seed=0), tmp_path / "out", dtype="bfloat16")
    assert not (tmp_path / "out").exists()
    with pytest.raises(FileNotFoundError, match="export.json"):
        exporting.read_manifest(tmp_path)


def test_reference_inputs_cover_two_batches_and_two_lengths():
    from clip_core.config import CLIPConfig

    config = CLIPConfig(**SPEC)
    cases = exporting.reference_inputs(config)
    assert [c["input_ids"].shape for c in cases] == [(1, 5), (3, 12)]
    assert [c["pixel_values"].shape[0] for c in cases] == [2, 1]
    for case in cases:  # one end token per row (the pooled one), padding masked after it
        ids, mask = case["input_ids"], case["attention_mask"]
        assert ((ids == 40).sum(axis=1) == 1).all()
        assert (mask.sum(axis=1) == (ids == 40).argmax(axis=1) + 1).all()
