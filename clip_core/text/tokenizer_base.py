"""The base class of CLIP's two tokenizers: everything but turning strings into BPE ids.

:class:`_CLIPTokenizerBase` holds the vocabulary and settings, and mirrors transformers 4.57's ``CLIPTokenizer`` API
around one method its subclasses provide, ``_encode_texts`` (strings -> BPE ids without special tokens). Its parts:
special and added tokens (:mod:`clip_core.text.specials`), chat templates (:mod:`clip_core.text.chat_template`), the
encoding entry points (``__call__``, ``encode_plus``, ``batch_encode_plus``, ``prepare_for_model``, ``pad``:
:mod:`clip_core.text.encoding`), the rules of truncation and padding (:mod:`clip_core.text.batching`), the vocabulary
formats (:mod:`clip_core.text.bpe`) and the folder layout (:mod:`clip_core.text.files`). Here: construction,
``tokenize``, special-token layout, decoding and ``from_pretrained`` / ``save_pretrained``.
"""

from __future__ import annotations

import copy
import logging
import os
from typing import Any, Sequence

import numpy as np

from ..formats.commit import commit
from .batching import as_id_list, check_side, check_texts, to_python
from .bpe import BOS_TOKEN, END_OF_WORD, EOS_TOKEN, bytes_to_unicode, load_vocabulary
from .chat_template import ChatTemplates
from .encoding import EncodingAPI
from .files import MERGES_FILE, VOCAB_FILE, chat_template_files, find_vocabulary, read_settings, write_settings
from .files import write_tokenizer_json
from .files import write_vocabulary
from .specials import SpecialTokens

logger = logging.getLogger("clip_core.tokenizer")  # the public module's name: users' logging settings keep applying

#: from_pretrained arguments about where files come from (used for the Hub or accepted and ignored).
HUB_KWARGS = ("cache_dir", "force_download", "local_files_only", "token", "revision", "subfolder", "proxies",
              "resume_download", "use_auth_token", "trust_remote_code", "_from_auto", "_commit_hash", "use_fast")


class _CLIPTokenizerBase(SpecialTokens, EncodingAPI, ChatTemplates):
    """Everything but turning strings into BPE ids: vocabulary, special tokens, padding, truncation, tensors, I/O."""

    vocab_files_names = {"vocab_file": VOCAB_FILE, "merges_file": MERGES_FILE}
    model_input_names = ["input_ids", "attention_mask"]

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
        unk_token: Any = EOS_TOKEN,
        bos_token: Any = BOS_TOKEN,
        eos_token: Any = EOS_TOKEN,
        pad_token: Any = EOS_TOKEN,
        model_max_length: int = 77,
        padding_side: str = "right",
        truncation_side: str = "right",
        clean_up_tokenization_spaces: bool = False,
        split_special_tokens: bool = False,
        **kwargs: Any,
    ) -> None:
        """Load a vocabulary from one source: ``vocab_file`` + ``merges_file`` (transformers' layout),
        ``tokenizer_file`` (``tokenizer.json``), ``bpe_file`` (OpenAI's ``bpe_simple_vocab_16e6.txt.gz``) or in-memory
        ``vocab`` + ``merges``. The other arguments are transformers' ``CLIPTokenizer`` arguments and defaults;
        ``sep_token`` / ``cls_token`` / ``mask_token``, ``additional_special_tokens``, ``added_tokens_decoder``,
        ``model_input_names`` and ``verbose`` are honoured, any other keyword is kept in :attr:`init_kwargs` (and
        saved), as transformers does. Special tokens outside the vocabulary are added with new ids.
        """
        for key in kwargs:
            if callable(getattr(type(self), key, None)):
                raise AttributeError(f"{key} conflicts with the method {key} in {type(self).__name__}")
        given_pair = vocab_file is not None and merges_file is not None
        sources = (vocab_file, merges_file, None if given_pair else tokenizer_file, bpe_file, vocab, merges)
        vocab_map, merge_list = load_vocabulary(*sources)
        self.encoder: dict[str, int] = dict(vocab_map)
        self.decoder: dict[int, str] = {i: t for t, i in self.encoder.items()}
        self.bpe_ranks: dict[tuple[str, str], int] = {pair: rank for rank, pair in enumerate(merge_list)}
        self.byte_encoder = bytes_to_unicode()
        self.byte_decoder = {c: b for b, c in self.byte_encoder.items()}
        self.init_kwargs: dict[str, Any] = {
            "vocab_file": vocab_file, "merges_file": merges_file, "tokenizer_file": tokenizer_file,
            "bpe_file": bpe_file, "vocab": None, "merges": None, "errors": errors, "unk_token": unk_token,
            "bos_token": bos_token, "eos_token": eos_token, "pad_token": pad_token,
            "model_max_length": model_max_length, "padding_side": padding_side, "truncation_side": truncation_side,
            "clean_up_tokenization_spaces": clean_up_tokenization_spaces, "split_special_tokens": split_special_tokens,
            **copy.deepcopy({k: v for k, v in kwargs.items() if k != "added_tokens_decoder"}),
        }
        self.init_inputs: tuple = ()
        self.errors = errors
        self.model_max_length = int(model_max_length)
        self.clean_up_tokenization_spaces = bool(clean_up_tokenization_spaces)
        self.split_special_tokens = bool(split_special_tokens)
        self.padding_side = padding_side
        self.truncation_side = truncation_side
        self.verbose = bool(kwargs.pop("verbose", False))
        self.name_or_path = str(kwargs.pop("name_or_path", ""))
        if kwargs.get("model_input_names") is not None:
            self.model_input_names = list(kwargs.pop("model_input_names"))
        self.add_prefix_space = bool(kwargs.get("add_prefix_space", False))
        specials = {"unk_token": unk_token, "bos_token": bos_token, "eos_token": eos_token, "pad_token": pad_token,
                    **{k: kwargs.get(k) for k in ("sep_token", "cls_token", "mask_token")}}
        self._init_specials(specials, kwargs.get("additional_special_tokens"), kwargs.get("added_tokens_decoder"))
        self.deprecation_warnings: dict[str, bool] = {}
        self._setup()

    def _setup(self) -> None:
        """Subclass hook, run at the end of ``__init__``: build what ``_encode_texts`` needs."""

    # ---------------------------------------------------------------- settings

    @property
    def chat_template(self) -> Any:
        """The chat template (a string, or a dict of named ones) of the loaded files (``None`` for CLIP's;
        transformers' attribute and file layout), rendered by :meth:`apply_chat_template`
        (:mod:`clip_core.text.chat_template`)."""
        return self.init_kwargs.get("chat_template")

    @chat_template.setter
    def chat_template(self, value: Any) -> None:
        self.init_kwargs["chat_template"] = value

    @property
    def padding_side(self) -> str:
        """Which side padding goes on: "right" (default) or "left"."""
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
        """Number of tokens in the base vocabulary (49,408 for CLIP); ``len(tok)`` counts added tokens too."""
        return len(self.encoder)

    @property
    def max_len_single_sentence(self) -> int:
        """``model_max_length`` less the special tokens of one sequence."""
        return self.model_max_length - self.num_special_tokens_to_add(False)

    @property
    def max_len_sentences_pair(self) -> int:
        """``model_max_length`` less the special tokens of a pair."""
        return self.model_max_length - self.num_special_tokens_to_add(True)

    def convert_tokens_to_ids(self, tokens: str | Sequence[str] | None) -> int | list[int] | None:
        """Token string(s) -> id(s); unknown tokens map to :attr:`unk_token_id`."""
        if tokens is None:
            return None
        if isinstance(tokens, str):
            return self._token_to_id(tokens)
        return [self._token_to_id(t) for t in tokens]

    def convert_ids_to_tokens(self, ids: int | Sequence[int], skip_special_tokens: bool = False) -> str | list[str]:
        """Id(s) -> token string(s), optionally dropping special tokens."""
        if isinstance(ids, (int, np.integer)):
            return self._id_to_token(int(ids))
        special = set(self.all_special_ids) if skip_special_tokens else ()
        return [self._id_to_token(int(i)) for i in as_id_list(ids) if int(i) not in special]

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(name_or_path={self.name_or_path!r}, vocab_size={self.vocab_size}, "
            f"model_max_length={self.model_max_length}, is_fast={self.is_fast}, padding_side={self.padding_side!r}, "
            f"truncation_side={self.truncation_side!r}, special_tokens={self.special_tokens_map})"
        )

    # ---------------------------------------------------------------- strings -> ids

    def _encode_texts(self, texts: list[str], split_special: bool = False) -> list[list[int]]:
        """BPE ids without special tokens, one list per string (OpenAI's ``SimpleTokenizer.encode``)."""
        raise NotImplementedError

    def _text_ids(self, texts: list[str], split_special: bool = False) -> list[list[int]]:
        """Ids of each string: split on the added tokens, the pieces between them through ``_encode_texts``."""
        split = [self.split_on_added(text, split_special) for text in texts]
        plain = [piece for pieces in split for piece, added in pieces if not added]
        encoded = iter(self._encode_texts(plain, split_special)) if plain else iter(())
        out = []
        for pieces in split:
            ids: list[int] = []
            for piece, added in pieces:
                if added:
                    ids.append(self._added_encoder[piece])
                else:
                    ids.extend(next(encoded))
            out.append(ids)
        return out

    def _offsets(self, items: list[Any], split_words: bool, split_special: bool) -> list[list[tuple[int, int]]]:
        raise NotImplementedError  # fast tokenizer only (see EncodingAPI._encode)

    def tokenize(self, text: str, pair: str | None = None, add_special_tokens: bool = False,
                 split_special_tokens: bool | None = None, **kwargs: Any) -> list[str]:
        """The tokens of ``text`` (added tokens whole, no special tokens added), e.g. ``['a</w>', 'photo</w>']``."""
        split = self.split_special_tokens if split_special_tokens is None else split_special_tokens
        texts = check_texts([text] + ([pair] if pair is not None else []), "text")
        ids = self._text_ids(texts, split)
        if add_special_tokens:
            ids = [self.build_inputs_with_special_tokens(*ids)]
        return [self._id_to_token(i) for row in ids for i in row]

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

    def _warn_once(self, key: str, message: str) -> None:
        """Log ``message`` once per tokenizer, remembered under ``key`` in :attr:`deprecation_warnings` as
        transformers does (its keys: resetting the dict, or setting a key, re-enables or silences a warning)."""
        if not self.deprecation_warnings.get(key, False):
            self.deprecation_warnings[key] = True
            logger.warning(message)

    def _warn_too_long(self, length: int) -> None:
        if length > self.model_max_length and self.model_max_length != 0:
            self._warn_once(
                "sequence-length-is-longer-than-the-specified-maximum",
                "Token indices sequence length is longer than the specified maximum sequence length for this model "
                f"({length} > {self.model_max_length}). Running this sequence through the model will result in "
                "indexing errors",
            )

    # ---------------------------------------------------------------- decoding

    def convert_tokens_to_string(self, tokens: Sequence[str]) -> str:
        """BPE tokens -> text: undo the byte mapping, turn ``</w>`` into spaces, strip."""
        data = bytearray(self.byte_decoder[c] for c in "".join(tokens) if c in self.byte_decoder)
        return data.decode("utf-8", errors=self.errors).replace(END_OF_WORD, " ").strip()

    def decode(
        self,
        token_ids: int | Sequence[int] | Any,
        skip_special_tokens: bool = False,
        clean_up_tokenization_spaces: bool | None = None,
        spaces_between_special_tokens: bool = True,
        **kwargs: Any,
    ) -> str:
        """Ids (list, numpy array or framework tensor) -> text, as transformers' slow ``CLIPTokenizer.decode``:
        added tokens outside the vocabulary come out whole, joined to the text around them by spaces."""
        tokens = self.convert_ids_to_tokens(as_id_list(token_ids), skip_special_tokens=skip_special_tokens)
        loose = {t for t in self._added_encoder if t not in self.encoder}
        parts, current = [], []
        for token in tokens:
            if token in loose:
                if current:
                    parts.append(self.convert_tokens_to_string(current))
                    current = []
                parts.append(token)
            else:
                current.append(token)
        if current:
            parts.append(self.convert_tokens_to_string(current))
        text = (" " if spaces_between_special_tokens else "").join(parts)
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
    def from_pretrained(cls, pretrained_model_name_or_path: str | os.PathLike, *init_inputs: Any, **kwargs: Any):
        """Load from a local folder, a Hub repo id, or a vocabulary file.

        A folder (or repo) may hold ``vocab.json`` + ``merges.txt`` (preferred), ``tokenizer.json`` or OpenAI's
        ``bpe_simple_vocab_16e6.txt.gz``, plus optional ``tokenizer_config.json`` / ``special_tokens_map.json``
        (model_max_length, pad_token, added tokens, ...). A path to a ``.json``/``.gz`` file loads that file.
        ``kwargs`` override the saved configuration (e.g. ``pad_token="!"``, ``model_max_length=77``); transformers'
        download arguments (``cache_dir``, ``revision``, ``use_fast``, ...) are accepted.
        """
        source = os.fspath(pretrained_model_name_or_path)
        hub = {k: kwargs.pop(k) for k in list(kwargs) if k in HUB_KWARGS}
        subfolder = hub.get("subfolder")
        if subfolder and os.path.isdir(source):
            source = os.path.join(source, subfolder)
        if os.path.isfile(source):
            files = {"bpe_file": source} if source.endswith(".gz") else {"tokenizer_file": source}
            return cls(**files, **kwargs)
        settings = read_settings(source)
        settings.update(kwargs)
        settings.setdefault("name_or_path", source)
        for key in cls.vocab_files_names:
            settings.pop(key, None)
        return cls(**find_vocabulary(source), **settings)

    def save_vocabulary(
        self, save_directory: str | os.PathLike, filename_prefix: str | None = None
    ) -> tuple[str, str]:
        """Write ``vocab.json`` and ``merges.txt`` (transformers' format) into an existing folder; return the paths."""
        folder = os.fspath(save_directory)
        return write_vocabulary(folder, filename_prefix, self.encoder, self.bpe_ranks)

    def save_pretrained(
        self, save_directory: str | os.PathLike, legacy_format: bool | None = None,
        filename_prefix: str | None = None, push_to_hub: bool = False, **kwargs: Any
    ) -> tuple[str, ...]:
        """Write transformers' layout: ``tokenizer_config.json``, ``special_tokens_map.json``, ``vocab.json``,
        ``merges.txt`` and, from the fast class, ``tokenizer.json`` (loadable by transformers' ``CLIPTokenizer`` /
        ``CLIPTokenizerFast`` and by :meth:`from_pretrained`), all of them in one commit
        (:func:`clip_core.formats.commit.commit`): a failure (a full disk, a kill) leaves the folder's previous
        tokenizer files whole; other files in the folder are left alone.
        """
        if push_to_hub:
            raise ValueError("push_to_hub is not supported: save locally and upload with huggingface_hub")
        folder = os.fspath(save_directory)
        if os.path.isfile(folder):
            raise FileExistsError(f"save_pretrained needs a directory, {folder} is a file")
        jinja_files = bool(kwargs.get("save_jinja_files", True))
        with commit(folder, overwrite=True) as staging:
            staged = os.fspath(staging)
            files = (*write_settings(staged, self, jinja_files), *self.save_vocabulary(staged, filename_prefix))
            if self.is_fast and legacy_format is not True:  # as transformers: the fast class adds tokenizer.json
                files = (*files, write_tokenizer_json(staged, self))
        extra = chat_template_files(folder, self) if jinja_files else ()
        return tuple(os.path.join(folder, os.path.basename(f)) for f in files) + extra


def _clean_up_tokenization(text: str) -> str:
    """transformers' ``clean_up_tokenization``: remove spaces before punctuation and English contractions."""
    for before, after in ((" .", "."), (" ?", "?"), (" !", "!"), (" ,", ","), (" ' ", "'"), (" n't", "n't"),
                          (" 'm", "'m"), (" 's", "'s"), (" 've", "'ve"), (" 're", "'re")):
        text = text.replace(before, after)
    return text
