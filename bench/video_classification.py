"""video-classification, decoding and preprocessing included: lightpipe vs transformers.

The model is a random VideoMAE with the real checkpoints' input shape (16 frames of 224x224,
tubelet 2, patch 16: 1568 tokens) but a smaller encoder (hidden 384, 4 layers, 6 heads) so
that a run fits a shared 2-core machine; transformers saves it with its PIL image processor
(it falls back to that backend without torchvision, as here). The videos are N seeded H.264
files of 48 frames at 320x240 written with PyAV.

Both pipelines are built in this one process (torch.set_num_threads(2)); each round times
`pipe(paths, batch_size=B)` for each library in turn (order alternating), after one warm-up
call each. Medians are reported, with each round's ratio; the top-1 labels and scores of the
two libraries are compared. The machine is shared and noisy: the load average is printed.

    python bench/video_classification.py [--n 4] [--rounds 3] [--batch-size 2] [--rate 2]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine, median, table  # noqa: E402


def build(folder: Path, n: int) -> list[str]:
    import av
    import numpy as np
    import torch
    import transformers

    torch.manual_seed(0)
    config = transformers.VideoMAEConfig(hidden_size=384, num_hidden_layers=4, num_attention_heads=6,
                                         intermediate_size=1536, num_labels=400)
    model = transformers.VideoMAEForVideoClassification(config).eval()
    with torch.no_grad():
        model.classifier.weight.normal_(0.0, 0.5)
    model.save_pretrained(folder)
    transformers.VideoMAEImageProcessorPil(image_mean=[0.485, 0.456, 0.406],
                                           image_std=[0.229, 0.224, 0.225]).save_pretrained(folder)
    rng = np.random.default_rng(0)
    paths = []
    for index in range(n):
        path = folder / f"video_{index}.mp4"
        with av.open(str(path), mode="w") as container:
            stream = container.add_stream("libx264" if "libx264" in av.codecs_available else "mpeg4", rate=24)
            stream.width, stream.height, stream.pix_fmt = 320, 240, "yuv420p"
            base = rng.integers(0, 256, (24, 32, 3)).astype(np.uint8)
            for frame in range(48):
                small = np.roll(base, frame, axis=1)
                pixels = np.kron(small, np.ones((10, 10, 1), dtype=np.uint8))
                for packet in stream.encode(av.VideoFrame.from_ndarray(pixels, format="rgb24")):
                    container.mux(packet)
            for packet in stream.encode():
                container.mux(packet)
        paths.append(str(path))
    return paths


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=2)
    parser.add_argument("--rate", type=int, default=2)
    args = parser.parse_args()

    import torch
    import transformers

    import lightpipe

    torch.set_num_threads(2)
    transformers.logging.set_verbosity_error()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        paths = build(folder, args.n)
        pipes = {"lightpipe": lightpipe.pipeline("video-classification", model=str(folder)),
                 "transformers": transformers.pipeline("video-classification", model=str(folder))}
        call = dict(batch_size=args.batch_size, frame_sampling_rate=args.rate, top_k=1)
        results = {name: pipe(paths, **call) for name, pipe in pipes.items()}  # warm-up
        times: dict[str, list[float]] = {name: [] for name in pipes}
        for round_ in range(args.rounds):
            order = list(pipes) if round_ % 2 == 0 else list(reversed(pipes))
            for name in order:
                start = time.perf_counter()
                pipes[name](paths, **call)
                times[name].append(time.perf_counter() - start)
    same = all(a[0]["label"] == b[0]["label"] and abs(a[0]["score"] - b[0]["score"]) < 1e-4
               for a, b in zip(results["lightpipe"], results["transformers"]))
    ratios = [t / l for l, t in zip(times["lightpipe"], times["transformers"])]
    rows = [[name, median(times[name]), args.n / median(times[name]),
             " ".join(f"{t:.2f}" for t in times[name])] for name in pipes]
    print(table(rows, ["library", "median s", "videos/s", "rounds (s)"]))
    print(f"speed-up (transformers / lightpipe time): median {median(ratios):.2f}x; rounds "
          + " ".join(f"{r:.2f}" for r in ratios))
    print(f"top-1 labels and scores equal: {same}")
    print({k: v for k, v in machine().items() if k in ("cpu", "cores", "torch", "transformers",
                                                          "load_average_1_5_15min")})


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "2")
    main()
