"""Special and added tokens of CLIP's tokenizers, as transformers 4.57's tokenizers keep them.

:class:`SpecialTokens` is a mixin of the tokenizer base class. It holds

- the seven special-token attributes (``bos_token`` ... ``mask_token``) and ``additional_special_tokens``, each
  settable as a token (``tok.pad_token = "!"``) or an id (``tok.pad_token_id = 0``), ``None`` included;
- the added tokens (``add_tokens``, ``add_special_tokens``, ``added_tokens_decoder``): a token already in the BPE
  vocabulary keeps its id, any other gets the next free id (``len(tok)``), as transformers does;
- the split of a text on its added tokens (:meth:`SpecialTokens.split_on_added`), longest token first at the leftmost
  place, honouring each token's ``lstrip`` / ``rstrip`` / ``single_word`` as transformers' slow tokenizer does.

Tokens are ``tokenizers.AddedToken`` objects (the class transformers uses in both its tokenizers).
"""

from __future__ import annotations

import re
from typing import Any, Iterable, Sequence

from tokenizers import AddedToken

SPECIAL_NAMES = ("bos_token", "eos_token", "unk_token", "sep_token", "pad_token", "cls_token", "mask_token")


def as_added(token: Any, name: str, special: bool) -> AddedToken:
    """``token`` (a string, an AddedToken or transformers' saved dict) as an AddedToken; TypeError otherwise."""
    if isinstance(token, AddedToken):
        return token
    if isinstance(token, dict) and isinstance(token.get("content"), str):
        options = {k: bool(token[k]) for k in ("lstrip", "rstrip", "single_word", "normalized") if k in token}
        return AddedToken(token["content"], special=bool(token.get("special", special)), **options)
    if isinstance(token, str):
        return AddedToken(token, lstrip=False, rstrip=False, normalized=not special, special=special)
    raise TypeError(f"{name} must be a string or an AddedToken, got {type(token).__name__}")


class SpecialTokensTypeError(TypeError, AssertionError):
    """A special-token argument of the wrong type (transformers asserts here, hence the AssertionError base)."""


class SpecialTokens:
    """Special-token attributes and added tokens; needs ``self.encoder`` / ``self.decoder`` (the BPE vocabulary)."""

    encoder: dict[str, int]
    decoder: dict[int, str]

    def _init_specials(self, tokens: dict[str, Any], additional: Iterable[Any] | None,
                       added_tokens_decoder: dict[Any, Any] | None) -> None:
        """Set the special tokens and register every special and saved added token (transformers' ``__init__``)."""
        self._special: dict[str, AddedToken | None] = {}
        self._additional: list[AddedToken] = []
        self._additional_unset = False
        self._added_decoder: dict[int, AddedToken] = {}
        self._added_encoder: dict[str, int] = {}
        self._added_re: re.Pattern | None = None
        for index, token in sorted((added_tokens_decoder or {}).items(), key=lambda item: int(item[0])):
            token = as_added(token, "added_tokens_decoder", True)
            self._added_decoder[int(index)] = token
            self._added_encoder[token.content] = int(index)
        for name in SPECIAL_NAMES:
            self._special[name] = None if tokens.get(name) is None else as_added(tokens[name], name, True)
        self._additional = [as_added(t, "additional_special_tokens", True) for t in additional or ()]
        # Special tokens given as attributes that are BPE vocabulary tokens (CLIP's start / end, a pad "!") are
        # found by the BPE split, not cut out of the text first: their ids stay OpenAI's.
        self._regex_specials = {t.content for t in self._special.values()
                                if t is not None and t.content in self.encoder}
        self._add([t for t in self.all_special_tokens_extended if t.content not in self._added_encoder], True)

    # ---------------------------------------------------------------- the vocabulary with its added tokens

    def get_vocab(self) -> dict[str, int]:
        """token -> id, the BPE vocabulary and the added tokens."""
        vocab = dict(self.encoder)
        vocab.update(self._added_encoder)
        return vocab

    def get_added_vocab(self) -> dict[str, int]:
        """token -> id of the added tokens (special tokens included, as in transformers)."""
        return dict(self._added_encoder)

    def __len__(self) -> int:
        """Size of the full vocabulary: the BPE vocabulary plus the added tokens outside it."""
        return len(self.encoder) + sum(1 for t in self._added_encoder if t not in self.encoder)

    @property
    def added_tokens_decoder(self) -> dict[int, AddedToken]:
        """id -> AddedToken for every added token (CLIP's start and end tokens included), sorted by id."""
        return dict(sorted(self._added_decoder.items()))

    @property
    def added_tokens_encoder(self) -> dict[str, int]:
        """token -> id for every added token, sorted by id."""
        return {t.content: i for i, t in self.added_tokens_decoder.items()}

    def _token_to_id(self, token: str) -> int | None:
        index = self._added_encoder.get(token)
        if index is None:
            index = self.encoder.get(token)
        if index is None and self._special.get("unk_token") is not None:
            unk = self._special["unk_token"].content
            index = self._added_encoder.get(unk, self.encoder.get(unk))
        return index

    def _id_to_token(self, index: int) -> str:
        token = self._added_decoder.get(index)
        if token is not None:
            return token.content
        try:
            return self.decoder[index]
        except KeyError:
            raise ValueError(f"token id {index} is not in the vocabulary (0..{len(self) - 1})") from None

    def add_tokens(self, new_tokens: Any, special_tokens: bool = False) -> int:
        """Add tokens (strings or AddedTokens) not yet added; returns how many new ids were made."""
        if new_tokens is None:
            return 0
        if isinstance(new_tokens, (str, AddedToken)):
            new_tokens = [new_tokens]
        self._regex_specials -= {str(t) for t in new_tokens}
        return self._add(new_tokens, special_tokens)

    def _add(self, new_tokens: Sequence[Any], special_tokens: bool) -> int:
        made = 0
        specials = set(self.all_special_tokens)
        for token in new_tokens:
            if not isinstance(token, (str, AddedToken)):
                raise TypeError(f"Token {token} is not a string but a {type(token)}.")
            if str(token) == "":
                continue
            if isinstance(token, str):
                if token in self._added_encoder:
                    continue
                special = token in specials or special_tokens
                token = AddedToken(token, rstrip=False, lstrip=False, normalized=not special, special=special)
            elif special_tokens:
                token.__setstate__({"special": True, "normalized": token.normalized})
            if token.content in self._added_encoder and self._added_decoder.get(
                    self._added_encoder[token.content]) == token:
                continue
            index = self.encoder.get(token.content, self._added_encoder.get(token.content))
            if index is None:
                index = len(self)
                made += 1
            if token.special and token.content not in specials:
                self._additional.append(token)
                specials.add(token.content)
            self._added_decoder[index] = token
            self._added_encoder[token.content] = index
        self._added_re = None
        return made

    def add_special_tokens(self, special_tokens_dict: dict[str, Any],
                           replace_additional_special_tokens: bool = True) -> int:
        """Set special tokens (``{"pad_token": "<pad>", "additional_special_tokens": [...]}``) and add them."""
        if not special_tokens_dict:
            return 0
        to_add: list[AddedToken] = []
        for key, value in special_tokens_dict.items():
            if key not in (*SPECIAL_NAMES, "additional_special_tokens"):
                raise ValueError(f"Key {key} is not a special token")
            if key == "additional_special_tokens":
                if not isinstance(value, (list, tuple)):
                    raise SpecialTokensTypeError(f"additional_special_tokens must be a list or tuple, got {type(value).__name__}")
                tokens = [as_added(t, key, True) for t in value]
                if replace_additional_special_tokens:
                    self._additional = list(tokens)
                else:
                    known = {t.content for t in self._additional}
                    self._additional.extend(t for t in tokens if t.content not in known)
                to_add.extend(tokens)
            else:
                token = as_added(value, key, True)
                self._special[key] = token
                to_add.append(token)
        self._regex_specials -= {t.content for t in to_add}
        return self._add(to_add, True)

    # ---------------------------------------------------------------- special-token attributes

    @property
    def additional_special_tokens(self) -> list[str] | None:
        """Extra special tokens (never split, dropped by ``skip_special_tokens``); ``None`` once set to None."""
        if self._additional_unset:
            return None
        return [t.content for t in self._additional]

    @additional_special_tokens.setter
    def additional_special_tokens(self, tokens: Sequence[Any] | None) -> None:
        self._additional_unset = tokens is None
        self._additional = [as_added(t, "additional_special_tokens", True) for t in tokens or ()]

    @property
    def additional_special_tokens_ids(self) -> list[int]:
        """Ids of :attr:`additional_special_tokens`."""
        return [self._token_to_id(t.content) for t in self._additional]

    @additional_special_tokens_ids.setter
    def additional_special_tokens_ids(self, ids: Sequence[int]) -> None:
        self.additional_special_tokens = [self._id_to_token(int(i)) for i in ids]

    @property
    def special_tokens_map(self) -> dict[str, Any]:
        """The set special tokens as strings (``additional_special_tokens`` as a list), as transformers gives it."""
        out: dict[str, Any] = {k: t.content for k, t in self._special.items() if t is not None}
        if self._additional:
            out["additional_special_tokens"] = [t.content for t in self._additional]
        return out

    @property
    def special_tokens_map_extended(self) -> dict[str, Any]:
        """:attr:`special_tokens_map` with AddedToken values."""
        out: dict[str, Any] = {k: t for k, t in self._special.items() if t is not None}
        if self._additional:
            out["additional_special_tokens"] = list(self._additional)
        return out

    @property
    def _special_tokens_map(self) -> dict[str, Any]:
        """Every special-token role (``None`` when unset) as an AddedToken, and ``additional_special_tokens``: the
        view transformers' tokenizers keep under this name (read-only here)."""
        roles = ("bos_token", "eos_token", "unk_token", "sep_token", "pad_token", "cls_token", "mask_token")
        out: dict[str, Any] = {k: self._special.get(k) for k in roles}
        out["additional_special_tokens"] = list(self._additional)
        return out

    @property
    def all_special_tokens_extended(self) -> list[AddedToken]:
        """Every distinct special token as an AddedToken (the attributes' order, then the additional ones)."""
        seen: dict[str, AddedToken] = {}
        for token in [*(t for t in self._special.values() if t is not None), *self._additional]:
            seen.setdefault(token.content, token)
        return list(seen.values())

    @property
    def all_special_tokens(self) -> list[str]:
        """Every distinct special token as a string."""
        return [t.content for t in self.all_special_tokens_extended]

    @property
    def all_special_ids(self) -> list[int]:
        """Ids of :attr:`all_special_tokens`."""
        return [self._token_to_id(t) for t in self.all_special_tokens]

    # ---------------------------------------------------------------- splitting a text on its added tokens

    def split_on_added(self, text: str, split_special_tokens: bool = False) -> list[tuple[str, bool]]:
        """``text`` as pieces ``(piece, is_added_token)``, as transformers' slow ``tokenize`` splits it."""
        if split_special_tokens or not self._added_encoder:
            return [(text, False)]
        if self._added_re is None:
            # CLIP's own start / end tokens stay where OpenAI's regex finds them (after cleanup, where a word may
            # start), so that the ids stay OpenAI's; every added token splits the text as in transformers.
            contents = sorted((t for t in self._added_encoder if t not in self._regex_specials), key=len,
                              reverse=True)
            if not contents:
                self._added_re = re.compile(r"(?!x)x")
                return [(text, False)]
            self._added_re = re.compile("|".join(map(re.escape, contents)))
        if self._added_re.search(text) is None:
            return [(text, False)]
        pieces: list[list[Any]] = []
        last = 0
        for match in self._added_re.finditer(text):
            pieces.append([text[last:match.start()], False])
            pieces.append([match.group(), True])
            last = match.end()
        pieces.append([text[last:], False])
        for i, (piece, added) in enumerate(pieces):
            if not added:
                continue
            token = self._added_decoder[self._added_encoder[piece]]
            left = pieces[i - 1] if i > 0 and not pieces[i - 1][1] else None
            right = pieces[i + 1] if i + 1 < len(pieces) and not pieces[i + 1][1] else None
            if token.rstrip and right is not None:
                right[0] = right[0].lstrip()
            if token.lstrip and left is not None:
                left[0] = left[0].rstrip()
            if token.single_word and left is not None and left[0] and left[0][-1] != " ":
                left[0] += piece
                pieces[i] = ["", False]
            elif token.single_word and right is not None and right[0] and right[0][0] != " ":
                right[0] = piece + right[0]
                pieces[i] = ["", False]
        return [(p, a) for p, a in pieces if p]


def _make_properties(name: str) -> tuple[property, property]:
    def get_token(self) -> str | None:
        token = self._special.get(name)
        return None if token is None else token.content

    def set_token(self, value: Any) -> None:
        self._special[name] = None if value is None else as_added(value, name, True)

    def get_id(self) -> int | None:
        token = self._special.get(name)
        return None if token is None else self._token_to_id(token.content)

    def set_id(self, value: Any) -> None:
        self._special[name] = None if value is None else as_added(self._id_to_token(int(value)), name, True)

    get_token.__doc__ = f"The {name.replace('_', ' ')} (``None`` when unset); settable."
    get_id.__doc__ = f"Id of :attr:`{name}` (``None`` when unset); settable."
    return property(get_token, set_token), property(get_id, set_id)


for _name in SPECIAL_NAMES:
    _token_property, _id_property = _make_properties(_name)
    setattr(SpecialTokens, _name, _token_property)
    setattr(SpecialTokens, _name + "_id", _id_property)
