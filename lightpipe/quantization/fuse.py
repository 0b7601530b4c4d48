"""Fused projections: q/k/v (and gate/up) of a layer multiplied in one kernel call.

A decoding step of a small model is mostly per-call overhead (each kernel call is a parallel
region and a dtype conversion for a product of one row), so the quantized layers that read the
same input are concatenated along their outputs into one ``QuantizedLinear``. The model code
is unchanged: each original attribute (``q_proj``, ``k_proj``, ...) becomes a ``FusedPart``
that returns its slice of the fused product, computed once per input tensor (the first part
called computes it; the others find it by identity of their input).
"""

from __future__ import annotations

import torch
from torch import nn

from .linear import Int4Linear, Int5Linear, Int8Linear, QuantizedLinear

GROUPS = (("q_proj", "k_proj", "v_proj"), ("gate_proj", "up_proj"))


class FusedProjection(nn.Module):
    """The fused layer, and the last (input, output) pair it computed."""

    def __init__(self, layer: QuantizedLinear):
        super().__init__()
        self.layer = layer
        self._input: torch.Tensor | None = None
        self._output: torch.Tensor | None = None

    def product(self, inputs: torch.Tensor, last: bool) -> torch.Tensor:
        if self._input is not inputs:
            self._input, self._output = inputs, self.layer(inputs)
        out = self._output
        if last:  # the group's last part: nothing refers to this input any more
            self._input = self._output = None
        return out


class FusedPart(QuantizedLinear):
    """One projection of a fused group: ``self(x)`` is its slice of the fused product."""

    def __init__(self, fused: FusedProjection, start: int, stop: int, last: bool, in_features: int):
        super().__init__()
        self.in_features, self.out_features = in_features, stop - start
        self.start, self.stop, self.last = start, stop, last
        # a plain attribute (not a submodule): the group is registered once, on the parent
        self.__dict__["fused"] = fused

    @property
    def bias(self) -> torch.Tensor | None:
        bias = self.fused.layer.bias
        return None if bias is None else bias[self.start:self.stop]

    @property
    def compute_dtype(self) -> torch.dtype:
        return self.fused.layer.compute_dtype

    def set_compute_dtype(self, dtype: torch.dtype) -> None:
        self.fused.layer.set_compute_dtype(dtype)

    def _codes(self) -> torch.Tensor:
        return self.fused.layer._codes()

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        return self.fused.product(inputs, self.last)[..., self.start:self.stop]

    def dense_weight(self) -> torch.Tensor:
        return self.fused.layer.dense_weight()[self.start:self.stop]

    def extra_repr(self) -> str:
        return f"fused rows {self.start}:{self.stop} of {type(self.fused.layer).__name__}"


def _fusable(layers: list[nn.Module]) -> bool:
    first = layers[0]
    if not all(type(layer) is type(first) and layer.in_features == first.in_features
               and layer.compute_dtype == first.compute_dtype
               and (layer.bias is None) == (first.bias is None) for layer in layers):
        return False
    if isinstance(first, Int4Linear):
        # the kernel's packed layout is per 32-row tile; only the last part may be padded
        return (all(layer.group_size == first.group_size for layer in layers)
                and all(layer.out_features % 32 == 0 for layer in layers[:-1])
                and all(layer.packed.shape[0] == layer.out_features for layer in layers[:-1]))
    if isinstance(first, Int5Linear):  # per-row codes and scales: rows concatenate
        return all(layer.scales.dtype == first.scales.dtype
                   and (layer.offsets is None) == (first.offsets is None) for layer in layers)
    return isinstance(first, Int8Linear) and all(layer.scales.shape[1:] == first.scales.shape[1:]
                                                 for layer in layers)


def _concatenate(layers: list[nn.Module]) -> QuantizedLinear:
    first = layers[0]
    out_features = sum(layer.out_features for layer in layers)
    bias = (None if first.bias is None
            else torch.cat([layer.bias.detach() for layer in layers]))
    if isinstance(first, Int4Linear):
        packed = torch.cat([layer.packed for layer in layers])
        scales = torch.cat([layer.scales_and_zeros[:, :layer.packed.shape[0]] for layer in layers], 1)
        return Int4Linear(first.in_features, out_features, first.group_size, packed, scales, bias)
    if isinstance(first, Int5Linear):
        offsets = (None if first.offsets is None
                   else torch.cat([layer.offsets for layer in layers]))
        return Int5Linear(first.in_features, out_features,
                          *(torch.cat([getattr(layer, name) for layer in layers])
                            for name in ("low", "high", "scales")), offsets, bias)
    return Int8Linear(first.in_features, out_features,
                      torch.cat([layer.codes for layer in layers]),
                      torch.cat([layer.scales for layer in layers]), bias)


def fuse_projections(model: nn.Module) -> int:
    """Fuse each module's quantized q/k/v and gate/up projections; returns how many groups.
    Encoder-decoders are left as they are (their cross-attention's q and k/v read different
    inputs)."""
    if getattr(getattr(model, "config", None), "get", lambda *_: None)("is_encoder_decoder"):
        return 0
    count = 0
    # Only the parents are listed: a list of every module would keep each replaced projection
    # (an 8B model's q/k/v and gate/up codes, 2 GiB) alive until the loop ends.
    parents = [module for module in model.modules()
               if any(hasattr(module, names[0]) for names in GROUPS)]
    for module in parents:
        for names in GROUPS:
            layers = [getattr(module, name, None) for name in names]
            if not all(isinstance(layer, (Int4Linear, Int5Linear, Int8Linear)) for layer in layers):
                continue
            if not _fusable(layers):
                continue
            install(module, names, layers, FusedProjection(_concatenate(layers)))
            count += 1
    return count


def install(module: nn.Module, names: tuple[str, ...], layers: list[nn.Module],
            fused: FusedProjection) -> None:
    """Register ``fused`` on ``module`` (``fused_q_k_v``, ``fused_gate_up``) and put a
    ``FusedPart`` under each of ``names``, slicing the rows ``layers`` had."""
    setattr(module, "fused_" + "_".join(name.split("_")[0] for name in names), fused)
    start = 0
    for index, (name, layer) in enumerate(zip(names, layers)):
        stop = start + layer.out_features
        setattr(module, name, FusedPart(fused, start, stop, index == len(names) - 1,
                                        layer.in_features))
        start = stop
