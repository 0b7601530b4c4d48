"""The int4 / int8 / int5 weight-only products of one row (batch-1 decode), one process, medians:
lightpipe's C kernel (``lightpipe.quantization.kernels``) with each activation kind - f32 (float32
x, exact), q16 (x quantized to int16 per block of 32, madd_epi16: the layers' default), q8 (int8,
``int8_activations=True``) - against torch's
``_weight_int4pack_mm_for_cpu`` (bfloat16 activations: its fast path) and ``_weight_int8pack_mm``
(bfloat16), and the float32 dense product through oneDNN from its blocked layout
(``lightpipe.models.linear``). Shapes of SmolLM2-135M (576) and Qwen2.5-0.5B (896).

    python bench/quant_kernels.py [--threads 1 2] [--rows 1] [--repeats 7] [--shapes 576x576 ...]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from lightpipe.models.linear import _ONEDNN_PACK, linear  # noqa: E402
from lightpipe.quantization import kernels  # noqa: E402
from lightpipe.quantization.linear import Int4Linear, Int5Linear, Int8Linear  # noqa: E402

SHAPES = [(576, 576), (1536, 576), (3072, 576), (576, 1536), (2688, 896), (4864, 896),
          (896, 4864), (49152, 576), (151936, 896)]


def timed(call, repeats: int, budget: float = 0.4) -> float:
    """Median seconds of one call (each sample averages enough calls for ~budget/repeats s)."""
    call()
    start = time.perf_counter()
    call()
    once = max(time.perf_counter() - start, 1e-6)
    inner = max(1, int(budget / repeats / once))
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(inner):
            call()
        samples.append((time.perf_counter() - start) / inner)
    return statistics.median(samples)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--rows", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--shapes", nargs="+", metavar="OUTxIN",
                        help="only these shapes (default: " + " ".join(f"{o}x{i}" for o, i in SHAPES) + ")")
    args = parser.parse_args()
    shapes = [tuple(int(n) for n in text.lower().split("x")) for text in args.shapes] if args.shapes else SHAPES
    if not kernels.available():
        sys.exit("the C kernel is not available here (see the log line); nothing to compare")
    torch.manual_seed(0)
    kinds = ("int4", "int8", "int8g", "int5")
    print("ms per product (f32 / q16 / q8); int4 = Int4Linear g32 (Q4_0/Q4_1), int8 = per row, "
          "int8g = groups of 32 (Q8_0), int5 = Q5_0 blocks; torch int4 bf16; oneDNN f32")
    print(f"{'shape (out x in)':>18} thr | " + " | ".join(f"{k:>20}" for k in kinds)
          + f" | {'torch4':>7} {'oneDNN':>7} | f32/q16 " + " ".join(f"{k:>5}" for k in kinds)
          + " | q16/q8 " + " ".join(f"{k:>5}" for k in kinds))
    for out_features, in_features in shapes:
        weight = torch.randn(out_features, in_features) * 0.02
        q4 = Int4Linear.from_weight(weight, 32, compute_dtype=torch.float32)
        q4_bf16 = q4.scales_and_zeros.to(torch.bfloat16)
        q8 = Int8Linear.from_weight(weight, compute_dtype=torch.float32)
        q8g = Int8Linear.grouped_from_weight(weight, 32)  # GGUF Q8_0's layout (SmolLM2's head)
        q5 = Int5Linear.from_codes(torch.randint(0, 32, (out_features, in_features)),
                                   torch.rand(out_features, in_features // 32) * 0.01)
        dense = _ONEDNN_PACK(weight, None) if _ONEDNN_PACK is not None else None
        x = torch.randn(args.rows, in_features)
        xb = x.to(torch.bfloat16)
        products = {
            "int4": lambda a: kernels.int4_mm(x, q4.packed, q4.scales_and_zeros, 32, out_features,
                                              activations=a),
            "int8": lambda a: kernels.int8_mm(x, q8.codes, q8.scales, activations=a),
            "int8g": lambda a: kernels.int8_mm(x, q8g.codes, q8g.scales, activations=a),
            "int5": lambda a: kernels.int5_mm(x, q5.low, q5.high, q5.scales, activations=a),
        }
        for threads in args.threads:
            torch.set_num_threads(threads)
            ms = {(kind, a): timed(lambda: product(a), args.repeats) * 1e3
                  for kind, product in products.items() for a in ("float32", "int16", "int8")}
            torch4 = timed(lambda: torch.ops.aten._weight_int4pack_mm_for_cpu(xb, q4._torch_packed(), 32, q4_bf16),
                           args.repeats) * 1e3
            onednn = timed(lambda: linear(x, weight, None, dense), args.repeats) * 1e3
            cells = " | ".join(f"{ms[k, 'float32']:6.3f} {ms[k, 'int16']:6.3f} {ms[k, 'int8']:6.3f}"
                               for k in kinds)
            print(f"{out_features:>8} x {in_features:<7} {threads:>3} | {cells} | {torch4:7.3f} "
                  f"{onednn:7.3f} |         "
                  + " ".join(f"{ms[k, 'float32'] / ms[k, 'int16']:5.2f}" for k in kinds) + " |        "
                  + " ".join(f"{ms[k, 'int16'] / ms[k, 'int8']:5.2f}" for k in kinds), flush=True)


if __name__ == "__main__":
    main()
