"""Text generation: the KV cache, GenerationConfig, logits processors, stopping criteria,
streamers and ``GenerationMixin.generate`` (greedy search, sampling, beam search).

Behaviour follows transformers 5's ``generation/`` package (``utils.py``, ``logits_process.py``,
``stopping_criteria.py``, ``streamers.py``, ``configuration_utils.py``): the same arguments,
the same defaults and merge order (call arguments > ``generation_config.json`` > global
defaults), the same processor order, and the same beam search, so greedy and beam outputs are
token for token those of the reference on the same checkpoint.

Encoder-decoder models (T5, BART, Marian, Whisper) run their encoder once and then the same
loops over their decoder (``GenerationMixin.is_encoder_decoder``, ``EncoderDecoderCache``).

The cache is gpt-fast's design: per layer, keys and values live in buffers allocated once for
the whole generation (prompt + new tokens); a decoding step writes its one new key and value in
place and attends over a view, so no step copies the past.
"""

from __future__ import annotations

import copy
import json
import logging
import math
import os
import time
import unicodedata
import warnings
from pathlib import Path
from queue import Queue
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .errors import InputError, UnsupportedModelError
from .modeling import ModelOutput

logger = logging.getLogger("lightpipe")


# --- 1. Decoder blocks: linear layers, the KV cache, causal masks, attention ---------------

def linear(inputs: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None,
           packed: torch.Tensor | None = None) -> torch.Tensor:
    """``F.linear`` with the (out, in) ``weight``, run by oneDNN on the CPU when no gradient is
    wanted, from ``packed`` (the same weight in oneDNN's blocked layout) when given.

    Why: a decoding step multiplies a few rows by every weight matrix. For such skinny
    products MKL (what F.linear calls in float32) runs at about half oneDNN's speed on the AMD
    CPUs we measured, and oneDNN itself reads a matrix about twice as fast (bfloat16: 2.5x)
    from its blocked layout as from the plain one, which it otherwise reorders on every call.
    bfloat16 results are bit-identical to F.linear's either way; float32 ones differ from MKL's
    in summation order only (~1e-6 relative)."""
    if (_ONEDNN_LINEAR is not None and inputs.device.type == "cpu"
            and inputs.dtype in (torch.float32, torch.bfloat16) and inputs.dtype == weight.dtype
            and not (torch.is_grad_enabled() and weight.requires_grad)):
        return _ONEDNN_LINEAR(inputs, weight if packed is None else packed, bias, "none", [], "")
    return F.linear(inputs, weight, bias)


def linear_add(inputs: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None,
               packed: torch.Tensor | None, residual: torch.Tensor) -> torch.Tensor:
    """``residual + linear(inputs, weight, bias)``; in float32 on the CPU one oneDNN call adds
    the residual as the product is written (the same numbers to ~1e-7: one rounding fewer).
    Other dtypes add separately, rounding where the reference rounds."""
    if (_ONEDNN_LINEAR is not None and inputs.dtype == torch.float32 and inputs.device.type == "cpu"
            and weight.dtype == torch.float32 and residual.dtype == torch.float32
            and residual.shape == inputs.shape[:-1] + weight.shape[:1]
            and not (torch.is_grad_enabled() and weight.requires_grad)):
        return _ONEDNN_LINEAR.binary(inputs, residual, weight if packed is None else packed, bias, "add")
    return residual + linear(inputs, weight, bias, packed)


def linear_gelu_tanh(inputs: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None,
                     packed: torch.Tensor | None) -> torch.Tensor | None:
    """``gelu(linear(...), approximate="tanh")`` in one oneDNN call (float32 on the CPU, equal
    to ~1e-7); None where that does not apply, for the caller to compute it its own way."""
    if (_ONEDNN_LINEAR is not None and inputs.dtype == torch.float32 and inputs.device.type == "cpu"
            and weight.dtype == torch.float32
            and not (torch.is_grad_enabled() and weight.requires_grad)):
        return _ONEDNN_LINEAR(inputs, weight if packed is None else packed, bias, "gelu", [], "tanh")
    return None


def _onednn_ops():
    try:
        if torch.backends.mkldnn.is_available():
            return torch.ops.mkldnn._linear_pointwise, torch.ops.mkldnn._reorder_linear_weight
    except (AttributeError, RuntimeError):
        pass
    return None, None


_ONEDNN_LINEAR, _ONEDNN_PACK = _onednn_ops()


class PackableLinear:
    """Mixin of linear layers: ``pack()`` keeps a copy of the weight in oneDNN's layout for
    ``linear``, used while the weight is unchanged (same storage, dtype and device). It costs a
    second copy of the weights in memory; generate() packs on the CPU (see
    GenerationMixin.pack_weights) and ``unpack()`` frees it."""

    _packed: torch.Tensor | None = None
    _packed_key: tuple | None = None

    def dense_weight(self) -> torch.Tensor:
        """The weight as an (out, in) matrix."""
        return self.weight

    def _key(self) -> tuple:
        weight = self.weight
        try:
            version = weight._version  # bumped by in-place edits of the weight
        except RuntimeError:  # an inference tensor: it cannot be edited in place anyway
            version = 0
        return weight.data_ptr(), weight.dtype, weight.device, version

    def pack(self) -> None:
        weight = self.dense_weight()
        if _ONEDNN_PACK is None or weight.device.type != "cpu" or \
                weight.dtype not in (torch.float32, torch.bfloat16):
            return
        if self._packed is None or self._packed_key != self._key():
            with torch.no_grad():
                self._packed = _ONEDNN_PACK(weight.detach(), None)
            self._packed_key = self._key()

    def unpack(self) -> None:
        self._packed = self._packed_key = None

    def packed_weight(self) -> torch.Tensor | None:
        if self._packed is not None and self._packed_key == self._key():
            return self._packed
        return None


class Linear(PackableLinear, nn.Linear):
    """nn.Linear (same parameters, same names) computed by ``linear`` above."""

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        return linear(inputs, self.weight, self.bias, self.packed_weight())

    def forward_add(self, inputs: torch.Tensor, residual: torch.Tensor) -> torch.Tensor:
        """``residual + self(inputs)``, fused where it can be (see ``linear_add``)."""
        return linear_add(inputs, self.weight, self.bias, self.packed_weight(), residual)

    def parts(self) -> tuple:
        """(weight, bias, packed weight): ``linear``'s arguments, for lean decoding steps."""
        return self.weight, self.bias, self.packed_weight()


class KVCache:
    """Keys and values of the tokens seen so far, per layer, in preallocated buffers of shape
    (batch, kv_heads, capacity, head_dim). ``capacity`` is a hint (generate() passes the final
    length); the buffers grow by doubling when a forward goes past it."""

    def __init__(self, capacity: int = 0):
        self.capacity = capacity
        self.keys: list[torch.Tensor] = []
        self.values: list[torch.Tensor] = []
        self.lengths: list[int] = []

    def get_seq_length(self, layer: int = 0) -> int:
        """How many tokens are cached (the past length of the next forward)."""
        return self.lengths[layer] if layer < len(self.lengths) else 0

    def __len__(self) -> int:
        return len(self.keys)

    def update(self, key: torch.Tensor, value: torch.Tensor, layer: int):
        """Append the new (batch, kv_heads, new, head_dim) keys and values of ``layer``; return
        views of all its cached keys and values, past and new."""
        if layer == len(self.keys):  # first forward: allocate this layer's buffers
            batch, heads, new, _ = key.shape
            size = max(self.capacity, new)
            self.keys.append(key.new_empty(batch, heads, size, key.shape[-1]))
            self.values.append(value.new_empty(batch, heads, size, value.shape[-1]))
            self.lengths.append(0)
        start = self.lengths[layer]
        end = start + key.shape[2]
        if end > self.keys[layer].shape[2]:
            self._grow(layer, max(end, 2 * self.keys[layer].shape[2]))
        self.keys[layer][:, :, start:end] = key
        self.values[layer][:, :, start:end] = value
        self.lengths[layer] = end
        return self.keys[layer][:, :, :end], self.values[layer][:, :, :end]

    def _grow(self, layer: int, size: int) -> None:
        used = self.lengths[layer]
        for store in (self.keys, self.values):
            old = store[layer]
            new = old.new_empty(old.shape[0], old.shape[1], size, old.shape[3])
            new[:, :, :used] = old[:, :, :used]
            store[layer] = new

    def reorder_cache(self, beam_idx: torch.Tensor) -> None:
        """Beam search: row i of the batch becomes row ``beam_idx[i]`` of the old batch."""
        for layer, used in enumerate(self.lengths):
            for store in (self.keys, self.values):
                index = beam_idx.to(store[layer].device)
                store[layer][:, :, :used] = store[layer][:, :, :used].index_select(0, index)

    def crop(self, length: int) -> None:
        """Keep the first ``length`` tokens (a negative length drops that many from the end)."""
        for layer, used in enumerate(self.lengths):
            self.lengths[layer] = max(0, used + length if length < 0 else min(used, length))


class EncoderDecoderCache:
    """An encoder-decoder's decoding cache: the decoder's self-attention ``KVCache``, and per
    layer the cross-attention keys and values of the encoder states, computed on the first step
    and reused after. Beam search reorders only the self-attention part: a beam stays within
    its batch item, whose encoder states (and so cross keys and values) are the same."""

    def __init__(self, capacity: int = 0):
        self.self_attention = KVCache(capacity)
        self.cross_keys: list[torch.Tensor] = []
        self.cross_values: list[torch.Tensor] = []

    def get_seq_length(self, layer: int = 0) -> int:
        return self.self_attention.get_seq_length(layer)

    def __len__(self) -> int:
        return len(self.self_attention)

    def update(self, key: torch.Tensor, value: torch.Tensor, layer: int):
        return self.self_attention.update(key, value, layer)

    def cross(self, layer: int, project) -> tuple[torch.Tensor, torch.Tensor]:
        """Layer ``layer``'s cross-attention keys and values: ``project()`` -> (key, value)
        on the first call, the stored ones after."""
        if layer == len(self.cross_keys):
            key, value = project()
            self.cross_keys.append(key)
            self.cross_values.append(value)
        return self.cross_keys[layer], self.cross_values[layer]

    def reorder_cache(self, beam_idx: torch.Tensor) -> None:
        """Only the rows whose beam changed are copied (often none at batch 1)."""
        cache = self.self_attention
        if not cache.keys:
            return
        rows = torch.nonzero(beam_idx.cpu() != torch.arange(len(beam_idx))).flatten()
        if len(rows) == 0:
            return
        sources = beam_idx.cpu()[rows]
        for layer, used in enumerate(cache.lengths):
            for store in (cache.keys, cache.values):
                buffer = store[layer]
                device = buffer.device
                buffer[rows.to(device), :, :used] = buffer[:, :, :used].index_select(0, sources.to(device))

    def crop(self, length: int) -> None:
        self.self_attention.crop(length)


def open_cache(cache: "KVCache | None", past_key_values: "KVCache | None", use_cache: bool | None,
               config: Any) -> "tuple[KVCache | None, bool]":
    """The cache a decoder forward writes to: the one given (under either name), a new one
    when caching is on (default: ``config.use_cache``), or None."""
    cache = cache if cache is not None else past_key_values
    if use_cache is None:
        use_cache = config.use_cache
    if use_cache and cache is None:
        cache = KVCache()
    return cache, use_cache


def lm_logits(lm_head: nn.Module, out: Any, logits_to_keep: int = 0) -> Any:
    """A causal-LM head over the base model's output: logits for the last ``logits_to_keep``
    positions (all when 0; generate() asks for 1), with the cache passed on."""
    from .modeling import ModelOutput

    hidden_states = out.last_hidden_state
    if logits_to_keep:
        hidden_states = hidden_states[:, -logits_to_keep:]
    return ModelOutput(logits=lm_head(hidden_states), cache=out.get("cache"))


def causal_mask(attention_mask: torch.Tensor | None, query_length: int, past_length: int,
                device: torch.device, sliding_window: int | None = None) -> torch.Tensor | None:
    """The boolean (batch or 1, 1, query, keys) mask SDPA needs, True where a query may attend;
    None when SDPA's own ``is_causal`` does the job (no padding, no window in reach, and either
    one query or an empty cache)."""
    kv_length = past_length + query_length
    if attention_mask is not None:
        if attention_mask.shape[-1] < kv_length:
            raise InputError(
                f"attention_mask has {attention_mask.shape[-1]} positions but the cache and the "
                f"input hold {kv_length} tokens: pass a mask over the past and the new tokens.")
        attention_mask = attention_mask[:, :kv_length]
        if bool(attention_mask.all()):
            attention_mask = None
    window = sliding_window if sliding_window is not None and kv_length > sliding_window else None
    if attention_mask is None and window is None and (query_length == 1 or past_length == 0):
        return None
    keys = torch.arange(kv_length, device=device)
    queries = keys[past_length:, None]  # absolute position of each query: (query, 1)
    allowed = keys <= queries
    if window is not None:
        allowed = allowed & (keys > queries - window)
    allowed = allowed[None, None]  # (1, 1, query, keys)
    if attention_mask is not None:
        allowed = allowed & attention_mask[:, None, None, :].to(device=device, dtype=torch.bool)
    return allowed


def decoder_attention(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                      mask: torch.Tensor | None, scale: float | None = None,
                      groups: int = 1) -> torch.Tensor:
    """Causal SDPA over (batch, heads, seq, head_dim) tensors; ``groups`` query heads share
    each key/value head (grouped-query attention). Dispatches as the reference does, so the
    numbers match: no mask -> ``is_causal`` (and ``enable_gqa``); one query with a mask -> the
    query heads of a group become that group's queries (no copy of the cache); otherwise the
    key/value heads are repeated."""
    batch, heads, query_length, head_dim = query.shape
    if groups > 1:
        if mask is None:
            return F.scaled_dot_product_attention(query, key, value, is_causal=query_length > 1,
                                                  scale=scale, enable_gqa=True)
        if query_length == 1:
            grouped = query.reshape(batch, heads // groups, groups, head_dim)
            out = F.scaled_dot_product_attention(grouped, key, value, attn_mask=mask, scale=scale)
            return out.reshape(batch, heads, 1, head_dim)
        key = key.repeat_interleave(groups, dim=1)
        value = value.repeat_interleave(groups, dim=1)
    return F.scaled_dot_product_attention(query, key, value, attn_mask=mask, scale=scale,
                                          is_causal=mask is None and query_length > 1)


# --- 2. GenerationConfig ---------------------------------------------------------------------

# The global defaults, used for whatever neither the call nor the model's config sets.
GENERATION_DEFAULTS: dict[str, Any] = {
    "max_length": 20, "min_length": 0, "do_sample": False, "use_cache": True,
    "early_stopping": False, "num_beams": 1, "temperature": 1.0, "top_k": 50, "top_p": 1.0,
    "typical_p": 1.0, "repetition_penalty": 1.0, "length_penalty": 1.0,
    "no_repeat_ngram_size": 0, "encoder_no_repeat_ngram_size": 0, "bad_words_ids": None,
    "num_return_sequences": 1, "output_scores": False, "return_dict_in_generate": False,
    "forced_bos_token_id": None, "forced_eos_token_id": None, "remove_invalid_values": False,
    "exponential_decay_length_penalty": None, "suppress_tokens": None,
    "begin_suppress_tokens": None, "epsilon_cutoff": 0.0, "eta_cutoff": 0.0,
    "encoder_repetition_penalty": 1.0, "num_beam_groups": 1, "diversity_penalty": 0.0,
}
# Every field a GenerationConfig has (None = unset).
GENERATION_FIELDS = tuple(GENERATION_DEFAULTS) + (
    "max_new_tokens", "min_new_tokens", "max_time", "stop_strings", "min_p", "top_h",
    "pad_token_id", "bos_token_id", "eos_token_id", "decoder_start_token_id", "output_logits",
    "output_attentions", "output_hidden_states", "renormalize_logits", "sequence_bias",
    "guidance_scale", "cache_implementation", "cache_config", "penalty_alpha", "dola_layers",
    "constraints", "force_words_ids", "low_memory", "prompt_lookup_num_tokens",
    "assistant_early_exit", "token_healing", "watermarking_config", "prefill_chunk_size",
    "compile_config", "disable_compile", "is_assistant", "use_mtp")
# Settings lightpipe does not implement, with the value that means "off".
_UNSUPPORTED = {"epsilon_cutoff": 0.0, "eta_cutoff": 0.0,
                "exponential_decay_length_penalty": None, "encoder_repetition_penalty": 1.0,
                "encoder_no_repeat_ngram_size": 0, "sequence_bias": None, "guidance_scale": 1.0,
                "top_h": None, "num_beam_groups": 1, "diversity_penalty": 0.0,
                "penalty_alpha": None, "dola_layers": None, "constraints": None,
                "force_words_ids": None, "prompt_lookup_num_tokens": None,
                "assistant_early_exit": None, "token_healing": False,
                "watermarking_config": None, "prefill_chunk_size": None, "use_mtp": False}


class GenerationConfig:
    """Generation settings (``generation_config.json``), as transformers' GenerationConfig:
    every field is an attribute, None when unset; unknown keys are kept as attributes."""

    def __init__(self, **kwargs: Any):
        for name in GENERATION_FIELDS:
            setattr(self, name, kwargs.pop(name, None))
        kwargs.pop("_from_model_config", None)
        kwargs.pop("_commit_hash", None)
        self.transformers_version = kwargs.pop("transformers_version", None)
        for name, value in kwargs.items():
            setattr(self, name, value)
        self.validate()

    # -- construction
    @classmethod
    def from_dict(cls, data: dict[str, Any], **kwargs: Any) -> GenerationConfig:
        return cls(**{**data, **kwargs})

    @classmethod
    def from_pretrained(cls, folder: str | os.PathLike,
                        config_file_name: str = "generation_config.json", **kwargs: Any):
        """Read ``generation_config.json`` from a model folder or Hub id."""
        from .hub import resolve

        path = Path(resolve(folder, weights=False, **kwargs)) / config_file_name
        if not path.is_file():
            raise OSError(f"{path} does not exist.")
        return cls.from_dict(json.loads(path.read_text(encoding="utf-8")))

    @classmethod
    def from_model_config(cls, config: Any) -> GenerationConfig:
        """The generation fields a model's config.json holds (the special token ids)."""
        data = config.to_dict() if hasattr(config, "to_dict") else dict(config)
        return cls(**{k: v for k, v in data.items() if k in GENERATION_FIELDS and v is not None})

    # -- views
    def to_dict(self) -> dict[str, Any]:
        return {k: copy.deepcopy(v) for k, v in vars(self).items() if not k.startswith("_")}

    def to_diff_dict(self) -> dict[str, Any]:
        """The fields that are set (not None)."""
        return {k: v for k, v in self.to_dict().items() if v is not None}

    def to_json_string(self) -> str:
        return json.dumps(self.to_diff_dict(), indent=2, sort_keys=True) + "\n"

    def save_pretrained(self, folder: str | os.PathLike) -> None:
        Path(folder).mkdir(parents=True, exist_ok=True)
        (Path(folder) / "generation_config.json").write_text(self.to_json_string(), encoding="utf-8")

    def __repr__(self) -> str:
        return f"GenerationConfig {self.to_json_string()}"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, GenerationConfig) and self.to_diff_dict() == other.to_diff_dict()

    # -- editing
    def update(self, **kwargs: Any) -> dict[str, Any]:
        """Set the known fields among ``kwargs``; return the others (model inputs)."""
        unused = {}
        for key, value in kwargs.items():
            if hasattr(self, key) and not key.startswith("_"):
                setattr(self, key, value)
            else:
                unused[key] = value
        self.validate()
        return unused

    def get_generation_mode(self) -> str:
        """'greedy_search', 'sample', 'beam_search' or 'beam_sample'."""
        sampling = self.do_sample is True
        if self.num_beams is None or self.num_beams == 1:
            return "sample" if sampling else "greedy_search"
        return "beam_sample" if sampling else "beam_search"

    def validate(self) -> None:
        """Errors for settings that cannot work, as the reference raises them."""
        if self.early_stopping not in (None, True, False, "never"):
            raise ValueError(f"`early_stopping` must be a boolean or 'never', but is {self.early_stopping}.")
        if self.max_new_tokens is not None and self.max_new_tokens <= 0:
            raise ValueError(f"`max_new_tokens` must be greater than 0, but is {self.max_new_tokens}.")
        if self.num_return_sequences is not None and self.num_return_sequences > 1:
            if (self.num_beams is None or self.num_beams == 1) and not self.do_sample:
                raise ValueError(
                    "Greedy methods (do_sample != True) without beam search do not support "
                    f"`num_return_sequences` different than 1 (got {self.num_return_sequences}).")
            if self.num_beams is not None and 1 < self.num_beams < self.num_return_sequences:
                raise ValueError(f"`num_return_sequences` ({self.num_return_sequences}) has to be "
                                 f"smaller or equal to `num_beams` ({self.num_beams}).")
        for name in ("streamer", "logits_processor", "stopping_criteria", "assistant_model"):
            if name in vars(self):
                raise ValueError(f"Argument `{name}` is not a valid argument of `GenerationConfig`. "
                                 "It should be passed to `generate()` (or a pipeline) directly.")


# --- 3. Logits processors (each: (input_ids, scores) -> new scores) --------------------------

class LogitsProcessorList(list):
    """Processors applied in order."""

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        for processor in self:
            scores = processor(input_ids, scores)
        return scores


def _ban(scores: torch.Tensor, token_ids: torch.Tensor, memo: dict | None = None) -> torch.Tensor:
    """A copy of ``scores`` with these tokens (those inside the vocabulary) at -inf. ``memo``
    keeps the filtered ids per vocabulary size and device (processors run every step)."""
    key = (scores.shape[-1], scores.device)
    index = None if memo is None else memo.get(key)
    if index is None:
        token_ids = token_ids.to(scores.device)
        index = token_ids[(token_ids >= 0) & (token_ids < scores.shape[-1])]
        if memo is not None:
            memo[key] = index
    return scores.index_fill(1, index, -math.inf)


class MinLengthLogitsProcessor:
    """No end-of-sequence before the sequence (prompt included) has ``min_length`` tokens."""

    def __init__(self, min_length: int, eos_token_id: torch.Tensor):
        self.min_length, self.eos_token_id = min_length, eos_token_id
        self._memo: dict = {}

    def __call__(self, input_ids, scores):
        if input_ids.shape[-1] >= self.min_length:
            return scores
        return _ban(scores, self.eos_token_id, self._memo)


class MinNewTokensLengthLogitsProcessor(MinLengthLogitsProcessor):
    """No end-of-sequence before ``min_new_tokens`` tokens were generated."""

    def __init__(self, prompt_length_to_skip: int, min_new_tokens: int, eos_token_id: torch.Tensor):
        super().__init__(prompt_length_to_skip + min_new_tokens, eos_token_id)


class RepetitionPenaltyLogitsProcessor:
    """Scores of tokens already in the sequence: divided by ``penalty`` when positive,
    multiplied when negative (CTRL). Left padding (``prompt_ignore_length`` per row) is ignored."""

    def __init__(self, penalty: float, prompt_ignore_length: torch.Tensor | None = None):
        if not isinstance(penalty, (int, float)) or isinstance(penalty, bool) or not penalty > 0:
            raise ValueError(f"`repetition_penalty` has to be a strictly positive float, but is {penalty}")
        self.penalty, self.prompt_ignore_length = float(penalty), prompt_ignore_length

    def __call__(self, input_ids, scores):
        vocab_size = scores.shape[-1]
        if self.prompt_ignore_length is not None:  # padding ids -> the spare column below
            positions = torch.arange(input_ids.shape[1], device=input_ids.device)
            ignored = positions[None, :] < self.prompt_ignore_length.to(input_ids.device)[:, None]
            input_ids = input_ids.masked_fill(ignored, vocab_size)
        input_ids = input_ids.clamp(max=vocab_size)
        padded = F.pad(scores, (0, 1))  # a spare column for ids outside the output vocabulary
        seen = padded.gather(1, input_ids)
        seen = torch.where(seen < 0, seen * self.penalty, seen / self.penalty)
        return padded.scatter(1, input_ids, seen)[:, :vocab_size]


class NoRepeatNGramLogitsProcessor:
    """Ban every token that would complete an n-gram already in the sequence."""

    def __init__(self, ngram_size: int):
        if not isinstance(ngram_size, int) or ngram_size <= 0:
            raise ValueError(f"`no_repeat_ngram_size` has to be a strictly positive integer, but is {ngram_size}")
        self.ngram_size = ngram_size

    def __call__(self, input_ids, scores):
        length, size = input_ids.shape[-1], self.ngram_size
        if length < size:
            return scores
        suffix = input_ids[:, length + 1 - size:]  # the last n-1 tokens: (batch, n-1)
        windows = input_ids.unfold(1, size, 1)  # every n-gram so far: (batch, count, n)
        repeats = (windows[..., :-1] == suffix[:, None]).all(dim=-1)
        vocab_size = scores.shape[-1]
        banned = torch.zeros(scores.shape[0], vocab_size + 1, dtype=torch.bool, device=scores.device)
        banned.scatter_(1, torch.where(repeats, windows[..., -1].clamp(max=vocab_size), vocab_size), True)
        return scores.masked_fill(banned[:, :vocab_size], -math.inf)


class NoBadWordsLogitsProcessor:
    """Ban each ``bad_words_ids`` sequence: its last token once the sequence so far ends with
    the others (a one-token sequence: always). Sequences that are just an EOS are kept out."""

    def __init__(self, bad_words_ids, eos_token_id=None):
        if not isinstance(bad_words_ids, list) or not bad_words_ids or not all(
                isinstance(seq, list) and seq and all(isinstance(t, int) and t >= 0 for t in seq)
                for seq in bad_words_ids):
            raise ValueError(f"`bad_words_ids` has to be a non-empty list of lists of positive "
                             f"integers, but is {bad_words_ids}.")
        eos = [] if eos_token_id is None else torch.as_tensor(eos_token_id).reshape(-1).tolist()
        sequences = [seq for seq in bad_words_ids if not (len(seq) == 1 and seq[0] in eos)]
        self.single = torch.tensor([seq[0] for seq in sequences if len(seq) == 1], dtype=torch.long)
        self.longer = [seq for seq in sequences if len(seq) > 1]

    def __call__(self, input_ids, scores):
        if len(self.single):
            scores = _ban(scores, self.single)
        for seq in self.longer:
            prefix = torch.tensor(seq[:-1], device=input_ids.device)
            if input_ids.shape[1] < len(prefix) or seq[-1] >= scores.shape[-1]:
                continue
            rows = (input_ids[:, input_ids.shape[1] - len(prefix):] == prefix).all(dim=1)
            if bool(rows.any()):
                scores = scores.clone()
                scores[rows, seq[-1]] = -math.inf
        return scores


class SuppressTokensLogitsProcessor:
    def __init__(self, suppress_tokens, begin_index: int | None = None):
        self.tokens, self.begin_index = torch.tensor(list(suppress_tokens)), begin_index

    def __call__(self, input_ids, scores):
        if self.begin_index is not None and input_ids.shape[-1] != self.begin_index:
            return scores
        return _ban(scores, self.tokens)


class ForcedTokenLogitsProcessor:
    """Force ``token_ids`` at length ``at_length`` (forced BOS: 1; forced EOS: max_length - 1)."""

    def __init__(self, at_length: int, token_ids):
        self.at_length = at_length
        self.tokens = torch.tensor([token_ids] if isinstance(token_ids, int) else list(token_ids))

    def __call__(self, input_ids, scores):
        if input_ids.shape[-1] != self.at_length:
            return scores
        forced = torch.full_like(scores, -math.inf)
        return forced.index_fill(1, self.tokens.to(scores.device), 0.0)


class InfNanRemoveLogitsProcessor:
    def __call__(self, input_ids, scores):
        scores = torch.where(scores != scores, 0.0, scores)
        big = torch.finfo(scores.dtype).max
        return torch.where(scores == math.inf, big, scores)


class TemperatureLogitsWarper:
    def __init__(self, temperature: float):
        if not isinstance(temperature, (int, float)) or isinstance(temperature, bool) or not temperature > 0:
            hint = " If you're looking for greedy decoding strategies, set `do_sample=False`." \
                if temperature == 0 else ""
            raise ValueError(f"`temperature` (={temperature}) has to be a strictly positive float, "
                             f"otherwise your next token scores will be invalid.{hint}")
        self.temperature = float(temperature)

    def __call__(self, input_ids, scores):
        return scores / self.temperature


class TopKLogitsWarper:
    """Keep the ``top_k`` best tokens (ties with the k-th included)."""

    def __init__(self, top_k: int, min_tokens_to_keep: int = 1):
        if not isinstance(top_k, int) or isinstance(top_k, bool) or top_k <= 0:
            raise ValueError(f"`top_k` has to be a strictly positive integer, but is {top_k}")
        self.top_k = max(top_k, min_tokens_to_keep)

    def __call__(self, input_ids, scores):
        kth = torch.topk(scores, min(self.top_k, scores.shape[-1]))[0][..., -1, None]
        return scores.masked_fill(scores < kth, -math.inf)


class TopPLogitsWarper:
    """Keep the smallest set of best tokens whose probabilities add up to more than ``top_p``."""

    def __init__(self, top_p: float, min_tokens_to_keep: int = 1):
        top_p = float(top_p)
        if not 0 < top_p <= 1.0:
            raise ValueError(f"`top_p` has to be a float in (0, 1], but is {top_p}: 1 keeps every "
                             "token, smaller values keep only the most likely ones.")
        self.top_p, self.min_tokens_to_keep = top_p, min_tokens_to_keep

    def __call__(self, input_ids, scores):
        ascending, order = torch.sort(scores, descending=False)
        cumulative = ascending.softmax(dim=-1).cumsum(dim=-1)
        remove = cumulative <= (1 - self.top_p)  # the tail holding at most 1 - top_p of the mass
        remove[..., -self.min_tokens_to_keep:] = False
        return scores.masked_fill(remove.scatter(1, order, remove), -math.inf)


class TypicalLogitsWarper:
    """Locally typical sampling (Meister et al., 2022, arXiv:2202.00666): rank the tokens by how
    far their surprisal (-log p) is from the distribution's entropy and keep the most typical
    ones until they hold ``mass`` of the probability."""

    def __init__(self, mass: float, min_tokens_to_keep: int = 1):
        mass = float(mass)
        if not 0 < mass < 1:
            raise ValueError(f"`typical_p` has to be a float > 0 and < 1, but is {mass}.")
        self.mass, self.min_tokens_to_keep = mass, min_tokens_to_keep

    def __call__(self, input_ids, scores):
        log_probs = scores.log_softmax(dim=-1)
        probs = log_probs.exp()
        entropy = -(log_probs * probs).nansum(dim=-1, keepdim=True)
        distance = (entropy + log_probs).abs()  # |surprisal - entropy|
        by_distance, order = distance.sort(dim=-1)  # most typical first
        held = scores.gather(-1, order).softmax(dim=-1).cumsum(dim=-1)
        last = (held < self.mass).sum(dim=-1, keepdim=True).clamp_(max=scores.shape[-1] - 1)
        remove = distance > by_distance.gather(-1, last)  # ties with the last one kept stay
        remove.scatter_(-1, order[:, :self.min_tokens_to_keep], False)
        return scores.masked_fill(remove, -math.inf)


class MinPLogitsWarper:
    """Drop tokens less likely than ``min_p`` times the most likely one."""

    def __init__(self, min_p: float, min_tokens_to_keep: int = 1):
        if not 0 <= min_p <= 1.0:
            raise ValueError(f"`min_p` has to be a float in the [0, 1] interval, but is {min_p}")
        self.min_p, self.min_tokens_to_keep = min_p, min_tokens_to_keep

    def __call__(self, input_ids, scores):
        probs = scores.softmax(dim=-1)
        remove = probs < self.min_p * probs.amax(dim=-1, keepdim=True)
        best = probs.topk(min(self.min_tokens_to_keep, probs.shape[-1]), dim=-1).indices
        remove.scatter_(-1, best, False)
        return scores.masked_fill(remove, -math.inf)


class LogitNormalization:
    def __call__(self, input_ids, scores):
        return scores.log_softmax(dim=-1)


# --- 4. Stopping criteria (each: (input_ids, scores) -> bool per row) ------------------------

class StoppingCriteriaList(list):
    """A row is done when any criterion says so."""

    def __call__(self, input_ids: torch.Tensor, scores: Any = None, **kwargs: Any) -> torch.Tensor:
        done = torch.zeros(input_ids.shape[0], dtype=torch.bool, device=input_ids.device)
        for criterion in self:
            done = done | criterion(input_ids, scores, **kwargs)
        return done


class MaxLengthCriteria:
    def __init__(self, max_length: int):
        self.max_length = max_length

    def __call__(self, input_ids, scores=None, **kwargs):
        done = input_ids.shape[-1] >= self.max_length
        return torch.full((input_ids.shape[0],), done, dtype=torch.bool, device=input_ids.device)


class MaxTimeCriteria:
    def __init__(self, max_time: float, initial_timestamp: float | None = None):
        self.max_time = max_time
        self.initial_timestamp = time.time() if initial_timestamp is None else initial_timestamp

    def __call__(self, input_ids, scores=None, **kwargs):
        done = time.time() - self.initial_timestamp > self.max_time
        return torch.full((input_ids.shape[0],), done, dtype=torch.bool, device=input_ids.device)


class EosTokenCriteria:
    def __init__(self, eos_token_id):
        self.eos_token_id = torch.as_tensor(eos_token_id).reshape(-1)

    def __call__(self, input_ids, scores=None, **kwargs):
        return torch.isin(input_ids[:, -1], self.eos_token_id.to(input_ids.device))


class StopStringCriteria:
    """Stop a row once one of ``stop_strings`` appears in its text, as the reference decides it:
    the occurrence must reach into the last token (one complete before it was already checked
    at an earlier step). Tokens are compared as the bytes they stand for, so a string split
    across tokens, or overhanging either end of them, matches."""

    def __init__(self, tokenizer: Any, stop_strings: str | list[str]):
        self.stop_strings = (stop_strings,) if isinstance(stop_strings, str) else tuple(stop_strings)
        if not self.stop_strings or not all(isinstance(s, str) and s for s in self.stop_strings):
            raise ValueError(f"stop_strings must be non-empty strings, got {stop_strings!r}.")
        self.targets = [s.encode("utf-8") for s in self.stop_strings]
        self.tokenizer = tokenizer
        self._bytes: dict[int, bytes] = {}
        self._byte_level = _decoder_is_byte_level(tokenizer)
        self._prefix_tokens = None

    def _token_bytes(self, token_id: int) -> bytes:
        cached = self._bytes.get(token_id)
        if cached is None:
            cached = self._bytes[token_id] = self._convert(token_id)
        return cached

    def _convert(self, token_id: int) -> bytes:
        token = self.tokenizer.convert_ids_to_tokens(token_id)
        if token is None:
            return b""
        if self._byte_level:
            table = _unicode_to_byte()
            if all(char in table for char in token):
                return bytes(table[char] for char in token)
        if len(token) == 6 and token.startswith("<0x") and token.endswith(">"):
            try:
                return bytes([int(token[3:5], 16)])
            except ValueError:
                pass
        # Decode after a fixed prefix, then drop it: keeps a word-start marker's space.
        if self._prefix_tokens is None:
            ids = self.tokenizer("abcdef", add_special_tokens=False)["input_ids"]
            self._prefix_tokens = self.tokenizer.convert_ids_to_tokens(ids)
        text = self.tokenizer.convert_tokens_to_string(list(self._prefix_tokens) + [token])
        return text[text.find("abcdef") + 6:].encode("utf-8")

    def __call__(self, input_ids, scores=None, **kwargs):
        longest = max(len(t) for t in self.targets)
        done = []
        for row in input_ids[:, -(longest + 1):].tolist():
            pieces = [self._token_bytes(t) for t in row]
            before = b"".join(pieces[:-1])
            text, start = before + pieces[-1], len(before)
            done.append(any(_ends_across(text, start, target) for target in self.targets))
        return torch.tensor(done, dtype=torch.bool, device=input_ids.device)


def _ends_across(text: bytes, start: int, target: bytes) -> bool:
    """Whether ``target`` occurs in ``text`` ending after ``start`` (in the last token)."""
    return text.find(target, max(0, start - len(target) + 1)) != -1


def _decoder_is_byte_level(tokenizer: Any) -> bool:
    backend = getattr(tokenizer, "backend_tokenizer", None)
    decoder = getattr(backend, "decoder", None)
    if decoder is None:
        return False
    if type(decoder).__name__ == "ByteLevel":
        return True
    state = getattr(decoder, "__getstate__", lambda: None)()
    return isinstance(state, (str, bytes)) and b'"ByteLevel"' in (state.encode() if isinstance(state, str) else state)


_BYTE_TABLE: dict[str, int] = {}


def _unicode_to_byte() -> dict[str, int]:
    """GPT-2's byte-level alphabet, reversed: printable character -> byte."""
    if not _BYTE_TABLE:
        kept = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + \
            list(range(ord("®"), ord("ÿ") + 1))
        extra = 0
        for byte in range(256):
            if byte in kept:
                _BYTE_TABLE[chr(byte)] = byte
            else:
                _BYTE_TABLE[chr(256 + extra)] = byte
                extra += 1
    return _BYTE_TABLE


# --- 5. Streamers ----------------------------------------------------------------------------

class BaseStreamer:
    def put(self, value: torch.Tensor) -> None:
        raise NotImplementedError

    def end(self) -> None:
        raise NotImplementedError


class TextStreamer(BaseStreamer):
    """Print text as it is generated, a word at a time (transformers' TextStreamer)."""

    def __init__(self, tokenizer: Any, skip_prompt: bool = False, **decode_kwargs: Any):
        self.tokenizer, self.skip_prompt, self.decode_kwargs = tokenizer, skip_prompt, decode_kwargs
        self.token_cache: list[int] = []
        self.print_len = 0
        self.next_tokens_are_prompt = True

    def put(self, value: torch.Tensor) -> None:
        if value.dim() > 1 and value.shape[0] > 1:
            raise ValueError("TextStreamer only supports batch size 1")
        if value.dim() > 1:
            value = value[0]
        if self.skip_prompt and self.next_tokens_are_prompt:
            self.next_tokens_are_prompt = False
            return
        self.token_cache.extend(value.tolist())
        text = self.tokenizer.decode(self.token_cache, **self.decode_kwargs)
        if text.endswith("\n"):  # flush, keeping the last token as context for the next space
            printable = text[self.print_len:]
            self.token_cache = self.token_cache[-1:]
            self.print_len = len(self.tokenizer.decode(self.token_cache[-1], **self.decode_kwargs))
        elif text and _is_cjk(ord(text[-1])):
            printable = text[self.print_len:]
            self.print_len += len(printable)
        elif all(c.isspace() or unicodedata.category(c)[0] in "LMN" for c in text[self.print_len:]):
            printable = text[self.print_len:]
            self.print_len += len(printable)
        else:  # a symbol may start formatting or be half a character: wait for the next space
            printable = text[self.print_len:text.rfind(" ") + 1]
            self.print_len += len(printable)
        self.on_finalized_text(printable)

    def end(self) -> None:
        printable = ""
        if self.token_cache:
            printable = self.tokenizer.decode(self.token_cache, **self.decode_kwargs)[self.print_len:]
        self.token_cache, self.print_len = [], 0
        self.next_tokens_are_prompt = True
        self.on_finalized_text(printable, stream_end=True)

    def on_finalized_text(self, text: str, stream_end: bool = False) -> None:
        print(text, flush=True, end=None if stream_end else "")


class TextIteratorStreamer(TextStreamer):
    """Text pieces in a queue, read by iterating the streamer (run generate() in a thread)."""

    def __init__(self, tokenizer: Any, skip_prompt: bool = False, timeout: float | None = None,
                 **decode_kwargs: Any):
        super().__init__(tokenizer, skip_prompt, **decode_kwargs)
        self.text_queue: Queue = Queue()
        self.stop_signal = None
        self.timeout = timeout

    def on_finalized_text(self, text: str, stream_end: bool = False) -> None:
        self.text_queue.put(text, timeout=self.timeout)
        if stream_end:
            self.text_queue.put(self.stop_signal, timeout=self.timeout)

    def __iter__(self):
        return self

    def __next__(self) -> str:
        value = self.text_queue.get(timeout=self.timeout)
        if value == self.stop_signal:
            raise StopIteration
        return value


def _is_cjk(cp: int) -> bool:
    return any(low <= cp <= high for low, high in (
        (0x4E00, 0x9FFF), (0x3400, 0x4DBF), (0x20000, 0x2A6DF), (0x2A700, 0x2B73F),
        (0x2B740, 0x2B81F), (0x2B820, 0x2CEAF), (0xF900, 0xFAFF), (0x2F800, 0x2FA1F)))


# --- 6. generate() -----------------------------------------------------------------------------

class GenerationMixin:
    """``generate()`` for causal language models and encoder-decoders (see
    ``is_encoder_decoder``). A model class lists it first in its bases
    and its forward takes ``input_ids, attention_mask, position_ids, cache, use_cache,
    logits_to_keep`` and returns ``logits`` (and ``cache``)."""

    # Models with learned absolute positions cannot go past their table (GPT-2, OPT).
    learned_positions = False
    # Encoder-decoder models (T5, BART, Whisper) set this and define ``encode(inputs,
    # attention_mask)`` -> encoder states and ``decode(decoder_input_ids, encoder_hidden_states,
    # encoder_attention_mask, cache, use_cache, logits_to_keep)`` -> logits (and cache);
    # generate() then starts the decoder from ``decoder_start_token_id``, prepended to a given
    # ``decoder_input_ids`` unless ``prepend_decoder_start`` is False (Whisper's prompts).
    is_encoder_decoder = False
    prepend_decoder_start = True
    # tie_word_embeddings when config.json does not say (transformers' class default).
    tie_word_embeddings_default = True
    # On the CPU, generate() keeps a copy of the linear weights in oneDNN's blocked layout:
    # 1.5-2.5x faster decoding steps, for twice the weights' memory. False: no copy.
    pack_weights = True

    @classmethod
    def from_pretrained(cls, name_or_path: str | os.PathLike, *, generation_config=None,
                        revision: str | None = None, token: Any = None, cache_dir: Any = None,
                        local_files_only: bool = False, subfolder: str = "", **kwargs: Any):
        """Load the model and its ``generation_config.json`` (or the generation fields of its
        config.json when there is none)."""
        from .config import Config
        from .hub import resolve

        folder = resolve(name_or_path, revision=revision, token=token, cache_dir=cache_dir,
                         local_files_only=local_files_only, subfolder=subfolder)
        config = kwargs.pop("config", None) or Config.from_folder(folder)
        raw = json.loads((folder / "config.json").read_text(encoding="utf-8")) \
            if (folder / "config.json").is_file() else {}
        if "tie_word_embeddings" not in raw:
            config.tie_word_embeddings = cls.tie_word_embeddings_default
        model = super().from_pretrained(folder, config=config, **kwargs)
        model.name_or_path = str(name_or_path)
        if generation_config is None:
            generation_config = GenerationConfig.from_model_config(config)
            if (folder / "generation_config.json").is_file():
                generation_config = GenerationConfig.from_pretrained(folder)
        model.generation_config = generation_config
        return model

    @property
    def generation_config(self) -> GenerationConfig:
        if "_generation_config" not in self.__dict__:
            self.__dict__["_generation_config"] = GenerationConfig.from_model_config(self.config)
        return self.__dict__["_generation_config"]

    @generation_config.setter
    def generation_config(self, value: GenerationConfig) -> None:
        self.__dict__["_generation_config"] = value

    def can_generate(self) -> bool:
        return True

    def pack_linear_weights(self) -> None:
        """Keep each linear weight also in oneDNN's layout (CPU; see ``linear``), when the
        memory for a second copy of the weights is there."""
        modules = [m for m in self.modules() if isinstance(m, PackableLinear)]
        missing = [m for m in modules if m.packed_weight() is None]
        if not missing:
            return
        needed = sum(m.weight.numel() * m.weight.element_size() for m in missing)
        available = _available_memory()
        if available is not None and needed * 1.25 > available:
            if not getattr(self, "_warned_pack", False):
                logger.info("Not packing the linear weights for the CPU (%.1f GB needed, %.1f GB "
                            "available): decoding will be slower.", needed / 1e9, available / 1e9)
                self._warned_pack = True
            return
        for module in missing:
            module.pack()

    def begin_decode(self) -> None:
        """Called by generate() once the weights are packed: a model with a lean path for its
        one-token decoding steps resolves what that path needs here (GPT-2)."""

    def end_decode(self) -> None:
        """Called when generate() returns or fails: drop what ``begin_decode`` kept."""

    def unpack_linear_weights(self) -> None:
        """Free the packed copies made by ``pack_linear_weights``."""
        for module in self.modules():
            if isinstance(module, PackableLinear):
                module.unpack()

    def save_pretrained(self, folder: str | os.PathLike, **kwargs: Any) -> None:
        super().save_pretrained(folder, **kwargs)
        self.generation_config.save_pretrained(folder)

    # -- the entry point
    @torch.inference_mode()
    def generate(self, inputs: torch.Tensor | None = None,
                 generation_config: GenerationConfig | None = None,
                 logits_processor: list | None = None, stopping_criteria: list | None = None,
                 streamer: BaseStreamer | None = None, tokenizer: Any = None,
                 generator: torch.Generator | None = None, **kwargs: Any):
        """Generate token ids after ``inputs`` (or ``input_ids=``), as transformers does.

        Generation settings come from the keyword arguments, then ``generation_config``, then
        the model's ``generation_config``, then the global defaults. Returns the sequences
        (prompt + new tokens; rows that stop early are padded with ``pad_token_id``), or a
        ModelOutput with ``sequences`` (and ``scores`` / ``logits`` / ``sequences_scores``)
        when ``return_dict_in_generate=True``. ``generator`` (lightpipe's addition) seeds
        sampling without touching torch's global random state.

        Decoder-only models also take the prompt as ``inputs_embeds=`` (batch, sequence,
        hidden size), with or without the ``input_ids`` they stand for: the sequences returned
        then start with those ids (none given: only the new tokens); see
        ``_generate_from_embeds``.
        """
        config, model_kwargs, default_max = self._generation_config_for_call(generation_config, kwargs)
        encoder_inputs = None
        if self.is_encoder_decoder:  # the encoder's inputs, then the decoder's prompt if any
            encoder_inputs = self._pop_encoder_inputs(inputs, model_kwargs)
            inputs = None
        input_ids = model_kwargs.pop("input_ids", None)
        if inputs is not None and input_ids is not None:
            raise ValueError("Pass the prompt either as `inputs` or as `input_ids`, not both.")
        input_ids = inputs if inputs is not None else input_ids
        attention_mask = model_kwargs.pop("attention_mask", None)
        # A decoder-only prompt given as embeddings (encoder-decoders: refused below, as before).
        inputs_embeds = None if self.is_encoder_decoder else model_kwargs.pop("inputs_embeds", None)
        for name in ("use_cache", "output_attentions", "output_hidden_states", "token_type_ids"):
            model_kwargs.pop(name, None)
        if model_kwargs:
            raise ValueError(f"The following `model_kwargs` are not used by the model: "
                             f"{sorted(model_kwargs)} (note: typos in the generate arguments will "
                             "also show up in this list)")
        unsupported = [k for k, off in _UNSUPPORTED.items() if getattr(config, k, None) not in (None, off)]
        if unsupported:
            raise UnsupportedModelError(
                f"lightpipe's generate() does not implement {', '.join(unsupported)}. Supported: "
                "greedy, sampling (temperature, top_k, top_p, min_p), beam search, "
                "repetition_penalty, no_repeat_ngram_size, min/max lengths, stop strings.")
        mode = config.get_generation_mode()
        if streamer is not None and mode.startswith("beam"):
            raise ValueError("`streamer` cannot be used with beam search (yet!). Make sure that "
                             "`num_beams` is set to 1.")

        device = self.device
        if self.pack_weights and device.type == "cpu":
            self.pack_linear_weights()
        self.begin_decode()
        try:
            if encoder_inputs is not None:
                return self._generate_encoder_decoder(encoder_inputs, config, mode, default_max,
                                                      logits_processor, stopping_criteria, streamer,
                                                      tokenizer, generator)
            if inputs_embeds is not None:
                return self._generate_from_embeds(inputs_embeds, input_ids, attention_mask, config, mode,
                                                  default_max, logits_processor, stopping_criteria,
                                                  streamer, tokenizer, generator)
            eos, pad = self._special_tokens(config, attention_mask is not None, input_ids)
            if input_ids is None:
                if config.bos_token_id is None:
                    raise ValueError("`bos_token_id` has to be defined when no `input_ids` are provided.")
                input_ids = torch.full((1, 1), config.bos_token_id, dtype=torch.long)
            if not isinstance(input_ids, torch.Tensor) or input_ids.dim() != 2:
                raise InputError("input_ids must be a 2-D tensor of token ids (batch, sequence); "
                                 "the tokenizer gives one with return_tensors='pt'.")
            if input_ids.shape[1] == 0:
                raise InputError("The prompt is empty (0 tokens). Pass input_ids=None to start from "
                                 "the model's bos_token_id, or give at least one token.")
            input_ids = input_ids.to(device)
            batch_size = input_ids.shape[0]
            if attention_mask is None:
                attention_mask = self._infer_mask(input_ids, pad, eos)
            attention_mask = attention_mask.to(device)
            if batch_size > 1 and pad is not None and bool((attention_mask[:, -1] == 0).any()):
                logger.warning("A decoder-only architecture is being used, but right-padding was "
                               "detected! For correct generation results, please set "
                               "`padding_side='left'` when initializing the tokenizer.")
            position_ids = (attention_mask.long().cumsum(-1) - 1).masked_fill(attention_mask == 0, 0)
            if bool(attention_mask.all()):
                attention_mask = None  # no padding: SDPA's causal path, no mask to build

            input_ids, position_ids, attention_mask = _expand_rows(config, input_ids, position_ids,
                                                                   attention_mask)
            if streamer is not None:
                streamer.put(input_ids.cpu())

            prompt_length = input_ids.shape[1]
            self._set_lengths(config, prompt_length, default_max)
            processors = self._logits_processors(config, prompt_length, attention_mask, eos, logits_processor)
            criteria = self._stopping_criteria(config, eos, tokenizer, stopping_criteria)
            state = _DecodeState(input_ids, attention_mask, position_ids, config.max_length,
                                 KVCache(config.max_length) if config.use_cache else None)
            if mode.startswith("beam"):
                return self._beam_search(state, config, processors, criteria, pad, eos, generator,
                                         batch_size)
            return self._sample(state, config, processors, criteria, pad, streamer, generator)
        finally:
            self.end_decode()

    # -- encoder-decoder models: the encoder runs once, the decoder generates
    def _pop_encoder_inputs(self, inputs, model_kwargs: dict) -> dict:
        name = self.main_input_name
        source = model_kwargs.pop(name, None)
        if inputs is not None and source is not None:
            raise ValueError(f"Pass the encoder's input either as `inputs` or as `{name}`, not both.")
        decoder_input_ids = model_kwargs.pop("decoder_input_ids", None)
        if decoder_input_ids is None and name != "input_ids":  # the reference's alias
            decoder_input_ids = model_kwargs.pop("input_ids", None)
        model_kwargs.pop("decoder_attention_mask", None)
        return {"inputs": inputs if inputs is not None else source,
                "attention_mask": model_kwargs.pop("attention_mask", None),
                "encoder_outputs": model_kwargs.pop("encoder_outputs", None),
                "decoder_input_ids": decoder_input_ids}

    def _generate_encoder_decoder(self, given: dict, config, mode: str, default_max: bool,
                                  logits_processor, stopping_criteria, streamer, tokenizer, generator):
        """Run the encoder once, then the greedy / sampling / beam loop over ``decode()``.
        Lengths count decoder tokens (the start token included), as in the reference."""
        device = self.device
        source, mask, encoded = given["inputs"], given["attention_mask"], given["encoder_outputs"]
        name = self.main_input_name
        if encoded is None:
            if not isinstance(source, torch.Tensor) or source.dim() < 2:
                raise InputError(f"generate() needs the encoder's input as a batched tensor: pass "
                                 f"`{name}` as the {'tokenizer' if name == 'input_ids' else 'feature extractor'} "
                                 "gives it with return_tensors='pt'.")
            if source.shape[1] == 0 or source.shape[0] == 0:
                raise InputError(f"The encoder's input `{name}` is empty (shape {tuple(source.shape)}).")
            source = source.to(device)
        elif not isinstance(encoded, torch.Tensor):  # a ModelOutput or a tuple
            encoded = encoded["last_hidden_state"] if isinstance(encoded, dict) else encoded[0]
        eos, pad = self._special_tokens(config, mask is not None, source)
        if encoded is None:  # (no mask given: none inferred from padding, as transformers 5)
            encoded = self.encode(source, attention_mask=mask)
        encoded = encoded.to(device)
        batch_size = encoded.shape[0]
        if mask is not None:
            mask = None if bool(mask.all()) else mask.to(device)

        start = config.decoder_start_token_id
        if start is None:
            start = config.bos_token_id
        if start is None:
            raise ValueError("`decoder_start_token_id` or `bos_token_id` has to be defined for "
                             "encoder-decoder generation.")
        starts = torch.as_tensor(start, dtype=torch.long, device=device).reshape(-1, 1)
        starts = starts.expand(batch_size, 1) if starts.shape[0] == 1 else starts
        decoder_input_ids = given["decoder_input_ids"]
        if decoder_input_ids is None:
            decoder_input_ids = starts
        else:
            decoder_input_ids = decoder_input_ids.to(device)
            if self.prepend_decoder_start and bool((decoder_input_ids[:, 0] != starts[:, 0]).all()):
                decoder_input_ids = torch.cat((starts, decoder_input_ids), dim=-1)

        decoder_input_ids, encoded, mask = _expand_rows(config, decoder_input_ids, encoded, mask)
        if streamer is not None:
            streamer.put(decoder_input_ids.cpu())
        prompt_length = decoder_input_ids.shape[1]
        self._set_lengths(config, prompt_length, default_max)
        processors = self._logits_processors(config, prompt_length, None, eos, logits_processor)
        criteria = self._stopping_criteria(config, eos, tokenizer, stopping_criteria)
        positions = torch.arange(prompt_length, device=device).expand(decoder_input_ids.shape[0], -1)
        state = _DecodeState(decoder_input_ids, None, positions, config.max_length,
                             EncoderDecoderCache(config.max_length) if config.use_cache else None)
        state.encoder_states, state.encoder_mask = encoded, mask
        if mode.startswith("beam"):
            return self._beam_search(state, config, processors, criteria, pad, eos, generator,
                                     batch_size)
        return self._sample(state, config, processors, criteria, pad, streamer, generator)

    # -- decoder-only models: a prompt given as embeddings
    def _generate_from_embeds(self, inputs_embeds, input_ids, attention_mask, config, mode: str,
                              default_max: bool, logits_processor, stopping_criteria, streamer,
                              tokenizer, generator):
        """``generate(inputs_embeds=...)``, as the reference: the first step reads the prompt as
        embeddings, later steps feed the new tokens through the cache. The returned sequences
        are the ``input_ids`` given with the embeddings (none: only the new tokens), then the
        new tokens; lengths (max_new_tokens, min_new_tokens) count those ids, and an explicit
        ``max_length`` / ``min_length`` also counts the embedded prompt when the ids do not
        stand for all of it. The attention mask (given, or inferred from the ids' padding)
        covers the embedded prompt; positions follow it as for ids."""
        import inspect

        device = self.device
        if "inputs_embeds" not in inspect.signature(self.forward).parameters:
            raise UnsupportedModelError(f"{type(self).__name__} does not take inputs_embeds: "
                                        "pass the prompt as input_ids.")
        if not isinstance(inputs_embeds, torch.Tensor) or inputs_embeds.dim() != 3 \
                or not inputs_embeds.is_floating_point():
            got = (f"a {inputs_embeds.dim()}-D {inputs_embeds.dtype} tensor"
                   if isinstance(inputs_embeds, torch.Tensor) else type(inputs_embeds).__name__)
            raise InputError(f"inputs_embeds must be a 3-D float tensor (batch, sequence, hidden "
                             f"size), such as model.get_input_embeddings()(input_ids); got {got}.")
        batch_size, embeds_length, width = inputs_embeds.shape
        if batch_size == 0 or embeds_length == 0:
            raise InputError(f"inputs_embeds is empty (shape {tuple(inputs_embeds.shape)}): give "
                             "at least one position per row.")
        embedding = self.get_input_embeddings() if hasattr(self, "get_input_embeddings") else None
        expected = getattr(embedding, "embedding_dim", None)
        if expected is not None and width != expected:
            raise InputError(f"inputs_embeds has {width} features per position but this model's "
                             f"input embeddings have {expected}: build them with "
                             "model.get_input_embeddings() (shape: batch, sequence, "
                             f"{expected}).")
        inputs_embeds = inputs_embeds.to(device=device, dtype=self.dtype)
        if input_ids is None:  # only the new tokens will be returned
            input_ids = torch.zeros(batch_size, 0, dtype=torch.long, device=device)
        elif not isinstance(input_ids, torch.Tensor) or input_ids.dim() != 2 \
                or input_ids.is_floating_point():
            raise InputError("input_ids must be a 2-D tensor of token ids (batch, sequence); "
                             "the tokenizer gives one with return_tensors='pt'.")
        elif input_ids.shape[0] != batch_size or input_ids.shape[1] > embeds_length:
            raise InputError(f"input_ids {tuple(input_ids.shape)} do not fit inputs_embeds "
                             f"{tuple(inputs_embeds.shape)}: give the same batch size, and at "
                             "most as many ids as embedded positions (the ids of the prompt's "
                             "last positions), or leave input_ids out.")
        input_ids = input_ids.to(device)
        ids_length = input_ids.shape[1]
        offset = embeds_length - ids_length  # embedded positions with no id in the sequences
        eos, pad = self._special_tokens(config, attention_mask is not None, inputs_embeds)
        if attention_mask is None:  # as the reference: from the ids' padding, if ids are given
            attention_mask = self._infer_mask(input_ids, pad, eos) if ids_length else \
                torch.ones(batch_size, embeds_length, dtype=torch.long, device=device)
        if not isinstance(attention_mask, torch.Tensor) or \
                tuple(attention_mask.shape) != (batch_size, embeds_length):
            got = tuple(attention_mask.shape) if isinstance(attention_mask, torch.Tensor) else \
                type(attention_mask).__name__
            raise InputError(f"The attention mask must cover the embedded prompt: shape (batch, "
                             f"sequence) = {(batch_size, embeds_length)}, 1 for real positions "
                             f"and 0 for (left) padding; got {got}. When input_ids are shorter "
                             "than inputs_embeds, pass attention_mask.")
        attention_mask = attention_mask.to(device)
        position_ids = (attention_mask.long().cumsum(-1) - 1).masked_fill(attention_mask == 0, 0)
        if bool(attention_mask.all()):
            attention_mask = None
        config.use_cache = True  # as the reference: the embeddings are read once, into the cache

        inputs_embeds, input_ids, position_ids, attention_mask = _expand_rows(
            config, inputs_embeds, input_ids, position_ids, attention_mask)
        if streamer is not None:
            streamer.put(input_ids.cpu())

        if offset:  # the reference's rule: an explicit max/min length counts the embeddings
            if config.max_new_tokens is None and not default_max:
                config.max_length -= embeds_length
            if config.min_new_tokens is None:
                config.min_length = max(config.min_length - embeds_length, 0)
        self._set_lengths(config, ids_length, default_max)
        limit = self.max_positions()
        if offset and self.learned_positions and limit is not None and \
                config.max_length + offset > limit:
            if embeds_length >= limit:
                raise InputError(
                    f"The embedded prompt has {embeds_length} positions but this model reads at "
                    f"most {limit}, so there is no room for a new token. Shorten it.")
            logger.warning("The embedded prompt (%d positions) plus the new tokens would need more "
                           "than the model's %d positions: generating at most %d new tokens.",
                           embeds_length, limit, limit - embeds_length)
            config.max_length = limit - offset
        if not ids_length:
            for name, what, off in (("repetition_penalty", "the penalty", 1.0),
                                    ("no_repeat_ngram_size", "n-gram constraints", 0)):
                if getattr(config, name) not in (None, off):
                    warnings.warn(f"Passing `{name}` with `inputs_embeds` and without `input_ids` "
                                  f"to `generate` will apply {what} only to newly generated "
                                  "tokens, not to the prompt.", UserWarning, stacklevel=3)
        processors = self._logits_processors(config, ids_length, attention_mask, eos, logits_processor)
        criteria = self._stopping_criteria(config, eos, tokenizer, stopping_criteria)
        state = _EmbedsDecodeState(inputs_embeds, input_ids, attention_mask, position_ids,
                                   config.max_length, KVCache(config.max_length + offset))
        if mode.startswith("beam"):
            return self._beam_search(state, config, processors, criteria, pad, eos, generator,
                                     batch_size)
        return self._sample(state, config, processors, criteria, pad, streamer, generator)

    def _embeds_step(self, state: _EmbedsDecodeState) -> torch.Tensor:
        """The first step of generate(inputs_embeds=...): the embedded prompt into the cache;
        the next-token logits (batch, vocab) in float32. Later steps are ``_step``'s."""
        embeds, state.prompt_embeds = state.prompt_embeds, None
        out = self(inputs_embeds=embeds, attention_mask=state.mask(),
                   position_ids=state.positions[:, :state.length], cache=state.cache,
                   use_cache=True, logits_to_keep=1)
        return out.logits[:, -1].to(dtype=torch.float32, copy=True)

    # -- preparation
    def _generation_config_for_call(self, generation_config, kwargs):
        """Call kwargs > the given config > the model's generation_config > global defaults."""
        default_max = (kwargs.get("max_length") is None and self.generation_config.max_length is None
                       and (generation_config is None or generation_config.max_length is None))
        config = copy.deepcopy(generation_config) if generation_config is not None else GenerationConfig()
        for key, value in self.generation_config.to_dict().items():
            if getattr(config, key, None) is None:
                setattr(config, key, copy.deepcopy(value))
        for key, value in GENERATION_DEFAULTS.items():
            if getattr(config, key) is None:
                setattr(config, key, value)
        model_kwargs = config.update(**kwargs)
        return config, model_kwargs, default_max

    def _special_tokens(self, config, has_mask: bool, input_ids):
        eos = config.eos_token_id
        eos = None if eos is None else torch.tensor(eos, dtype=torch.long).reshape(-1)
        pad = config.pad_token_id
        if pad is None and eos is not None:
            batched = input_ids is not None and input_ids.shape[0] > 1
            if not has_mask and batched:
                logger.warning("The attention mask and the pad token id were not set, with a "
                               "batched input: pass the input's attention_mask for reliable results.")
            pad = int(eos[0])
        return eos, pad

    @staticmethod
    def _infer_mask(input_ids, pad, eos):
        """As the reference: pad tokens are masked when there are some and pad is not an EOS."""
        if pad is None or (eos is not None and bool((eos == pad).any())):
            return torch.ones_like(input_ids)
        mask = input_ids.ne(pad).long()
        return mask if bool((mask == 0).any()) else torch.ones_like(input_ids)

    def _set_lengths(self, config, prompt_length: int, default_max: bool) -> None:
        limit = self.max_positions()  # defined by each model family
        if config.max_new_tokens is not None:
            config.max_length = config.max_new_tokens + prompt_length
        elif default_max:
            config.max_length = config.max_length + prompt_length
            if limit is not None:
                config.max_length = min(config.max_length, limit)
            warnings.warn(f"Using the model-agnostic default `max_length` (={config.max_length}) "
                          "to control the generation length. We recommend setting "
                          "`max_new_tokens` to control the maximum length of the generation.",
                          UserWarning, stacklevel=4)
        if config.min_new_tokens is not None:
            config.min_length = config.min_new_tokens + prompt_length
        if prompt_length >= config.max_length:
            raise ValueError(
                f"Input length of input_ids is {prompt_length}, but `max_length` is set to "
                f"{config.max_length}. This can lead to unexpected behavior. You should consider "
                "increasing `max_length` or, better yet, setting `max_new_tokens`.")
        if self.learned_positions and limit is not None and config.max_length > limit:
            if prompt_length >= limit:
                raise InputError(
                    f"The prompt has {prompt_length} tokens but this model reads at most {limit} "
                    "positions, so there is no room for a new token. Shorten it, or cut it from "
                    "the left (pipeline argument handle_long_generation='hole', or tokenizer "
                    "truncation_side='left' with truncation=True and max_length).")
            logger.warning("The prompt (%d tokens) plus %d new tokens would need %d positions but "
                           "this model has %d: generating at most %d new tokens.", prompt_length,
                           config.max_length - prompt_length, config.max_length, limit,
                           limit - prompt_length)
            config.max_length = limit
        elif limit is not None and config.max_length > limit:
            logger.warning("max_length %d is past the model's max_position_embeddings %d: the "
                           "rotary positions extrapolate and quality may drop.", config.max_length, limit)

    def _logits_processors(self, config, prompt_length, attention_mask, eos, custom):
        processors = LogitsProcessorList()
        if config.repetition_penalty is not None and config.repetition_penalty != 1.0:
            padding = attention_mask.int().argmax(dim=1) if attention_mask is not None else None
            processors.append(RepetitionPenaltyLogitsProcessor(config.repetition_penalty, padding))
        if config.no_repeat_ngram_size:
            processors.append(NoRepeatNGramLogitsProcessor(config.no_repeat_ngram_size))
        if config.bad_words_ids is not None:
            processors.append(NoBadWordsLogitsProcessor(config.bad_words_ids, eos))
        if eos is not None and config.min_length:
            processors.append(MinLengthLogitsProcessor(config.min_length, eos))
        if eos is not None and config.min_new_tokens:
            processors.append(MinNewTokensLengthLogitsProcessor(prompt_length, config.min_new_tokens, eos))
        if config.forced_bos_token_id is not None:
            processors.append(ForcedTokenLogitsProcessor(1, config.forced_bos_token_id))
        if config.forced_eos_token_id is not None:
            processors.append(ForcedTokenLogitsProcessor(config.max_length - 1, config.forced_eos_token_id))
        if config.remove_invalid_values:
            processors.append(InfNanRemoveLogitsProcessor())
        if config.suppress_tokens is not None:
            processors.append(SuppressTokensLogitsProcessor(config.suppress_tokens))
        if config.begin_suppress_tokens is not None:
            processors.append(SuppressTokensLogitsProcessor(config.begin_suppress_tokens, prompt_length))
        processors = _merge(processors, custom or [])
        if config.do_sample:  # the warpers: only when sampling
            keep = 1 if config.num_beams == 1 else (2 if eos is None else len(eos) + 1)
            if config.temperature is not None and config.temperature != 1.0:
                processors.append(TemperatureLogitsWarper(config.temperature))
            if config.top_k is not None and config.top_k != 0:
                processors.append(TopKLogitsWarper(config.top_k, keep))
            if config.top_p is not None and config.top_p != 1.0:
                processors.append(TopPLogitsWarper(config.top_p, keep))
            if config.min_p is not None:
                processors.append(MinPLogitsWarper(config.min_p, keep))
            if config.typical_p is not None and config.typical_p < 1.0:
                processors.append(TypicalLogitsWarper(config.typical_p, keep))
        if config.renormalize_logits:
            processors.append(LogitNormalization())
        return processors

    def _stopping_criteria(self, config, eos, tokenizer, custom):
        criteria = StoppingCriteriaList([MaxLengthCriteria(config.max_length)])
        if config.max_time is not None:
            criteria.append(MaxTimeCriteria(config.max_time))
        if config.stop_strings is not None:
            if tokenizer is None:
                raise ValueError("There are one or more stop strings, either in the arguments to "
                                 "`generate` or in the model's generation config, but we could not "
                                 "locate a tokenizer. When generating with stop strings, you must "
                                 "pass the model's tokenizer to the `tokenizer` argument of `generate`.")
            criteria.append(StopStringCriteria(tokenizer, config.stop_strings))
        if eos is not None:
            criteria.append(EosTokenCriteria(eos))
        return _merge(criteria, custom or [])

    # -- one forward over the new tokens
    def _step(self, state: _DecodeState) -> torch.Tensor:
        """Logits (batch, vocab) for the next token, in float32."""
        cache = state.cache
        fresh = state.length if cache is None else state.length - cache.get_seq_length()
        if state.encoder_states is not None:
            out = self.decode(state.input_ids[:, state.length - fresh:state.length],
                              state.encoder_states, state.encoder_mask, cache=cache,
                              use_cache=cache is not None, logits_to_keep=1)
            return out.logits[:, -1].to(dtype=torch.float32, copy=True)
        if state.prompt_embeds is not None:  # generate(inputs_embeds=...): its first step
            return self._embeds_step(state)
        out = self(input_ids=state.input_ids[:, state.length - fresh:state.length],
                   attention_mask=state.mask(), position_ids=state.positions[:, state.length - fresh:state.length],
                   cache=cache, use_cache=cache is not None, logits_to_keep=1)
        return out.logits[:, -1].to(dtype=torch.float32, copy=True)

    # -- greedy search and sampling
    def _sample(self, state, config, processors, criteria, pad, streamer, generator):
        eos_stops = any(hasattr(c, "eos_token_id") for c in criteria)
        unfinished = torch.ones(state.batch, dtype=torch.bool, device=state.device)
        scores, raw = [], []
        while True:
            logits = self._step(state)
            next_scores = processors(state.tokens(), logits)
            if config.return_dict_in_generate:
                if config.output_scores:
                    scores.append(next_scores)
                if config.output_logits:
                    raw.append(logits)
            if config.do_sample:
                probs = next_scores.softmax(dim=-1)
                next_tokens = torch.multinomial(probs, num_samples=1, generator=generator).squeeze(1)
            else:
                next_tokens = next_scores.argmax(dim=-1)
            if eos_stops:  # finished rows continue with padding
                next_tokens = torch.where(unfinished, next_tokens, pad)
            state.append(next_tokens)
            if streamer is not None:
                streamer.put(next_tokens.cpu())
            unfinished = unfinished & ~criteria(state.tokens(), tuple(scores) or None)
            if not bool(unfinished.any()):
                break
        if streamer is not None:
            streamer.end()
        if not config.return_dict_in_generate:
            return state.tokens()
        return ModelOutput(sequences=state.tokens(), scores=tuple(scores) or None,
                           logits=tuple(raw) or None, cache=state.cache)

    # -- beam search (the reference's vectorised algorithm, step for step)
    def _beam_search(self, state, config, processors, criteria, pad, eos, generator, batch_size):
        num_beams, max_length = config.num_beams, config.max_length
        prompt_length = cur_length = state.tokens().shape[1]
        length_penalty, early_stopping = config.length_penalty, config.early_stopping
        keep = max(2, 1 + (0 if eos is None else len(eos))) * num_beams
        top_beams = torch.arange(keep, device=state.device) < num_beams
        fill = (pad or int(eos[0])) if eos is not None else -1
        device = state.device

        running = torch.full((batch_size, num_beams, max_length), fill, dtype=torch.long, device=device)
        running[:, :, :cur_length] = state.tokens().view(batch_size, num_beams, cur_length)
        finished = running.clone()
        running_scores = torch.zeros(batch_size, num_beams, device=device)
        running_scores[:, 1:] = -1e9  # only the first copy of each prompt starts a beam
        finished_scores = torch.full((batch_size, num_beams), -1e9, device=device)
        is_finished = torch.zeros(batch_size, num_beams, dtype=torch.bool, device=device)
        can_improve = torch.ones(batch_size, 1, dtype=torch.bool, device=device)
        running_origin = torch.full((batch_size, num_beams, max_length - cur_length), -1,
                                    dtype=torch.long, device=device)
        finished_origin = running_origin.clone()
        scores, raw = [], []
        batch_offset = torch.arange(batch_size, device=device)[:, None] * num_beams

        while True:
            logits = self._step(state)
            log_probs = processors(state.tokens(), logits.log_softmax(dim=-1))
            if config.return_dict_in_generate:
                if config.output_logits:
                    raw.append(logits.clone())
                if config.output_scores:
                    scores.append(log_probs.clone())
            vocab_size = log_probs.shape[-1]
            totals = (log_probs.view(batch_size, num_beams, -1) + running_scores[:, :, None])
            totals = totals.view(batch_size, -1)  # (batch, beams * vocab)

            # a. the best `keep` continuations over all beams (sampled without replacement)
            if config.do_sample:
                picked = torch.multinomial(totals.softmax(dim=-1), keep, generator=generator)
                top_scores, order = totals.gather(1, picked).sort(dim=-1, descending=True)
                picked = picked.gather(1, order)
            else:
                top_scores, picked = torch.topk(totals, keep)
            source_beam = picked // vocab_size
            candidates = _gather(running, source_beam)
            candidates[:, :, cur_length] = picked % vocab_size
            candidate_origin = _gather(running_origin, source_beam)
            candidate_origin[:, :, cur_length - prompt_length] = source_beam + batch_offset

            # b. which candidates are done (EOS, stop string, max length)
            hits = criteria(candidates[:, :, :cur_length + 1].reshape(batch_size * keep, -1),
                            tuple(scores) or None).view(batch_size, keep)

            # c. the best unfinished candidates go on
            alive_scores = top_scores + hits.float() * -1e9
            best = torch.topk(alive_scores, num_beams)[1]
            running = _gather(candidates, best)
            running_scores = _gather(alive_scores, best)
            running_origin = _gather(candidate_origin, best)

            # d. finished candidates among the top beams compete for the finished slots
            just_done = hits & top_beams[None, :]
            done_scores = top_scores / ((cur_length + 1 - prompt_length) ** length_penalty)
            full = is_finished.all(dim=-1, keepdim=True) & (early_stopping is True)
            done_scores = done_scores + full.float() * -1e9 + (~can_improve).float() * -1e9
            done_scores = done_scores + (~just_done).float() * -1e9
            merged_scores = torch.cat((finished_scores, done_scores), dim=1)
            chosen = torch.topk(merged_scores, num_beams)[1]
            finished = _gather(torch.cat((finished, candidates), dim=1), chosen)
            finished_scores = _gather(merged_scores, chosen)
            finished_origin = _gather(torch.cat((finished_origin, candidate_origin), dim=1), chosen)
            is_finished = _gather(torch.cat((is_finished, just_done), dim=1), chosen)

            # e. the cache follows the surviving beams
            if state.cache is not None:
                state.cache.reorder_cache(running_origin[:, :, cur_length - prompt_length].reshape(-1))
            cur_length += 1
            state.replace(running[:, :, :cur_length].reshape(batch_size * num_beams, -1))

            # f. stop when no running beam can beat the finished ones
            if early_stopping == "never" and length_penalty > 0.0:
                best_length = max_length - prompt_length
            else:
                best_length = cur_length - prompt_length
            best_running = running_scores[:, :1] / (best_length ** length_penalty)
            worst_finished = torch.where(is_finished, finished_scores.min(dim=1, keepdim=True)[0], -1.0e9)
            can_improve = can_improve & (best_running > worst_finished).any(dim=-1, keepdim=True)
            open_beams = not (bool(is_finished.all()) and early_stopping is True)
            if not (bool(can_improve.any()) and open_beams and not bool(hits.all())):
                break

        returned = config.num_return_sequences
        sequences = finished[:, :returned].reshape(batch_size * returned, -1)
        sequence_scores = finished_scores[:, :returned].reshape(-1)
        origins = finished_origin[:, :returned].reshape(batch_size * returned, -1)
        generated = int((origins + 1).bool().sum(dim=1).max())
        sequences = sequences[:, :prompt_length + generated]
        if not config.return_dict_in_generate:
            return sequences
        return ModelOutput(sequences=sequences,
                           sequences_scores=sequence_scores if config.output_scores else None,
                           scores=tuple(scores) or None, logits=tuple(raw) or None,
                           beam_indices=origins[:, :generated], cache=state.cache)


def _available_memory() -> int | None:
    """Bytes of memory available to the process: Linux's MemAvailable, or less under a cgroup
    (container) limit; None where unknown."""
    available = None
    try:
        with open("/proc/meminfo", encoding="ascii") as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    available = int(line.split()[1]) * 1024
        limit = Path("/sys/fs/cgroup/memory.max").read_text().strip()
        if limit != "max":
            used = int(Path("/sys/fs/cgroup/memory.current").read_text())
            available = min(available or 1 << 62, int(limit) - used)
    except (OSError, ValueError, IndexError):
        pass
    return available


class _DecodeState:
    """The growing sequences of a generate() call, in buffers sized for the final length:
    token ids, positions and (with padding) the attention mask."""

    # Encoder-decoder models: the encoder's output (and padding mask) the decoder attends to.
    encoder_states: torch.Tensor | None = None
    encoder_mask: torch.Tensor | None = None
    # generate(inputs_embeds=...): the embedded prompt, until the first step has read it.
    prompt_embeds: torch.Tensor | None = None

    def __init__(self, input_ids, attention_mask, position_ids, max_length, cache):
        self.batch, self.length = input_ids.shape
        self.device = input_ids.device
        self.cache = cache
        size = max(max_length, self.length)
        self._ids = input_ids.new_zeros(self.batch, size)
        self._ids[:, :self.length] = input_ids
        self.positions = position_ids.new_zeros(self.batch, size)
        self.positions[:, :self.length] = position_ids
        self.positions[:, self.length:] = position_ids[:, -1:] + torch.arange(
            1, size - self.length + 1, device=self.device)
        self._mask = None
        if attention_mask is not None:
            self._mask = attention_mask.new_ones(self.batch, size)
            self._mask[:, :self.length] = attention_mask

    @property
    def input_ids(self) -> torch.Tensor:
        return self._ids

    def tokens(self) -> torch.Tensor:
        return self._ids[:, :self.length]

    def mask(self) -> torch.Tensor | None:
        return None if self._mask is None else self._mask[:, :self.length]

    def append(self, next_tokens: torch.Tensor) -> None:
        self._ids[:, self.length] = next_tokens
        self.length += 1

    def replace(self, sequences: torch.Tensor) -> None:
        """Beam search: the surviving beams' tokens (reordered), one token longer."""
        self.length = sequences.shape[1]
        self._ids[:, :self.length] = sequences


class _EmbedsDecodeState(_DecodeState):
    """The state of generate(inputs_embeds=...). Positions, mask and ``length`` count the
    embedded prompt, as the cache does, so later steps run as for ids; the token ids
    (``tokens()``, what generate() returns) are the ``input_ids`` given with the embeddings
    (possibly none) and the new tokens: they start after the first ``offset`` positions,
    which have no ids."""

    def __init__(self, inputs_embeds, input_ids, attention_mask, position_ids, max_length, cache):
        self.offset = inputs_embeds.shape[1] - input_ids.shape[1]
        no_ids = input_ids.new_zeros(input_ids.shape[0], self.offset)
        super().__init__(torch.cat((no_ids, input_ids), dim=1), attention_mask, position_ids,
                         max_length + self.offset, cache)
        self.prompt_embeds = inputs_embeds

    def tokens(self) -> torch.Tensor:
        return self._ids[:, self.offset:self.length]

    def replace(self, sequences: torch.Tensor) -> None:
        self.length = self.offset + sequences.shape[1]
        self._ids[:, self.offset:self.length] = sequences


def _expand_rows(config, *tensors):
    """Each prompt row repeated once per beam / returned sequence (None stays None)."""
    expand = max(config.num_beams, config.num_return_sequences)
    if expand == 1:
        return tensors
    return tuple(None if t is None else t.repeat_interleave(expand, dim=0) for t in tensors)


def _gather(tensor: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """Pick along dim 1 (the beams) of a (batch, beams, ...) tensor."""
    while index.dim() < tensor.dim():
        index = index.unsqueeze(-1)
    return torch.take_along_dim(tensor, index, dim=1)


def _merge(defaults: list, custom: list) -> list:
    """User processors / criteria replace the built-in ones of the same type; others follow."""
    merged = type(defaults)()
    for item in defaults:
        merged.append(next((c for c in custom if type(c) is type(item)), item))
    merged.extend(c for c in custom if c not in merged)
    return merged
