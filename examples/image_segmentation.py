"""Semantic segmentation with pipeline("image-segmentation").

Segment an image by class with a SegFormer model (nvidia/segformer-b0-finetuned-ade-512-512 by
default): one mask per class found, each a black-and-white picture at the image's size; save
them, and print how much of the image each class covers.

    python examples/image_segmentation.py                # downloads the model and image
    HF_HUB_OFFLINE=1 python examples/image_segmentation.py --model ./segformer \
        --image ./street.jpg --out masks
"""

import argparse
import json
from pathlib import Path

import numpy as np

from lightpipe import pipeline

URL = "http://images.cocodataset.org/val2017/000000039769.jpg"
MODEL = "nvidia/segformer-b0-finetuned-ade-512-512"

parser = argparse.ArgumentParser(description="Semantic segmentation")
parser.add_argument("--model", default=MODEL, help="a semantic segmentation model")
parser.add_argument("--image", default=URL, help="an image file, URL or base64 data")
parser.add_argument("--out", default="masks", help="folder for the mask pictures")
args = parser.parse_args()

# 1. One image in, a list of segments out: {"score": None, "label": ..., "mask": PIL image}.
segmenter = pipeline(task="image-segmentation", model=args.model)
segments = segmenter(args.image, subtask="semantic")
out = Path(args.out)
out.mkdir(parents=True, exist_ok=True)
coverage = {}
for segment in segments:
    mask = np.asarray(segment["mask"])
    coverage[segment["label"]] = round(float((mask == 255).mean()), 6)
    segment["mask"].save(out / f"{segment['label']}.png")
print("segments:", json.dumps(coverage))

# 2. Several images in one call, batched: a list in, a list of lists out.
batch = segmenter([args.image, args.image], batch_size=2)
print("batch:", json.dumps([[s["label"] for s in segments] for segments in batch]))
