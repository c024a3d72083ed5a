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
