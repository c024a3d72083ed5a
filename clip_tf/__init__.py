"""triclip for TensorFlow: transformers 4.57's TF CLIP API on ``tf.Module`` (no Keras), XLA-compiled by default."""

from clip_core.config import CLIPConfig, CLIPTextConfig, CLIPVisionConfig
from clip_tf.modeling import (TFCLIPForImageClassification, TFCLIPModel, TFCLIPPreTrainedModel, TFCLIPTextModel,
                              TFCLIPTextModelWithProjection, TFCLIPVisionModel, TFCLIPVisionModelWithProjection)

__all__ = [
    "CLIPConfig", "CLIPTextConfig", "CLIPVisionConfig",
    "TFCLIPPreTrainedModel", "TFCLIPModel", "TFCLIPTextModel", "TFCLIPTextModelWithProjection", "TFCLIPVisionModel",
    "TFCLIPVisionModelWithProjection", "TFCLIPForImageClassification",
]
