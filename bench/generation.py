"""Greedy generation speed: lightpipe vs transformers, GPT-2 small and a Llama of that size.

Two random checkpoints built by transformers at run time (float32 safetensors): a GPT-2 of
GPT-2 small's shape (12 layers, 768 wide, 50,257-token vocabulary, tied embeddings; 124 M
parameters, 498 MB) and a Llama of similar size (12 layers, 768 wide, 12 query / 4 key-value
heads, SwiGLU 2048, 32,000-token vocabulary, untied; 125 M parameters, 499 MB). Each
(library, model, dtype, batch) runs in a fresh child process: load, warm up with one short
generate(), then time ``generate(prompt, max_new_tokens=128, min_new_tokens=128,
do_sample=False)`` from seeded 16-token prompts (min_new_tokens makes every run produce all
128 tokens). Rounds are interleaved and medians reported; the children of a round also
measure this machine's memory bandwidth (a 1 GiB copy: bytes read + written per second; and
a 1 GiB sum: bytes read per second). The bandwidth floor of one decoding step is the weights'
bytes (an untied input embedding not counted: a step reads one row of it) over the copy
bandwidth; at batch 1 a step cannot be faster than reading the weights once. The token ids are compared: lightpipe's against transformers' in the same dtype.

Goals (issue 5): batch 8 float32 >= 1.5x transformers; batch 1 float32 >= 90% of the bandwidth
floor; bfloat16 both batch sizes >= 1.8x transformers float32, greedy outputs equal to
transformers bfloat16.

    python bench/generation.py [--rounds 3] [--new-tokens 128]      (--rounds 1: ~10 min)
    python bench/generation.py --models-to-run llama,qwen3,phi3,gemma2,gemma3_text,gpt_neox \
        --dtypes float32 --batches 1     # issue 17: the new decoders' share of the floor
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import CHILD_ENV, goal, machine, median, run_child, table, write_json

MODELS = ("gpt2", "llama")
FAMILIES = ("gpt2", "llama", "qwen3", "phi3", "gemma2", "gemma3_text", "gpt_neox")
LIBS = ("lightpipe", "transformers")
PROMPT_LENGTH = 16

BUILD = """
import sys, torch, transformers
torch.manual_seed(0)
common = dict(hidden_size=768, num_hidden_layers=12, num_attention_heads=12, num_key_value_heads=4,
              intermediate_size=2048, vocab_size=32000, max_position_embeddings=2048)
configs = {
    "gpt2": transformers.GPT2Config(n_embd=768, n_layer=12, n_head=12, vocab_size=50257, n_positions=1024),
    "llama": transformers.LlamaConfig(**common),
    # the families issue 17 added, at the same size (head_dim 64)
    "qwen3": transformers.Qwen3Config(**common, head_dim=64, tie_word_embeddings=False),
    "phi3": transformers.Phi3Config(**common, pad_token_id=0, bos_token_id=1, eos_token_id=2),
    "gemma2": transformers.Gemma2Config(**common, head_dim=64, query_pre_attn_scalar=64,
                                        sliding_window=1024),
    "gemma3_text": transformers.Gemma3TextConfig(**common, head_dim=64, query_pre_attn_scalar=64,
                                                 sliding_window=1024),
    "gpt_neox": transformers.GPTNeoXConfig(hidden_size=768, num_hidden_layers=12,
                                           num_attention_heads=12, intermediate_size=3072,
                                           vocab_size=32000, max_position_embeddings=2048),
}
for name in sys.argv[2].split(","):
    transformers.AutoModelForCausalLM.from_config(configs[name]).save_pretrained(sys.argv[1] + "/" + name)
"""


def child(lib: str, folder: str, dtype_name: str, batch: int, new_tokens: int,
          threads: int | None) -> dict:
    """Runs in a fresh process: one library, model, dtype and batch size."""
    import torch

    if threads:
        torch.set_num_threads(threads)

    if lib == "lightpipe":
        from lightpipe import AutoModelForCausalLM
    else:
        from transformers import AutoModelForCausalLM
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=getattr(torch, dtype_name)).eval()
    weights = sum(p.numel() * p.element_size() for p in {id(p): p for p in model.parameters()}.values())
    # bytes a step reads: an untied input embedding contributes one row, not the matrix
    embedding = model.get_input_embeddings().weight
    head = getattr(model, "lm_head", None) or getattr(model, "embed_out", None)  # (GPT-NeoX)
    if head is not None and head.weight is not embedding:
        weights -= embedding.numel() * embedding.element_size()
    vocab = model.config.vocab_size
    prompt = torch.randint(100, vocab - 100, (batch, PROMPT_LENGTH),
                           generator=torch.Generator().manual_seed(batch))
    options = dict(do_sample=False, max_new_tokens=new_tokens, min_new_tokens=new_tokens)
    with torch.inference_mode():
        model.generate(prompt, **{**options, "max_new_tokens": 8, "min_new_tokens": 8})  # warm-up
        start = time.perf_counter()
        output = model.generate(prompt, **options)
        seconds = time.perf_counter() - start
    assert output.shape == (batch, PROMPT_LENGTH + new_tokens), output.shape
    result = {"lib": lib, "seconds": seconds, "tokens_per_s": batch * new_tokens / seconds,
              "weights_bytes": weights, "threads": torch.get_num_threads(),
              "tokens": output[:, PROMPT_LENGTH:].tolist()}
    if lib == "lightpipe":
        result["products_ms"] = products_ms(model, batch)
    return result


def products_ms(model, batch: int, repeats: int = 20) -> float | None:
    """Milliseconds one decoding step spends in its matrix products alone: every linear layer
    of the model, in the order a step runs them (their registration order), from the packed
    weights generate() made, back to back on (batch, 1, in) inputs. Median of ``repeats``."""
    import torch

    from lightpipe.models.linear import _ONEDNN_LINEAR, PackableLinear

    layers = [m for m in model.modules() if isinstance(m, PackableLinear)]
    if _ONEDNN_LINEAR is None or any(m.packed_weight() is None for m in layers):
        return None
    work = [(torch.randn(batch, 1, m.dense_weight().shape[1], dtype=m.weight.dtype),
             m.packed_weight(), m.bias) for m in layers]
    times = []
    with torch.inference_mode():
        for _ in range(repeats):
            start = time.perf_counter()
            for inputs, packed, bias in work:
                _ONEDNN_LINEAR(inputs, packed, bias, "none", [], "")
            times.append(time.perf_counter() - start)
    return 1e3 * median(times)


def bandwidth_child(threads: int | None, gib: float = 1.0, runs: int = 7) -> dict:
    """Memory bandwidth: a copy (bytes read + written / s) and a sum (bytes read / s)."""
    import torch

    if threads:
        torch.set_num_threads(threads)

    count = int(gib * (1 << 30)) // 4
    source, target = torch.ones(count), torch.empty(count)
    target.copy_(source)
    result = {"threads": torch.get_num_threads()}
    for name, work, moved in (("copy", lambda: target.copy_(source), 2 * count * 4),
                              ("read", lambda: source.sum(), count * 4)):
        times = []
        for _ in range(runs):
            start = time.perf_counter()
            work()
            times.append(time.perf_counter() - start)
        result[f"{name}_gb_s"] = moved / median(times) / 1e9
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3, help="interleaved runs of each child")
    parser.add_argument("--new-tokens", type=int, default=128)
    parser.add_argument("--models", default=None, help="a folder holding gpt2/ and llama/ "
                                                       "(default: built in a temporary folder)")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch threads in every child (default: torch's, one per core)")
    parser.add_argument("--models-to-run", default=",".join(MODELS),
                        help=f"comma-separated, of {', '.join(FAMILIES)}")
    parser.add_argument("--dtypes", default="float32,bfloat16")
    parser.add_argument("--batches", default="1,8")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--folder", help=argparse.SUPPRESS)
    parser.add_argument("--dtype", default="float32", help=argparse.SUPPRESS)
    parser.add_argument("--batch", type=int, default=1, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:  # this process is one measurement, run by the parent below
        print(json.dumps(bandwidth_child(args.threads) if args.child == "bandwidth" else
                         child(args.child, args.folder, args.dtype, args.batch, args.new_tokens,
                               args.threads)))
        return

    models = args.models_to_run.split(",")
    cases = [(model, dtype, int(batch)) for model in models for dtype in args.dtypes.split(",")
             for batch in args.batches.split(",")]
    info = machine()
    temporary = None
    root = args.models
    if root is None:
        temporary = tempfile.TemporaryDirectory()
        root = temporary.name
        subprocess.run([sys.executable, "-c", BUILD, root, ",".join(models)], check=True,
                       env=CHILD_ENV, capture_output=True)
    me = [sys.executable, str(Path(__file__).resolve())]
    if args.threads:
        me += ["--threads", str(args.threads)]
    bandwidths = []
    runs: dict[tuple, list[dict]] = {(lib, *case): [] for case in cases for lib in LIBS}
    for round_index in range(args.rounds):
        bandwidths.append(run_child(me + ["--child", "bandwidth"]))
        for model, dtype, batch in cases:
            for lib in LIBS:
                argv = me + ["--child", lib, "--folder", f"{root}/{model}", "--dtype", dtype,
                             "--batch", str(batch), "--new-tokens", str(args.new_tokens)]
                runs[(lib, model, dtype, batch)].append(run_child(argv))
            print(f"round {round_index + 1}/{args.rounds}: {model} {dtype} batch {batch} done",
                  file=sys.stderr)
        bandwidths.append(run_child(me + ["--child", "bandwidth"]))

    copy_bw = median([b["copy_gb_s"] for b in bandwidths])
    read_bw = median([b["read_gb_s"] for b in bandwidths])
    summary: dict[str, dict] = {}
    rows = []
    for model, dtype, batch in cases:
        ours, theirs = runs[("lightpipe", model, dtype, batch)], runs[("transformers", model, dtype, batch)]
        ours_tps = median([r["tokens_per_s"] for r in ours])
        theirs_tps = median([r["tokens_per_s"] for r in theirs])
        f32 = runs.get(("transformers", model, "float32", batch)) or theirs
        reference_f32 = median([r["tokens_per_s"] for r in f32])
        weights = ours[0]["weights_bytes"]
        floor_tps = batch * copy_bw * 1e9 / weights  # tokens/s if a step only read the weights
        same = ours[0]["tokens"] == theirs[0]["tokens"]
        products = [r["products_ms"] for r in ours if r.get("products_ms")]
        products = median(products) if products else None
        entry = {"lightpipe_tokens_per_s": ours_tps, "transformers_tokens_per_s": theirs_tps,
                 "speedup": ours_tps / theirs_tps, "speedup_vs_transformers_float32": ours_tps / reference_f32,
                 "weights_bytes": weights, "bandwidth_floor_tokens_per_s": floor_tps,
                 "of_floor": ours_tps / floor_tps, "transformers_of_floor": theirs_tps / floor_tps,
                 # the step's matrix products alone, and the share of the floor they would
                 # reach if nothing else ran (an upper bound for "of_floor")
                 "products_ms": products,
                 "products_of_floor": (1e3 * weights / (copy_bw * 1e9) / products) if products else None,
                 "same_tokens_as_transformers": same,
                 "runs": {lib: [{k: v for k, v in r.items() if k != "tokens"} for r in results]
                          for lib, results in (("lightpipe", ours), ("transformers", theirs))}}
        summary[f"{model} {dtype} batch {batch}"] = entry
        rows.append([model, dtype, batch, ours_tps, theirs_tps, f"{entry['speedup']:.2f}x",
                     f"{entry['speedup_vs_transformers_float32']:.2f}x", floor_tps,
                     f"{100 * entry['of_floor']:.0f}%", "yes" if same else "NO"])

    threads = runs[("lightpipe", *cases[0])][0]["threads"]
    print(f"\ngreedy generate(), {args.new_tokens} new tokens from {PROMPT_LENGTH}-token prompts, "
          f"median of {args.rounds} interleaved runs, {info['cores']} cores, {threads} torch threads")
    print(table(rows, ["model", "dtype", "batch", "lightpipe tok/s", "transformers tok/s",
                       "speedup", "vs tf fp32", "floor tok/s", "of floor", "same tokens"]))
    print("\nthe matrix products alone (lightpipe's packed weights, back to back), per step:")
    for key, entry in summary.items():
        if entry["products_ms"]:
            print(f"  {key}: {entry['products_ms']:.2f} ms = {100 * entry['products_of_floor']:.0f}% "
                  f"of the floor if nothing else ran (measured: {100 * entry['of_floor']:.0f}%)")
    print(f"\nmemory bandwidth ({bandwidths[0]['threads']} threads): copy {copy_bw:.1f} GB/s "
          f"(read + written), read {read_bw:.1f} GB/s; floor = weights bytes / copy bandwidth")

    goals = {}
    for model in models:
        key = f"{model} float32 batch"
        if f"{key} 8" in summary:
            goals[f"{model}: batch 8 float32 >= 1.5x transformers"] = summary[f"{key} 8"]["speedup"] >= 1.5
        if f"{key} 1" in summary:
            goals[f"{model}: batch 1 float32 >= 90% of the bandwidth floor"] = \
                summary[f"{key} 1"]["of_floor"] >= 0.9
        for batch in (1, 8):
            entry = summary.get(f"{model} bfloat16 batch {batch}")
            if entry is None:
                continue
            goals[f"{model}: bfloat16 batch {batch} >= 1.8x transformers float32"] = \
                entry["speedup_vs_transformers_float32"] >= 1.8
            goals[f"{model}: bfloat16 batch {batch} greedy tokens = transformers bfloat16"] = \
                entry["same_tokens_as_transformers"]
    print()
    for name, met in goals.items():
        print(f"{goal(met):<7} {name}")
    path = write_json(f"generation_{threads}threads.json", {
        "machine": info, "load_average_end": machine()["load_average_1_5_15min"],
        "rounds": args.rounds, "new_tokens": args.new_tokens, "prompt_length": PROMPT_LENGTH,
        "threads": threads,
        "bandwidth_runs": bandwidths, "copy_gb_s": copy_bw, "read_gb_s": read_bw,
        "results": summary, "goals": goals})
    print(f"wrote {path}")
    if temporary is not None:
        temporary.cleanup()


if __name__ == "__main__":
    main()
