"""Quantizing a float weight a few rows at a time (bounded float32 copies while loading big
models) gives the same codes and scales as all rows at once."""

import torch

from lightpipe.quantization import linear


def test_row_chunks_give_the_same_quantized_weights(monkeypatch):
    weight = torch.randn(70, 64, generator=torch.Generator().manual_seed(0)).to(torch.bfloat16)
    whole4 = linear.Int4Linear.from_weight(weight, 32)
    whole8 = linear.Int8Linear.from_weight(weight)
    monkeypatch.setattr(linear, "QUANTIZE_ROWS", 3)
    parts4 = linear.Int4Linear.from_weight(weight, 32)
    parts8 = linear.Int8Linear.from_weight(weight)
    for whole, parts in ((whole4, parts4), (whole8, parts8)):
        for (name, a), (_, b) in zip(whole.state_dict().items(), parts.state_dict().items()):
            assert torch.equal(a, b), name
    x = torch.randn(2, 64, dtype=torch.bfloat16)
    assert torch.equal(whole4(x), parts4(x)) and torch.equal(whole8(x), parts8(x))
    # and the codes are right: dequantized int4 is within a step of the weight (bf16 scales)
    error = (whole4.float_weight()[:70] - weight.float()).abs()
    steps = whole4.scales_and_zeros.float()[..., 0].t()[:70].repeat_interleave(32, dim=1)
    assert bool((error <= steps).all())
