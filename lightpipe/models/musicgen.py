"""MusicGen (Copet et al., 2023, "Simple and Controllable Music Generation", arXiv:2306.05284):
a T5 text encoder, a pre-norm Transformer decoder over ``num_codebooks`` parallel streams of
EnCodec codes, and the EnCodec decoder that turns the codes into audio.

Matches transformers' ``models/musicgen/modeling_musicgen.py`` at inference. Parameter names are
the checkpoints' (``text_encoder.encoder.block.0...``, ``decoder.model.decoder.layers.0...``,
``decoder.lm_heads.0.weight``, ``audio_encoder.decoder.layers.0.conv.weight_g``,
``enc_to_dec_proj``). The text encoder is t5.py's stack, the codec encodec.py's model.

- Each decoder step reads one code per codebook: the sum of the codebooks' embeddings plus a
  sinusoidal position; one head per codebook predicts the next code of each.
- The delay pattern: codebook k runs k steps behind codebook 0, so a step predicts codebook 0
  at frame t, codebook 1 at frame t-1, ...; the positions before a codebook starts and after
  it ends hold the pad / start id (``delay_pattern``), and the codes are taken back out of the
  pattern once generated (``undo_delay_pattern``).
- Classifier-free guidance (``guidance_scale`` > 1): every step also runs the decoder on a null
  text (zero encoder states, all masked) and mixes the two: uncond + scale * (cond - uncond).

Generation reuses lightpipe's loop (``generation/search.py``: the logits processors and
warpers, greedy or sampled picks, the stopping criteria, streamers): its rows are the
``batch * num_codebooks`` code streams. What the shared loop cannot express lives in
``decode``, which that loop calls once per step: the delay pattern is applied to the ids it is
given, the rows are doubled for guidance and the two halves of the logits mixed, so the loop
sees one row of logits per stream. ``generate`` returns audio (batch, channels, samples), as the
reference does.
- Audio prompts (``input_values`` / ``padding_mask`` from MusicgenProcessor): EnCodec encodes
  the prompt (stereo: left and right apart, their codebooks interleaved) and its codes, after
  the start id, are the decoder's prompt, which the delay pattern spreads like generated codes;
  the returned audio holds the prompt's audio too (``processor.batch_decode(audio,
  padding_mask=...)`` cuts the padding back out). Without a text, the text is the bos id.
- ``num_return_sequences`` > 1 follows the reference exactly: each code stream (and the text
  states) is repeated in place, the decoder reads the repeated rows in groups of
  ``num_codebooks`` as one item, and each row's samples end up one after the other in time:
  audio (batch, channels, num_return_sequences * samples).
- MusicGen Melody (musicgen_melody.py) subclasses the model through its hooks: ``decoder_class``,
  ``_conditioning`` (what the decoder reads), ``_new_cache``, ``conditioning_inputs``,
  ``audio_prompts`` and ``multiple_samples``.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import InputError, UnsupportedModelError
from ..generation import GenerationConfig, GenerationMixin
from ..generation.config import unsupported_settings
from ..generation.processors import make_logits_processors
from ..generation.prompt import infer_mask, set_lengths, special_tokens
from ..generation.search import Search, sample
from ..generation.state import DecodeState, Prompt
from ..generation.stopping import make_stopping_criteria
from ..modeling import ModelOutput, PreTrainedModel
from .bart import Attention, encoder_states_of
from .cache import EncoderDecoderCache
from .clip import sub_config
from .decoder import causal_mask
from .encodec import ENCODEC_DEFAULTS, EncodecModel
from .layers import activation
from .linear import Linear
from .t5 import T5_DEFAULTS, T5Model, T5PreTrainedModel, T5Stack

# 1. Config fields read, with the defaults config.json may leave out (MusicgenDecoderConfig's).
DECODER_DEFAULTS: dict[str, Any] = {
    "vocab_size": 2048, "max_position_embeddings": 2048, "num_hidden_layers": 24, "ffn_dim": 4096,
    "num_attention_heads": 16, "activation_function": "gelu", "hidden_size": 1024,
    "num_codebooks": 4, "audio_channels": 1, "pad_token_id": 2048,
    "bos_token_id": 2048, "eos_token_id": None, "cross_attention_hidden_size": None,
    "use_cache": True,
}
MUSICGEN_DEFAULTS: dict[str, Any] = {"text_encoder": None, "audio_encoder": None, "decoder": None,
                                     "is_encoder_decoder": True}


def sinusoidal_positions(positions: torch.Tensor, dim: int) -> torch.Tensor:
    """(length,) positions -> (length, dim): cos then sin (tensor2tensor's layout)."""
    half = dim // 2
    rate = torch.exp(torch.arange(half, device=positions.device).float() * -(math.log(10000) / (half - 1)))
    angles = positions.float()[:, None] * rate[None, :]
    table = torch.cat([torch.cos(angles), torch.sin(angles)], dim=1)
    return F.pad(table, (0, dim % 2))


# 2. The delay pattern.
def delay_pattern(input_ids: torch.Tensor, num_codebooks: int, audio_channels: int, pad_token_id: int,
                  max_length: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(batch * codebooks, length) prompt ids -> (the ids to start from, the pattern
    (batch * codebooks, max_length)): codebook k's ids shifted right by k, the pad id before
    it starts and after it ends, -1 where a code is still to be predicted. In stereo the left
    and right codebooks alternate and share a delay."""
    input_ids = input_ids.reshape(-1, num_codebooks, input_ids.shape[-1])
    batch, _, length = input_ids.shape
    pattern = torch.full((batch, num_codebooks, max_length), -1, dtype=torch.long, device=input_ids.device)
    per_channel = num_codebooks // 2 if audio_channels == 2 else num_codebooks
    if max_length < 2 * per_channel - 1:  # too short for the pattern: left as is
        return input_ids.reshape(batch * num_codebooks, -1), pattern.reshape(batch * num_codebooks, -1)
    for codebook in range(num_codebooks):
        delay = codebook // audio_channels
        pattern[:, codebook, delay:length + delay] = input_ids[:, codebook]
    ones = torch.ones((per_channel, max_length), dtype=torch.bool)
    fixed = torch.triu(ones, diagonal=max_length - per_channel + 1) | torch.tril(ones)
    fixed = fixed.repeat_interleave(audio_channels, dim=0).to(input_ids.device)
    pattern = torch.where(fixed, torch.full_like(pattern, pad_token_id), pattern)
    to_predict = (pattern[:, 0, :] == -1).nonzero()[:, 1]
    first = int(to_predict.min()) if len(to_predict) else length
    return (pattern[..., :first].reshape(batch * num_codebooks, -1),
            pattern.reshape(batch * num_codebooks, -1))


def apply_delay_pattern(input_ids: torch.Tensor, pattern: torch.Tensor, start: int = 0) -> torch.Tensor:
    """Ids at positions ``start``... -> the pattern's fixed ids where it has some."""
    pattern = pattern[:, start:start + input_ids.shape[-1]]
    return torch.where(pattern == -1, input_ids, pattern)


def undo_delay_pattern(sequences: torch.Tensor, pattern: torch.Tensor, pad_token_id: int,
                       batch: int, num_codebooks: int) -> torch.Tensor:
    """Generated (batch * codebooks, max_length) ids -> codes (batch, codebooks, frames)."""
    sequences = apply_delay_pattern(sequences, pattern)
    return sequences[sequences != pad_token_id].reshape(batch, num_codebooks, -1)


# 3. Modules.
class MusicgenAttention(Attention):
    """bart.py's attention without biases."""

    def __init__(self, dim: int, num_heads: int, layer_idx: int):
        super().__init__(dim, num_heads, layer_idx)
        for name in ("q_proj", "k_proj", "v_proj", "out_proj"):
            setattr(self, name, Linear(dim, dim, bias=False))


class MusicgenDecoderLayer(nn.Module):
    """Pre-norm: self-attention, cross-attention to the text, MLP (no biases)."""

    def __init__(self, config, layer_idx: int):
        super().__init__()
        dim, heads = config.hidden_size, config.num_attention_heads
        self.self_attn = MusicgenAttention(dim, heads, layer_idx)
        self.self_attn_layer_norm = nn.LayerNorm(dim)
        self.encoder_attn = MusicgenAttention(dim, heads, layer_idx)
        self.encoder_attn_layer_norm = nn.LayerNorm(dim)
        self.fc1 = Linear(dim, config.ffn_dim, bias=False)
        self.fc2 = Linear(config.ffn_dim, dim, bias=False)
        self.final_layer_norm = nn.LayerNorm(dim)
        self.act = activation(config.activation_function)

    def forward(self, hidden_states, self_mask, encoder_states, cross_mask, cache):
        hidden_states = hidden_states + self.self_attn(self.self_attn_layer_norm(hidden_states),
                                                       self_mask, cache, causal=True)
        hidden_states = hidden_states + self.encoder_attn.cross(
            self.encoder_attn_layer_norm(hidden_states), encoder_states, cross_mask, cache)
        return hidden_states + self.fc2(self.act(self.fc1(self.final_layer_norm(hidden_states))))


class MusicgenDecoder(nn.Module):
    layer_class = MusicgenDecoderLayer

    def __init__(self, config):
        super().__init__()
        self.num_codebooks, self.hidden_size = config.num_codebooks, config.hidden_size
        # one more id than the vocabulary: the pad / start id
        self.embed_tokens = nn.ModuleList(nn.Embedding(config.vocab_size + 1, config.hidden_size)
                                          for _ in range(config.num_codebooks))
        self.layers = nn.ModuleList(self.layer_class(config, i) for i in range(config.num_hidden_layers))
        self.layer_norm = nn.LayerNorm(config.hidden_size)

    def code_embeddings(self, input_ids: torch.Tensor) -> torch.Tensor:
        """(batch * codebooks, length) ids -> the sum of the codebooks' embeddings (batch, length,
        hidden). (scale_embedding is in the config but, as in the reference, never applied.)"""
        codes = input_ids.reshape(-1, self.num_codebooks, input_ids.shape[-1])  # (batch, codebooks, length)
        return sum(embed(codes[:, k]) for k, embed in enumerate(self.embed_tokens))

    def with_positions(self, hidden_states: torch.Tensor, past: int) -> torch.Tensor:
        positions = torch.arange(past, past + hidden_states.shape[1], device=hidden_states.device)
        return hidden_states + sinusoidal_positions(positions, self.hidden_size).to(hidden_states.dtype)

    def forward(self, input_ids, encoder_states, encoder_mask=None, cache=None, attention_mask=None):
        """(batch * codebooks, length) ids after the cache's past -> (batch, length, hidden)."""
        past = cache.get_seq_length() if cache is not None else 0
        length = input_ids.shape[-1]
        hidden_states = self.with_positions(self.code_embeddings(input_ids), past)
        self_mask = causal_mask(attention_mask, length, past, hidden_states.device)
        cross_mask = None
        if encoder_mask is not None and not bool(encoder_mask.all()):
            # additive: a row with nothing to attend to (guidance's null text) averages zero
            # states instead of giving NaN
            dtype = hidden_states.dtype
            cross_mask = torch.zeros(encoder_mask.shape, dtype=dtype, device=hidden_states.device)
            cross_mask = cross_mask.masked_fill(encoder_mask == 0, torch.finfo(dtype).min)
            cross_mask = cross_mask[:, None, None, :]
        for layer in self.layers:
            hidden_states = layer(hidden_states, self_mask, encoder_states, cross_mask, cache)
        return self.layer_norm(hidden_states)


class MusicgenModel(nn.Module):
    def __init__(self, config, decoder_class: type = MusicgenDecoder):
        super().__init__()
        self.decoder = decoder_class(config)


class MusicgenForCausalLM(nn.Module):
    """The decoder and one head per codebook: logits (batch * codebooks, length, vocab)."""

    def __init__(self, config, decoder_class: type = MusicgenDecoder):
        super().__init__()
        self.config = config
        self.num_codebooks = config.num_codebooks
        self.model = MusicgenModel(config, decoder_class)
        self.lm_heads = nn.ModuleList(Linear(config.hidden_size, config.vocab_size, bias=False)
                                      for _ in range(config.num_codebooks))

    def forward(self, input_ids, encoder_states, encoder_mask=None, cache=None, attention_mask=None,
                logits_to_keep: int = 0):
        hidden_states = self.model.decoder(input_ids, encoder_states, encoder_mask, cache, attention_mask)
        if logits_to_keep:
            hidden_states = hidden_states[:, -logits_to_keep:]
        logits = torch.stack([head(hidden_states) for head in self.lm_heads], dim=1)
        return logits.reshape(-1, *logits.shape[2:])  # (batch * codebooks, length, vocab)


class T5EncoderModel(T5PreTrainedModel):
    """T5's encoder alone (transformers' T5EncoderModel): ``shared`` and ``encoder``."""

    tied_weights = {"encoder.embed_tokens.weight": "shared.weight"}
    encode = T5Model.encode

    def __init__(self, config):
        super().__init__(config)
        self.shared = nn.Embedding(config.vocab_size, config.d_model)
        embed_tokens = nn.Embedding(config.vocab_size, config.d_model)
        self.encoder = T5Stack(config, embed_tokens, config.num_layers, False)


# 4. The model.
class MusicgenForConditionalGeneration(GenerationMixin, PreTrainedModel):
    """``generate(input_ids, attention_mask, guidance_scale=..., max_new_tokens=...)`` -> audio
    (batch, channels, samples); ``forward(input_ids, attention_mask, decoder_input_ids)`` ->
    ``logits`` (batch * codebooks, length, vocab)."""

    model_type = "musicgen"
    config_defaults = MUSICGEN_DEFAULTS
    is_encoder_decoder = True
    decoder_class = MusicgenDecoder
    audio_prompts = True  # input_values / padding_mask continued (MusicGen Melody: no)
    conditioning_inputs: tuple[str, ...] = ()  # more generate() inputs for _conditioning
    multiple_samples = True  # num_return_sequences > 1
    tied_weights = {"text_encoder.encoder.embed_tokens.weight": "text_encoder.shared.weight"}
    checkpoint_renames = EncodecModel.checkpoint_renames
    # (4.x saves the decoder's sinusoidal position table: computed here, not read)
    ignored_weights = EncodecModel.ignored_weights + [r"embed_positions\.weights$"]

    def __init__(self, config):
        super().__init__(config)
        config.text_encoder = sub_config(config.text_encoder, T5_DEFAULTS)
        config.audio_encoder = sub_config(config.audio_encoder, ENCODEC_DEFAULTS)
        config.decoder = sub_config(config.decoder, DECODER_DEFAULTS)
        decoder_config = config.decoder
        if decoder_config.audio_channels not in (1, 2):
            raise InputError(f"MusicGen config: decoder.audio_channels must be 1 or 2, got "
                             f"{decoder_config.audio_channels}.")
        self.text_encoder = T5EncoderModel(config.text_encoder)
        self.audio_encoder = EncodecModel(config.audio_encoder)
        self.decoder = MusicgenForCausalLM(decoder_config, self.decoder_class)
        text_width = config.text_encoder.d_model
        if text_width != decoder_config.hidden_size and decoder_config.cross_attention_hidden_size is None:
            self.enc_to_dec_proj = nn.Linear(text_width, decoder_config.hidden_size)
        self._generating: tuple[torch.Tensor, float | None] | None = None

    def _adapt_state(self, state: dict) -> dict:
        state = super()._adapt_state(state)
        self.audio_encoder.quantizer.fit(state, "audio_encoder.quantizer.")  # (4.x files: see fit)
        return state

    def default_generation_config(self) -> GenerationConfig:
        """Without generation_config.json: the decoder's special ids (as the reference)."""
        return GenerationConfig.from_model_config(self.config.decoder)

    def max_positions(self) -> None:
        return None  # sinusoidal positions: no table to run past

    def get_input_embeddings(self) -> nn.Embedding:
        return self.text_encoder.shared

    @property
    def sampling_rate(self) -> int:
        return self.config.audio_encoder.sampling_rate

    # -- the text side
    def encode(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        """The T5 encoder's states, (batch, text length, text width)."""
        return self.text_encoder.encode(input_ids, attention_mask)

    def _condition(self, encoder_states: torch.Tensor, attention_mask: torch.Tensor | None) -> torch.Tensor:
        """Encoder states as the decoder reads them: projected to its width, padding zeroed."""
        proj = getattr(self, "enc_to_dec_proj", None)
        if proj is not None:
            encoder_states = proj(encoder_states)
        if attention_mask is not None:
            encoder_states = encoder_states * attention_mask[..., None].to(encoder_states.dtype)
        return encoder_states

    # -- the decoder
    def decode(self, decoder_input_ids, encoder_hidden_states, encoder_attention_mask=None,
               cache=None, use_cache=False, logits_to_keep: int = 0, decoder_attention_mask=None):
        """The decoder over the ids after the cache's past. Inside ``generate`` the ids first
        take the delay pattern's fixed ids, and with guidance run twice (text, null text)
        and come back mixed: one row of logits per code stream either way."""
        if use_cache and cache is None:
            cache = EncoderDecoderCache()
        guidance = None
        if self._generating is not None:
            pattern, guidance = self._generating
            past = cache.get_seq_length() if cache is not None else 0
            decoder_input_ids = apply_delay_pattern(decoder_input_ids, pattern, past)
            if guidance is not None:
                decoder_input_ids = decoder_input_ids.repeat(2, 1)
        logits = self.decoder(decoder_input_ids, encoder_hidden_states, encoder_attention_mask, cache,
                              decoder_attention_mask, logits_to_keep)
        if guidance is not None:
            cond, uncond = logits.split(logits.shape[0] // 2, dim=0)
            logits = uncond + (cond - uncond) * guidance
        return ModelOutput(logits=logits, cache=cache if use_cache else None)

    def forward(self, input_ids=None, attention_mask=None, decoder_input_ids=None,
                decoder_attention_mask=None, encoder_outputs=None, cache=None, use_cache=None,
                past_key_values=None, logits_to_keep: int = 0, **unused) -> ModelOutput:
        if encoder_outputs is None:
            if input_ids is None:
                raise InputError("Pass input_ids (the tokenized text) or encoder_outputs.")
            encoder_states = self.encode(input_ids, attention_mask)
        else:
            encoder_states = encoder_states_of(encoder_outputs)
        if decoder_input_ids is None:
            if unused.get("input_values") is None:
                raise InputError("Pass decoder_input_ids (batch * num_codebooks, length) or the audio "
                                 "prompt's input_values (batch, channels, samples).")
            if self.config.decoder.audio_channels != 1:
                raise UnsupportedModelError("lightpipe's MusicGen forward() encodes mono audio prompts "
                                            "only: pass decoder_input_ids for stereo checkpoints.")
            decoder_input_ids, _ = self.prompt_codes(unused["input_values"], unused.get("padding_mask"))
        cache = cache if cache is not None else past_key_values
        out = self.decode(decoder_input_ids, self._condition(encoder_states, attention_mask),
                          attention_mask, cache, bool(use_cache), logits_to_keep, decoder_attention_mask)
        return ModelOutput(logits=out.logits, cache=out.get("cache"),
                           encoder_last_hidden_state=encoder_states)

    def _conditioning(self, input_ids: torch.Tensor | None, attention_mask: torch.Tensor | None,
                      encoder_outputs: Any, guidance: float | None, **inputs: Any):
        """What the decoder reads, and its mask: the T5 states of the text (or the given
        encoder_outputs), with guidance's null text (zero states, masked out) after them."""
        if encoder_outputs is None:
            if not isinstance(input_ids, torch.Tensor) or input_ids.dim() != 2 or input_ids.shape[1] == 0:
                raise InputError("generate() needs the tokenized text: input_ids (batch, sequence) as the "
                                 "tokenizer gives it with return_tensors='pt'.")
            input_ids = input_ids.to(self.device)
            if attention_mask is None:
                attention_mask = torch.ones_like(input_ids)
            encoder_states = self.encode(input_ids, attention_mask.to(self.device))
        else:
            encoder_states = encoder_states_of(encoder_outputs)
        encoder_states = encoder_states.to(self.device)
        if attention_mask is not None:
            attention_mask = attention_mask.to(self.device)
        if guidance is not None:
            encoder_states = torch.cat([encoder_states, torch.zeros_like(encoder_states)])
            if attention_mask is not None:
                attention_mask = torch.cat([attention_mask, torch.zeros_like(attention_mask)])
        return self._condition(encoder_states, attention_mask), attention_mask

    def _new_cache(self, config: GenerationConfig, encoder_states: torch.Tensor) -> EncoderDecoderCache:
        return EncoderDecoderCache(config.max_length)

    # -- generation
    @torch.inference_mode()
    def generate(self, inputs: torch.Tensor | None = None, generation_config: GenerationConfig | None = None,
                 logits_processor: list | None = None, stopping_criteria: list | None = None,
                 streamer: Any = None, generator: torch.Generator | None = None, **kwargs: Any):
        """Audio (batch, channels, samples) for the tokenized texts, as the reference:
        greedy or sampled (``do_sample``, ``top_k``, ``temperature``, ...) with classifier-free
        guidance when ``guidance_scale`` > 1; ``return_dict_in_generate=True`` gives a
        ModelOutput whose ``sequences`` are the audio and ``audio_codes`` the codes."""
        length_given = kwargs.get("max_length") is not None
        config, model_kwargs, _ = self._generation_config_for_call(generation_config, kwargs)
        input_ids = inputs if inputs is not None else model_kwargs.pop("input_ids", None)
        attention_mask = model_kwargs.pop("attention_mask", None)
        encoder_outputs = model_kwargs.pop("encoder_outputs", None)
        # an audio prompt: the processor's input_values / padding_mask, or codes already
        audio_batch = next((value.shape[0] for value in model_kwargs.values()
                            if isinstance(value, torch.Tensor)), None)
        input_values = model_kwargs.pop("input_values", None) if self.audio_prompts else None
        padding_mask = model_kwargs.pop("padding_mask", None) if self.audio_prompts else None
        decoder_ids = model_kwargs.pop("decoder_input_ids", None)
        extra = {name: model_kwargs.pop(name) for name in self.conditioning_inputs if name in model_kwargs}
        for name in ("use_cache", "output_attentions", "output_hidden_states"):
            model_kwargs.pop(name, None)
        if model_kwargs:
            raise ValueError(f"The following `model_kwargs` are not used by the model: "
                             f"{sorted(model_kwargs)} (note: typos in the generate arguments will "
                             "also show up in this list)")
        if config.get_generation_mode().startswith("beam"):
            raise ValueError("Got incompatible mode for generation, should be one of greedy or sampling. "
                             "Ensure that beam search is de-activated by setting `num_beams=1`.")
        unsupported = [name for name in unsupported_settings(config) if name != "guidance_scale"]
        if (config.num_return_sequences or 1) > 1 and not self.multiple_samples:
            unsupported.append("num_return_sequences > 1 (nor does the reference's: call it once per sample)")
        if unsupported:
            raise UnsupportedModelError(f"lightpipe's {type(self).__name__}.generate() does not implement "
                                        f"{', '.join(unsupported)}.")

        # the text, encoded once; guidance adds a null text (zero states, masked out)
        eos, pad = special_tokens(config, attention_mask is not None, input_ids)
        if input_ids is None and encoder_outputs is None and audio_batch is not None:
            # an audio prompt without a text: the text is the bos id, as in the reference
            if config.bos_token_id is None:
                raise ValueError("`bos_token_id` has to be defined when no `input_ids` are provided.")
            input_ids = torch.full((audio_batch, 1), int(config.bos_token_id), dtype=torch.long)
            attention_mask = infer_mask(input_ids, pad, eos)
        guidance = config.guidance_scale
        guidance = guidance if guidance is not None and guidance > 1 else None
        encoder_states, attention_mask = self._conditioning(input_ids, attention_mask, encoder_outputs, guidance,
                                                            **extra)
        batch = encoder_states.shape[0] // (2 if guidance is not None else 1)

        # the code streams: batch * codebooks rows, each starting from the start id (and the
        # audio prompt's codes after it)
        num_codebooks = self.decoder.num_codebooks
        start = config.decoder_start_token_id
        start = config.bos_token_id if start is None else start
        if start is None:
            raise ValueError("`decoder_start_token_id` or `bos_token_id` has to be defined for MusicGen.")
        scales = None
        if decoder_ids is None and input_values is not None:
            decoder_ids, scales = self.prompt_codes(input_values, padding_mask)
        starts = torch.full((batch * num_codebooks, 1), int(start), dtype=torch.long, device=self.device)
        if decoder_ids is not None:
            decoder_ids = decoder_ids.to(self.device)
            if decoder_ids.dim() != 2 or decoder_ids.shape[0] != batch * num_codebooks:
                raise InputError(f"The audio prompt's codes must be (batch * num_codebooks = "
                                 f"{batch * num_codebooks}, length) for {batch} text(s), got shape "
                                 f"{tuple(decoder_ids.shape)}: give as many audio prompts as texts.")
            if bool((decoder_ids[:, 0] != start).all()):
                decoder_ids = torch.cat([starts, decoder_ids], dim=-1)
            starts = decoder_ids
        prompt_length = starts.shape[1]
        if config.max_new_tokens is None and not length_given:
            # as the reference's MusicGen: a max_length not passed to the call counts the prompt
            # (the start id and any audio prompt) too, from a generation config or the default
            config.max_length += prompt_length
        set_lengths(self, config, prompt_length, False)
        starts, pattern = delay_pattern(starts, num_codebooks, self.config.decoder.audio_channels, int(start),
                                        config.max_length)
        copies = config.num_return_sequences or 1
        if copies > 1:  # the reference's expansion: every row repeated in place (see the docstring)
            starts, pattern = starts.repeat_interleave(copies, 0), pattern.repeat_interleave(copies, 0)
            encoder_states = encoder_states.repeat_interleave(copies, 0)
            if attention_mask is not None:
                attention_mask = attention_mask.repeat_interleave(copies, 0)
        rows, length = starts.shape
        prompt = Prompt(starts, torch.arange(length, device=self.device).expand(rows, -1),
                        None, eos, pad, rows, encoder_states=encoder_states, encoder_mask=attention_mask)
        if streamer is not None:
            streamer.put(starts.cpu())
        search = Search(config, make_logits_processors(config, prompt_length, None, eos, logits_processor),
                        make_stopping_criteria(config, eos, None, stopping_criteria), pad, eos,
                        rows, streamer, generator)
        cache = self._new_cache(config, encoder_states) if config.use_cache else None
        if self.pack_weights and self.device.type == "cpu":
            self.pack_linear_weights()  # oneDNN's layout for the decoding steps (generation/mixin.py)
        self._generating = (pattern, guidance)
        try:
            out = sample(self, DecodeState(prompt, config.max_length, cache), search)
        finally:
            self._generating = None
        sequences = out.sequences if config.return_dict_in_generate else out
        codes = undo_delay_pattern(sequences, pattern, pad, batch, num_codebooks)
        audio = self.decode_audio(codes, scales)
        if not config.return_dict_in_generate:
            return audio
        return ModelOutput(sequences=audio, audio_codes=codes, scores=out.get("scores"),
                           logits=out.get("logits"))

    def get_unconditional_inputs(self, num_samples: int = 1) -> dict:
        """Inputs for music without a text: ``model.generate(**inputs, max_new_tokens=...)``."""
        states = torch.zeros((num_samples, 1, self.config.text_encoder.d_model), device=self.device,
                             dtype=self.dtype)
        mask = torch.zeros((num_samples, 1), device=self.device, dtype=torch.long)
        return {"encoder_outputs": (states,), "attention_mask": mask, "guidance_scale": 1.0}

    def prompt_codes(self, input_values: torch.Tensor, padding_mask: torch.Tensor | None = None
                     ) -> tuple[torch.Tensor, list | None]:
        """An audio prompt (batch, channels, samples) -> its EnCodec codes as decoder ids
        (batch * codebooks, frames) and the codec's scales; stereo checkpoints encode the left
        and right channels apart and interleave their codebooks."""
        if not isinstance(input_values, torch.Tensor) or input_values.dim() != 3 or input_values.shape[-1] == 0:
            shape = tuple(input_values.shape) if hasattr(input_values, "shape") else type(input_values).__name__
            raise InputError(f"The audio prompt's input_values must be a non-empty (batch, channels, samples) "
                             f"tensor as MusicgenProcessor(audio=..., return_tensors='pt') gives it, got {shape}.")
        channels = self.config.decoder.audio_channels
        if input_values.shape[1] != channels:
            raise InputError(f"This MusicGen checkpoint makes {channels}-channel audio but the audio prompt "
                             f"has {input_values.shape[1]} channel(s): give {'stereo' if channels == 2 else 'mono'}"
                             " audio.")
        input_values = input_values.to(self.device, self.audio_encoder.dtype)
        if padding_mask is not None:
            padding_mask = padding_mask.to(self.device)
        halves = [input_values] if channels == 1 else [input_values[:, :1], input_values[:, 1:]]
        encoded = [self.audio_encoder.encode(half, padding_mask) for half in halves]
        if encoded[0].audio_codes.shape[0] != 1:
            raise InputError(f"Expected 1 frame in the audio code outputs, got {encoded[0].audio_codes.shape[0]} "
                             "frames: set the audio encoder's chunk_length_s to None (no chunking).")
        codes = torch.stack([out.audio_codes[0] for out in encoded], dim=2)  # (batch, books, channels, frames)
        batch, books, _, frames = codes.shape
        if books * channels != self.decoder.num_codebooks:
            raise InputError(f"The audio encoder gives {books * channels} codebooks at its first target "
                             f"bandwidth but the decoder reads {self.decoder.num_codebooks}.")
        scales = encoded[0].audio_scales if channels == 1 else None
        return codes.reshape(batch * books * channels, frames), scales

    def decode_audio(self, codes: torch.Tensor, scales: list | None = None) -> torch.Tensor:
        """Codes (batch, codebooks, frames) -> audio (batch, channels, samples); stereo
        checkpoints interleave the left and right codebooks."""
        codes = codes[None]  # one chunk
        if self.config.decoder.audio_channels == 1:
            return self.audio_encoder.decode(codes, scales).audio_values
        left = self.audio_encoder.decode(codes[:, :, ::2]).audio_values
        right = self.audio_encoder.decode(codes[:, :, 1::2]).audio_values
        return torch.cat([left, right], dim=1)


HEADS = {"AutoModelForTextToWaveform": MusicgenForConditionalGeneration}
