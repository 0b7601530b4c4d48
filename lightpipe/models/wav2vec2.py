"""Wav2Vec2 (Baevski et al., 2020, arXiv:2006.11477).

Matches transformers' ``models/wav2vec2/modeling_wav2vec2.py`` for inference: the convolutional
feature encoder (group-norm or layer-norm variant), the feature projection, the positional
convolution (weight norm), and the post-norm or "stable layer norm" (pre-norm) Transformer
encoder. Heads: CTC (speech recognition) and sequence classification (audio classification,
optionally over a learned weighted sum of every layer's states). Parameter names are the
Hub's (``wav2vec2.encoder.layers.0.attention.q_proj.weight``).
"""

from __future__ import annotations

import torch
from torch import nn

from ..errors import InputError, UnsupportedModelError
from ..modeling import ModelOutput, PreTrainedModel
from .layers import activation, attention, merge_heads, split_heads

# 1. Config fields read, with the defaults config.json may leave out.
WAV2VEC2_DEFAULTS = {
    "vocab_size": 32,
    "hidden_size": 768,
    "num_hidden_layers": 12,
    "num_attention_heads": 12,
    "intermediate_size": 3072,
    "hidden_act": "gelu",
    "layer_norm_eps": 1e-5,
    "feat_extract_norm": "group",
    "feat_extract_activation": "gelu",
    "conv_dim": (512, 512, 512, 512, 512, 512, 512),
    "conv_stride": (5, 2, 2, 2, 2, 2, 2),
    "conv_kernel": (10, 3, 3, 3, 3, 2, 2),
    "conv_bias": False,
    "num_conv_pos_embeddings": 128,
    "num_conv_pos_embedding_groups": 16,
    "do_stable_layer_norm": False,
    "use_weighted_layer_sum": False,
    "classifier_proj_size": 256,
    "add_adapter": False,
    "output_hidden_size": None,
    "initializer_range": 0.02,
}


# 2. Modules.
class ConvLayer(nn.Module):
    """One feature-encoder convolution with its norm: "group" (GroupNorm with one group per
    channel, first layer only), "layer" (LayerNorm over channels) or none."""

    def __init__(self, config, index: int, norm: str | None):
        super().__init__()
        in_dim = config.conv_dim[index - 1] if index > 0 else 1
        out_dim = config.conv_dim[index]
        self.conv = nn.Conv1d(in_dim, out_dim, config.conv_kernel[index],
                              stride=config.conv_stride[index], bias=config.conv_bias)
        self.norm = norm
        if norm == "group":
            self.layer_norm = nn.GroupNorm(out_dim, out_dim, affine=True)
        elif norm == "layer":
            self.layer_norm = nn.LayerNorm(out_dim, elementwise_affine=True)
        self.activation = activation(config.feat_extract_activation)

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:  # (batch, channels, time)
        hidden_states = self.conv(hidden_states)
        if self.norm == "group":
            hidden_states = self.layer_norm(hidden_states)
        elif self.norm == "layer":
            hidden_states = self.layer_norm(hidden_states.transpose(-2, -1)).transpose(-2, -1)
        return self.activation(hidden_states)


class FeatureEncoder(nn.Module):
    def __init__(self, config):
        super().__init__()
        kind = config.feat_extract_norm
        if kind not in ("group", "layer"):
            raise UnsupportedModelError(f"feat_extract_norm={kind!r}: expected 'group' or 'layer'.")
        self.conv_layers = nn.ModuleList(
            ConvLayer(config, i, "layer" if kind == "layer" else ("group" if i == 0 else None))
            for i in range(len(config.conv_dim)))

    def forward(self, input_values: torch.Tensor) -> torch.Tensor:
        hidden_states = input_values[:, None]  # (batch, 1, samples)
        for layer in self.conv_layers:
            hidden_states = layer(hidden_states)
        return hidden_states  # (batch, conv_dim[-1], frames)


class FeatureProjection(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.layer_norm = nn.LayerNorm(config.conv_dim[-1], eps=config.layer_norm_eps)
        self.projection = nn.Linear(config.conv_dim[-1], config.hidden_size)

    def forward(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        normed = self.layer_norm(features)
        return self.projection(normed), normed


class WeightNormConv1d(nn.Module):
    """A grouped Conv1d whose weight is ``weight_g * weight_v / ||weight_v||`` (norm over all
    dims but the kernel one, dim 2), as ``nn.utils.weight_norm(conv, dim=2)`` stores it."""

    def __init__(self, channels: int, kernel: int, groups: int):
        super().__init__()
        self.padding, self.groups = kernel // 2, groups
        self.weight_g = nn.Parameter(torch.empty(1, 1, kernel))
        self.weight_v = nn.Parameter(torch.empty(channels, channels // groups, kernel))
        self.bias = nn.Parameter(torch.empty(channels))

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        norm = self.weight_v.norm(dim=(0, 1), keepdim=True)
        weight = self.weight_g * self.weight_v / norm
        return nn.functional.conv1d(hidden_states, weight, self.bias, padding=self.padding,
                                    groups=self.groups)


class PositionalConvEmbedding(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.conv = WeightNormConv1d(config.hidden_size, config.num_conv_pos_embeddings,
                                     config.num_conv_pos_embedding_groups)
        self.trim = config.num_conv_pos_embeddings % 2 == 0  # even kernel: one frame too many
        self.activation = activation(config.feat_extract_activation)

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        out = self.conv(hidden_states.transpose(1, 2))
        if self.trim:
            out = out[:, :, :-1]
        return self.activation(out).transpose(1, 2)


class Attention(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.num_heads = config.num_attention_heads
        hidden = config.hidden_size
        self.q_proj = nn.Linear(hidden, hidden)
        self.k_proj = nn.Linear(hidden, hidden)
        self.v_proj = nn.Linear(hidden, hidden)
        self.out_proj = nn.Linear(hidden, hidden)

    def forward(self, hidden_states: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        query = split_heads(self.q_proj(hidden_states), self.num_heads)
        key = split_heads(self.k_proj(hidden_states), self.num_heads)
        value = split_heads(self.v_proj(hidden_states), self.num_heads)
        return self.out_proj(merge_heads(attention(query, key, value, mask)))


class FeedForward(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.intermediate_dense = nn.Linear(config.hidden_size, config.intermediate_size)
        self.output_dense = nn.Linear(config.intermediate_size, config.hidden_size)
        self.activation = activation(config.hidden_act)

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        return self.output_dense(self.activation(self.intermediate_dense(hidden_states)))


class EncoderLayer(nn.Module):
    """Post-norm (``stable=False``) or pre-norm (``stable=True``) Transformer layer."""

    def __init__(self, config, stable: bool):
        super().__init__()
        self.stable = stable
        self.attention = Attention(config)
        self.layer_norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.feed_forward = FeedForward(config)
        self.final_layer_norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)

    def forward(self, hidden_states: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        if self.stable:
            hidden_states = hidden_states + self.attention(self.layer_norm(hidden_states), mask)
            return hidden_states + self.feed_forward(self.final_layer_norm(hidden_states))
        hidden_states = self.layer_norm(hidden_states + self.attention(hidden_states, mask))
        return self.final_layer_norm(hidden_states + self.feed_forward(hidden_states))


class Encoder(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.stable = config.do_stable_layer_norm
        self.pos_conv_embed = PositionalConvEmbedding(config)
        self.layer_norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.layers = nn.ModuleList(EncoderLayer(config, self.stable)
                                    for _ in range(config.num_hidden_layers))

    def forward(self, hidden_states: torch.Tensor, frame_mask: torch.Tensor | None,
                output_hidden_states: bool = False):
        mask = None
        if frame_mask is not None:
            hidden_states = hidden_states.masked_fill(~frame_mask[..., None], 0.0)
            if not bool(frame_mask.all()):
                mask = frame_mask[:, None, None, :]  # (batch, 1, 1, frames) for SDPA
        hidden_states = hidden_states + self.pos_conv_embed(hidden_states)
        if not self.stable:
            hidden_states = self.layer_norm(hidden_states)
        states = [hidden_states] if output_hidden_states else None
        for layer in self.layers:
            hidden_states = layer(hidden_states, mask)
            if states is not None:
                states.append(hidden_states)
        if self.stable:
            # (the reference's recorded states keep the last layer's output un-normed)
            hidden_states = self.layer_norm(hidden_states)
        return hidden_states, (tuple(states) if states is not None else None)


def frame_lengths(config, lengths: torch.Tensor) -> torch.Tensor:
    """Samples -> frames after the feature encoder's convolutions."""
    for kernel, stride in zip(config.conv_kernel, config.conv_stride):
        lengths = torch.div(lengths - kernel, stride, rounding_mode="floor") + 1
    return lengths


class Wav2Vec2PreTrainedModel(PreTrainedModel):
    model_type = "wav2vec2"
    base_model_prefix = "wav2vec2"
    config_defaults = WAV2VEC2_DEFAULTS
    main_input_name = "input_values"
    # weight norm is saved either as parametrizations (torch >= 2.1) or legacy weight_g/_v.
    checkpoint_renames = [(r"parametrizations\.weight\.original0$", "weight_g"),
                          (r"parametrizations\.weight\.original1$", "weight_v")]
    # Pre-training leftovers that inference never reads.
    ignored_weights = [r"masked_spec_embed$", r"^quantizer\.", r"^project_q\.", r"^project_hid\.",
                       r"adapter\."]

    def __init__(self, config):
        super().__init__(config)
        if config.get("add_adapter"):
            raise UnsupportedModelError("Wav2Vec2 checkpoints with an adapter (add_adapter=True) "
                                        "are not supported by lightpipe yet.")

    @property
    def base(self) -> nn.Module:
        """The base model a head holds (``self.wav2vec2``, ``self.hubert``, ...)."""
        return getattr(self, self.base_model_prefix)


class Wav2Vec2Model(Wav2Vec2PreTrainedModel):
    # Variants (HuBERT, WavLM) swap these parts; the feature encoder is shared by all.
    projection_class: type[nn.Module] = FeatureProjection
    encoder_class: type[nn.Module] = Encoder

    def __init__(self, config):
        super().__init__(config)
        self.feature_extractor = FeatureEncoder(config)
        self.feature_projection = self.projection_class(config)
        self.encoder = self.encoder_class(config)

    def frame_mask(self, attention_mask: torch.Tensor | None, frames: int) -> torch.Tensor | None:
        """(batch, samples) 1/0 mask -> (batch, frames) boolean mask of real frames."""
        if attention_mask is None:
            return None
        lengths = frame_lengths(self.config, attention_mask.sum(-1))
        return torch.arange(frames, device=attention_mask.device)[None, :] < lengths[:, None]

    def forward(self, input_values: torch.Tensor, attention_mask: torch.Tensor | None = None,
                output_hidden_states: bool = False, **unused) -> ModelOutput:
        if input_values.dim() != 2:
            raise InputError(f"input_values must be (batch, samples); got shape "
                             f"{tuple(input_values.shape)}.")
        receptive = self.config.conv_kernel[0]
        if input_values.shape[-1] < receptive * 2:
            raise InputError(f"The audio has {input_values.shape[-1]} samples: too short for the "
                             "model's feature encoder (at least a few hundred samples).")
        features = self.feature_extractor(input_values).transpose(1, 2)  # (batch, frames, conv_dim)
        mask = self.frame_mask(attention_mask, features.shape[1])
        hidden_states, extract_features = self.feature_projection(features)
        hidden_states, states = self.encoder(hidden_states, mask, output_hidden_states)
        return ModelOutput(last_hidden_state=hidden_states, extract_features=extract_features,
                           hidden_states=states)


# 3. Heads.
class Wav2Vec2ForCTC(Wav2Vec2PreTrainedModel):
    base_class: type[Wav2Vec2Model] = Wav2Vec2Model  # held at base_model_prefix ("wav2vec2")

    def __init__(self, config):
        super().__init__(config)
        setattr(self, self.base_model_prefix, self.base_class(config))
        output = config.output_hidden_size or config.hidden_size
        self.lm_head = nn.Linear(output, config.vocab_size)

    def forward(self, input_values: torch.Tensor, attention_mask: torch.Tensor | None = None,
                output_hidden_states: bool = False, **unused) -> ModelOutput:
        out = self.base(input_values, attention_mask, output_hidden_states)
        return ModelOutput(logits=self.lm_head(out.last_hidden_state),
                           hidden_states=out.get("hidden_states"))


class Wav2Vec2ForSequenceClassification(Wav2Vec2PreTrainedModel):
    base_class: type[Wav2Vec2Model] = Wav2Vec2Model

    def __init__(self, config):
        super().__init__(config)
        setattr(self, self.base_model_prefix, self.base_class(config))
        if config.use_weighted_layer_sum:
            self.layer_weights = nn.Parameter(torch.ones(config.num_hidden_layers + 1)
                                              / (config.num_hidden_layers + 1))
        self.projector = nn.Linear(config.hidden_size, config.classifier_proj_size)
        self.classifier = nn.Linear(config.classifier_proj_size, config.num_labels)

    def forward(self, input_values: torch.Tensor, attention_mask: torch.Tensor | None = None,
                output_hidden_states: bool = False, **unused) -> ModelOutput:
        weighted = self.config.use_weighted_layer_sum
        out = self.base(input_values, attention_mask, output_hidden_states or weighted)
        if weighted:
            stacked = torch.stack(out.hidden_states, dim=1)  # (batch, layers + 1, frames, hidden)
            weights = self.layer_weights.softmax(-1)
            hidden_states = (stacked * weights[None, :, None, None]).sum(1)
        else:
            hidden_states = out.last_hidden_state
        hidden_states = self.projector(hidden_states)
        if attention_mask is None:
            pooled = hidden_states.mean(1)
        else:
            mask = self.base.frame_mask(attention_mask, hidden_states.shape[1])
            hidden_states = hidden_states.masked_fill(~mask[..., None], 0.0)
            pooled = hidden_states.sum(1) / mask.sum(1, keepdim=True).to(hidden_states.dtype)
        return ModelOutput(logits=self.classifier(pooled), hidden_states=out.get("hidden_states"))


def speech_heads(model: type, ctc: type, classifier: type) -> dict[str, type]:
    """A Wav2Vec2-shaped family's heads table (HuBERT and WavLM have the same)."""
    return {"AutoModel": model, "AutoModelForCTC": ctc, "AutoModelForAudioClassification": classifier,
            "AutoModelForSequenceClassification": classifier}


def speech_variant_heads(variant: type, model: type, prefix: str) -> dict[str, type]:
    """A family that is Wav2Vec2 with ``variant`` mixed in (its model_type, prefix and
    defaults) over its own base ``model``: the CTC and classification heads, named as the
    reference names them; the caller binds them to module names too."""
    def make(name: str, base: type) -> type:
        return type(name, (variant, base), {"base_class": model, "__module__": model.__module__,
                                            "__qualname__": name})
    return speech_heads(model, make(f"{prefix}ForCTC", Wav2Vec2ForCTC),
                        make(f"{prefix}ForSequenceClassification", Wav2Vec2ForSequenceClassification))


HEADS = speech_heads(Wav2Vec2Model, Wav2Vec2ForCTC, Wav2Vec2ForSequenceClassification)
