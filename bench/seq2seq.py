"""Encoder-decoder beam search speed: lightpipe vs transformers on a t5-small-sized model.

A random T5 of t5-small's shape (d_model 512, 6 + 6 layers, 8 heads, d_ff 2048, relu,
32,128-token vocabulary, tied head; 60 M parameters) built by transformers at run time (float32
safetensors). Each (library, batch) runs in a fresh child process with 2 torch threads: load,
warm up with one short generate(), then time ``generate(source, num_beams=4, max_new_tokens=64,
min_new_tokens=64)`` three times (median) on seeded 32-token sources (min_new_tokens bans EOS, so every run decodes
all 64 steps). Rounds are interleaved; medians and their ratio are reported, and the output
token ids of the two libraries compared.

Goal (issue 7): >= 1.5x transformers' throughput at batch 1 and batch 8.

    python bench/seq2seq.py [--rounds 5]
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

LIBS = ("lightpipe", "transformers")
BATCHES = (1, 8)
SOURCE_LENGTH = 32
NEW_TOKENS = 64
BEAMS = 4
THREADS = 2
REPEATS = 3  # timed generate() calls per child (median taken): the machine is shared

BUILD = """
import sys, torch, transformers
torch.manual_seed(0)
config = transformers.T5Config(d_model=512, d_kv=64, d_ff=2048, num_layers=6, num_heads=8,
                               vocab_size=32128, feed_forward_proj="relu", decoder_start_token_id=0)
transformers.T5ForConditionalGeneration(config).save_pretrained(sys.argv[1])
"""


def child(lib: str, folder: str, batch: int) -> dict:
    """Runs in a fresh process: one library and batch size."""
    import torch

    torch.set_num_threads(THREADS)
    if lib == "lightpipe":
        from lightpipe import AutoModelForSeq2SeqLM
    else:
        from transformers import AutoModelForSeq2SeqLM
    model = AutoModelForSeq2SeqLM.from_pretrained(folder).eval()
    source = torch.randint(100, 32000, (batch, SOURCE_LENGTH),
                           generator=torch.Generator().manual_seed(batch))
    mask = torch.ones_like(source)
    options = dict(num_beams=BEAMS, max_new_tokens=NEW_TOKENS, min_new_tokens=NEW_TOKENS)
    times = []
    with torch.inference_mode():
        model.generate(input_ids=source, attention_mask=mask, num_beams=BEAMS, max_new_tokens=4,
                       min_new_tokens=4)  # warm-up
        for _ in range(REPEATS):
            start = time.perf_counter()
            output = model.generate(input_ids=source, attention_mask=mask, **options)
            times.append(time.perf_counter() - start)
    assert output.shape == (batch, 1 + NEW_TOKENS), output.shape
    seconds = median(times)
    return {"lib": lib, "seconds": seconds, "tokens_per_s": batch * NEW_TOKENS / seconds,
            "all_seconds": times, "threads": torch.get_num_threads(), "tokens": output.tolist()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5, help="interleaved runs of each child")
    parser.add_argument("--model", default=None, help="a T5 folder (default: built in a "
                                                      "temporary folder)")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--batch", type=int, default=1, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:  # this process is one measurement, run by the parent below
        print(json.dumps(child(args.child, args.model, args.batch)))
        return

    info = machine()
    temporary = None
    folder = args.model
    if folder is None:
        temporary = tempfile.TemporaryDirectory()
        folder = temporary.name + "/t5-small-random"
        subprocess.run([sys.executable, "-c", BUILD, folder], check=True, env=CHILD_ENV,
                       capture_output=True)
    me = [sys.executable, str(Path(__file__).resolve())]
    runs: dict[tuple, list[dict]] = {(lib, batch): [] for lib in LIBS for batch in BATCHES}
    for round_index in range(args.rounds):
        for batch in BATCHES:
            for lib in (LIBS if round_index % 2 == 0 else LIBS[::-1]):
                argv = me + ["--child", lib, "--model", folder, "--batch", str(batch)]
                runs[(lib, batch)].append(run_child(argv))
        print(f"round {round_index + 1}/{args.rounds} done", file=sys.stderr)

    summary, rows, goals = {}, [], {}
    for batch in BATCHES:
        ours, theirs = runs[("lightpipe", batch)], runs[("transformers", batch)]
        ours_tps = median([r["tokens_per_s"] for r in ours])
        theirs_tps = median([r["tokens_per_s"] for r in theirs])
        same = ours[0]["tokens"] == theirs[0]["tokens"]
        summary[f"batch {batch}"] = {
            "lightpipe_tokens_per_s": ours_tps, "transformers_tokens_per_s": theirs_tps,
            "speedup": ours_tps / theirs_tps, "same_tokens_as_transformers": same,
            "lightpipe_seconds": [r["seconds"] for r in ours],
            "transformers_seconds": [r["seconds"] for r in theirs]}
        best = min(t for r in theirs for t in r["all_seconds"]) / \
            min(t for r in ours for t in r["all_seconds"])
        summary[f"batch {batch}"]["speedup_best_of_all_runs"] = best
        rows.append([batch, median([r["seconds"] for r in ours]),
                     median([r["seconds"] for r in theirs]), ours_tps, theirs_tps,
                     f"{ours_tps / theirs_tps:.2f}x", f"{best:.2f}x", "yes" if same else "NO"])
        goals[f"batch {batch}: beam search >= 1.5x transformers"] = ours_tps / theirs_tps >= 1.5
    print(f"\nT5 (t5-small shape, random), generate(num_beams={BEAMS}, {NEW_TOKENS} new tokens) "
          f"from {SOURCE_LENGTH}-token sources, median of {args.rounds} interleaved runs, "
          f"{THREADS} torch threads, {info['cores']} cores, load {info['load_average_1_5_15min']}")
    print(table(rows, ["batch", "lightpipe s", "transformers s", "lightpipe tok/s",
                       "transformers tok/s", "speedup", "best vs best", "same tokens"]))
    print()
    for name, met in goals.items():
        print(f"{goal(met):<7} {name}")
    path = write_json("seq2seq.json", {
        "machine": info, "load_average_end": machine()["load_average_1_5_15min"],
        "rounds": args.rounds, "threads": THREADS, "beams": BEAMS, "new_tokens": NEW_TOKENS,
        "source_length": SOURCE_LENGTH, "results": summary, "goals": goals})
    print(f"wrote {path}")
    if temporary is not None:
        temporary.cleanup()


if __name__ == "__main__":
    main()
