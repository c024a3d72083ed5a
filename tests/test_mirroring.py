"""The three modeling files read side by side: the same functions and classes, in the same order.

Framework-specific private helpers (names starting with ``_``) may differ; the shared skeleton may not.
"""

from __future__ import annotations

import ast

import pytest

from tests.conftest import ROOT

FILES = {"pt": "clip_pt/modeling.py", "tf": "clip_tf/modeling.py", "flax": "clip_flax/modeling.py"}
PREFIX = {"pt": "", "tf": "TF", "flax": "Flax"}
SKELETON = [
    "activation", "attention_bias", "pool_text", "interpolate_pos_encoding", "normalize", "contrastive_loss",
    "CLIPAttention", "CLIPMLP", "CLIPEncoderLayer", "CLIPEncoder", "CLIPTextEmbeddings", "CLIPVisionEmbeddings",
    "CLIPTextTransformer", "CLIPVisionTransformer", "CLIPPreTrainedModel", "CLIPTextModel",
    "CLIPTextModelWithProjection", "CLIPVisionModel", "CLIPVisionModelWithProjection", "CLIPModel",
    "CLIPForImageClassification",
]
PUBLIC = SKELETON[SKELETON.index("CLIPPreTrainedModel"):]
# What one framework needs and the others do not (Flax keeps params outside modules: one top-level module class).
FRAMEWORK_ONLY = {"pt": set(), "tf": set(), "flax": {"CLIPModule"}}


def _top_level_names(backend: str) -> list[str]:
    tree = ast.parse((ROOT / FILES[backend]).read_text())
    names = [node.name for node in tree.body if isinstance(node, (ast.FunctionDef, ast.ClassDef))]
    prefix = PREFIX[backend]
    return [n[len(prefix):] if prefix and n.startswith(prefix + "CLIP") else n for n in names]


@pytest.mark.parametrize("backend", FILES)
def test_skeleton_in_order(backend):
    names = [n for n in _top_level_names(backend) if not n.startswith("_")]
    assert [n for n in names if n in SKELETON] == SKELETON


def test_same_public_names_in_the_same_order():
    lists = {b: [n for n in _top_level_names(b) if not n.startswith("_") and n not in FRAMEWORK_ONLY[b]]
             for b in FILES}
    assert lists["tf"] == lists["pt"]
    assert lists["flax"] == lists["pt"]


def test_public_models_have_the_same_methods():
    methods = {}
    for backend in FILES:
        tree = ast.parse((ROOT / FILES[backend]).read_text())
        for node in tree.body:
            if isinstance(node, ast.ClassDef) and node.name.removeprefix(PREFIX[backend]) in PUBLIC[1:]:
                public = {f.name for f in node.body if isinstance(f, ast.FunctionDef) and not f.name.startswith("_")}
                methods.setdefault(node.name.removeprefix(PREFIX[backend]), {})[backend] = public
    for cls, by_backend in methods.items():
        if cls == "CLIPModel":
            for backend, names in by_backend.items():
                assert {"get_text_features", "get_image_features"} <= names, (cls, backend, names)
    assert set(methods) == set(PUBLIC[1:])
