"""SAM 2 (image): seconds per image embedding and per 64-point decode, lightpipe vs transformers.

The model is a random Sam2Model built by transformers at SAM 2.1 hiera-tiny's sizes (Hiera
blocks [1, 2, 7, 2], widths 96-768, FPN 256, the mask decoder at its own size) but a 512x512
input (the prompt encoder's image_size 512, so 32x32 image embeddings), weights spread so that
masks vary. One image; the decode is 64 single-point prompts at once on the stored embedding,
multimask on. A first round warms both up (not timed). Both libraries run in this one process, rounds interleaved, torch on 2 threads;
medians with their ratio. Outputs are compared on the first round. The machine is shared and
noisy: quote it so.

    python bench/sam2.py [--rounds 5]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time

import torch


def build(folder: str):
    import transformers

    config = transformers.Sam2Config(
        vision_config=dict(backbone_config=dict(model_type="sam2_hiera_det_model", image_size=[512, 512]),
                           backbone_feature_sizes=[[128, 128], [64, 64], [32, 32]]),
        prompt_encoder_config=dict(image_size=512))
    torch.manual_seed(0)
    model = transformers.Sam2Model(config).eval()
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "norm" not in name:
                param.normal_(0.0, 0.05 if param.dim() > 1 else 0.02)
    model.save_pretrained(folder)
    return model


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(2)
    import lightpipe

    with tempfile.TemporaryDirectory() as folder:
        theirs = build(folder)
        ours = lightpipe.AutoModel.from_pretrained(folder)
    torch.manual_seed(1)
    pixels = torch.randn(1, 3, 512, 512)
    points = torch.rand(1, 64, 1, 2) * 512
    outputs = {}
    times = {(side, step): [] for side in ("lightpipe", "transformers") for step in ("embed", "decode")}
    with torch.inference_mode():
        for round_ in range(args.rounds):
            order = [("lightpipe", ours), ("transformers", theirs)]
            for side, model in order if round_ % 2 else order[::-1]:  # alternate who goes first
                start = time.perf_counter()
                embeddings = model.get_image_embeddings(pixels)
                middle = time.perf_counter()
                out = model(image_embeddings=embeddings, input_points=points)
                end = time.perf_counter()
                if round_ == 0:  # warm-up (oneDNN primes its kernels), outputs compared
                    outputs[side] = out["pred_masks"]
                    continue
                times[side, "embed"].append(middle - start)
                times[side, "decode"].append(end - middle)
        diff = (outputs["lightpipe"] - outputs["transformers"]).abs().max().item()
        print(f"max |pred_masks difference| {diff:.2e}")
    for step in ("embed", "decode"):
        mine = statistics.median(times["lightpipe", step])
        reference = statistics.median(times["transformers", step])
        print(f"{step:>6}: lightpipe {mine * 1000:8.1f} ms, transformers {reference * 1000:8.1f} ms, "
              f"ratio {reference / mine:.2f}x")


if __name__ == "__main__":
    main()
