"""feature-extraction throughput, memory and agreement: lightpipe vs transformers, real MiniLM.

N English-like sentences of 5 to 120 words (seeded), batch_size=32, all-MiniLM-L6-v2. Each
(library, dtype) runs in a fresh child process, so peak memory (ru_maxrss, and its rise over
the baseline after `import torch` and the library's `pipeline` import) is measured fairly;
rounds of all children are interleaved, medians reported. A child builds the pipeline, warms
up on one batch, times `pipe(sentences)` (the default call: nested lists out), then times the
model forward alone, `model(**batch)` over length-sorted padded batches of the same texts.
Once a round, the CPU's matmul peak (`torch.mm`, float32 and bfloat16) is measured, and the
model forward's share of it reported, with FLOPs = 2 * linear params * tokens + 4 * seq^2 *
hidden per layer per sequence, over the padded batches. Goal: float32 throughput >= 2x.

    python bench/feature_extraction.py [--n 2000] [--rounds 3]       (--n 200 --rounds 1: smoke)
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import subprocess
import sys
import time
from pathlib import Path

from common import (COMMON_WORDS as WORDS, OUT_DIR, goal, machine, median, minilm_dir, run_child,
                    table, time_model, write_json)

CONFIGS = [("lightpipe", "float32"), ("transformers", "float32"),
           ("lightpipe", "bfloat16"), ("transformers", "bfloat16")]


def sentences(n: int, seed: int = 1234) -> list[str]:
    rng = random.Random(seed)
    texts = []
    for _ in range(n):
        words = [rng.choice(WORDS) for _ in range(rng.randint(5, 120))]
        words = [w + "," if rng.random() < 0.08 else w for w in words[:-1]] + words[-1:]
        texts.append(" ".join(words).capitalize() + ".")
    return texts


def maxrss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def sample_indices(lengths: list[int]) -> list[int]:
    """The first two texts, the shortest, the median and the longest."""
    order = sorted(range(len(lengths)), key=lengths.__getitem__)
    return sorted({0, 1, order[0], order[len(order) // 2], order[-1]})


def child(lib: str, dtype_name: str, n: int, batch_size: int, save: bool) -> dict:
    """Runs in a fresh process: one library, one dtype."""
    import numpy as np
    import torch

    if lib == "lightpipe":
        from lightpipe import pipeline
    else:
        from transformers import pipeline
    baseline = maxrss_mib()
    texts = sentences(n)
    dtype = getattr(torch, dtype_name)
    pipe = pipeline("feature-extraction", model=minilm_dir(), dtype=dtype, batch_size=batch_size)
    loaded = maxrss_mib()
    pipe(texts[:batch_size])  # warm-up: one batch
    start = time.perf_counter()
    outputs = pipe(texts)
    pipeline_s = time.perf_counter() - start
    peak = maxrss_mib()

    lengths = [len(ids) for ids in pipe.tokenizer(texts)["input_ids"]]
    if save:
        arrays = {str(i): np.asarray(outputs[i][0], dtype=np.float32) for i in sample_indices(lengths)}
        np.savez(OUT_DIR / f"fe_{lib}_{dtype_name}.npz", **arrays)
    del outputs

    # The model forward alone over length-sorted padded batches of the same texts.
    model = pipe.model
    order = sorted(range(n), key=lengths.__getitem__)
    batches = []
    for begin in range(0, n, batch_size):
        encoded = pipe.tokenizer([texts[i] for i in order[begin:begin + batch_size]],
                                 padding=True, return_tensors="pt")
        batches.append({k: encoded[k] for k in ("input_ids", "attention_mask", "token_type_ids")
                        if k in encoded})
    linear_params = sum(m.weight.numel() for name, m in model.named_modules()
                        if isinstance(m, torch.nn.Linear) and "encoder" in name)
    layers, hidden = model.config.num_hidden_layers, model.config.hidden_size
    flops = sum(rows * seq * (2 * linear_params + layers * 4 * seq * hidden)
                for rows, seq in (batch["input_ids"].shape for batch in batches))
    model_s = time_model(model, batches)
    return {"lib": lib, "dtype": dtype_name, "pipeline_s": pipeline_s, "model_s": model_s,
            "flops": flops, "linear_params": linear_params, "lengths": lengths,
            "rss_baseline_mib": baseline, "rss_loaded_mib": loaded, "rss_peak_mib": peak,
            "threads": torch.get_num_threads()}


def peak_child(sizes: tuple[int, ...] = (1024, 2048, 4096), runs: int = 5,
               budget: float = 2.0) -> dict:
    """Matmul peak per dtype: the best over square sizes of the median GFLOP/s of torch.mm.
    A size whose warm-up takes over ``budget`` seconds is timed once and ends that dtype's sizes
    (bfloat16 on a CPU without native bfloat16 runs at a few GFLOP/s: 4096^3 took minutes)."""
    import torch

    result: dict = {"threads": torch.get_num_threads()}
    for name in ("float32", "bfloat16"):
        measured = []
        for size in sizes:
            a, b = (torch.randn(size, size, dtype=getattr(torch, name)) for _ in range(2))
            times = []
            for _ in range(runs + 1):  # the first is a warm-up
                start = time.perf_counter()
                torch.mm(a, b)
                times.append(time.perf_counter() - start)
                if times[0] > budget and len(times) == 2:
                    break
            result[f"{name}_{size}"] = 2 * size ** 3 / median(times[1:]) / 1e9
            measured.append(size)
            if times[0] > budget:
                break
        result[name] = max(result[f"{name}_{size}"] for size in measured)
    return result


def padded_tokens(lengths: list[int], batch_size: int, sort: bool) -> int:
    lengths = sorted(lengths) if sort else lengths
    return sum(max(lengths[i:i + batch_size]) * len(lengths[i:i + batch_size])
               for i in range(0, len(lengths), batch_size))


def compare(a: str, b: str) -> float | None:
    """Max abs difference of the sample sentences' token vectors saved by two children."""
    import numpy as np

    try:
        left, right = np.load(OUT_DIR / f"fe_{a}.npz"), np.load(OUT_DIR / f"fe_{b}.npz")
    except OSError:
        return None
    diffs = []
    for key in left.files:  # compare each text's own tokens (a reference may return padding)
        tokens = min(left[key].shape[0], right[key].shape[0])
        diffs.append(float(abs(left[key][:tokens] - right[key][:tokens]).max()))
    return max(diffs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=2000, help="number of sentences (default 2000)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=3, help="interleaved runs of each child")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--dtype", default="float32", help=argparse.SUPPRESS)
    parser.add_argument("--save", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    OUT_DIR.mkdir(exist_ok=True)
    if args.child:  # this process is one measurement, run by the parent below
        print(json.dumps(peak_child() if args.child == "peak" else
                         child(args.child, args.dtype, args.n, args.batch_size, args.save)))
        return

    info = machine()  # at the start: the commit measured; the load average is taken again at the end
    for stale in OUT_DIR.glob("fe_*.npz"):
        stale.unlink()
    me = [sys.executable, str(Path(__file__).resolve())]
    common_args = ["--n", str(args.n), "--batch-size", str(args.batch_size)]
    peaks = []
    runs: dict[tuple, list[dict]] = {cfg: [] for cfg in CONFIGS}
    errors: dict[str, str] = {}
    for round_index in range(args.rounds):
        peaks.append(run_child(me + ["--child", "peak"]))  # once a round: the load varies
        for lib, dtype in CONFIGS:
            if f"{lib} {dtype}" in errors:
                continue
            argv = me + ["--child", lib, "--dtype", dtype] + common_args
            try:
                runs[(lib, dtype)].append(run_child(argv + (["--save"] if round_index == 0 else [])))
            except (RuntimeError, subprocess.TimeoutExpired) as error:
                errors[f"{lib} {dtype}"] = str(error).strip().splitlines()[-1]
            print(f"round {round_index + 1}/{args.rounds}: {lib} {dtype} done", file=sys.stderr)

    peak = {key: median([p[key] for p in peaks]) for key in peaks[0]}
    lengths = runs[("lightpipe", "float32")][0]["lengths"]
    tokens = sum(lengths)
    summary: dict[str, dict] = {}
    rows = []
    for (lib, dtype), results in runs.items():
        if not results:
            rows.append([lib, dtype] + ["failed"] + ["-"] * 8)
            continue
        def med(key, minus=None):
            return median([r[key] - (r[minus] if minus else 0) for r in results])

        seconds, model_s = med("pipeline_s"), med("model_s")
        gflops = results[0]["flops"] / model_s / 1e9
        entry = {"pipeline_s": seconds, "sentences_per_s": args.n / seconds,
                 "tokens_per_s": tokens / seconds, "model_s": model_s, "model_gflops": gflops,
                 "peak_fraction": gflops / peak[dtype], "rss_peak_mib": med("rss_peak_mib"),
                 "rss_rise_mib": med("rss_peak_mib", "rss_baseline_mib"),
                 "rss_loaded_rise_mib": med("rss_loaded_mib", "rss_baseline_mib"),
                 "runs": [{k: v for k, v in r.items() if k != "lengths"} for r in results]}
        summary[f"{lib} {dtype}"] = entry
        rows.append([lib, dtype, seconds, entry["sentences_per_s"], entry["tokens_per_s"], "",
                     entry["rss_peak_mib"], entry["rss_rise_mib"], model_s, gflops,
                     f"{100 * entry['peak_fraction']:.1f}%"])
    for row in rows:
        other = summary.get(f"transformers {row[1]}")
        if row[0] == "lightpipe" and f"lightpipe {row[1]}" in summary and other:
            speedup = summary[f"lightpipe {row[1]}"]["sentences_per_s"] / other["sentences_per_s"]
            summary[f"lightpipe {row[1]}"]["speedup_vs_transformers"] = speedup
            row[5] = f"{speedup:.2f}x"
    agreement = {f"{a} vs {b}": compare(a.replace(" ", "_"), b.replace(" ", "_")) for a, b in (
        ("lightpipe float32", "transformers float32"), ("lightpipe bfloat16", "lightpipe float32"),
        ("transformers bfloat16", "transformers float32"))}
    padding = {"real": tokens, "sorted_batches": padded_tokens(lengths, args.batch_size, True),
               "input_order_batches": padded_tokens(lengths, args.batch_size, False)}

    print(f"\nfeature-extraction, all-MiniLM-L6-v2, {args.n} sentences ({tokens} tokens, "
          f"{min(lengths)}-{max(lengths)} per text), batch_size={args.batch_size}, "
          f"median of {args.rounds} interleaved runs")
    print(table(rows, ["library", "dtype", "pipe s", "sent/s", "tok/s", "speedup", "peak MiB",
                       "rise MiB", "model s", "GFLOP/s", "of peak"]))
    print(f"\nmatmul peak (best square torch.mm of 1024-4096, {peak['threads']:.0f} threads): "
          f"float32 {peak['float32']:.0f} GFLOP/s, bfloat16 {peak['bfloat16']:.0f} GFLOP/s")
    print(f"tokens computed incl. padding: sorted batches {padding['sorted_batches']}, input-order "
          f"batches {padding['input_order_batches']} (real {tokens})")
    for name, value in agreement.items():
        print(f"max |diff| {name:<46} {'n/a' if value is None else f'{value:.2e}'}")
    for name, error in errors.items():
        print(f"FAILED {name}: {error}")
    speedup = summary.get("lightpipe float32", {}).get("speedup_vs_transformers", 0.0)
    print(f"\nlightpipe / transformers float32 throughput {speedup:.2f}x (goal >= 2x: {goal(speedup >= 2)})")
    path = write_json("feature_extraction.json", {
        "machine": info, "load_average_end": machine()["load_average_1_5_15min"], "n": args.n, "batch_size": args.batch_size, "rounds": args.rounds,
        "tokens": padding, "matmul_peak_gflops": peak, "matmul_peak_runs": peaks, "results": summary,
        "max_abs_diff": agreement, "errors": errors, "goal_speedup>=2x": speedup >= 2})
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
