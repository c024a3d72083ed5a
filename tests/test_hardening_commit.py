"""A save is one commit for the whole checkpoint (class 3 of the hardening issue): kills at every rename leave the
old or the new checkpoint, never a mix; concurrent writers serialise; stale temporaries are cleaned; mount points,
read-only parents and full disks give OSErrors; converting into the source's folder keeps its formats."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from clip_core.checkpoints import WEIGHTS_NAMES, convert_checkpoint, load_checkpoint, save_checkpoint
from clip_core.formats.commit import JOURNAL_NAME, STAGING_PREFIX
from clip_core.weights import init_state

from tests.test_errors import CONFIG

ROOT = Path(__file__).resolve().parents[1]
NAME = "text_model.embeddings.token_embedding.weight"
SEEDS = {0: init_state(CONFIG, "clip", seed=0)[NAME], 1: init_state(CONFIG, "clip", seed=1)[NAME]}


def _seed_of(folder: Path, fmt: str) -> int:
    _, state = load_checkpoint(folder, format=fmt)
    found = [seed for seed, value in SEEDS.items() if np.array_equal(state[NAME], value)]
    assert len(found) == 1, fmt
    return found[0]


def _run(script: str, **kwargs) -> subprocess.CompletedProcess:
    prelude = f"import sys; sys.path.insert(0, {str(ROOT)!r}); sys.path.insert(0, {str(ROOT / 'tests')!r})\n"
    return subprocess.run([sys.executable, "-c", prelude + textwrap.dedent(script)], capture_output=True,
                          text=True, timeout=240, **kwargs)


def _hidden(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


# ---------------------------------------------------------------------------------------------- kills
@pytest.mark.slow  # some ten child processes
def test_a_kill_at_any_rename_leaves_the_old_or_the_new_checkpoint(tmp_path):
    folder = tmp_path / "ckpt"
    save_checkpoint(folder, CONFIG, init_state(CONFIG, seed=0), formats="all")
    # the child saves seed 1 in every format and SIGKILLs itself at its k-th os.replace (each rename of the commit)
    script = """
        import os, signal
        from clip_core.checkpoints import save_checkpoint
        from clip_core.weights import init_state
        from tests.test_errors import CONFIG
        k, calls, real = int(sys.argv[1]), [0], os.replace
        def replace(a, b):
            calls[0] += 1
            if calls[0] == k:
                os.kill(os.getpid(), signal.SIGKILL)
            real(a, b)
        os.replace = replace
        save_checkpoint(sys.argv[2], CONFIG, init_state(CONFIG, seed=1), formats="all")
    """
    outcomes = []
    for k in range(1, 12):
        done = subprocess.run([sys.executable, "-c", f"import sys; sys.path[:0] = [{str(ROOT)!r}, "
                               f"{str(ROOT / 'tests')!r}]\n" + textwrap.dedent(script), str(k), str(folder)],
                              capture_output=True, text=True, timeout=240)
        killed = done.returncode == -signal.SIGKILL
        seeds = {fmt: _seed_of(folder, fmt) for fmt in WEIGHTS_NAMES}
        assert len(set(seeds.values())) == 1, (k, seeds)  # never a mix of the two saves
        outcomes.append((killed, seeds["tf"]))
        if not killed:
            assert done.returncode == 0, done.stderr[-2000:]
            break
        save_checkpoint(folder, CONFIG, init_state(CONFIG, seed=0), formats="all")  # back to the old one
        assert _hidden(folder) == []  # the next save completed or removed what the kill left
    assert (True, 0) in outcomes and (True, 1) in outcomes  # killed before and after the commit point
    assert outcomes[-1] == (False, 1)  # and a save with no kill at all went through


def test_the_loader_honours_a_half_applied_commit(tmp_path):
    folder = tmp_path / "ckpt"
    save_checkpoint(folder, CONFIG, init_state(CONFIG, seed=0), formats=["safetensors", "flax"])
    script = f"""
        import os, signal
        from clip_core.checkpoints import save_checkpoint
        from clip_core.formats.commit import JOURNAL_NAME
        from clip_core.weights import init_state
        from tests.test_errors import CONFIG
        real = os.replace
        def replace(a, b):
            if str(b).endswith(JOURNAL_NAME):
                real(a, b)
                os.kill(os.getpid(), signal.SIGKILL)  # just after the commit point: nothing moved in yet
            real(a, b)
        os.replace = replace
        save_checkpoint({str(folder)!r}, CONFIG, init_state(CONFIG, seed=1), formats="tf")
    """
    assert _run(script).returncode == -signal.SIGKILL
    assert JOURNAL_NAME in _hidden(folder)
    assert sorted(p.name for p in folder.iterdir() if not p.name.startswith(".")) == \
        ["config.json", "flax_model.msgpack", "model.safetensors"]  # what a reader ignoring the journal sees
    assert _seed_of(folder, "tf") == 1  # ours: the committed checkpoint, which has only the TF file
    with pytest.raises(FileNotFoundError, match="looked for model.safetensors"):
        load_checkpoint(folder, format="safetensors")
    save_checkpoint(folder, CONFIG, init_state(CONFIG, seed=0), formats="pytorch")  # completes, then saves
    assert sorted(os.listdir(folder)) == ["config.json", "pytorch_model.bin"]


def test_stale_staging_folders_are_removed_by_the_next_save(tmp_path):
    folder = tmp_path / "ckpt"
    save_checkpoint(folder, CONFIG, init_state(CONFIG, seed=0))
    for i in range(3):  # as killed saves leave them
        (folder / f"{STAGING_PREFIX}{i}").mkdir()
        (folder / f"{STAGING_PREFIX}{i}" / "model.safetensors").write_bytes(b"half")
    assert _seed_of(folder, "safetensors") == 0
    save_checkpoint(folder, CONFIG, init_state(CONFIG, seed=1))
    assert sorted(os.listdir(folder)) == ["config.json", "model.safetensors"]
    assert sorted(os.listdir(tmp_path)) == ["ckpt"]  # and nothing beside the folder either


# ---------------------------------------------------------------------------------------------- concurrency
def test_two_writers_into_one_folder_leave_one_complete_checkpoint(tmp_path):
    folder = tmp_path / "ckpt"
    script = """
        from clip_core.checkpoints import save_checkpoint
        from clip_core.weights import init_state
        from tests.test_errors import CONFIG
        for _ in range(3):
            save_checkpoint(sys.argv[1], CONFIG, init_state(CONFIG, seed=int(sys.argv[2])), formats=sys.argv[3])
    """
    command = [sys.executable, "-c", f"import sys; sys.path[:0] = [{str(ROOT)!r}, {str(ROOT / 'tests')!r}]\n" +
               textwrap.dedent(script), str(folder)]
    writers = [subprocess.Popen(command + ["0", "all"], stderr=subprocess.PIPE, text=True),
               subprocess.Popen(command + ["1", "safetensors"], stderr=subprocess.PIPE, text=True)]
    errors = [w.communicate(timeout=240)[1] for w in writers]
    assert [w.returncode for w in writers] == [0, 0], errors
    names = sorted(os.listdir(folder))
    assert names in (["config.json", "model.safetensors"],
                     ["config.json", "flax_model.msgpack", "model.safetensors", "pytorch_model.bin", "tf_model.h5"])
    seeds = {_seed_of(folder, fmt) for fmt in WEIGHTS_NAMES if WEIGHTS_NAMES[fmt] in names}
    assert seeds == ({1} if len(names) == 2 else {0})  # the files of one save only


# ---------------------------------------------------------------------------------------------- file systems
@contextlib.contextmanager
def _tmpfs(path: Path, size: str):
    path.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
                                           capture_output=True).returncode != 0:
        yield False
        return
    try:
        yield True
    finally:
        subprocess.run(["umount", "-l", str(path)], capture_output=True)


def test_saving_into_a_mount_point_under_a_read_only_parent(tmp_path):
    parent, folder = tmp_path / "parent", tmp_path / "parent" / "ckpt"
    with _tmpfs(parent, "4m") as mounted:
        if mounted:
            folder.mkdir()
            with _tmpfs(folder, "4m") as inner:
                assert inner
                subprocess.run(["mount", "-o", "remount,ro", str(parent)], check=True)
                save_checkpoint(folder, CONFIG, init_state(CONFIG, seed=0), formats=["safetensors", "tf"])
                save_checkpoint(folder, CONFIG, init_state(CONFIG, seed=1), formats="safetensors")
                assert sorted(os.listdir(folder)) == ["config.json", "model.safetensors"]
                assert _seed_of(folder, "safetensors") == 1
                with pytest.raises(OSError, match="Read-only file system"):  # the true cause, not EXDEV
                    save_checkpoint(parent / "new", CONFIG, init_state(CONFIG))
        else:  # not root: a read-only parent by its permission bits
            folder.mkdir()
            parent.chmod(0o555)
            try:
                save_checkpoint(folder, CONFIG, init_state(CONFIG, seed=1))
                assert _seed_of(folder, "safetensors") == 1
                with pytest.raises(PermissionError):
                    save_checkpoint(parent / "new", CONFIG, init_state(CONFIG))
            finally:
                parent.chmod(0o755)


@pytest.mark.parametrize("fmt", ["safetensors", "pytorch", "tf", "flax"])
def test_a_full_disk_is_an_oserror_and_leaves_the_checkpoint(tmp_path, fmt):
    folder = tmp_path / "disk" / "ckpt"
    with _tmpfs(tmp_path / "disk", "160k") as mounted:
        folder.parent.mkdir(exist_ok=True)
        save_checkpoint(folder, CONFIG, init_state(CONFIG, seed=0), formats="safetensors")
        before = {p.name: p.read_bytes() for p in folder.iterdir()}
        # 30 layers: some 1.3 MB per format, far over the 160 KiB file system (or the 200 KB RLIMIT_FSIZE)
        script = f"""
            import resource, signal
            signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
            if not {mounted}:
                resource.setrlimit(resource.RLIMIT_FSIZE, (200_000, 200_000))
            from clip_core.checkpoints import save_checkpoint
            from clip_core.config import CLIPConfig
            from clip_core.weights import init_state
            from tests.test_errors import CONFIG
            big = CLIPConfig.from_dict({{**CONFIG.to_dict(), "text_config": {{**CONFIG.text_config.to_dict(),
                                        "num_hidden_layers": 30}}}})
            try:
                save_checkpoint({str(folder)!r}, big, init_state(big), formats={fmt!r})
            except OSError as err:
                print(type(err).__name__, err)
        """
        done = _run(script)
        assert done.returncode == 0, done.stderr[-3000:]  # no segfault, no raw library error
        assert "No space left on device" in done.stdout or "File too large" in done.stdout, done.stdout
        assert str(folder) in done.stdout
        assert {p.name: p.read_bytes() for p in folder.iterdir()} == before


# ---------------------------------------------------------------------------------------------- convert
def test_convert_into_the_source_folder_keeps_its_formats(tmp_path):
    folder = tmp_path / "ckpt"
    save_checkpoint(folder, CONFIG, init_state(CONFIG, seed=0), formats=["safetensors", "pytorch"])
    convert_checkpoint(folder, folder, formats="tf")
    assert sorted(os.listdir(folder)) == ["config.json", "model.safetensors", "pytorch_model.bin", "tf_model.h5"]
    assert {_seed_of(folder, fmt) for fmt in ("safetensors", "pytorch", "tf")} == {0}
    convert_checkpoint(folder / "model.safetensors", folder, formats="flax")  # a file of the folder: the same
    assert "pytorch_model.bin" in os.listdir(folder) and "flax_model.msgpack" in os.listdir(folder)


def test_convert_piped_into_a_closed_reader_succeeds(tmp_path):
    folder = tmp_path / "ckpt"
    save_checkpoint(folder, CONFIG, init_state(CONFIG, seed=0))
    done = subprocess.run(f"{sys.executable} -m clip_core.cli convert {folder} {tmp_path / 'out'} --format flax "
                          "| head -c0", shell=True, capture_output=True, text=True, timeout=240, cwd=ROOT,
                          executable="/bin/bash", env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert done.stderr == ""
    assert _seed_of(tmp_path / "out", "flax") == 0
    status = subprocess.run(f"set -o pipefail; {sys.executable} -m clip_core.cli convert {folder} "
                            f"{tmp_path / 'out2'} | head -c0", shell=True, capture_output=True, text=True,
                            timeout=240, cwd=ROOT, executable="/bin/bash", env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert status.returncode == 0, status.stderr


# ---------------------------------------------------------------------------------------------- tokenizer saves
def test_a_tokenizer_save_that_fails_leaves_the_previous_files_whole(tmp_path):
    """A full disk halfway through a tokenizer save (vocab.json and merges.txt fit under the limit, tokenizer.json
    does not) raises an OSError and leaves every previously saved tokenizer file byte for byte, with no temporary
    left behind; other files in the folder are never touched."""
    from tests.conftest import shared_path

    vocab = shared_path("data", "clip-bpe")
    folder = tmp_path / "tok"
    script = f"""
        import resource, signal
        from clip_core.tokenizer import CLIPTokenizerFast
        tok = CLIPTokenizerFast.from_pretrained({str(vocab)!r})
        tok.save_pretrained({str(folder)!r})
        (__import__("pathlib").Path({str(folder)!r}) / "notes.txt").write_text("mine")
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (1_500_000, 1_500_000))  # tokenizer.json is about 2.5 MB
        tok.add_tokens(["<new-token>"])
        try:
            tok.save_pretrained({str(folder)!r})
        except OSError as err:
            print("OSError", type(err).__name__, err)
    """
    first = _run(script.replace("tok.add_tokens", "raise SystemExit(0)\n        tok.add_tokens", 1))
    assert first.returncode == 0, first.stderr[-3000:]
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    assert {"vocab.json", "merges.txt", "tokenizer.json", "tokenizer_config.json", "notes.txt"} <= set(before)
    done = _run(script)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.startswith("OSError"), done.stdout
    assert "File too large" in done.stdout or "No space left" in done.stdout, done.stdout
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before
    assert "<new-token>" not in before["tokenizer_config.json"].decode()
