"""BLIP captioning (Li et al., 2022, arXiv:2201.12086): ``BlipForConditionalGeneration``, a
ViT image encoder and a BERT-style text decoder with cross-attention
(``Salesforce/blip-image-captioning-base``); captions from the image alone, or continuing a
prompt ("a photography of").

Matches transformers' ``models/blip/modeling_blip.py`` and ``modeling_blip_text.py`` for
inference. Parameter names are the Hub checkpoints' (``vision_model.encoder.layers.0.self_attn.
qkv.weight``, ``text_decoder.bert.encoder.layer.0.crossattention.self.key.weight``,
``text_decoder.cls.predictions.decoder.weight`` tied to the word embeddings). The text
decoder's post-norm blocks and LM head are BERT's (``bert.py``).

Generation runs through the encoder-decoder path of ``generate()``: ``encode()`` runs the
vision model once; the text decoder's prompt is ``[DEC]`` (bos) followed by the prompt's
tokens (the tokenizer's [CLS] replaced, its final [SEP] dropped, as the reference); the caption
ends at [SEP].
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import InputError
from ..generation import GenerationConfig, GenerationMixin
from ..modeling import ModelOutput, PreTrainedModel
from ..processing.image import OPENAI_CLIP_MEAN, OPENAI_CLIP_STD, ImageProcessor
from .bert import BertOnlyMLMHead, BertOutput, BertSelfOutput
from .cache import EncoderDecoderCache
from .clip import CLIPEncoder, sub_config
from .decoder import causal_mask
from .layers import Intermediate, merge_heads, padding_mask, split_heads
from .vision_encoder_decoder import sub_model_generation_config

# 1. Config fields read, with the defaults config.json may leave out (BlipConfig's).
BLIP_DEFAULTS = {"text_config": None, "vision_config": None, "is_encoder_decoder": False}
VISION_DEFAULTS = {"hidden_size": 768, "intermediate_size": 3072, "num_hidden_layers": 12,
                   "num_attention_heads": 12, "image_size": 384, "patch_size": 16,
                   "hidden_act": "gelu", "layer_norm_eps": 1e-5, "num_channels": 3}
TEXT_DEFAULTS = {"vocab_size": 30524, "hidden_size": 768, "encoder_hidden_size": 768,
                 "intermediate_size": 3072, "num_hidden_layers": 12, "num_attention_heads": 8,
                 "max_position_embeddings": 512, "hidden_act": "gelu", "layer_norm_eps": 1e-12,
                 "hidden_dropout_prob": 0.0, "bos_token_id": 30522, "eos_token_id": 2,
                 "pad_token_id": 0, "sep_token_id": 102, "use_cache": True,
                 "tie_word_embeddings": True}


# 2a. The vision model: a pre-norm ViT with a fused qkv projection.
class BlipVisionEmbeddings(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.patch_size = config.patch_size
        self.image_size = config.image_size
        self.class_embedding = nn.Parameter(torch.zeros(1, 1, config.hidden_size))
        self.patch_embedding = nn.Conv2d(3, config.hidden_size, kernel_size=config.patch_size,
                                         stride=config.patch_size)
        positions = (config.image_size // config.patch_size) ** 2 + 1
        self.position_embedding = nn.Parameter(torch.zeros(1, positions, config.hidden_size))

    def forward(self, pixel_values):
        batch, _, height, width = pixel_values.shape
        if (height, width) != (self.image_size, self.image_size):
            raise InputError(f"The images are {height}x{width} pixels but this model reads "
                             f"{self.image_size}x{self.image_size}. Resize them with the model's "
                             "image processor.")
        weight = self.patch_embedding.weight
        patches = self.patch_embedding(pixel_values.to(weight.dtype)).flatten(2).transpose(1, 2)
        embeddings = torch.cat((self.class_embedding.expand(batch, 1, -1).to(weight.dtype), patches), dim=1)
        return embeddings + self.position_embedding[:, :embeddings.shape[1]].to(weight.dtype)


class BlipAttention(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.num_heads = config.num_attention_heads
        self.qkv = nn.Linear(config.hidden_size, 3 * config.hidden_size)
        self.projection = nn.Linear(config.hidden_size, config.hidden_size)

    def forward(self, hidden_states, mask=None):
        batch, seq, width = hidden_states.shape
        # (batch, seq, 3 * width) -> 3 x (batch, heads, seq, head_dim)
        qkv = self.qkv(hidden_states).view(batch, seq, 3, self.num_heads, width // self.num_heads)
        query, key, value = qkv.permute(2, 0, 3, 1, 4).unbind(0)
        return self.projection(merge_heads(F.scaled_dot_product_attention(query, key, value, mask)))


class BlipVisionModel(nn.Module):
    """``last_hidden_state`` (batch, 1 + patches, hidden) after the final norm. The layers are
    CLIP's pre-norm layers with BLIP's attention."""

    def __init__(self, config):
        super().__init__()
        self.config = config
        self.embeddings = BlipVisionEmbeddings(config)
        self.encoder = CLIPEncoder(config, BlipAttention)
        self.post_layernorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)

    def forward(self, pixel_values):
        hidden_states, _ = self.encoder(self.embeddings(pixel_values))
        return self.post_layernorm(hidden_states)


# 2b. The text decoder: BERT's post-norm layers, causal, with cross-attention to the image.
class BlipTextSelfAttention(nn.Module):
    def __init__(self, config, layer_idx: int, cross: bool):
        super().__init__()
        self.num_heads, self.layer_idx = config.num_attention_heads, layer_idx
        source = config.encoder_hidden_size if cross else config.hidden_size
        self.query = nn.Linear(config.hidden_size, config.hidden_size)
        self.key = nn.Linear(source, config.hidden_size)
        self.value = nn.Linear(source, config.hidden_size)

    def forward(self, hidden_states, mask, cache, encoder_states=None):
        query = split_heads(self.query(hidden_states), self.num_heads)  # (batch, heads, seq, head_dim)
        if encoder_states is None:  # causal self-attention over the cache and the new tokens
            key = split_heads(self.key(hidden_states), self.num_heads)
            value = split_heads(self.value(hidden_states), self.num_heads)
            if cache is not None:
                key, value = cache.update(key, value, self.layer_idx)
            causal = mask is None and query.shape[2] > 1
            return merge_heads(F.scaled_dot_product_attention(query, key, value, attn_mask=mask,
                                                              is_causal=causal))

        def project():
            return (split_heads(self.key(encoder_states), self.num_heads),
                    split_heads(self.value(encoder_states), self.num_heads))

        key, value = cache.cross(self.layer_idx, project) if cache is not None else project()
        return merge_heads(F.scaled_dot_product_attention(query, key, value, attn_mask=mask))


class BlipTextAttention(nn.Module):
    def __init__(self, config, layer_idx: int, cross: bool = False):
        super().__init__()
        self.self = BlipTextSelfAttention(config, layer_idx, cross)
        self.output = BertSelfOutput(config)

    def forward(self, hidden_states, mask, cache, encoder_states=None):
        return self.output(self.self(hidden_states, mask, cache, encoder_states), hidden_states)


class BlipTextLayer(nn.Module):
    def __init__(self, config, layer_idx: int):
        super().__init__()
        self.attention = BlipTextAttention(config, layer_idx)
        self.crossattention = BlipTextAttention(config, layer_idx, cross=True)
        self.intermediate = Intermediate(config)
        self.output = BertOutput(config)

    def forward(self, hidden_states, mask, encoder_states, cross_mask, cache):
        hidden_states = self.attention(hidden_states, mask, cache)
        hidden_states = self.crossattention(hidden_states, cross_mask, cache, encoder_states)
        return self.output(self.intermediate(hidden_states), hidden_states)


class BlipTextEmbeddings(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.word_embeddings = nn.Embedding(config.vocab_size, config.hidden_size,
                                            padding_idx=config.pad_token_id)
        self.position_embeddings = nn.Embedding(config.max_position_embeddings, config.hidden_size)
        self.LayerNorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)

    def forward(self, input_ids, past: int):
        end = past + input_ids.shape[1]
        if end > self.position_embeddings.num_embeddings:
            raise InputError(f"The caption reaches position {end - 1} but this decoder reads at most "
                             f"{self.position_embeddings.num_embeddings} positions. Lower max_new_tokens.")
        positions = self.position_embeddings.weight[past:end]
        return self.LayerNorm(self.word_embeddings(input_ids) + positions)


class BlipTextEncoder(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.layer = nn.ModuleList(BlipTextLayer(config, i) for i in range(config.num_hidden_layers))


class BlipTextModel(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.embeddings = BlipTextEmbeddings(config)
        self.encoder = BlipTextEncoder(config)


class BlipTextLMHeadModel(nn.Module):
    """``text_decoder``: ``bert`` and BERT's LM head ``cls``."""

    def __init__(self, config):
        super().__init__()
        self.config = config
        self.bert = BlipTextModel(config)
        self.cls = BertOnlyMLMHead(config)


# 3. The captioning model.
class BlipForConditionalGeneration(GenerationMixin, PreTrainedModel):
    """``model(pixel_values, input_ids)`` -> ``logits``; ``model.generate(pixel_values[,
    input_ids=prompt ids])`` -> ``[DEC]`` + prompt + caption ids."""

    model_type = "blip"
    config_defaults = BLIP_DEFAULTS
    main_input_name = "pixel_values"
    is_encoder_decoder = True
    prepend_decoder_start = False  # generate() builds the decoder's prompt itself
    tied_weights = {"text_decoder.cls.predictions.decoder.weight":
                    "text_decoder.bert.embeddings.word_embeddings.weight",
                    "text_decoder.cls.predictions.decoder.bias": "text_decoder.cls.predictions.bias"}
    ignored_weights = [r"position_ids$", r"^text_encoder\.", r"^vision_proj\.", r"^text_proj\.",
                       r"^itm_head\.", r"^logit_scale$"]

    def __init__(self, config):
        super().__init__(config)
        self.vision_config = sub_config(config.vision_config, VISION_DEFAULTS)
        self.text_config = sub_config(config.text_config, TEXT_DEFAULTS)
        self.vision_model = BlipVisionModel(self.vision_config)
        self.text_decoder = BlipTextLMHeadModel(self.text_config)

    def active_ties(self) -> dict[str, str]:
        ties = dict(self.tied_weights)
        if not self.text_config.tie_word_embeddings:
            ties.pop("text_decoder.cls.predictions.decoder.weight")
        return ties

    def get_input_embeddings(self) -> nn.Embedding:
        return self.text_decoder.bert.embeddings.word_embeddings

    def max_positions(self) -> int:
        return self.text_config.max_position_embeddings

    def default_generation_config(self) -> GenerationConfig:
        """With no generation_config.json: config.json's settings, then (where unset) its text
        config's, as the reference's ``GenerationConfig.from_model_config``."""
        return sub_model_generation_config(self.config, "text_config", TEXT_DEFAULTS)

    def encode(self, pixel_values: torch.Tensor, attention_mask: Any = None) -> torch.Tensor:
        """(batch, 3, height, width) -> image states (batch, 1 + patches, vision hidden)."""
        if not isinstance(pixel_values, torch.Tensor) or pixel_values.dim() != 4:
            raise InputError("BLIP takes pixel_values of shape (batch, 3, height, width): use its "
                             "image processor to make them.")
        return self.vision_model(pixel_values)

    def decode(self, decoder_input_ids, encoder_hidden_states, encoder_attention_mask=None,
               cache=None, use_cache: bool = False, logits_to_keep: int = 0,
               decoder_attention_mask=None) -> ModelOutput:
        if use_cache and cache is None:
            cache = EncoderDecoderCache()
        past = cache.get_seq_length() if cache is not None else 0
        seq = decoder_input_ids.shape[1]
        bert = self.text_decoder.bert
        hidden_states = bert.embeddings(decoder_input_ids, past)
        mask = causal_mask(decoder_attention_mask, seq, past, hidden_states.device)
        cross_mask = padding_mask(encoder_attention_mask)
        for layer in bert.encoder.layer:
            hidden_states = layer(hidden_states, mask, encoder_hidden_states, cross_mask, cache)
        if logits_to_keep:
            hidden_states = hidden_states[:, -logits_to_keep:]
        return ModelOutput(logits=self.text_decoder.cls(hidden_states), cache=cache if use_cache else None)

    def forward(self, pixel_values=None, input_ids=None, attention_mask=None, cache=None,
                use_cache: bool = False, logits_to_keep: int = 0, **unused) -> ModelOutput:
        if pixel_values is None or input_ids is None:
            raise InputError("BlipForConditionalGeneration needs pixel_values and input_ids (the "
                             "text, starting with [DEC]); use generate() to caption.")
        image_embeds = self.encode(pixel_values)
        out = self.decode(input_ids, image_embeds, cache=cache, use_cache=use_cache,
                          logits_to_keep=logits_to_keep, decoder_attention_mask=attention_mask)
        return ModelOutput(logits=out.logits, cache=out.get("cache"), image_embeds=image_embeds,
                           last_hidden_state=image_embeds)

    @torch.inference_mode()
    def generate(self, pixel_values: torch.Tensor | None = None, input_ids: Any = None,
                 attention_mask: Any = None, **kwargs: Any):
        """Caption ``pixel_values``; ``input_ids`` (the tokenizer's [CLS] prompt [SEP]) start the
        caption. Returns [DEC] + prompt + caption ids, ending with [SEP] (the end token)."""
        if pixel_values is None:
            pixel_values = kwargs.pop("inputs", None)
        if not isinstance(pixel_values, torch.Tensor) or pixel_values.dim() != 4:
            raise InputError("BLIP's generate() takes pixel_values of shape (batch, 3, height, "
                             "width): use its image processor to make them.")
        text = self.text_config
        batch = pixel_values.shape[0]
        if input_ids is None:
            prompt = torch.full((batch, 1), text.bos_token_id, dtype=torch.long)
        else:
            prompt = torch.as_tensor(input_ids, dtype=torch.long).clone()
            if prompt.dim() != 2 or prompt.shape[1] < 2:
                raise InputError("input_ids must be the tokenizer's (batch, length) ids of the prompt, "
                                 "with its [CLS] and [SEP].")
            prompt[:, 0] = text.bos_token_id
            prompt = prompt[:, :-1]
        for name in ("decoder_input_ids", "decoder_attention_mask"):
            kwargs.pop(name, None)
        if kwargs.pop("interpolate_pos_encoding", False):
            raise InputError("interpolate_pos_encoding=True is not supported by lightpipe's BLIP: "
                             "resize the images with the model's image processor.")
        kwargs.setdefault("eos_token_id", text.sep_token_id)
        kwargs.setdefault("pad_token_id", text.pad_token_id)
        return super().generate(pixel_values, decoder_input_ids=prompt.to(pixel_values.device), **kwargs)


# The image processor (transformers' BlipImageProcessor): a square resize, CLIP's statistics.
class BlipImageProcessor(ImageProcessor):
    image_processor_type = "BlipImageProcessor"
    defaults = {**ImageProcessor.defaults, "size": {"height": 384, "width": 384}, "resample": 3,
                "image_mean": OPENAI_CLIP_MEAN, "image_std": OPENAI_CLIP_STD, "do_convert_rgb": True}


HEADS = {"AutoModelForVision2Seq": BlipForConditionalGeneration}
