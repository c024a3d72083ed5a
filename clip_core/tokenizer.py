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

This module holds the two public classes; their parts live in :mod:`clip_core.text`, one concern a module: the
cleanup and split (``cleaning``), the per-string choice of the Rust path (``fast_path``), byte-level BPE and the
vocabulary formats (``bpe``), the folder layout (``files``), truncation and padding (``batching``) and the shared base
class (``tokenizer_base``). The names this module always offered (the file names, special tokens, patterns,
strategies, :func:`bytes_to_unicode`, :func:`openai_clean`, ...) are importable from here as before.
"""

from __future__ import annotations

import logging

# Besides what the two classes use: the names this module always offered, importable from it as before.
from .text.batching import LARGE_INTEGER, PADDING_STRATEGIES, TRUNCATION_STRATEGIES  # noqa: F401
from .text.bpe import BOS_TOKEN, END_OF_WORD, EOS_TOKEN, OPENAI_NUM_MERGES, bytes_to_unicode, merge_word  # noqa: F401
from .text.cleaning import CLIP_PATTERN, SPLIT, SPLIT_PLAIN, WORD_PATTERN, finish_clean, load_ftfy  # noqa: F401
from .text.cleaning import openai_clean  # noqa: F401
from .text.fast_path import router as _router
from .text.files import MERGES_FILE, OPENAI_BPE_FILE, SPECIAL_TOKENS_MAP_FILE, TOKENIZER_CONFIG_FILE  # noqa: F401
from .text.files import TOKENIZER_FILE, VOCAB_FILE  # noqa: F401
from .text.files import resolve as _resolve_file  # noqa: F401
from .text.fast_extras import FastExtras
from .text.tokenizer_base import _CLIPTokenizerBase

__all__ = ["CLIPTokenizer", "CLIPTokenizerFast", "bytes_to_unicode", "openai_clean"]

logger = logging.getLogger(__name__)


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
        load_ftfy()  # fail early, with a clear message, when ftfy is missing
        self.cache: dict[str, list[str]] = {}
        self._specials = {BOS_TOKEN, EOS_TOKEN}

    def bpe(self, word: str) -> list[str]:
        """Byte-level BPE of one byte-mapped word: merge the lowest-ranked adjacent pair until none is in the merges."""
        cached = self.cache.get(word)
        if cached is not None:
            return cached
        symbols = merge_word(word, self.bpe_ranks)
        if len(self.cache) >= self._CACHE_LIMIT:
            self.cache.clear()
        self.cache[word] = symbols
        return symbols

    def _words(self, text: str, split_special: bool = False) -> list[str]:
        """OpenAI's cleanup and regex split of one string."""
        return (SPLIT_PLAIN if split_special else SPLIT).findall(openai_clean(text))

    def _encode_texts(self, texts: list[str], split_special: bool = False) -> list[list[int]]:
        encoder, unk = self.encoder, self.unk_token_id
        byte_encoder = self.byte_encoder
        specials = () if split_special else self._specials
        out = []
        for text in texts:
            ids: list[int] = []
            for word in self._words(text, split_special):
                if word in specials and word in encoder:
                    ids.append(encoder[word])
                    continue
                mapped = "".join(byte_encoder[b] for b in word.encode("utf-8"))
                ids.extend(encoder.get(token, unk) for token in self.bpe(mapped))
            out.append(ids)
        return out


# --------------------------------------------------------------------------------------------------------------------
# The fast one: the same ids from the Rust `tokenizers` library
# --------------------------------------------------------------------------------------------------------------------


class CLIPTokenizerFast(FastExtras, _CLIPTokenizerBase):
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
        self._plain_word_tokenizer = Tokenizer(bpe)  # split_special_tokens: the special tokens as plain text
        self._plain_word_tokenizer.pre_tokenizer = byte_level
        specials = [t for t in (BOS_TOKEN, EOS_TOKEN) if t in self.encoder]
        self._word_tokenizer.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in specials])
        self._encode_strings = getattr(self.backend_tokenizer, "encode_batch_fast", self.backend_tokenizer.encode_batch)
        self._encode_words = getattr(self._word_tokenizer, "encode_batch_fast", self._word_tokenizer.encode_batch)
        self._encode_plain_words = self._plain_word_tokenizer.encode_batch

    def _words(self, text: str, split_special: bool = False) -> list[str]:
        """OpenAI's cleanup and split, skipping ftfy/unescaping when they provably change nothing."""
        split = SPLIT_PLAIN if split_special else SPLIT
        if self._router.ftfy_noop(text):
            return split.findall(finish_clean(text))
        return split.findall(openai_clean(text))

    def _encode_texts(self, texts: list[str], split_special: bool = False) -> list[list[int]]:
        fast_ok = self._router.fast_ok
        whole, whole_at, split, split_at = [], [], [], []
        for i, text in enumerate(texts):
            if fast_ok(text):
                whole.append(text)
                whole_at.append(i)
            else:
                split.append(self._words(text, split_special))
                split_at.append(i)
        out: list[list[int]] = [None] * len(texts)  # type: ignore[list-item]
        if whole:
            for i, encoding in zip(whole_at, self._encode_strings(whole, add_special_tokens=False)):
                out[i] = encoding.ids
        if split:
            encode = self._encode_plain_words if split_special else self._encode_words
            encodings = encode(split, is_pretokenized=True, add_special_tokens=False)
            for i, encoding in zip(split_at, encodings):
                out[i] = encoding.ids
        return out
