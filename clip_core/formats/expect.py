"""What a config implies about a checkpoint before any of its data is read (issue 20, class 4).

When the config is known before the weights are read (``config=`` given, or a ``config.json`` beside the weights),
:func:`expectation_for` derives from :func:`clip_core.weights.param_table` an :class:`Expectation`: the canonical
names the model reads, the most values one tensor may hold (the largest parameter), and a bound on the bytes the
whole read may allocate (every parameter at 8 bytes per value, plus a little for buffers such as ``position_ids``).
The readers check each tensor against it from their metadata alone (safetensors headers, the structure of a torch
pickle, HDF5 dataset metadata, msgpack array headers) *before* reading or allocating its data, and do not read the
tensors whose names the model does not have (they come back as :class:`~clip_core.formats._common.UnreadTensor`,
name and shape only, so that they can still be reported as unexpected).

OpenAI / open_clip files (whose names are not canonical; their config is inferred from their shapes) are read as
without a config: bounded by the file's size (:func:`clip_core.formats.pytorch.memory_budget`).
"""

from __future__ import annotations

import math
from typing import Iterable, Mapping

from clip_core.formats import flax_msgpack, keras_h5
from clip_core.formats._common import CorruptCheckpointError, mapped_shape

#: Bytes per parameter value the bound allows: float64, or bfloat16 widened to float32 with its stored copy.
BYTES_PER_VALUE = 8
#: Bytes beyond the parameters: buffers (``position_ids``, counted below at 8 bytes a position), small extras.
SLACK_BYTES = 64 * 2 ** 10


class Expectation:
    """The names a model reads, the largest tensor and the total bytes its config implies; counts what is spent.

    One expectation serves one load (every shard of it): the byte count is cumulative over the files.
    """

    def __init__(self, shapes: Mapping[str, tuple[int, ...]], largest: tuple[str, int], values: int, slack: int,
                 described: str, foreign: tuple[str, ...] = ()) -> None:
        self.shapes = {name: tuple(shape) for name, shape in shapes.items()}  # canonical name -> the model's shape
        self.foreign = foreign  # name prefixes of the parts a tower config cannot size (the other tower)
        self.largest_name, self.largest = largest
        self.values, self.slack = values, slack
        self.max_bytes = BYTES_PER_VALUE * values + slack
        self.described = described
        self.spent = 0

    def wants(self, name: str, shape=None) -> bool:
        """Whether the model has a parameter ``name`` (of ``shape``, canonical layout, when given): otherwise its
        tensor is not read (a mis-shaped one is reported as mismatched: an error, or newly initialised under
        ``ignore_mismatched_sizes``)."""
        if name not in self.shapes:
            return False
        return shape is None or tuple(int(d) for d in shape) == self.shapes[name]

    def check_tensor(self, path, name: str, shape, canonical: str | None = None) -> None:
        """Refuse a tensor holding more values than the largest parameter the config implies (``canonical``: its
        canonical name; the other tower's tensors, unread, are not sized by a tower's config, nor are the model's
        own parameters, which are read only at the model's shape)."""
        if canonical is not None and (self.foreign and canonical.startswith(self.foreign) or canonical in self.shapes):
            return
        count = math.prod(int(d) for d in shape)
        if count > self.largest:
            raise CorruptCheckpointError(
                f"{path}: tensor {name} has shape {tuple(shape)} ({count:,} values), more than any parameter of the "
                f"model: {self.described} implies at most {self.largest:,} values in one tensor "
                f"({self.largest_name}); refused before reading it")

    def spend(self, path, name: str, nbytes: int) -> None:
        """Count ``nbytes`` about to be allocated for ``name``; refuse when the total passes the bound."""
        self.fits(path, name, nbytes)
        self.spent += int(nbytes)

    def fits(self, path, name: str, nbytes: int) -> None:
        """Refuse when ``nbytes`` more (for ``name``) would pass the bound; counts nothing."""
        total = self.spent + int(nbytes)
        if total > self.max_bytes:
            raise CorruptCheckpointError(
                f"{path}: with {name} its tensors would take {total:,} bytes in memory, but {self.described} "
                f"implies at most {self.max_bytes:,} bytes ({BYTES_PER_VALUE} per value of its {self.values:,} "
                f"parameter values + {self.slack:,} for buffers); refused before reading it")

    def for_names(self, names: Iterable[str]) -> "Expectation | None":
        """This expectation for a file holding ``names``, or ``None`` when they are OpenAI's / open_clip's (not
        canonical: such files are converted after reading and bounded by their size instead)."""
        from clip_core.formats.openai import looks_like_openai

        return None if looks_like_openai(names) else self


def expectation_for(config, arch: str | None = None) -> Expectation | None:
    """The :class:`Expectation` of loading ``arch`` (``None``: any architecture ``config`` can describe) with
    ``config`` (a triclip config), or ``None`` when ``config`` is ``None`` or cannot describe a model.

    The names are ``arch``'s parameters (for ``None``: CLIP's and the classifier head's for a ``CLIPConfig``, the
    tower's and its projection's for a tower config); the largest tensor and the byte bound are taken over all of
    those (a tower loaded from a full checkpoint skips the other tower's tensors, which stay within the bounds).
    """
    from clip_core.config import CLIPConfig, CLIPTextConfig, CLIPVisionConfig
    from clip_core.weights import param_table

    if isinstance(config, CLIPConfig):
        family = ("clip", "image_classification")
    elif isinstance(config, CLIPTextConfig):
        family = ("text_projection",)
    elif isinstance(config, CLIPVisionConfig):
        family = ("vision_projection",)
    else:
        return None
    try:
        specs = {}
        for name in family:
            specs.update(param_table(config, name))
        names = specs if arch is None else param_table(config, arch)  # a subset of the family's
    except (ValueError, TypeError):  # the config does not describe arch: the load itself says so
        return None
    # the family's shapes: a tower-with-projection table built from a full config guesses its projection size,
    # which the loader takes from the checkpoint afterwards; the full model's table has the stored one
    shapes = {name: specs[name].shape for name in names}
    largest = max(specs.values(), key=lambda spec: math.prod(spec.shape))
    values = sum(math.prod(spec.shape) for spec in specs.values())
    positions = 0
    text = config.text_config if isinstance(config, CLIPConfig) else config
    vision = config.vision_config if isinstance(config, CLIPConfig) else config
    if isinstance(text, CLIPTextConfig):
        positions += text.max_position_embeddings
    if isinstance(vision, CLIPVisionConfig):
        positions += vision.num_patches + 1
    described = f"the config ({type(config).__name__})"
    foreign = {CLIPTextConfig: ("vision_model.", "visual_projection."),
               CLIPVisionConfig: ("text_model.", "text_projection.", "logit_scale")}.get(type(config), ())
    return Expectation(shapes, (largest.name, math.prod(largest.shape)), values,
                       SLACK_BYTES + BYTES_PER_VALUE * positions, described, foreign)


def framework_of(names: Iterable[str]) -> str | None:
    """``"tf"`` / ``"flax"`` when a safetensors file's names are transformers' TF / Flax variable names, else
    ``None`` (canonical or OpenAI names)."""
    names = list(names)
    if any("/" in name or name.endswith(":0") for name in names):
        return "tf"
    if any(name.rsplit(".", 1)[-1] in ("kernel", "scale", "embedding") for name in names):
        return "flax"
    return None


def canonical_entry(framework: str | None, name: str, shape) -> tuple[str, tuple[int, ...]]:
    """The canonical name and shape of a stored tensor (``framework`` from :func:`framework_of`), from its name
    and shape alone."""
    if framework == "tf":
        parts = name.split("/")
        if len(parts) > 1 and parts[0] == keras_h5.TF_MAIN_LAYER:
            parts = parts[1:]
        return mapped_shape(keras_h5.canonical_from_tf, "/".join(parts), shape)
    if framework == "flax":
        return mapped_shape(lambda n, v: flax_msgpack.canonical_from_flax(tuple(n.split(".")), v), name, shape)
    return name, tuple(int(d) for d in shape)


__all__ = ["Expectation", "expectation_for", "framework_of", "canonical_entry", "BYTES_PER_VALUE", "SLACK_BYTES"]
