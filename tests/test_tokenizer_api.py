"""transformers' tokenizer API on both triclip tokenizers, checked against transformers 4.57.6 live (same inputs,
same outputs or the same exception type), plus the BatchEncoding container (issue 15)."""

from __future__ import annotations

import json
import logging
import pickle

import numpy as np
import pytest

from clip_core.tokenizer import CLIPTokenizer, CLIPTokenizerFast

from tests.conftest import shared_path

transformers = pytest.importorskip("transformers")
PAIRS = [(CLIPTokenizer, "CLIPTokenizer"), (CLIPTokenizerFast, "CLIPTokenizerFast")]
TEXTS = ["a photo of a cat", "A Photo of a DOG!!", "two <new_tok> dogs", "hello world and more words here"]


@pytest.fixture(scope="module", params=PAIRS, ids=lambda p: p[1])
def pair(request):
    logging.getLogger("transformers").setLevel(logging.ERROR)
    ours, name = request.param
    folder = shared_path("data", "clip-bpe")
    return ours.from_pretrained(folder), getattr(transformers, name).from_pretrained(folder, model_max_length=77)


def fresh(pair, **kwargs):
    ours, theirs = pair
    folder = shared_path("data", "clip-bpe")
    return type(ours).from_pretrained(folder, **kwargs), type(theirs).from_pretrained(
        folder, **{"model_max_length": 77, **kwargs})


def test_added_tokens_split_save_and_reload_as_transformers(pair, tmp_path):
    ours, theirs = fresh(pair)
    for tok in (ours, theirs):
        assert tok.add_tokens(["<new_tok>", "<new_tok>"]) == 1
        assert tok.add_special_tokens({"additional_special_tokens": ["<sp>"]}) == 1
    assert len(ours) == len(theirs) == 49410
    assert ours.get_added_vocab() == theirs.get_added_vocab()
    assert ours.additional_special_tokens == theirs.additional_special_tokens == ["<sp>"]
    text = ["two <new_tok> dogs<sp> and a cat", "<sp><new_tok>"]
    assert ours(text)["input_ids"] == theirs(text)["input_ids"]
    assert ours.decode(ours("a <new_tok> cat")["input_ids"], skip_special_tokens=True) == "a <new_tok> cat"
    ours.save_pretrained(tmp_path / "ours")
    theirs.save_pretrained(tmp_path / "theirs")
    for folder in ("ours", "theirs"):  # both directions
        back = type(ours).from_pretrained(tmp_path / folder)
        hf_back = type(theirs).from_pretrained(tmp_path / folder)
        assert back(text)["input_ids"] == hf_back(text)["input_ids"] == theirs(text)["input_ids"], folder
        assert back.get_vocab() == hf_back.get_vocab()
    assert (tmp_path / "ours" / "tokenizer.json").is_file() == (tmp_path / "theirs" / "tokenizer.json").is_file()


def test_special_token_attributes_and_ids(pair):
    ours, theirs = fresh(pair, bos_token="(BOS)")
    assert ours.bos_token_id == theirs.bos_token_id == 49408  # not in the vocabulary: a new id, as transformers
    for tok in (ours, theirs):
        tok.pad_token_id = 0
        tok.mask_token = "<|endoftext|>"
    assert (ours.pad_token, ours.mask_token_id) == (theirs.pad_token, theirs.mask_token_id) == ("!", 49407)
    assert ours.all_special_tokens == theirs.all_special_tokens
    assert ours.all_special_ids == theirs.all_special_ids
    assert ours.special_tokens_map == theirs.special_tokens_map
    assert ours.sep_token is theirs.sep_token is None
    ours.bos_token_id = None
    assert ours.bos_token is None
    assert ours.is_fast == theirs.is_fast


def test_unknown_keywords_are_kept_and_transformers_keywords_accepted(pair):
    ours, theirs = fresh(pair, do_lower_case=True, verbose=False, add_prefix_space=False, random_argument=3)
    for key in ("do_lower_case", "random_argument"):
        assert ours.init_kwargs[key] == theirs.init_kwargs[key]
    with pytest.raises(AttributeError):
        type(ours).from_pretrained(shared_path("data", "clip-bpe"), get_vocab=True)
    with pytest.raises(AttributeError):
        type(theirs).from_pretrained(shared_path("data", "clip-bpe"), get_vocab=True)


CALLS = {
    "plus": dict(),
    "mask_len": dict(return_special_tokens_mask=True, return_length=True),
    "padded_len": dict(padding="max_length", max_length=12, return_length=True),  # fast: after padding, slow: before
    "overflow_len": dict(truncation=True, max_length=4, return_overflowing_tokens=True, stride=1, padding=True,
                         return_length=True),
    "pad_multiple": dict(padding=True, pad_to_multiple_of=8),
    "truncate": dict(truncation=True, max_length=5),
    "overflow": dict(truncation=True, max_length=6, return_overflowing_tokens=True, stride=2),
}


@pytest.mark.parametrize("name", CALLS)
def test_encode_plus_and_batch_encode_plus(pair, name):
    ours, theirs = pair
    kwargs = CALLS[name]
    one, want = ours.encode_plus(TEXTS[3], **kwargs), theirs.encode_plus(TEXTS[3], **kwargs)
    assert dict(one) == dict(want)
    many, want = ours.batch_encode_plus(TEXTS[:2], **kwargs), theirs.batch_encode_plus(TEXTS[:2], **kwargs)
    assert dict(many) == dict(want)


def test_prepare_for_model_pad_and_errors(pair):
    ours, theirs = pair
    ids = ours.encode(TEXTS[3], add_special_tokens=False)
    kwargs = dict(truncation="only_first", max_length=6, return_overflowing_tokens=True, stride=1)
    assert dict(ours.prepare_for_model(ids, **kwargs)) == dict(theirs.prepare_for_model(ids, **kwargs))
    rows = [ours("a cat"), ours("a big dog")]
    for tensors in (None, "np"):
        got = ours.pad(rows, return_tensors=tensors, pad_to_multiple_of=4)
        want = theirs.pad([theirs("a cat"), theirs("a big dog")], return_tensors=tensors, pad_to_multiple_of=4)
        assert {k: np.asarray(v).tolist() for k, v in got.items()} == {k: np.asarray(v).tolist() for k, v in
                                                                        want.items()}
    for tok in (ours, theirs):  # the same exception type
        with pytest.raises(ValueError, match="not a multiple of pad_to_multiple_of"):
            tok("a", padding=True, truncation=True, max_length=12, pad_to_multiple_of=8)
        with pytest.raises(ValueError):
            tok(None)


def test_tensors_and_split_special_tokens(pair):
    ours, theirs = pair
    tf = pytest.importorskip("tensorflow")
    got, want = ours(TEXTS[:2], padding=True, return_tensors="tf"), theirs(TEXTS[:2], padding=True, return_tensors="tf")
    assert got["input_ids"].dtype == want["input_ids"].dtype == tf.int32
    a = ours("x <|endoftext|>", split_special_tokens=True)["input_ids"]
    b = theirs("x <|endoftext|>", split_special_tokens=True)["input_ids"]
    assert 49407 not in a[1:-1]
    if theirs.is_fast:  # transformers' slow class keeps the special token here (its BPE cache); ours splits it
        assert a == b


def test_fast_offsets_and_training():
    ours = CLIPTokenizerFast.from_pretrained(shared_path("data", "clip-bpe"))
    theirs = transformers.CLIPTokenizerFast.from_pretrained(shared_path("data", "clip-bpe"))
    text = [" hello world, a photo!", "Naïve café"]
    kwargs = dict(return_offsets_mapping=True, padding=True)
    assert ours(text, **kwargs)["offset_mapping"] == theirs(text, **kwargs)["offset_mapping"]
    with pytest.raises(NotImplementedError):
        CLIPTokenizer.from_pretrained(shared_path("data", "clip-bpe"))("a", return_offsets_mapping=True)
    corpus = ["a photo of a cat", "a photo of a dog", "two cats and a dog"] * 20
    new = ours.train_new_from_iterator(corpus, vocab_size=300)
    assert type(new) is CLIPTokenizerFast and 258 < len(new) <= 300
    assert new.tokenize("a photo of a cat") == ["a</w>", "photo</w>", "of</w>", "a</w>", "cat</w>"]
    assert new.decode(new("two cats")["input_ids"], skip_special_tokens=True) == "two cats"


def test_batch_encoding_container(pair):
    torch = pytest.importorskip("torch")
    ours, _ = pair
    batch = ours(TEXTS[:2], padding=True, return_tensors="pt")
    assert list(batch.keys()) == ["input_ids", "attention_mask"] and batch.input_ids is batch["input_ids"]
    assert pickle.loads(pickle.dumps(batch))["input_ids"].tolist() == batch["input_ids"].tolist()
    moved = batch.to("cpu").to(torch.float16)
    assert moved["input_ids"].dtype == torch.int64  # only floating tensors change dtype
    listed = ours(TEXTS[:2], padding=True)
    assert listed.convert_to_tensors("np")["input_ids"].dtype == np.int64
    assert json.loads(json.dumps(ours(TEXTS[0]).data))["input_ids"][0] == 49406


def test_special_tokens_map_view_and_added_eos_round_trip(pair, tmp_path):
    """``_special_tokens_map`` (role -> AddedToken, None when unset) and an ``eos_token`` given as an AddedToken
    surviving save -> load in either class, as in transformers' test_added_tokens_serialization."""
    from tokenizers import AddedToken

    new_eos = AddedToken("[NEW_EOS]", rstrip=False, lstrip=True, normalized=False, special=True)
    ours, theirs = fresh(pair, eos_token=new_eos)
    mine, hf = ours._special_tokens_map, theirs._special_tokens_map
    assert list(mine) == list(hf)
    assert {k: None if v is None else str(v) for k, v in mine.items() if k != "additional_special_tokens"} == \
        {k: None if v is None else str(v) for k, v in hf.items() if k != "additional_special_tokens"}
    assert mine["eos_token"] == hf["eos_token"] == new_eos
    assert ours.eos_token_id == theirs.eos_token_id
    ours.save_pretrained(tmp_path)
    for cls in (CLIPTokenizer, CLIPTokenizerFast):
        back = cls.from_pretrained(tmp_path)
        assert back.added_tokens_decoder[back.eos_token_id] == new_eos
        assert "[NEW_EOS]" not in back.additional_special_tokens


ALIGN_CALLS = [
    (("two <new_tok> dogs",), {}),
    (("don't stop-believing 123 !!",), {}),
    (("Hello   World",), {}),
    (("a<new_tok>b",), {}),
    ((["hello", "big world"],), dict(is_split_into_words=True)),
    (("a b c", "d e"), {}),
    (("a b c d e",), dict(truncation=True, max_length=4)),
    ((["a b", "c d e"],), dict(padding=True, padding_side="left")),
    (("a b c d e f g", "h i j"), dict(truncation="only_first", max_length=8)),
    (("a b c d e f g h",), dict(truncation=True, max_length=5, stride=1, return_overflowing_tokens=True)),
    (("Wonderful no inspiration example", "with subtoken"), dict(add_special_tokens=False, return_tensors="np")),
]


def _span(value):
    return None if value is None else tuple(value)


@pytest.mark.parametrize("args,kwargs", ALIGN_CALLS)
def test_fast_alignment_methods_as_transformers(args, kwargs):
    """tokens / word_ids / sequence_ids and the token <-> word <-> char maps of the fast class, every index."""
    folder = shared_path("data", "clip-bpe")
    ours, theirs = CLIPTokenizerFast.from_pretrained(folder), transformers.CLIPTokenizerFast.from_pretrained(folder)
    for tok in (ours, theirs):
        tok.add_tokens(["<new_tok>"])
    a, b = ours(*args, **kwargs), theirs(*args, **kwargs)
    assert a.is_fast and b.is_fast and a.n_sequences == b.n_sequences
    rows = len(b.encodings)
    for i in range(rows):
        for name in ("tokens", "word_ids", "sequence_ids"):
            assert getattr(a, name)(i) == getattr(b, name)(i), (name, i)
        for j in range(len(b.tokens(i))):
            assert a.token_to_word(i, j) == b.token_to_word(i, j)
            assert a.token_to_sequence(i, j) == b.token_to_sequence(i, j)
            assert _span(a.token_to_chars(i, j)) == _span(b.token_to_chars(i, j))
        for seq, text in enumerate(t for t in args if isinstance(t, str)):
            for c in range(len(text) + 1):
                assert a.char_to_token(i, c, seq) == b.char_to_token(i, c, seq), (c, seq)
                assert a.char_to_word(i, c, seq) == b.char_to_word(i, c, seq), (c, seq)
        for word in range(max(w for w in b.word_ids(i) if w is not None) + 1):
            for seq in range(b.n_sequences):
                assert _span(a.word_to_tokens(i, word, seq)) == _span(b.word_to_tokens(i, word, seq))
                if b.word_to_tokens(i, word, seq) is not None:
                    assert _span(a.word_to_chars(i, word, seq)) == _span(b.word_to_chars(i, word, seq))
    last = len(b.tokens(0)) - 2
    assert a.token_to_word(last) == b.token_to_word(0, last) == a.token_to_word(-2)  # one index: row 0


@pytest.mark.parametrize("kwargs", [dict(truncation=True, max_length=4), dict(truncation="only_second", max_length=10),
                                    dict(truncation="longest_first", max_length=6)])
@pytest.mark.parametrize("side", ["right", "left"])
def test_offsets_follow_truncation_as_transformers(kwargs, side):
    folder = shared_path("data", "clip-bpe")
    ours, theirs = CLIPTokenizerFast.from_pretrained(folder), transformers.CLIPTokenizerFast.from_pretrained(folder)
    ours.truncation_side = theirs.truncation_side = side
    text = ("a b c d e", "x y z w") if kwargs["truncation"] != True else ("a b c d e",)  # noqa: E712
    a = ours(*text, return_offsets_mapping=True, **kwargs)
    b = theirs(*text, return_offsets_mapping=True, **kwargs)
    assert a["input_ids"] == b["input_ids"] and a["offset_mapping"] == b["offset_mapping"]


def test_slow_class_alignment_raises_value_error_as_transformers():
    folder = shared_path("data", "clip-bpe")
    ours, theirs = CLIPTokenizer.from_pretrained(folder)("a cat"), transformers.CLIPTokenizer.from_pretrained(
        folder)("a cat")
    assert ours.is_fast is theirs.is_fast is False and ours.n_sequences is theirs.n_sequences is None
    for name in ("word_ids", "sequence_ids", "tokens", "token_to_word", "char_to_token"):
        args = (0,) if name in ("token_to_word", "char_to_token") else ()
        with pytest.raises(ValueError):
            getattr(theirs, name)(*args)
        with pytest.raises(ValueError, match="non-fast"):
            getattr(ours, name)(*args)


def test_once_only_warnings_follow_deprecation_warnings_as_transformers(pair):
    """The once-per-tokenizer warnings are remembered in ``deprecation_warnings`` under transformers' keys:
    resetting it warns again, setting a key silences one (transformers' data collators do so for ``pad``).
    The same texts as transformers', on triclip's logger."""
    ours, theirs = fresh(pair)
    long_text = "a " * 100

    def logged(tok, call):
        records = []
        handler = logging.Handler(logging.WARNING)
        handler.emit = records.append
        loggers = [logging.getLogger(name) for name in ("clip_core", "transformers")]  # transformers': no propagation
        for log in loggers:
            log.addHandler(handler)
        try:
            call(tok)
        finally:
            for log in loggers:
                log.removeHandler(handler)
        return [r.getMessage() for r in records]

    logging.getLogger("transformers").setLevel(logging.WARNING)
    try:
        for tok in (ours, theirs):
            tok.model_max_length = 77
        first = [logged(t, lambda t: t(long_text)) for t in (ours, theirs)]
        assert first[0] == first[1] and len(first[0]) == 1 and first[0][0].startswith("Token indices sequence length")
        assert [logged(t, lambda t: t(long_text)) for t in (ours, theirs)] == [[], []]
        for tok in (ours, theirs):
            tok.deprecation_warnings = {}
        assert [logged(t, lambda t: t(long_text)) for t in (ours, theirs)] == first
        enc = [t(["a cat", "a big dog"]) for t in (ours, theirs)]
        padded = [logged(t, lambda t, e=e: t.pad(e)) for t, e in zip((ours, theirs), enc)]
        assert padded[0] == padded[1] and len(padded[0]) == (1 if ours.is_fast else 0)
        assert [logged(t, lambda t, e=e: t.pad(e)) for t, e in zip((ours, theirs), enc)] == [[], []]
        assert ours.deprecation_warnings == theirs.deprecation_warnings
    finally:
        logging.getLogger("transformers").setLevel(logging.ERROR)


def test_chat_template_attribute_saved_for_transformers(pair, tmp_path):
    """``chat_template``: ``None`` for CLIP's files as in transformers; one set here is saved where transformers
    reads it (triclip does not render templates)."""
    ours, theirs = fresh(pair)
    assert ours.chat_template is None and theirs.chat_template is None
    template = "{% for m in messages %}{{ m['content'] }}{% endfor %}"
    ours.chat_template = template
    ours.save_pretrained(tmp_path)
    assert type(theirs).from_pretrained(tmp_path).chat_template == template
    assert type(ours).from_pretrained(tmp_path).chat_template == template


def test_chat_template_file_layout_as_transformers(pair, tmp_path):
    """A chat template is saved as ``chat_template.jinja`` (not in the config), and that file wins over the
    config's key when loading, in both libraries."""
    ours, theirs = fresh(pair)
    for tok, name in ((ours, "ours"), (theirs, "theirs")):
        tok.chat_template = "{{ 'a' }}"
        tok.save_pretrained(tmp_path / name)
        assert (tmp_path / name / "chat_template.jinja").read_text() == "{{ 'a' }}"
        assert "chat_template" not in json.loads((tmp_path / name / "tokenizer_config.json").read_text())
    folder = tmp_path / "ours"
    config = json.loads((folder / "tokenizer_config.json").read_text())
    (folder / "tokenizer_config.json").write_text(json.dumps({**config, "chat_template": "{{ 'b' }}"}))
    assert type(ours).from_pretrained(folder).chat_template == type(theirs).from_pretrained(folder).chat_template \
        == "{{ 'a' }}"


@pytest.mark.parametrize("jinja_files", [True, False])
def test_several_chat_templates_saved_as_transformers(pair, tmp_path, jinja_files):
    ours, theirs = fresh(pair)
    templates = {"default": "{{'a'}}", "template2": "{{'b'}}"}
    for tok, name in ((ours, "ours"), (theirs, "theirs")):
        tok.chat_template = dict(templates)
        tok.save_pretrained(tmp_path / name, save_jinja_files=jinja_files)
    layout = [sorted(str(p.relative_to(tmp_path / n)) for p in (tmp_path / n).rglob("*")
                     if "template" in p.name and p.is_file()) for n in ("ours", "theirs")]
    assert layout[0] == layout[1]
    configs = [json.loads((tmp_path / n / "tokenizer_config.json").read_text()).get("chat_template")
               for n in ("ours", "theirs")]
    assert configs[0] == configs[1]
    for folder in ("ours", "theirs"):
        assert type(ours).from_pretrained(tmp_path / folder).chat_template == templates
        assert type(theirs).from_pretrained(tmp_path / folder).chat_template == templates


LONG, SHORT = "one two three four five six seven eight", "x y z"
TRUNCATIONS = [(s, m, st) for s in ("longest_first", "only_first", "only_second") for m in (2, 7, 9, 12)
               for st in (0, 1, 3)]


def outcome(tok, *args, **kwargs):
    """The call's output as plain lists, with what the alignment methods say of each row; or 'error'."""
    try:
        out = tok(*args, **kwargs)
    except BaseException:  # noqa: BLE001 (transformers' Rust panics are BaseExceptions; ours are ValueErrors)
        return "error"
    rows = out["input_ids"] if isinstance(out["input_ids"][0], list) else [out["input_ids"]]
    seen = {k: v for k, v in out.items()}
    seen["alignment"] = [(out.sequence_ids(i), out.word_ids(i), [out.char_to_token(i, c) for c in range(12)])
                         for i in range(len(rows))]
    return seen


@pytest.mark.parametrize("side", ["right", "left"])
def test_fast_truncation_and_overflow_follow_the_rust_rule(side):
    """transformers' fast class truncates by the Rust library's rule (a pair's lengths, every window of both
    sequences, the stride checks), not the slow class's: ours does the same, offsets and alignment included."""
    folder = shared_path("data", "clip-bpe")
    ours, theirs = CLIPTokenizerFast.from_pretrained(folder), transformers.CLIPTokenizerFast.from_pretrained(
        folder, model_max_length=77)
    ours.truncation_side = theirs.truncation_side = side
    for texts in ((LONG, LONG.replace("e", "a")), (LONG, SHORT), (SHORT, LONG), ([LONG, SHORT], [SHORT, ""])):
        for strategy, max_length, stride in TRUNCATIONS:
            for extra in ({}, {"return_overflowing_tokens": True, "padding": True, "add_special_tokens": False}):
                kwargs = dict(dict(truncation=strategy, max_length=max_length, stride=stride,
                                   return_offsets_mapping=True), **extra)
                assert outcome(ours, *texts, **kwargs) == outcome(theirs, *texts, **kwargs), (texts, kwargs)
    with pytest.raises(ValueError, match="stride"):  # transformers: the same ValueError
        ours("a", truncation=True, max_length=3, stride=2)
    with pytest.raises(ValueError, match="too short"):  # transformers: a bare Exception
        ours(SHORT, LONG, truncation="only_first", max_length=8)
