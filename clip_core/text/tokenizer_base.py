"""The base class of CLIP's two tokenizers: everything but turning strings into BPE ids.

:class:`_CLIPTokenizerBase` holds the vocabulary and special tokens, and mirrors transformers 4.57's
``CLIPTokenizer`` API around one method its subclasses provide, ``_encode_texts`` (strings -> BPE ids without special
tokens): ``__call__`` / ``encode`` (special tokens, truncation, padding, masks, tensors), ``decode`` /
``batch_decode``, ``from_pretrained`` / ``save_pretrained``. The rules of truncation and padding live in
:mod:`clip_core.text.batching`, the vocabulary formats in :mod:`clip_core.text.bpe`, the folder layout in
:mod:`clip_core.text.files`.
"""

from __future__ import annotations

import logging
import os
from typing import Any, Sequence

import numpy as np

from ..tensors import BatchEncoding, check_return_tensors, to_tensor
from .batching import as_batch, as_id_list, check_side, check_texts, is_int, pad_rows, resolve_strategies, to_python
from .batching import truncate_pair
from .bpe import BOS_TOKEN, END_OF_WORD, EOS_TOKEN, bytes_to_unicode, load_vocabulary
from .files import MERGES_FILE, VOCAB_FILE, find_vocabulary, read_settings, token_content, write_settings
from .files import write_vocabulary

logger = logging.getLogger("clip_core.tokenizer")  # the public module's name: users' logging settings keep applying


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
        vocab, merges = load_vocabulary(vocab_file, merges_file, tokenizer_file, bpe_file, vocab, merges)
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
        token = token_content(token)
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
        self._padding_side = check_side("padding_side", side)

    @property
    def truncation_side(self) -> str:
        """Which side truncation removes tokens from: "right" (default) or "left"."""
        return self._truncation_side

    @truncation_side.setter
    def truncation_side(self, side: str) -> None:
        self._truncation_side = check_side("truncation_side", side)

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
        return [self._id_to_token(int(i)) for i in as_id_list(ids) if int(i) not in special]

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
        return [self.decoder[i] for i in self._encode_texts(check_texts([text], "text"))[0]]

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
        pad_strategy, trunc_strategy, max_length = resolve_strategies(
            padding, truncation, max_length, verbose, self.model_max_length, self._warn_once
        )
        if padding_side is not None:
            check_side("padding_side", padding_side)
        if pad_to_multiple_of is not None and not (is_int(pad_to_multiple_of) and pad_to_multiple_of > 0):
            raise ValueError(f"pad_to_multiple_of must be a positive int, got {pad_to_multiple_of!r}")
        if return_token_type_ids and not add_special_tokens:
            raise ValueError("return_token_type_ids=True needs add_special_tokens=True (as in transformers)")
        if return_attention_mask is None:
            return_attention_mask = True

        batched, texts = as_batch(text, "text")
        pairs = None
        if text_pair is not None:
            pair_batched, pairs = as_batch(text_pair, "text_pair")
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
            out[key] = pad_rows(values, target, fill, left, return_tensors is not None, batched)
        if return_length:
            if batched:
                out["length"] = np.asarray(lengths, dtype=np.int64) if return_tensors else lengths
            else:  # transformers counts a single sequence after padding
                n = max(lengths[0], target or 0)
                out["length"] = np.asarray([n], dtype=np.int64) if return_tensors else n
        if return_tensors is None:
            return BatchEncoding(out)
        return BatchEncoding({k: to_tensor(v, return_tensors) for k, v in out.items()})

    def _prepare(
        self, ids: list[int], pair_ids: list[int] | None, add_special: bool, strategy: str, max_length: int | None
    ) -> tuple[list[int], list[int]]:
        """Truncate (transformers' ``truncate_sequences``) and add special tokens: (ids, special-tokens mask)."""
        pair = pair_ids is not None
        total = len(ids) + (len(pair_ids) if pair else 0) + (self.num_special_tokens_to_add(pair) if add_special else 0)
        if strategy != "do_not_truncate" and max_length and total > max_length:
            ids, pair_ids = truncate_pair(ids, pair_ids, total - max_length, strategy, self.truncation_side == "right")
        if add_special:
            return self.build_inputs_with_special_tokens(ids, pair_ids), self.get_special_tokens_mask(ids, pair_ids)
        row = list(ids) + (list(pair_ids) if pair else [])
        return row, [0] * len(row)

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
        tokens = self.convert_ids_to_tokens(as_id_list(token_ids), skip_special_tokens=skip_special_tokens)
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
        sequences = to_python(sequences)
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
        settings = read_settings(source, cls._init_keys)
        settings.update(kwargs)
        return cls(**find_vocabulary(source), **settings)

    def save_vocabulary(
        self, save_directory: str | os.PathLike, filename_prefix: str | None = None
    ) -> tuple[str, str]:
        """Write ``vocab.json`` and ``merges.txt`` (transformers' format) into an existing folder; return the paths."""
        folder = os.fspath(save_directory)
        return write_vocabulary(folder, filename_prefix, self.encoder, self.bpe_ranks)

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
        return (*write_settings(folder, self), *self.save_vocabulary(folder, filename_prefix))


def _clean_up_tokenization(text: str) -> str:
    """transformers' ``clean_up_tokenization``: remove spaces before punctuation and English contractions."""
    for before, after in ((" .", "."), (" ?", "?"), (" !", "!"), (" ,", ","), (" ' ", "'"), (" n't", "n't"),
                          (" 'm", "'m"), (" 's", "'s"), (" 've", "'ve"), (" 're", "'re")):
        text = text.replace(before, after)
    return text
