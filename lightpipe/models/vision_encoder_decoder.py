"""Vision encoder-decoder (``model_type: vision-encoder-decoder``): an image encoder (ViT, or
any lightpipe family with an ``AutoModel``) and a GPT-2 decoder with cross-attention, the
captioners ``ydshieh/vit-gpt2-coco-en`` and ``nlpconnect/vit-gpt2-image-captioning``.

Matches transformers' ``models/vision_encoder_decoder/modeling_vision_encoder_decoder.py`` and
the cross-attention parts of ``models/gpt2/modeling_gpt2.py`` for inference. Parameter names
are the Hub checkpoints' (``encoder.embeddings.patch_embeddings.projection.weight``,
``decoder.transformer.h.0.crossattention.q_attn.weight``, ``decoder.lm_head.weight`` tied to
``decoder.transformer.wte.weight``). GPT-2's self-attention, MLP and projections come from
``gpt2.py``; what a decoder block adds here is a cross-attention (``q_attn`` on the text,
``c_attn`` giving keys and values of the image states) between the two.

Generation: ``encode()`` runs the image encoder once (``pixel_values`` -> states); ``decode()``
runs the decoder over new tokens with an ``EncoderDecoderCache`` (self-attention keys/values
appended; the image states projected to the decoder width by ``enc_to_dec_proj`` when the
widths differ, and their cross-attention keys/values computed, on the first step only).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..config import Config
from ..errors import InputError, UnsupportedModelError
from ..generation import GENERATION_FIELDS, GenerationConfig, GenerationMixin
from ..modeling import ModelOutput, PreTrainedModel
from .cache import EncoderDecoderCache
from .decoder import causal_mask
from .gpt2 import GPT2_DEFAULTS, Conv1D, GPT2Block
from .linear import Linear

# 1. Config fields read, with the defaults config.json may leave out. ``encoder`` and
# ``decoder`` are the two models' own configs (dicts in config.json).
VISION_ENCODER_DECODER_DEFAULTS = {
    "encoder": None,
    "decoder": None,
    "decoder_start_token_id": None,
    "is_encoder_decoder": True,
    "use_cache": True,
}


def sub_config(value: Any, name: str) -> Config:
    if isinstance(value, Config):
        return value
    if not isinstance(value, dict) or not value.get("model_type"):
        raise UnsupportedModelError(
            f"This vision-encoder-decoder config.json has no usable `{name}` config (a dict with "
            "a model_type): the checkpoint is incomplete.")
    return Config(**value)


# 2. Modules: GPT-2 blocks with cross-attention.
class GPT2CrossAttention(nn.Module):
    """Queries from the text (``q_attn``), keys and values from the image states (``c_attn``
    gives both), scaled as GPT-2's self-attention."""

    def __init__(self, config, layer_idx: int):
        super().__init__()
        width = config.n_embd
        self.num_heads, self.head_dim, self.layer_idx = config.n_head, width // config.n_head, layer_idx
        self.scale = self.head_dim ** -0.5 if config.scale_attn_weights else 1.0
        if config.scale_attn_by_inverse_layer_idx:
            self.scale /= float(layer_idx + 1)
        self.c_attn = Conv1D(2 * width, width)
        self.q_attn = Conv1D(width, width)
        self.c_proj = Conv1D(width, width)

    def forward(self, hidden_states, encoder_states, cache=None):
        batch, seq, width = hidden_states.shape

        def project():  # (batch, image tokens, 2 * width) -> 2 x (batch, heads, image tokens, head_dim)
            kv = self.c_attn(encoder_states).view(batch, -1, 2, self.num_heads, self.head_dim)
            key, value = kv.permute(2, 0, 3, 1, 4).unbind(0)
            return key, value

        key, value = cache.cross(self.layer_idx, project) if cache is not None else project()
        query = self.q_attn(hidden_states).view(batch, seq, self.num_heads, self.head_dim).transpose(1, 2)
        context = F.scaled_dot_product_attention(query, key, value, scale=self.scale)
        return self.c_proj(context.transpose(1, 2).reshape(batch, seq, width))


class GPT2CrossBlock(GPT2Block):
    """GPT-2's block with a cross-attention (and its norm) between self-attention and MLP."""

    def __init__(self, config, layer_idx: int):
        super().__init__(config, layer_idx)
        self.crossattention = GPT2CrossAttention(config, layer_idx)
        self.ln_cross_attn = nn.LayerNorm(config.n_embd, eps=config.layer_norm_epsilon)

    def forward(self, hidden_states, mask, encoder_states, cache):
        hidden_states = hidden_states + self.attn(self.ln_1(hidden_states), mask, cache)
        hidden_states = hidden_states + self.crossattention(
            self.ln_cross_attn(hidden_states), encoder_states, cache)
        return hidden_states + self.mlp(self.ln_2(hidden_states))


class GPT2CrossModel(nn.Module):
    """``decoder.transformer``: token and position embeddings, the blocks, the final norm."""

    def __init__(self, config):
        super().__init__()
        self.wte = nn.Embedding(config.vocab_size, config.n_embd)
        self.wpe = nn.Embedding(config.n_positions, config.n_embd)
        self.h = nn.ModuleList(GPT2CrossBlock(config, i) for i in range(config.n_layer))
        self.ln_f = nn.LayerNorm(config.n_embd, eps=config.layer_norm_epsilon)

    def forward(self, input_ids, encoder_states, attention_mask=None, cache=None,
                inputs_embeds=None) -> torch.Tensor:
        if inputs_embeds is None:
            inputs_embeds = self.wte(input_ids)
        past = cache.get_seq_length() if cache is not None else 0
        seq = inputs_embeds.shape[1]
        if past + seq > self.wpe.num_embeddings:
            raise InputError(f"The caption reaches position {past + seq - 1} but this decoder reads "
                             f"at most {self.wpe.num_embeddings} positions. Lower max_new_tokens.")
        positions = torch.arange(past, past + seq, device=inputs_embeds.device)
        hidden_states = inputs_embeds + self.wpe(positions)[None]
        mask = causal_mask(attention_mask, seq, past, hidden_states.device)
        for block in self.h:
            hidden_states = block(hidden_states, mask, encoder_states, cache)
        return self.ln_f(hidden_states)


class GPT2CaptionDecoder(nn.Module):
    """``decoder``: GPT2LMHeadModel with cross-attention (``transformer`` and ``lm_head``)."""

    def __init__(self, config):
        super().__init__()
        self.config = config
        self.transformer = GPT2CrossModel(config)
        self.lm_head = Linear(config.n_embd, config.vocab_size, bias=False)


def decoder_module(config: Config) -> nn.Module:
    model_type = config.get("model_type")
    if model_type != "gpt2":
        raise UnsupportedModelError(
            f"This vision-encoder-decoder has a {model_type!r} decoder; lightpipe implements the "
            "GPT-2 decoder (vit-gpt2 captioners) only.")
    config.set_defaults(GPT2_DEFAULTS)
    if not config.add_cross_attention:
        raise UnsupportedModelError("The decoder config has add_cross_attention=false: a decoder "
                                    "that cannot read the image. The checkpoint is not a captioner.")
    return GPT2CaptionDecoder(config)


def encoder_module(config: Config) -> nn.Module:
    from . import heads_for

    heads = heads_for(config.get("model_type"))
    if "AutoModel" not in heads:
        raise UnsupportedModelError(f"lightpipe has no base model for the {config.get('model_type')!r} "
                                    "image encoder.")
    return heads["AutoModel"](config)


def _prefixed(patterns: list[str], prefix: str) -> list[str]:
    """A sub-model's weight-name regexes, for its names under ``prefix.``."""
    return [f"^{prefix}\\.{p[1:]}" if p.startswith("^") else p for p in patterns]


# 3. The model (transformers has one class for every head).
class VisionEncoderDecoderModel(GenerationMixin, PreTrainedModel):
    """``model(pixel_values, decoder_input_ids)`` -> ``logits``; ``model.generate(pixel_values)``
    -> caption token ids (starting with ``decoder_start_token_id``)."""

    model_type = "vision-encoder-decoder"
    config_defaults = VISION_ENCODER_DECODER_DEFAULTS
    main_input_name = "pixel_values"
    is_encoder_decoder = True
    learned_positions = True
    ignored_weights = [r"\.attn\.bias$", r"\.attn\.masked_bias$", r"\.crossattention\.bias$",
                       r"\.crossattention\.masked_bias$"]

    def __init__(self, config):
        super().__init__(config)
        encoder_config = sub_config(config.encoder, "encoder")
        decoder_config = sub_config(config.decoder, "decoder")
        self.encoder = encoder_module(encoder_config)
        self.decoder = decoder_module(decoder_config)
        encoder_width = encoder_config.get("hidden_size")
        if encoder_width is None:  # e.g. ConvNeXt/Swin: the last stage's width
            sizes = encoder_config.get("hidden_sizes")
            encoder_width = sizes[-1] if sizes else encoder_config.get("embed_dim")
        if encoder_width != decoder_config.n_embd:
            self.enc_to_dec_proj = nn.Linear(encoder_width, decoder_config.n_embd)
        encoder_class = type(self.encoder)
        self.ignored_weights = self.ignored_weights + _prefixed(
            list(getattr(encoder_class, "ignored_weights", [])), "encoder")
        self.optional_weights = _prefixed(list(getattr(encoder_class, "optional_weights", [])), "encoder")

    def active_ties(self) -> dict[str, str]:
        if self.decoder.config.get("tie_word_embeddings", True):
            return {"decoder.lm_head.weight": "decoder.transformer.wte.weight"}
        return {}

    def get_input_embeddings(self) -> nn.Embedding:
        return self.decoder.transformer.wte

    def get_output_embeddings(self) -> nn.Module:
        return self.decoder.lm_head

    def max_positions(self) -> int:
        return self.decoder.config.n_positions

    def default_generation_config(self) -> GenerationConfig:
        """With no generation_config.json: config.json's settings, then (where unset) the
        decoder's config's, as transformers does (a captioner's eos_token_id is often only
        in its GPT-2 decoder config)."""
        return sub_model_generation_config(self.config, "decoder")

    # -- the two halves, as generate() calls them
    def encoder_states(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """(batch, channels, height, width) -> the encoder's last hidden state (batch, tokens,
        encoder width)."""
        if not isinstance(pixel_values, torch.Tensor) or pixel_values.dim() != 4:
            raise InputError("VisionEncoderDecoderModel takes pixel_values of shape (batch, "
                             "channels, height, width): use its image processor to make them.")
        states = self.encoder(pixel_values=pixel_values).last_hidden_state
        if states.dim() == 4:  # a convolutional encoder's map: (batch, C, H, W) -> (batch, H*W, C)
            states = states.flatten(2).transpose(1, 2)
        return states

    def project(self, encoder_states: torch.Tensor) -> torch.Tensor:
        """Encoder states -> the decoder's width (``enc_to_dec_proj``, when the widths differ)."""
        projection = getattr(self, "enc_to_dec_proj", None)
        return encoder_states if projection is None else projection(encoder_states)

    def encode(self, pixel_values: torch.Tensor, attention_mask: Any = None) -> torch.Tensor:
        """The encoder's states, as generate() keeps them (``decode()`` projects them: so
        ``generate(encoder_outputs=...)`` takes the encoder's own states, as the reference)."""
        return self.encoder_states(pixel_values)

    def decode(self, decoder_input_ids, encoder_hidden_states, encoder_attention_mask=None,
               cache=None, use_cache: bool = False, logits_to_keep: int = 0,
               decoder_attention_mask=None, decoder_inputs_embeds=None) -> ModelOutput:
        """Logits of the decoder over new tokens, after the ``cache``'s past ones, attending to
        the encoder's states (projected here). The image has no padding:
        ``encoder_attention_mask`` is ignored, as the reference does."""
        if use_cache and cache is None:
            cache = EncoderDecoderCache()
        if cache is None or len(cache.cross_keys) < len(self.decoder.transformer.h):
            # (after the first cached step only the cross keys/values are read, not the states)
            encoder_hidden_states = self.project(encoder_hidden_states)
        hidden_states = self.decoder.transformer(decoder_input_ids, encoder_hidden_states,
                                                 decoder_attention_mask, cache, decoder_inputs_embeds)
        if logits_to_keep:
            hidden_states = hidden_states[:, -logits_to_keep:]
        return ModelOutput(logits=self.decoder.lm_head(hidden_states), cache=cache if use_cache else None)

    def forward(self, pixel_values=None, decoder_input_ids=None, decoder_attention_mask=None,
                encoder_outputs=None, cache=None, past_key_values=None, decoder_inputs_embeds=None,
                use_cache=None, logits_to_keep: int = 0, **unused) -> ModelOutput:
        if encoder_outputs is None:
            if pixel_values is None:
                raise InputError("Pass pixel_values (or encoder_outputs).")
            encoder_states = self.encoder_states(pixel_values)
        elif isinstance(encoder_outputs, torch.Tensor):
            encoder_states = encoder_outputs
        else:  # a ModelOutput / dict or a tuple, as the reference takes them
            encoder_states = (encoder_outputs["last_hidden_state"] if isinstance(encoder_outputs, dict)
                              else encoder_outputs[0])
        if decoder_input_ids is None and decoder_inputs_embeds is None:
            raise InputError("Pass decoder_input_ids (e.g. [[decoder_start_token_id]]) to the "
                             "forward, or use generate().")
        cache = cache if cache is not None else past_key_values
        use_cache = bool(use_cache if use_cache is not None else cache is not None)
        out = self.decode(decoder_input_ids, encoder_states, cache=cache, use_cache=use_cache,
                          logits_to_keep=logits_to_keep, decoder_attention_mask=decoder_attention_mask,
                          decoder_inputs_embeds=decoder_inputs_embeds)
        return ModelOutput(logits=out.logits, cache=out.get("cache"),
                           encoder_last_hidden_state=encoder_states)


def sub_model_generation_config(config: Config, name: str,
                                defaults: dict | None = None) -> GenerationConfig:
    """config.json's generation fields, then those its sub-model's config ``name`` (over
    ``defaults``) sets where config.json leaves them unset, as transformers'
    ``GenerationConfig.from_model_config``."""
    generation = GenerationConfig.from_model_config(config)
    sub = config.get(name)
    sub = sub.to_dict() if isinstance(sub, Config) else dict(sub or {})
    sub = {**(defaults or {}), **{k: v for k, v in sub.items() if v is not None}}
    for field in GENERATION_FIELDS:
        if getattr(generation, field, None) is None and sub.get(field) is not None:
            setattr(generation, field, sub[field])
    return generation


HEADS = {
    "AutoModelForVision2Seq": VisionEncoderDecoderModel,
    "AutoModel": VisionEncoderDecoderModel,
}
