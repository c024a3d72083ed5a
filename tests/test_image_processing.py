"""CLIPImageProcessor: transformers 4.57's numbers (fixtures and live comparisons), inputs, errors, config files."""

from __future__ import annotations

import json
import multiprocessing
import os
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import clip_core.image_processing as ip
import clip_core.images.kernel as kernel
from clip_core.image_processing import CLIPFeatureExtractor, CLIPImageProcessor

from tests.conftest import SHARED, shared_path

IMAGES_DIR = SHARED / "fixtures" / "images-hf"


def _require_fixtures() -> Path:
    shared_path("fixtures", "images-hf", "expected_pixel_values.npz")
    return IMAGES_DIR


def _fixture_names() -> list[str]:
    path = IMAGES_DIR / "images.json"
    return sorted(json.loads(path.read_text())) if path.is_file() else ["<missing fixtures>"]


@pytest.fixture(scope="module")
def hf():
    """transformers' CLIPImageProcessor class (the live reference)."""
    transformers = pytest.importorskip("transformers")
    assert transformers.__version__.startswith("4.57"), transformers.__version__
    return transformers.CLIPImageProcessor


def _rng(seed=0):
    return np.random.default_rng(seed)


def _photo(width=120, height=90, seed=0, mode="RGB") -> Image.Image:
    """A smooth random image (bilinear upscale of noise), closer to a photo than white noise."""
    rng = _rng(seed)
    small = Image.fromarray(rng.integers(0, 256, (max(height // 6, 2), max(width // 6, 2), 3), dtype=np.uint8))
    return small.resize((width, height), Image.BILINEAR).convert(mode)


def _ours(images, **kwargs):
    return CLIPImageProcessor()(images, return_tensors="np", **kwargs)["pixel_values"]


def _theirs(hf, images, init=None, **kwargs):
    return np.stack([np.asarray(x) for x in hf(**(init or {}))(images=images, **kwargs)["pixel_values"]])


# --------------------------------------------------------------------------------------------------------------------
# Reference fixtures
# --------------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", _fixture_names())
def test_fixture_image_matches_transformers(name):
    folder = _require_fixtures()
    expected = np.load(folder / "expected_pixel_values.npz")[name]
    with Image.open(folder / "images" / name) as image:
        assert image.mode == json.loads((folder / "images.json").read_text())[name]["mode"]
        got = CLIPImageProcessor()(images=image, return_tensors="np")["pixel_values"]
    assert got.shape == (1, 3, 224, 224) and got.dtype == np.float32
    diff = float(np.abs(got[0] - expected).max())
    assert diff <= 1e-5, f"{name}: max abs diff {diff}"


def test_fixture_batch_equals_one_by_one(monkeypatch):
    folder = _require_fixtures()
    expected = np.load(folder / "expected_pixel_values.npz")
    names = _fixture_names()
    images = [Image.open(folder / "images" / name) for name in names]
    batch = CLIPImageProcessor()(images, return_tensors="np")["pixel_values"]
    monkeypatch.setattr(ip, "NUM_THREADS", 1)
    serial = CLIPImageProcessor()(images, return_tensors="np")["pixel_values"]
    np.testing.assert_array_equal(batch, serial)
    for i, name in enumerate(names):
        assert float(np.abs(batch[i] - expected[name]).max()) <= 1e-5, name


def test_same_lazy_image_twice():
    folder = _require_fixtures()
    with Image.open(folder / "images" / "grace_hopper.jpg") as image:  # not decoded yet
        out = CLIPImageProcessor()([image, image], return_tensors="np")["pixel_values"]
    expected = np.load(folder / "expected_pixel_values.npz")["grace_hopper.jpg"]
    assert float(np.abs(out - expected).max()) <= 1e-5


def _child_job():
    return CLIPImageProcessor()([_photo(seed=1), _photo(seed=2)], return_tensors="np")["pixel_values"].shape


def test_works_in_a_forked_child():
    """The worker threads do not survive a fork (DataLoader workers): the child makes its own pool."""
    CLIPImageProcessor()([_photo(seed=1), _photo(seed=2)])  # the parent's pool exists now
    if sys.platform.startswith("linux"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # JAX, if imported by other tests, warns about fork
            with multiprocessing.get_context("fork").Pool(1) as pool:
                assert pool.apply_async(_child_job).get(timeout=120) == (2, 3, 224, 224)


def test_path_input_is_loaded():
    folder = _require_fixtures()
    path = folder / "images" / "chelsea.png"
    expected = np.load(folder / "expected_pixel_values.npz")["chelsea.png"]
    got = _ours(str(path))[0]
    assert float(np.abs(got - expected).max()) <= 1e-5


# --------------------------------------------------------------------------------------------------------------------
# Input forms and output forms
# --------------------------------------------------------------------------------------------------------------------


def test_numpy_hwc_and_chw_equal_pil():
    image = _photo(130, 97, seed=1)
    from_pil = _ours(image)
    array = np.asarray(image)
    np.testing.assert_array_equal(_ours(array), from_pil)
    np.testing.assert_array_equal(_ours(np.ascontiguousarray(array.transpose(2, 0, 1))), from_pil)
    np.testing.assert_array_equal(_ours(array[None]), from_pil)  # a 4-D batch


def test_gray_forms_agree():
    gray = _photo(80, 60, seed=2, mode="L")
    expected = _ours(gray.convert("RGB"))
    np.testing.assert_array_equal(_ours(gray), expected)
    np.testing.assert_array_equal(_ours(np.asarray(gray)), expected)  # 2-D array
    np.testing.assert_array_equal(_ours(np.asarray(gray)[:, :, None]), expected)  # (H, W, 1)
    np.testing.assert_array_equal(_ours(np.asarray(gray)[None]), expected)  # (1, H, W)


def test_rgba_array_drops_alpha_like_pil():
    rgba = Image.fromarray(_rng(3).integers(0, 256, (50, 70, 4), dtype=np.uint8))
    np.testing.assert_array_equal(_ours(np.asarray(rgba)), _ours(rgba))


FOUR_CHANNEL_SETTINGS = [
    dict(image_mean=0, image_std=1),
    dict(image_mean=[0.5, 0.4, 0.3, 0.2], image_std=[0.2, 0.3, 0.4, 0.5], input_data_format="channels_first"),
    dict(do_normalize=False),
    dict(do_normalize=False, do_convert_rgb=False, do_resize=False),
]


@pytest.mark.parametrize("settings", FOUR_CHANNEL_SETTINGS)
def test_rgba_array_keeps_4_channels_where_transformers_does(hf, settings):
    """transformers converts only PIL images to RGB: a 4-channel array stays 4-channel wherever its normalisation
    fits 4 channels; the same numbers here (``image_mean`` with 3 values: it fails, we drop alpha, as above)."""
    settings = dict(settings)
    first = settings.get("input_data_format") == "channels_first"
    settings.setdefault("input_data_format", "channels_last")
    shape = (4, 50, 70) if first else (50, 70, 4)
    images = [_rng(s).integers(0, 256, shape, dtype=np.uint8) for s in range(2)]
    ours = _ours(images, **settings)
    theirs = _theirs(hf, images, return_tensors="np", **settings)
    assert ours.shape[1] == 4
    np.testing.assert_allclose(ours, theirs, rtol=0, atol=1e-5)
    with pytest.raises(ValueError):
        hf()(images, return_tensors="np", input_data_format=settings["input_data_format"])
    assert _ours(images, input_data_format=settings["input_data_format"]).shape[1] == 3


def test_valid_processor_keys_are_preprocess_arguments(hf):
    import inspect

    ours = CLIPImageProcessor()._valid_processor_keys
    assert ours == hf()._valid_processor_keys
    assert sorted(ours) == sorted(inspect.getfullargspec(CLIPImageProcessor.preprocess).args[1:])
    assert "_valid_processor_keys" not in CLIPImageProcessor().to_json_string()


def test_channels_last_is_a_transpose():
    images = [_photo(100, 150, seed=4), _photo(300, 40, seed=5)]
    first = _ours(images)
    last = _ours(images, data_format="channels_last")
    assert last.shape == (2, 224, 224, 3)
    np.testing.assert_array_equal(last, first.transpose(0, 2, 3, 1))
    small = _ours([_photo(20, 10, seed=6)], data_format="channels_last", do_resize=False)  # padded
    np.testing.assert_array_equal(small, _ours([_photo(20, 10, seed=6)], do_resize=False).transpose(0, 2, 3, 1))


def test_return_tensors_none_is_a_list_like_transformers():
    out = CLIPImageProcessor()([_photo(seed=7), _photo(seed=8)])["pixel_values"]
    assert isinstance(out, list) and len(out) == 2
    assert all(isinstance(x, np.ndarray) and x.shape == (3, 224, 224) and x.dtype == np.float32 for x in out)


@pytest.mark.parametrize("framework,module", [("pt", "torch"), ("tf", "tensorflow"), ("jax", "jax")])
def test_tensor_outputs(framework, module):
    lib = pytest.importorskip(module)
    images = [_photo(seed=9), _photo(64, 200, seed=10)]
    expected = _ours(images)
    out = CLIPImageProcessor()(images, return_tensors=framework)["pixel_values"]
    assert tuple(out.shape) == (2, 3, 224, 224)
    np.testing.assert_array_equal(np.asarray(out), expected)
    if module == "torch":
        assert isinstance(out, lib.Tensor) and out.dtype == lib.float32
        np.testing.assert_array_equal(_ours(lib.from_numpy(np.array(images[0]))), expected[:1])  # tensor input
    elif module == "tensorflow":
        assert out.dtype == lib.float32
        np.testing.assert_array_equal(_ours(lib.constant(np.asarray(images[0]))), expected[:1])
    else:
        assert out.dtype == lib.numpy.float32
        np.testing.assert_array_equal(_ours(lib.numpy.asarray(np.asarray(images[0]))), expected[:1])


def test_different_sizes_without_crop_give_a_list():
    images = [_photo(100, 50, seed=11), _photo(50, 100, seed=12)]
    out = CLIPImageProcessor(do_center_crop=False)(images)["pixel_values"]
    assert [x.shape for x in out] == [(3, 224, 448), (3, 448, 224)]
    with pytest.raises(ValueError, match="different output shapes"):
        CLIPImageProcessor(do_center_crop=False)(images, return_tensors="np")


def test_resize_window_is_exact():
    """The crop-aware resize gives PIL's own pixels, whatever the sizes, filters and pass order."""
    rng = _rng(12)
    for trial in range(150):
        in_w, in_h = (int(v) for v in rng.integers(1, 260, 2))
        out_w, out_h = (int(v) for v in rng.integers(1, 260, 2))
        if trial % 3 == 0:  # height shrinking much more than width: Pillow 13 runs the vertical pass first
            in_h, out_h = in_h + 200, max(1, out_h // 4)
        image = Image.fromarray(rng.integers(0, 256, (in_h, in_w, 3) if trial % 2 else (in_h, in_w), dtype=np.uint8))
        resample = Image.Resampling(int(rng.integers(0, 6)))
        crop = tuple(int(v) for v in rng.integers(1, 260, 2))
        rows, cols, _ = ip._crop_geometry(out_h, out_w, crop)
        expected = np.asarray(image.resize((out_w, out_h), resample))[rows[0]:rows[1], cols[0]:cols[1]]
        got = ip._resize_window(image, out_h, out_w, resample, rows, cols)
        np.testing.assert_array_equal(got, expected, err_msg=f"{(in_w, in_h)} -> {(out_w, out_h)} {resample!r}")


def _require_kernel():
    """The compiled resize is optional for users, not for CI: missing, it fails there and skips elsewhere."""
    if ip._resample is None:
        message = "clip_core._resample was not built (PIL resizes instead): pip install -e . compiles it"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)


def test_compiled_kernel_is_built_and_trusted():
    _require_kernel()
    assert ip._kernel_matches_pillow()


def test_compiled_kernel_gives_pil_pixels():
    """The kernel alone against PIL's whole resize, on photo-like and odd sizes, RGB and L, both of its filters,
    down- and upscaling, either pass first, windows anywhere (the centre crop's and others)."""
    _require_kernel()
    rng = _rng(21)
    sizes = [(640, 480, 298, 224), (480, 640, 224, 298), (1024, 768, 298, 224), (500, 333, 336, 224),
             (224, 224, 224, 224), (37, 301, 224, 1822), (9, 7, 300, 250), (300, 900, 299, 100), (333, 95, 40, 95)]
    sizes += [tuple(int(v) for v in rng.integers(1, 400, 4)) for _ in range(40)]
    for in_w, in_h, out_w, out_h in sizes:
        for shape in ((in_h, in_w, 3), (in_h, in_w)):
            pixels = np.array(Image.fromarray(rng.integers(0, 256, (max(in_h // 4, 1), max(in_w // 4, 1), 3),
                                                             dtype=np.uint8)).resize((in_w, in_h), Image.BILINEAR))
            pixels = pixels if len(shape) == 3 else pixels[:, :, 1].copy()
            pixels[rng.random(pixels.shape) < 0.05] = 255  # sharp spots: overshoots to clip
            image = Image.fromarray(pixels)
            for resample in (Image.Resampling.BICUBIC, Image.Resampling.BILINEAR):
                full = np.asarray(image.resize((out_w, out_h), resample))
                y0, x0 = int(rng.integers(0, out_h)), int(rng.integers(0, out_w))
                rows, cols = (y0, int(rng.integers(y0 + 1, out_h + 1))), (x0, int(rng.integers(x0 + 1, out_w + 1)))
                for source in (pixels, image):  # numpy pixels, and PIL's own memory (through Arrow)
                    np.testing.assert_array_equal(
                        ip._kernel_window(source, out_h, out_w, resample, rows, cols),
                        full[rows[0]:rows[1], cols[0]:cols[1]],
                        err_msg=f"{(in_w, in_h)} -> {(out_w, out_h)} {resample!r} {shape} {type(source)}")


def test_compiled_kernel_on_an_image_pil_cannot_export():
    """An image stored in several memory blocks has no Arrow export: it is copied to numpy, with the same result."""
    _require_kernel()
    image = _photo(4000, 1100, seed=26)  # 17.6 MB of RGBX: more than one of PIL's 16 MB blocks
    assert ip._arrow_pixels(image) is None
    out_h, out_w = ip._resize_output_size(1100, 4000, {"shortest_edge": 224})
    rows, cols, _ = ip._crop_geometry(out_h, out_w, (224, 224))
    expected = np.asarray(image.resize((out_w, out_h), Image.BICUBIC))[rows[0]:rows[1], cols[0]:cols[1]]
    np.testing.assert_array_equal(ip._kernel_window(image, out_h, out_w, Image.BICUBIC, rows, cols), expected)


def test_pil_fallback_gives_the_same_output(monkeypatch):
    """Where the kernel is missing or distrusted, PIL resizes: the processor's output does not change."""
    images = [_photo(640, 480, seed=22), _photo(333, 500, seed=23), _photo(200, 90, seed=24, mode="L"),
              np.asarray(_photo(301, 260, seed=25))]
    bicubic, bilinear = _ours(images), _ours(images, resample=Image.BILINEAR)
    monkeypatch.setattr(kernel, "_verdict", [False])
    np.testing.assert_array_equal(_ours(images), bicubic)
    np.testing.assert_array_equal(_ours(images, resample=Image.BILINEAR), bilinear)


def test_a_failing_kernel_check_means_pil(monkeypatch, caplog):
    """If the kernel cannot even run its check (say a future Pillow exports pixels otherwise), PIL does the work."""
    image = _photo(333, 250, seed=27)
    expected = _ours([image])

    def broken():
        raise ValueError("unsupported Arrow pixels (format +w:3)")
    monkeypatch.setattr(kernel, "_verdict", [])
    monkeypatch.setattr(kernel, "_resample", object())
    monkeypatch.setattr(kernel, "check_kernel", broken)
    with caplog.at_level("WARNING", logger="clip_core.image_processing"):
        assert ip._kernel_matches_pillow() is False
    assert "failed its check (unsupported Arrow pixels (format +w:3)); PIL resizes instead" in caplog.text
    np.testing.assert_array_equal(_ours([image]), expected)


def test_compiled_kernel_checks_its_arguments():
    _require_kernel()
    pixels = np.zeros((10, 12, 3), np.uint8)
    out = np.empty((4, 5, 3), np.uint8)
    first, count, weights = ip._kernel_weights(12, 5, 0, 5, Image.Resampling.BICUBIC)
    rows = ip._kernel_weights(10, 4, 0, 4, Image.Resampling.BICUBIC)
    args = (pixels, 10, 12, 3, out, 4, 5, first, count, weights, weights.shape[1], *rows, rows[2].shape[1], False)
    ip._resample.resize(*args)  # well-formed
    with pytest.raises(ValueError, match="108 source pixels and a 60-byte output, expected 10 x 12 pixels"):
        ip._resample.resize(pixels[:9].copy(), *args[1:])
    with pytest.raises(ValueError, match=r"column plan: output 2 reads inputs \[4, 14\) of 12"):
        ip._resample.resize(*args[:7], first + np.int32(3), *args[8:])
    with pytest.raises(ValueError, match="row plan: expected 4"):
        ip._resample.resize(*args[:11], rows[0][:3].copy(), *args[12:])
    with pytest.raises(TypeError):
        ip._resample.resize(*args[:4], out.view(np.uint8).tobytes(), *args[5:])  # read-only output
    gray = Image.new("L", (12, 10)).__arrow_c_array__()
    with pytest.raises(ValueError, match="Arrow pixels of 1 bytes for 3 channels"):
        ip._resample.resize(gray, *args[1:])
    with pytest.raises(ValueError, match="channels must be 1 or 3, got 4"):
        ip._resample.resize(pixels, 10, 12, 4, *args[4:])


# --------------------------------------------------------------------------------------------------------------------
# Live comparison with transformers on non-default settings and inputs
# --------------------------------------------------------------------------------------------------------------------

SETTINGS = [
    {"size": 300, "crop_size": 256},
    {"size": {"height": 200, "width": 150}, "crop_size": {"height": 120, "width": 180}},
    {"size": 64, "crop_size": {"height": 100, "width": 90}},  # crop larger than the resized image: padding
    {"do_normalize": False},
    {"do_rescale": False},
    {"do_rescale": False, "do_normalize": False},
    {"resample": Image.NEAREST},
    {"resample": Image.BILINEAR},
    {"resample": 1},  # LANCZOS as an int
    {"resample": Image.BOX, "image_mean": 0.5, "image_std": 0.25},
    {"do_resize": False, "crop_size": 64},
    {"do_resize": False, "crop_size": {"height": 300, "width": 40}},
    {"rescale_factor": 1 / 127.5, "image_mean": [0.1, 0.2, 0.3], "image_std": [1.0, 2.0, 3.0]},
]


@pytest.mark.parametrize("settings", SETTINGS, ids=[str(s) for s in SETTINGS])
def test_settings_match_transformers(hf, settings):
    images = [_photo(150, 110, seed=13), _photo(70, 230, seed=14), _photo(33, 21, seed=15)]
    expected = _theirs(hf, images, settings, return_tensors="np")
    ours = CLIPImageProcessor(**settings)(images, return_tensors="np")["pixel_values"]
    np.testing.assert_allclose(ours, expected, rtol=0, atol=1e-5)
    per_call = CLIPImageProcessor()(images, return_tensors="np", **settings)["pixel_values"]
    np.testing.assert_array_equal(per_call, ours)


def test_no_center_crop_matches_transformers(hf):
    for image in (_photo(150, 110, seed=16), _photo(60, 200, seed=17)):
        expected = np.asarray(hf(do_center_crop=False)(images=image)["pixel_values"][0])
        ours = CLIPImageProcessor(do_center_crop=False)(image)["pixel_values"][0]
        assert ours.shape == expected.shape
        np.testing.assert_allclose(ours, expected, rtol=0, atol=1e-5)


def _pil_mode_images():
    rng = _rng(18)
    base = _photo(90, 70, seed=19)
    sixteen = rng.integers(0, 65536, (70, 90), dtype=np.uint16)
    return {
        "RGBA": Image.fromarray(rng.integers(0, 256, (70, 90, 4), dtype=np.uint8)),
        "P": base.convert("P", palette=Image.ADAPTIVE, colors=32),
        "L": base.convert("L"),
        "LA": base.convert("LA"),
        "1": base.convert("1"),
        "I;16": Image.frombytes("I;16", (90, 70), sixteen.tobytes()),
        "I": Image.fromarray(rng.integers(-100, 400, (70, 90)).astype(np.int32)),
        "F": Image.fromarray((rng.random((70, 90)) * 300 - 20).astype(np.float32)),
        "CMYK": base.convert("CMYK"),
        "YCbCr": base.convert("YCbCr"),
    }


@pytest.mark.parametrize("mode", list(_pil_mode_images()))
def test_pil_modes_match_transformers(hf, mode):
    image = _pil_mode_images()[mode]
    assert image.mode == mode
    expected = _theirs(hf, image, return_tensors="np")
    np.testing.assert_allclose(_ours(image), expected, rtol=0, atol=1e-5)


def _array_cases():
    rng = _rng(20)
    photo = np.asarray(_photo(120, 80, seed=21))
    return {
        "float32 in [0, 1]": (photo / 255.0).astype(np.float32),
        "float64 in [0, 1]": photo / 255.0,
        "float64 whole numbers": photo.astype(np.float64),
        "int64": photo.astype(np.int64),
        "uint8 CHW": np.ascontiguousarray(photo.transpose(2, 0, 1)),
        "float32 CHW": np.ascontiguousarray((photo / 255.0).astype(np.float32).transpose(2, 0, 1)),
        "uint8 ambiguous (3, 50, 3)": rng.integers(0, 256, (3, 50, 3), dtype=np.uint8),
    }


@pytest.mark.parametrize("case", list(_array_cases()))
@pytest.mark.parametrize("settings", [{}, {"do_rescale": False}, {"do_resize": False, "crop_size": 100}],
                         ids=["default", "no-rescale", "no-resize"])
def test_arrays_match_transformers(hf, case, settings):
    array = _array_cases()[case]
    expected = _theirs(hf, array, settings, return_tensors="np")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the "already rescaled" warning
        ours = CLIPImageProcessor(**settings)(array, return_tensors="np")["pixel_values"]
    np.testing.assert_allclose(ours, expected, rtol=0, atol=1e-5)


def test_gray_array_matches_transformers_on_rgb(hf):
    gray = np.asarray(_photo(77, 55, seed=22, mode="L"))
    for settings in ({}, {"do_resize": False, "crop_size": 40}):
        expected = _theirs(hf, np.repeat(gray[:, :, None], 3, axis=2), settings, return_tensors="np")
        ours = CLIPImageProcessor(**settings)(gray, return_tensors="np")["pixel_values"]
        np.testing.assert_allclose(ours, expected, rtol=0, atol=1e-5)
        float_gray = (gray / 255.0).astype(np.float32)  # the float path, gray repeated
        expected = _theirs(hf, np.repeat(float_gray[:, :, None], 3, axis=2), {**settings, "do_rescale": False},
                           return_tensors="np")
        ours = CLIPImageProcessor(**settings, do_rescale=False)(float_gray, return_tensors="np")["pixel_values"]
        np.testing.assert_allclose(ours, expected, rtol=0, atol=1e-5)


def test_one_channel_without_rgb_conversion_matches_transformers(hf):
    gray = np.asarray(_photo(60, 45, seed=23, mode="L"))[:, :, None]
    settings = {"do_convert_rgb": False, "image_mean": 0.5, "image_std": 0.5}
    expected = _theirs(hf, gray, settings, return_tensors="np")
    ours = CLIPImageProcessor(**settings)(gray, return_tensors="np")["pixel_values"]
    assert ours.shape == (1, 1, 224, 224)
    np.testing.assert_allclose(ours, expected, rtol=0, atol=1e-5)


def test_float_images_in_unit_range_warn():
    with pytest.warns(UserWarning, match="do_rescale=False"):
        CLIPImageProcessor()(np.full((30, 30, 3), 0.5, dtype=np.float32))


# --------------------------------------------------------------------------------------------------------------------
# Bad input
# --------------------------------------------------------------------------------------------------------------------

GOOD = np.zeros((20, 20, 3), dtype=np.uint8)
BAD_INPUTS = [
    ("not an image", 42, TypeError, r"int"),
    ("a dict", {"pixels": GOOD}, TypeError, r"dict"),
    ("None", None, ValueError, r"None"),
    ("empty list", [], ValueError, r"empty list"),
    ("list of empty lists", [[], []], ValueError, r"empty"),
    ("bad item in a list", [GOOD, GOOD, object()], TypeError, r"image 2 .*object"),
    ("zero-size array", np.zeros((0, 10, 3), np.uint8), ValueError, r"image 0 is empty.*\(0, 10, 3\)"),
    ("zero-size PIL", Image.new("RGB", (0, 5)), ValueError, r"image 0 is empty"),
    ("5 channels", np.zeros((10, 12, 5), np.uint8), ValueError, r"\(10, 12, 5\)"),
    ("2 channels", np.zeros((2, 12, 10), np.uint8), ValueError, r"\(2, 12, 10\)"),
    ("NaN", np.full((10, 10, 3), np.nan, np.float32), ValueError, r"NaN"),
    ("inf", np.where(np.eye(10)[:, :, None], np.inf, 0.5).repeat(3, 2), ValueError, r"infinite"),
    ("1-D", np.zeros(30, np.uint8), ValueError, r"1 dimensions"),
    ("5-D", np.zeros((1, 1, 4, 4, 3), np.uint8), ValueError, r"5 dimensions"),
    ("complex", np.zeros((10, 10, 3), np.complex64), TypeError, r"complex64"),
    ("strings", np.full((4, 4, 3), "a"), TypeError, r"dtype"),
    ("float out of range", np.full((10, 10, 3), 1.5, np.float32), ValueError, r"fractional values"),
    ("ints out of range", np.full((10, 10, 3), 300, np.int32), ValueError, r"outside 0\.\.255"),
    ("missing file", "/nonexistent/cat.png", ValueError, r"not an image file"),
    ("URL", "https://example.com/cat.png", ValueError, r"URLs are not fetched"),
]


@pytest.mark.parametrize("what,images,error,pattern", BAD_INPUTS, ids=[case[0] for case in BAD_INPUTS])
def test_bad_input_is_named(what, images, error, pattern):
    with pytest.raises(error, match=pattern):
        CLIPImageProcessor()(images, return_tensors="np")


BAD_SETTINGS = [
    ({"return_tensors": "torch"}, r"return_tensors"),
    ({"data_format": "NCHW"}, r"data_format"),
    ({"input_data_format": "hwc"}, r"input_data_format"),
    ({"size": {"longest_edge": 10}}, r"size"),
    ({"size": 0}, r"positive"),
    ({"crop_size": {"shortest_edge": 10}}, r"crop_size"),
    ({"resample": 17}, r"resample"),
    ({"image_mean": [0.5, 0.5]}, r"image_mean must have 3"),
]


@pytest.mark.parametrize("settings,pattern", BAD_SETTINGS, ids=[str(s[0]) for s in BAD_SETTINGS])
def test_bad_settings_raise_value_error(settings, pattern):
    with pytest.raises(ValueError, match=pattern):
        CLIPImageProcessor()(GOOD, **settings)


def test_forced_layout_errors():
    with pytest.raises(ValueError, match="has 5 channels"):
        CLIPImageProcessor()(np.zeros((10, 12, 5), np.uint8), input_data_format="channels_last")
    with pytest.raises(ValueError, match="4 channels need do_convert_rgb"):
        CLIPImageProcessor(do_convert_rgb=False)(np.zeros((10, 12, 4), np.uint8))
    with pytest.raises(ValueError, match="palette"):
        CLIPImageProcessor(do_convert_rgb=False)(Image.new("P", (10, 10)))


def test_unknown_preprocess_argument_warns():
    with pytest.warns(UserWarning, match="do_resise"):
        CLIPImageProcessor()(GOOD, do_resise=False)


# --------------------------------------------------------------------------------------------------------------------
# Fuzz
# --------------------------------------------------------------------------------------------------------------------

hypothesis = pytest.importorskip("hypothesis")
st = hypothesis.strategies
PIL_MODES = ["RGB", "RGBA", "L", "LA", "P", "1", "I;16", "I", "F", "CMYK"]
ARRAY_DTYPES = ["uint8", "float32", "float64", "int16", "int64", "bool"]


@hypothesis.settings(max_examples=60, deadline=None, suppress_health_check=list(hypothesis.HealthCheck))
@hypothesis.given(
    height=st.integers(1, 300), width=st.integers(1, 300), kind=st.sampled_from(["pil", "hwc", "chw", "2d"]),
    mode=st.sampled_from(PIL_MODES), dtype=st.sampled_from(ARRAY_DTYPES), scale=st.sampled_from([1.0, 255.0, 1000.0]),
    seed=st.integers(0, 2**32 - 1), do_resize=st.booleans(),
)
def test_fuzz_output_or_documented_error(hf, height, width, kind, mode, dtype, scale, seed, do_resize):
    """Any size, mode, layout and dtype: a finite (1, 3, 224, 224) batch or a ValueError / TypeError naming the
    image; and wherever transformers gives a result too, the same numbers."""
    rng = _rng(seed)
    if kind == "pil":
        rgb = Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))
        image = rgb.convert(mode) if mode not in ("I;16", "I", "F") else rgb.convert("L").convert(mode)
    else:
        shape = {"hwc": (height, width, 3), "chw": (3, height, width), "2d": (height, width)}[kind]
        values = rng.random(shape) * scale
        image = values.round().astype(dtype) if dtype != "bool" else values > scale / 2
        if dtype.startswith("float"):
            image = values.astype(dtype)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            out = CLIPImageProcessor()(image, return_tensors="np", do_resize=do_resize)["pixel_values"]
        except (ValueError, TypeError) as err:
            out = err
            assert "image 0" in str(err), str(err)  # names the culprit
        try:
            expected = _theirs(hf, image, return_tensors="np", do_resize=do_resize)
        except Exception:  # transformers rejects more inputs (2-D and 1- or 4-channel arrays) than we do
            expected = None
    # transformers infers the channel axis of a PIL image's pixels too: a 1- or 3-row image unresized reads as
    # channels-first there (its "ambiguous" warning); a PIL image is always (height, width, channels) here.
    misread = kind == "pil" and not do_resize and height in (1, 3)
    if expected is not None and expected.shape == (1, 3, 224, 224) and not misread:
        assert not isinstance(out, Exception), f"transformers accepts what we reject: {out}"
        np.testing.assert_allclose(out, expected, rtol=0, atol=1e-5)
    if not isinstance(out, Exception):
        assert out.shape == (1, 3, 224, 224) and out.dtype == np.float32
        assert np.isfinite(out).all()


# --------------------------------------------------------------------------------------------------------------------
# Settings, config files, the deprecated alias
# --------------------------------------------------------------------------------------------------------------------


def test_defaults_and_argument_forms():
    processor = CLIPImageProcessor()
    assert processor.size == {"shortest_edge": 224}
    assert processor.crop_size == {"height": 224, "width": 224}
    assert processor.resample == Image.BICUBIC == 3
    assert processor.rescale_factor == 1 / 255
    assert processor.image_mean == [0.48145466, 0.4578275, 0.40821073]
    assert processor.image_std == [0.26862954, 0.26130258, 0.27577711]
    assert processor.model_input_names == ["pixel_values"]
    other = CLIPImageProcessor(size=300, crop_size=256, resample=3)
    assert other.size == {"shortest_edge": 300} and other.crop_size == {"height": 256, "width": 256}
    assert other.resample is Image.Resampling.BICUBIC
    assert CLIPImageProcessor(crop_size=(100, 120)).crop_size == {"height": 100, "width": 120}


def test_config_json_is_what_transformers_writes(hf, tmp_path):
    hf().save_pretrained(tmp_path / "hf")
    CLIPImageProcessor().save_pretrained(tmp_path / "ours")
    theirs = json.loads((tmp_path / "hf" / "preprocessor_config.json").read_text())
    ours = json.loads((tmp_path / "ours" / "preprocessor_config.json").read_text())
    assert ours == theirs
    assert CLIPImageProcessor().to_json_string() == hf().to_json_string()
    assert sorted(os.listdir(tmp_path / "ours")) == ["preprocessor_config.json"]  # no temporary file left


def test_config_round_trip_both_ways(hf, tmp_path):
    settings = dict(size=160, crop_size={"height": 128, "width": 96}, resample=Image.BILINEAR, do_rescale=True,
                    rescale_factor=1 / 128, image_mean=[0.5, 0.4, 0.3], image_std=[0.2, 0.3, 0.4], do_normalize=True)
    image = _photo(140, 90, seed=24)
    CLIPImageProcessor(**settings).save_pretrained(tmp_path / "ours")
    loaded_by_hf = hf.from_pretrained(tmp_path / "ours")
    hf(**settings).save_pretrained(tmp_path / "hf")
    loaded_by_us = CLIPImageProcessor.from_pretrained(tmp_path / "hf")
    expected = _theirs(hf, image, settings, return_tensors="np")
    np.testing.assert_array_equal(np.stack(loaded_by_hf(images=image)["pixel_values"]), expected)
    np.testing.assert_allclose(loaded_by_us(image, return_tensors="np")["pixel_values"], expected, atol=1e-5, rtol=0)
    for key, value in settings.items():
        assert getattr(loaded_by_us, key) == getattr(hf(**settings), key), key


def test_legacy_and_extra_keys(tmp_path):
    legacy = {"crop_size": 224, "do_center_crop": True, "do_normalize": True, "do_resize": True,
              "feature_extractor_type": "CLIPFeatureExtractor", "image_mean": [0.5, 0.5, 0.5],
              "image_std": [0.5, 0.5, 0.5], "resample": 3, "size": 224, "processor_class": "CLIPProcessor",
              "custom_key": [1, 2]}
    (tmp_path / "preprocessor_config.json").write_text(json.dumps(legacy))
    processor = CLIPImageProcessor.from_pretrained(tmp_path, do_normalize=False)
    assert processor.size == {"shortest_edge": 224} and processor.crop_size == {"height": 224, "width": 224}
    assert processor.do_normalize is False and processor.custom_key == [1, 2]
    saved = json.loads(processor.to_json_string())
    assert saved["processor_class"] == "CLIPProcessor" and saved["custom_key"] == [1, 2]
    assert saved["image_processor_type"] == "CLIPImageProcessor" and "feature_extractor_type" not in saved
    again = CLIPImageProcessor.from_dict(processor.to_dict())
    assert again.to_dict() == processor.to_dict()
    assert CLIPImageProcessor.from_pretrained(tmp_path / "preprocessor_config.json").custom_key == [1, 2]


def test_from_pretrained_errors(tmp_path):
    with pytest.raises(OSError, match="preprocessor_config.json"):
        CLIPImageProcessor.from_pretrained(tmp_path)  # a directory without the file
    with pytest.raises(OSError, match="not a directory"):
        CLIPImageProcessor.from_pretrained(str(tmp_path / "missing" / "deeper" / "dir"))
    # A Hub repo id, offline (set before huggingface_hub is imported, hence the subprocess): a clear OSError, fast.
    code = ("from clip_core.image_processing import CLIPImageProcessor\n"
            "try:\n    CLIPImageProcessor.from_pretrained('triclip-tests/no-such-repo', cache_dir=%r)\n"
            "except OSError as err:\n    print('OSError:', err)\n" % str(tmp_path / "cache"))
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert "OSError:" in result.stdout and "triclip-tests/no-such-repo" in result.stdout, result.stdout + result.stderr
    (tmp_path / "preprocessor_config.json").write_text("{not json")
    with pytest.raises(OSError, match="not valid JSON"):
        CLIPImageProcessor.from_pretrained(tmp_path)


def test_feature_extractor_alias_warns():
    with pytest.warns(FutureWarning, match="CLIPFeatureExtractor is deprecated"):
        extractor = CLIPFeatureExtractor(size=100)
    assert isinstance(extractor, CLIPImageProcessor) and extractor.size == {"shortest_edge": 100}
    assert "CLIPFeatureExtractor" in repr(extractor)
