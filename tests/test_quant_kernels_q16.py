"""The int16-activation products of lightpipe's C kernel (``int4_mm_q16`` / ``int8_mm_q16`` /
``int5_mm_q16`` in ``lightpipe.quantization.kernels``), the default of the quantized layers on
it: x quantized per row per block of 32 inputs to int16 (scale max|x| / 32767, round to nearest
even), integer dot products (madd_epi16). Each product against a float64 reference computed in
torch from the dequantized weight and the *same* quantized x (tight: only float32 accumulation
order), against x times the dequantized weight within the bound the rounding of x allows and
within 1e-4 of the largest output; then the choice of the layers (int16 by default, float32 under
``LIGHTPIPE_EXACT_ACTIVATIONS=1``, int8 with ``int8_activations``) and the C decoding step on tiny
GGUF files: the same greedy tokens as the dequantised model."""

from __future__ import annotations

import pytest
import torch
from gguf import GGMLQuantizationType as Q

from lightpipe.quantization import Int4Linear, Int5Linear, Int8Linear, kernels
from lightpipe.quantization import step as native_step
from tests.test_gguf_packed import IDS, _load, _relative_error, tiny_file
from tests.test_quant_int5 import random_layer
from tests.test_quant_kernels_q8 import quantized_x, random_int4_layer

pytestmark = pytest.mark.skipif(not kernels.available(),
                                reason="no C compiler / AVX2+FMA here: nothing to test")

# The same quantized x, float32 accumulation in another order (the int32 block sums are exact)
SAME_X = 1e-5
# Against x times the dequantized weight, relative to the largest output (measured ~2-3e-5 on
# these random shapes; one int8 step of x would give ~5e-3, a wrong code or scale far more)
INT16_X = 1e-4
ROWS = [1, 2, 3, 17]


def check(out: torch.Tensor, x: torch.Tensor, weight: torch.Tensor, bias=None) -> None:
    """``out`` (a q16 product) against x̂ W^T (tight), x W^T (within sum_k |w_k| * half a step,
    and within INT16_X of the largest output), and not the float32 product (the q16 path ran)."""
    assert out.dtype == torch.float32 and out.shape == (x.shape[0], weight.shape[0])
    weight = weight.double()
    shift = 0 if bias is None else bias.double()
    x_hat, half_step = quantized_x(x, 32767)
    same = x_hat @ weight.t() + shift
    assert ((out.double() - same).abs().max() / same.abs().max()).item() < SAME_X
    exact = x.double() @ weight.t() + shift
    bound = half_step @ weight.abs().t() + SAME_X * exact.abs().max()
    assert ((out.double() - exact).abs() <= bound).all()
    if x.abs().max() < 10:  # (an outlier coarsens its block's step: the bound above holds)
        assert _relative_error(out, exact) < INT16_X
    # closer to the product with the quantized x than to the float one: the int16 path
    assert (out.double() - same).abs().max() < (out.double() - exact).abs().max()


def awkward_x(rows: int, in_features: int) -> torch.Tensor:
    x = torch.randn(rows, in_features)
    x[:, 5] = 40.0  # an outlier: its block's step is coarser
    x[:, 64:96] = 0  # an all-zero block (scale 0)
    return x


def inputs(rows: int, in_features: int) -> list[torch.Tensor]:
    """A plain x, and (when there is room) one with an outlier and an all-zero block."""
    plain = torch.randn(rows, in_features)
    return [plain, awkward_x(rows, in_features)] if in_features > 96 else [plain]


@pytest.mark.parametrize("group", [32, 64, 256])
@pytest.mark.parametrize("out_features", [77, 96])  # a padded tile, whole tiles
@pytest.mark.parametrize("rows", ROWS)
def test_int4_q16_product(group, out_features, rows):
    torch.manual_seed(group + out_features + rows)
    in_features = 512
    layer, bias = random_int4_layer(group, out_features, in_features)
    weight = layer.dense_weight()
    for x in inputs(rows, in_features):
        for b in (None, bias):
            out = kernels.int4_mm(x, layer.packed, layer.scales_and_zeros, group, out_features,
                                  b, activations="int16")
            check(out, x, weight, b)
    layer.set_compute_dtype(torch.bfloat16)  # bfloat16 scales read as they are
    out = kernels.int4_mm(x, layer.packed, layer.scales_and_zeros, group, out_features,
                          activations="int16")
    check(out, x, layer.dense_weight())


@pytest.mark.parametrize("in_features", [512, 100])  # 100: a partial last block (per row only)
@pytest.mark.parametrize("rows", ROWS)
def test_int8_q16_product(in_features, rows):
    torch.manual_seed(in_features + rows)
    weight, bias = torch.randn(77, in_features), torch.randn(77)
    per_row = Int8Linear.from_weight(weight, bias, compute_dtype=torch.float32)
    for x in inputs(rows, in_features):
        for b in (None, bias):
            check(kernels.int8_mm(x, per_row.codes, per_row.scales, b, activations="int16"),
                  x, per_row.dense_weight(), b)
    per_row.set_compute_dtype(torch.bfloat16)
    check(kernels.int8_mm(x, per_row.codes, per_row.scales, activations="int16"),
          x, per_row.dense_weight())
    if in_features % 32 == 0:
        for group in (32, 64):  # one scale per group (GGUF's Q8_0 is 32)
            grouped = Int8Linear.grouped_from_weight(weight, group, bias)
            out = kernels.int8_mm(x, grouped.codes, grouped.scales, grouped.bias,
                                  activations="int16")
            check(out, x, grouped.dense_weight(), bias)
            grouped.set_compute_dtype(torch.bfloat16)
            out = kernels.int8_mm(x, grouped.codes, grouped.scales, activations="int16")
            check(out, x, grouped.dense_weight())


def test_int8_q16_extreme_codes():
    """Codes of -128 and 127 against the largest int16 x (every code 32767 or -32767): no
    overflow in the pair sums (4 * 128 * 32767 per lane and block)."""
    codes = torch.full((8, 64), -128, dtype=torch.int8)
    codes[1::2] = 127
    layer = Int8Linear.from_groups(codes, torch.ones(8, 2))
    for value in (-3.0, 3.0):
        x = torch.full((2, 64), value)
        out = kernels.int8_mm(x, layer.codes, layer.scales, activations="int16")
        assert torch.equal(out, x @ layer.dense_weight().t())  # x exact in int16


@pytest.mark.parametrize("in_features", [544, 512, 32])  # 17 blocks (odd), 16, one block
@pytest.mark.parametrize("affine", [False, True], ids=["Q5_0", "Q5_1"])
@pytest.mark.parametrize("rows", ROWS)
def test_int5_q16_product(in_features, affine, rows):
    torch.manual_seed(in_features + rows)
    for scale_dtype in (torch.float16, torch.float32):
        layer, weight = random_layer(77, in_features, affine, True, scale_dtype, seed=rows)
        for x in inputs(rows, in_features):
            for b in (None, layer.bias):
                out = kernels.int5_mm(x, layer.low, layer.high, layer.scales, layer.offsets, b,
                                      activations="int16")
                check(out, x, weight.float(), b)


def test_extreme_int5_and_int4_codes():
    """All codes 31 (int5) / 15 (int4) against x at its int16 extremes: the int32 block sums
    stay exact (x exact in int16, one scale: the float product equals)."""
    x = torch.full((1, 64), 2.0)
    x[:, ::2] = -2.0
    x[:, 1] = 2.0  # not all pairs cancel
    five = Int5Linear.from_codes(torch.full((8, 64), 31), torch.ones(8, 2), None,
                                 scale_dtype=torch.float32)
    out = kernels.int5_mm(x, five.low, five.high, five.scales, five.offsets, activations="int16")
    assert torch.equal(out, x @ five.dense_weight().t())
    four = Int4Linear.from_codes(torch.full((32, 64), 15, dtype=torch.int32), torch.ones(32, 2),
                                 torch.zeros(32, 2), 32, compute_dtype=torch.float32)
    out = kernels.int4_mm(x, four.packed, four.scales_and_zeros, 32, 32, activations="int16")
    assert torch.equal(out, x @ four.dense_weight().t())


def test_unknown_activations_refused():
    layer = Int8Linear.grouped_from_weight(torch.randn(8, 64), 32)
    with pytest.raises(ValueError, match="activations must be one of float32, int16, int8"):
        kernels.int8_mm(torch.randn(1, 64), layer.codes, layer.scales, activations="int4")


def test_layers_default_int16_exact_by_environment_int8_opt_in(monkeypatch):
    """The layers' products: int16 x by default; ``LIGHTPIPE_EXACT_ACTIVATIONS=1`` the float32
    product (read at each call); ``int8_activations`` int8 (unchanged)."""
    torch.manual_seed(1)
    five, five_weight = random_layer(40, 544, True, True)
    layers = {
        "int4": (Int4Linear.from_weight(torch.randn(50, 256), 32, torch.randn(50),
                                        compute_dtype=torch.float32), None),
        "int8": (Int8Linear.grouped_from_weight(torch.randn(50, 256), 32, torch.randn(50)), None),
        "int5": (five, five_weight.float()),
    }
    for name, (layer, weight) in layers.items():
        weight = layer.dense_weight() if weight is None else weight
        x = torch.randn(3, layer.in_features)
        assert layer.activations() == "int16"
        default = layer(x)
        check(default, x, weight, layer.bias)
        monkeypatch.setenv("LIGHTPIPE_EXACT_ACTIVATIONS", "1")
        assert layer.activations() == "float32"
        exact = layer(x)
        expected = x.double() @ weight.double().t() + layer.bias.double()
        assert _relative_error(exact, expected) < SAME_X, name
        assert not torch.equal(exact, default)
        monkeypatch.delenv("LIGHTPIPE_EXACT_ACTIVATIONS")
        assert torch.equal(layer(x), default)  # read again: back to int16
        layer.int8_activations = True
        try:
            assert layer.activations() == "int8"
            eight = layer(x)
        finally:
            layer.int8_activations = False
        # int8's error is ~100x int16's
        assert _relative_error(eight, expected) > 10 * _relative_error(default, expected), name


def test_rows_up_to_the_q16_limit_and_threads_bit_equal(monkeypatch):
    """int16 products take up to MAX_ROWS_Q16 rows (pairs of rows share one weight unpack; an odd
    last row alone): each row equals its own 1-row product; more rows go dense float32; and
    products split across threads equal the 1-thread ones bit for bit."""
    layer = Int4Linear.from_weight(torch.randn(64, 256), 64, compute_dtype=torch.float32)
    x = torch.randn(5, 256)
    together = layer(x)
    assert torch.equal(together, torch.cat([layer(row) for row in x.split(1)]))
    calls = []
    original = kernels.int4_mm
    monkeypatch.setattr(kernels, "int4_mm",
                        lambda *a, **k: calls.append(k.get("activations")) or original(*a, **k))
    layer(torch.randn(kernels.MAX_ROWS_Q16, 256))
    layer(torch.randn(kernels.MAX_ROWS_Q16 + 1, 256))
    assert calls == ["int16"]
    monkeypatch.setattr(kernels, "PARALLEL_FROM", 0)
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        assert torch.equal(layer(x), together)
    finally:
        torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return tmp_path_factory.mktemp("gguf-q16")


@pytest.mark.parametrize("qtype,model_type", [(Q.Q4_1, "llama"), (Q.Q8_0, "llama"),
                                              (Q.Q5_0, "qwen2")], ids=["Q4_1", "Q8_0", "Q5_0"])
def test_native_step_same_tokens_as_dequantised(folder, qtype, model_type, monkeypatch):
    """A tiny packed GGUF model decodes in the C step with int16 activations (Product.act 2):
    its greedy tokens equal the dequantised float32 model's, its step logits within 1e-4 of them
    (relative to the largest); under LIGHTPIPE_EXACT_ACTIVATIONS=1 the step takes float32 x."""
    path = tiny_file(folder, qtype, model_type)
    dense = _load(path)
    packed = _load(path, dequantize=False)
    built = []
    original_build = native_step.DecodeStep.build.__func__

    def build(cls, *args):
        out = original_build(cls, *args)
        built.append(out)
        return out

    monkeypatch.setattr(native_step.DecodeStep, "build", classmethod(build))
    settings = dict(max_new_tokens=8, do_sample=False, output_logits=True,
                    return_dict_in_generate=True)
    want = dense.generate(IDS, **settings)
    got = packed.generate(IDS, **settings)
    step = built[-1]
    assert step is not None
    acts = {product[10] for longs in step.layer_longs
            for product in (longs[7 + 11 * i:7 + 11 * (i + 1)] for i in range(7)) if product[0]}
    assert acts == {native_step.ACTIVATION_CODES["int16"]}
    assert torch.equal(got.sequences, want.sequences)
    for ours, theirs in zip(got.logits[1:], want.logits[1:]):
        assert _relative_error(ours, theirs) < INT16_X
    monkeypatch.setenv("LIGHTPIPE_EXACT_ACTIVATIONS", "1")
    exact = packed.generate(IDS, **settings)
    longs = built[-1].layer_longs[0]
    assert longs[7 + 10] == native_step.ACTIVATION_CODES["float32"]
    assert torch.equal(exact.sequences, want.sequences)
    assert max(_relative_error(ours, theirs)
               for ours, theirs in zip(exact.logits[1:], want.logits[1:])) < SAME_X


def test_vnni_and_avx2_builds_give_the_same_numbers(monkeypatch):
    """The library is built with VNNI instructions where the CPU has them (kernels.c's DPWSSD /
    DPBUSD: one instruction for madd + add); the plain AVX2 build computes the same integers in
    the same order: every product (int4 / int8 / int5, int16 and int8 x; int8-dynamic's
    dyn8_mm, 64-byte AVX-512 vectors where the CPU has them) bit for bit equal."""
    from lightpipe.quantization import Int5Linear
    from lightpipe.quantization.dynamic import DynamicInt8Linear

    torch.manual_seed(5)
    int4, _ = random_int4_layer(64, 80, 256)
    int8 = Int8Linear.from_weight(torch.randn(72, 256), compute_dtype=torch.float32)
    int5, _ = random_layer(40, 256, affine=True, bias=True, scale_dtype=torch.float32)
    assert isinstance(int5, Int5Linear)
    dynamic = DynamicInt8Linear.from_weight(torch.randn(70, 260), torch.randn(70))
    x = torch.randn(5, 256)
    x_dynamic = torch.randn(7, 260)

    def products():
        kernels.reset()
        assert kernels.available()
        return [layer(x) for layer in (int4, int8, int5)] + [
            kernels.int8_mm(x, int8.codes, int8.scales, activations="int8"),
            kernels.int4_mm(x, int4.packed, int4.scales_and_zeros, int4.group_size,
                            int4.out_features, activations="int8"),
            kernels.dyn8_mm(x_dynamic, dynamic.codes, dynamic.scales, dynamic._row_sums.view(-1),
                            dynamic._bias)]

    real = kernels.cpu_flags()
    try:
        first = products()
        monkeypatch.setattr(kernels, "cpu_flags", lambda: real - {"avx_vnni", "avx512_vnni"})
        assert kernels.build_flags(kernels.cpu_flags()) == kernels.FLAGS
        plain = products()
    finally:
        monkeypatch.undo()
        kernels.reset()
    for a, b in zip(first, plain):
        assert torch.equal(a, b)
    if not ({"avx_vnni", "avx512_vnni"} & real):
        pytest.skip("this CPU has no VNNI: both builds were the AVX2 one")


def test_a_compiler_without_amx_builds_the_library_without_it(monkeypatch):
    """On a CPU with the AMX tiles the library is built with -mamx-tile -mamx-int8; a compiler
    that refuses them (too old) gets a second build without them, not a missing library."""
    real_build = kernels._build
    tried = []

    def build(compiler, amx=True):
        tried.append(amx)
        if amx and kernels.build_flags(kernels.cpu_flags()) != kernels.build_flags(kernels.cpu_flags(), amx=False):
            raise RuntimeError("cc exited with 1: unrecognized command-line option '-mamx-tile'")
        return real_build(compiler, amx)

    cpu = kernels.cpu_flags() | {"avx512f", "avx512bw", "avx512vl", "avx512_vnni", "amx_tile", "amx_int8"}
    assert "-mamx-int8" in kernels.build_flags(cpu)
    assert "-mamx-int8" not in kernels.build_flags(cpu, amx=False)
    monkeypatch.setattr(kernels, "_build", build)
    try:
        kernels.reset()
        assert kernels.available()
        if "amx_tile" in kernels.cpu_flags() and "avx512bw" in kernels.cpu_flags():
            assert tried == [True, False] and not kernels.amx_usable()
    finally:
        monkeypatch.undo()
        kernels.reset()
