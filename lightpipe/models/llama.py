"""Llama (Touvron et al., 2023, arXiv:2302.13971; Llama 2 and 3), and the families with the
same maths: Mistral (Jiang et al., 2023, arXiv:2310.06825) and Qwen2 (arXiv:2407.10671).

Matches transformers' ``models/{llama,mistral,qwen2}/modeling_*.py`` and the RoPE variants of
``modeling_rope_utils.py`` that Llama 3 checkpoints use. Parameter names are the checkpoints'
(``model.layers.0.self_attn.q_proj.weight``). What differs between the three families is
read from their configs, not copied: grouped-query attention (``num_key_value_heads``), the
q/k/v biases (Qwen2; ``attention_bias`` in Llama), sliding-window attention (Mistral; Qwen2's
``use_sliding_window``), and the defaults each config class fills in.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ..errors import InputError, UnsupportedModelError
from ..generation import GenerationMixin
from ..modeling import ModelOutput, PreTrainedModel
from .cache import open_cache
from .decoder import LastTokenClassifier, causal_mask, decoder_attention, lm_logits
from .layers import activation
from .linear import Linear, linear, linear_add

# 1. Config fields read, with the defaults config.json may leave out (each config class's).
LLAMA_DEFAULTS = {
    "vocab_size": 32000,
    "hidden_size": 4096,
    "intermediate_size": 11008,
    "num_hidden_layers": 32,
    "num_attention_heads": 32,
    "num_key_value_heads": None,  # None: as many as the query heads (no grouping)
    "head_dim": None,  # None: hidden_size // num_attention_heads
    "hidden_act": "silu",
    "max_position_embeddings": 2048,
    "rms_norm_eps": 1e-6,
    "rope_theta": 10000.0,
    "attention_bias": False,
    "mlp_bias": False,
    "use_cache": True,
}
MISTRAL_DEFAULTS = {**LLAMA_DEFAULTS, "intermediate_size": 14336, "num_key_value_heads": 8,
                    "max_position_embeddings": 4096 * 32, "sliding_window": 4096}
QWEN2_DEFAULTS = {**LLAMA_DEFAULTS, "vocab_size": 151936, "intermediate_size": 22016,
                  "max_position_embeddings": 32768, "use_sliding_window": False,
                  "sliding_window": 4096, "max_window_layers": 28}


# 2. Rotary position embeddings (RoPE, Su et al., arXiv:2104.09864) and the scaled variants.
def rope_parameters(config) -> dict:
    """The RoPE settings, from transformers 5's ``rope_parameters`` or the older
    ``rope_scaling`` + ``rope_theta`` fields."""
    params = dict(config.get("rope_scaling") or config.get("rope_parameters") or {})
    params.setdefault("rope_type", params.get("type", "default"))
    params.setdefault("rope_theta", config.get("rope_theta") or 10000.0)
    if params["rope_type"] in ("llama3", "yarn"):
        params.setdefault("original_max_position_embeddings",
                          config.get("original_max_position_embeddings") or config.max_position_embeddings)
    return params


def inverse_frequencies(params: dict, head_dim: int, max_positions: int,
                        seq_len: int | None = None) -> tuple[torch.Tensor, float]:
    """(inv_freq of shape (head_dim / 2,), float32; scale applied to cos and sin)."""
    kind, base = params["rope_type"], params["rope_theta"]
    dim = head_dim
    exponents = torch.arange(0, dim, 2, dtype=torch.int64).float() / dim
    inv_freq = 1.0 / (base ** exponents)
    if kind == "default":
        return inv_freq, 1.0
    if kind == "linear":
        return inv_freq / params["factor"], 1.0
    if kind == "dynamic":  # NTK: a larger base once the sequence outgrows the trained length
        if seq_len is None or seq_len <= max_positions:
            return inv_freq, 1.0
        factor = params["factor"]
        grown = base * ((factor * torch.tensor(seq_len) / max_positions) - (factor - 1)) ** (dim / (dim - 2))
        return 1.0 / (grown ** exponents), 1.0
    if kind == "llama3":  # Llama 3.1: low frequencies divided by factor, a smooth ramp between
        factor, low, high = params["factor"], params["low_freq_factor"], params["high_freq_factor"]
        trained = params["original_max_position_embeddings"]
        wavelength = 2 * math.pi / inv_freq
        scaled = torch.where(wavelength > trained / low, inv_freq / factor, inv_freq)
        smooth = (trained / wavelength - low) / (high - low)
        smoothed = (1 - smooth) * scaled / factor + smooth * scaled
        medium = ~(wavelength < trained / high) & ~(wavelength > trained / low)
        return torch.where(medium, smoothed, scaled), 1.0
    if kind == "yarn":
        return _yarn(params, dim, base, max_positions)
    raise UnsupportedModelError(f"rope_type {kind!r} is not supported; lightpipe implements "
                                "default, linear, dynamic, llama3 and yarn.")


def _yarn(params: dict, dim: int, base: float, max_positions: int) -> tuple[torch.Tensor, float]:
    """YaRN (Peng et al., arXiv:2309.00071): interpolate low frequencies, keep high ones."""
    trained = params["original_max_position_embeddings"]
    factor = params.get("factor") or max_positions / trained

    def mscale(scale: float, value: float = 1.0) -> float:
        return 1.0 if scale <= 1 else 0.1 * value * math.log(scale) + 1.0

    attention_factor = params.get("attention_factor")
    if attention_factor is None:
        extra, extra_all = params.get("mscale"), params.get("mscale_all_dim")
        attention_factor = (float(mscale(factor, extra) / mscale(factor, extra_all))
                            if extra and extra_all else mscale(factor))
    fast, slow = params.get("beta_fast") or 32, params.get("beta_slow") or 1

    def correction_dim(rotations: float) -> float:
        return (dim * math.log(trained / (rotations * 2 * math.pi))) / (2 * math.log(base))

    low, high = correction_dim(fast), correction_dim(slow)
    if params.get("truncate", True):
        low, high = math.floor(low), math.ceil(high)
    low, high = max(low, 0), min(high, dim - 1)
    if low == high:
        high += 0.001
    ramp = ((torch.arange(dim // 2, dtype=torch.float32) - low) / (high - low)).clamp(0, 1)
    frequencies = base ** (torch.arange(0, dim, 2).float() / dim)
    keep = 1 - ramp  # 1: extrapolate (high frequencies), 0: interpolate
    inv_freq = (1.0 / (factor * frequencies)) * (1 - keep) + (1.0 / frequencies) * keep
    return inv_freq, attention_factor


class RotaryEmbedding(nn.Module):
    """cos and (signed, see forward) sin of each position's angles, (batch, 1, seq, head_dim),
    in the model's dtype."""

    def __init__(self, config, head_dim: int, params: dict | None = None):
        super().__init__()
        self.params = params or rope_parameters(config)  # params: a family's per-layer RoPE
        self.head_dim, self.max_positions = head_dim, config.max_position_embeddings
        inv_freq, self.scaling = self.compute()
        self.register_buffer("inv_freq", inv_freq, persistent=False)

    def compute(self) -> tuple[torch.Tensor, float]:
        """(inv_freq buffer, scale of cos and sin); a family with its own RoPE kind overrides
        it and ``frequencies`` (Phi-3's LongRoPE)."""
        return inverse_frequencies(self.params, self.head_dim, self.max_positions)

    def reset_buffers(self, device) -> None:  # called after loading (buffers built on meta)
        inv_freq, self.scaling = self.compute()
        self.register_buffer("inv_freq", inv_freq.to(device), persistent=False)

    def frequencies(self, position_ids: torch.Tensor) -> torch.Tensor:
        """The inverse frequencies for these positions (float32, (head_dim / 2,))."""
        inv_freq = self.inv_freq.float()
        if self.params["rope_type"] == "dynamic":
            seq_len = int(position_ids.max()) + 1
            inv_freq = inverse_frequencies(self.params, self.head_dim, self.max_positions,
                                           seq_len)[0].to(inv_freq.device)
        return inv_freq

    def angles(self, position_ids: torch.Tensor) -> torch.Tensor:
        """Each position's rotation angles, (batch, seq, head_dim / 2) in float32 (M-RoPE,
        qwen2_vl.py, picks them from three position planes)."""
        return position_ids[..., None].float() * self.frequencies(position_ids)

    def forward(self, position_ids: torch.Tensor, dtype: torch.dtype):
        angles = self.angles(position_ids)  # (batch, seq, head_dim / 2)
        angles = torch.cat((angles, angles), dim=-1)
        cos = (angles.cos() * self.scaling).to(dtype)[:, None]  # (batch, 1, seq, head_dim)
        sin = (angles.sin() * self.scaling).to(dtype)[:, None]
        half = sin.shape[-1] // 2
        # The first half's sine carries the minus sign of RoPE's rotate-half, once per forward
        # instead of once per layer: (-x) * s == x * (-s) exactly, so the numbers do not change.
        return cos, torch.cat((-sin[..., :half], sin[..., half:]), dim=-1)


def rotate(tensor: torch.Tensor, cos: torch.Tensor, signed_sin: torch.Tensor) -> torch.Tensor:
    """Apply RoPE to (batch, heads, seq, head_dim): the two halves rotate as complex pairs."""
    half = tensor.shape[-1] // 2
    swapped = torch.cat((tensor[..., half:], tensor[..., :half]), dim=-1)
    return tensor * cos + swapped * signed_sin


# 3. Modules.
class RMSNorm(nn.Module):
    def __init__(self, hidden_size: int, eps: float):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(hidden_size))
        self.eps = eps

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        dtype = hidden_states.dtype
        if dtype == torch.float32 and self.weight.dtype == torch.float32:
            # the same maths as below in one call (a third of the time of a decode step's norm)
            return torch.nn.functional.rms_norm(hidden_states, self.weight.shape, self.weight,
                                                self.eps)
        hidden_states = hidden_states.float()
        hidden_states = hidden_states * torch.rsqrt(hidden_states.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * hidden_states.to(dtype)


class LlamaMLP(nn.Module):
    """SwiGLU: down(act(gate(x)) * up(x))."""

    def __init__(self, config, bias: bool, intermediate_size: int | None = None):
        super().__init__()
        inner = intermediate_size or config.intermediate_size  # MoE experts have their own
        self.gate_proj = Linear(config.hidden_size, inner, bias=bias)
        self.up_proj = Linear(config.hidden_size, inner, bias=bias)
        self.down_proj = Linear(inner, config.hidden_size, bias=bias)
        self.act = activation(config.hidden_act)

    def forward(self, hidden_states):
        return self.down_proj(self.act(self.gate_proj(hidden_states)) * self.up_proj(hidden_states))

    def add_to(self, hidden_states, residual):
        """``residual + self(hidden_states)``, the residual fused into down_proj's product."""
        inner = self.act(self.gate_proj(hidden_states)) * self.up_proj(hidden_states)
        return self.down_proj.forward_add(inner, residual)


class LlamaAttention(nn.Module):
    def __init__(self, config, layer_idx: int, qkv_bias: bool, o_bias: bool):
        super().__init__()
        heads, kv_heads = config.num_attention_heads, config.num_key_value_heads
        self.head_dim = head_dim_of(config)
        self.groups = heads // kv_heads  # query heads per key/value head
        self.scale = self.head_dim ** -0.5
        self.layer_idx = layer_idx
        self.q_proj = Linear(config.hidden_size, heads * self.head_dim, bias=qkv_bias)
        self.k_proj = Linear(config.hidden_size, kv_heads * self.head_dim, bias=qkv_bias)
        self.v_proj = Linear(config.hidden_size, kv_heads * self.head_dim, bias=qkv_bias)
        self.o_proj = Linear(heads * self.head_dim, config.hidden_size, bias=o_bias)
        # Per-head RMSNorms of queries and keys before RoPE, set by the families that have
        # them (Qwen3, Gemma 3).
        self.q_norm = self.k_norm = None

    def forward(self, hidden_states, cos, sin, mask, cache):
        return self.o_proj(self.context(hidden_states, cos, sin, mask, cache))

    def context(self, hidden_states, cos, sin, mask, cache):
        """The attention's output before o_proj: (batch, seq, heads * head_dim)."""
        batch, seq, _ = hidden_states.shape
        shape = (batch, seq, -1, self.head_dim)
        query = self.q_proj(hidden_states).view(shape).transpose(1, 2)  # (batch, heads, seq, head_dim)
        key = self.k_proj(hidden_states).view(shape).transpose(1, 2)  # (batch, kv_heads, seq, head_dim)
        value = self.v_proj(hidden_states).view(shape).transpose(1, 2)
        if self.q_norm is not None:
            query, key = self.q_norm(query), self.k_norm(key)
        query, key = rotate(query, cos, sin), rotate(key, cos, sin)
        if cache is not None:
            key, value = cache.update(key, value, self.layer_idx)
        context = self.attend(query, key, value, mask)
        return context.transpose(1, 2).reshape(batch, seq, -1)

    def attend(self, query, key, value, mask):
        """Causal attention of the rotated heads (a family with other maths overrides it)."""
        return decoder_attention(query, key, value, mask, scale=self.scale, groups=self.groups)


class LlamaDecoderLayer(nn.Module):
    def __init__(self, config, layer_idx: int, biases: tuple[bool, bool, bool]):
        super().__init__()
        self.self_attn = LlamaAttention(config, layer_idx, biases[0], biases[1])
        self.mlp = LlamaMLP(config, biases[2])
        self.input_layernorm = RMSNorm(config.hidden_size, config.rms_norm_eps)
        self.post_attention_layernorm = RMSNorm(config.hidden_size, config.rms_norm_eps)

    def forward(self, hidden_states, cos, sin, mask, cache):
        attention = self.self_attn
        context = attention.context(self.input_layernorm(hidden_states), cos, sin, mask, cache)
        hidden_states = attention.o_proj.forward_add(context, hidden_states)
        return self.mlp.add_to(self.post_attention_layernorm(hidden_states), hidden_states)


def head_dim_of(config) -> int:
    return config.get("head_dim") or config.hidden_size // config.num_attention_heads


class LlamaPreTrainedModel(PreTrainedModel):
    base_model_prefix = "model"
    config_defaults = LLAMA_DEFAULTS

    def __init__(self, config):
        super().__init__(config)
        if config.get("num_key_value_heads") is None:
            config.num_key_value_heads = config.num_attention_heads
        if config.num_attention_heads % config.num_key_value_heads:
            raise UnsupportedModelError(
                f"num_attention_heads {config.num_attention_heads} is not a multiple of "
                f"num_key_value_heads {config.num_key_value_heads}.")

    fixed_biases: tuple[bool, bool, bool] | None = None  # a variant's; Llama reads its config

    @classmethod
    def biases(cls, config) -> tuple[bool, bool, bool]:
        """Whether q/k/v, o and the MLP projections have biases."""
        if cls.fixed_biases is not None:
            return cls.fixed_biases
        return bool(config.attention_bias), bool(config.attention_bias), bool(config.mlp_bias)

    @staticmethod
    def sliding_windows(config) -> list[int | None]:
        """Each layer's attention window (None: the whole past)."""
        return [None] * config.num_hidden_layers

    def max_positions(self) -> int:
        return self.config.max_position_embeddings


class LlamaModel(LlamaPreTrainedModel):
    """The decoder; ``last_hidden_state`` (batch, seq, hidden) and the ``cache``."""

    layer_class = LlamaDecoderLayer  # a variant's own layer (Qwen3's q/k norms, MoE blocks)
    rotary_class = RotaryEmbedding  # a variant's own RoPE kinds (Phi-3's LongRoPE)

    def __init__(self, config):
        super().__init__(config)
        biases = self.biases(config)
        self.windows = self.sliding_windows(config)
        self.embed_tokens = nn.Embedding(config.vocab_size, config.hidden_size)
        self.layers = nn.ModuleList(self.layer_class(config, i, biases)
                                    for i in range(config.num_hidden_layers))
        self.norm = RMSNorm(config.hidden_size, config.rms_norm_eps)
        self.rotary_emb = self.rotary_class(config, head_dim_of(config))

    def get_input_embeddings(self) -> nn.Embedding:
        return self.embed_tokens

    def forward(self, input_ids=None, attention_mask=None, position_ids=None, cache=None,
                inputs_embeds=None, use_cache=None, past_key_values=None, **unused) -> ModelOutput:
        if (input_ids is None) == (inputs_embeds is None):
            raise InputError("Pass exactly one of input_ids and inputs_embeds.")
        if inputs_embeds is None:
            inputs_embeds = self.embed_tokens(input_ids)
        cache, use_cache = open_cache(cache, past_key_values, use_cache, self.config)
        batch, seq, _ = inputs_embeds.shape
        past = cache.get_seq_length() if cache is not None else 0
        if position_ids is None:
            position_ids = torch.arange(past, past + seq, device=inputs_embeds.device)[None, :]
        device = inputs_embeds.device
        masks = {window: causal_mask(attention_mask, seq, past, device, window)
                 for window in set(self.windows)}
        cos, sin = self.rotary_emb(position_ids, inputs_embeds.dtype)
        hidden_states = inputs_embeds
        plan = self.__dict__.get("decode_plan")
        out = None
        if plan is not None and cache is not None and (seq == 1 or (batch == 1 and past)):
            native = self.__dict__.get("native_step")  # quantization/step.py: C, or None
            out = native(hidden_states, cos, sin, masks, cache) if native is not None else None
            if out is None and seq == 1:
                out = self._decode_one(hidden_states, {None: (cos, sin)}, masks, cache, plan)
        if out is not None:
            hidden_states = out
        else:
            for layer, window in zip(self.layers, self.windows):
                hidden_states = layer(hidden_states, cos, sin, masks[window], cache)
        return ModelOutput(last_hidden_state=self.norm(hidden_states),
                           cache=cache if use_cache else None)


    # generate()'s one-token steps: the layers' maths without the module calls (see GPT-2's
    # make_decode_plan for why), over tensors resolved once per generate() call.
    def make_decode_plan(self) -> list[tuple]:
        return [self.layer_plan(layer, window) for layer, window in zip(self.layers, self.windows)]

    @staticmethod
    def layer_plan(layer, window, kind=None) -> tuple:
        """One layer's step: its norms (``post_*`` for families that normalise a block's output
        before the residual add, Gemma), mask window and RoPE kind, the attention's ``attend``,
        the rotation, and the products' tensors - q/k/v as three products or one fused product
        split by ``sizes`` (Phi-3), gate/up as two or one (then halved)."""
        attention, mlp = layer.self_attn, layer.mlp
        return (layer.input_layernorm, layer.post_attention_layernorm, None, None, window, kind,
                attention.head_dim, attention.attend, mlp.act, attention.q_norm, attention.k_norm,
                rotate, None,
                [m.parts() for m in (attention.q_proj, attention.k_proj, attention.v_proj)],
                attention.o_proj.parts(), [mlp.gate_proj.parts(), mlp.up_proj.parts()],
                mlp.down_proj.parts())

    @staticmethod
    def _decode_one(hidden_states, ropes, masks, cache, plan):
        """One token through the plan; ``ropes``: {RoPE kind: (cos, sin)}."""
        batch = hidden_states.shape[0]
        for index, (norm_1, norm_2, post_1, post_2, window, kind, head_dim, attend, act, q_norm,
                    k_norm, rope, sizes, qkv, o_proj, gate_up, down) in enumerate(plan):
            x = norm_1(hidden_states)
            heads = [linear(x, *parts) for parts in qkv]
            query, key, value = (part.view(batch, 1, -1, head_dim).transpose(1, 2) for part in
                                 (heads if sizes is None else heads[0].split(sizes, dim=-1)))
            if q_norm is not None:
                query, key = q_norm(query), k_norm(key)
            cos, sin = ropes[kind]
            key, value = cache.update(rope(key, cos, sin), value, index)
            context = attend(rope(query, cos, sin), key, value, masks[window])
            context = context.transpose(1, 2).reshape(batch, 1, -1)
            if post_1 is None:
                hidden_states = linear_add(context, *o_proj, hidden_states)
            else:
                hidden_states = hidden_states + post_1(linear(context, *o_proj))
            x = norm_2(hidden_states)
            products = [linear(x, *parts) for parts in gate_up]
            gate, up = products if len(products) == 2 else products[0].chunk(2, dim=-1)
            if post_2 is None:
                hidden_states = linear_add(act(gate) * up, *down, hidden_states)
            else:
                hidden_states = hidden_states + post_2(linear(act(gate) * up, *down))
        return hidden_states


# 4. Heads.
class LlamaForCausalLM(GenerationMixin, LlamaPreTrainedModel):
    tied_weights = {"lm_head.weight": "model.embed_tokens.weight"}
    tie_word_embeddings_default = False
    model_class = LlamaModel

    def __init__(self, config):
        super().__init__(config)
        self.model = self.model_class(config)
        self.lm_head = Linear(config.hidden_size, config.vocab_size, bias=False)

    def active_ties(self) -> dict[str, str]:
        return dict(self.tied_weights) if self.config.tie_word_embeddings else {}

    def get_input_embeddings(self) -> nn.Embedding:
        return self.model.embed_tokens

    def pack_linear_weights(self) -> None:
        """As GenerationMixin's, except where the C step will decode (``quantization.step``): it
        reads each float32 weight as it is, and oneDNN's packed copies would then only serve
        the prefill (~2% faster on a 512-token SmolLM2 prompt, for ~500 MB more memory)."""
        from ..quantization.step import DecodeStep

        plan = self.model.make_decode_plan()
        if isinstance(plan, list):
            step = DecodeStep.build(self.model, plan)
            if step is not None:
                step.close()
                return
        super().pack_linear_weights()

    def begin_decode(self) -> None:
        from ..quantization.step import DecodeStep

        plan = self.model.decode_plan = self.model.make_decode_plan()
        if isinstance(plan, list):
            self.model.native_step = DecodeStep.build(self.model, plan)

    def end_decode(self) -> None:
        self.model.__dict__.pop("decode_plan", None)
        native = self.model.__dict__.pop("native_step", None)
        if native is not None:
            native.close()

    def forward(self, input_ids=None, attention_mask=None, position_ids=None, cache=None,
                inputs_embeds=None, use_cache=None, logits_to_keep: int = 0, **kwargs) -> ModelOutput:
        out = self.model(input_ids, attention_mask, position_ids, cache, inputs_embeds, use_cache, **kwargs)
        return lm_logits(self.lm_head, out, logits_to_keep)


# 5. The variants: Llama's maths, their own config defaults, biases and windows.
class MistralVariant:
    """No biases; every layer attends within ``sliding_window``."""

    config_defaults = MISTRAL_DEFAULTS
    fixed_biases = (False, False, False)

    @staticmethod
    def sliding_windows(config):
        return [config.get("sliding_window")] * config.num_hidden_layers


class Qwen2Variant:
    """q/k/v biases; windows on the layers ``layer_types`` (or ``max_window_layers``) names."""

    config_defaults = QWEN2_DEFAULTS
    fixed_biases = (True, False, False)

    @staticmethod
    def sliding_windows(config):
        window = config.sliding_window if config.use_sliding_window else None
        kinds = config.get("layer_types") or [
            "sliding_attention" if window is not None and i >= config.max_window_layers
            else "full_attention" for i in range(config.num_hidden_layers)]
        return [window if kind == "sliding_attention" else None for kind in kinds]


class MistralModel(MistralVariant, LlamaModel):
    pass


class Qwen2Model(Qwen2Variant, LlamaModel):
    pass


# Sequence classification: a score layer at the last non-pad token (decoder.py).
class LlamaForSequenceClassification(LastTokenClassifier, LlamaPreTrainedModel):
    model_class = LlamaModel


def variant_heads(variant: type, model: type, prefix: str, causal: type = LlamaForCausalLM,
                  classifier: type = LlamaForSequenceClassification,
                  classifier_prefix: str | None = None) -> dict[str, type]:
    """A variant's heads table: ``model``, and the causal-LM and sequence-classification heads
    (``causal`` and ``classifier`` with the variant mixed in, over ``model``), named as the
    reference names them (``{prefix}ForCausalLM``). The caller binds the classes to module
    names too, so they import and pickle as written classes do."""
    def make(name: str, base: type) -> type:
        return type(name, (variant, base), {"model_class": model, "__module__": model.__module__,
                                            "__qualname__": name})
    return {"AutoModel": model, "AutoModelForCausalLM": make(f"{prefix}ForCausalLM", causal),
            "AutoModelForSequenceClassification":
                make(f"{classifier_prefix or prefix}ForSequenceClassification", classifier)}


# model_type -> head -> class, read by models/__init__.py
HEADS = {"AutoModel": LlamaModel, "AutoModelForCausalLM": LlamaForCausalLM,
         "AutoModelForSequenceClassification": LlamaForSequenceClassification}
MISTRAL_HEADS = variant_heads(MistralVariant, MistralModel, "Mistral")
MistralForCausalLM, MistralForSequenceClassification = list(MISTRAL_HEADS.values())[1:]
QWEN2_HEADS = variant_heads(Qwen2Variant, Qwen2Model, "Qwen2")
Qwen2ForCausalLM, Qwen2ForSequenceClassification = list(QWEN2_HEADS.values())[1:]
