"""depth-estimation and image-segmentation throughput, preprocessing included: lightpipe vs
transformers.

Models (random weights at real sizes, saved by transformers with their PIL image processors):
  depth:    DPTForDepthEstimation with DPT's default config (ViT-base: hidden 768, 12 layers,
            384x384 input, neck 96-768, fusion 256) - Intel/dpt-large's layout at base width;
  segment:  SegformerForSemanticSegmentation b0 (hidden sizes 32-256, 512x512, 150 labels),
            nvidia/segformer-b0-finetuned-ade-512-512's shape.
Images: N seeded 640x480 JPEG files (smooth random content).

Each (library, task, round) runs in a fresh child with torch.set_num_threads(2): it builds the
pipeline from the folder, warms up on one image, then times `pipe(paths, batch_size=B)` (file
reading, decoding, resize, normalise, model, upsampling to the original size, PIL outputs) in
wall time and process CPU time. Rounds are interleaved; medians and the ratio are printed. The
first round's outputs are compared (depth: max abs difference; segments: labels equal). The
machine is shared and noisy: the load average is recorded.

    python bench/dense.py [--n 16] [--rounds 2] [--batch 4]
"""

from __future__ import annotations

import argparse
import sys
import tempfile

from common import machine, median, run_child, table, write_json

BUILD = r"""
import sys, numpy as np, torch, transformers
from PIL import Image
root, n = sys.argv[1], int(sys.argv[2])
torch.manual_seed(0)
depth = transformers.DPTForDepthEstimation(transformers.DPTConfig()).eval()
with torch.no_grad():
    depth.head.head[4].bias.fill_(0.5)
depth.save_pretrained(f"{root}/depth")
transformers.DPTImageProcessorPil().save_pretrained(f"{root}/depth")
config = transformers.SegformerConfig(num_labels=150)
transformers.SegformerForSemanticSegmentation(config).eval().save_pretrained(f"{root}/segment")
transformers.SegformerImageProcessorPil().save_pretrained(f"{root}/segment")
rng = np.random.default_rng(0)
for i in range(n):
    small = rng.integers(0, 256, (30, 40, 3), dtype=np.uint8)
    Image.fromarray(small).resize((640, 480), Image.BICUBIC).save(f"{root}/img_{i:04d}.jpg", quality=90)
"""

CHILD = r"""
import json, sys, time
import torch
torch.set_num_threads(2)
library, task, folder, n, batch = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
root = folder.rsplit("/", 1)[0]
paths = [f"{root}/img_{i:04d}.jpg" for i in range(n)]
if library == "lightpipe":
    import lightpipe as lib
else:
    import transformers as lib
name = "depth-estimation" if task == "depth" else "image-segmentation"
pipe = lib.pipeline(name, model=folder)
pipe(paths[:1])
wall, cpu = time.perf_counter(), time.process_time()
out = pipe(paths, batch_size=batch)
wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
if task == "depth":
    summary = [o["predicted_depth"].flatten()[:64].tolist() for o in out[:2]]
else:
    summary = [[s["label"] for s in o] for o in out[:2]]
print(json.dumps({"wall": wall, "cpu": cpu, "summary": summary}))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--batch", type=int, default=4)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as root:
        run_child([sys.executable, "-c", BUILD + "\nprint('{}')", root, str(args.n)])
        results: dict = {}
        for round_ in range(args.rounds):
            for task in ("depth", "segment"):
                for library in ("lightpipe", "transformers"):
                    found = run_child([sys.executable, "-c", CHILD, library, task, f"{root}/{task}",
                                       str(args.n), str(args.batch)])
                    results.setdefault((task, library), []).append(found)
        rows, report = [], {"machine": machine(), "args": vars(args), "tasks": {}}
        for task in ("depth", "segment"):
            ours, theirs = results[(task, "lightpipe")], results[(task, "transformers")]
            wall_ours, wall_theirs = median([r["wall"] for r in ours]), median([r["wall"] for r in theirs])
            cpu_ours, cpu_theirs = median([r["cpu"] for r in ours]), median([r["cpu"] for r in theirs])
            if task == "depth":
                agree = max(abs(a - b) for x, y in zip(ours[0]["summary"], theirs[0]["summary"])
                            for a, b in zip(x, y))
            else:
                agree = ours[0]["summary"] == theirs[0]["summary"]
            rows.append([task, args.n / wall_ours, args.n / wall_theirs, wall_theirs / wall_ours,
                         cpu_theirs / cpu_ours, str(agree)])
            report["tasks"][task] = {"lightpipe": ours, "transformers": theirs,
                                     "images_per_s": [args.n / wall_ours, args.n / wall_theirs]}
        print(table(rows, ["task", "lightpipe img/s", "transformers img/s", "speed-up (wall)",
                           "speed-up (cpu)", "outputs agree (depth: max diff)"]))
        print("load average:", report["machine"]["load_average_1_5_15min"])
        write_json("dense.json", report)


if __name__ == "__main__":
    main()
