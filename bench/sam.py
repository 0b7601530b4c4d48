"""mask-generation (SAM): seconds per image and masks per image, lightpipe vs transformers.

The model is a random SAM built by transformers from a config smaller than ViT-B (vision: hidden
256, 6 layers, 8 heads, 256x256 input, 16-pixel patches, 7-wide windows with global layers 2
and 5; the mask decoder at SAM's own size: hidden 256, 2 layers), weights spread so that masks
vary. The image is a seeded 320x240 picture. Each call runs an 8 x 8 point grid
(``points_per_crop=8``) 32 points at a time (each point gives 3 masks) with the IoU and
stability filters off, so that every random-weight mask goes through the whole post-processing
(``pred_iou_thresh=0``, ``stability_score_thresh=0``); "masks/image" is what NMS keeps. A second
case adds one crop layer (``crops_n_layers=1``: the image and its 4 crops), 4 x 4 points each.

Both libraries run in this one process, rounds interleaved, torch on 2 threads; medians are
reported with their ratio. transformers' NMS step needs torchvision, which is absent here: it
gets a stand-in (greedy NMS over a torch IoU matrix, as torchvision's), whose cost is included.
The masks and scores of both are compared on the first round (equal up to float noise: a
mask pixel whose logit sits within ~1e-6 of the threshold may differ). The machine is shared
and noisy.

``--hq`` runs the same with SAM-HQ (transformers' SamHQModel at the same sizes, the HQ decoder's
``vit_dim`` 256: the HQ token and the fused early/final ViT features); results go to
``sam_hq.json``.

    python bench/sam.py [--rounds 1] [--hq]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
import types

import numpy as np
import torch

from common import machine, median, table, write_json


def build(folder: str, hq: bool = False) -> None:
    import transformers
    from transformers.models.sam.image_processing_pil_sam import SamImageProcessorPil

    config_class, model_class = ((transformers.SamHQConfig, transformers.SamHQModel) if hq
                                 else (transformers.SamConfig, transformers.SamModel))
    config = config_class(
        vision_config=dict(hidden_size=256, output_channels=256, num_hidden_layers=6,
                           num_attention_heads=8, image_size=256, patch_size=16, window_size=7,
                           global_attn_indexes=[2, 5], mlp_dim=1024, num_pos_feats=128),
        prompt_encoder_config=dict(hidden_size=256, image_size=256, patch_size=16),
        mask_decoder_config=dict(hidden_size=256, **({"vit_dim": 256} if hq else {})))
    torch.manual_seed(0)
    model = model_class(config).eval()
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "norm" not in name:
                param.normal_(0.0, 0.05 if param.dim() > 1 else 0.02)
    model.save_pretrained(folder)
    processor = SamImageProcessorPil(size={"longest_edge": 256}, pad_size={"height": 256, "width": 256},
                                     mask_size={"longest_edge": 64},
                                     mask_pad_size={"height": 64, "width": 64})
    (transformers.SamHQProcessor(processor) if hq else processor).save_pretrained(folder)


def plain_batched_nms(boxes, scores, idxs, iou_threshold):
    """Greedy NMS over an IoU matrix in torch (one class), as torchvision's, so the reference is
    not slowed by its stand-in."""
    boxes = boxes.float()
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    low = torch.maximum(boxes[:, None, :2], boxes[None, :, :2])
    high = torch.minimum(boxes[:, None, 2:], boxes[None, :, 2:])
    inter = (high - low).clamp(min=0).prod(-1)
    overlap = inter / (area[:, None] + area[None, :] - inter)
    dropped = torch.zeros(len(boxes), dtype=torch.bool)
    keep = []
    for index in torch.argsort(scores, descending=True).tolist():
        if not dropped[index]:
            keep.append(index)
            dropped |= overlap[index] > iou_threshold
    return torch.tensor(keep, dtype=torch.long)


def reference_pipeline(folder: str):
    import transformers
    from transformers.models.sam import image_processing_pil_sam as pil_sam

    transformers.logging.set_verbosity_error()
    pipe = transformers.pipeline("mask-generation", model=folder)
    boxes = types.ModuleType("torchvision.ops.boxes")
    boxes.batched_nms = plain_batched_nms
    sys.modules.update({"torchvision": types.ModuleType("torchvision"),
                        "torchvision.ops": types.ModuleType("torchvision.ops"),
                        "torchvision.ops.boxes": boxes})
    pipe.image_processor.post_process_for_mask_generation = \
        lambda *args: pil_sam._post_process_for_mask_generation(*args)
    return pipe


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--hq", action="store_true", help="SAM-HQ instead of SAM")
    args = parser.parse_args()
    torch.set_num_threads(2)
    from PIL import Image

    import lightpipe

    folder = tempfile.mkdtemp(prefix="bench_sam_")
    build(folder, args.hq)
    small = np.random.default_rng(0).integers(0, 256, (12, 16, 3), dtype=np.uint8)
    image = Image.fromarray(small).resize((320, 240), Image.BICUBIC)
    pipes = {"lightpipe": lightpipe.pipeline("mask-generation", model=folder),
             "transformers": reference_pipeline(folder)}
    base = dict(points_per_crop=8, points_per_batch=32, pred_iou_thresh=0.0,
                stability_score_thresh=0.0)
    cases = {"whole image, 8x8 points": base,
             "1 crop layer, 4x4 points": {**base, "points_per_crop": 4, "crops_n_layers": 1}}
    rows, report = [], {"machine": machine(), "cases": {}}
    for case, kwargs in cases.items():
        times: dict[str, list[float]] = {name: [] for name in pipes}
        masks: dict[str, int] = {}
        outputs = {}
        for round_ in range(args.rounds + 1):  # round 0 warms up
            order = list(pipes) if round_ % 2 == 0 else list(reversed(pipes))
            for name in order:
                start = time.perf_counter()
                out = pipes[name](image, **kwargs)
                elapsed = time.perf_counter() - start
                if round_ == 0:
                    outputs[name] = out
                    masks[name] = len(out["masks"])
                else:
                    times[name].append(elapsed)
        # Equal up to float noise: as many masks, scores within 1e-4, and (a logit within
        # ~1e-6 of the threshold can flip) at least 99.9% of the mask pixels equal.
        mine, reference = outputs["lightpipe"], outputs["transformers"]
        pixels = [np.mean(a == b) for a, b in zip(mine["masks"], reference["masks"])]
        same = bool(masks["lightpipe"] == masks["transformers"]
                and torch.allclose(mine["scores"], reference["scores"], atol=1e-4)
                and min(pixels, default=1.0) >= 0.999)
        ours, theirs = median(times["lightpipe"]), median(times["transformers"])
        rows.append([case, masks["lightpipe"], f"{ours:.2f}", f"{theirs:.2f}",
                     f"{masks['lightpipe'] / ours:.1f}", f"{masks['transformers'] / theirs:.1f}",
                     f"{theirs / ours:.2f}x", "yes" if same else "NO"])
        report["cases"][case] = {"kwargs": kwargs, "masks": masks, "seconds": times,
                                 "median_ratio": theirs / ours, "same_output": same}
    print(table(rows, ["case", "masks/image", "lightpipe s", "transformers s", "lightpipe masks/s",
                       "transformers masks/s", "speed-up", "same masks"]))
    print(f"machine: {report['machine']}")
    write_json("sam_hq" if args.hq else "sam", report)


if __name__ == "__main__":
    main()
