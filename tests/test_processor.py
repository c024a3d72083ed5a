"""CLIPProcessor: one call for text and images; files that transformers' CLIPProcessor reads and writes."""

from __future__ import annotations

import copy
import functools
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from clip_core.image_processing import CLIPImageProcessor
from clip_core.processor import CLIPProcessor

from tests.conftest import SHARED, shared_path

BPE_DIR = SHARED / "data" / "clip-bpe"
TEXTS = ["a photo of a cat", "a dog", "Grace Hopper in uniform, 1984"]


@pytest.fixture(scope="module")
def tokenizer():
    shared_path("data", "clip-bpe", "vocab.json")
    from clip_core.tokenizer import CLIPTokenizerFast

    return CLIPTokenizerFast.from_pretrained(BPE_DIR)


@pytest.fixture(scope="module")
def processor(tokenizer):
    return CLIPProcessor(image_processor=CLIPImageProcessor(), tokenizer=tokenizer)


@pytest.fixture(scope="module")
def transformers():
    return pytest.importorskip("transformers")


def _images():
    rng = np.random.default_rng(0)
    return [Image.fromarray(rng.integers(0, 256, (60 + 20 * i, 90 - 10 * i, 3), dtype=np.uint8)) for i in range(2)]


def test_text_and_images(processor, tokenizer):
    out = processor(text=TEXTS, images=_images(), return_tensors="np")
    assert list(out) == ["input_ids", "attention_mask", "pixel_values"]
    assert out.pixel_values.shape == (2, 3, 224, 224) and out.pixel_values.dtype == np.float32
    np.testing.assert_array_equal(out["pixel_values"], CLIPImageProcessor()(_images(), return_tensors="np")
                                  ["pixel_values"])
    alone = tokenizer(TEXTS, padding=True, return_tensors="np")
    np.testing.assert_array_equal(out["input_ids"], alone["input_ids"])
    np.testing.assert_array_equal(out["attention_mask"], alone["attention_mask"])
    assert out["input_ids"].shape[0] == 3 and out["attention_mask"][1].sum() < out["input_ids"].shape[1]


def test_padding_defaults_and_explicit_padding(processor):
    ragged = processor(text=TEXTS)  # no padding unless asked for, as transformers' CLIPProcessor
    assert len({len(row) for row in ragged["input_ids"]}) == 3
    padded = processor(text=TEXTS, return_tensors="np")  # tensors asked for: padded to the longest
    assert padded["input_ids"].shape == (3, 11)
    fixed = processor(text=TEXTS, padding="max_length", max_length=20, return_tensors="np")
    assert fixed["input_ids"].shape == (3, 20)
    cut = processor(text=TEXTS, truncation=True, max_length=5, return_tensors="np")
    assert cut["input_ids"].shape == (3, 5) and (cut["input_ids"][:, -1] == 49407).all()


def _same_nested(ours, theirs):
    """Equal outputs, ragged lists (return_tensors=None) included."""
    assert set(ours) == set(theirs), (set(ours), set(theirs))
    for key in ours:
        a, b = ours[key], theirs[key]
        if isinstance(a, list) and a and isinstance(a[0], list):
            assert a == b, key
        elif isinstance(a, list):
            assert len(a) == len(b), key
            for x, y in zip(a, b):
                np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=0, atol=1e-5, err_msg=key)
        else:
            np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=0, atol=1e-5, err_msg=key)


def _pair(transformers, **tokenizer_init):
    return _cached_pair(transformers, tuple(sorted(tokenizer_init.items())))


@functools.lru_cache(maxsize=None)
def _cached_pair(transformers, tokenizer_init):
    from clip_core.tokenizer import CLIPTokenizerFast

    tokenizer_init = dict(tokenizer_init)

    ours = CLIPProcessor(CLIPImageProcessor(), CLIPTokenizerFast.from_pretrained(BPE_DIR, **tokenizer_init))
    theirs = transformers.CLIPProcessor(transformers.CLIPImageProcessor(),
                                        transformers.CLIPTokenizerFast.from_pretrained(BPE_DIR, **tokenizer_init))
    return ours, theirs


CALLS = [  # (tokenizer init kwargs, call kwargs): transformers 4.57's routing of each
    ({}, {}),
    ({}, dict(padding="max_length", max_length=20, do_rescale=True, rescale_factor=-1, crop_size=64,
              return_tensors="np")),
    ({}, dict(text_kwargs={"padding": "max_length", "max_length": 12}, common_kwargs={"return_tensors": "np"},
              images_kwargs={"crop_size": {"height": 32, "width": 32}, "do_normalize": False})),
    ({}, dict(images_kwargs={"do_normalize": False}, padding="longest", return_tensors="np")),
    ({}, dict(text_kwargs={"padding": "longest"}, max_length=5, truncation=True, return_tensors="np")),
    ({}, dict(padding=True, return_tensors="np", data_format="channels_last", not_an_argument=1)),
    ({"padding": "max_length", "max_length": 17}, dict(return_tensors="np")),
    ({"padding": "max_length", "max_length": 17}, dict(return_tensors="np", padding="longest")),
    ({"padding": "max_length", "max_length": 17}, dict(text_kwargs={"max_length": 12}, return_tensors="np")),
]


@pytest.mark.parametrize("init,call", CALLS)
def test_call_keywords_routed_as_transformers(transformers, init, call):
    ours, theirs = _pair(transformers, **init)
    images = _images()
    _same_nested(ours(text=TEXTS, images=images, **copy.deepcopy(call)),
                 theirs(text=TEXTS, images=images, **copy.deepcopy(call)))


def test_signature_is_transformers_typed_kwargs(transformers):
    import inspect
    import typing

    from transformers.processing_utils import ProcessingKwargs, Unpack

    from clip_core.processor import CLIPProcessorKwargs

    ours = inspect.signature(CLIPProcessor.__call__).parameters
    theirs = inspect.signature(transformers.CLIPProcessor.__call__).parameters
    assert list(ours) == list(theirs) == ["self", "images", "text", "videos", "audio", "kwargs"]
    assert ours["kwargs"].annotation.__origin__ is Unpack
    assert typing.get_args(ours["kwargs"].annotation) == (CLIPProcessorKwargs,)
    for modality, keys in ProcessingKwargs.__annotations__.items():
        mine = set(CLIPProcessorKwargs.__annotations__[modality].__annotations__)
        extra = {"do_convert_rgb"} if modality == "images_kwargs" else set()
        assert mine == set(keys.__annotations__) | extra, modality


def test_nested_images_videos_and_double_keywords_as_transformers(transformers):
    ours, theirs = _pair(transformers)
    image = _images()[0]
    nested = [[image], [], [image]]
    video = [np.zeros((2, 8, 8, 3), np.uint8)]
    _same_nested(ours(text=TEXTS, images=nested, videos=video, padding=True, return_tensors="np"),
                 theirs(text=TEXTS, images=nested, videos=video, padding=True, return_tensors="np"))
    for proc in (ours, theirs):
        with pytest.raises(ValueError, match="passed two times"):
            proc(text=TEXTS, images=image, images_kwargs={"do_rescale": True}, do_rescale=True)
    kwargs = {"do_rescale": True, "rescale_factor": -1}
    ours(text=TEXTS, images=image, images_kwargs=kwargs)
    assert kwargs == {"do_rescale": True, "rescale_factor": -1}  # the caller's dict is left as it was


def test_text_positionally_first(processor):
    image = _images()[0]
    _same_nested(processor("a cat", image, return_tensors="np"),
                 processor(images=image, text="a cat", return_tensors="np"))
    with pytest.raises(ValueError, match="text=") as err:
        processor("a cat")  # images first, as in transformers: a caption there is no image file
    assert "a cat" in str(err.value)


def test_only_one_modality_and_errors(processor):
    assert list(processor(text="a cat")) == ["input_ids", "attention_mask"]
    assert list(processor(images=_images()[0])) == ["pixel_values"]
    with pytest.raises(ValueError, match="Both cannot be None"):
        processor()
    with pytest.raises(ValueError, match="no tokenizer"):
        CLIPProcessor()(text="a cat")
    with pytest.raises(ValueError, match="return_tensors"):
        processor(text="a cat", return_tensors="numpy")
    with pytest.raises(TypeError, match="image 0"):
        processor(images=[{"not": "an image"}])


def test_images_first_positionally_like_transformers(processor):
    image = _images()[0]
    expected = processor(text="a cat", images=image, return_tensors="np")
    for out in (processor(image, "a cat", return_tensors="np"), processor(images=image, text="a cat", return_tensors="np")):
        assert set(out) == set(expected)
        for key in expected:
            np.testing.assert_array_equal(out[key], expected[key])
    assert list(processor(image)) == ["pixel_values"]


def test_keyword_routing(processor):
    image = _images()[0]
    out = processor(text=TEXTS, images=image, return_tensors="np", crop_size=64, data_format="channels_last",
                    max_length=4, truncation=True)
    assert out["pixel_values"].shape == (1, 64, 64, 3) and out["input_ids"].shape == (3, 4)
    nested = processor(text=TEXTS, images=image, return_tensors="np", images_kwargs={"crop_size": 32},
                       text_kwargs={"max_length": 6, "truncation": True})
    assert nested["pixel_values"].shape == (1, 3, 32, 32) and nested["input_ids"].shape == (3, 6)


def test_decode_forwards_to_tokenizer(processor, tokenizer):
    ids = processor(text=TEXTS, return_tensors="np")["input_ids"]
    assert processor.batch_decode(ids, skip_special_tokens=True) == tokenizer.batch_decode(ids,
                                                                                          skip_special_tokens=True)
    assert processor.decode(ids[0], skip_special_tokens=True) == "a photo of a cat"
    with pytest.raises(ValueError, match="no tokenizer"):
        CLIPProcessor().decode([1, 2])


def test_tensor_types(processor):
    torch = pytest.importorskip("torch")
    out = processor(text=TEXTS, images=_images(), return_tensors="pt")
    assert isinstance(out["pixel_values"], torch.Tensor) and isinstance(out["input_ids"], torch.Tensor)
    assert out["pixel_values"].dtype == torch.float32 and out["input_ids"].shape[0] == 3


def test_deprecated_feature_extractor():
    with pytest.warns(FutureWarning, match="feature_extractor"):
        processor = CLIPProcessor(feature_extractor=CLIPImageProcessor(size=100))
    assert processor.image_processor.size == {"shortest_edge": 100}
    with pytest.warns(FutureWarning):
        assert processor.feature_extractor is processor.image_processor
    with pytest.raises(TypeError, match="unexpected"):
        CLIPProcessor(image_procesor=CLIPImageProcessor())


def _same(ours, theirs):
    assert set(ours) == set(theirs), (set(ours), set(theirs))
    for key in ours:
        np.testing.assert_allclose(np.asarray(ours[key]), np.asarray(theirs[key]), rtol=0, atol=1e-5, err_msg=key)


def test_saved_by_us_loads_in_transformers(processor, transformers, tmp_path):
    custom = CLIPProcessor(CLIPImageProcessor(size=200, crop_size=160), processor.tokenizer)
    files = custom.save_pretrained(tmp_path)
    assert all(Path(f).is_file() for f in files)
    config = json.loads((tmp_path / "preprocessor_config.json").read_text())
    assert config["processor_class"] == "CLIPProcessor" and config["image_processor_type"] == "CLIPImageProcessor"
    assert "processor_class" not in custom.image_processor.to_dict()  # saving did not change our processor
    theirs = transformers.CLIPProcessor.from_pretrained(tmp_path)
    assert theirs.model_input_names == custom.model_input_names
    images = _images()
    _same(custom(text=TEXTS, images=images, return_tensors="np"),
          theirs(text=TEXTS, images=images, return_tensors="np", padding=True))
    again = CLIPProcessor.from_pretrained(tmp_path)
    _same(again(text=TEXTS, images=images, return_tensors="np"), custom(text=TEXTS, images=images, return_tensors="np"))


def test_saved_by_transformers_loads_in_ours(transformers, tokenizer, tmp_path):
    hf_tokenizer = transformers.CLIPTokenizerFast(vocab_file=str(BPE_DIR / "vocab.json"),
                                                  merges_file=str(BPE_DIR / "merges.txt"))
    theirs = transformers.CLIPProcessor(image_processor=transformers.CLIPImageProcessor(crop_size=192),
                                        tokenizer=hf_tokenizer)
    theirs.save_pretrained(tmp_path)
    ours = CLIPProcessor.from_pretrained(tmp_path)
    assert ours.image_processor.crop_size == {"height": 192, "width": 192}
    images = _images()
    _same(ours(text=TEXTS, images=images, return_tensors="np"),
          theirs(text=TEXTS, images=images, return_tensors="np", padding=True))
    assert ours.batch_decode(ours(text=TEXTS)["input_ids"], skip_special_tokens=True) == \
        theirs.batch_decode(theirs(text=TEXTS, padding=True)["input_ids"], skip_special_tokens=True)


def test_from_pretrained_missing_files(tmp_path):
    with pytest.raises(OSError, match="preprocessor_config.json"):
        CLIPProcessor.from_pretrained(tmp_path)


def test_tensors_without_padding_pad_to_the_longest_where_transformers_fails(transformers):
    ours, theirs = _pair(transformers)
    with pytest.raises(ValueError):
        theirs(text=TEXTS, return_tensors="pt")
    got = ours(text=TEXTS, return_tensors="np")
    _same_nested(got, theirs(text=TEXTS, return_tensors="np", padding=True))
    same_length = ["a cat", "a dog"]  # equal lengths: padding changes nothing, the two agree
    _same_nested(ours(text=same_length, return_tensors="np"), theirs(text=same_length, return_tensors="np"))
