"""5-bit codes kept as they are in GGUF's Q5_0 / Q5_1 blocks (``Int5Linear``) and lightpipe's C
products over them (``int5_mm``, float32; ``int5_mm_q8``, int8 activations). The float32
product is checked against x times the dequantized weight in float64; the q8 product against
the same with x quantized as the C side does (and within the bound that rounding allows); the
layer's dequantized weight against the formula from its codes; then tiny GGUF files in Q5_0 and
Q5_1 loaded with ``dequantize=False`` against the same file dequantised to float32 (the
reference's way of loading it), the C decoding step included; and the fallback without the
kernel (today's int8 layer)."""

from __future__ import annotations

import pytest
import torch
from gguf import GGMLQuantizationType as Q

from lightpipe.quantization import Int5Linear, Int8Linear, kernels, set_int8_activations
from lightpipe.quantization import step as native_step
from lightpipe.quantization.fuse import FusedPart, _concatenate, _fusable
from lightpipe.quantization.linear import pack_int5, unpack_int5
from tests.test_gguf_packed import (FLOAT32_ORDER, IDS, INT16_ORDER, NEAREST_TOLERANCE,
                                    _load, _relative_error, tiny_file)
from tests.test_quant_kernels_q8 import check as check_q8
from tests.test_quantization import kinds

needs_kernel = pytest.mark.skipif(not kernels.available(),
                                  reason="no C compiler / AVX2+FMA here: the fallback is tested")


def random_layer(out_features: int, in_features: int, affine: bool, bias: bool,
                 scale_dtype=torch.float16, seed: int = 0) -> tuple[Int5Linear, torch.Tensor]:
    """A layer from random codes and scales (float16 values, as GGUF's) and the float64 weight
    they stand for, computed here from the codes."""
    generator = torch.Generator().manual_seed(seed)
    codes = torch.randint(0, 32, (out_features, in_features), generator=generator)
    groups = in_features // 32
    scales = (torch.rand(out_features, groups, generator=generator) * 0.05 + 1e-3).half()
    offsets = (-torch.rand(out_features, groups, generator=generator) * 0.4).half() if affine else None
    b = torch.randn(out_features, generator=generator) if bias else None
    layer = Int5Linear.from_codes(codes, scales, offsets, b, scale_dtype)
    d = scales.double().repeat_interleave(32, 1)
    if affine:
        weight = codes.double() * d + offsets.double().repeat_interleave(32, 1)
    else:
        weight = (codes.double() - 16) * d
    return layer, weight


def test_pack_round_trip_and_dense_weight():
    codes = torch.randint(0, 32, (5, 96))
    codes[0, :64] = 31  # every 5th bit of a pair of blocks set (the int64's sign bit too)
    low, high = pack_int5(codes)  # 3 blocks: one pair and a block paired with zeros
    assert low.shape == (5, 48) and low.dtype == torch.uint8
    assert high.shape == (5, 2) and high.dtype == torch.int64 and high[0, 0] == -1
    assert torch.equal(unpack_int5(low, high), codes.to(torch.uint8))
    # bit t of byte j: value 8 g + j of block h, t = INT5_BIT[h][g]
    one = torch.zeros(1, 64, dtype=torch.long)
    one[0, 32 + 8 * 2 + 5] = 16  # block 1, g 2, j 5: t = 6
    assert pack_int5(one)[1].item() == 1 << (8 * 5 + 6)
    for affine in (False, True):
        layer, weight = random_layer(7, 96, affine, False)
        assert torch.equal(layer.dense_weight().double(), weight.float().double())
        assert layer.scales.dtype == torch.int16  # float16 bits: a model dtype leaves them alone
        assert layer.compute_dtype == torch.float32
        layer.set_compute_dtype(torch.bfloat16)  # no effect: the file's scales are kept
        assert layer.scales.dtype == torch.int16
    with pytest.raises(ValueError, match="groups of 32"):
        Int5Linear(48, 2, low[:2, :24], high[:2, :1], layer.scales[:2, :1])


@needs_kernel
@pytest.mark.parametrize("in_features", [32, 160, 896, 4864])
@pytest.mark.parametrize("affine", [False, True], ids=["Q5_0", "Q5_1"])
@pytest.mark.parametrize("rows", [1, 3])
def test_product_equals_dequantized_weight(in_features, affine, rows, monkeypatch):
    monkeypatch.setenv("LIGHTPIPE_EXACT_ACTIVATIONS", "1")  # the float32 product (int5_mm)
    torch.manual_seed(in_features + rows)
    for out_features, bias in ((77, rows == 1), (1, rows != 1)):
        layer, weight = random_layer(out_features, in_features, affine, bias, seed=in_features)
        x = torch.randn(rows, in_features)
        expected = x.double() @ weight.t() + (layer.bias.double() if bias else 0)
        out = layer(x)
        assert out.shape == (rows, out_features) and out.dtype == torch.float32
        assert _relative_error(out, expected) < FLOAT32_ORDER
        # float32 scales: the same numbers
        wide, _ = random_layer(out_features, in_features, affine, bias, torch.float32,
                               seed=in_features)
        assert wide.scales.dtype == torch.float32
        assert _relative_error(wide(x), expected) < FLOAT32_ORDER
        # a batch-shaped bfloat16 input comes back in its dtype
        assert layer(x.bfloat16().unsqueeze(0)).dtype == torch.bfloat16


@needs_kernel
@pytest.mark.parametrize("affine", [False, True], ids=["Q5_0", "Q5_1"])
@pytest.mark.parametrize("rows", [1, 3])
def test_q8_product_within_its_rounding(affine, rows):
    layer, weight = random_layer(77, 512, affine, True, seed=rows)
    layer.int8_activations = True
    x = torch.randn(rows, 512)
    x[:, 5] = 40.0  # an outlier: its block's step is coarse
    x[:, 64:96] = 0  # an all-zero block (scale 0)
    check_q8(layer(x), x, weight.float(), layer.bias)


@needs_kernel
def test_many_rows_dense_and_threads_bit_equal(monkeypatch):
    layer, weight = random_layer(300, 256, True, True)
    x = torch.randn(kernels.MAX_ROWS_Q8 + 5, 256)  # past the kernel: dequantize + float32 GEMM
    expected = x.double() @ weight.t() + layer.bias.double()
    assert _relative_error(layer(x), expected) < FLOAT32_ORDER
    x = torch.randn(3, 256)
    one = [layer(x)]
    layer.int8_activations = True
    one.append(layer(x))
    monkeypatch.setattr(kernels, "PARALLEL_FROM", 0)
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        two = layer(x)
        layer.int8_activations = False
        assert torch.equal(layer(x), one[0]) and torch.equal(two, one[1])
    finally:
        torch.set_num_threads(threads)


@needs_kernel
def test_fused_group_equals_its_parts():
    parts = [random_layer(n, 128, True, True, seed=n)[0] for n in (64, 32, 32)]
    assert _fusable(parts)
    assert not _fusable([parts[0], random_layer(32, 128, False, True)[0]])  # Q5_0 with Q5_1
    fused = _concatenate(parts)
    assert isinstance(fused, Int5Linear) and fused.out_features == 128
    x = torch.randn(2, 128)
    for int8 in (False, True):
        for layer in (fused, *parts):
            layer.int8_activations = int8
        assert torch.equal(fused(x), torch.cat([part(x) for part in parts], 1))


def _q5_file(folder, qtype, tied=False):
    return tiny_file(folder, qtype, "qwen2", tied=tied)  # qwen2: biases on q/k/v


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return tmp_path_factory.mktemp("gguf-int5")


@needs_kernel
@pytest.mark.parametrize("qtype", [Q.Q5_0, Q.Q5_1], ids=lambda t: t.name)
def test_gguf_q5_loads_as_int5_and_matches_dequantised(folder, qtype, monkeypatch):
    path = _q5_file(folder, qtype)
    dense = _load(path)  # dequantised, float32: the reference's loading
    packed = _load(path, dequantize=False)
    assert kinds(packed) == [Int5Linear] * 14
    assert packed.dtype == torch.float32
    assert not any(isinstance(m, torch.nn.Linear) for m in packed.modules())
    q_proj = packed.model.layers[0].self_attn.q_proj
    assert isinstance(q_proj, FusedPart) and q_proj.bias is not None
    layer = packed.model.layers[1].mlp.down_proj
    assert torch.equal(layer.dense_weight(), dense.model.layers[1].mlp.down_proj.weight)
    # 5.5 bits a weight (Q5_1: 6), as in the file
    bits = {Q.Q5_0: 5.5, Q.Q5_1: 6.0}[qtype]
    size = sum(t.numel() * t.element_size() for t in layer.buffers())
    assert size * 8 == bits * layer.in_features * layer.out_features
    with torch.no_grad():
        for ids in (IDS, IDS[:, :3]):  # the dense path and the C kernel
            error = _relative_error(packed(ids).logits, dense(ids).logits)
            assert error < INT16_ORDER, (ids.shape, error)
    # the C decoding step runs the Int5Linear products (kind 5): same greedy tokens
    calls = []
    original = native_step.DecodeStep.__call__

    def counted(self, *args):
        out = original(self, *args)
        calls.append(out is not None)
        return out

    monkeypatch.setattr(native_step.DecodeStep, "__call__", counted)
    expected = dense.generate(IDS, max_new_tokens=6, do_sample=False)
    assert torch.equal(packed.generate(IDS, max_new_tokens=6, do_sample=False), expected)
    assert calls and all(calls)
    # int8 activations: close, not equal; the step takes them too
    set_int8_activations(packed)
    assert all(layer.int8_activations for layer in packed.modules() if isinstance(layer, Int5Linear))
    with torch.no_grad():
        error = _relative_error(packed(IDS[:, :3]).logits, dense(IDS[:, :3]).logits)
    assert 0 < error < 0.03, error
    calls.clear()
    out = packed.generate(IDS, max_new_tokens=4, do_sample=False)
    assert out.shape == (1, IDS.shape[1] + 4) and calls and all(calls)


@needs_kernel
def test_tied_q5_head(folder):
    path = _q5_file(folder, Q.Q5_0, tied=True)
    dense = _load(path)
    packed = _load(path, dequantize=False)
    assert isinstance(packed.lm_head, Int5Linear)
    with torch.no_grad():
        assert _relative_error(packed(IDS).logits, dense(IDS).logits) < INT16_ORDER


@pytest.mark.parametrize("qtype", [Q.Q5_0, Q.Q5_1], ids=lambda t: t.name)
def test_without_kernel_todays_layer(folder, qtype, monkeypatch):
    path = _q5_file(folder, qtype)
    monkeypatch.setenv("LIGHTPIPE_KERNELS", "0")
    kernels.reset()
    try:
        dense = _load(path)
        packed = _load(path, dequantize=False)
        assert kinds(packed) == [Int8Linear] * 14  # int8 per row (torch's kernel)
        with torch.no_grad():
            error = _relative_error(packed(IDS).logits, dense(IDS).logits)
        assert error < NEAREST_TOLERANCE[qtype], error
    finally:
        kernels.reset()
