"""Loading by Hub repo id without the Hub: one clear OSError at once, saying how to load from a local folder.

Run in subprocesses with their own environment (HF_HUB_OFFLINE, an HF_ENDPOINT nobody listens on, an empty cache),
as a user would meet it. The local cache, when it holds the repo, is still used (huggingface_hub's real cache
layout, written by hand; nothing is downloaded).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from clip_core.hub import HubUnreachableError, resolve_file

ROOT = Path(__file__).resolve().parents[1]
REPO = "some-org/some-clip"

SCRIPT = r"""
import json, sys
from clip_core.config import CLIPConfig
from clip_core.checkpoints import load_checkpoint
from clip_core.tokenizer import CLIPTokenizerFast
results = {}
for name, load in [("config", lambda: CLIPConfig.from_pretrained(sys.argv[1])),
                   ("weights", lambda: load_checkpoint(sys.argv[1])),
                   ("tokenizer", lambda: CLIPTokenizerFast.from_pretrained(sys.argv[1]))]:
    try:
        load()
        results[name] = ["no error", [], ""]
    except BaseException as err:
        results[name] = [type(err).__name__, [c.__name__ for c in type(err).__mro__], str(err)]
print(json.dumps(results))
"""


def _run(tmp_path, **env):
    environment = {k: v for k, v in os.environ.items() if k not in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")}
    environment.update(HF_HOME=str(tmp_path / "hf-home"), PYTHONPATH=str(ROOT), **env)
    # the timeout only guards against a hang (huggingface_hub alone retries a refused connection for ~25 s a file)
    done = subprocess.run([sys.executable, "-c", SCRIPT, REPO], env=environment, capture_output=True, text=True,
                          timeout=120, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("env, reason", [
    (dict(HF_HUB_OFFLINE="1"), "HF_HUB_OFFLINE is set"),
    (dict(HF_ENDPOINT="http://127.0.0.1:9"), "127.0.0.1:9 does not answer"),
])
def test_repo_id_without_the_hub_fails_at_once(tmp_path, env, reason):
    results = _run(tmp_path, **env)
    for what, (name, mro, message) in results.items():
        assert name == "HubUnreachableError", (what, name, message)
        assert "OSError" in mro and "ConnectionError" in mro
        assert reason in message and REPO in message, message
        assert "To load from a local folder, pass its path" in message
        assert "no model weights" not in message


def _fake_cache(root: Path, files: dict[str, str]) -> Path:
    """huggingface_hub's cache layout: refs/main names a snapshot folder holding the files."""
    repo = root / f"models--{REPO.replace('/', '--')}"
    commit = "0123456789abcdef0123456789abcdef01234567"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    snapshot = repo / "snapshots" / commit
    snapshot.mkdir(parents=True)
    for name, text in files.items():
        (snapshot / name).parent.mkdir(parents=True, exist_ok=True)
        (snapshot / name).write_text(text)
    return root


def test_offline_uses_the_local_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    cache = _fake_cache(tmp_path / "cache", {"config.json": json.dumps({"model_type": "clip"}),
                                             "sub/config.json": "{}"})
    found = resolve_file(REPO, "config.json", cache_dir=cache)
    assert found.name == "config.json" and json.loads(found.read_text()) == {"model_type": "clip"}
    assert resolve_file(REPO, "config.json", cache_dir=cache, subfolder="sub").read_text() == "{}"
    # a cached repo without the file: "not there", so callers try their other names
    assert resolve_file(REPO, "model.safetensors", cache_dir=cache, required=False) is None
    with pytest.raises(FileNotFoundError, match="model.safetensors is not in the local cache of the Hub repo"):
        resolve_file(REPO, "model.safetensors", cache_dir=cache)
    # a repo the cache does not hold: the Hub is needed, and missing
    with pytest.raises(HubUnreachableError, match="HF_HUB_OFFLINE is set"):
        resolve_file("other-org/other", "config.json", cache_dir=cache, required=False)


def test_local_files_only_and_subfolder_in_a_directory(tmp_path, monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")
    with pytest.raises(HubUnreachableError, match="local_files_only=True"):
        resolve_file(REPO, "config.json", cache_dir=tmp_path, local_files_only=True)
    (tmp_path / "model" / "text").mkdir(parents=True)
    (tmp_path / "model" / "text" / "config.json").write_text("{}")
    assert resolve_file(tmp_path / "model", "config.json", subfolder="text") == \
        tmp_path / "model" / "text" / "config.json"
    with pytest.raises(TypeError, match="subfolder"):
        resolve_file(tmp_path / "model", "config.json", subfolder=3)


def test_transformers_also_raises_an_oserror_offline(tmp_path):
    import transformers

    # the tests run with HF_HUB_OFFLINE=1 (tests/conftest.py); both libraries give an OSError
    with pytest.raises(OSError):
        transformers.CLIPConfig.from_pretrained(REPO, cache_dir=tmp_path)
    with pytest.raises(OSError):
        from clip_core.config import CLIPConfig

        CLIPConfig.from_pretrained(REPO, cache_dir=tmp_path)
