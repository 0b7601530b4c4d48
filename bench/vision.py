"""image-classification throughput, preprocessing included: lightpipe vs transformers.

The model is a ViT-base-sized random ViTForImageClassification (hidden 768, 12 layers, 12 heads,
patch 16, 224x224, 1000 labels) saved by transformers with its image processor (the PIL
backend: transformers 5 falls back to it when torchvision is absent, as here). The images are N
seeded 640x480 JPEG files (smooth random content) written to a temporary folder.

Each (library, round) runs in a fresh child process with torch.set_num_threads(2): it builds
`pipeline("image-classification", model=folder)`, warms up on one batch, then times
`pipe(paths, batch_size=16)` (file reading, JPEG decoding, resize, rescale, normalise, model,
postprocess), in wall time and in the process's CPU time (all threads; less sensitive to the
other processes on a shared machine). It also times the preprocessing alone (lightpipe: `preprocess_many`, which
decodes, resizes and crops to uint8 arrays, plus stacking and normalising each batch of 16;
transformers: its per-image `preprocess`, which returns normalised float tensors) and the
model forward alone on one batch of 16. Rounds are interleaved; medians are reported, with
each round's ratio. Top-1 labels and scores of the first round are compared between the
libraries. The machine is shared and noisy (the 1-minute load average is recorded).

Goal: lightpipe throughput (median) >= 1.5x transformers'.

    python bench/vision.py [--n 256] [--rounds 2]
    python bench/vision.py --n 32 --rounds 1                      (smoke run)
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

from common import CHILD_ENV, goal, machine, median, run_child, table, write_json

BATCH = 16

BUILD = r"""
import sys, numpy as np, torch, transformers
from PIL import Image
folder, n = sys.argv[1], int(sys.argv[2])
torch.manual_seed(0)
config = transformers.ViTConfig(hidden_size=768, num_hidden_layers=12, num_attention_heads=12,
                                intermediate_size=3072, patch_size=16, image_size=224, num_labels=1000)
model = transformers.ViTForImageClassification(config).eval()
with torch.no_grad():
    model.classifier.weight.normal_(0.0, 0.5)
model.save_pretrained(folder)
transformers.ViTImageProcessorPil().save_pretrained(folder)
rng = np.random.default_rng(0)
for i in range(n):
    small = rng.integers(0, 256, (30, 40, 3), dtype=np.uint8)
    Image.fromarray(small).resize((640, 480), Image.BICUBIC).save(f"{folder}/img_{i:04d}.jpg", quality=90)
"""

CHILD = r"""
import json, os, sys, time
import torch
torch.set_num_threads(2)
library, folder, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
paths = [f"{folder}/img_{i:04d}.jpg" for i in range(n)]
if library == "lightpipe":
    import lightpipe as lib
else:
    import transformers as lib
    lib.logging.set_verbosity_error()
pipe = lib.pipeline("image-classification", model=folder)
load = os.getloadavg()[0]
pipe(paths[:16], batch_size=16)  # warm-up
start, cpu_start = time.perf_counter(), time.process_time()
results = pipe(paths, batch_size=16)
total, cpu = time.perf_counter() - start, time.process_time() - cpu_start
start = time.perf_counter()
if library == "lightpipe":
    pieces = pipe.preprocess_many(paths)
    for first in range(0, n, 16):
        batch, _ = pipe.collate(pieces[first:first + 16])
        pipe.normalized(batch)
else:
    pieces = [pipe.preprocess(p) for p in paths]
preprocess = time.perf_counter() - start
pixels = torch.randn(16, 3, 224, 224)
with torch.inference_mode():
    pipe.model(pixel_values=pixels)
    start = time.perf_counter()
    pipe.model(pixel_values=pixels)
    forward16 = time.perf_counter() - start
top = [[r[0]["label"], r[0]["score"]] for r in results]
print(json.dumps({"library": library, "seconds": total, "images_per_s": n / total,
                  "cpu_ms_per_image": 1000 * cpu / n,
                  "preprocess_ms_per_image": 1000 * preprocess / n,
                  "forward_ms_per_image": 1000 * forward16 / 16, "load_1min": load, "top1": top}))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=256)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="lightpipe_vision_bench_") as folder:
        import subprocess

        subprocess.run([sys.executable, "-c", BUILD, folder, str(args.n)], check=True,
                       env=CHILD_ENV, capture_output=True)
        runs: dict[str, list[dict]] = {"lightpipe": [], "transformers": []}
        for round_index in range(args.rounds):
            order = ["lightpipe", "transformers"] if round_index % 2 == 0 else ["transformers", "lightpipe"]
            for library in order:
                result = run_child([sys.executable, "-c", CHILD, library, folder, str(args.n)])
                runs[library].append(result)
                print(f"round {round_index + 1} {library}: {result['images_per_s']:.2f} img/s "
                      f"(preprocess {result['preprocess_ms_per_image']:.2f} ms/img, forward "
                      f"{result['forward_ms_per_image']:.1f} ms/img, load {result['load_1min']:.1f})",
                      flush=True)
    ours, theirs = runs["lightpipe"], runs["transformers"]
    same_top1 = sum(a[0] == b[0] for a, b in zip(ours[0]["top1"], theirs[0]["top1"]))
    max_score_diff = max(abs(a[1] - b[1]) for a, b in zip(ours[0]["top1"], theirs[0]["top1"]))
    summary = {}
    for key in ("images_per_s", "cpu_ms_per_image", "preprocess_ms_per_image", "forward_ms_per_image"):
        summary[key] = {"lightpipe": median([r[key] for r in ours]),
                        "transformers": median([r[key] for r in theirs])}
    ratio = summary["images_per_s"]["lightpipe"] / summary["images_per_s"]["transformers"]
    pre_ratio = (summary["preprocess_ms_per_image"]["transformers"]
                 / summary["preprocess_ms_per_image"]["lightpipe"])
    per_round = [a["images_per_s"] / b["images_per_s"] for a, b in zip(ours, theirs)]
    cpu_ratio = summary["cpu_ms_per_image"]["transformers"] / summary["cpu_ms_per_image"]["lightpipe"]
    rows = [[name, summary["images_per_s"][name], summary["cpu_ms_per_image"][name],
             summary["preprocess_ms_per_image"][name], summary["forward_ms_per_image"][name]]
            for name in ("lightpipe", "transformers")]
    print(table(rows, ["library", "img/s (median)", "CPU ms/img", "preprocess ms/img",
                       "forward ms/img"]))
    print(f"throughput ratio lightpipe/transformers: {ratio:.2f}x (rounds: "
          f"{', '.join(f'{r:.2f}' for r in per_round)}); goal >= 1.5x: {goal(ratio >= 1.5)}")
    print(f"CPU time per image (less sensitive to other processes): {cpu_ratio:.2f}x less")
    print(f"preprocessing alone: {pre_ratio:.2f}x faster; top-1 labels equal on "
          f"{same_top1}/{args.n} images, largest top-1 score difference {max_score_diff:.2e}")
    for runs_of in runs.values():
        for run in runs_of:
            run.pop("top1")
    path = write_json("vision.json", {"machine": machine(), "n": args.n, "batch_size": BATCH,
                                      "threads": 2, "summary": summary, "ratio": ratio,
                                      "ratio_per_round": per_round, "cpu_ratio": cpu_ratio,
                                      "preprocess_ratio": pre_ratio,
                                      "same_top1": same_top1, "max_top1_score_diff": max_score_diff,
                                      "runs": runs})
    print(f"wrote {path}")


if __name__ == "__main__":
    os.chdir(Path(__file__).resolve().parent)
    main()
