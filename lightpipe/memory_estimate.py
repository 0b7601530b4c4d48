"""``lightpipe estimate-memory MODEL``: how much memory a model needs, from its config.json alone
(a local folder, or config.json fetched from the Hub: no weights downloaded), as accelerate's
``estimate-memory`` reports it: parameters, weight bytes per dtype or quantisation, the KV cache
per 1,000 tokens, the largest block (what disk offload streams at a time), and whether it fits
this machine's RAM and GPUs.

The model is built on the meta device (no memory, no weights), so the parameter count is the
model's own, not a formula's.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

DTYPE_BYTES = {"float32": 4.0, "float16": 2.0, "bfloat16": 2.0}
QUANT_GROUP = 32  # int4 group size of lightpipe.quantization's "int4"


def read_config(name_or_path: str | os.PathLike, revision: str | None = None,
                token: Any = None):
    from .config import Config

    folder = Path(name_or_path)
    if folder.is_dir():
        return Config.from_folder(folder)
    from huggingface_hub import hf_hub_download

    path = hf_hub_download(str(name_or_path), "config.json", revision=revision, token=token)
    return Config.from_folder(Path(path).parent)


def meta_model(config):
    """The model config.json describes (its architecture's head, else the base model), on meta."""
    import torch

    from .config import check_fields
    from .modeling import skip_init
    from .models import head_of_architecture, heads_for

    heads = heads_for(config.get("model_type"))
    head = None
    for architecture in config.get("architectures") or []:
        candidate = head_of_architecture(architecture, config.get("model_type"))
        if candidate in heads:
            head = candidate
            break
    cls = heads[head or ("AutoModel" if "AutoModel" in heads else next(iter(heads)))]
    check_fields(config)
    config.set_defaults(cls.config_defaults)
    with torch.device("meta"), skip_init():
        return cls(config)


def count(model) -> dict[str, int]:
    """Parameters: all (shared ones once), those in linear layers other than the output head
    (what int8/int4 quantize), the largest block's."""
    import torch
    from torch import nn

    from .placement import block_names, block_sizes

    unique = {id(p): p for p in model.parameters()}
    total = sum(p.numel() for p in unique.values())
    heads = {"lm_head", "proj_out", "output", "embed_out"}
    linear = sum(m.weight.numel() for name, m in model.named_modules()
                 if isinstance(m, nn.Linear) and name.rpartition(".")[2] not in heads)
    rows = sum(m.weight.shape[0] for name, m in model.named_modules()
               if isinstance(m, nn.Linear) and name.rpartition(".")[2] not in heads)
    blocks = block_names(model)
    largest = max(block_sizes(model, blocks, torch.float32).values(), default=0) // 4
    return {"parameters": total, "linear": linear, "linear_rows": rows, "largest_block": largest}


def weight_bytes(counts: dict[str, int], dtype: str, quantize: str | None = None) -> int:
    """Bytes of the weights in ``dtype``; with int8 / int4 the quantized linear weights (codes
    plus per-row int8 scales, per-group int4 scales and zeros, in ``dtype``)."""
    size = DTYPE_BYTES[dtype]
    if quantize is None:
        return int(counts["parameters"] * size)
    rest = (counts["parameters"] - counts["linear"]) * size
    if quantize == "int8":
        return int(rest + counts["linear"] + counts["linear_rows"] * size)
    if quantize == "int4":
        return int(rest + counts["linear"] / 2 + counts["linear"] / QUANT_GROUP * 2 * size)
    raise ValueError(f"--quantize {quantize!r} is not known: use int8 or int4.")


def kv_cache_bytes(config, dtype: str, tokens: int = 1000) -> int:
    """Keys and values of ``tokens`` tokens, batch 1, in every attention layer."""
    text = config.get("text_config") or config
    get = text.get if hasattr(text, "get") else (lambda k, d=None: getattr(text, k, d))
    layers = get("num_hidden_layers") or get("n_layer") or get("num_layers") or 0
    heads = get("num_attention_heads") or get("n_head") or 0
    kv_heads = get("num_key_value_heads") or heads
    width = get("hidden_size") or get("n_embd") or get("d_model") or 0
    head_dim = get("head_dim") or (width // heads if heads else 0)
    return int(2 * layers * kv_heads * head_dim * tokens * DTYPE_BYTES[dtype])


def machine() -> dict[str, int]:
    """{"RAM": available bytes, "GPU i": free bytes}."""
    import torch

    from .modeling import _available_memory

    found = {"RAM": _available_memory() or 0}
    if torch.cuda.is_available():
        for index in range(torch.cuda.device_count()):
            found[f"GPU {index}"] = torch.cuda.mem_get_info(index)[0]
    return found


def estimate(name_or_path: str, dtypes: list[str], quantize: str | None = None,
             revision: str | None = None, token: Any = None) -> dict:
    config = read_config(name_or_path, revision, token)
    counts = count(meta_model(config))
    rows = []
    for dtype in dtypes:
        rows.append({"dtype": dtype + (f" + {quantize}" if quantize else ""),
                     "weights": weight_bytes(counts, dtype, quantize),
                     "largest_block": int(counts["largest_block"] * DTYPE_BYTES[dtype]),
                     "kv_cache_per_1000_tokens": kv_cache_bytes(config, dtype)})
    devices = machine()
    for row in rows:
        row["fits"] = {name: row["weights"] <= free for name, free in devices.items()}
    return {"model": str(name_or_path), "model_type": config.get("model_type"),
            "parameters": counts["parameters"], "rows": rows, "devices": devices}


def _size(amount: float) -> str:
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("KB", 1e3)):
        if amount >= scale:
            return f"{amount / scale:,.2f} {unit}"
    return f"{int(amount)} B"


def render(report: dict) -> str:
    lines = [f"{report['model']} ({report['model_type']}): {report['parameters']:,} parameters",
             "  " + "  ".join(f"{name}: {_size(free)} free" for name, free in report["devices"].items()),
             f"  {'dtype':<18}{'weights':>12}{'largest block':>15}{'KV/1k tokens':>14}  fits"]
    for row in report["rows"]:
        fits = ", ".join(name for name, ok in row["fits"].items() if ok) or "no (offload to disk)"
        lines.append(f"  {row['dtype']:<18}{_size(row['weights']):>12}{_size(row['largest_block']):>15}"
                     f"{_size(row['kv_cache_per_1000_tokens']):>14}  {fits}")
    return "\n".join(lines)


def add_command(commands, command) -> None:
    """Register ``estimate-memory`` on the CLI's subcommands (``command`` is cli._command)."""
    parser = command(commands, "estimate-memory", run, "memory a model needs, from config.json",
                     "Parameters, weight bytes per dtype or quantisation, KV cache per 1,000 "
                     "tokens, and whether the model fits this machine: read from config.json "
                     "alone (no weights downloaded).")
    parser.add_argument("model", help="a local folder or a Hub id")
    parser.add_argument("--dtype", nargs="+", choices=sorted(DTYPE_BYTES),
                        default=["float32", "float16", "bfloat16"])
    parser.add_argument("--quantize", choices=("int8", "int4"))
    parser.add_argument("--revision")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")


def run(args) -> int:
    import json

    report = estimate(args.model, args.dtype, args.quantize, args.revision)
    print(json.dumps(report, indent=2) if args.json else render(report))
    return 0
