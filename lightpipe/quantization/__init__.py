"""Weight quantization: keep a model's linear weights as int8 or int4 codes in memory and
multiply them with torch's own CPU kernels (see ``linear``).

``from_pretrained(..., quantization=...)``, ``pipeline(..., quantization=...)`` and the CLI's
``--quantize`` take what ``parse_quantization`` reads:

- a short string: ``"int8"`` (weight-only, one scale per output row), ``"int4"`` (weight-only,
  affine groups of 32 along the input), ``"int4:g128"`` (another group size: 32, 64, 128,
  256), ``"int8-dynamic"`` (int8 weights and activations quantized per call: encoders, and
  batched or beam decoding, where it is the fastest mode here; ``lightpipe.quantization.dynamic``;
  ``"int8-dynamic:lm_head"`` quantizes the output projection too, as CTranslate2's int8 does).
  Options after ``:``: ``gN`` a group size,
  ``lm_head`` to quantize the output projection too, ``fp32`` / ``bf16`` / ``fp16`` the
  kernels' compute dtype (bfloat16 by default: the kernels' fast path);
- a transformers-shaped config (dict or object with ``to_dict()``): torchao's
  (``{"quant_method": "torchao", "quant_type": "int4_weight_only", "group_size": 128}``, or
  its ``Int4WeightOnlyConfig`` / ``Int8WeightOnlyConfig`` /
  ``Int8DynamicActivationInt8WeightConfig`` forms) and bitsandbytes' ``load_in_8bit`` /
  ``load_in_4bit`` (mapped onto int8 per-row / int4 groups of 64, the nearest kernels here;
  their outlier handling and NF4 codes are not reproduced, and a note is logged);
- a ``QuantizationSpec``.

``quantize_model(model, spec)`` swaps the linear layers in place; the output projection
(``lm_head``) and embeddings stay in float unless asked, as torchao and bitsandbytes leave
them.
"""

from __future__ import annotations

import importlib
import importlib.util
import logging
import re
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from .linear import (INT4_GROUP_SIZES, Int4Linear, Int5Linear, Int8Linear, QuantizedLinear,
                     int4_fits)
from .embedding import QuantizedEmbedding
from . import step as _step  # noqa: F401, E402 - registers the C decode step's source with kernels
from . import dynamic_passes as _dynamic_passes  # noqa: F401, E402 - int8-dynamic's C passes, likewise

logger = logging.getLogger("lightpipe")

__all__ = ["QuantizationSpec", "parse_quantization", "quantize_model", "Int4Linear",
           "Int5Linear", "Int8Linear", "QuantizedLinear", "QuantizedEmbedding",
           "set_int8_activations"]

METHODS = ("int8", "int4", "int8-dynamic")
_DTYPES = {"fp32": torch.float32, "float32": torch.float32, "bf16": torch.bfloat16,
           "bfloat16": torch.bfloat16, "fp16": torch.float16, "float16": torch.float16}
_FORMS = ("'int8', 'int4', 'int4:g128' (group size 32, 64, 128 or 256), 'int8-dynamic', or a "
          "torchao-style dict such as {'quant_method': 'torchao', 'quant_type': "
          "'int4_weight_only', 'group_size': 128}")


class QuantizationError(ValueError):
    """A quantization argument lightpipe cannot use."""


@dataclass(frozen=True)
class QuantizationSpec:
    """What to quantize and how: ``method`` one of ``METHODS``; ``group_size`` (int4);
    ``include_lm_head``; ``skip`` (module-name fragments left in float);
    ``compute_dtype`` of the kernels."""

    method: str
    group_size: int = 32
    include_lm_head: bool = False
    skip: tuple[str, ...] = field(default_factory=tuple)
    compute_dtype: torch.dtype | None = None  # None: the model's 16-bit dtype, else bfloat16

    def __str__(self) -> str:
        text = self.method + (f":g{self.group_size}" if self.method == "int4" else "")
        return text + (":lm_head" if self.include_lm_head else "")


def _refuse(value: Any, why: str) -> QuantizationError:
    return QuantizationError(f"quantization={value!r}: {why}. Use {_FORMS}.")


def _group(value: Any, original: Any) -> int:
    try:
        group = int(value)
    except (TypeError, ValueError):
        raise _refuse(original, f"group size {value!r} is not a number") from None
    if group not in INT4_GROUP_SIZES:
        raise _refuse(original, f"group size {group} is not one the int4 kernel takes "
                                f"({', '.join(map(str, INT4_GROUP_SIZES))})")
    return group


def _from_string(text: str) -> QuantizationSpec:
    method, *options = [part.strip() for part in text.strip().lower().split(":")]
    method = {"w8": "int8", "int8_weight_only": "int8", "w4": "int4", "int4_weight_only": "int4",
              "int8_dynamic": "int8-dynamic", "dynamic": "int8-dynamic",
              "w8a8": "int8-dynamic"}.get(method, method)
    if method not in METHODS:
        raise _refuse(text, f"{method!r} is not a quantization lightpipe knows")
    settings: dict[str, Any] = {"method": method}
    for option in options:
        if re.fullmatch(r"g?\d+", option):
            if method != "int4":
                raise _refuse(text, "a group size applies to int4 only")
            settings["group_size"] = _group(option.lstrip("g"), text)
        elif option in ("lm_head", "head"):
            settings["include_lm_head"] = True
        elif option in _DTYPES:
            settings["compute_dtype"] = _DTYPES[option]
        else:
            raise _refuse(text, f"option {option!r} is not one of gN (group size), lm_head, "
                                "fp32 / bf16 / fp16")
    return QuantizationSpec(**settings)


def _torchao(config: dict, original: Any) -> QuantizationSpec:
    kind = config.get("quant_type")
    settings: dict[str, Any] = dict(config.get("quant_type_kwargs") or {})
    if isinstance(kind, dict):  # torchao >= 0.10 serialises {"default": {"_type": ..., "_data": ...}}
        entry = kind.get("default", next(iter(kind.values()), {})) if kind else {}
        kind, settings = entry.get("_type"), dict(entry.get("_data") or {})
    names = {"int4_weight_only": "int4", "Int4WeightOnlyConfig": "int4",
             "int8_weight_only": "int8", "Int8WeightOnlyConfig": "int8",
             "int8_dynamic_activation_int8_weight": "int8-dynamic",
             "Int8DynamicActivationInt8WeightConfig": "int8-dynamic"}
    if kind not in names:
        raise _refuse(original, f"torchao quant_type {kind!r} has no kernel here (lightpipe maps "
                                f"{', '.join(sorted(n for n in names if '_' in n))})")
    method = names[kind]
    group = settings.get("group_size", config.get("group_size"))
    spec = {"method": method}
    if method == "int4":
        spec["group_size"] = _group(group if group is not None else 128, original)  # torchao's default
    skip = config.get("modules_to_not_convert") or ()
    spec["skip"] = tuple(skip)
    spec["include_lm_head"] = bool(config.get("include_embedding", False))
    return QuantizationSpec(**spec)


def _bitsandbytes(config: dict, original: Any) -> QuantizationSpec:
    skip = tuple(config.get("llm_int8_skip_modules") or config.get("modules_to_not_convert") or ())
    if config.get("load_in_8bit"):
        logger.info("quantization: bitsandbytes' load_in_8bit is run as int8 weight-only with one "
                    "scale per output row (its outlier columns are not kept in float16).")
        return QuantizationSpec("int8", skip=skip)
    if config.get("load_in_4bit"):
        kind = config.get("bnb_4bit_quant_type", "fp4")
        logger.info("quantization: bitsandbytes' load_in_4bit (%s) is run as int4 affine groups "
                    "of 64 (the CPU kernel here has no %s codes).", kind, kind.upper())
        return QuantizationSpec("int4", group_size=64, skip=skip)
    raise _refuse(original, "a bitsandbytes config needs load_in_8bit or load_in_4bit")


def parse_quantization(value: Any) -> QuantizationSpec | None:
    """A ``quantization=`` argument (see the module docstring) -> a QuantizationSpec, None for
    None / "" / "none"; a QuantizationError naming the accepted forms otherwise."""
    if value is None or isinstance(value, QuantizationSpec):
        return value
    if isinstance(value, str):
        if value.strip().lower() in ("", "none", "no", "off", "false"):
            return None
        return _from_string(value)
    config = value
    if not isinstance(config, dict):
        to_dict = getattr(config, "to_dict", None)
        if to_dict is None:
            raise _refuse(value, f"a {type(value).__name__} is not a quantization config")
        config = to_dict()
    method = str(config.get("quant_method", "")).lower()
    if method == "torchao":
        return _torchao(config, value)
    if method == "bitsandbytes" or config.get("load_in_8bit") or config.get("load_in_4bit"):
        return _bitsandbytes(config, value)
    if method in ("", "lightpipe") and ("method" in config or "bits" in config):
        bits = config.get("bits")
        text = config.get("method") or {8: "int8", 4: "int4"}.get(bits, str(bits))
        spec = _from_string(str(text))
        return QuantizationSpec(spec.method, _group(config.get("group_size", spec.group_size), value)
                                if spec.method == "int4" else spec.group_size,
                                bool(config.get("include_lm_head", False)),
                                tuple(config.get("skip", ())), spec.compute_dtype)
    if method:
        raise _refuse(value, f"quant_method {method!r} describes a checkpoint saved pre-quantized "
                             "for another library's kernels (GPTQ, AWQ, FP8, ...); lightpipe "
                             "quantizes float checkpoints itself")
    raise _refuse(value, "this config names no quant_method")


def _skipped(name: str, spec: QuantizationSpec, output_head: set[str]) -> bool:
    if name in output_head and not spec.include_lm_head:
        return True
    return any(fragment and fragment in name for fragment in spec.skip)


def output_projections(model: nn.Module) -> set[str]:
    """Names of the modules producing the vocabulary logits (``lm_head`` and the like)."""
    names = {name for name, _ in model.named_modules() if name.split(".")[-1] in
             ("lm_head", "proj_out", "embed_out", "output_projection")}
    getter = getattr(model, "get_output_embeddings", None)
    head = getter() if callable(getter) else None
    if head is not None:
        names |= {name for name, module in model.named_modules() if module is head}
    return names


def quantize_model(model: nn.Module, spec: Any) -> nn.Module:
    """Swap ``model``'s linear layers for quantized ones (in place; the model returned).
    Layers the kernel cannot take (an int4 output size not a multiple of 16, an input size
    not a multiple of the group) stay in float, reported in one log line."""
    spec = parse_quantization(spec)
    if spec is None:
        return model
    if spec.method == "int8-dynamic":
        if importlib.util.find_spec(__name__ + ".dynamic") is None:
            raise NotImplementedError(
                "quantization='int8-dynamic' (int8 activations and weights) is not available in "
                "this lightpipe build: lightpipe.quantization.dynamic is missing. Use 'int8' or "
                "'int4' (weight-only).")
        return importlib.import_module(__name__ + ".dynamic").quantize_dynamic_int8(
            model, skip=spec.skip, include_lm_head=spec.include_lm_head)
    output_head = output_projections(model)
    from .loading import compute_dtype_for

    floats = [p.dtype for p in model.parameters() if p.is_floating_point()]
    compute = compute_dtype_for(spec, floats[0] if floats else torch.float32)
    kept = []
    with torch.no_grad():
        for name, module in list(model.named_modules()):
            if not isinstance(module, nn.Linear) or _skipped(name, spec, output_head):
                continue
            weight, bias = module.weight, module.bias
            if weight.is_meta or weight.device.type != "cpu":
                raise QuantizationError(
                    f"quantization={str(spec)!r}: layer {name} is on {weight.device}; the int8 "
                    "and int4 kernels used here run on the CPU. Load on the CPU to quantize.")
            if spec.method == "int4":
                if not int4_fits(module.out_features, module.in_features, spec.group_size):
                    kept.append(name)
                    continue
                new = Int4Linear.from_weight(weight, spec.group_size, bias, compute)
            else:
                new = Int8Linear.from_weight(weight, bias, compute)
            replace_module(model, name, new)
            del module, weight
    if kept:
        logger.info("quantization %s: %d linear layers kept in float (sizes the int4 kernel does "
                    "not take: output a multiple of 16, input a multiple of %d): %s", spec,
                    len(kept), spec.group_size, ", ".join(kept[:6]) + (" ..." if len(kept) > 6 else ""))
    from .fuse import fuse_projections

    fuse_projections(model)
    model.quantization = spec
    refresh = getattr(model, "end_decode", None)
    if callable(refresh):
        refresh()  # a decode plan built before holds the float layers
    return model


def replace_module(model: nn.Module, name: str, new: nn.Module) -> None:
    parent_name, _, attr = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, attr, new)


def set_int8_activations(model: nn.Module, on: bool = True) -> nn.Module:
    """Opt in (or out) of int8 activations for every weight-only quantized layer of ``model``
    (fused groups and a tied head's copy included): the C kernel's products of a few rows then
    quantize x to int8 per block of 32 inputs (scale max|x| / 127) and use integer dot
    products, as llama.cpp does: faster, and ~100x further from the float32 product than the
    default (int16 x; ``on=False`` goes back to it). Stored as ``model.int8_activations``.
    Without the C kernel the products stay float32 (one log line).
    A QuantizationError when the model has no such layer."""
    layers = [module for module in model.modules()
              if isinstance(module, (Int4Linear, Int5Linear, Int8Linear))]
    if on and not layers:
        raise QuantizationError(
            "int8_activations=True needs weight-only quantized layers, and this model has none: "
            "load it with quantization='int4' or 'int8', or a GGUF file with dequantize=False.")
    for layer in layers:
        layer.int8_activations = bool(on)
    model.int8_activations = bool(on)
    if on:
        from . import kernels

        if not kernels.available():
            logger.info("int8_activations: lightpipe's C kernel is not available (see the line "
                        "above); the quantized products stay in float32.")
    return model
