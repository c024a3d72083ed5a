"""Byte-level BPE as OpenAI's CLIP does it, and the vocabulary formats it is stored in.

Each word's UTF-8 bytes are mapped to printable characters (:func:`bytes_to_unicode`), the last symbol of the word
carries the end-of-word marker ``</w>``, and adjacent pairs are merged by rank until none is in the merges
(:func:`merge_word`). A vocabulary (token -> id) and its ranked merges load from transformers' ``vocab.json`` +
``merges.txt``, from a ``tokenizers`` ``tokenizer.json``, from OpenAI's ``bpe_simple_vocab_16e6.txt.gz`` or from
memory (:func:`load_vocabulary`).
"""

from __future__ import annotations

import gzip
import json
import os
from functools import lru_cache
from typing import Sequence, Union

BOS_TOKEN = "<|startoftext|>"
EOS_TOKEN = "<|endoftext|>"
END_OF_WORD = "</w>"
OPENAI_NUM_MERGES = 49152 - 256 - 2  # merges OpenAI reads from its .gz file (lines 1..48894)

Vocabulary = tuple[dict[str, int], list[tuple[str, str]]]  # (token -> id, merges in rank order)
OptionalPath = Union[str, os.PathLike, None]


@lru_cache(maxsize=None)
def bytes_to_unicode() -> dict[int, str]:
    """OpenAI's byte -> printable character table (the 188 printable Latin-1 bytes map to themselves).

    Every other byte gets the next unused code point from 256 on, so that BPE never sees whitespace or control
    characters.
    """
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    table = {b: chr(b) for b in printable}  # insertion order matters: it is the order of OpenAI's vocabulary
    extra = 0
    for b in range(256):
        if b not in table:
            table[b] = chr(256 + extra)
            extra += 1
    return table


def merge_word(word: str, ranks: dict[tuple[str, str], int]) -> list[str]:
    """Byte-level BPE of one byte-mapped word: merge the lowest-ranked adjacent pair until none is in the merges."""
    symbols = [*word[:-1], word[-1] + END_OF_WORD]
    while len(symbols) > 1:
        pairs = set(zip(symbols, symbols[1:]))
        best = min(pairs, key=lambda pair: ranks.get(pair, float("inf")))
        if best not in ranks:
            break
        merged, i = [], 0
        while i < len(symbols):  # merge every occurrence, left to right, without overlap
            if i + 1 < len(symbols) and (symbols[i], symbols[i + 1]) == best:
                merged.append(symbols[i] + symbols[i + 1])
                i += 2
            else:
                merged.append(symbols[i])
                i += 1
        symbols = merged
    return symbols


# --------------------------------------------------------------------------------------------------------------------
# Vocabulary formats
# --------------------------------------------------------------------------------------------------------------------


def load_vocabulary(
    vocab_file: OptionalPath, merges_file: OptionalPath, tokenizer_file: OptionalPath, bpe_file: OptionalPath,
    vocab: dict[str, int] | None, merges: Sequence[tuple[str, str] | str] | None,
) -> Vocabulary:
    """(token -> id, merges) from exactly one source: ``vocab_file`` + ``merges_file``, ``tokenizer_file``,
    ``bpe_file`` or in-memory ``vocab`` + ``merges``; a ValueError names what is missing or given twice."""
    sources = {
        "vocab_file/merges_file": vocab_file is not None or merges_file is not None,
        "tokenizer_file": tokenizer_file is not None,
        "bpe_file": bpe_file is not None,
        "vocab/merges": vocab is not None or merges is not None,
    }
    given = [name for name, used in sources.items() if used]
    if len(given) != 1:
        raise ValueError(f"give exactly one vocabulary source ({', '.join(sources)}), got {given or 'none'}")
    if given[0] == "vocab_file/merges_file":
        if vocab_file is None or merges_file is None:
            raise ValueError("vocab_file and merges_file must be given together")
        return load_vocab_merges(os.fspath(vocab_file), os.fspath(merges_file))
    if given[0] == "tokenizer_file":
        return load_tokenizer_json(os.fspath(tokenizer_file))
    if given[0] == "bpe_file":
        return load_openai_bpe(os.fspath(bpe_file))
    if vocab is None or merges is None:
        raise ValueError("vocab and merges must be given together")
    return vocab, [merge_pair(m, "merges", n) for n, m in enumerate(merges, 1)]


def require_file(path: str | os.PathLike, what: str) -> str:
    """``path`` as a string if it is a file; otherwise a FileNotFoundError saying which ``what`` is missing."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{what} not found: {path}")
    return path


def load_vocab_merges(vocab_file: str, merges_file: str) -> Vocabulary:
    """transformers' layout: ``vocab.json`` (token -> id) and ``merges.txt`` (optional ``#version`` header)."""
    with open(require_file(vocab_file, "vocabulary file"), encoding="utf-8") as handle:
        vocab = json.load(handle)
    with open(require_file(merges_file, "merges file"), encoding="utf-8") as handle:
        lines = handle.read().split("\n")
    if lines and lines[0].startswith("#version"):
        lines = lines[1:]
    return vocab, [merge_pair(line, merges_file, n) for n, line in enumerate(lines, 1) if line.strip()]


def merge_pair(line: str | Sequence[str], source: str, number: int) -> tuple[str, str]:
    """One merge ("a b" or a pair) as a pair; a ValueError names ``source`` and the merge's ``number`` otherwise."""
    parts = line.split() if isinstance(line, str) else list(line)
    if len(parts) != 2:
        raise ValueError(f"{source}: merge {number} is not two symbols: {line!r}")
    return parts[0], parts[1]


def load_openai_bpe(bpe_file: str) -> Vocabulary:
    """OpenAI's ``bpe_simple_vocab_16e6.txt.gz``: the vocabulary is built from the merges as OpenAI does."""
    with gzip.open(require_file(bpe_file, "OpenAI BPE file"), "rt", encoding="utf-8") as handle:
        lines = handle.read().split("\n")[1 : OPENAI_NUM_MERGES + 1]
    merges = [merge_pair(line, bpe_file, n) for n, line in enumerate(lines, 2)]
    symbols = list(bytes_to_unicode().values())
    tokens = symbols + [s + END_OF_WORD for s in symbols] + ["".join(m) for m in merges] + [BOS_TOKEN, EOS_TOKEN]
    return {token: i for i, token in enumerate(tokens)}, merges


def load_tokenizer_json(tokenizer_file: str) -> Vocabulary:
    """A ``tokenizers`` ``tokenizer.json`` with a BPE model."""
    with open(require_file(tokenizer_file, "tokenizer file"), encoding="utf-8") as handle:
        data = json.load(handle)
    model = data.get("model") or {}
    if model.get("type", "BPE") != "BPE" or "vocab" not in model or "merges" not in model:
        raise ValueError(f"{tokenizer_file}: not a BPE tokenizer.json (model type {model.get('type')!r})")
    vocab = dict(model["vocab"])
    for added in data.get("added_tokens") or []:
        vocab.setdefault(added["content"], added["id"])
    return vocab, [merge_pair(m, tokenizer_file, n) for n, m in enumerate(model["merges"], 1)]
