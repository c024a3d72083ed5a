"""Deployment artifacts, framework-free: which backend writes which format, the ``export.json`` manifest, the
reference outputs an artifact is checked against, and the all-or-nothing output folder.

An export folder holds, per format (see :data:`FORMATS`)::

    onnx        text.onnx, vision.onnx, model.onnx          (PyTorch -> torch.export -> ONNX)
    savedmodel  savedmodel/  signatures text_features, image_features, serving_default   (TensorFlow)
    litert      text.tflite, vision.tflite                   (TensorFlow -> LiteRT)
    stablehlo   text.stablehlo, vision.stablehlo, model.stablehlo   (serialized ``jax.export`` artifacts, Flax)

plus ``export.json`` (every artifact's inputs, outputs, dtypes and dynamic axes) and ``reference.npz`` (inputs at
two batch sizes and two text lengths, and the float32 source model's outputs on them), which
:mod:`conformance.artifacts` compares every artifact with. Every artifact takes a dynamic batch and, for text, a
dynamic length of 1 to ``max_position_embeddings`` tokens.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterable, Iterator, Mapping, Sequence

import numpy as np

#: format -> the backend that writes it
FORMATS = {"onnx": "pt", "savedmodel": "tf", "litert": "tf", "stablehlo": "flax"}
#: artifact dtypes (the parameters' and computation's; inputs and outputs keep their documented dtypes)
DTYPES = ("float32", "float16", "bfloat16")
#: dtypes each format can hold and run on its CPU runtime: ONNX Runtime's CPU provider and LiteRT have no bfloat16
#: kernels (a bfloat16 ONNX graph fails to load: no Add(14) implementation); LiteRT float16 stores float16 weights
#: and computes in float32
FORMAT_DTYPES = {"onnx": ("float32", "float16"), "savedmodel": DTYPES, "litert": ("float32", "float16"),
                 "stablehlo": DTYPES}
_NO_DTYPE = {"onnx": "ONNX Runtime's CPU provider has no bfloat16 kernels", "litert": "LiteRT has no bfloat16 kernels"}
MANIFEST, REFERENCE = "export.json", "reference.npz"
#: the preprocessing files an export copies from its source folder (those it has), so the folder runs jobs alone
PROCESSOR_FILES = ("preprocessor_config.json", "processor_config.json", "tokenizer.json", "tokenizer_config.json",
                   "vocab.json", "merges.txt", "special_tokens_map.json", "added_tokens.json", "chat_template.jinja")
SCHEMA_VERSION = 1
#: the three functions an export holds; "forward" only where the format holds several inputs' worth
FUNCTIONS = ("text_features", "image_features", "forward")
FORWARD_OUTPUTS = ("logits_per_image", "logits_per_text", "text_embeds", "image_embeds")

#: DESIGN.md's tolerances. float32: normalised embeddings / features within 1e-5, logits within 1e-4.
#: float16 / bfloat16 artifacts against the float32 source: normalised features within 2e-2 and cosine > 0.999;
#: logits are compared divided by exp(logit_scale) (i.e. as cosines), within 2e-2.
TOLERANCES = {"float32": {"unit": 1e-5, "logits": 1e-4, "cosine": None},
              "float16": {"unit": 2e-2, "logits": 2e-2, "cosine": 0.999},
              "bfloat16": {"unit": 2e-2, "logits": 2e-2, "cosine": 0.999}}


def check_formats(to: str | Sequence[str], backend: str | None = None) -> list[str]:
    """The formats named by ``to`` (a name, ``"all"``, a comma-separated string or a list), in :data:`FORMATS`
    order; with ``backend`` only that backend's (``"all"`` then means all of its formats)."""
    names = [t.strip() for t in (to.split(",") if isinstance(to, str) else to) if t.strip()]
    own = [f for f, b in FORMATS.items() if backend is None or b == backend]
    if not names:
        raise ValueError(f"no export format given: choose from {', '.join(own)} or all")
    if "all" in names:
        return own
    for name in names:
        if name not in FORMATS:
            raise ValueError(f"unknown export format {name!r}: choose from {', '.join(FORMATS)} or all")
        if name not in own:
            raise ValueError(f"format {name!r} is written by the {FORMATS[name]} backend, not {backend} "
                             f"(this backend writes {', '.join(own)})")
    return [f for f in own if f in names]


def check_dtype(dtype, formats: Iterable[str] = ()) -> str:
    """The dtype name (``None`` -> float32; ``fp16``/``bf16`` and framework dtypes accepted) after checking that
    every format in ``formats`` can hold it."""
    name = "float32" if dtype is None else str(getattr(dtype, "name", dtype)).replace("torch.", "")
    name = {"fp32": "float32", "fp16": "float16", "bf16": "bfloat16", "half": "float16"}.get(name, name)
    if name not in DTYPES:
        raise ValueError(f"export dtype must be one of {', '.join(DTYPES)}, got {dtype!r}")
    for fmt in formats:
        if name not in FORMAT_DTYPES[fmt]:
            raise ValueError(f"{fmt} artifacts cannot be {name} ({_NO_DTYPE.get(fmt, 'unsupported')}); choose "
                             f"{' or '.join(FORMAT_DTYPES[fmt])}")
    return name


def _towers(config) -> tuple:
    """``(text_config, vision_config)`` of a CLIPConfig."""
    return config.text_config, config.vision_config


# ---------------------------------------------------------------------------------------------- artifact records
def tensor_spec(name: str, dtype: str, shape: Sequence) -> dict:
    """One input or output: ``shape`` holds ints and axis names (``"batch"``, ``"length"``), the dynamic axes."""
    return {"name": name, "dtype": dtype, "shape": list(shape),
            "dynamic_axes": {str(i): d for i, d in enumerate(shape) if isinstance(d, str)}}


def function_specs(config, int_dtype: str, which: Sequence[str] = FUNCTIONS) -> dict[str, dict]:
    """The inputs and outputs of each exported function: text ids/mask of ``int_dtype`` ``[batch, length]``, NCHW
    float32 pixels ``[image_batch, C, H, W]``, float32 outputs."""
    text, vision = _towers(config)
    ids = [tensor_spec("input_ids", int_dtype, ("batch", "length")),
           tensor_spec("attention_mask", int_dtype, ("batch", "length"))]
    pixels = [tensor_spec("pixel_values", "float32",
                          ("image_batch", vision.num_channels, vision.image_size, vision.image_size))]
    dim = config.projection_dim
    specs = {
        "text_features": {"inputs": ids, "outputs": [tensor_spec("text_features", "float32", ("batch", dim))]},
        "image_features": {"inputs": pixels,
                           "outputs": [tensor_spec("image_features", "float32", ("image_batch", dim))]},
        "forward": {"inputs": ids + pixels, "outputs": [
            tensor_spec("logits_per_image", "float32", ("image_batch", "batch")),
            tensor_spec("logits_per_text", "float32", ("batch", "image_batch")),
            tensor_spec("text_embeds", "float32", ("batch", dim)),
            tensor_spec("image_embeds", "float32", ("image_batch", dim))]},
    }
    return {k: specs[k] for k in which}


def artifact_record(fmt: str, path: str, function: str, spec: dict, dtype: str, config, **extra) -> dict:
    """The manifest entry of one artifact (one function in one file, or one signature of a SavedModel)."""
    return {"format": fmt, "path": path, "function": function, "dtype": dtype,
            "max_length": config.text_config.max_position_embeddings, **spec, **extra}


# ---------------------------------------------------------------------------------------------- reference data
def reference_inputs(config, seed: int = 0) -> list[dict[str, np.ndarray]]:
    """Inputs at two batch sizes and two text lengths (the shortest case 5 tokens or fewer, the longest
    ``max_position_embeddings``), with padding in some rows; ids int64, pixels float32 NCHW."""
    text, vision = _towers(config)
    rng = np.random.default_rng(seed)
    longest = text.max_position_embeddings
    cases = []
    legacy = text.eos_token_id == 2  # pooled at argmax(input_ids): the end token must be the largest id
    eos = text.vocab_size - 1 if legacy else text.eos_token_id
    pad = 1 if eos == 0 else 0
    for batch, image_batch, length in ((1, 2, min(5, longest)), (3, 1, longest)):
        ids = rng.integers(0, text.vocab_size - 1 if legacy else text.vocab_size, (batch, length))
        ids = np.where(ids == eos, (eos + 1) % text.vocab_size, ids)
        if 0 <= text.bos_token_id < text.vocab_size and text.bos_token_id != eos:
            ids[:, 0] = text.bos_token_id
        mask = np.ones((batch, length), np.int64)
        for row in range(batch):  # rows of different lengths, padded after their end token
            end = length - 1 - row * (length // 3)
            ids[row, end], ids[row, end + 1:], mask[row, end + 1:] = eos, pad, 0
        pixels = rng.standard_normal((image_batch, vision.num_channels, vision.image_size, vision.image_size))
        cases.append({"input_ids": ids.astype(np.int64), "attention_mask": mask,
                      "pixel_values": pixels.astype(np.float32)})
    return cases


def write_reference(folder: Path, cases: Sequence[Mapping[str, np.ndarray]],
                    outputs: Sequence[Mapping[str, np.ndarray]]) -> None:
    """Save the reference inputs and the source model's float32 outputs (``case{i}/{name}``); each outputs dict
    also holds the model's ``logit_scale`` (before ``exp``)."""
    arrays = {}
    for i, (case, out) in enumerate(zip(cases, outputs)):
        for name, value in {**case, **out}.items():
            arrays[f"case{i}/{name}"] = np.asarray(value)
    with open(Path(folder) / REFERENCE, "wb") as handle:
        np.savez(handle, **arrays)


def read_reference(folder: str | os.PathLike) -> tuple[list[dict[str, np.ndarray]], float]:
    """The cases of ``reference.npz`` (each a dict of inputs and expected outputs) and the logit scale."""
    path = Path(folder) / REFERENCE
    if not path.is_file():
        raise FileNotFoundError(f"{REFERENCE} not found in {folder}: not an export folder written by triclip export")
    cases: dict[int, dict] = {}
    with np.load(path, allow_pickle=False) as data:
        for key in data.files:
            case, name = key.split("/", 1)
            cases.setdefault(int(case.removeprefix("case")), {})[name] = data[key]
    cases = [cases[i] for i in sorted(cases)]
    return cases, float(cases[0]["logit_scale"])


def export_model(module, model, out: str | os.PathLike, to, dtype=None, overwrite: bool = False,
                 source: str | None = None) -> dict:
    """What each backend's ``export()`` does, through that backend's ``module`` (its ``export.py``): check the
    formats and dtype, then write the reference outputs, the artifacts and ``export.json`` into one staged folder
    that appears as ``out`` only when everything is written. Returns the manifest."""
    formats = check_formats(to, module.BACKEND)
    dtype = check_dtype(dtype, formats)
    module._check_model(model)
    with staged_folder(out, overwrite) as folder:
        cases = reference_inputs(model.config)
        write_reference(folder, cases, module.reference_outputs(model, cases))
        records = module.write_artifacts(model, folder, formats, dtype)
        manifest = write_manifest(folder, records, model.config, dtype, source)
    return manifest


def export_checkpoint(checkpoint: str | os.PathLike, out: str | os.PathLike, to="all", dtype=None,
                      overwrite: bool = False) -> dict:
    """Export a checkpoint (any format) to ``out`` in the formats ``to``: each format's backend loads it (in
    float32) and writes its artifacts into one staged folder, which appears only when all are written. The
    reference outputs come from the first backend loaded. Returns the manifest."""
    import importlib

    formats = check_formats(to)
    dtype = check_dtype(dtype, formats)
    classes = {"pt": "CLIPModel", "tf": "TFCLIPModel", "flax": "FlaxCLIPModel"}
    with staged_folder(out, overwrite) as folder:
        records, config = [], None
        for backend, cls_name in classes.items():
            own = [f for f in formats if FORMATS[f] == backend]
            if not own:
                continue
            try:
                package = importlib.import_module(f"clip_{backend}")
                module = importlib.import_module(f"clip_{backend}.export")
            except ImportError as err:
                raise ImportError(f"exporting {', '.join(own)} needs the {backend} backend: {err}") from None
            model = getattr(package, cls_name).from_pretrained(checkpoint)
            if config is None:
                config = model.config
                cases = reference_inputs(config)
                write_reference(folder, cases, module.reference_outputs(model, cases))
            records += module.write_artifacts(model, folder, own, dtype)
            del model
        manifest = write_manifest(folder, records, config, dtype, source=os.fspath(checkpoint))
        copy_processor_files(checkpoint, folder)
    return manifest


def copy_processor_files(source: str | os.PathLike, folder: str | os.PathLike) -> list[str]:
    """Copy the tokenizer and image-processor files (:data:`PROCESSOR_FILES`) that the ``source`` folder has into
    ``folder``; returns their names (none for a checkpoint file or a Hub id)."""
    source = Path(source)
    if not source.is_dir():
        return []
    copied = [name for name in PROCESSOR_FILES if (source / name).is_file()]
    for name in copied:
        shutil.copyfile(source / name, Path(folder) / name)
    return copied


# ---------------------------------------------------------------------------------------------- manifest
def write_manifest(folder: Path, artifacts: Sequence[dict], config, dtype: str, source: str | None = None) -> dict:
    """Write ``export.json``: the schema version, dtype, source, the model's config and every artifact."""
    manifest = {"schema_version": SCHEMA_VERSION, "producer": "triclip export", "dtype": dtype,
                "source": source, "reference": REFERENCE, "config": config.to_dict(),
                "artifacts": list(artifacts)}
    (Path(folder) / MANIFEST).write_text(json.dumps(manifest, indent=2, default=str) + "\n")
    return manifest


def read_manifest(folder: str | os.PathLike) -> dict:
    """``export.json`` of an export folder, checked for the fields conformance needs."""
    path = Path(folder) / MANIFEST
    if not Path(folder).is_dir():
        raise FileNotFoundError(f"export folder {folder} does not exist")
    if not path.is_file():
        raise FileNotFoundError(f"{MANIFEST} not found in {folder}: not an export folder written by triclip export")
    try:
        manifest = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{path} is not valid JSON: {err}") from None
    missing = [k for k in ("schema_version", "dtype", "config", "artifacts") if k not in manifest]
    if missing:
        raise ValueError(f"{path} lacks {', '.join(missing)}")
    if manifest["schema_version"] != SCHEMA_VERSION:
        raise ValueError(f"{path} has schema_version {manifest['schema_version']}, this triclip reads "
                         f"{SCHEMA_VERSION}")
    for artifact in manifest["artifacts"]:
        if artifact.get("format") not in FORMATS or not (Path(folder) / artifact.get("path", "")).exists():
            raise ValueError(f"{path} names an artifact that is not there or of an unknown format: {artifact}")
    return manifest


# ---------------------------------------------------------------------------------------------- output folder
@contextlib.contextmanager
def staged_folder(out: str | os.PathLike, overwrite: bool = False) -> Iterator[Path]:
    """Yield an empty temporary sibling of ``out``; when the block succeeds it becomes ``out`` (by rename).

    A failure leaves nothing behind (and an existing ``out`` untouched). An existing ``out`` is refused unless
    ``overwrite``, in which case it is replaced as a whole once the new folder is complete.
    """
    out = Path(out)
    if out.exists() and not overwrite:
        raise FileExistsError(f"export folder {out} already exists (pass --overwrite / overwrite=True to replace it)")
    if out.exists() and not out.is_dir():
        raise NotADirectoryError(f"export destination {out} exists and is not a directory")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
    old = None
    try:
        yield tmp
        if out.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".old", dir=out.parent))
            os.replace(out, old / out.name)
        os.replace(tmp, out)
    except BaseException:
        if old is not None and not out.exists():  # put the previous folder back
            os.replace(old / out.name, out)
        raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)


__all__ = ["FORMATS", "DTYPES", "FORMAT_DTYPES", "TOLERANCES", "FUNCTIONS", "FORWARD_OUTPUTS", "MANIFEST",
           "REFERENCE", "PROCESSOR_FILES", "check_formats", "check_dtype", "tensor_spec", "function_specs",
           "artifact_record", "reference_inputs", "write_reference", "read_reference", "export_checkpoint",
           "write_manifest", "read_manifest", "staged_folder", "copy_processor_files"]
