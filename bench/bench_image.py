"""Images per second of triclip's ``CLIPImageProcessor`` against transformers' on ~50 photo-sized PIL images.

Run as ``python -m bench.bench_image [--repeats N]``. Both processors run in the same process, alternately, after a
warm-up; the median over repeats is reported, with the speed ratio and the largest difference between the outputs.
``run(repeats)`` returns the rows for a harness to reuse.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path

import numpy as np
from PIL import Image

# Photo sizes (width, height) of the datasets CLIP is run on: ImageNet (about 500x375), COCO (640x480), the fixture
# photos' own sizes, landscape and portrait, plus a few larger ones.
PHOTO_SIZES = [(500, 375), (375, 500), (640, 480), (480, 640), (451, 300), (512, 600), (500, 333), (640, 427),
               (800, 600), (1024, 768)]


def _shared_dir() -> Path:
    return Path(os.environ.get("TRICLIP_SHARED", Path(__file__).resolve().parents[1].parent / "shared"))


def photos(count: int = 50, seed: int = 0) -> list[Image.Image]:
    """``count`` loaded RGB PIL images of photo sizes: the fixture photos resized and cropped, or smooth noise."""
    folder = _shared_dir() / "fixtures" / "images-hf" / "images"
    bases = [Image.open(folder / name).convert("RGB") for name in ("chelsea.png", "grace_hopper.jpg", "cmyk.jpg")
             if (folder / name).is_file()]
    rng = np.random.default_rng(seed)
    if not bases:  # no fixtures: smooth random images, which PIL resizes at the same cost
        bases = [Image.fromarray(rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)).resize((640, 480))]
    images = []
    for i in range(count):
        base = bases[i % len(bases)]
        width, height = PHOTO_SIZES[i % len(PHOTO_SIZES)]
        left, top = rng.integers(0, base.width // 8 + 1), rng.integers(0, base.height // 8 + 1)
        images.append(base.crop((left, top, base.width, base.height)).resize((width, height), Image.BILINEAR))
    return images


def _time(fn, images) -> float:
    start = time.perf_counter()
    fn(images)
    return time.perf_counter() - start


def run(repeats: int = 5, count: int = 50) -> list[dict]:
    """Time both processors; one dict per processor (name, images, median_s, images_per_s) plus one for the ratio."""
    import clip_core.image_processing as image_processing

    images = photos(count)
    ours = image_processing.CLIPImageProcessor()

    def one_thread(xs):
        threads, image_processing.NUM_THREADS = image_processing.NUM_THREADS, 1
        try:
            return ours(xs, return_tensors="np")["pixel_values"]
        finally:
            image_processing.NUM_THREADS = threads

    candidates = {"triclip": lambda xs: ours(xs, return_tensors="np")["pixel_values"], "triclip-1-thread": one_thread}
    try:
        import transformers

        theirs = transformers.CLIPImageProcessor()
        candidates["transformers"] = lambda xs: theirs(images=xs, return_tensors="np")["pixel_values"]
    except ImportError:
        theirs = None
    outputs = {name: fn(images) for name, fn in candidates.items()}  # warm-up, and the outputs to compare
    times: dict[str, list[float]] = {name: [] for name in candidates}
    for _ in range(repeats):
        for name, fn in candidates.items():
            times[name].append(_time(fn, images))
    rows = []
    for name in candidates:
        median = statistics.median(times[name])
        rows.append({"name": name, "images": len(images), "median_s": median, "images_per_s": len(images) / median})
    if theirs is not None:
        median = {row["name"]: row["median_s"] for row in rows}
        diff = float(np.abs(outputs["triclip"] - outputs["transformers"]).max())
        rows.append({"name": "ratio", "speedup": median["transformers"] / median["triclip"],
                     "speedup_1_thread": median["transformers"] / median["triclip-1-thread"], "max_abs_diff": diff,
                     "identical": bool(np.array_equal(outputs["triclip"], outputs["transformers"])
                                       and np.array_equal(outputs["triclip-1-thread"], outputs["transformers"])),
                     "threads": image_processing.NUM_THREADS, "cpus": os.cpu_count(),
                     "compiled_kernel": image_processing._kernel_matches_pillow()})
    return rows


def main(argv: list[str] | None = None) -> None:
    """Print images/second of both processors, the speed-up and whether the outputs are identical."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--count", type=int, default=50)
    args = parser.parse_args(argv)
    for row in run(args.repeats, args.count):
        if row["name"] == "ratio":
            print(f"speed-up: {row['speedup']:.2f}x with {row['threads']} threads on {row['cpus']} CPUs, "
                  f"{row['speedup_1_thread']:.2f}x with 1 thread; outputs identical: {row['identical']} "
                  f"(max abs diff {row['max_abs_diff']:.2e}); compiled resize kernel: {row['compiled_kernel']}")
        else:
            print(f"{row['name']:>16}: {row['images_per_s']:7.1f} images/s  (median {row['median_s'] * 1e3:.1f} ms "
                  f"for {row['images']} images)")


if __name__ == "__main__":
    main()
