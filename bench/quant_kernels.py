"""The int4 / int8 weight-only products of one row (batch-1 decode), one process, medians:
lightpipe's C kernel (``lightpipe.quantization.kernels``, float32 activations, and with
``int8_activations=True``: x quantized to int8 per block of 32, integer dot products) against torch's
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
from lightpipe.quantization.linear import Int4Linear, Int8Linear  # noqa: E402

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
    print(f"{'shape (out x in)':>18} thr | {'C int4 f32':>10} {'C int4 q8':>9} {'torch int4 bf16':>15} "
          f"{'C int8 f32':>10} {'C int8 q8':>9} {'C int8g q8':>10} {'torch int8 bf16':>15} "
          f"{'oneDNN f32':>10} | int4 GB/s | torch/C int4  oneDNN/C int4  int4 f32/q8  "
          "int8 f32/q8  int8g f32/q8")
    for out_features, in_features in shapes:
        weight = torch.randn(out_features, in_features) * 0.02
        q4 = Int4Linear.from_weight(weight, 32, compute_dtype=torch.float32)
        q4_bf16 = q4.scales_and_zeros.to(torch.bfloat16)
        q8 = Int8Linear.from_weight(weight, compute_dtype=torch.float32)
        q8_bf16 = q8.scales.to(torch.bfloat16)
        q8g = Int8Linear.grouped_from_weight(weight, 32)  # GGUF Q8_0's layout (SmolLM2's head)
        dense = _ONEDNN_PACK(weight, None) if _ONEDNN_PACK is not None else None
        x = torch.randn(args.rows, in_features)
        xb = x.to(torch.bfloat16)
        int4_bytes = q4.packed.numel() + q4.scales_and_zeros.numel() * 4
        for threads in args.threads:
            torch.set_num_threads(threads)
            times = {
                "c4": timed(lambda: kernels.int4_mm(x, q4.packed, q4.scales_and_zeros, 32,
                                                    out_features), args.repeats),
                "q4": timed(lambda: kernels.int4_mm(x, q4.packed, q4.scales_and_zeros, 32,
                                                    out_features, int8_activations=True),
                            args.repeats),
                "t4": timed(lambda: torch.ops.aten._weight_int4pack_mm_for_cpu(
                    xb, q4.packed, 32, q4_bf16), args.repeats),
                "c8": timed(lambda: kernels.int8_mm(x, q8.codes, q8.scales), args.repeats),
                "q8": timed(lambda: kernels.int8_mm(x, q8.codes, q8.scales, int8_activations=True),
                            args.repeats),
                "c8g": timed(lambda: kernels.int8_mm(x, q8g.codes, q8g.scales), args.repeats),
                "q8g": timed(lambda: kernels.int8_mm(x, q8g.codes, q8g.scales,
                                                     int8_activations=True), args.repeats),
                "t8": timed(lambda: torch.ops.aten._weight_int8pack_mm(xb, q8.codes, q8_bf16),
                            args.repeats),
                "dn": timed(lambda: linear(x, weight, None, dense), args.repeats),
            }
            ms = {key: value * 1e3 for key, value in times.items()}
            print(f"{out_features:>8} x {in_features:<7} {threads:>3} | {ms['c4']:10.3f} "
                  f"{ms['q4']:9.3f} {ms['t4']:15.3f} {ms['c8']:10.3f} {ms['q8']:9.3f} "
                  f"{ms['q8g']:10.3f} {ms['t8']:15.3f} {ms['dn']:10.3f} | "
                  f"{int4_bytes / times['c4'] / 1e9:9.1f} | {times['t4'] / times['c4']:12.2f}x "
                  f"{times['dn'] / times['c4']:12.2f}x {times['c4'] / times['q4']:11.2f}x "
                  f"{times['c8'] / times['q8']:11.2f}x {times['c8g'] / times['q8g']:12.2f}x",
                  flush=True)


if __name__ == "__main__":
    main()
