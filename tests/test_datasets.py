"""clip_core.tasks.datasets / synthetic: reading every row format, clear errors, deterministic batching and data."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import tarfile

import numpy as np
import pytest
from PIL import Image

from clip_core.tasks.datasets import Pair, epoch_batches, load_image, make_batch, read_pairs
from clip_core.tasks.synthetic import HELDOUT, SHAPES, class_captions, make_shapes_dataset


def _png(path, colour):
    Image.new("RGB", (6, 4), colour).save(path)


@pytest.fixture
def images(tmp_path):
    (tmp_path / "img").mkdir()
    _png(tmp_path / "img" / "a.png", (255, 0, 0))
    _png(tmp_path / "img" / "b.png", (0, 0, 255))
    return tmp_path


def test_csv_jsonl_parquet_give_the_same_pairs(images):
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = [("img/a.png", "a red thing"), ("img/b.png", "a blue, \"quoted\" thing")]
    with open(images / "d.csv", "w", newline="") as f:
        csv.writer(f).writerows([("filepath", "title"), *rows])
    (images / "d.jsonl").write_text("".join(json.dumps({"image": i, "caption": c, "x": 1}) + "\n" for i, c in rows))
    pq.write_table(pa.table({"file_name": [r[0] for r in rows], "text": [r[1] for r in rows]}), images / "d.parquet")
    expected = [Pair(str((images / i).resolve()), c) for i, c in rows]
    for name in ("d.csv", "d.jsonl", "d.parquet"):
        assert read_pairs(images / name) == expected, name
    assert load_image(expected[1]).getpixel((0, 0)) == (0, 0, 255)


def test_webdataset_shards(tmp_path):
    def add(tar, name, data):
        info = tarfile.TarInfo(name)
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))

    for shard, keys in (("s-000.tar", ("k0", "k1")), ("s-001.tar", ("k2",))):
        with tarfile.open(tmp_path / shard, "w") as tar:
            for i, key in enumerate(keys):
                buf = io.BytesIO()
                Image.new("L", (3, 3), 40 * i).save(buf, format="PNG")
                add(tar, f"{key}.png", buf.getvalue())
                add(tar, f"{key}.txt", f"caption {key}\n".encode())
    pairs = read_pairs(tmp_path)
    assert [p.caption for p in pairs] == ["caption k0", "caption k1", "caption k2"]
    assert pairs[2].image.endswith("s-001.tar::k2.png")
    image = load_image(pairs[1])
    assert image.mode == "RGB" and image.getpixel((1, 1)) == (40, 40, 40)


def test_errors_name_the_file_and_row(images):
    (images / "cols.csv").write_text("picture,caption\nimg/a.png,x\n")
    with pytest.raises(ValueError, match=r"cols.csv: no image column.*'picture'"):
        read_pairs(images / "cols.csv")
    (images / "missing.csv").write_text("image,caption\nimg/a.png,x\nimg/nope.png,y\n")
    with pytest.raises(FileNotFoundError, match=r"missing.csv row 3: image file not found: .*nope.png"):
        read_pairs(images / "missing.csv")
    (images / "bad.jsonl").write_text('{"image": "img/a.png", "caption": "x"}\n{"image": "img/a.png"\n')
    with pytest.raises(ValueError, match=r"bad.jsonl row 2: not valid JSON"):
        read_pairs(images / "bad.jsonl")
    (images / "short.csv").write_text("image,caption\nimg/a.png\n")
    with pytest.raises(ValueError, match=r"short.csv row 2"):
        read_pairs(images / "short.csv")
    (images / "d.txt").write_text("x")
    with pytest.raises(ValueError, match="unknown dataset type"):
        read_pairs(images / "d.txt")
    with pytest.raises(FileNotFoundError, match="dataset not found"):
        read_pairs(images / "none.csv")
    (images / "broken.png").write_bytes(b"not a png")
    with pytest.raises(OSError, match="broken.png"):
        load_image(str(images / "broken.png"))


def test_epoch_batches_are_seeded_permutations():
    batches = epoch_batches(10, 3, seed=7, epoch=2)
    assert len(batches) == 3 and all(len(b) == 3 for b in batches)
    flat = np.concatenate(batches)
    assert len(set(flat.tolist())) == 9  # drop_last: one row left out
    assert np.array_equal(flat, np.random.default_rng([7, 2]).permutation(10)[:9])
    assert all(np.array_equal(a, b) for a, b in zip(batches, epoch_batches(10, 3, seed=7, epoch=2)))
    assert not np.array_equal(flat, np.concatenate(epoch_batches(10, 3, seed=7, epoch=3)))
    assert sum(map(len, epoch_batches(10, 3, 7, 2, drop_last=False))) == 10
    with pytest.raises(ValueError):
        epoch_batches(10, 0, 0, 0)
    with pytest.raises(TypeError):
        epoch_batches(10.0, 2, 0, 0)


def _digest(root):
    h = hashlib.sha256()
    for path in sorted(root.rglob("*")):
        if path.is_file():
            h.update(path.relative_to(root).as_posix().encode() + path.read_bytes())
    return h.hexdigest()


def test_shapes_dataset_is_deterministic_and_holds_out_combinations(tmp_path):
    a = make_shapes_dataset(tmp_path / "a", n_train=36, n_heldout=12, image_size=16, seed=3)
    b = make_shapes_dataset(tmp_path / "b", n_train=36, n_heldout=12, image_size=16, seed=3)
    c = make_shapes_dataset(tmp_path / "c", n_train=36, n_heldout=12, image_size=16, seed=4)
    assert _digest(a["root"]) == _digest(b["root"]) != _digest(c["root"])
    train, held = read_pairs(a["train"]), read_pairs(a["heldout"])
    combo = lambda p: tuple(p.caption.split()[2:4])  # noqa: E731  ("a small red circle" -> (red, circle))
    assert {combo(p) for p in held} == set(HELDOUT)
    assert not {combo(p) for p in train} & set(HELDOUT)
    assert {combo(p)[1] for p in train} == set(SHAPES) and len({combo(p)[0] for p in train}) == 4
    assert {p.caption for p in train + held} <= set(class_captions())
    # the caption describes the pixels: a "red" image's shape pixels are red
    pair = next(p for p in train if " red " in p.caption)
    pixels = np.asarray(load_image(pair)).reshape(-1, 3)
    shape_pixels = pixels[(pixels != 128).any(axis=1)]
    assert len(shape_pixels) > 0 and (shape_pixels[:, 0] > 150).all() and (shape_pixels[:, 2] < 100).all()


def test_make_batch_shapes(tmp_path):
    from clip_core import CLIPImageProcessor, CLIPProcessor
    from clip_core.tokenizer import CLIPTokenizerFast
    from conftest import shared_path

    bpe = shared_path("data", "clip-bpe")
    tok = CLIPTokenizerFast(str(bpe / "vocab.json"), str(bpe / "merges.txt"))
    proc = CLIPProcessor(CLIPImageProcessor(size={"shortest_edge": 16}, crop_size=16), tok)
    paths = make_shapes_dataset(tmp_path, n_train=4, n_heldout=1, image_size=16)
    pairs = read_pairs(paths["train"])
    batch = make_batch(pairs, np.array([2, 0]), proc, max_length=8)
    assert batch["input_ids"].shape == (2, 8) and batch["pixel_values"].shape == (2, 3, 16, 16)
    assert batch["input_ids"][0, 0] == 49406 and 49407 in batch["input_ids"][0]
    assert batch["attention_mask"][0].sum() == 2 + len(tok.tokenize(pairs[2].caption))
