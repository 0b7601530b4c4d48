"""lightpipe's AVX2 C kernel for int4 / int8 weight-only products of a few rows
(``lightpipe.quantization.kernels``): its products against the float32 product with the
dequantized weight, the layers' use of it, and the fallback to torch's kernels (no compiler,
``LIGHTPIPE_KERNELS=0``) with one log line and the same results within tolerance."""

from __future__ import annotations

import logging

import pytest
import torch

from lightpipe.quantization import kernels
from lightpipe.quantization.fuse import FusedProjection, _concatenate
from lightpipe.quantization.linear import Int4Linear, Int8Linear

# float32 sums in another order: relative to the largest output
TOLERANCE = 1e-5
# the layers' default on the kernel: x quantized to int16 per block of 32 (a rounding of at most
# max|x_block| / 65534 per input: ~2e-5 of the largest output here, one int8 step would be ~5e-3)
INT16_X = 1e-4

needs_kernel = pytest.mark.skipif(not kernels.available(),
                                  reason="no C compiler / AVX2+FMA here: the fallback is tested")


def _error(ours: torch.Tensor, reference: torch.Tensor) -> float:
    return ((ours - reference).abs().max() / reference.abs().max()).item()


@pytest.fixture
def fresh_kernels(monkeypatch, tmp_path):
    """A kernel state tried afresh, with its build cache in tmp_path; restored afterwards."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.delenv("LIGHTPIPE_KERNELS", raising=False)
    kernels.reset()
    yield
    kernels.reset()


@needs_kernel
@pytest.mark.parametrize("group", [32, 64, 128, 256])
@pytest.mark.parametrize("out_features", [77, 100, 96])  # odd, not a multiple of 32, whole tiles
@pytest.mark.parametrize("rows", [1, 3])
def test_int4_kernel_matches_dequantized_product(group, out_features, rows):
    torch.manual_seed(group + out_features + rows)
    in_features = 512
    codes = torch.randint(0, 16, (out_features, in_features), dtype=torch.int32)
    scales = torch.rand(out_features, in_features // group) + 0.1
    zeros = torch.randn(out_features, in_features // group)
    layer = Int4Linear.from_codes(codes, scales, zeros, group, torch.randn(out_features),
                                  compute_dtype=torch.float32)
    # the codes' meaning, w = (q - 8) * scale + zero, from the codes themselves
    weight = ((codes - 8) * scales.repeat_interleave(group, 1) + zeros.repeat_interleave(group, 1))
    x = torch.randn(rows, in_features)
    for bias in (None, layer.bias):
        out = kernels.int4_mm(x, layer.packed, layer.scales_and_zeros, group, out_features, bias)
        reference = x @ weight.t() + (0 if bias is None else bias)
        assert out.shape == (rows, out_features)
        assert _error(out, reference) < TOLERANCE
    # bfloat16 scales (the layer's default compute dtype) are read as they are
    layer.set_compute_dtype(torch.bfloat16)
    out = kernels.int4_mm(x, layer.packed, layer.scales_and_zeros, group, out_features)
    assert _error(out, x @ layer.dense_weight().t()) < TOLERANCE


@needs_kernel
@pytest.mark.parametrize("in_features", [512, 100])  # a tail of inputs past the 32-wide steps
@pytest.mark.parametrize("rows", [1, 3])
def test_int8_kernel_matches_dequantized_product(in_features, rows):
    torch.manual_seed(in_features + rows)
    weight, bias = torch.randn(77, in_features), torch.randn(77)
    x = torch.randn(rows, in_features)
    layer = Int8Linear.from_weight(weight, bias, compute_dtype=torch.float32)
    reference = x @ layer.dense_weight().t()
    assert _error(kernels.int8_mm(x, layer.codes, layer.scales), reference) < TOLERANCE
    assert _error(kernels.int8_mm(x, layer.codes, layer.scales, layer.bias),
                  reference + bias) < TOLERANCE
    if in_features % 32 == 0:  # one scale per group of 32 inputs (GGUF's Q8_0)
        grouped = Int8Linear.grouped_from_weight(weight, 32, bias)
        assert grouped.group_size == 32
        out = kernels.int8_mm(x, grouped.codes, grouped.scales, grouped.bias)
        assert _error(out, x @ grouped.dense_weight().t() + bias) < TOLERANCE
        # closer to the float weight than one scale per row
        assert ((grouped.dense_weight() - weight).abs().mean()
                < (layer.dense_weight() - weight).abs().mean())


def _layers():
    torch.manual_seed(3)
    weight, bias = torch.randn(100, 256) * 0.05, torch.randn(100)
    return weight, bias, {
        "int4": Int4Linear.from_weight(weight, 64, bias, compute_dtype=torch.float32),
        "int4-bf16": Int4Linear.from_weight(weight, 64, bias),
        "int8": Int8Linear.from_weight(weight, bias, compute_dtype=torch.float32),
        "int8-groups": Int8Linear.grouped_from_weight(weight, 32, bias),
    }


def test_layers_same_results_with_and_without_kernel(monkeypatch, fresh_kernels):
    """A layer gives the float32 product with its dequantized weight within tolerance whether
    its small products go to the C kernel or to torch's kernels (LIGHTPIPE_KERNELS=0), in
    float32 and bfloat16 inputs; from 9 rows on, the kernel is not used."""
    _, _, layers = _layers()
    x = torch.randn(2, 3, 256)
    built = kernels.available()
    with_kernel = {name: layer(x) for name, layer in layers.items()}
    monkeypatch.setenv("LIGHTPIPE_KERNELS", "0")
    kernels.reset()
    assert not kernels.available()
    for name, layer in layers.items():
        out = layer(x)
        assert out.shape == (2, 3, 100) and out.dtype == torch.float32
        reference = x @ layer.dense_weight().t() + layer.bias.float()
        # torch's kernels compute in the layer's compute dtype (bfloat16 scales: rounded input)
        loose = 1e-2 if layer.compute_dtype == torch.bfloat16 and "int8-groups" != name else TOLERANCE
        assert _error(out, reference) < loose, name
        if built:  # the kernel reads bfloat16 scales as they are; x quantized to int16
            assert _error(with_kernel[name], reference) < INT16_X, name
        assert layer(x.to(torch.bfloat16)).dtype == torch.bfloat16


@needs_kernel
def test_kernel_is_what_small_products_use(monkeypatch):
    """The layers (and a fused group) call the kernel for up to MAX_ROWS_Q16 rows (int16
    activations, their default) and not above."""
    _, _, layers = _layers()
    calls = []
    for name in ("int4_mm", "int8_mm"):
        original = getattr(kernels, name)
        monkeypatch.setattr(kernels, name, lambda *a, f=original, n=name, **k: calls.append(n) or f(*a, **k))
    for rows, expected in ((1, 1), (kernels.MAX_ROWS_Q16, 1), (kernels.MAX_ROWS_Q16 + 1, 0)):
        for name, layer in layers.items():
            calls.clear()
            layer(torch.randn(rows, 256))
            assert len(calls) == expected, (name, rows)
    weight, bias, _ = _layers()
    first = Int4Linear.from_weight(weight[:96], 64, bias[:96], compute_dtype=torch.float32)
    fused = FusedProjection(_concatenate([first, layers["int4"]]))  # (only the last one padded)
    calls.clear()
    x = torch.randn(1, 256)
    out = fused.product(x, last=True)
    assert calls == ["int4_mm"] and out.shape == (1, 196)
    # each output row is computed alike, fused or not
    assert torch.equal(out[:, :96], first(x)) and torch.equal(out[:, 96:], layers["int4"](x))


def test_broken_compiler_falls_back_with_one_log_line(monkeypatch, fresh_kernels, caplog):
    monkeypatch.setenv("CC", "false")
    with caplog.at_level(logging.INFO, logger="lightpipe.quantization"):
        assert not kernels.available()
        assert not kernels.available()  # tried once
    lines = [r.getMessage() for r in caplog.records if "C kernel not used" in r.getMessage()]
    assert len(lines) == 1
    if "avx2" in kernels.cpu_flags():
        assert "false exited with" in lines[0], lines[0]
    _, _, layers = _layers()
    x = torch.randn(1, 256)
    for layer in layers.values():  # torch's kernels (or the dense product for groups)
        assert _error(layer(x), x @ layer.dense_weight().t() + layer.bias.float()) < 1e-2


def test_disabled_by_environment(monkeypatch, fresh_kernels, caplog):
    monkeypatch.setenv("LIGHTPIPE_KERNELS", "0")
    with caplog.at_level(logging.INFO, logger="lightpipe.quantization"):
        assert not kernels.available()
    assert any("LIGHTPIPE_KERNELS=0" in r.getMessage() for r in caplog.records)
    assert not list(kernels.cache_dir().glob("*.so"))  # nothing was built


@needs_kernel
def test_build_cached_under_a_hash(fresh_kernels):
    assert kernels.available()
    built = list(kernels.cache_dir().glob("*.so"))
    assert len(built) == 1 and len(built[0].stem) == 24
    kernels.reset()
    assert kernels.available()  # the cached file is loaded again, not rebuilt
    assert list(kernels.cache_dir().glob("*")) == built


@needs_kernel
def test_rows_split_across_threads_give_the_same_numbers(monkeypatch):
    """Products split across OpenMP threads (large ones; forced here) equal the one-thread
    products bit for bit: each output row is summed by one thread in the same order."""
    weight, bias, layers = _layers()
    x = torch.randn(3, 256)
    single = {name: layer(x) for name, layer in layers.items()}
    monkeypatch.setattr(kernels, "PARALLEL_FROM", 0)
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        for name, layer in layers.items():
            assert torch.equal(layer(x), single[name]), name
    finally:
        torch.set_num_threads(threads)


def test_argmax_rows_is_torchs_argmax():
    """kernels.argmax_rows (greedy search's pick where the C library is loaded): torch.argmax's
    answer - the first of tied largest values, the first NaN of a row holding one, 0 for a row
    of -inf - for row lengths around the vector width and rows ld apart (a slice)."""
    from lightpipe.generation.search import argmax

    if not kernels.available():
        pytest.skip("the C kernel needs a compiler")
    torch.manual_seed(4)
    for rows, n in ((1, 1), (3, 7), (2, 8), (5, 9), (8, 151936), (4, 1001)):
        x = torch.randn(rows, n)
        assert torch.equal(kernels.argmax_rows(x), x.argmax(-1)), (rows, n)
    x = torch.zeros(5, 100)
    x[0, 17] = x[0, 60] = 5.0  # a tie: the first
    x[1, 50], x[1, 33], x[1, 70] = 9.0, float("nan"), float("nan")  # a NaN wins, the first one
    x[2] = float("-inf")
    x[3, 99] = 1.0  # in the tail past the last full vector
    x[4, 3] = float("inf")
    assert kernels.argmax_rows(x).tolist() == x.argmax(-1).tolist() == [17, 33, 0, 99, 3]
    wide = torch.randn(6, 300)[:, :257]  # rows 300 apart
    assert torch.equal(kernels.argmax_rows(wide), wide.argmax(-1))
    assert torch.equal(argmax(wide), wide.argmax(-1)) and argmax(wide).dtype == torch.int64
