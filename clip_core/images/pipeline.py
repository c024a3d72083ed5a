"""One ``preprocess`` call's plan: its settings, the uint8 -> float32 tables they imply, the work on one image.

:class:`Plan` resizes (:mod:`clip_core.images.resize`) and centre crops one image and maps the kept uint8 pixels
through a 256-entry table per channel (transformers' rescale and normalise, computed once with its own float64 /
float32 steps) straight into the output; non-uint8 arrays that are not resized take transformers' float steps.
"""

from __future__ import annotations

import threading

import numpy as np

from .convert import Source, array_to_uint8
from .geometry import crop_geometry, resize_output_size
from .options import per_channel
from .resize import resize_window


class Plan:
    """The settings of one ``preprocess`` call, with the uint8 -> float32 lookup tables they imply."""

    def __init__(self, do_resize, size, resample, do_center_crop, crop_size, do_rescale, rescale_factor,
                 do_normalize, image_mean, image_std, do_convert_rgb, channels_last):
        self.do_resize = do_resize
        self.size = size
        self.resample = resample
        self.crop = (crop_size["height"], crop_size["width"]) if do_center_crop else None
        self.do_rescale = do_rescale
        self.rescale_factor = rescale_factor
        self.do_normalize = do_normalize
        self.image_mean = image_mean
        self.image_std = image_std
        self.do_convert_rgb = do_convert_rgb
        self.channels_last = channels_last
        self._luts: dict[tuple[int, bool], np.ndarray] = {}
        self._lock = threading.Lock()

    def output_hw(self, source: Source) -> tuple[int, int]:
        if self.crop is not None:
            return self.crop
        if self.do_resize:
            return resize_output_size(source.height, source.width, self.size)
        return source.height, source.width

    def output_channels(self, source: Source) -> int:
        return 3 if self.do_convert_rgb and source.channels != 4 else source.channels

    def drops_alpha(self) -> bool:
        """Whether a 4-channel array loses its fourth channel: with ``do_convert_rgb`` only when normalising needs
        3 channels (transformers keeps arrays' channels, and then fails on a 3-value mean / std)."""
        if not self.do_convert_rgb:
            return False
        try:
            self.check_channels(4)
        except ValueError:
            return True
        return False

    def float_steps(self, image: np.ndarray, channels: int) -> np.ndarray:
        """transformers' rescale then normalise, step by step (float64 product, float32 result; HWC layout)."""
        if self.do_rescale:
            image = (image.astype(np.float64) * self.rescale_factor).astype(np.float32)
        if self.do_normalize:
            if not np.issubdtype(image.dtype, np.floating):
                image = image.astype(np.float32)
            mean = np.array(per_channel(self.image_mean, channels, "image_mean"), dtype=image.dtype)
            std = np.array(per_channel(self.image_std, channels, "image_std"), dtype=image.dtype)
            image = (image - mean) / std
        return image.astype(np.float32, copy=False)

    def lut(self, channels: int, pil_rescaled: bool) -> np.ndarray:
        """(channels, 256) float32: what transformers' steps make of each uint8 value, per channel."""
        key = (channels, pil_rescaled)
        with self._lock:
            table = self._luts.get(key)
            if table is None:
                values = np.repeat(np.arange(256, dtype=np.uint8)[:, None], channels, axis=1)  # (256, C), HWC-like
                if pil_rescaled:  # transformers' resize brings a [0, 1] image back with rescale(x, 1/255)
                    values = (values.astype(np.float64) * (1 / 255)).astype(np.float32)
                table = np.ascontiguousarray(self.float_steps(values, channels).T)
                self._luts[key] = table
        return table

    def check_channels(self, channels: int) -> None:
        if self.do_normalize:
            per_channel(self.image_mean, channels, "image_mean")
            per_channel(self.image_std, channels, "image_std")

    def run(self, source: Source, index: int, out: np.ndarray) -> None:
        """Process one image into ``out`` ((C, H, W), or (H, W, C) when channels_last)."""
        try:
            self._run(source, index, out)
        except Exception as err:
            err.add_note(f"while preprocessing image {index}")
            raise

    def _run(self, source: Source, index: int, out: np.ndarray) -> None:
        pil_rescaled = False
        if self.do_resize:
            if source.pil is not None:
                image = source.pil.convert(source.convert) if source.convert else source.pil
            else:
                image, pil_rescaled = array_to_uint8(source.array, index)
            out_h, out_w = resize_output_size(source.height, source.width, self.size)
            rows, cols, (dy, dx) = crop_geometry(out_h, out_w, self.crop)
            window = resize_window(image, out_h, out_w, self.resample, rows, cols)
        else:
            if source.pil is not None:
                image = source.pil.convert(source.convert) if source.convert else source.pil
                pixels = np.asarray(image)
            else:
                pixels = source.array
            rows, cols, (dy, dx) = crop_geometry(source.height, source.width, self.crop)
            window = pixels[rows[0]:rows[1], cols[0]:cols[1]]
        channels = out.shape[-1] if self.channels_last else out.shape[0]
        gray = window.ndim == 2
        win_h, win_w = window.shape[:2]
        full = (win_h, win_w) == (out.shape[:2] if self.channels_last else out.shape[1:])
        view = (lambda c: out[dy:dy + win_h, dx:dx + win_w, c]) if self.channels_last else \
            (lambda c: out[c, dy:dy + win_h, dx:dx + win_w])
        if window.dtype == np.uint8:
            table = self.lut(channels, pil_rescaled)
            for c in range(channels):
                lut = table[c]
                if not full:  # the zero padding of centre_crop, after rescale and normalise
                    (out[..., c] if self.channels_last else out[c]).fill(lut[0])
                np.take(lut, window if gray else window[:, :, c], out=view(c), mode="clip")
            return
        # A non-uint8 array that is not resized: transformers' float steps on the cropped pixels.
        if not full:
            padded = np.zeros(self.output_hw(source) + window.shape[2:], dtype=window.dtype)
            padded[dy:dy + win_h, dx:dx + win_w] = window
            window, dy, dx, win_h, win_w = padded, 0, 0, padded.shape[0], padded.shape[1]
        if gray:
            window = np.repeat(window[:, :, None], channels, axis=2)
        values = self.float_steps(window, channels)
        for c in range(channels):
            view(c)[...] = values[:, :, c]
