"""A GGUF file's metadata and tensors -> a Hub-style config dict and checkpoint.

llama.cpp's converter renames every tensor (``blk.0.attn_q.weight``), writes the config as
metadata under its own keys (``llama.embedding_length``), and changes two layouts: the rows
of Llama's q/k projections are permuted (its RoPE pairs adjacent values, the Hub's pairs
halves), and GPT-2's ``Conv1D`` weights are transposed. This module undoes all three, as
transformers' ``modeling_gguf_pytorch_utils.py`` does, so the result loads like a Hub
checkpoint. Families: Llama, Mistral, Qwen2, Qwen3 (one naming scheme) and GPT-2.
"""

from __future__ import annotations

import logging
import re
from typing import TYPE_CHECKING, Any

from ..errors import UnsupportedModelError

if TYPE_CHECKING:
    import torch

    from .reader import GGUFFile

logger = logging.getLogger("lightpipe")

# Config keys: llama.cpp's name (after "<architecture>.") -> the Hub config's.
_DECODER_CONFIG = {
    "context_length": "max_position_embeddings", "block_count": "num_hidden_layers",
    "feed_forward_length": "intermediate_size", "embedding_length": "hidden_size",
    "rope.freq_base": "rope_theta", "attention.head_count": "num_attention_heads",
    "attention.head_count_kv": "num_key_value_heads",
    "attention.layer_norm_rms_epsilon": "rms_norm_eps", "vocab_size": "vocab_size",
}
_CONFIG_KEYS = {
    # rope.dimension_count is the head size only for Llama and Mistral (as transformers reads it)
    "llama": {**_DECODER_CONFIG, "rope.dimension_count": "head_dim"},
    "mistral": {**_DECODER_CONFIG, "rope.dimension_count": "head_dim"},
    "qwen2": _DECODER_CONFIG,
    "qwen3": {**_DECODER_CONFIG, "attention.key_length": "head_dim"},
    "gpt2": {"block_count": "n_layer", "context_length": "n_positions", "embedding_length": "n_embd",
             "feed_forward_length": "n_inner", "attention.head_count": "n_head",
             "attention.layer_norm_epsilon": "layer_norm_epsilon"},
}
_ARCHITECTURES = {"llama": "LlamaForCausalLM", "mistral": "MistralForCausalLM",
                  "qwen2": "Qwen2ForCausalLM", "qwen3": "Qwen3ForCausalLM",
                  "gpt2": "GPT2LMHeadModel"}
_TOKEN_IDS = {"bos_token_id": "bos_token_id", "eos_token_id": "eos_token_id",
              "unknown_token_id": "unk_token_id", "padding_token_id": "pad_token_id"}

# Tensor names: llama.cpp's -> the Hub checkpoint's. Global tensors, then per-block leaves.
_DECODER_GLOBAL = {"token_embd": "model.embed_tokens", "output_norm": "model.norm",
                   "output": "lm_head"}
_DECODER_BLOCK = {
    "attn_norm": "input_layernorm", "ffn_norm": "post_attention_layernorm",
    "attn_q": "self_attn.q_proj", "attn_k": "self_attn.k_proj", "attn_v": "self_attn.v_proj",
    "attn_output": "self_attn.o_proj", "attn_q_norm": "self_attn.q_norm",
    "attn_k_norm": "self_attn.k_norm", "ffn_gate": "mlp.gate_proj", "ffn_up": "mlp.up_proj",
    "ffn_down": "mlp.down_proj",
}
_GPT2_GLOBAL = {"token_embd": "transformer.wte", "position_embd": "transformer.wpe",
                "output_norm": "transformer.ln_f", "output": "lm_head"}
_GPT2_BLOCK = {"attn_norm": "ln_1", "attn_qkv": "attn.c_attn", "attn_output": "attn.c_proj",
               "ffn_norm": "ln_2", "ffn_up": "mlp.c_fc", "ffn_down": "mlp.c_proj"}
_BLOCK = re.compile(r"^blk\.(\d+)\.(\w+)\.(weight|bias)$")
_GLOBAL = re.compile(r"^(\w+)\.(weight|bias)$")


def model_type(gguf: "GGUFFile") -> str:
    """The Hub ``model_type`` of the file; an error naming the supported ones otherwise."""
    architecture = gguf.architecture
    if architecture == "llama" and gguf.metadata.get("general.name") == "mistral":
        return "mistral"  # llama.cpp writes Mistral as llama; transformers tells it by this name
    if architecture not in _CONFIG_KEYS:
        raise UnsupportedModelError(
            f"{gguf.path.name} holds a {architecture!r} model; lightpipe reads GGUF files of "
            f"{', '.join(sorted(_CONFIG_KEYS))}.")
    return architecture


def config_dict(gguf: "GGUFFile") -> dict[str, Any]:
    """The config.json equivalent of the file's metadata (transformers' reading of it)."""
    architecture, kind = gguf.architecture, model_type(gguf)
    meta = gguf.metadata
    config: dict[str, Any] = {"model_type": kind, "architectures": [_ARCHITECTURES[kind]],
                              # transformers loads a GGUF in float32 unless asked otherwise
                              "torch_dtype": "float32"}
    for key, target in _CONFIG_KEYS[kind].items():
        if f"{architecture}.{key}" in meta:
            config[target] = meta[f"{architecture}.{key}"]
    for key, target in _TOKEN_IDS.items():
        if f"tokenizer.ggml.{key}" in meta:
            config[target] = meta[f"tokenizer.ggml.{key}"]
    if "vocab_size" not in config and "tokenizer.ggml.tokens" in meta:
        config["vocab_size"] = len(meta["tokenizer.ggml.tokens"])
    # llama.cpp writes the output projection only when it is not the embedding matrix.
    config["tie_word_embeddings"] = "output.weight" not in gguf.tensors
    return config


def checkpoint_name(gguf_name: str, kind: str) -> str | None:
    """``blk.3.attn_q.weight`` -> ``model.layers.3.self_attn.q_proj.weight``; None when the
    tensor has no place in the Hub checkpoint (``rope_freqs``)."""
    gpt2 = kind == "gpt2"
    block, global_ = (_GPT2_BLOCK, _GPT2_GLOBAL) if gpt2 else (_DECODER_BLOCK, _DECODER_GLOBAL)
    match = _BLOCK.match(gguf_name)
    if match and match[2] in block:
        layers = "transformer.h" if gpt2 else "model.layers"
        return f"{layers}.{match[1]}.{block[match[2]]}.{match[3]}"
    match = _GLOBAL.match(gguf_name)
    if match and match[1] in global_:
        return f"{global_[match[1]]}.{match[2]}"
    return None


def unpermute_rows(weight: "torch.Tensor", heads: int) -> "torch.Tensor":
    """Undo llama.cpp's q/k row order (within each head, the two rotary halves interleaved)."""
    rows = weight.shape[0]
    return (weight.reshape(heads, rows // heads // 2, 2, *weight.shape[1:])  # (h, d/2, 2, ...)
            .transpose(1, 2).reshape(weight.shape))


def to_checkpoint(gguf: "GGUFFile", dtype: "torch.dtype | None" = None) -> dict[str, "torch.Tensor"]:
    """Every tensor of the file under its Hub checkpoint name, dequantised to float32 (float
    tensors as stored), in the Hub's layout. ``dtype`` converts while unpacking."""
    import torch

    from .dequant import FLOAT_TYPES, dequantize

    kind, architecture, meta = model_type(gguf), gguf.architecture, gguf.metadata
    heads = meta.get(f"{architecture}.attention.head_count")
    kv_heads = meta.get(f"{architecture}.attention.head_count_kv", heads)
    state, skipped = {}, []
    for info in gguf.tensors.values():
        name = checkpoint_name(info.name, kind)
        if name is None:
            skipped.append(info.name)
            continue
        target = dtype if dtype is not None else (
            FLOAT_TYPES.get(info.ggml_type, torch.float32))
        tensor = dequantize(gguf.raw(info.name), info.ggml_type, info.shape, target)
        if architecture == "llama" and heads and re.search(r"\.attn_[qk]\.", info.name):
            # Only files written as "llama" were permuted (Mistral's included, not Qwen2's).
            tensor = unpermute_rows(tensor, heads if ".attn_q." in info.name else kv_heads)
        elif kind == "gpt2" and re.search(r"\.(attn_qkv|attn_output|ffn_up|ffn_down)\.weight$",
                                          info.name):
            tensor = tensor.t().contiguous()  # back to Conv1D's (in, out)
        state[name] = tensor
    if skipped:
        logger.info("GGUF tensors with no place in the %s checkpoint, not loaded: %s", kind,
                    ", ".join(skipped))
    return state
