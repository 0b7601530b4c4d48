"""CLIP (Radford et al., 2021, arXiv:2103.00020): an image tower and a text tower trained so
that matching images and texts have close embeddings.

Matches transformers' ``models/clip/modeling_clip.py`` for inference. Parameter names are the Hub
checkpoints' (``vision_model.encoder.layers.0.self_attn.q_proj.weight``,
``text_model.embeddings.token_embedding.weight``, ``visual_projection.weight``, ``logit_scale``).
``logits_per_image`` (images, texts) are cosine similarities times ``exp(logit_scale)``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..config import Config
from ..errors import InputError
from ..modeling import ModelOutput, PreTrainedModel
from .layers import activation, attention, merge_heads, padding_mask, split_heads
from .vit import check_pixels

# 1. Config fields read, with the defaults config.json may leave out.
CLIP_DEFAULTS = {"projection_dim": 512, "logit_scale_init_value": 2.6592,
                 "text_config": None, "vision_config": None}
TEXT_DEFAULTS = {
    "vocab_size": 49408, "hidden_size": 512, "intermediate_size": 2048, "num_hidden_layers": 12,
    "num_attention_heads": 8, "max_position_embeddings": 77, "hidden_act": "quick_gelu",
    "layer_norm_eps": 1e-5, "attention_dropout": 0.0, "pad_token_id": 1, "bos_token_id": 49406,
    "eos_token_id": 49407,
}
VISION_DEFAULTS = {
    "hidden_size": 768, "intermediate_size": 3072, "num_hidden_layers": 12,
    "num_attention_heads": 12, "num_channels": 3, "image_size": 224, "patch_size": 32,
    "hidden_act": "quick_gelu", "layer_norm_eps": 1e-5, "attention_dropout": 0.0,
}


def sub_config(value, defaults: dict) -> Config:
    config = value if isinstance(value, Config) else Config(**(value or {}))
    config.set_defaults(defaults)
    return config


# 2. Modules.
class CLIPAttention(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.num_heads = config.num_attention_heads
        size = config.hidden_size
        self.q_proj = nn.Linear(size, size)
        self.k_proj = nn.Linear(size, size)
        self.v_proj = nn.Linear(size, size)
        self.out_proj = nn.Linear(size, size)

    def forward(self, hidden_states, mask=None):
        query = split_heads(self.q_proj(hidden_states), self.num_heads)  # (batch, heads, seq, head_dim)
        key = split_heads(self.k_proj(hidden_states), self.num_heads)
        value = split_heads(self.v_proj(hidden_states), self.num_heads)
        return self.out_proj(merge_heads(attention(query, key, value, mask)))


class CLIPMLP(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.fc1 = nn.Linear(config.hidden_size, config.intermediate_size)
        self.fc2 = nn.Linear(config.intermediate_size, config.hidden_size)
        self.act = activation(config.hidden_act)

    def forward(self, hidden_states):
        return self.fc2(self.act(self.fc1(hidden_states)))


class CLIPEncoderLayer(nn.Module):
    """Pre-norm transformer layer; ``attention_class`` is CLIP's attention or a family's own
    (BLIP's fused qkv), called as ``attention(hidden_states, mask)``."""

    def __init__(self, config, attention_class: type[nn.Module] = CLIPAttention):
        super().__init__()
        self.self_attn = attention_class(config)
        self.layer_norm1 = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.mlp = CLIPMLP(config)
        self.layer_norm2 = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)

    def forward(self, hidden_states, mask=None):
        hidden_states = hidden_states + self.self_attn(self.layer_norm1(hidden_states), mask)
        return hidden_states + self.mlp(self.layer_norm2(hidden_states))


class CLIPEncoder(nn.Module):
    def __init__(self, config, attention_class: type[nn.Module] = CLIPAttention):
        super().__init__()
        self.layers = nn.ModuleList(CLIPEncoderLayer(config, attention_class)
                                    for _ in range(config.num_hidden_layers))

    def forward(self, hidden_states, mask=None, output_hidden_states=False):
        states = [hidden_states] if output_hidden_states else None
        for layer in self.layers:
            hidden_states = layer(hidden_states, mask)
            if states is not None:
                states.append(hidden_states)
        return hidden_states, (tuple(states) if states is not None else None)


class CLIPVisionEmbeddings(nn.Module):
    """Patches (a strided convolution) after a learned class token, plus learned positions,
    bicubically resized for other image sizes with ``interpolate_pos_encoding``. SigLIP's are
    these without the class token (``class_token = False``) and with a bias on the patches."""

    class_token = True

    def __init__(self, config):
        super().__init__()
        self.patch_size = config.patch_size
        self.image_size = config.image_size
        if self.class_token:
            self.class_embedding = nn.Parameter(torch.zeros(config.hidden_size))
        self.patch_embedding = nn.Conv2d(config.num_channels, config.hidden_size,
                                         kernel_size=config.patch_size, stride=config.patch_size,
                                         bias=not self.class_token)
        self.num_positions = (config.image_size // config.patch_size) ** 2 + self.class_token
        self.position_embedding = nn.Embedding(self.num_positions, config.hidden_size)

    def positions(self, embeddings, height: int, width: int, interpolate: bool):
        table = self.position_embedding.weight[None]  # (1, positions, hidden)
        if not interpolate or (embeddings.shape[1] == self.num_positions and height == width):
            return table
        first = int(self.class_token)
        side, dim = int((self.num_positions - first) ** 0.5), table.shape[-1]
        grid = table[:, first:].reshape(1, side, side, dim).permute(0, 3, 1, 2)
        grid = F.interpolate(grid, size=(height // self.patch_size, width // self.patch_size),
                             mode="bicubic", align_corners=False)
        return torch.cat((table[:, :first], grid.permute(0, 2, 3, 1).reshape(1, -1, dim)), dim=1)

    def forward(self, pixel_values, interpolate_pos_encoding: bool = False):
        batch, _, height, width = pixel_values.shape
        if not interpolate_pos_encoding and (height != self.image_size or width != self.image_size):
            raise InputError(f"The images are {height}x{width} pixels but this model reads "
                             f"{self.image_size}x{self.image_size}. Resize them with the model's "
                             "image processor, or pass interpolate_pos_encoding=True.")
        weight = self.patch_embedding.weight
        embeddings = self.patch_embedding(pixel_values.to(weight.dtype)).flatten(2).transpose(1, 2)
        if self.class_token:  # (batch, 1 + patches, hidden)
            embeddings = torch.cat([self.class_embedding.expand(batch, 1, -1), embeddings], dim=1)
        return embeddings + self.positions(embeddings, height, width, interpolate_pos_encoding)


class CLIPVisionTransformer(nn.Module):
    """``last_hidden_state`` is the encoder's output; ``pooler_output`` the normed [CLS] state."""

    name = "CLIP's vision model"  # for error messages

    def __init__(self, config):
        super().__init__()
        self.config = config
        self.embeddings = CLIPVisionEmbeddings(config)
        self.pre_layrnorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)  # sic
        self.encoder = CLIPEncoder(config)
        self.post_layernorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)

    @property
    def pre_norm(self) -> nn.LayerNorm:
        return self.pre_layrnorm

    def forward(self, pixel_values, interpolate_pos_encoding=False, output_hidden_states=False):
        check_pixels(pixel_values, self.config.num_channels, self.name)
        hidden_states = self.pre_norm(self.embeddings(pixel_values, bool(interpolate_pos_encoding)))
        hidden_states, states = self.encoder(hidden_states, None, output_hidden_states)
        return ModelOutput(last_hidden_state=hidden_states,
                           pooler_output=self.post_layernorm(hidden_states[:, 0]),
                           hidden_states=states)


class CLIPTextEmbeddings(nn.Module):
    """Token plus learned position embeddings (also SigLIP's; ``family`` names the model in
    the too-long error)."""

    def __init__(self, config, family: str = "CLIP"):
        super().__init__()
        self.family = family
        self.token_embedding = nn.Embedding(config.vocab_size, config.hidden_size)
        self.position_embedding = nn.Embedding(config.max_position_embeddings, config.hidden_size)

    def forward(self, input_ids, position_ids=None):
        length, limit = input_ids.shape[1], self.position_embedding.num_embeddings
        if length > limit:
            raise InputError(f"The text has {length} tokens but {self.family} reads at most {limit}. "
                             "Truncate it (truncation=True, max_length=...) or shorten the text.")
        if position_ids is None:
            position_ids = torch.arange(length, device=input_ids.device)[None]
        return self.token_embedding(input_ids) + self.position_embedding(position_ids)


class CLIPTextTransformer(nn.Module):
    """Causal text encoder; ``pooler_output`` is the state at the end-of-text token."""

    def __init__(self, config):
        super().__init__()
        self.config = config
        self.embeddings = CLIPTextEmbeddings(config)
        self.encoder = CLIPEncoder(config)
        self.final_layer_norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)

    def forward(self, input_ids, attention_mask=None, position_ids=None, output_hidden_states=False):
        if input_ids is None:
            raise InputError("CLIP's text model needs input_ids: tokenize the texts first.")
        input_ids = input_ids.view(-1, input_ids.shape[-1])
        hidden_states = self.embeddings(input_ids, position_ids)
        length = input_ids.shape[1]
        # (batch or 1, 1, seq, seq): causal, and padded keys masked out
        mask = torch.ones(length, length, dtype=torch.bool, device=input_ids.device).tril()[None, None]
        keys = padding_mask(attention_mask)
        if keys is not None:
            mask = mask & keys
        hidden_states, states = self.encoder(hidden_states, mask, output_hidden_states)
        hidden_states = self.final_layer_norm(hidden_states)
        eos = self.config.eos_token_id
        ids = input_ids.to(torch.int)
        # Old configs say eos_token_id 2: then the end of text is the highest id, as the reference.
        position = ids.argmax(-1) if eos == 2 else (ids == eos).int().argmax(-1)
        pooled = hidden_states[torch.arange(hidden_states.shape[0], device=hidden_states.device), position]
        return ModelOutput(last_hidden_state=hidden_states, pooler_output=pooled, hidden_states=states)


class CLIPModel(PreTrainedModel):
    """Both towers and their projections. ``forward(input_ids, pixel_values, attention_mask)``
    -> ``logits_per_image`` (images, texts), ``logits_per_text``, ``text_embeds``,
    ``image_embeds`` (normalised), and each tower's outputs."""

    config_defaults = CLIP_DEFAULTS
    main_input_name = "input_ids"
    ignored_weights = [r"position_ids$"]
    # The towers and their configs' defaults (OWL-ViT's differ).
    text_defaults, vision_defaults = TEXT_DEFAULTS, VISION_DEFAULTS
    text_class, vision_class = CLIPTextTransformer, CLIPVisionTransformer

    def __init__(self, config):
        super().__init__(config)
        self.text_config = sub_config(config.text_config, self.text_defaults)
        self.vision_config = sub_config(config.vision_config, self.vision_defaults)
        self.text_model = self.text_class(self.text_config)
        self.vision_model = self.vision_class(self.vision_config)
        self.visual_projection = nn.Linear(self.vision_config.hidden_size, config.projection_dim, bias=False)
        self.text_projection = nn.Linear(self.text_config.hidden_size, config.projection_dim, bias=False)
        self.logit_scale = nn.Parameter(torch.tensor(float(config.logit_scale_init_value)))

    def _init_weights(self, module: nn.Module, only: str | None = None) -> None:
        super()._init_weights(module, only)
        if module is self and only in (None, "logit_scale"):
            with torch.no_grad():
                self.logit_scale.fill_(float(self.config.logit_scale_init_value))

    def get_text_features(self, input_ids=None, attention_mask=None, position_ids=None, **unused) -> ModelOutput:
        """The text tower's outputs, with ``pooler_output`` projected (as transformers 5)."""
        out = self.text_model(input_ids, attention_mask, position_ids)
        return ModelOutput(last_hidden_state=out.last_hidden_state,
                           pooler_output=self.text_projection(out.pooler_output))

    def get_image_features(self, pixel_values=None, interpolate_pos_encoding=False, **unused) -> ModelOutput:
        """The image tower's outputs, with ``pooler_output`` projected (as transformers 5)."""
        out = self.vision_model(pixel_values, interpolate_pos_encoding)
        return ModelOutput(last_hidden_state=out.last_hidden_state,
                           pooler_output=self.visual_projection(out.pooler_output))

    def forward(self, input_ids=None, pixel_values=None, attention_mask=None, position_ids=None,
                interpolate_pos_encoding=False, output_hidden_states=False, **unused) -> ModelOutput:
        if input_ids is None or pixel_values is None:
            raise InputError("CLIPModel compares texts with images: pass both input_ids and "
                             "pixel_values (or use get_text_features / get_image_features).")
        vision = self.vision_model(pixel_values, interpolate_pos_encoding, output_hidden_states)
        text = self.text_model(input_ids, attention_mask, position_ids, output_hidden_states)
        image_embeds = self.visual_projection(vision.pooler_output)
        text_embeds = self.text_projection(text.pooler_output)
        image_embeds = image_embeds / image_embeds.norm(p=2, dim=-1, keepdim=True)
        text_embeds = text_embeds / text_embeds.norm(p=2, dim=-1, keepdim=True)
        logits_per_text = text_embeds @ image_embeds.t() * self.logit_scale.exp()
        return ModelOutput(logits_per_image=logits_per_text.t(), logits_per_text=logits_per_text,
                           text_embeds=text_embeds, image_embeds=image_embeds,
                           text_model_output=text, vision_model_output=vision)


HEADS = {
    "AutoModel": CLIPModel,
    "AutoModelForZeroShotImageClassification": CLIPModel,
}
