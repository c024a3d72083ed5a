"""triclip for TensorFlow: transformers 4.57's TF CLIP API on ``tf.Module`` (no Keras), XLA-compiled by default."""

import sys as _sys

if "tensorflow" not in _sys.modules and "jax" not in _sys.modules:
    # TensorFlow's TFLite helpers import JAX whenever it is installed (for TFLite's JAX converter only), which would
    # make `import clip_tf` load a second framework. Hide JAX while TensorFlow imports; `import jax` works after.
    _sys.modules["jax"] = None
    try:
        import tensorflow  # noqa: F401
    finally:
        if _sys.modules.get("jax", 0) is None:
            del _sys.modules["jax"]

from clip_core.config import CLIPConfig, CLIPTextConfig, CLIPVisionConfig  # noqa: E402
from clip_tf.modeling import (TFCLIPForImageClassification, TFCLIPModel, TFCLIPTextModel,  # noqa: E402
                              TFCLIPTextModelWithProjection, TFCLIPVisionModel, TFCLIPVisionModelWithProjection)
from clip_tf.pretrained import TFCLIPPreTrainedModel  # noqa: E402

__all__ = [
    "CLIPConfig", "CLIPTextConfig", "CLIPVisionConfig",
    "TFCLIPPreTrainedModel", "TFCLIPModel", "TFCLIPTextModel", "TFCLIPTextModelWithProjection", "TFCLIPVisionModel",
    "TFCLIPVisionModelWithProjection", "TFCLIPForImageClassification",
]
