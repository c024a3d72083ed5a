"""CLIP tokenizers that reproduce OpenAI's ``simple_tokenizer.py`` exactly.

OpenAI's algorithm, for every string:

1. clean: ``ftfy.fix_text``, ``html.unescape`` twice, strip, collapse whitespace runs (``\\s+``), lowercase;
2. split with OpenAI's regex (the two special tokens, the English contractions, letter runs, single digits, runs of
   anything else; whitespace separates and is dropped);
3. map each word's UTF-8 bytes to printable characters (``bytes_to_unicode``) and apply byte-level BPE, the last symbol
   of a word carrying the end-of-word marker ``</w>``.

Two classes share everything but steps 1-3:

- :class:`CLIPTokenizer` does them in plain Python: the readable reference.
- :class:`CLIPTokenizerFast` hands the work to the Rust ``tokenizers`` library in batches and stays exact. A string
  goes straight to a Rust pipeline (lowercase, CLIP split, byte-level BPE) only when a cheap check proves that ftfy and
  HTML unescaping leave it unchanged *and* that every character in it is lowercased and classified identically by
  Python (``str.lower``, the ``regex`` module) and Rust (``tokenizers``' lowercase and Oniguruma). That character set is
  measured once per process, so differing Unicode versions cannot make the two disagree. Any other string is cleaned
  and split in Python exactly as OpenAI does, and only its byte-level BPE runs in Rust (pre-tokenized input).

Padding, truncation, special tokens, masks and tensor conversion live in one base class and mirror transformers 4.57's
``CLIPTokenizer``. Vocabularies load from transformers' ``vocab.json`` + ``merges.txt``, from a ``tokenizer.json``,
or from OpenAI's ``bpe_simple_vocab_16e6.txt.gz``; ``save_pretrained`` writes transformers' layout.
"""

from __future__ import annotations

import gzip
import html
import json
import logging
import os
import re
import unicodedata
import warnings
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np
import regex

from .hub import resolve_file, write_atomic
from .tensors import BatchEncoding, check_return_tensors, to_tensor

__all__ = ["CLIPTokenizer", "CLIPTokenizerFast", "bytes_to_unicode", "openai_clean"]

logger = logging.getLogger(__name__)

VOCAB_FILE = "vocab.json"
MERGES_FILE = "merges.txt"
TOKENIZER_FILE = "tokenizer.json"
OPENAI_BPE_FILE = "bpe_simple_vocab_16e6.txt.gz"
TOKENIZER_CONFIG_FILE = "tokenizer_config.json"
SPECIAL_TOKENS_MAP_FILE = "special_tokens_map.json"

BOS_TOKEN = "<|startoftext|>"
EOS_TOKEN = "<|endoftext|>"
END_OF_WORD = "</w>"
OPENAI_NUM_MERGES = 49152 - 256 - 2  # merges OpenAI reads from its .gz file (lines 1..48894)
LARGE_INTEGER = int(1e20)  # model_max_length above this means "no maximum" (as in transformers)

# OpenAI's split pattern, used with re.IGNORECASE on already lowercased text.
CLIP_PATTERN = r"""<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+"""
# The same without the special tokens, for the Rust pipeline (strings containing "<|" never reach it).
WORD_PATTERN = r"""'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+"""

_SPLIT = regex.compile(CLIP_PATTERN, regex.IGNORECASE)
_WHITESPACE = regex.compile(r"\s+")

PADDING_STRATEGIES = ("longest", "max_length", "do_not_pad")
TRUNCATION_STRATEGIES = ("longest_first", "only_first", "only_second", "do_not_truncate")


# --------------------------------------------------------------------------------------------------------------------
# OpenAI's text cleanup and byte mapping
# --------------------------------------------------------------------------------------------------------------------


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


def _ftfy():
    try:
        import ftfy
    except ImportError as err:  # pragma: no cover - ftfy is a hard dependency
        raise ImportError("CLIP tokenization needs ftfy (pip install ftfy): OpenAI's tokenizer uses it") from err
    return ftfy


def openai_clean(text: str) -> str:
    """OpenAI's cleanup: ``ftfy.fix_text``, HTML-unescape twice, strip, collapse whitespace, lowercase."""
    text = html.unescape(html.unescape(_ftfy().fix_text(text))).strip()
    return _WHITESPACE.sub(" ", text).strip().lower()


def _finish_clean(text: str) -> str:
    """The steps of :func:`openai_clean` after ftfy and unescaping, for text those leave unchanged."""
    return _WHITESPACE.sub(" ", text.strip()).strip().lower()


# --------------------------------------------------------------------------------------------------------------------
# When may the fast tokenizer skip Python? (computed once per process)
# --------------------------------------------------------------------------------------------------------------------


def _char_class(codepoints: Iterable[int], negate: bool = False) -> str:
    """A ``re`` character class matching exactly ``codepoints`` (or everything else with ``negate``)."""
    cps = sorted(set(codepoints))
    parts, i = [], 0
    while i < len(cps):
        j = i
        while j + 1 < len(cps) and cps[j + 1] == cps[j] + 1:
            j += 1
        lo, hi = chr(cps[i]), chr(cps[j])
        parts.append(re.escape(lo) if i == j else f"{re.escape(lo)}-{re.escape(hi)}")
        i = j + 1
    if not parts:
        return r"[^\s\S]" if not negate else r"[\s\S]"
    return "[" + ("^" if negate else "") + "".join(parts) + "]"


def _required_chars(pattern: re.Pattern) -> tuple[set[int], int] | None:
    """A set of characters of which every match of ``pattern`` contains at least one, and the longest match length.

    ``None`` when that cannot be told from the pattern (then callers must assume any text may match).
    """
    try:
        from re import _constants as C, _parser as P  # noqa: N812 - CPython's own regex parser
    except ImportError:  # pragma: no cover - Python < 3.11
        import sre_constants as C  # type: ignore[no-redef]  # noqa: N812
        import sre_parse as P  # type: ignore[no-redef]  # noqa: N812

    if pattern.flags & re.IGNORECASE:
        return None

    def weight(cp: int) -> int:  # prefer rare characters: symbols over capitals over lowercase over ASCII
        if cp < 128:
            return 10_000
        category = unicodedata.category(chr(cp))
        return {"Ll": 100, "Lu": 30, "Lo": 30}.get(category, 1)

    def class_set(items) -> set[int] | None:
        out: set[int] = set()
        for op, av in items:
            if op is C.LITERAL:
                out.add(av)
            elif op is C.RANGE:
                out.update(range(av[0], av[1] + 1))
            else:  # NEGATE, CATEGORY: unbounded
                return None
        return out

    def required(seq) -> set[int] | None:
        best = None
        for op, av in seq:
            found = None
            if op is C.LITERAL:
                found = {av}
            elif op is C.IN:
                found = class_set(av)
            elif op is C.SUBPATTERN:
                found = required(av[-1])
            elif op is C.BRANCH:
                found = set()
                for branch in av[1]:
                    sub = required(branch)
                    if sub is None:
                        found = None
                        break
                    found |= sub
            elif op in (C.MAX_REPEAT, C.MIN_REPEAT) and av[0] >= 1:
                found = required(av[2])
            if found is not None and (best is None or sum(map(weight, found)) < sum(map(weight, best))):
                best = found
        return best

    tree = P.parse(pattern.pattern, pattern.flags)
    chars = required(tree)
    width = tree.getwidth()[1]
    if chars is None or width > 64:
        return None
    return chars, width


class _Router:
    """Decides, per string, how much of OpenAI's pipeline can be skipped without changing a single id.

    ``fast_ok(text)``: ftfy and HTML unescaping are no-ops on ``text`` and Rust's lowercase + CLIP split give exactly
    Python's words, so the whole string can go to the Rust pipeline.
    ``ftfy_noop(text)``: ftfy and unescaping are no-ops (the Python path then skips them).

    Both are derived from ftfy's own tables (characters its fixers touch, its mojibake detector) and from a one-time
    comparison of Python and Rust on every Basic Multilingual Plane character and the emoji blocks. If ftfy's internals
    are not what this expects, every string takes the exact Python path (slower, never wrong).
    """

    def __init__(self) -> None:
        self.enabled = False
        self._ftfy_ready = False
        try:
            self._build()
            self.enabled = True
        except Exception as err:  # pragma: no cover - depends on ftfy / tokenizers internals
            logger.info("CLIPTokenizerFast: exact fast path disabled (%s); cleaning every string in Python", err)

    def _build(self) -> None:
        from ftfy import badness, chardata

        ftfy = _ftfy()
        if not ftfy.__version__.startswith("6."):
            raise RuntimeError(f"ftfy {ftfy.__version__} not checked")
        bmp = "".join(chr(c) for c in range(0x10000) if not 0xD800 <= c <= 0xDFFF)
        # Characters some ftfy fixer changes whatever their context (plus '&' for HTML unescaping).
        touched = set(chardata.CONTROL_CHARS) | set(chardata.LIGATURES) | set(chardata.WIDTH_MAP)
        for fixer_re in (chardata.SINGLE_QUOTE_RE, chardata.DOUBLE_QUOTE_RE, chardata.C1_CONTROL_RE):
            touched.update(map(ord, fixer_re.findall(bmp)))
        touched.update({0x1B, 0x85, 0x2028, 0x2029, ord("&")} | set(range(0xD800, 0xE000)))
        self._touched = touched
        self._touched_re = re.compile(_char_class(touched))
        req = _required_chars(badness.BADNESS_RE)
        if req is None:
            raise RuntimeError("cannot bound ftfy's mojibake detector")
        self._bad_re = badness.BADNESS_RE
        self._bad_req_re = re.compile(_char_class(req[0]))
        self._bad_width = req[1]
        self._max_segment = ftfy.TextFixerConfig().max_decode_length
        self._ftfy_ready = True
        # Self-check on ftfy's own examples: the tables must describe what fix_text does.
        for sample in ("ﬁ", "’", "\x1c", "Ｆ", "Ã©"):
            if ftfy.fix_text(sample) == sample or self.ftfy_noop(sample):
                self._ftfy_ready = False
                raise RuntimeError(f"ftfy tables do not explain fix_text({sample!r})")

        safe = self._rust_agrees(bmp + "".join(map(chr, range(0x1F000, 0x1FB00))))
        allowed = (safe - touched) | {c for c in range(128) if c not in touched}
        self._fast_blocker = re.compile(_char_class(allowed, negate=True) + r"|<\|")

    @staticmethod
    def _rust_agrees(candidates: str) -> set[int]:
        """The characters that Python and Rust lowercase identically and classify identically after lowercasing."""
        from tokenizers import Regex, normalizers, pre_tokenizers

        chars = [c for c in candidates if c != "\x00" and unicodedata.category(c) not in ("Cn", "Cs")]
        py_lower = [c.lower() for c in chars]
        rust_lower = normalizers.Lowercase().normalize_str("\x00".join(chars)).split("\x00")
        if len(rust_lower) != len(chars):
            raise RuntimeError("unexpected Rust lowercase output")
        probe = "".join(sorted(set("".join(chars) + "".join(py_lower) + "".join(rust_lower))))
        classes = {"L": r"[\p{L}]", "N": r"[\p{N}]", "S": r"\s"}
        py_sets = {k: set(regex.findall(p, probe, regex.IGNORECASE)) for k, p in classes.items()}
        py_sets["O"] = set(regex.findall(r"[^\s\p{L}\p{N}]", probe, regex.IGNORECASE))
        probe_set = set(probe)
        rust_sets = {  # drop the class members from the (code point ordered) probe; few, long pieces remain
            k: probe_set - set("".join(s for s, _ in pre_tokenizers.Split(Regex(p), "removed").pre_tokenize_str(probe)))
            for k, p in classes.items()
        }
        # Non-ASCII characters that case-insensitively match an ASCII letter (e.g. 'ſ' ~ 's') can change how the
        # contractions and special tokens match under OpenAI's IGNORECASE.
        ascii_alias = {c for c in regex.findall("[a-z]", probe, regex.IGNORECASE) if not c.isascii()}

        L, N, S, O = (py_sets[k] for k in "LNSO")
        RL, RN, RS = (rust_sets[k] for k in "LNS")
        r_other = probe_set - RL - RN - RS
        agree = (L & RL) - RN - RS | (N & RN) - RL - RS | (S & RS) - RL - RN | (O & r_other)
        ambiguous = (L & N) | (L & S) | (L & O) | (N & S) | (N & O) | (S & O)
        wrong_space = {x for x in probe_set if x.isspace()} ^ S  # str.strip() must agree with \s
        good = agree - ambiguous - ascii_alias - wrong_space
        return {
            ord(c)
            for c, low, rlow in zip(chars, py_lower, rust_lower)
            if low == rlow and c != "\u03a3" and c in good and all(x in good for x in low)
        }

    def _maybe_mojibake(self, text: str) -> bool:
        """True when ftfy's mojibake detector might fire on one of the segments ``fix_text`` processes."""
        width = self._bad_width
        for m in self._bad_req_re.finditer(text):
            i = m.start()
            seg_start = text.rfind("\n", 0, i) + 1
            seg_end = text.find("\n", i)
            seg_end = len(text) if seg_end < 0 else seg_end + 1
            if self._bad_re.search(text[max(seg_start, i - width) : min(seg_end, i + width + 1)]):
                return True
        return False

    def ftfy_noop(self, text: str) -> bool:
        """True only if ``html.unescape(html.unescape(ftfy.fix_text(text))) == text``."""
        if not self._ftfy_ready:
            return False
        return (
            self._touched_re.search(text) is None
            and len(text) <= self._max_segment
            and unicodedata.is_normalized("NFC", text)
            and not self._maybe_mojibake(text)
        )

    def fast_ok(self, text: str) -> bool:
        """True only if the Rust pipeline gives OpenAI's words for ``text``."""
        if not self.enabled or self._fast_blocker.search(text) is not None:
            return False
        return text.isascii() or self.ftfy_noop(text)


@lru_cache(maxsize=1)
def _router() -> _Router:
    return _Router()


# --------------------------------------------------------------------------------------------------------------------
# Files: local folders, the Hub, atomic writes
# --------------------------------------------------------------------------------------------------------------------


def _resolve_file(path_or_repo: str | os.PathLike, filename: str, required: bool = True) -> str | None:
    """``clip_core.hub.resolve_file`` as a string path (a local folder or a Hub repo id)."""
    path = resolve_file(path_or_repo, filename, required=required)
    return None if path is None else str(path)


def _atomic_write(path: str, text: str) -> None:
    """Write ``text`` as UTF-8 through a temporary sibling and ``os.replace`` (``clip_core.hub.write_atomic``)."""
    write_atomic(Path(path), text.encode("utf-8"))


def _require_file(path: str | os.PathLike, what: str) -> str:
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{what} not found: {path}")
    return path


def _load_vocab_merges(vocab_file: str, merges_file: str) -> tuple[dict[str, int], list[tuple[str, str]]]:
    """transformers' layout: ``vocab.json`` (token -> id) and ``merges.txt`` (optional ``#version`` header)."""
    with open(_require_file(vocab_file, "vocabulary file"), encoding="utf-8") as handle:
        vocab = json.load(handle)
    with open(_require_file(merges_file, "merges file"), encoding="utf-8") as handle:
        lines = handle.read().split("\n")
    if lines and lines[0].startswith("#version"):
        lines = lines[1:]
    return vocab, [_merge_pair(line, merges_file, n) for n, line in enumerate(lines, 1) if line.strip()]


def _merge_pair(line: str | Sequence[str], source: str, number: int) -> tuple[str, str]:
    parts = line.split() if isinstance(line, str) else list(line)
    if len(parts) != 2:
        raise ValueError(f"{source}: merge {number} is not two symbols: {line!r}")
    return parts[0], parts[1]


def _load_openai_bpe(bpe_file: str) -> tuple[dict[str, int], list[tuple[str, str]]]:
    """OpenAI's ``bpe_simple_vocab_16e6.txt.gz``: the vocabulary is built from the merges as OpenAI does."""
    with gzip.open(_require_file(bpe_file, "OpenAI BPE file"), "rt", encoding="utf-8") as handle:
        lines = handle.read().split("\n")[1 : OPENAI_NUM_MERGES + 1]
    merges = [_merge_pair(line, bpe_file, n) for n, line in enumerate(lines, 2)]
    symbols = list(bytes_to_unicode().values())
    tokens = symbols + [s + END_OF_WORD for s in symbols] + ["".join(m) for m in merges] + [BOS_TOKEN, EOS_TOKEN]
    return {token: i for i, token in enumerate(tokens)}, merges


def _load_tokenizer_json(tokenizer_file: str) -> tuple[dict[str, int], list[tuple[str, str]]]:
    """A ``tokenizers`` ``tokenizer.json`` with a BPE model."""
    with open(_require_file(tokenizer_file, "tokenizer file"), encoding="utf-8") as handle:
        data = json.load(handle)
    model = data.get("model") or {}
    if model.get("type", "BPE") != "BPE" or "vocab" not in model or "merges" not in model:
        raise ValueError(f"{tokenizer_file}: not a BPE tokenizer.json (model type {model.get('type')!r})")
    vocab = dict(model["vocab"])
    for added in data.get("added_tokens") or []:
        vocab.setdefault(added["content"], added["id"])
    return vocab, [_merge_pair(m, tokenizer_file, n) for n, m in enumerate(model["merges"], 1)]


def _token_content(value: Any) -> Any:
    """A special token as written by transformers: a string or an AddedToken dict."""
    return value.get("content") if isinstance(value, dict) else value


# --------------------------------------------------------------------------------------------------------------------
# The shared tokenizer
# --------------------------------------------------------------------------------------------------------------------


class _CLIPTokenizerBase:
    """Everything but turning strings into BPE ids: vocabulary, special tokens, padding, truncation, tensors, I/O."""

    vocab_files_names = {"vocab_file": VOCAB_FILE, "merges_file": MERGES_FILE}
    model_input_names = ["input_ids", "attention_mask"]
    _init_keys = (
        "errors",
        "unk_token",
        "bos_token",
        "eos_token",
        "pad_token",
        "model_max_length",
        "padding_side",
        "truncation_side",
        "clean_up_tokenization_spaces",
    )

    def __init__(
        self,
        vocab_file: str | os.PathLike | None = None,
        merges_file: str | os.PathLike | None = None,
        tokenizer_file: str | os.PathLike | None = None,
        *,
        bpe_file: str | os.PathLike | None = None,
        vocab: dict[str, int] | None = None,
        merges: Sequence[tuple[str, str] | str] | None = None,
        errors: str = "replace",
        unk_token: str = EOS_TOKEN,
        bos_token: str = BOS_TOKEN,
        eos_token: str = EOS_TOKEN,
        pad_token: str | None = EOS_TOKEN,
        model_max_length: int = 77,
        padding_side: str = "right",
        truncation_side: str = "right",
        clean_up_tokenization_spaces: bool = False,
    ) -> None:
        """Load a vocabulary from one source: ``vocab_file`` + ``merges_file`` (transformers' layout),
        ``tokenizer_file`` (``tokenizer.json``), ``bpe_file`` (OpenAI's ``bpe_simple_vocab_16e6.txt.gz``) or in-memory
        ``vocab`` + ``merges``. The other arguments are transformers' ``CLIPTokenizer`` arguments and defaults.
        """
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
            vocab, merges = _load_vocab_merges(os.fspath(vocab_file), os.fspath(merges_file))
        elif given[0] == "tokenizer_file":
            vocab, merges = _load_tokenizer_json(os.fspath(tokenizer_file))
        elif given[0] == "bpe_file":
            vocab, merges = _load_openai_bpe(os.fspath(bpe_file))
        else:
            if vocab is None or merges is None:
                raise ValueError("vocab and merges must be given together")
            merges = [_merge_pair(m, "merges", n) for n, m in enumerate(merges, 1)]
        self.encoder: dict[str, int] = dict(vocab)
        self.decoder: dict[int, str] = {i: t for t, i in self.encoder.items()}
        self.bpe_ranks: dict[tuple[str, str], int] = {pair: rank for rank, pair in enumerate(merges)}
        self.byte_encoder = bytes_to_unicode()
        self.byte_decoder = {c: b for b, c in self.byte_encoder.items()}
        self.errors = errors
        self.model_max_length = int(model_max_length)
        self.clean_up_tokenization_spaces = bool(clean_up_tokenization_spaces)
        self.padding_side = padding_side
        self.truncation_side = truncation_side
        self._special: dict[str, str | None] = {}
        for name, token in (("unk", unk_token), ("bos", bos_token), ("eos", eos_token)):
            self._set_special(name, token, allow_none=False)
        self._set_special("pad", pad_token, allow_none=True)
        self._warned: set[str] = set()
        self._setup()

    def _setup(self) -> None:
        """Subclass hook, run at the end of ``__init__``: build what ``_encode_texts`` needs."""

    # ---------------------------------------------------------------- vocabulary and special tokens

    def _set_special(self, name: str, token: Any, allow_none: bool) -> None:
        token = _token_content(token)
        if token is None and allow_none:
            self._special[name] = None
            return
        if not isinstance(token, str):
            raise TypeError(f"{name}_token must be a string, got {type(token).__name__}")
        if token not in self.encoder:
            raise ValueError(f"{name}_token {token!r} is not in the vocabulary")
        self._special[name] = token

    @property
    def unk_token(self) -> str:
        """The unknown token (``<|endoftext|>`` for CLIP)."""
        return self._special["unk"]

    @property
    def bos_token(self) -> str:
        """The start-of-text token ``<|startoftext|>``."""
        return self._special["bos"]

    @property
    def eos_token(self) -> str:
        """The end-of-text token ``<|endoftext|>``."""
        return self._special["eos"]

    @property
    def pad_token(self) -> str | None:
        """The padding token: ``<|endoftext|>`` by default; OpenAI pads with id 0 (``pad_token="!"``)."""
        return self._special["pad"]

    @pad_token.setter
    def pad_token(self, token: str | None) -> None:
        self._set_special("pad", token, allow_none=True)

    @property
    def unk_token_id(self) -> int:
        """Id of :attr:`unk_token`."""
        return self.encoder[self.unk_token]

    @property
    def bos_token_id(self) -> int:
        """Id of :attr:`bos_token`."""
        return self.encoder[self.bos_token]

    @property
    def eos_token_id(self) -> int:
        """Id of :attr:`eos_token`."""
        return self.encoder[self.eos_token]

    @property
    def pad_token_id(self) -> int | None:
        """Id of :attr:`pad_token` (``None`` without one); settable."""
        return None if self.pad_token is None else self.encoder[self.pad_token]

    @pad_token_id.setter
    def pad_token_id(self, value: int | None) -> None:
        if value is not None and value not in self.decoder:
            raise ValueError(f"pad_token_id {value!r} is not in the vocabulary (0..{len(self.decoder) - 1})")
        self.pad_token = None if value is None else self.decoder[value]

    @property
    def all_special_tokens(self) -> list[str]:
        """The distinct special tokens, in transformers' order (bos, eos, unk, pad)."""
        tokens = [self.bos_token, self.eos_token, self.unk_token, self.pad_token]
        return list(dict.fromkeys(t for t in tokens if t is not None))

    @property
    def all_special_ids(self) -> list[int]:
        """Ids of :attr:`all_special_tokens`."""
        return [self.encoder[t] for t in self.all_special_tokens]

    @property
    def special_tokens_map(self) -> dict[str, str]:
        """``{"bos_token": ..., "eos_token": ..., "unk_token": ..., "pad_token": ...}`` (set ones only)."""
        return {f"{k}_token": v for k, v in self._special.items() if v is not None}

    @property
    def padding_side(self) -> str:
        """Which side :meth:`__call__` pads on: "right" (default) or "left"."""
        return self._padding_side

    @padding_side.setter
    def padding_side(self, side: str) -> None:
        self._padding_side = _check_side("padding_side", side)

    @property
    def truncation_side(self) -> str:
        """Which side truncation removes tokens from: "right" (default) or "left"."""
        return self._truncation_side

    @truncation_side.setter
    def truncation_side(self, side: str) -> None:
        self._truncation_side = _check_side("truncation_side", side)

    @property
    def vocab_size(self) -> int:
        """Number of tokens in the base vocabulary (49,408 for CLIP)."""
        return len(self.encoder)

    def __len__(self) -> int:
        """Size of the full vocabulary (the base vocabulary: CLIP's special tokens are part of it)."""
        return len(self.encoder)

    def get_vocab(self) -> dict[str, int]:
        """A copy of the token -> id mapping."""
        return dict(self.encoder)

    def convert_tokens_to_ids(self, tokens: str | Sequence[str]) -> int | list[int]:
        """Token string(s) -> id(s); unknown tokens map to :attr:`unk_token_id`."""
        if isinstance(tokens, str):
            return self.encoder.get(tokens, self.unk_token_id)
        return [self.encoder.get(t, self.unk_token_id) for t in tokens]

    def convert_ids_to_tokens(self, ids: int | Sequence[int], skip_special_tokens: bool = False) -> str | list[str]:
        """Id(s) -> token string(s), optionally dropping special tokens."""
        if isinstance(ids, (int, np.integer)):
            return self._id_to_token(int(ids))
        special = set(self.all_special_ids) if skip_special_tokens else ()
        return [self._id_to_token(int(i)) for i in _as_id_list(ids) if int(i) not in special]

    def _id_to_token(self, index: int) -> str:
        try:
            return self.decoder[index]
        except KeyError:
            raise ValueError(f"token id {index} is not in the vocabulary (0..{len(self.decoder) - 1})") from None

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(vocab_size={self.vocab_size}, model_max_length={self.model_max_length}, "
            f"padding_side={self.padding_side!r}, special_tokens={self.special_tokens_map})"
        )

    # ---------------------------------------------------------------- the one thing subclasses provide

    def _encode_texts(self, texts: list[str]) -> list[list[int]]:
        """BPE ids without special tokens, one list per string (OpenAI's ``SimpleTokenizer.encode``)."""
        raise NotImplementedError

    def tokenize(self, text: str) -> list[str]:
        """The BPE tokens of ``text`` (no special tokens added), e.g. ``['a</w>', 'photo</w>']``."""
        return [self.decoder[i] for i in self._encode_texts(_check_texts([text], "text"))[0]]

    # ---------------------------------------------------------------- special tokens (transformers' CLIP layout)

    def build_inputs_with_special_tokens(
        self, token_ids_0: list[int], token_ids_1: list[int] | None = None
    ) -> list[int]:
        """``bos A eos``, or for a pair ``bos A eos eos B eos`` (as transformers' CLIPTokenizer)."""
        bos, eos = [self.bos_token_id], [self.eos_token_id]
        if token_ids_1 is None:
            return bos + list(token_ids_0) + eos
        return bos + list(token_ids_0) + eos + eos + list(token_ids_1) + eos

    def get_special_tokens_mask(
        self, token_ids_0: list[int], token_ids_1: list[int] | None = None, already_has_special_tokens: bool = False
    ) -> list[int]:
        """1 where :meth:`build_inputs_with_special_tokens` puts a special token, else 0.

        With ``already_has_special_tokens``, 1 for every id in :attr:`all_special_ids`.
        """
        if already_has_special_tokens:
            if token_ids_1 is not None:
                raise ValueError("token_ids_1 must be None when already_has_special_tokens=True")
            special = set(self.all_special_ids)
            return [1 if int(i) in special else 0 for i in token_ids_0]
        if token_ids_1 is None:
            return [1] + [0] * len(token_ids_0) + [1]
        return [1] + [0] * len(token_ids_0) + [1, 1] + [0] * len(token_ids_1) + [1]

    def create_token_type_ids_from_sequences(
        self, token_ids_0: list[int], token_ids_1: list[int] | None = None
    ) -> list[int]:
        """All zeros (CLIP has no token types), as long as :meth:`build_inputs_with_special_tokens`' output."""
        return [0] * len(self.build_inputs_with_special_tokens(token_ids_0, token_ids_1))

    def num_special_tokens_to_add(self, pair: bool = False) -> int:
        """2 for a single sequence, 4 for a pair."""
        return 4 if pair else 2

    # ---------------------------------------------------------------- encoding

    def __call__(
        self,
        text: str | Sequence[str],
        text_pair: str | Sequence[str] | None = None,
        add_special_tokens: bool = True,
        padding: bool | str = False,
        truncation: bool | str | None = None,
        max_length: int | None = None,
        return_tensors: str | None = None,
        return_attention_mask: bool | None = None,
        return_token_type_ids: bool | None = None,
        return_special_tokens_mask: bool = False,
        return_length: bool = False,
        pad_to_multiple_of: int | None = None,
        padding_side: str | None = None,
        verbose: bool = True,
    ) -> BatchEncoding:
        """Tokenize one string or a batch (a list of strings), optionally with a second sequence per item.

        Arguments and results mirror transformers 4.57's ``CLIPTokenizer.__call__``: ``padding`` True/"longest",
        "max_length" or False/"do_not_pad"; ``truncation`` True/"longest_first", "only_first", "only_second" or
        False/"do_not_truncate" (``max_length`` defaults to :attr:`model_max_length`; the end-of-text token stays
        last); ``return_tensors`` None (lists), "np", "pt", "tf" or "jax" (int64 ids). Returns a
        :class:`~clip_core.tensors.BatchEncoding` with ``input_ids`` and ``attention_mask`` (plus
        ``token_type_ids``, ``special_tokens_mask``, ``length`` when asked).
        """
        check_return_tensors(return_tensors)
        pad_strategy, trunc_strategy, max_length = self._strategies(padding, truncation, max_length, verbose)
        if padding_side is not None:
            _check_side("padding_side", padding_side)
        if pad_to_multiple_of is not None and not (_is_int(pad_to_multiple_of) and pad_to_multiple_of > 0):
            raise ValueError(f"pad_to_multiple_of must be a positive int, got {pad_to_multiple_of!r}")
        if return_token_type_ids and not add_special_tokens:
            raise ValueError("return_token_type_ids=True needs add_special_tokens=True (as in transformers)")
        if return_attention_mask is None:
            return_attention_mask = True

        batched, texts = _as_batch(text, "text")
        pairs = None
        if text_pair is not None:
            pair_batched, pairs = _as_batch(text_pair, "text_pair")
            if pair_batched != batched:
                raise TypeError("text and text_pair must both be strings or both be lists of strings")
            if len(pairs) != len(texts):
                raise ValueError(f"text has {len(texts)} items but text_pair has {len(pairs)}")
        encoded = self._encode_texts(texts + (pairs or []))
        firsts, seconds = encoded[: len(texts)], (encoded[len(texts) :] if pairs is not None else [None] * len(texts))

        rows, masks = [], []
        for ids, pair_ids in zip(firsts, seconds):
            row, special = self._prepare(ids, pair_ids, add_special_tokens, trunc_strategy, max_length)
            if max_length is None and verbose:
                self._warn_too_long(len(row))
            rows.append(row)
            masks.append(special)
        lengths = [len(r) for r in rows]

        target = None
        if pad_strategy == "longest":
            target = max(lengths, default=0)
        elif pad_strategy == "max_length":
            target = max_length
        if target is not None and pad_to_multiple_of:
            target = -(-target // pad_to_multiple_of) * pad_to_multiple_of
        if target is not None and self.pad_token is None:
            raise ValueError("padding needs a pad_token; set tokenizer.pad_token (e.g. to '<|endoftext|>' or '!')")
        left = (padding_side or self.padding_side) == "left"
        columns = {"input_ids": (rows, self.pad_token_id)}
        if return_token_type_ids:
            columns["token_type_ids"] = ([[0] * n for n in lengths], 0)
        if return_attention_mask:
            columns["attention_mask"] = ([[1] * n for n in lengths], 0)
        if return_special_tokens_mask:
            columns["special_tokens_mask"] = (masks, 1)

        out = {}
        for key, (values, fill) in columns.items():
            out[key] = _pad_rows(values, target, fill, left, return_tensors is not None, batched)
        if return_length:
            if batched:
                out["length"] = np.asarray(lengths, dtype=np.int64) if return_tensors else lengths
            else:  # transformers counts a single sequence after padding
                n = max(lengths[0], target or 0)
                out["length"] = np.asarray([n], dtype=np.int64) if return_tensors else n
        if return_tensors is None:
            return BatchEncoding(out)
        return BatchEncoding({k: to_tensor(v, return_tensors) for k, v in out.items()})

    def _strategies(self, padding: Any, truncation: Any, max_length: Any, verbose: bool) -> tuple[str, str, int | None]:
        """Resolve padding/truncation/max_length as transformers' ``_get_padding_truncation_strategies`` does."""
        if max_length is not None and not _is_int(max_length):
            raise TypeError(f"max_length must be an int or None, got {type(max_length).__name__}")
        if max_length is not None and max_length < 0:
            raise ValueError(f"max_length must be >= 0, got {max_length}")
        padding = getattr(padding, "value", padding)
        truncation = getattr(truncation, "value", truncation)
        if max_length is not None and padding is False and truncation is None:
            if verbose:
                self._warn_once(
                    "truncation-not-explicit",
                    "Truncation was not explicitly activated but `max_length` is provided a specific value, please use "
                    "`truncation=True` to explicitly truncate examples to max length. Defaulting to 'longest_first' "
                    "truncation strategy.",
                )
            truncation = "longest_first"
        if padding is True:
            if verbose and max_length is not None and truncation in (None, False, "do_not_truncate"):
                warnings.warn(
                    "`max_length` is ignored when `padding`=`True` and there is no truncation strategy. "
                    "To pad to max length, use `padding='max_length'`.",
                    stacklevel=3,
                )
            pad = "longest"
        elif padding is False or padding is None:
            pad = "do_not_pad"
        elif isinstance(padding, str) and padding in PADDING_STRATEGIES:
            pad = padding
        else:
            raise ValueError(f"padding must be True, False or one of {PADDING_STRATEGIES}, got {padding!r}")
        if truncation is True:
            trunc = "longest_first"
        elif truncation is False or truncation is None:
            trunc = "do_not_truncate"
        elif isinstance(truncation, str) and truncation in TRUNCATION_STRATEGIES:
            trunc = truncation
        else:
            raise ValueError(f"truncation must be True, False or one of {TRUNCATION_STRATEGIES}, got {truncation!r}")
        if max_length is None:
            unbounded = self.model_max_length > LARGE_INTEGER
            if pad == "max_length":
                if unbounded:
                    if verbose:
                        self._warn_once(
                            "pad-no-max",
                            "Asking to pad to max_length but no maximum length is provided and the model has no "
                            "predefined maximum length. Default to no padding.",
                        )
                    pad = "do_not_pad"
                else:
                    max_length = self.model_max_length
            if trunc != "do_not_truncate":
                if unbounded:
                    if verbose:
                        self._warn_once(
                            "trunc-no-max",
                            "Asking to truncate to max_length but no maximum length is provided and the model has no "
                            "predefined maximum length. Default to no truncation.",
                        )
                    trunc = "do_not_truncate"
                else:
                    max_length = self.model_max_length
        return pad, trunc, (None if max_length is None else int(max_length))

    def _prepare(
        self, ids: list[int], pair_ids: list[int] | None, add_special: bool, strategy: str, max_length: int | None
    ) -> tuple[list[int], list[int]]:
        """Truncate (transformers' ``truncate_sequences``) and add special tokens: (ids, special-tokens mask)."""
        pair = pair_ids is not None
        total = len(ids) + (len(pair_ids) if pair else 0) + (self.num_special_tokens_to_add(pair) if add_special else 0)
        if strategy != "do_not_truncate" and max_length and total > max_length:
            ids, pair_ids = self._truncate(ids, pair_ids, total - max_length, strategy)
        if add_special:
            return self.build_inputs_with_special_tokens(ids, pair_ids), self.get_special_tokens_mask(ids, pair_ids)
        row = list(ids) + (list(pair_ids) if pair else [])
        return row, [0] * len(row)

    def _truncate(self, ids: list[int], pair_ids: list[int] | None, remove: int, strategy: str):
        right = self.truncation_side == "right"

        def cut(seq: list[int], n: int) -> list[int]:
            if n <= 0:
                return seq
            return seq[:-n] if right else seq[n:]

        if strategy == "only_first" or (strategy == "longest_first" and pair_ids is None):
            if len(ids) > remove:
                return cut(ids, remove), pair_ids
            logger.error(
                "We need to remove %d to truncate the input but the first sequence has a length %d.", remove, len(ids)
            )
            return ids, pair_ids
        if strategy == "longest_first":
            first_remove = min(abs(len(pair_ids) - len(ids)), remove)
            rest = remove - first_remove
            if len(ids) > len(pair_ids):
                from_ids, from_pair = first_remove + rest // 2, rest - rest // 2
            else:
                from_ids, from_pair = rest // 2, first_remove + rest - rest // 2
            return cut(ids, from_ids), cut(pair_ids, from_pair)
        if strategy == "only_second" and pair_ids is not None:
            if len(pair_ids) > remove:
                return ids, cut(pair_ids, remove)
            logger.error(
                "We need to remove %d to truncate the input but the second sequence has a length %d.",
                remove,
                len(pair_ids),
            )
        return ids, pair_ids

    def _warn_once(self, key: str, message: str) -> None:
        if key not in self._warned:
            self._warned.add(key)
            logger.warning(message)

    def _warn_too_long(self, length: int) -> None:
        if length > self.model_max_length and self.model_max_length != 0:
            self._warn_once(
                "too-long",
                "Token indices sequence length is longer than the specified maximum sequence length for this model "
                f"({length} > {self.model_max_length}). Running this sequence through the model will result in "
                "indexing errors",
            )

    def encode(
        self,
        text: str,
        text_pair: str | None = None,
        add_special_tokens: bool = True,
        padding: bool | str = False,
        truncation: bool | str | None = None,
        max_length: int | None = None,
        return_tensors: str | None = None,
        **kwargs: Any,
    ) -> list[int] | Any:
        """The ``input_ids`` of one string (or string pair): ``__call__(...)["input_ids"]``."""
        if not isinstance(text, str):
            raise TypeError(f"encode() takes one string, got {type(text).__name__}; call the tokenizer for batches")
        if text_pair is not None and not isinstance(text_pair, str):
            raise TypeError(f"encode() takes text_pair as a string, got {type(text_pair).__name__}")
        return self(
            text,
            text_pair,
            add_special_tokens=add_special_tokens,
            padding=padding,
            truncation=truncation,
            max_length=max_length,
            return_tensors=return_tensors,
            return_attention_mask=False,
            **kwargs,
        )["input_ids"]

    # ---------------------------------------------------------------- decoding

    def convert_tokens_to_string(self, tokens: Sequence[str]) -> str:
        """BPE tokens -> text: undo the byte mapping, turn ``</w>`` into spaces, strip."""
        data = bytearray(self.byte_decoder[c] for c in "".join(tokens))
        return data.decode("utf-8", errors=self.errors).replace(END_OF_WORD, " ").strip()

    def decode(
        self,
        token_ids: int | Sequence[int] | Any,
        skip_special_tokens: bool = False,
        clean_up_tokenization_spaces: bool | None = None,
        **kwargs: Any,
    ) -> str:
        """Ids (list, numpy array or framework tensor) -> text, as transformers' slow ``CLIPTokenizer.decode``."""
        tokens = self.convert_ids_to_tokens(_as_id_list(token_ids), skip_special_tokens=skip_special_tokens)
        text = self.convert_tokens_to_string(tokens)
        if clean_up_tokenization_spaces is None:
            clean_up_tokenization_spaces = self.clean_up_tokenization_spaces
        return _clean_up_tokenization(text) if clean_up_tokenization_spaces else text

    def batch_decode(
        self,
        sequences: Sequence[Sequence[int]] | Any,
        skip_special_tokens: bool = False,
        clean_up_tokenization_spaces: bool | None = None,
        **kwargs: Any,
    ) -> list[str]:
        """:meth:`decode` for each sequence of a batch (list of lists, 2-D array or tensor)."""
        sequences = _to_python(sequences)
        return [self.decode(seq, skip_special_tokens, clean_up_tokenization_spaces, **kwargs) for seq in sequences]

    # ---------------------------------------------------------------- files

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: str | os.PathLike, **kwargs: Any):
        """Load from a local folder, a Hub repo id, or a vocabulary file.

        A folder (or repo) may hold ``vocab.json`` + ``merges.txt`` (preferred), ``tokenizer.json`` or OpenAI's
        ``bpe_simple_vocab_16e6.txt.gz``, plus optional ``tokenizer_config.json`` / ``special_tokens_map.json``
        (model_max_length, pad_token, ...). A path to a ``.json``/``.gz`` file loads that file. ``kwargs`` override
        the saved configuration (e.g. ``pad_token="!"``, ``model_max_length=77``).
        """
        source = os.fspath(pretrained_model_name_or_path)
        unknown = set(kwargs) - set(cls._init_keys)
        if unknown:
            raise TypeError(f"{cls.__name__}.from_pretrained() got unexpected arguments: {sorted(unknown)}")
        if os.path.isfile(source):
            files = {"bpe_file": source} if source.endswith(".gz") else {"tokenizer_file": source}
            return cls(**files, **kwargs)
        settings: dict[str, Any] = {}
        for name in (TOKENIZER_CONFIG_FILE, SPECIAL_TOKENS_MAP_FILE):
            path = _resolve_file(source, name, required=False)
            if path is not None:
                with open(path, encoding="utf-8") as handle:
                    config = json.load(handle)
                settings.update({k: _token_content(v) for k, v in config.items() if k in cls._init_keys})
        settings.update(kwargs)
        vocab_file = _resolve_file(source, VOCAB_FILE, required=False)
        merges_file = _resolve_file(source, MERGES_FILE, required=False) if vocab_file else None
        if vocab_file and merges_file:
            return cls(vocab_file, merges_file, **settings)
        tokenizer_file = _resolve_file(source, TOKENIZER_FILE, required=False)
        if tokenizer_file:
            return cls(tokenizer_file=tokenizer_file, **settings)
        bpe_file = _resolve_file(source, OPENAI_BPE_FILE, required=False)
        if bpe_file:
            return cls(bpe_file=bpe_file, **settings)
        raise FileNotFoundError(
            f"no CLIP vocabulary in {source}: expected {VOCAB_FILE} + {MERGES_FILE}, {TOKENIZER_FILE} "
            f"or {OPENAI_BPE_FILE}"
        )

    def save_vocabulary(
        self, save_directory: str | os.PathLike, filename_prefix: str | None = None
    ) -> tuple[str, str]:
        """Write ``vocab.json`` and ``merges.txt`` (transformers' format) into an existing folder; return the paths."""
        folder = os.fspath(save_directory)
        if not os.path.isdir(folder):
            raise FileNotFoundError(f"save_vocabulary needs an existing directory, got {folder}")
        prefix = f"{filename_prefix}-" if filename_prefix else ""
        vocab_path = os.path.join(folder, prefix + VOCAB_FILE)
        merges_path = os.path.join(folder, prefix + MERGES_FILE)
        _atomic_write(vocab_path, json.dumps(self.encoder, indent=2, sort_keys=True, ensure_ascii=False) + "\n")
        merges = sorted(self.bpe_ranks, key=self.bpe_ranks.__getitem__)
        _atomic_write(merges_path, "#version: 0.2\n" + "".join(f"{a} {b}\n" for a, b in merges))
        return vocab_path, merges_path

    def save_pretrained(
        self, save_directory: str | os.PathLike, filename_prefix: str | None = None
    ) -> tuple[str, ...]:
        """Write transformers' layout: ``tokenizer_config.json``, ``special_tokens_map.json``, ``vocab.json``,
        ``merges.txt`` (loadable by transformers' ``CLIPTokenizer``/``CLIPTokenizerFast`` and :meth:`from_pretrained`).
        """
        folder = os.fspath(save_directory)
        if os.path.isfile(folder):
            raise FileExistsError(f"save_pretrained needs a directory, {folder} is a file")
        os.makedirs(folder, exist_ok=True)

        def added(token: str) -> dict[str, Any]:
            return {"content": token, "lstrip": False, "normalized": True, "rstrip": False, "single_word": False}

        config = {
            "added_tokens_decoder": {
                str(self.encoder[t]): {**added(t), "special": True} for t in (self.bos_token, self.eos_token)
            },
            **self.special_tokens_map,
            "clean_up_tokenization_spaces": self.clean_up_tokenization_spaces,
            "errors": self.errors,
            "model_max_length": self.model_max_length,
            "padding_side": self.padding_side,
            "truncation_side": self.truncation_side,
            "tokenizer_class": "CLIPTokenizer",
        }
        special_map = {k: added(v) for k, v in self.special_tokens_map.items()}
        config_path = os.path.join(folder, TOKENIZER_CONFIG_FILE)
        map_path = os.path.join(folder, SPECIAL_TOKENS_MAP_FILE)
        _atomic_write(config_path, json.dumps(config, indent=2, sort_keys=True, ensure_ascii=False) + "\n")
        _atomic_write(map_path, json.dumps(special_map, indent=2, sort_keys=True, ensure_ascii=False) + "\n")
        return (config_path, map_path, *self.save_vocabulary(folder, filename_prefix))


def _is_int(value: Any) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def _check_side(name: str, side: Any) -> str:
    """``side`` if it is "right" or "left"; otherwise a ValueError naming the argument ``name``."""
    if side not in ("right", "left"):
        raise ValueError(f"{name} must be 'right' or 'left', got {side!r}")
    return side


def _as_batch(text: Any, name: str) -> tuple[bool, list[str]]:
    """(batched?, list of strings), raising TypeError that names the culprit."""
    if isinstance(text, str):
        return False, [text]
    if text is None:
        raise TypeError(f"{name} must be a string or a list of strings, got None")
    if isinstance(text, (list, tuple)):
        return True, _check_texts(text, name)
    raise TypeError(f"{name} must be a string or a list of strings, got {type(text).__name__}")


def _check_texts(texts: Sequence[Any], name: str) -> list[str]:
    for i, item in enumerate(texts):
        if not isinstance(item, str):
            raise TypeError(f"{name}[{i}] (index {i}) must be a string, got {type(item).__name__}")
    return list(texts)


def _to_python(values: Any) -> Any:
    """numpy arrays and framework tensors -> (nested) Python lists; anything else unchanged."""
    if not hasattr(values, "tolist") and hasattr(values, "numpy"):  # TensorFlow eager tensors
        values = values.numpy()
    return values.tolist() if hasattr(values, "tolist") else values


def _as_id_list(ids: Any) -> list[int]:
    ids = _to_python(ids)
    if isinstance(ids, (int, np.integer)):
        return [int(ids)]
    out = []
    for i, value in enumerate(ids):
        if not _is_int(value):
            raise TypeError(f"token id at index {i} must be an int, got {type(value).__name__}")
        out.append(int(value))
    return out


def _pad_rows(rows: list[list[int]], target: int | None, fill: int, left: bool, as_array: bool, batched: bool):
    """Pad each row to ``target`` (rows already longer stay as they are); an int64 array when ``as_array``."""
    if as_array:
        lengths = {max(len(r), target or 0) for r in rows}  # lengths after padding
        width = max(lengths, default=target or 0)
        if len(lengths) > 1:
            raise ValueError(
                "Unable to create tensor: the sequences have different lengths "
                f"({min(lengths)} to {max(lengths)}); activate padding (padding=True or 'max_length') and/or truncation"
            )
        array = np.full((len(rows), width), fill, dtype=np.int64)
        for i, row in enumerate(rows):
            if row:
                if left:
                    array[i, width - len(row) :] = row
                else:
                    array[i, : len(row)] = row
        return array
    if target is not None:
        rows = [
            ([fill] * (target - len(r)) + r if left else r + [fill] * (target - len(r))) if len(r) < target else r
            for r in rows
        ]
    return rows if batched else rows[0]


def _clean_up_tokenization(text: str) -> str:
    """transformers' ``clean_up_tokenization``: remove spaces before punctuation and English contractions."""
    for before, after in ((" .", "."), (" ?", "?"), (" !", "!"), (" ,", ","), (" ' ", "'"), (" n't", "n't"),
                          (" 'm", "'m"), (" 's", "'s"), (" 've", "'ve"), (" 're", "'re")):
        text = text.replace(before, after)
    return text


# --------------------------------------------------------------------------------------------------------------------
# The reference: OpenAI's algorithm in plain Python
# --------------------------------------------------------------------------------------------------------------------


class CLIPTokenizer(_CLIPTokenizerBase):
    """OpenAI's CLIP tokenizer in plain Python: ftfy, HTML unescape, whitespace, lowercase, regex split, byte BPE.

    A readable reference with transformers 4.57's ``CLIPTokenizer`` API. Prefer :class:`CLIPTokenizerFast` for
    throughput: it gives identical ids.

    Args:
        vocab_file, merges_file: transformers' ``vocab.json`` and ``merges.txt``.
        tokenizer_file: a ``tokenizer.json`` instead (keyword ``bpe_file``: OpenAI's ``bpe_simple_vocab_16e6.txt.gz``;
            ``vocab`` + ``merges``: in-memory).
        errors: how to decode invalid UTF-8 (``bytes.decode`` errors), "replace".
        unk_token, bos_token, eos_token, pad_token: special tokens (pad defaults to ``<|endoftext|>``; OpenAI's own
            code pads with id 0, i.e. ``pad_token="!"``).
        model_max_length: 77. padding_side / truncation_side: "right" or "left".
        clean_up_tokenization_spaces: default for :meth:`decode`.
    """

    _CACHE_LIMIT = 200_000

    def _setup(self) -> None:
        _ftfy()  # fail early, with a clear message, when ftfy is missing
        self.cache: dict[str, list[str]] = {}
        self._specials = {BOS_TOKEN, EOS_TOKEN}

    def bpe(self, word: str) -> list[str]:
        """Byte-level BPE of one byte-mapped word: merge the lowest-ranked adjacent pair until none is in the merges."""
        cached = self.cache.get(word)
        if cached is not None:
            return cached
        symbols = [*word[:-1], word[-1] + END_OF_WORD]
        ranks = self.bpe_ranks
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
        if len(self.cache) >= self._CACHE_LIMIT:
            self.cache.clear()
        self.cache[word] = symbols
        return symbols

    def _words(self, text: str) -> list[str]:
        """OpenAI's cleanup and regex split of one string."""
        return _SPLIT.findall(openai_clean(text))

    def _encode_texts(self, texts: list[str]) -> list[list[int]]:
        encoder, unk = self.encoder, self.unk_token_id
        byte_encoder = self.byte_encoder
        out = []
        for text in texts:
            ids: list[int] = []
            for word in self._words(text):
                if word in self._specials and word in encoder:
                    ids.append(encoder[word])
                    continue
                mapped = "".join(byte_encoder[b] for b in word.encode("utf-8"))
                ids.extend(encoder.get(token, unk) for token in self.bpe(mapped))
            out.append(ids)
        return out


# --------------------------------------------------------------------------------------------------------------------
# The fast one: the same ids from the Rust `tokenizers` library
# --------------------------------------------------------------------------------------------------------------------


class CLIPTokenizerFast(_CLIPTokenizerBase):
    """CLIP tokenizer backed by the Rust ``tokenizers`` library, giving OpenAI's ids for every string.

    Same constructor, ``from_pretrained`` and methods as :class:`CLIPTokenizer`. Unlike transformers'
    ``CLIPTokenizerFast`` it applies ftfy and HTML unescaping: strings that provably do not need them (checked per
    string with ftfy's own tables) are tokenized entirely in Rust, in parallel; the others are cleaned and split in
    Python and only their byte-level BPE runs in Rust. The ``tokenizers.Tokenizer`` is built here from the vocabulary
    and merges (``backend_tokenizer``); transformers is not needed.
    """

    def _setup(self) -> None:
        from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers

        self._router = _router()
        merges = sorted(self.bpe_ranks, key=self.bpe_ranks.__getitem__)
        bpe = models.BPE(
            vocab=self.encoder,
            merges=merges,
            unk_token=self.unk_token,
            end_of_word_suffix=END_OF_WORD,
            continuing_subword_prefix="",
            fuse_unk=False,
        )
        byte_level = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
        # Whole strings: lowercase, CLIP split, byte-level BPE. (Whitespace needs no normalizer: the split drops it.)
        self.backend_tokenizer = Tokenizer(bpe)
        self.backend_tokenizer.normalizer = normalizers.Lowercase()
        self.backend_tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
            [pre_tokenizers.Split(Regex(WORD_PATTERN), behavior="removed", invert=True), byte_level]
        )
        self.backend_tokenizer.decoder = decoders.ByteLevel()
        # Words split in Python: byte-level BPE only; the special tokens map to their ids.
        self._word_tokenizer = Tokenizer(bpe)
        self._word_tokenizer.pre_tokenizer = byte_level
        specials = [t for t in (BOS_TOKEN, EOS_TOKEN) if t in self.encoder]
        self._word_tokenizer.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in specials])
        self._encode_strings = getattr(self.backend_tokenizer, "encode_batch_fast", self.backend_tokenizer.encode_batch)
        self._encode_words = getattr(self._word_tokenizer, "encode_batch_fast", self._word_tokenizer.encode_batch)

    def _words(self, text: str) -> list[str]:
        """OpenAI's cleanup and split, skipping ftfy/unescaping when they provably change nothing."""
        if self._router.ftfy_noop(text):
            return _SPLIT.findall(_finish_clean(text))
        return _SPLIT.findall(openai_clean(text))

    def _encode_texts(self, texts: list[str]) -> list[list[int]]:
        fast_ok = self._router.fast_ok
        whole, whole_at, split, split_at = [], [], [], []
        for i, text in enumerate(texts):
            if fast_ok(text):
                whole.append(text)
                whole_at.append(i)
            else:
                split.append(self._words(text))
                split_at.append(i)
        out: list[list[int]] = [None] * len(texts)  # type: ignore[list-item]
        if whole:
            for i, encoding in zip(whole_at, self._encode_strings(whole, add_special_tokens=False)):
                out[i] = encoding.ids
        if split:
            encodings = self._encode_words(split, is_pretokenized=True, add_special_tokens=False)
            for i, encoding in zip(split_at, encodings):
                out[i] = encoding.ids
        return out
