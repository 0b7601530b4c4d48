"""LLaVA 1.5 (Liu et al., 2023, arXiv:2310.03744): ``LlavaForConditionalGeneration``, a CLIP
vision tower, a two-layer MLP projector and a Llama language model
(``llava-hf/llava-1.5-7b-hf``).

Matches transformers' ``models/llava/modeling_llava.py`` for inference. The image's patch
states of layer ``vision_feature_layer`` (default -2, the CLS state dropped for
``vision_feature_select_strategy="default"``) go through the projector (linear_1, GELU,
linear_2) and replace, in order, the embeddings of the prompt's ``<image>`` tokens
(``image_token_index``); the processor expands each ``<image>`` to one token per patch.

Parameter names are transformers 5's (``model.vision_tower.encoder.layers.0...``,
``model.multi_modal_projector.linear_1.weight``, ``model.language_model.layers.0...``,
``lm_head.weight``); the Hub's older layout (``vision_tower.vision_model...``, ``language_model.model...``,
``language_model.lm_head``) is renamed on load.

``generate()`` builds the prompt's embeddings with the image features and runs the
``inputs_embeds`` path of ``GenerationMixin``, with the prompt ids, so the returned sequences
are the prompt's ids followed by the new tokens, as the reference returns.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ..errors import InputError
from ..generation import GenerationMixin
from ..modeling import ModelOutput, PreTrainedModel
from .clip import VISION_DEFAULTS, CLIPVisionTransformer, sub_config
from .decoder import lm_logits
from .layers import activation
from .linear import Linear
from .llama import LLAMA_DEFAULTS, LlamaModel

# 1. Config fields read, with the defaults config.json may leave out (LlavaConfig's).
LLAVA_DEFAULTS = {"vision_config": None, "text_config": None, "image_token_index": 32000,
                  "projector_hidden_act": "gelu", "vision_feature_select_strategy": "default",
                  "vision_feature_layer": -2, "multimodal_projector_bias": True}
# LlavaConfig's vision defaults (CLIP ViT-L/14 at 336 pixels).
LLAVA_VISION_DEFAULTS = {**VISION_DEFAULTS, "intermediate_size": 4096, "hidden_size": 1024,
                         "patch_size": 14, "image_size": 336, "num_hidden_layers": 24,
                         "num_attention_heads": 16}


# 2. Modules.
class LlavaMultiModalProjector(nn.Module):
    def __init__(self, config):
        super().__init__()
        layers = config.vision_feature_layer
        count = 1 if isinstance(layers, int) else len(layers)
        bias = bool(config.multimodal_projector_bias)
        width = config.text_config.hidden_size
        self.linear_1 = nn.Linear(config.vision_config.hidden_size * count, width, bias=bias)
        self.act = activation(config.projector_hidden_act)
        self.linear_2 = nn.Linear(width, width, bias=bias)

    def forward(self, features):
        return self.linear_2(self.act(self.linear_1(features)))


class LlavaModel(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.vision_tower = CLIPVisionTransformer(config.vision_config)
        self.multi_modal_projector = LlavaMultiModalProjector(config)
        self.language_model = LlamaModel(config.text_config)


# 3. The model.
class LlavaForConditionalGeneration(GenerationMixin, PreTrainedModel):
    base_model_prefix = ""  # the checkpoint's names are the full names (renamed below)
    config_defaults = LLAVA_DEFAULTS
    main_input_name = "input_ids"
    tie_word_embeddings_default = False
    checkpoint_renames = [  # the Hub's layouts (pre-transformers-5; CLIPVisionModel's prefix)
        (r"^(model\.)?vision_tower\.vision_model\.", "model.vision_tower."),
        (r"^vision_tower\.", "model.vision_tower."),
        (r"^language_model\.lm_head\.", "lm_head."),
        (r"^language_model\.model\.", "model.language_model."),
        (r"^language_model\.", "model.language_model."),
        (r"^multi_modal_projector\.", "model.multi_modal_projector."),
    ]

    def __init__(self, config):
        super().__init__(config)
        config.vision_config = sub_config(config.vision_config, LLAVA_VISION_DEFAULTS)
        if isinstance(config.text_config, dict):  # LlamaConfig's default (4.x files omit it)
            config.text_config = {"tie_word_embeddings": False, **config.text_config}
        config.text_config = sub_config(config.text_config, LLAMA_DEFAULTS)
        self.model = LlavaModel(config)
        self.lm_head = Linear(config.text_config.hidden_size, config.text_config.vocab_size, bias=False)

    # --- what PreTrainedModel / GenerationMixin ask for ---
    def active_ties(self) -> dict[str, str]:
        tied = self.config.get("tie_word_embeddings") or \
            self.config.text_config.get("tie_word_embeddings")
        return {"lm_head.weight": "model.language_model.embed_tokens.weight"} if tied else {}

    def get_input_embeddings(self) -> nn.Embedding:
        return self.model.language_model.embed_tokens

    def max_positions(self) -> int:
        return self.config.text_config.max_position_embeddings

    def begin_decode(self) -> None:
        language = self.model.language_model
        language.decode_plan = language.make_decode_plan()

    def end_decode(self) -> None:
        self.model.language_model.__dict__.pop("decode_plan", None)

    # --- images ---
    def get_image_features(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """(images, patches, text hidden size): the projected patch states."""
        config = self.config
        vision = self.model.vision_tower(pixel_values, output_hidden_states=True)
        layers = config.vision_feature_layer
        picked = [vision.hidden_states[i] for i in ([layers] if isinstance(layers, int) else layers)]
        if config.vision_feature_select_strategy == "default":
            picked = [states[:, 1:] for states in picked]  # drop the CLS state
        return self.model.multi_modal_projector(torch.cat(picked, dim=-1))

    # Processor outputs, beside pixel_values, that the image features read (OneVision's
    # image_sizes and batch_num_images); forward and generate pass them on.
    image_input_names: tuple[str, ...] = ()

    def image_rows(self, pixel_values: torch.Tensor, **image_inputs: Any) -> torch.Tensor:
        """The features of all the images, one row per image token: (tokens, hidden)."""
        features = self.get_image_features(pixel_values)
        return features.reshape(-1, features.shape[-1])

    def embed_with_images(self, input_ids: torch.Tensor, pixel_values: torch.Tensor | None,
                          **image_inputs: Any) -> torch.Tensor:
        """The prompt's embeddings, the ``<image>`` tokens' replaced by the image features."""
        if not isinstance(input_ids, torch.Tensor) or input_ids.dim() != 2:
            raise InputError("input_ids must be a 2-D tensor of token ids (batch, sequence); the "
                             "processor gives one with return_tensors='pt'.")
        image_mask = input_ids == self.config.image_token_index
        vocab = self.config.text_config.vocab_size
        # <image> may sit past the text vocabulary (the original checkpoints): embed a stand-in.
        embeds = self.get_input_embeddings()(input_ids.masked_fill(image_mask | (input_ids >= vocab), 0))
        tokens = int(image_mask.sum())
        if pixel_values is None:
            if tokens:
                raise InputError(f"The prompt has {tokens} image tokens but no pixel_values were "
                                 "given: pass the images (the processor's pixel_values).")
            return embeds
        features = self.image_rows(pixel_values.to(self.dtype), **image_inputs)
        if tokens != features.shape[0]:
            raise InputError(
                f"Image features and image tokens do not match: the prompt has {tokens} image "
                f"tokens but {pixel_values.shape[0]} image input(s) give {features.shape[0]} "
                "features. Put one <image> per image in the prompt and let the processor expand it.")
        return embeds.masked_scatter(image_mask[..., None], features.to(embeds.dtype))

    # --- running ---
    def forward(self, input_ids=None, pixel_values=None, attention_mask=None, position_ids=None,
                cache=None, inputs_embeds=None, use_cache=None, logits_to_keep: int = 0,
                **kwargs) -> ModelOutput:
        if inputs_embeds is None:
            if input_ids is None:
                raise InputError("Pass input_ids (with pixel_values for the images) or inputs_embeds.")
            image_inputs = {name: kwargs.get(name) for name in self.image_input_names}
            inputs_embeds = self.embed_with_images(input_ids, pixel_values, **image_inputs)
        elif pixel_values is not None:
            raise InputError("Pass pixel_values with input_ids, not with inputs_embeds.")
        out = self.model.language_model(None, attention_mask, position_ids, cache, inputs_embeds,
                                        use_cache)
        return lm_logits(self.lm_head, out, logits_to_keep)

    @torch.no_grad()
    def generate(self, input_ids=None, pixel_values=None, attention_mask=None, inputs_embeds=None,
                 **kwargs):
        """As the reference: the prompt ids (with pixel_values) -> prompt ids + new tokens."""
        image_inputs = {name: kwargs.pop(name, None) for name in self.image_input_names}
        kwargs.pop("image_sizes", None)  # some LLaVA processors give it; LLaVA reads none
        if inputs_embeds is None and input_ids is not None:
            device = self.device
            input_ids = input_ids.to(device)
            pixel_values = pixel_values.to(device) if pixel_values is not None else None
            inputs_embeds = self.embed_with_images(input_ids, pixel_values, **image_inputs)
        elif pixel_values is not None:
            raise InputError("Pass pixel_values with input_ids (the processor's output).")
        if inputs_embeds is None:
            raise InputError("generate() needs the prompt: input_ids (with pixel_values).")
        return super().generate(input_ids=input_ids, inputs_embeds=inputs_embeds,
                                attention_mask=attention_mask, **kwargs)


HEADS = {
    "AutoModelForImageTextToText": LlavaForConditionalGeneration,
    "AutoModelForVision2Seq": LlavaForConditionalGeneration,
}
