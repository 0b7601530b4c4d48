"""Bark (Suno, 2023, github.com/suno-ai/bark): text -> semantic tokens -> coarse EnCodec codes
-> fine EnCodec codes -> 24 kHz audio.

Matches transformers' ``models/bark/modeling_bark.py`` at inference. Three GPT-style stages:
the semantic model (causal; the text, offset by ``text_encoding_offset``, summed with a
speaker's semantic history, then ``semantic_infer_token``), the coarse acoustics model (causal;
the first ``n_coarse_codebooks`` codebooks interleaved, generated in windows of
``sliding_window_len`` over a history of at most ``max_coarse_history`` codes), and the fine
acoustics model (non-causal; codebook n predicted from the embeddings of codebooks 0..n summed,
one embedding table and one head per codebook). EnCodec (``encodec.py``) decodes the codes.
Each stage's settings are in the nested ``generation_config.json`` (``semantic_config``,
``coarse_acoustics_config``, ``fine_acoustics_config``), read as the reference's
``Bark*GenerationConfig`` classes read them. Parameter names are the checkpoints'
(``semantic.layers.0.attn.att_proj.weight``); the saved causal-mask buffers are dropped.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..errors import InputError
from ..generation import GenerationConfig, GenerationMixin
from ..generation.processors import SuppressTokensLogitsProcessor
from ..modeling import ModelOutput, PreTrainedModel
from .cache import open_cache
from .clip import sub_config
from .decoder import causal_mask, decoder_attention, lm_logits
from .encodec import ENCODEC_DEFAULTS, EncodecModel
from .layers import attention, check_heads, padding_mask
from .linear import Linear

# 1. Config fields read, with the defaults config.json may leave out (BarkSubModelConfig's).
SUB_DEFAULTS: dict[str, Any] = {
    "block_size": 1024, "input_vocab_size": 10_048, "output_vocab_size": 10_048, "num_layers": 12,
    "num_heads": 12, "hidden_size": 768, "bias": True, "use_cache": True,
}
FINE_DEFAULTS: dict[str, Any] = {**SUB_DEFAULTS, "n_codes_total": 8, "n_codes_given": 1,
                                 "tie_word_embeddings": True}
# Each stage's generation settings when generation_config.json leaves them out (the
# reference's BarkSemanticGenerationConfig / BarkCoarseGenerationConfig / BarkFineGenerationConfig).
SEMANTIC_GENERATION: dict[str, Any] = {
    "eos_token_id": 10_000, "renormalize_logits": True, "max_new_tokens": 768,
    "output_scores": False, "return_dict_in_generate": False, "temperature": 1.0,
    "do_sample": False, "text_encoding_offset": 10_048, "text_pad_token": 129_595,
    "semantic_infer_token": 129_599, "semantic_vocab_size": 10_000,
    "max_input_semantic_length": 256, "semantic_rate_hz": 49.9, "min_eos_p": None,
}
COARSE_GENERATION: dict[str, Any] = {
    "renormalize_logits": True, "output_scores": False, "return_dict_in_generate": False,
    "temperature": 1.0, "do_sample": False, "coarse_semantic_pad_token": 12_048,
    "coarse_rate_hz": 75, "n_coarse_codebooks": 2, "coarse_infer_token": 12_050,
    "max_coarse_input_length": 256, "max_coarse_history": 630, "sliding_window_len": 60,
}
FINE_GENERATION: dict[str, Any] = {"temperature": 1.0, "max_fine_history_length": 512,
                                   "max_fine_input_length": 1024, "n_fine_codebooks": 8}


def stage_config(settings: Any, defaults: dict[str, Any]) -> GenerationConfig:
    """One stage's GenerationConfig: its generation_config.json entry over its defaults."""
    if settings is not None and not isinstance(settings, dict):
        settings = settings.to_dict()
    config = GenerationConfig(**{**defaults, **(settings or {})})
    if "semantic_infer_token" in defaults:
        config.semantic_pad_token = config.eos_token_id  # as the reference: always the EOS
    return config


# 2. Modules.
class BarkSelfAttention(nn.Module):
    """Multi-head attention over one ``att_proj`` (queries, keys, values side by side)."""

    def __init__(self, config, layer_idx: int, causal: bool):
        super().__init__()
        check_heads(config.hidden_size, config.num_heads)
        self.num_heads, self.layer_idx, self.causal = config.num_heads, layer_idx, causal
        self.att_proj = Linear(config.hidden_size, 3 * config.hidden_size, bias=config.bias)
        self.out_proj = Linear(config.hidden_size, config.hidden_size, bias=config.bias)

    def forward(self, hidden_states, mask, cache=None):
        batch, seq, width = hidden_states.shape
        # (batch, seq, 3 * width) -> 3 x (batch, heads, seq, head_dim)
        qkv = self.att_proj(hidden_states).view(batch, seq, 3, self.num_heads, width // self.num_heads)
        query, key, value = qkv.permute(2, 0, 3, 1, 4).unbind(0)
        if cache is not None:
            key, value = cache.update(key, value, self.layer_idx)
        if self.causal:
            context = decoder_attention(query, key, value, mask)
        else:
            context = attention(query, key, value, mask)
        return self.out_proj(context.transpose(1, 2).reshape(batch, seq, width))


class BarkMLP(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.in_proj = Linear(config.hidden_size, 4 * config.hidden_size, bias=config.bias)
        self.out_proj = Linear(4 * config.hidden_size, config.hidden_size, bias=config.bias)

    def forward(self, hidden_states):
        return self.out_proj(F.gelu(self.in_proj(hidden_states)))


class BarkBlock(nn.Module):
    """Pre-norm block; the causal stages' norms follow ``config.bias``, the fine stage's have one."""

    def __init__(self, config, layer_idx: int, causal: bool):
        super().__init__()
        bias = config.bias if causal else True
        self.layernorm_1 = nn.LayerNorm(config.hidden_size, bias=bias)
        self.attn = BarkSelfAttention(config, layer_idx, causal)
        self.layernorm_2 = nn.LayerNorm(config.hidden_size, bias=bias)
        self.mlp = BarkMLP(config)

    def forward(self, hidden_states, mask, cache=None):
        hidden_states = hidden_states + self.attn(self.layernorm_1(hidden_states), mask, cache)
        return hidden_states + self.mlp(self.layernorm_2(hidden_states))


class BarkEosPrioritizerLogitsProcessor:
    """Only the EOS is left once its probability passes ``min_eos_p`` (Bark's early stop)."""

    def __init__(self, eos_token_id: int | list[int], min_eos_p: float | None):
        if min_eos_p is not None and min_eos_p <= 0:
            raise ValueError(f"`min_eos_p` has to be a positive float, but is {min_eos_p}")
        self.eos = torch.tensor([eos_token_id] if isinstance(eos_token_id, int) else list(eos_token_id))
        self.min_eos_p = min_eos_p

    def __call__(self, input_ids, scores):
        if not self.min_eos_p:
            return scores
        eos = self.eos.to(scores.device)
        probs = scores.float().softmax(dim=-1)
        only_eos = torch.full_like(scores, -math.inf)
        only_eos[:, eos] = scores[:, eos]
        stop = (probs[:, eos] > self.min_eos_p).any(dim=1, keepdim=True)
        return torch.where(stop, only_eos, scores)


class AlternatingCodebooksLogitsProcessor:
    """The coarse stage's codes alternate between its two codebooks' id ranges."""

    def __init__(self, input_start_len: int, semantic_vocab_size: int, codebook_size: int):
        self.start, self.offset, self.codebook_size = input_start_len, semantic_vocab_size, codebook_size

    def __call__(self, input_ids, scores):
        scores = scores.clone()
        if (input_ids.shape[-1] - self.start) % 2 == 0:  # the first codebook's turn
            scores[:, :self.offset] = -math.inf
            scores[:, self.offset + self.codebook_size:] = -math.inf
        else:
            scores[:, :self.offset + self.codebook_size] = -math.inf
        return scores


class BarkPreTrainedModel(PreTrainedModel):
    config_defaults = SUB_DEFAULTS
    ignored_weights = [r"\.attn\.bias$"]  # the causal-mask buffers the checkpoints hold


class BarkCausalModel(GenerationMixin, BarkPreTrainedModel):
    """The GPT of the semantic and coarse stages: ``logits`` (batch, seq, output_vocab_size)."""

    learned_positions = True

    def __init__(self, config):
        super().__init__(config)
        self.input_embeds_layer = nn.Embedding(config.input_vocab_size, config.hidden_size)
        self.position_embeds_layer = nn.Embedding(config.block_size, config.hidden_size)
        self.layers = nn.ModuleList(BarkBlock(config, i, causal=True) for i in range(config.num_layers))
        self.layernorm_final = nn.LayerNorm(config.hidden_size, bias=config.bias)
        self.lm_head = Linear(config.hidden_size, config.output_vocab_size, bias=False)

    def max_positions(self) -> int:
        # The last new token is never read back, so block_size + 1 tokens fit: the reference's
        # 256 + 1 prompt positions and 768 new semantic tokens need 1025.
        return self.config.block_size + 1

    def get_input_embeddings(self) -> nn.Embedding:
        return self.input_embeds_layer

    def default_generation_config(self) -> GenerationConfig:
        return GenerationConfig()  # the stage settings come from BarkModel's nested config

    def forward(self, input_ids=None, attention_mask=None, position_ids=None, cache=None,
                inputs_embeds=None, use_cache=None, logits_to_keep: int = 0, past_key_values=None,
                **unused) -> ModelOutput:
        if (input_ids is None) == (inputs_embeds is None):
            raise InputError("Pass exactly one of input_ids and inputs_embeds.")
        if inputs_embeds is None:
            inputs_embeds = self.input_embeds_layer(input_ids)
        cache, use_cache = open_cache(cache, past_key_values, use_cache, self.config)
        seq = inputs_embeds.shape[1]
        past = cache.get_seq_length() if cache is not None else 0
        if position_ids is None:
            position_ids = torch.arange(past, past + seq, device=inputs_embeds.device)[None, :]
        if int(position_ids.max()) >= self.config.block_size:
            raise InputError(f"The input reaches position {int(position_ids.max())} but this Bark "
                             f"stage reads at most {self.config.block_size} (block_size).")
        hidden_states = inputs_embeds + self.position_embeds_layer(position_ids)
        mask = causal_mask(attention_mask, seq, past, hidden_states.device)
        for block in self.layers:
            hidden_states = block(hidden_states, mask, cache)
        out = ModelOutput(last_hidden_state=self.layernorm_final(hidden_states),
                          cache=cache if use_cache else None)
        return lm_logits(self.lm_head, out, logits_to_keep)


def _sequences(output: Any) -> torch.Tensor:
    return output["sequences"] if isinstance(output, dict) else output


class BarkSemanticModel(BarkCausalModel):
    """Text -> semantic tokens."""

    def generate(self, input_ids: torch.Tensor, semantic_generation_config: GenerationConfig | None = None,
                 history_prompt: dict | None = None, attention_mask: torch.Tensor | None = None,
                 **kwargs: Any) -> torch.Tensor:
        """The semantic tokens (batch, new tokens; rows that end early padded with the EOS).
        ``input_ids`` are the text's (the BarkProcessor pads them to 256)."""
        config = semantic_generation_config or stage_config(None, SEMANTIC_GENERATION)
        if not isinstance(input_ids, torch.Tensor) or input_ids.dim() != 2 or input_ids.shape[1] == 0:
            raise InputError("Bark needs input_ids as a (batch, tokens) tensor: the BarkProcessor "
                             "(or the tokenizer with return_tensors='pt') gives one.")
        batch, length = input_ids.shape[0], config.max_input_semantic_length
        input_ids = input_ids.to(self.device) + config.text_encoding_offset
        if attention_mask is not None:
            input_ids = input_ids.masked_fill(~attention_mask.to(input_ids.device).bool(), config.text_pad_token)
        if input_ids.shape[1] < length:  # (the reference needs them padded to the full length)
            input_ids = F.pad(input_ids, (0, length - input_ids.shape[1]), value=config.text_pad_token)
        if history_prompt is not None:
            history = torch.as_tensor(history_prompt["semantic_prompt"], device=self.device)[-length:]
            history = F.pad(history, (0, length - len(history)), value=config.semantic_pad_token)
        else:
            history = torch.full((length,), config.semantic_pad_token, dtype=torch.int, device=self.device)
        history = history[None].repeat_interleave(batch, dim=0)
        infer = torch.full((batch, 1), config.semantic_infer_token, dtype=torch.int, device=self.device)
        embed = self.input_embeds_layer
        inputs_embeds = torch.cat([embed(input_ids[:, :length]) + embed(history[:, :length + 1]),
                                   embed(infer)], dim=1)
        suppressed = list(range(config.semantic_vocab_size, config.semantic_pad_token)) + \
            list(range(config.semantic_pad_token + 1, self.config.output_vocab_size))
        min_eos_p = kwargs["min_eos_p"] if "min_eos_p" in kwargs else config.min_eos_p
        processors = [SuppressTokensLogitsProcessor(suppressed),
                      BarkEosPrioritizerLogitsProcessor(config.eos_token_id, min_eos_p)]
        # The reference passes ids of ones (and no mask: nothing is masked) with the embeddings.
        ids = torch.ones((batch, length + 1), dtype=torch.long, device=self.device)
        output = super().generate(ids, generation_config=config, logits_processor=processors,
                                  inputs_embeds=inputs_embeds, attention_mask=torch.ones_like(ids),
                                  **kwargs)
        return _sequences(output)[:, length + 1:]


class BarkCoarseModel(BarkCausalModel):
    """Semantic tokens -> the first codebooks' codes, interleaved, in sliding windows."""

    def preprocess_histories(self, max_coarse_history: int, semantic_to_coarse_ratio: float,
                             batch_size: int, semantic_generation_config, codebook_size: int,
                             history_prompt: dict | None = None):
        """A speaker prompt's semantic and coarse histories, trimmed to fit the ratio."""
        if history_prompt is None:
            empty = torch.zeros((batch_size, 0), dtype=torch.int, device=self.device)
            return empty, empty.clone()
        semantic = torch.as_tensor(history_prompt["semantic_prompt"], device=self.device)
        semantic = semantic[None].repeat_interleave(batch_size, dim=0)
        coarse = torch.as_tensor(history_prompt["coarse_prompt"], device=self.device).clone()
        if codebook_size is not None:
            for n in range(1, coarse.shape[0]):
                coarse[n, :] += codebook_size * n  # codebook n's ids follow codebook n-1's
        coarse = coarse.transpose(0, 1).reshape(-1) + semantic_generation_config.semantic_vocab_size
        coarse = coarse[None].repeat_interleave(batch_size, dim=0)
        max_semantic_history = int(np.floor(max_coarse_history / semantic_to_coarse_ratio))
        n_semantic = min(max_semantic_history, semantic.shape[1] - semantic.shape[1] % 2,
                         int(np.floor(coarse.shape[1] / semantic_to_coarse_ratio)))
        n_coarse = int(round(n_semantic * semantic_to_coarse_ratio))
        semantic = semantic[:, -n_semantic:].int()
        coarse = coarse[:, -n_coarse:].int()[:, :-2]  # Bark's time alignment
        return semantic, coarse

    def generate(self, semantic_output: torch.Tensor, semantic_generation_config=None,
                 coarse_generation_config=None, codebook_size: int = 1024,
                 history_prompt: dict | None = None, return_output_lengths: bool | None = None,
                 **kwargs: Any):
        """The coarse codes (batch, n_coarse_codebooks x frames), and each row's length when
        ``return_output_lengths``."""
        semantic_config = semantic_generation_config or stage_config(None, SEMANTIC_GENERATION)
        config = coarse_generation_config or stage_config(None, COARSE_GENERATION)
        if "max_new_tokens" in kwargs:
            raise InputError("The coarse stage's length follows the semantic tokens: set "
                             "semantic_max_new_tokens (not max_new_tokens / coarse_max_new_tokens).")
        window, max_history = config.sliding_window_len, config.max_coarse_history
        pad = config.coarse_semantic_pad_token
        semantic_output = semantic_output.to(self.device)
        semantic_output.masked_fill_(semantic_output == semantic_config.semantic_pad_token, pad)
        ratio = config.coarse_rate_hz / semantic_config.semantic_rate_hz * config.n_coarse_codebooks
        max_semantic_history = int(np.floor(max_history / ratio))
        output_lengths = (semantic_output != pad).sum(1)
        output_lengths = torch.floor(output_lengths * ratio / config.n_coarse_codebooks)
        output_lengths = torch.round(output_lengths * config.n_coarse_codebooks).int()
        max_generated = int(output_lengths.max()) if len(output_lengths) else 0
        batch = semantic_output.shape[0]
        semantic_history, coarse = self.preprocess_histories(
            max_history, ratio, batch, semantic_config, codebook_size, history_prompt)
        base = semantic_history.shape[1]
        semantic_output = torch.hstack([semantic_history, semantic_output])
        history_length, generated = coarse.shape[1], 0
        infer = torch.full((batch, 1), config.coarse_infer_token, dtype=semantic_output.dtype,
                           device=self.device)
        for _ in range(int(np.ceil(max_generated / window))):
            index = base + int(round(generated / ratio))
            inputs = semantic_output[:, max(0, index - max_semantic_history):][:, :config.max_coarse_input_length]
            inputs = F.pad(inputs, (0, config.max_coarse_input_length - inputs.shape[-1]), value=pad)
            inputs = torch.hstack([inputs, infer, coarse[:, -max_history:]])
            alternate = AlternatingCodebooksLogitsProcessor(
                inputs.shape[1], semantic_config.semantic_vocab_size, codebook_size)
            output = super().generate(inputs, generation_config=config, logits_processor=[alternate],
                                      max_new_tokens=min(window, max_generated - generated), **kwargs)
            coarse = torch.hstack([coarse, _sequences(output)[:, inputs.shape[1]:]])
            generated = coarse.shape[1] - history_length
        coarse = coarse[:, history_length:]
        return (coarse, output_lengths) if return_output_lengths else coarse


class BarkFineModel(BarkPreTrainedModel):
    """``forward(codebook_idx, input_ids (batch, seq, n_codes_total))`` -> that codebook's
    ``logits``; ``generate`` fills codebooks n_coarse.. from the coarse ones."""

    config_defaults = FINE_DEFAULTS
    main_input_name = "codebook_idx"

    def __init__(self, config):
        super().__init__(config)
        self.input_embeds_layers = nn.ModuleList(
            nn.Embedding(config.input_vocab_size, config.hidden_size) for _ in range(config.n_codes_total))
        self.position_embeds_layer = nn.Embedding(config.block_size, config.hidden_size)
        self.layers = nn.ModuleList(BarkBlock(config, i, causal=False) for i in range(config.num_layers))
        self.layernorm_final = nn.LayerNorm(config.hidden_size)
        self.lm_heads = nn.ModuleList(
            nn.Linear(config.hidden_size, config.output_vocab_size, bias=False)
            for _ in range(config.n_codes_given, config.n_codes_total))

    @property
    def tied_weights(self) -> dict[str, str]:  # head i predicts codebook i + 1, read by table i + 1
        return {f"lm_heads.{i}.weight": f"input_embeds_layers.{i + 1}.weight"
                for i in range(self.config.n_codes_total - self.config.n_codes_given)}

    def forward(self, codebook_idx: int, input_ids=None, attention_mask=None, position_ids=None,
                inputs_embeds=None, **unused) -> ModelOutput:
        if codebook_idx == 0:
            raise InputError("Bark's fine model predicts codebooks 1 and up: codebook 0 comes "
                             "from the coarse model.")
        if (input_ids is None) == (inputs_embeds is None):
            raise InputError("Pass exactly one of input_ids and inputs_embeds.")
        if input_ids is not None:  # the sum of codebooks 0..codebook_idx's embeddings
            inputs_embeds = torch.stack([layer(input_ids[:, :, i]) for i, layer in
                                         enumerate(self.input_embeds_layers[:codebook_idx + 1])], dim=-1).sum(-1)
        seq = inputs_embeds.shape[1]
        if position_ids is None:
            position_ids = torch.arange(seq, device=inputs_embeds.device)[None, :]
        hidden_states = inputs_embeds + self.position_embeds_layer(position_ids)
        mask = padding_mask(attention_mask)
        for block in self.layers:
            hidden_states = block(hidden_states, mask)
        hidden_states = self.layernorm_final(hidden_states)
        return ModelOutput(logits=self.lm_heads[codebook_idx - self.config.n_codes_given](hidden_states))

    @torch.inference_mode()
    def generate(self, coarse_output: torch.Tensor, semantic_generation_config=None,
                 coarse_generation_config=None, fine_generation_config=None,
                 codebook_size: int = 1024, history_prompt: dict | None = None,
                 **kwargs: Any) -> torch.Tensor:
        """All codebooks' codes (batch, n_fine_codebooks, frames). Only ``temperature`` is read
        (1.0 or None: the best code; else sampled), as the reference."""
        semantic_config = semantic_generation_config or stage_config(None, SEMANTIC_GENERATION)
        coarse_config = coarse_generation_config or stage_config(None, COARSE_GENERATION)
        config = fine_generation_config or stage_config(None, FINE_GENERATION)
        temperature = kwargs.get("temperature", config.temperature)
        max_history, max_input = config.max_fine_history_length, config.max_fine_input_length
        n_coarse, n_fine = coarse_config.n_coarse_codebooks, config.n_fine_codebooks
        batch = coarse_output.shape[0]
        coarse = coarse_output.to(self.device).view(batch, -1, n_coarse)  # (batch, frames, n_coarse)
        coarse = torch.remainder(coarse - semantic_config.semantic_vocab_size, codebook_size)
        frames = coarse.shape[1]
        codes = F.pad(coarse, (0, n_fine - n_coarse), value=codebook_size)
        n_history = 0
        if history_prompt is not None:
            fine_history = torch.as_tensor(history_prompt["fine_prompt"], device=self.device).T
            fine_history = fine_history[None].repeat_interleave(batch, dim=0)[:, -max_history:, :]
            codes = torch.cat([fine_history.to(codes.dtype), codes], dim=1)
            n_history = fine_history.shape[1]
        n_remove_from_end = 0
        if codes.shape[1] < max_input:  # the model is not causal: pad to a full window
            n_remove_from_end = max_input - codes.shape[1]
            codes = F.pad(codes, (0, 0, 0, n_remove_from_end), value=codebook_size)
        n_loops = max(0, int(np.ceil((frames - (max_input - n_history)) / max_history))) + 1
        for n_outer in range(n_loops):
            start = min(n_outer * max_history, codes.shape[1] - max_input)
            fill = min(n_history + n_outer * max_history, codes.shape[1] - max_history)
            relative = fill - start
            window = codes[:, start:start + max_input, :]  # a view: filled in place
            for n_inner in range(n_coarse, n_fine):
                logits = self.forward(n_inner, window).logits
                if temperature is None or temperature == 1.0:
                    preds = logits[:, relative:, :codebook_size].argmax(-1)
                else:
                    probs = (logits[:, :, :codebook_size] / temperature).softmax(dim=-1)[:, relative:max_input]
                    preds = torch.multinomial(probs.reshape(-1, codebook_size), num_samples=1,
                                              generator=kwargs.get("generator")).view(batch, -1)
                window[:, relative:, n_inner] = preds.to(torch.int32)
        codes = codes.transpose(1, 2)[:, :, n_history:]
        if n_remove_from_end > 0:
            codes = codes[:, :, :-n_remove_from_end]
        return codes


# 3. The model.
class BarkModel(GenerationMixin, PreTrainedModel):
    """``generate(input_ids, attention_mask=..., history_prompt=...)`` -> audio (batch, samples)
    at 24 kHz; ``semantic_*`` / ``coarse_*`` / ``fine_*`` keyword arguments go to that stage
    only, the others to every stage (as the reference)."""

    model_type = "bark"
    pack_weights = False
    checkpoint_renames = EncodecModel.checkpoint_renames
    ignored_weights = [r"\.attn\.bias$"] + EncodecModel.ignored_weights

    def __init__(self, config):
        super().__init__(config)
        config.semantic_config = sub_config(config.get("semantic_config"), SUB_DEFAULTS)
        config.coarse_acoustics_config = sub_config(config.get("coarse_acoustics_config"), SUB_DEFAULTS)
        config.fine_acoustics_config = sub_config(config.get("fine_acoustics_config"), FINE_DEFAULTS)
        config.codec_config = sub_config(config.get("codec_config"), ENCODEC_DEFAULTS)
        self.semantic = BarkSemanticModel(config.semantic_config)
        self.coarse_acoustics = BarkCoarseModel(config.coarse_acoustics_config)
        self.fine_acoustics = BarkFineModel(config.fine_acoustics_config)
        self.codec_model = EncodecModel(config.codec_config)

    def _adapt_state(self, state: dict) -> dict:
        state = super()._adapt_state(state)
        self.codec_model.quantizer.fit(state, "codec_model.quantizer.")  # (4.x files: see fit)
        return state

    def active_ties(self) -> dict[str, str]:
        if not self.config.fine_acoustics_config.get("tie_word_embeddings", True):
            return {}
        return {f"fine_acoustics.{t}": f"fine_acoustics.{s}" for t, s in self.fine_acoustics.tied_weights.items()}

    def default_generation_config(self) -> GenerationConfig:
        return GenerationConfig()

    @property
    def sampling_rate(self) -> int:
        return int(getattr(self.generation_config, "sample_rate", None) or self.config.codec_config.sampling_rate)

    def stage_configs(self) -> tuple[GenerationConfig, GenerationConfig, GenerationConfig]:
        """The semantic, coarse and fine settings of generation_config.json."""
        settings = self.generation_config
        return (stage_config(getattr(settings, "semantic_config", None), SEMANTIC_GENERATION),
                stage_config(getattr(settings, "coarse_acoustics_config", None), COARSE_GENERATION),
                stage_config(getattr(settings, "fine_acoustics_config", None), FINE_GENERATION))

    @property
    def codebook_size(self) -> int:
        return int(getattr(self.generation_config, "codebook_size", None) or 1024)

    def codec_decode(self, fine_output: torch.Tensor, output_lengths=None):
        """Codes (batch, codebooks, frames) -> audio (batch, samples), or one waveform per row
        cut to its length (EnCodec's LSTM would read the padding otherwise)."""
        embeddings = self.codec_model.quantizer.decode(fine_output.transpose(0, 1))
        if output_lengths is not None:
            return [self.codec_model.decoder(row[:, :n].unsqueeze(0)).squeeze() if n > 0
                    else embeddings.new_zeros(0) for row, n in zip(embeddings, output_lengths)]
        return self.codec_model.decoder(embeddings).squeeze(1)

    @torch.inference_mode()
    def generate(self, input_ids: torch.Tensor | None = None, history_prompt: dict | None = None,
                 return_output_lengths: bool | None = None, **kwargs: Any):
        """Audio (batch, samples); with ``return_output_lengths``: the waveforms padded with
        zeros and each one's length."""
        semantic_config, coarse_config, fine_config = self.stage_configs()
        per_stage: dict[str, dict[str, Any]] = {
            "semantic": {"attention_mask": kwargs.pop("attention_mask", None),
                         "min_eos_p": kwargs.pop("min_eos_p", None)},
            "coarse": {}, "fine": {}}
        for key, value in kwargs.items():
            stage = next((s for s in per_stage if key.startswith(s + "_")), None)
            if stage is not None:
                per_stage[stage][key[len(stage) + 1:]] = value
        for key, value in kwargs.items():
            if not any(key.startswith(s + "_") for s in per_stage):
                for stage_kwargs in per_stage.values():
                    stage_kwargs.setdefault(key, value)
        for stage_kwargs in per_stage.values():
            stage_kwargs.pop("generation_config", None)
        codebook_size = self.codebook_size
        semantic = self.semantic.generate(input_ids, semantic_generation_config=semantic_config,
                                          history_prompt=history_prompt, **per_stage["semantic"])
        coarse = self.coarse_acoustics.generate(
            semantic, semantic_generation_config=semantic_config, coarse_generation_config=coarse_config,
            codebook_size=codebook_size, history_prompt=history_prompt,
            return_output_lengths=return_output_lengths, **per_stage["coarse"])
        output_lengths = None
        if return_output_lengths:
            coarse, output_lengths = coarse
            output_lengths = output_lengths // coarse_config.n_coarse_codebooks
        if coarse.shape[1] == 0:
            raise InputError("Bark's semantic stage ended at once (no semantic token before its "
                             "EOS), so there is no audio to make: try another text, sampling "
                             "(do_sample=True) or a larger semantic_max_new_tokens.")
        fine = self.fine_acoustics.generate(
            coarse, semantic_generation_config=semantic_config, coarse_generation_config=coarse_config,
            fine_generation_config=fine_config, codebook_size=codebook_size,
            history_prompt=history_prompt, **per_stage["fine"])
        audio = self.codec_decode(fine, output_lengths)
        if return_output_lengths:
            lengths = [len(row) for row in audio]
            return nn.utils.rnn.pad_sequence(audio, batch_first=True, padding_value=0), lengths
        return audio


HEADS = {"AutoModel": BarkModel, "AutoModelForTextToWaveform": BarkModel}
