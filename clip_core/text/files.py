"""transformers' tokenizer folder layout: finding a vocabulary and its settings, writing them back.

A folder (or Hub repo) holds ``vocab.json`` + ``merges.txt`` (preferred), ``tokenizer.json`` or OpenAI's
``bpe_simple_vocab_16e6.txt.gz``, plus optional ``tokenizer_config.json`` / ``special_tokens_map.json``. Saving writes
transformers' layout (loadable by transformers' ``CLIPTokenizer`` / ``CLIPTokenizerFast``), each file atomically.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Iterable

from ..hub import resolve_file, write_atomic

VOCAB_FILE = "vocab.json"
MERGES_FILE = "merges.txt"
TOKENIZER_FILE = "tokenizer.json"
OPENAI_BPE_FILE = "bpe_simple_vocab_16e6.txt.gz"
TOKENIZER_CONFIG_FILE = "tokenizer_config.json"
SPECIAL_TOKENS_MAP_FILE = "special_tokens_map.json"


def resolve(path_or_repo: str | os.PathLike, filename: str, required: bool = True) -> str | None:
    """``clip_core.hub.resolve_file`` as a string path (a local folder or a Hub repo id)."""
    path = resolve_file(path_or_repo, filename, required=required)
    return None if path is None else str(path)


def atomic_write(path: str, text: str) -> None:
    """Write ``text`` as UTF-8 through a temporary sibling and ``os.replace`` (``clip_core.hub.write_atomic``)."""
    write_atomic(Path(path), text.encode("utf-8"))


def token_content(value: Any) -> Any:
    """A special token as written by transformers: a string or an AddedToken dict."""
    return value.get("content") if isinstance(value, dict) else value


def read_settings(source: str, keys: Iterable[str]) -> dict[str, Any]:
    """The ``keys`` that ``tokenizer_config.json`` and then ``special_tokens_map.json`` of ``source`` set, if any."""
    keys = set(keys)
    settings: dict[str, Any] = {}
    for name in (TOKENIZER_CONFIG_FILE, SPECIAL_TOKENS_MAP_FILE):
        path = resolve(source, name, required=False)
        if path is not None:
            with open(path, encoding="utf-8") as handle:
                config = json.load(handle)
            settings.update({k: token_content(v) for k, v in config.items() if k in keys})
    return settings


def find_vocabulary(source: str) -> dict[str, str]:
    """The vocabulary files of a folder or repo, as tokenizer arguments (``vocab_file`` + ``merges_file``,
    ``tokenizer_file`` or ``bpe_file``, in that order of preference); a FileNotFoundError when there is none."""
    vocab_file = resolve(source, VOCAB_FILE, required=False)
    merges_file = resolve(source, MERGES_FILE, required=False) if vocab_file else None
    if vocab_file and merges_file:
        return {"vocab_file": vocab_file, "merges_file": merges_file}
    tokenizer_file = resolve(source, TOKENIZER_FILE, required=False)
    if tokenizer_file:
        return {"tokenizer_file": tokenizer_file}
    bpe_file = resolve(source, OPENAI_BPE_FILE, required=False)
    if bpe_file:
        return {"bpe_file": bpe_file}
    raise FileNotFoundError(
        f"no CLIP vocabulary in {source}: expected {VOCAB_FILE} + {MERGES_FILE}, {TOKENIZER_FILE} "
        f"or {OPENAI_BPE_FILE}"
    )


def write_vocabulary(
    folder: str, filename_prefix: str | None, encoder: dict[str, int], bpe_ranks: dict[tuple[str, str], int]
) -> tuple[str, str]:
    """Write ``vocab.json`` and ``merges.txt`` (transformers' format) into an existing folder; return the paths."""
    if not os.path.isdir(folder):
        raise FileNotFoundError(f"save_vocabulary needs an existing directory, got {folder}")
    prefix = f"{filename_prefix}-" if filename_prefix else ""
    vocab_path = os.path.join(folder, prefix + VOCAB_FILE)
    merges_path = os.path.join(folder, prefix + MERGES_FILE)
    atomic_write(vocab_path, json.dumps(encoder, indent=2, sort_keys=True, ensure_ascii=False) + "\n")
    merges = sorted(bpe_ranks, key=bpe_ranks.__getitem__)
    atomic_write(merges_path, "#version: 0.2\n" + "".join(f"{a} {b}\n" for a, b in merges))
    return vocab_path, merges_path


def write_settings(folder: str, tokenizer: Any) -> tuple[str, str]:
    """Write ``tokenizer_config.json`` and ``special_tokens_map.json`` of ``tokenizer`` into ``folder``."""

    def added(token: str) -> dict[str, Any]:
        return {"content": token, "lstrip": False, "normalized": True, "rstrip": False, "single_word": False}

    config = {
        "added_tokens_decoder": {
            str(tokenizer.encoder[t]): {**added(t), "special": True} for t in (tokenizer.bos_token, tokenizer.eos_token)
        },
        **tokenizer.special_tokens_map,
        "clean_up_tokenization_spaces": tokenizer.clean_up_tokenization_spaces,
        "errors": tokenizer.errors,
        "model_max_length": tokenizer.model_max_length,
        "padding_side": tokenizer.padding_side,
        "truncation_side": tokenizer.truncation_side,
        "tokenizer_class": "CLIPTokenizer",
    }
    special_map = {k: added(v) for k, v in tokenizer.special_tokens_map.items()}
    config_path = os.path.join(folder, TOKENIZER_CONFIG_FILE)
    map_path = os.path.join(folder, SPECIAL_TOKENS_MAP_FILE)
    atomic_write(config_path, json.dumps(config, indent=2, sort_keys=True, ensure_ascii=False) + "\n")
    atomic_write(map_path, json.dumps(special_map, indent=2, sort_keys=True, ensure_ascii=False) + "\n")
    return config_path, map_path
