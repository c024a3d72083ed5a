"""The conformance suite: every backend pair agrees on several configs, with transformers and the fixtures."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

import conformance
from clip_core.cli import main
from clip_core.config import CLIPConfig
from conformance import make_inputs, run_conformance
from tests.conftest import ROOT, shared_path

pytest.importorskip("torch")
pytest.importorskip("tensorflow")
pytest.importorskip("flax")

ODD = CLIPConfig(
    projection_dim=10,
    text_config=dict(vocab_size=300, hidden_size=15, intermediate_size=22, num_hidden_layers=3, num_attention_heads=3,
                     max_position_embeddings=11, hidden_act="gelu", bos_token_id=298, eos_token_id=299,
                     pad_token_id=0),
    vision_config=dict(hidden_size=25, intermediate_size=31, num_hidden_layers=2, num_attention_heads=5,
                       image_size=28, patch_size=7, hidden_act="quick_gelu", num_channels=3),
)
LEGACY = CLIPConfig(
    projection_dim=8,
    text_config=dict(vocab_size=120, hidden_size=16, intermediate_size=24, num_hidden_layers=2, num_attention_heads=2,
                     max_position_embeddings=9, eos_token_id=2, bos_token_id=0),
    vision_config=dict(hidden_size=16, intermediate_size=24, num_hidden_layers=1, num_attention_heads=4,
                       image_size=16, patch_size=4),
)
ALL = ["pt", "tf", "flax", "hf"]


def _assert_complete(report, backends):
    assert report.ok, report.table()
    pairs = {row.pair for row in report.rows}
    assert pairs >= {f"{a}/{b}" for i, a in enumerate(backends) for b in backends[i + 1:]}
    outputs = {row.output for row in report.rows}
    assert outputs == set(conformance.TOLERANCES)  # every output was compared, none silently dropped


@pytest.mark.parametrize("name, kwargs", [
    ("tiny", dict(preset="tiny")),
    ("odd-heads-gelu", dict(config=ODD, seed=5)),
    ("legacy-eos", dict(config=LEGACY, seed=7)),
])
def test_every_pair_agrees(name, kwargs):
    _assert_complete(run_conformance(backends=ALL, **kwargs), ALL)


@pytest.mark.parametrize("folder", ["hf-tiny", "hf-tiny-legacy-eos"])
def test_against_the_reference_fixtures(folder):
    report = run_conformance(fixture=shared_path("fixtures", folder), backends=["pt", "tf", "flax"])
    assert report.ok, report.table()
    fixture_pairs = {row.pair for row in report.rows if "fixture" in row.pair}
    assert {"pt/fixture-pt", "tf/fixture-tf", "flax/fixture-flax", "flax/fixture-pt"} <= fixture_pairs


def test_inputs_exercise_padding_and_pooling():
    for config in (CLIPConfig.preset("tiny"), ODD, LEGACY):
        x = make_inputs(config)
        lengths = x["attention_mask"].sum(1)
        assert len(set(lengths.tolist())) == 3 and lengths.min() == 3  # rows of three different lengths
        text = config.text_config
        end = x["input_ids"][np.arange(3), lengths - 1]
        if text.eos_token_id == 2:
            assert np.all(x["input_ids"].argmax(1) == lengths - 1)
        else:
            assert np.all(end == text.eos_token_id)
            assert np.all((x["input_ids"] == text.eos_token_id).argmax(1) == lengths - 1)


def test_a_broken_backend_is_caught(monkeypatch):
    honest = conformance.RUNNERS["tf"]

    def off_by_a_little(config, state, inputs, dtype):
        out = honest(config, state, inputs, dtype)
        out["vision_pooler_output"] = out["vision_pooler_output"] + 5e-5  # over the 1e-5 tolerance
        return out

    monkeypatch.setitem(conformance.RUNNERS, "tf", off_by_a_little)
    report = run_conformance(preset="tiny", backends=["pt", "tf"])
    assert not report.ok
    assert [(r.output, r.pair) for r in report.failures] == [("vision_pooler_output", "pt/tf")]
    assert "FAIL" in report.table()


def test_reduced_precision_run():
    report = run_conformance(preset="tiny", backends=["pt", "tf", "flax"], dtype="bfloat16")
    assert report.ok, report.table()
    assert all(row.cosine is not None and row.cosine > 0.999 for row in report.rows)
    assert {row.pair for row in report.rows} >= {"pt/pt-fp32", "tf/pt-fp32", "flax/pt-fp32"}


def test_cli_prints_the_table_and_exit_codes(capsys, monkeypatch):
    assert main(["conformance", "--backends", "pt,flax", "--seed", "1"]) == 0
    out = capsys.readouterr().out
    assert "logits_per_image" in out and "pt/flax" in out and "all within tolerance" in out
    monkeypatch.setitem(conformance.TOLERANCES, "text_embeds", 0.0)  # impossible: must fail, exit 1
    monkeypatch.setitem(conformance.RUNNERS, "flax", _noisy(conformance.RUNNERS["flax"]))
    assert main(["conformance", "--backends", "pt,flax"]) == 1
    assert "FAILED" in capsys.readouterr().out
    assert main(["conformance", "--backends", "pt,mxnet"]) == 2
    assert "mxnet" in capsys.readouterr().err


def _noisy(runner):
    def run(*args):
        out = runner(*args)
        out["text_embeds"] = out["text_embeds"] + 1e-3
        return out
    return run


def test_python_dash_m_conformance_runs_by_default():
    proc = subprocess.run([sys.executable, "-m", "conformance", "--backends", "pt,flax"], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "comparisons over backends pt, flax: all within tolerance" in proc.stdout
    alone = subprocess.run([sys.executable, "-m", "conformance", "--backends", "pt"], cwd=ROOT,
                           capture_output=True, text=True, timeout=300)
    assert alone.returncode == 2 and "nothing to compare" in alone.stderr
    assert "Traceback" not in alone.stderr and len(alone.stderr.strip().splitlines()) == 1


def test_a_transformers_config_with_default_special_ids_outside_its_vocabulary(tmp_path, capsys):
    """transformers writes bos 49406 / eos 49407 / pad 1 into a config with a small vocabulary: the inputs stay
    inside the vocabulary, the end id never occurs, and transformers then pools at position 0 -- as every backend
    must (the ``hf`` column is transformers itself)."""
    transformers = pytest.importorskip("transformers")
    torch = pytest.importorskip("torch")
    hf_config = transformers.CLIPConfig(
        text_config=dict(vocab_size=99, hidden_size=16, intermediate_size=24, num_hidden_layers=2,
                         num_attention_heads=2, max_position_embeddings=10),
        vision_config=dict(hidden_size=16, intermediate_size=24, num_hidden_layers=1, num_attention_heads=2,
                           image_size=16, patch_size=8),
        projection_dim=8)
    assert (hf_config.text_config.bos_token_id, hf_config.text_config.eos_token_id) == (49406, 49407)
    hf_config.save_pretrained(tmp_path)
    assert main(["conformance", "--config", str(tmp_path / "config.json"), "--backends", "pt,tf,flax,hf"]) == 0
    out = capsys.readouterr().out
    assert "pt/hf" in out and "flax/hf" in out and "tf/hf" in out and "all within tolerance" in out

    config = CLIPConfig.from_pretrained(tmp_path / "config.json")
    x = make_inputs(config)
    assert x["input_ids"].min() >= 0 and x["input_ids"].max() < 99 and not np.any(x["input_ids"] == 49407)
    torch.manual_seed(0)
    model = transformers.CLIPTextModel(hf_config.text_config).eval()
    with torch.no_grad():
        hf = model(input_ids=torch.from_numpy(x["input_ids"]), attention_mask=torch.from_numpy(x["attention_mask"]))
    np.testing.assert_array_equal(hf.pooler_output.numpy(), hf.last_hidden_state[:, 0].numpy())  # position 0
    report = run_conformance(config=config, backends=ALL, seed=3)
    _assert_complete(report, ALL)
