"""triclip for JAX/Flax: transformers 4.x's ``FlaxCLIPModel`` API (removed in transformers v5) over ``clip_core``.

Parameters live outside the modules (``model.params``, the same tree as transformers' ``flax_model.msgpack``), every
call takes ``params=``, and ``from_pretrained`` / ``save_pretrained`` read and write every checkpoint format.
"""

from clip_core.config import CLIPConfig, CLIPTextConfig, CLIPVisionConfig
from clip_flax.modeling import (FlaxCLIPForImageClassification, FlaxCLIPModel, FlaxCLIPTextModel,
                                FlaxCLIPTextModelWithProjection, FlaxCLIPVisionModel, FlaxCLIPVisionModelWithProjection)
from clip_flax.pretrained import FlaxCLIPPreTrainedModel

__all__ = [
    "CLIPConfig", "CLIPTextConfig", "CLIPVisionConfig",
    "FlaxCLIPPreTrainedModel", "FlaxCLIPModel", "FlaxCLIPTextModel", "FlaxCLIPTextModelWithProjection",
    "FlaxCLIPVisionModel", "FlaxCLIPVisionModelWithProjection", "FlaxCLIPForImageClassification",
]
