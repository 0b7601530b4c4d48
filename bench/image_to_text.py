"""Image captioning speed: lightpipe vs transformers on a vit-gpt2-sized VisionEncoderDecoder.

A random model of nlpconnect/vit-gpt2-image-captioning's shape (ViT-base encoder: 768 wide,
12 layers, 224x224 images in 16x16 patches; GPT-2 small decoder with cross-attention: 768
wide, 12 layers, 50,257-token vocabulary, tied head; ~240 M parameters) built by transformers
at run time (float32 safetensors). Each (library, batch, search) runs in a fresh child process
with 2 torch threads: load, warm up with one short generate(), then time
``generate(pixel_values, max_new_tokens=16, min_new_tokens=16[, num_beams=4])`` three times
(median) on seeded random pixels (min_new_tokens bans the end token, so every run decodes all 16
steps: the model card's settings, max_length 16 and 4 beams). Rounds are interleaved; medians
and their ratio are reported, and the output token ids of the two libraries compared.

    python bench/image_to_text.py [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import CHILD_ENV, machine, median, run_child, table, write_json

LIBS = ("lightpipe", "transformers")
SETTINGS = ((1, 1), (1, 4), (8, 1))  # (batch, beams)
NEW_TOKENS = 16
THREADS = 2
REPEATS = 3

BUILD = """
import sys, torch, transformers
torch.manual_seed(0)
encoder = transformers.ViTConfig()
decoder = transformers.GPT2Config(is_decoder=True, add_cross_attention=True)
config = transformers.VisionEncoderDecoderConfig.from_encoder_decoder_configs(
    encoder, decoder, decoder_start_token_id=50256, pad_token_id=50256)
transformers.VisionEncoderDecoderModel(config=config).eval().save_pretrained(sys.argv[1])
"""


def child(lib: str, folder: str, batch: int, beams: int) -> dict:
    """Runs in a fresh process: one library, batch size and search."""
    import torch

    torch.set_num_threads(THREADS)
    if lib == "lightpipe":
        from lightpipe import AutoModelForVision2Seq as Model
    else:
        from transformers import VisionEncoderDecoderModel as Model
    model = Model.from_pretrained(folder).eval()
    pixels = torch.randn(batch, 3, 224, 224, generator=torch.Generator().manual_seed(batch))
    options = dict(num_beams=beams, max_new_tokens=NEW_TOKENS, min_new_tokens=NEW_TOKENS)
    times = []
    with torch.inference_mode():
        model.generate(pixels, num_beams=beams, max_new_tokens=2, min_new_tokens=2)  # warm-up
        for _ in range(REPEATS):
            start = time.perf_counter()
            output = model.generate(pixels, **options)
            times.append(time.perf_counter() - start)
    assert output.shape == (batch, 1 + NEW_TOKENS), output.shape
    seconds = median(times)
    return {"lib": lib, "seconds": seconds, "images_per_s": batch / seconds, "all_seconds": times,
            "threads": torch.get_num_threads(), "tokens": output.tolist()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3, help="interleaved runs of each child")
    parser.add_argument("--model", default=None, help="a vision-encoder-decoder folder "
                                                      "(default: built in a temporary folder)")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--batch", type=int, default=1, help=argparse.SUPPRESS)
    parser.add_argument("--beams", type=int, default=1, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:  # this process is one measurement, run by the parent below
        print(json.dumps(child(args.child, args.model, args.batch, args.beams)))
        return

    info = machine()
    temporary = None
    folder = args.model
    if folder is None:
        temporary = tempfile.TemporaryDirectory()
        folder = temporary.name + "/vit-gpt2-random"
        subprocess.run([sys.executable, "-c", BUILD, folder], check=True, env=CHILD_ENV,
                       capture_output=True)
    me = [sys.executable, str(Path(__file__).resolve())]
    runs: dict[tuple, list[dict]] = {(lib, *s): [] for lib in LIBS for s in SETTINGS}
    for round_index in range(args.rounds):
        for batch, beams in SETTINGS:
            for lib in (LIBS if round_index % 2 == 0 else LIBS[::-1]):
                argv = me + ["--child", lib, "--model", folder, "--batch", str(batch),
                             "--beams", str(beams)]
                runs[(lib, batch, beams)].append(run_child(argv))
        print(f"round {round_index + 1}/{args.rounds} done", file=sys.stderr)

    summary, rows = {}, []
    for batch, beams in SETTINGS:
        ours, theirs = runs[("lightpipe", batch, beams)], runs[("transformers", batch, beams)]
        ours_s = median([r["seconds"] for r in ours])
        theirs_s = median([r["seconds"] for r in theirs])
        same = ours[0]["tokens"] == theirs[0]["tokens"]
        # the machine is shared: the best of all timed calls shows each library unhindered
        best = min(t for r in theirs for t in r["all_seconds"]) / \
            min(t for r in ours for t in r["all_seconds"])
        summary[f"batch {batch}, beams {beams}"] = {
            "lightpipe_seconds": [r["all_seconds"] for r in ours],
            "transformers_seconds": [r["all_seconds"] for r in theirs],
            "speedup": theirs_s / ours_s, "speedup_best_of_all_calls": best,
            "same_tokens_as_transformers": same}
        rows.append([batch, beams, ours_s, theirs_s, batch / ours_s, batch / theirs_s,
                     f"{theirs_s / ours_s:.2f}x", f"{best:.2f}x", "yes" if same else "NO"])
    print(f"\nVisionEncoderDecoder (vit-gpt2 shape, random), generate({NEW_TOKENS} new tokens), "
          f"median of {args.rounds} interleaved runs, {THREADS} torch threads, {info['cores']} "
          f"cores, load {info['load_average_1_5_15min']}")
    print(table(rows, ["batch", "beams", "lightpipe s", "transformers s", "lightpipe img/s",
                       "transformers img/s", "speedup", "best vs best", "same tokens"]))
    path = write_json("image_to_text.json", {
        "machine": info, "load_average_end": machine()["load_average_1_5_15min"],
        "rounds": args.rounds, "threads": THREADS, "new_tokens": NEW_TOKENS, "results": summary})
    print(f"wrote {path}")
    if temporary is not None:
        temporary.cleanup()


if __name__ == "__main__":
    main()
