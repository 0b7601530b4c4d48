"""visual-question-answering and image-to-image throughput, preprocessing included: lightpipe vs
the transformers 4.57 pipelines (transformers 5 removed both, so the reference runs in the
4.57 virtualenv, /tmp/venv457: see tests/golden/make_multimodal.py).

Models (random weights, real sizes, saved by transformers 5 with its PIL image processors):
  vqa   ViLT-B/32 (hidden 768, 12 layers, patch 32, 384-pixel short side, 3129 answers) with the
        BERT uncased tokenizer of the packaged MiniLM; N seeded 640x480 JPEGs (resized to 384x512:
        192 patches), one question each (questions of 6-12 words);
  i2i   Swin2SR classical x2 (embed 180, 6 stages of 6 layers, window 8, pixelshuffle) on N
        seeded 48x48 PNGs (padded to 56x56, upscaled to 112x112).
Each (task, library, round) runs in a fresh child process with torch.set_num_threads(1) (the
machine is shared: one thread each keeps the runs comparable). A child builds the pipeline,
warms up on one batch, then times ``pipe(inputs, batch_size=B)`` in wall time and in the
process's CPU time. Rounds are interleaved; medians and each round's ratio are reported, and
the outputs of the first round are compared (top answer and its score; images' mean absolute
difference in 8-bit levels). The 1-minute load average is recorded: the machine is noisy.

    python bench/multimodal.py [--n 32] [--rounds 3]
    python bench/multimodal.py --n 4 --rounds 1                   (smoke run)
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from common import CHILD_ENV, machine, median, minilm_dir, run_child, table, write_json

REFERENCE_PYTHON = "/tmp/venv457/bin/python"
BATCH = {"vqa": 8, "i2i": 4}

BUILD = r"""
import json, shutil, sys, numpy as np, torch, transformers
from pathlib import Path
from PIL import Image
root, n, minilm = Path(sys.argv[1]), int(sys.argv[2]), Path(sys.argv[3])
torch.manual_seed(0)
vqa = root / "vilt"
config = transformers.ViltConfig(num_labels=3129, id2label={i: f"answer {i}" for i in range(3129)},
                                 label2id={f"answer {i}": i for i in range(3129)})
transformers.ViltForQuestionAnswering(config).eval().save_pretrained(vqa)
transformers.ViltImageProcessorPil().save_pretrained(vqa)
for name in ("tokenizer.json", "vocab.txt", "special_tokens_map.json"):
    shutil.copy(minilm / name, vqa / name)
(vqa / "tokenizer_config.json").write_text(json.dumps({"tokenizer_class": "BertTokenizer",
    "do_lower_case": True, "model_max_length": 40}))
sr = root / "swin2sr"
config = transformers.Swin2SRConfig(embed_dim=180, depths=[6] * 6, num_heads=[6] * 6, window_size=8,
                                    image_size=64, upscale=2, upsampler="pixelshuffle")
transformers.Swin2SRForImageSuperResolution(config).eval().save_pretrained(sr)
transformers.Swin2SRImageProcessorPil().save_pretrained(sr)
rng = np.random.default_rng(0)
for i in range(n):
    small = rng.integers(0, 256, (30, 40, 3), dtype=np.uint8)
    Image.fromarray(small).resize((640, 480), Image.BICUBIC).save(root / f"photo_{i:03d}.jpg", quality=90)
    Image.fromarray(rng.integers(0, 256, (48, 48, 3), dtype=np.uint8)).save(root / f"small_{i:03d}.png")
"""

CHILD = r"""
import json, os, sys, time
import numpy as np
import torch
torch.set_num_threads(1)
library, task, root, n, batch = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
if library == "lightpipe":
    import lightpipe as lib
else:
    import transformers as lib
    lib.logging.set_verbosity_error()
words = "what is the color of the big car on the left side of this picture".split()
if task == "vqa":
    pipe = lib.pipeline("visual-question-answering", model=f"{root}/vilt")
    inputs = [{"image": f"{root}/photo_{i:03d}.jpg", "question": " ".join(words[:6 + i % 7]) + "?"}
              for i in range(n)]
else:
    pipe = lib.pipeline("image-to-image", model=f"{root}/swin2sr")
    inputs = [f"{root}/small_{i:03d}.png" for i in range(n)]
load = os.getloadavg()[0]
pipe(inputs[:batch], batch_size=batch)  # warm-up
start, cpu_start = time.perf_counter(), time.process_time()
results = pipe(inputs, batch_size=batch)
total, cpu = time.perf_counter() - start, time.process_time() - cpu_start
if task == "vqa":
    outputs = [[r[0]["answer"], r[0]["score"]] for r in results]
else:
    np.save(f"{root}/out_{library}.npy", np.stack([np.asarray(image) for image in results]))
    outputs = None
print(json.dumps({"library": library, "task": task, "seconds": total, "items_per_s": n / total,
                  "cpu_ms_per_item": 1000 * cpu / n, "load_1min": load, "outputs": outputs}))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    pythons = {"lightpipe": sys.executable, "transformers-4.57": REFERENCE_PYTHON}
    report: dict = {"machine": machine(), "n": args.n, "batch_size": BATCH, "threads": 1, "tasks": {}}
    with tempfile.TemporaryDirectory(prefix="lightpipe_multimodal_bench_") as root:
        subprocess.run([sys.executable, "-c", BUILD, root, str(args.n), minilm_dir()], check=True,
                       env=CHILD_ENV, capture_output=True)
        for task in ("vqa", "i2i"):
            runs: dict[str, list[dict]] = {name: [] for name in pythons}
            for round_index in range(args.rounds):
                order = list(pythons) if round_index % 2 == 0 else list(pythons)[::-1]
                for library in order:
                    result = run_child([pythons[library], "-c", CHILD, library.split("-")[0], task,
                                        root, str(args.n), str(BATCH[task])])
                    runs[library].append(result)
                    print(f"{task} round {round_index + 1} {library}: {result['items_per_s']:.2f} "
                          f"items/s, {result['cpu_ms_per_item']:.0f} CPU ms/item (load "
                          f"{result['load_1min']:.1f})", flush=True)
            ours, theirs = runs["lightpipe"], runs["transformers-4.57"]
            summary = {key: {name: median([r[key] for r in runs[name]]) for name in runs}
                       for key in ("items_per_s", "cpu_ms_per_item")}
            ratio = summary["items_per_s"]["lightpipe"] / summary["items_per_s"]["transformers-4.57"]
            per_round = [a["items_per_s"] / b["items_per_s"] for a, b in zip(ours, theirs)]
            rows = [[name, summary["items_per_s"][name], summary["cpu_ms_per_item"][name]] for name in runs]
            print(table(rows, ["library", f"{task} items/s (median)", "CPU ms/item"]))
            print(f"{task} throughput ratio lightpipe/transformers-4.57: {ratio:.2f}x (rounds: "
                  f"{', '.join(f'{r:.2f}' for r in per_round)})")
            entry = {"summary": summary, "ratio": ratio, "ratio_per_round": per_round}
            if task == "vqa":
                pairs = list(zip(ours[0]["outputs"], theirs[0]["outputs"]))
                entry["same_top_answer"] = sum(a[0] == b[0] for a, b in pairs)
                entry["max_top_score_diff"] = max(abs(a[1] - b[1]) for a, b in pairs)
                print(f"top answers equal on {entry['same_top_answer']}/{args.n}; largest score "
                      f"difference {entry['max_top_score_diff']:.2e}")
            else:
                import numpy as np

                a, b = (np.load(f"{root}/out_{name}.npy").astype(np.int16) for name in ("lightpipe", "transformers"))
                entry["image_mean_abs_diff_levels"] = float(np.abs(a - b).mean())
                entry["image_max_abs_diff_levels"] = int(np.abs(a - b).max())
                print(f"images: mean |difference| {entry['image_mean_abs_diff_levels']:.4f} levels, "
                      f"max {entry['image_max_abs_diff_levels']}")
            for name in runs:
                for run in runs[name]:
                    run.pop("outputs", None)
            entry["runs"] = runs
            report["tasks"][task] = entry
    print(f"wrote {write_json('multimodal.json', report)}")


if __name__ == "__main__":
    os.chdir(Path(__file__).resolve().parent)
    main()
