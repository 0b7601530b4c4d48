"""Depth estimation with pipeline("depth-estimation").

Predict a depth map for an image with the task's default model (Intel/dpt-large), save it as
a grey-scale picture (near = bright), and estimate several images at once.

    python examples/depth_estimation.py                  # downloads the default model and image
    HF_HUB_OFFLINE=1 python examples/depth_estimation.py --model ./dpt --image ./room.jpg \
        --out depth.png
"""

import argparse
import json

from lightpipe import pipeline

URL = "http://images.cocodataset.org/val2017/000000039769.jpg"

parser = argparse.ArgumentParser(description="Depth estimation")
parser.add_argument("--model", help="depth model (default: the task's default model)")
parser.add_argument("--image", default=URL, help="an image file, URL or base64 data")
parser.add_argument("--out", default="depth.png", help="where to save the depth picture")
args = parser.parse_args()

# 1. One image in, a dict out: the raw depth (a tensor at the image's size) and a picture of it.
depth_estimator = pipeline(task="depth-estimation", model=args.model)
result = depth_estimator(args.image)
depth = result["predicted_depth"]
print("depth:", json.dumps({"shape": list(depth.shape), "min": depth.min().item(),
                            "max": depth.max().item(), "mean": depth.mean().item()}))
result["depth"].save(args.out)
print("picture:", json.dumps({"path": args.out, "size": list(result["depth"].size),
                              "mode": result["depth"].mode}))

# 2. Several images in one call, batched: a list in, a list of results out.
results = depth_estimator([args.image, args.image], batch_size=2)
print("batch:", json.dumps([list(r["predicted_depth"].shape) for r in results]))
