"""transformers' tokenizer folder layout: finding a vocabulary and its settings, writing them back.

A folder (or Hub repo) holds ``vocab.json`` + ``merges.txt`` (preferred), ``tokenizer.json`` or OpenAI's
``bpe_simple_vocab_16e6.txt.gz``, plus optional ``tokenizer_config.json`` / ``special_tokens_map.json``. Saving writes
transformers' layout (loadable by transformers' ``CLIPTokenizer`` / ``CLIPTokenizerFast``), each file atomically.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from ..hub import resolve_file, write_atomic
from ..jsonio import read_json

VOCAB_FILE = "vocab.json"
MERGES_FILE = "merges.txt"
TOKENIZER_FILE = "tokenizer.json"
OPENAI_BPE_FILE = "bpe_simple_vocab_16e6.txt.gz"
TOKENIZER_CONFIG_FILE = "tokenizer_config.json"
CHAT_TEMPLATE_FILE = "chat_template.jinja"  # where transformers 4.57 saves a chat template (and reads it first)
CHAT_TEMPLATE_DIR = "additional_chat_templates"  # and the named ones of several
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


#: tokenizer_config.json keys that describe files or classes, not constructor arguments.
_NOT_SETTINGS = {"tokenizer_class", "auto_map", "name_or_path", "special_tokens_map_file", "tokenizer_file",
                 "vocab_file", "merges_file", "bpe_file", "vocab", "merges", "extra_special_tokens",
                 "processor_class", "use_fast"}


def read_settings(source: str) -> dict[str, Any]:
    """Constructor arguments saved in ``tokenizer_config.json`` and then ``special_tokens_map.json`` of ``source``.

    Every key but those naming files or classes is kept (transformers keeps them in ``init_kwargs``); special
    tokens saved as AddedToken dicts keep their options; ``added_tokens_decoder`` restores added tokens.
    """
    settings: dict[str, Any] = {}
    for name in (TOKENIZER_CONFIG_FILE, SPECIAL_TOKENS_MAP_FILE):
        path = resolve(source, name, required=False)
        if path is None:
            continue
        config = read_json(path, path)
        for key, value in config.items():
            if key in _NOT_SETTINGS:
                continue
            if name == SPECIAL_TOKENS_MAP_FILE and key in settings:
                continue  # tokenizer_config.json wins, as in transformers
            settings[key] = value
    if isinstance(settings.get("chat_template"), list):  # several templates, as transformers' config lists them
        settings["chat_template"] = {t["name"]: t["template"] for t in settings["chat_template"]}
    template = resolve(source, CHAT_TEMPLATE_FILE, required=False)
    others = Path(source, CHAT_TEMPLATE_DIR)
    extra = {p.name[:-len(".jinja")]: p.read_text(encoding="utf-8")
             for p in sorted(others.glob("*.jinja"))} if others.is_dir() else {}
    if template is not None:  # the files win over tokenizer_config.json's key, as in transformers
        with open(template, encoding="utf-8") as handle:
            settings["chat_template"] = {"default": handle.read(), **extra} if extra else handle.read()
    elif extra:
        settings["chat_template"] = extra
    return settings


def chat_template_files(folder: str, tokenizer: Any) -> tuple[str, ...]:
    """Write the templates other than ``"default"`` of a dict ``chat_template`` as
    ``additional_chat_templates/NAME.jinja`` (transformers' layout), each file atomically; returns their paths."""
    template = tokenizer.chat_template
    if not isinstance(template, dict):
        return ()
    paths = []
    for name, text in template.items():
        if name != "default":
            path = os.path.join(folder, CHAT_TEMPLATE_DIR, f"{name}.jinja")
            os.makedirs(os.path.dirname(path), exist_ok=True)
            atomic_write(path, text)
            paths.append(path)
    return tuple(paths)


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


def _added(token: Any) -> dict[str, Any]:
    return {"content": token.content, "lstrip": token.lstrip, "normalized": token.normalized,
            "rstrip": token.rstrip, "single_word": token.single_word, "special": token.special}


def _jsonable(value: Any) -> bool:
    try:
        json.dumps(value)
    except (TypeError, ValueError):
        return False
    return True


def write_settings(folder: str, tokenizer: Any, jinja_files: bool = True) -> tuple[str, ...]:
    """Write ``tokenizer_config.json`` and ``special_tokens_map.json`` of ``tokenizer`` into ``folder`` (and a
    chat template as ``chat_template.jinja``, as transformers 4.57 does).

    The config holds transformers' keys (special tokens, ``added_tokens_decoder``, ``model_max_length``, ...) plus
    every other JSON-ready keyword the tokenizer was built with, so that both libraries load it back the same.
    """
    config: dict[str, Any] = {k: v for k, v in tokenizer.init_kwargs.items()
                              if k not in _NOT_SETTINGS and k not in ("verbose",) and _jsonable(v)}
    for name in ("unk_token", "bos_token", "eos_token", "pad_token", "sep_token", "cls_token", "mask_token"):
        config.pop(name, None)
    config.update({
        "added_tokens_decoder": {str(i): _added(t) for i, t in tokenizer.added_tokens_decoder.items()},
        **tokenizer.special_tokens_map,
        "clean_up_tokenization_spaces": tokenizer.clean_up_tokenization_spaces,
        "errors": tokenizer.errors,
        "model_max_length": tokenizer.model_max_length,
        "padding_side": tokenizer.padding_side,
        "truncation_side": tokenizer.truncation_side,
        "split_special_tokens": tokenizer.split_special_tokens,
        "extra_special_tokens": {},
        "tokenizer_class": "CLIPTokenizer",
    })
    written: tuple[str, ...] = ()
    template = config.pop("chat_template", None)
    if isinstance(template, dict) and not jinja_files:  # transformers' config form of several templates
        config["chat_template"] = [{"name": k, "template": v} for k, v in template.items()]
    elif isinstance(template, dict) and "default" in template:  # the others: see chat_template_files
        template = template["default"]
    if isinstance(template, str) and jinja_files:  # saved as chat_template.jinja, as transformers does
        written = (os.path.join(folder, CHAT_TEMPLATE_FILE),)
        atomic_write(written[0], template)
    elif template is not None and not isinstance(template, dict):
        config["chat_template"] = template
    if type(tokenizer).model_input_names != tokenizer.model_input_names:
        config["model_input_names"] = list(tokenizer.model_input_names)
    special_map: dict[str, Any] = {}
    for key, value in tokenizer.special_tokens_map_extended.items():
        special_map[key] = [_added(t) for t in value] if isinstance(value, list) else _added(value)
    config_path = os.path.join(folder, TOKENIZER_CONFIG_FILE)
    map_path = os.path.join(folder, SPECIAL_TOKENS_MAP_FILE)
    atomic_write(config_path, json.dumps(config, indent=2, sort_keys=True, ensure_ascii=False) + "\n")
    atomic_write(map_path, json.dumps(special_map, indent=2, sort_keys=True, ensure_ascii=False) + "\n")
    return (config_path, map_path, *written)


def write_tokenizer_json(folder: str, tokenizer: Any) -> str:
    """Write ``tokenizer.json`` as transformers' ``CLIPTokenizerFast`` saves it (its normalizer, split, byte-level
    BPE with ``</w>``, start / end tokens around each sequence, and the added tokens); returns its path."""
    from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors

    from .cleaning import WORD_PATTERN

    merges = sorted(tokenizer.bpe_ranks, key=tokenizer.bpe_ranks.__getitem__)
    unk = tokenizer.unk_token if tokenizer.unk_token in tokenizer.encoder else None
    backend = Tokenizer(models.BPE(vocab=dict(tokenizer.encoder), merges=merges, unk_token=unk,
                                   continuing_subword_prefix="", end_of_word_suffix="</w>", fuse_unk=False))
    backend.normalizer = normalizers.Sequence(
        [normalizers.NFC(), normalizers.Replace(Regex(r"\s+"), " "), normalizers.Lowercase()])
    backend.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(WORD_PATTERN), behavior="removed", invert=True),
        pre_tokenizers.ByteLevel(add_prefix_space=False),
    ])
    backend.decoder = decoders.ByteLevel()
    if tokenizer.bos_token_id is not None and tokenizer.eos_token_id is not None:
        backend.post_processor = processors.RobertaProcessing(
            sep=(tokenizer.eos_token, tokenizer.eos_token_id), cls=(tokenizer.bos_token, tokenizer.bos_token_id),
            add_prefix_space=False, trim_offsets=False)
    data = json.loads(backend.to_str())
    data["added_tokens"] = [{"id": i, **{k: v for k, v in _added(t).items()}}
                            for i, t in tokenizer.added_tokens_decoder.items()]
    path = os.path.join(folder, TOKENIZER_FILE)
    atomic_write(path, json.dumps(data, ensure_ascii=False, indent=2) + "\n")
    return path
