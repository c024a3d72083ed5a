"""ONNX Runtime as a fourth way to run a model's features: ``--backend onnx`` for ``triclip embed``, ``search`` and
``eval`` (and every task of :mod:`clip_core.tasks`).

:meth:`OnnxCLIPModel.from_pretrained` takes either an export folder (``triclip export --to onnx``: ``export.json``
with ``text.onnx`` / ``vision.onnx``) or a model of any checkpoint format. A model is exported once, by the PyTorch
backend (``torch.export`` -> ONNX, both towers, dynamic batch and text length, checked against ``reference.npz`` as
every export is), into a cache folder keyed by the model files' names, sizes and modification times and the dtype:
``$TRICLIP_CACHE/onnx/<key>`` (default ``~/.cache/triclip``). The cache entry is a complete export folder that also
holds the model's image processor and tokenizer files, so later loads, in any process (a Ray actor on another node
with the cache on a shared filesystem), run the model with ``onnxruntime`` alone: no torch import, no export.

On CPU, ONNX Runtime's graph optimiser (fused layer norms, prepacked matrix weights) runs ViT-B/32's image tower
about 1.2x faster than PyTorch eager; the features agree with the PyTorch model within DESIGN.md's float32 tolerance.
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
from pathlib import Path

import numpy as np

from clip_core import exporting

logger = logging.getLogger(__name__)

#: the functions an embedding job runs, and the file each is written to
FUNCTIONS = {"text_features": "text.onnx", "image_features": "vision.onnx"}


def cache_root() -> Path:
    """``$TRICLIP_CACHE`` or ``$XDG_CACHE_HOME/triclip`` or ``~/.cache/triclip``."""
    if os.environ.get("TRICLIP_CACHE"):
        return Path(os.environ["TRICLIP_CACHE"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "triclip"


def cache_key(model_path, dtype: str = "float32") -> str:
    """A hex key of ``model_path`` (resolved; every file below a folder by relative name, size and modification
    time; a Hub id as given) and ``dtype``: equal for the same files, different once any of them changes."""
    digest = hashlib.sha256(f"onnx-export/1\0{dtype}\0".encode())
    path = Path(model_path)
    if not path.exists():
        digest.update(b"id\0" + str(model_path).encode())
        return digest.hexdigest()[:32]
    path = path.resolve()
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    digest.update(str(path).encode())
    for file in files:
        stat = file.stat()
        rel = file.relative_to(path).as_posix() if path.is_dir() else file.name
        digest.update(f"\0{rel}\0{stat.st_size}\0{stat.st_mtime_ns}".encode())
    return digest.hexdigest()[:32]


def exported_folder(model_path, dtype=None, cache_dir=None) -> Path:
    """The export folder of ``model_path``: itself when it is one, else its cache entry, exported now if missing
    (which needs the PyTorch backend)."""
    path = Path(model_path)
    if (path / exporting.MANIFEST).is_file():
        return path
    dtype = exporting.check_dtype(dtype, ["onnx"])
    entry = Path(cache_dir or cache_root()) / "onnx" / cache_key(model_path, dtype)
    if (entry / exporting.MANIFEST).is_file():
        return entry
    _export(model_path, entry, dtype)
    return entry


def _export(model_path, entry: Path, dtype: str) -> None:
    try:
        from clip_pt import CLIPModel
        from clip_pt import export as pt_export
    except ImportError as err:
        raise ImportError(f"running {model_path} on ONNX Runtime exports it once with the PyTorch backend, which "
                          f"is not installed ({err}); install triclip[torch,onnx], or pass an export folder written by "
                          "`triclip export --to onnx`") from None
    # a notice, not a fault: the first run of a model waits for the export (about 25 s for ViT-B/32 on two cores)
    logger.warning("exporting %s to ONNX once; later runs reuse %s", model_path, entry)
    model = CLIPModel.from_pretrained(model_path).eval()
    try:  # staged: the entry appears complete or not at all; a concurrent export of the same key is equal to it
        with exporting.staged_folder(entry) as folder:
            cases = exporting.reference_inputs(model.config)
            exporting.write_reference(folder, cases, pt_export.reference_outputs(model, cases))
            records = pt_export.write_artifacts(model, folder, ["onnx"], dtype, functions=tuple(FUNCTIONS))
            exporting.write_manifest(folder, records, model.config, dtype, source=os.fspath(model_path))
            exporting.copy_processor_files(model_path, folder)
            _check_against_reference(folder)
    except FileExistsError:  # another process finished the same export first: it is the same folder
        if not (entry / exporting.MANIFEST).is_file():
            raise


def _check_against_reference(folder: Path) -> None:
    """Refuse an export whose graphs differ from the source model's outputs on the reference inputs beyond
    DESIGN.md's tolerances: the artifact check of ``triclip conformance --artifact``."""
    from conformance.artifacts import run_artifact_conformance

    report = run_artifact_conformance(folder, formats="onnx")
    if report.ok:
        return
    if not report.failures:
        what = "it holds no ONNX graph to compare"
    else:
        row = report.failures[0]
        what = row.error or (f"{row.output} on {row.case} is {row.max_abs:.2e} away from the PyTorch model's "
                             f"(tolerance {row.tolerance:.0e})")
    raise RuntimeError(f"the ONNX export of {folder} is refused, not cached: {what}")


class OnnxCLIPModel:
    """A CLIP model's ``get_text_features`` / ``get_image_features`` on ONNX Runtime (numpy in, float32 numpy out).

    Sessions are opened on first use of each tower (a text job never loads the image graph); ``threads`` sets ONNX
    Runtime's intra-op threads (default ``$OMP_NUM_THREADS`` when set, as Ray sets it per actor, else ONNX
    Runtime's own default: one per physical core). Calls are thread-safe.
    """

    def __init__(self, folder, threads: int | None = None):
        self.folder = Path(folder)
        manifest = exporting.read_manifest(self.folder)
        from clip_core.config import CLIPConfig

        self.config = CLIPConfig.from_dict(manifest["config"])
        self.dtype = manifest["dtype"]
        self.files = {a["function"]: self.folder / a["path"] for a in manifest["artifacts"]
                      if a["format"] == "onnx" and a["function"] in FUNCTIONS}
        self.logit_scale = np.float32(exporting.read_reference(self.folder)[1])
        env = os.environ.get("OMP_NUM_THREADS", "")
        self.threads = int(threads) if threads is not None else int(env) if env.isdigit() else 0
        self._sessions: dict = {}
        self._lock = threading.Lock()

    @classmethod
    def from_pretrained(cls, model_path, dtype=None, cache_dir=None, threads: int | None = None) -> "OnnxCLIPModel":
        """The model at ``model_path`` (an export folder, or any model folder / checkpoint file / Hub id, exported
        once into the cache); ``dtype`` (float32 or float16) picks the exported graphs' precision."""
        return cls(exported_folder(model_path, dtype, cache_dir), threads=threads)

    def _session(self, function: str):
        with self._lock:
            if function not in self._sessions:
                if function not in self.files:
                    raise ValueError(f"{self.folder} holds no ONNX graph of {function} (it has "
                                     f"{', '.join(sorted(self.files)) or 'none'})")
                import onnxruntime as ort

                options = ort.SessionOptions()
                options.intra_op_num_threads = self.threads
                self._sessions[function] = ort.InferenceSession(str(self.files[function]), options,
                                                                providers=["CPUExecutionProvider"])
            return self._sessions[function]

    def get_image_features(self, pixel_values) -> np.ndarray:
        """Projected, unnormalised image features ``[n, projection_dim]`` of NCHW float32 ``pixel_values``."""
        pixels = np.ascontiguousarray(pixel_values, dtype=np.float32)
        if pixels.ndim != 4:
            raise ValueError(f"pixel_values must be [batch, channels, height, width], got shape {pixels.shape}")
        return self._session("image_features").run(None, {"pixel_values": pixels})[0]

    def get_text_features(self, input_ids, attention_mask=None) -> np.ndarray:
        """Projected, unnormalised text features ``[n, projection_dim]`` of ``input_ids`` ``[n, length]``."""
        ids = np.ascontiguousarray(input_ids, dtype=np.int64)
        if ids.ndim != 2:
            raise ValueError(f"input_ids must be [batch, length], got shape {ids.shape}")
        mask = np.ones_like(ids) if attention_mask is None else np.ascontiguousarray(attention_mask, np.int64)
        return self._session("text_features").run(None, {"input_ids": ids, "attention_mask": mask})[0]

    def __call__(self, *args, **kwargs):
        raise TypeError("OnnxCLIPModel runs get_text_features and get_image_features only; the full forward "
                        "(logits, patch states) needs a pt, tf or flax model")

    def __repr__(self) -> str:
        return f"OnnxCLIPModel({str(self.folder)!r}, dtype={self.dtype!r})"

