"""triclip for PyTorch: transformers-compatible CLIP models built on the framework-neutral :mod:`clip_core`.

``state_dict()`` keys are transformers' parameter names, so checkpoints move freely between the two libraries.
"""

from clip_core.config import CLIPConfig, CLIPTextConfig, CLIPVisionConfig
from clip_core.outputs import (BaseModelOutputWithPooling, CLIPOutput, CLIPTextModelOutput, CLIPVisionModelOutput,
                               ImageClassifierOutput)
from clip_pt.modeling import (CLIPForImageClassification, CLIPModel, CLIPTextModel, CLIPTextModelWithProjection,
                              CLIPVisionModel, CLIPVisionModelWithProjection)
from clip_pt.pretrained import CLIPPreTrainedModel

__all__ = [
    "CLIPModel", "CLIPTextModel", "CLIPTextModelWithProjection", "CLIPVisionModel", "CLIPVisionModelWithProjection",
    "CLIPForImageClassification", "CLIPPreTrainedModel",
    "CLIPConfig", "CLIPTextConfig", "CLIPVisionConfig",
    "BaseModelOutputWithPooling", "CLIPOutput", "CLIPTextModelOutput", "CLIPVisionModelOutput", "ImageClassifierOutput",
]
