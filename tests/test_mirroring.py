"""The three backends read side by side: the same files under the same names, and in every file they share the same
public functions and classes in the same order.

Framework-specific private helpers (names starting with ``_``) may differ; the shared skeleton may not. The checks
read the sources with :mod:`ast` only (no framework is imported). A package's ``__init__.py`` is compared as a file
only: it exports what each framework's transformers counterpart exports, which differs between them.
"""

from __future__ import annotations

import ast
import re

import pytest

from tests.conftest import ROOT

BACKENDS = {"pt": "clip_pt", "tf": "clip_tf", "flax": "clip_flax"}
PREFIX = {"pt": "", "tf": "TF", "flax": "Flax"}
PUBLIC = ["CLIPTextModel", "CLIPTextModelWithProjection", "CLIPVisionModel", "CLIPVisionModelWithProjection",
          "CLIPModel", "CLIPForImageClassification"]
#: The public names of the two files every backend has, in order: the model math and the pretrained-model machinery.
SKELETONS = {
    "modeling.py": [
        "activation", "attention_bias", "pool_text", "interpolate_pos_encoding", "normalize", "contrastive_loss",
        "CLIPAttention", "CLIPMLP", "CLIPEncoderLayer", "CLIPEncoder", "CLIPTextEmbeddings", "CLIPVisionEmbeddings",
        "CLIPTextTransformer", "CLIPVisionTransformer", *PUBLIC,
    ],
    "pretrained.py": ["CLIPPreTrainedModel"],
}
# Public names one framework needs in a file and the others do not, by file and backend: Flax keeps params outside
# modules (one top-level module class, and transformers' per-model module classes); training on Keras needs its own
# AdamW (torch's update: Keras' own adds epsilon elsewhere) and a schedule class, optax a schedule function,
# torch.optim neither.
FRAMEWORK_ONLY = {
    "modeling.py": {"flax": {"CLIPTextModule", "CLIPTextModelWithProjectionModule", "CLIPVisionModule",
                             "CLIPVisionModelWithProjectionModule", "CLIPModule", "CLIPForImageClassificationModule"}},
    "pretrained.py": {"flax": {"CLIPModule"}},
    "training.py": {"tf": {"CosineSchedule", "AdamW", "KerasCLIPModel"}, "flax": {"schedule"}},
}
# Files one framework has and the others cannot. TensorFlow: the caches of compiled functions its eager calls run
# through (PyTorch runs eagerly; Flax's jitted apply and buckets fit in its pretrained.py), and transformers' embedding
# API, whose Keras-layer view and variable replacement only TensorFlow needs (PyTorch's fits in its pretrained.py;
# transformers' Flax models have none).
FRAMEWORK_ONLY_FILES = {"pt": set(), "tf": {"compiled.py", "embedding_api.py"}, "flax": set()}


def _files(backend: str) -> set[str]:
    """The backend package's Python files, as paths relative to the package, without its framework-only files."""
    package = ROOT / BACKENDS[backend]
    return {path.relative_to(package).as_posix() for path in package.rglob("*.py")
            if "__pycache__" not in path.parts} - FRAMEWORK_ONLY_FILES[backend]


SHARED_FILES = sorted(set.intersection(*(_files(b) for b in BACKENDS)) - {"__init__.py"}
                      | set(SKELETONS))


def _tree(backend: str, file: str) -> ast.Module:
    return ast.parse((ROOT / BACKENDS[backend] / file).read_text())


def _unprefixed(backend: str, name: str) -> str:
    """``TFCLIPModel`` / ``FlaxCLIPModel`` -> ``CLIPModel``: the name without the framework prefix."""
    prefix = PREFIX[backend]
    return name[len(prefix):] if prefix and re.match(prefix + "[A-Z]", name) else name


def _top_level_names(backend: str, file: str) -> list[str]:
    """The file's top-level functions, classes and assigned names, in order, without the framework prefix."""
    names = []
    for node in _tree(backend, file).body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.append(node.name)
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names += [t.id for t in targets if isinstance(t, ast.Name) and not t.id.startswith("__")]
    return [_unprefixed(backend, n) for n in names]


def _public(backend: str, file: str) -> list[str]:
    own = FRAMEWORK_ONLY.get(file, {}).get(backend, set())
    return [n for n in _top_level_names(backend, file) if not n.startswith("_") and n not in own]


def test_same_files_in_every_backend():
    files = {backend: _files(backend) for backend in BACKENDS}
    for backend in ("tf", "flax"):
        missing, extra = sorted(files["pt"] - files[backend]), sorted(files[backend] - files["pt"])
        assert not (missing or extra), f"{BACKENDS[backend]} lacks {missing} and alone has {extra}, beside clip_pt"
    assert set(SKELETONS) <= files["pt"]


@pytest.mark.parametrize("file", SKELETONS)
@pytest.mark.parametrize("backend", BACKENDS)
def test_skeleton_in_order(backend, file):
    names = [n for n in _top_level_names(backend, file) if not n.startswith("_")]
    assert [n for n in names if n in SKELETONS[file]] == SKELETONS[file]


@pytest.mark.parametrize("file", SHARED_FILES)
def test_same_public_names_in_the_same_order(file):
    lists = {backend: _public(backend, file) for backend in BACKENDS}
    assert lists["tf"] == lists["pt"], file
    assert lists["flax"] == lists["pt"], file


def test_public_models_have_the_same_methods():
    methods = {}
    for backend in BACKENDS:
        for node in _tree(backend, "modeling.py").body:
            if isinstance(node, ast.ClassDef) and _unprefixed(backend, node.name) in PUBLIC:
                public = {f.name for f in node.body if isinstance(f, ast.FunctionDef) and not f.name.startswith("_")}
                methods.setdefault(_unprefixed(backend, node.name), {})[backend] = public
    for cls, by_backend in methods.items():
        if cls == "CLIPModel":
            for backend, names in by_backend.items():
                assert {"get_text_features", "get_image_features"} <= names, (cls, backend, names)
    assert set(methods) == set(PUBLIC)


@pytest.mark.parametrize("backend", BACKENDS)
def test_public_models_subclass_the_pretrained_base(backend):
    base = PREFIX[backend] + "CLIPPreTrainedModel"
    package = BACKENDS[backend]
    imported = {alias.asname or alias.name for node in _tree(backend, "modeling.py").body
                if isinstance(node, ast.ImportFrom) and node.module == f"{package}.pretrained" for alias in node.names}
    assert base in imported, f"{package}/modeling.py does not import {base} from {package}.pretrained"
    for node in _tree(backend, "modeling.py").body:
        if isinstance(node, ast.ClassDef) and _unprefixed(backend, node.name) in PUBLIC:
            assert [b.id for b in node.bases if isinstance(b, ast.Name)] == [base], node.name


@pytest.mark.parametrize("backend", BACKENDS)
def test_pretrained_does_not_import_modeling(backend):
    """``modeling`` imports ``pretrained`` (the base class); the other way round would be an import cycle."""
    package = BACKENDS[backend]
    for node in _tree(backend, "pretrained.py").body:
        if isinstance(node, ast.ImportFrom):
            assert node.module != f"{package}.modeling" and not (node.module == package and any(
                alias.name == "modeling" for alias in node.names)), ast.unparse(node)
        elif isinstance(node, ast.Import):
            assert all(alias.name != f"{package}.modeling" for alias in node.names), ast.unparse(node)
