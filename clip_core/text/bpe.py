"""Byte-level BPE as OpenAI's CLIP does it, and the vocabulary formats it is stored in.

Each word's UTF-8 bytes are mapped to printable characters (:func:`bytes_to_unicode`), the last symbol of the word
carries the end-of-word marker ``</w>``, and adjacent pairs are merged by rank until none is in the merges
(:func:`merge_word`). A vocabulary (token -> id) and its ranked merges load from transformers' ``vocab.json`` +
``merges.txt``, from a ``tokenizers`` ``tokenizer.json``, from OpenAI's ``bpe_simple_vocab_16e6.txt.gz`` or from
memory (:func:`load_vocabulary`).
"""

from __future__ import annotations

import gzip
import heapq
import os
from functools import lru_cache
from typing import Any, Sequence, Union

from ..jsonio import read_json

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
    """Byte-level BPE of one byte-mapped word: merge the lowest-ranked adjacent pair until none is in the merges.

    OpenAI's rule exactly (each round merges every occurrence of the best pair, left to right, without overlap),
    in O(n log n) rather than OpenAI's O(n^2): the symbols are a linked list and the candidate pairs a heap keyed by
    (rank, position), so a 200,000-letter word takes a fraction of a second instead of minutes.
    """
    symbols = [*word[:-1], word[-1] + END_OF_WORD]
    n = len(symbols)
    if n < 2:
        return symbols
    nxt = list(range(1, n)) + [-1]
    prv = list(range(-1, n - 1))
    alive = [True] * n
    heap = []
    for i in range(n - 1):
        rank = ranks.get((symbols[i], symbols[i + 1]))
        if rank is not None:
            heap.append((rank, i, symbols[i], symbols[i + 1]))
    heapq.heapify(heap)
    while heap:
        rank = heap[0][0]
        batch = []
        while heap and heap[0][0] == rank:  # every candidate of this rank, in position order
            batch.append(heapq.heappop(heap))
        merged_here = []
        for _, i, left, right in batch:
            j = nxt[i] if alive[i] else -1
            if j < 0 or symbols[i] != left or symbols[j] != right:
                continue  # stale: one of the two symbols changed since this pair was seen
            symbols[i] = left + right
            alive[j] = False
            nxt[i] = nxt[j]
            if nxt[j] >= 0:
                prv[nxt[j]] = i
            merged_here.append(i)
        for i in merged_here:  # the new pairs, once the whole round is done (as OpenAI's loop sees them)
            if not alive[i]:
                continue
            p, q = prv[i], nxt[i]
            if p >= 0:
                r = ranks.get((symbols[p], symbols[i]))
                if r is not None:
                    heapq.heappush(heap, (r, p, symbols[p], symbols[i]))
            if q >= 0:
                r = ranks.get((symbols[i], symbols[q]))
                if r is not None:
                    heapq.heappush(heap, (r, i, symbols[i], symbols[q]))
    out, i = [], 0
    while i >= 0:
        out.append(symbols[i])
        i = nxt[i]
    return out


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
    return validate(vocab, [merge_pair(m, "merges", n) for n, m in enumerate(merges, 1)], "vocab", "merges")


def require_file(path: str | os.PathLike, what: str) -> str:
    """``path`` as a string if it is a file; otherwise a FileNotFoundError saying which ``what`` is missing."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{what} not found: {path}")
    return path


def load_vocab_merges(vocab_file: str, merges_file: str) -> Vocabulary:
    """transformers' layout: ``vocab.json`` (token -> id) and ``merges.txt`` (optional ``#version`` header)."""
    vocab = read_json(require_file(vocab_file, "vocabulary file"), f"vocabulary file {vocab_file}")
    lines = read_text_capped(require_file(merges_file, "merges file"), "merges file").split("\n")
    if lines and lines[0].startswith("#version"):
        lines = lines[1:]
    merges = [merge_pair(line, merges_file, n) for n, line in enumerate(lines, 1) if line.strip()]
    return validate(vocab, merges, vocab_file, merges_file)


#: Largest vocabulary / merges text accepted (decompressed, for OpenAI's .gz): CLIP's are about 1.5 MB.
MAX_VOCAB_BYTES = 64 * 1024 * 1024


def read_text_capped(path: str, what: str, compressed: bool = False) -> str:
    """The UTF-8 text of ``path`` (gunzipped when ``compressed``), refusing more than :data:`MAX_VOCAB_BYTES`
    before holding it all: a small .gz that decompresses into gigabytes fails at once, naming the file."""
    opener = gzip.open if compressed else open
    try:
        with opener(path, "rb") as handle:
            data = handle.read(MAX_VOCAB_BYTES + 1)
    except (OSError, EOFError, gzip.BadGzipFile) as err:
        raise VocabularyError(f"{what} {path} cannot be read{' as gzip' if compressed else ''}: {err}") from None
    if len(data) > MAX_VOCAB_BYTES:
        raise VocabularyError(f"{what} {path} holds more than {MAX_VOCAB_BYTES // 2**20} MiB"
                              f"{' once decompressed' if compressed else ''}; a CLIP vocabulary is about 1.5 MB")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise VocabularyError(f"{what} {path} is not UTF-8 text (byte {err.start}: {err.reason})") from None


class VocabularyError(ValueError):
    """A vocabulary or merges file that cannot be used; the message names the file and the entry."""


def validate(vocab: Any, merges: list[tuple[str, str]], vocab_source: str, merges_source: str) -> Vocabulary:
    """The one rule both tokenizers apply to every vocabulary: token -> id with distinct non-negative int ids, and
    merges whose two symbols and their concatenation are tokens (what the Rust BPE requires; the slow tokenizer
    would otherwise accept them silently). A :class:`VocabularyError` names the file and the first bad entry."""
    if not isinstance(vocab, dict):
        raise VocabularyError(f"{vocab_source}: the vocabulary must be a JSON object of token -> id, "
                              f"found {type(vocab).__name__}")
    seen: dict[int, str] = {}
    for token, index in vocab.items():
        if isinstance(index, bool) or not isinstance(index, int):
            raise VocabularyError(f"{vocab_source}: the id of token {token!r} must be an int, got {index!r}")
        if index < 0:
            raise VocabularyError(f"{vocab_source}: the id of token {token!r} is negative ({index})")
        if index in seen:
            raise VocabularyError(f"{vocab_source}: tokens {seen[index]!r} and {token!r} have the same id {index}")
        seen[index] = token
    for number, (a, b) in enumerate(merges, 1):
        for symbol in (a, b, a + b):
            if symbol not in vocab:
                raise VocabularyError(f"{merges_source}: merge {number} ({a} {b}) uses {symbol!r}, which is not in "
                                      f"the vocabulary {vocab_source}")
    return vocab, merges


def merge_pair(line: str | Sequence[str], source: str, number: int) -> tuple[str, str]:
    """One merge ("a b" or a pair) as a pair; a ValueError names ``source`` and the merge's ``number`` otherwise."""
    parts = line.split() if isinstance(line, str) else list(line) if isinstance(line, (list, tuple)) else []
    if len(parts) != 2 or not all(isinstance(p, str) for p in parts):
        raise ValueError(f"{source}: merge {number} is not two symbols: {line!r}")
    return parts[0], parts[1]


def load_openai_bpe(bpe_file: str) -> Vocabulary:
    """OpenAI's ``bpe_simple_vocab_16e6.txt.gz``: the vocabulary is built from the merges as OpenAI does."""
    text = read_text_capped(require_file(bpe_file, "OpenAI BPE file"), "OpenAI BPE file", compressed=True)
    lines = text.split("\n")[1 : OPENAI_NUM_MERGES + 1]
    merges = [merge_pair(line, bpe_file, n) for n, line in enumerate(lines, 2)]
    symbols = list(bytes_to_unicode().values())
    tokens = symbols + [s + END_OF_WORD for s in symbols] + ["".join(m) for m in merges] + [BOS_TOKEN, EOS_TOKEN]
    return {token: i for i, token in enumerate(tokens)}, merges


def load_tokenizer_json(tokenizer_file: str) -> Vocabulary:
    """A ``tokenizers`` ``tokenizer.json`` with a BPE model."""
    data = read_json(require_file(tokenizer_file, "tokenizer file"), f"tokenizer file {tokenizer_file}")
    model = data.get("model") or {}
    if model.get("type", "BPE") != "BPE" or "vocab" not in model or "merges" not in model:
        raise ValueError(f"{tokenizer_file}: not a BPE tokenizer.json (model type {model.get('type')!r})")
    if not isinstance(model["vocab"], dict) or not isinstance(model["merges"], list):
        raise VocabularyError(f"{tokenizer_file}: model.vocab must be an object and model.merges a list")
    vocab = dict(model["vocab"])
    merges = [merge_pair(m, tokenizer_file, n) for n, m in enumerate(model["merges"], 1)]
    for added in data.get("added_tokens") or []:  # tokens outside the BPE model (CLIP's own are inside it)
        if isinstance(added, dict) and isinstance(added.get("content"), str):
            vocab.setdefault(added["content"], added.get("id"))
    return validate(vocab, merges, tokenizer_file, tokenizer_file)
