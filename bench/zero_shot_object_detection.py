"""zero-shot-object-detection latency, preprocessing included: lightpipe vs transformers, in one
process, rounds interleaved.

The model is a random OwlViTForObjectDetection (vision: hidden 384, 6 layers, 384x384 images,
patch 32 -> 144 boxes; text: hidden 256, 4 layers) saved by transformers with its PIL image
processor and a byte-level CLIP tokenizer built from the fixture (tests/fixtures/owlvit.py).
Each round times `pipe(images, candidate_labels=labels, batch_size=B)` over N seeded 640x480
PIL images with L labels, for each library in turn (the order alternates per round). The
reference runs the model once per (image, label) pair; lightpipe once per batch of images with
all labels as queries. Outputs of the first round are compared (labels and boxes equal, scores
within 1e-4). The machine is shared and noisy: medians and the per-round ratios are printed.

    python bench/zero_shot_object_detection.py [--images 8] [--labels 5] [--rounds 5] [--threads 1]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def build(folder: Path) -> Path:
    import torch
    import transformers

    from tests.fixtures.owlvit import owlvit_tokenizer

    folder.mkdir(parents=True, exist_ok=True)
    vocab = owlvit_tokenizer(folder)
    config = transformers.OwlViTConfig(
        text_config=dict(vocab_size=vocab, hidden_size=256, num_hidden_layers=4, num_attention_heads=4,
                         intermediate_size=1024, pad_token_id=0, bos_token_id=vocab - 2, eos_token_id=vocab - 1),
        vision_config=dict(hidden_size=384, num_hidden_layers=6, num_attention_heads=6,
                           intermediate_size=1536, image_size=384, patch_size=32),
        projection_dim=256)
    torch.manual_seed(0)
    model = transformers.OwlViTForObjectDetection(config).eval()
    with torch.no_grad():
        model.class_head.logit_shift.bias.fill_(-1.0)
    model.save_pretrained(folder)
    transformers.OwlViTImageProcessorPil(size={"height": 384, "width": 384}).save_pretrained(folder)
    return folder


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--images", type=int, default=8)
    parser.add_argument("--labels", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()

    import numpy as np
    import torch
    import transformers
    from PIL import Image

    import lightpipe

    torch.set_num_threads(args.threads)
    folder = build(Path(tempfile.mkdtemp()) / "owlvit")
    rng = np.random.default_rng(0)
    images = [Image.fromarray(rng.integers(0, 256, (30, 40, 3), dtype=np.uint8)).resize((640, 480))
              for _ in range(args.images)]
    labels = ["cat", "dog", "a remote control", "the couch", "bird", "car", "a person"][:args.labels]
    pipes = {"lightpipe": lightpipe.pipeline("zero-shot-object-detection", model=str(folder)),
             "transformers": transformers.pipeline("zero-shot-object-detection", model=str(folder))}
    for pipe in pipes.values():  # warm-up
        pipe(images[:1], candidate_labels=labels[:1])
    times: dict[str, list[float]] = {name: [] for name in pipes}
    first: dict[str, list] = {}
    for round_ in range(args.rounds):
        order = list(pipes) if round_ % 2 == 0 else list(reversed(pipes))
        for name in order:
            start = time.perf_counter()
            out = pipes[name](images, candidate_labels=labels, batch_size=args.batch_size)
            times[name].append(time.perf_counter() - start)
            first.setdefault(name, out)
    same = all(len(a) == len(b) and all(x["label"] == y["label"] and x["box"] == y["box"]
                                        and abs(x["score"] - y["score"]) < 1e-4 for x, y in zip(a, b))
               for a, b in zip(first["lightpipe"], first["transformers"]))
    median = {name: float(np.median(values)) for name, values in times.items()}
    ratios = [t / l for l, t in zip(times["lightpipe"], times["transformers"])]
    print(f"{args.images} images x {args.labels} labels, batch_size {args.batch_size}, "
          f"{args.threads} thread(s), {args.rounds} rounds; outputs equal: {same}")
    for name, values in times.items():
        print(f"  {name:12s} median {median[name]:.3f} s  rounds {[round(v, 3) for v in values]}")
    print(f"  speed-up (transformers / lightpipe): median {median['transformers'] / median['lightpipe']:.2f}x, "
          f"per round {[round(r, 2) for r in ratios]}")


if __name__ == "__main__":
    main()
