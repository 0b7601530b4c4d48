"""GGUF files (llama.cpp's format) as a model source: config, weights and tokenizer.

``from_pretrained(name_or_path, gguf_file=...)``, ``AutoTokenizer.from_pretrained(...,
gguf_file=...)`` and ``pipeline(model=..., gguf_file=...)`` read a GGUF file through here, as
transformers does: the config and the tokenizer (with its chat template) come from the
file's metadata, and the weights are dequantised, to float32 unless a dtype is asked for.

- ``reader``: find the file (a path, a file in a folder, or one file of a Hub repository)
  and parse it;
- ``dequant``: ggml's block types -> torch tensors (F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1,
  Q8_0, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K);
- ``convert``: metadata -> config dict; tensor names and layouts -> the Hub checkpoint's
  (Llama, Mistral, Qwen2, Qwen3, GPT-2);
- ``tokenizer``: tokenizer metadata -> a ``tokenizers.Tokenizer`` and its settings;
- ``packed``: quantized blocks kept packed (``dequantize=False``), re-laid into
  ``lightpipe.quantization``'s int4 / int8 modules.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from .reader import GGUFFile, locate

if TYPE_CHECKING:
    import torch

    from ..config import Config
    from ..tokenization import Tokenizer

__all__ = ["GGUFFile", "locate", "read_config", "read_checkpoint", "load_tokenizer"]


def read_config(name_or_path: str | os.PathLike, gguf_file: str | os.PathLike,
                **hub: Any) -> "Config":
    """The model's Config, from the GGUF file's metadata (the file found as ``locate`` finds
    it; ``hub``: revision, token, cache_dir, local_files_only, subfolder)."""
    from ..config import Config
    from .convert import config_dict

    return Config.from_dict(config_dict(GGUFFile(locate(name_or_path, gguf_file, **hub))))


def read_checkpoint(name_or_path: str | os.PathLike, gguf_file: str | os.PathLike,
                    dequantize: bool = True, **hub: Any) -> tuple["Config", dict[str, Any]]:
    """(Config, state dict under the Hub checkpoint's names) of the GGUF file, quantised
    blocks unpacked to float32 (``_assign`` casts them to the model's dtype); with
    ``dequantize=False``, quantized tensors stay ``packed.PackedTensor``s (see ``packed``)."""
    from ..config import Config
    from .convert import config_dict, to_checkpoint

    gguf = GGUFFile(locate(name_or_path, gguf_file, **hub))
    if not dequantize:
        from .packed import packed_checkpoint

        return Config.from_dict(config_dict(gguf)), packed_checkpoint(gguf)
    return Config.from_dict(config_dict(gguf)), to_checkpoint(gguf)


def load_tokenizer(name_or_path: str | os.PathLike, gguf_file: str | os.PathLike, *,
                   revision: str | None = None, token: str | bool | None = None,
                   cache_dir: str | os.PathLike | None = None, local_files_only: bool = False,
                   subfolder: str = "", **settings: Any) -> "Tokenizer":
    """The tokenizer the GGUF file describes; ``settings`` override its config
    (``padding_side=``, ``add_bos_token=``, special tokens, ...)."""
    from ..families import FAMILIES
    from ..tokenization import Tokenizer, set_bos_eos_template
    from .convert import model_type
    from .tokenizer import build

    path = locate(name_or_path, gguf_file, revision=revision, token=token, cache_dir=cache_dir,
                  local_files_only=local_files_only, subfolder=subfolder)
    gguf = GGUFFile(path)
    backend, config = build(gguf, **settings)
    family = FAMILIES.get(model_type(gguf))
    extra = {"tokenizer_class": family.tokenizer} if family and family.tokenizer else {}
    tokenizer = Tokenizer(backend, config, name_or_path=str(name_or_path), **extra)
    # BOS / EOS around each sequence as the file asks (it needs the registered token ids).
    set_bos_eos_template(tokenizer, bool(config.get("add_bos_token")),
                         bool(config.get("add_eos_token")))
    return tokenizer
