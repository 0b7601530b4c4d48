"""Tutorial step 14: AutoBackbone.

The learner loaded microsoft/swin-tiny-patch4-window7-224 as a backbone that returns the
feature map of chosen stages: with out_indices=(1,) (the first stage), then with out_features
naming stages, and looked at the maps' shapes and the backbone's channels.

    python examples/step14_autobackbone.py                # downloads the model and the image
    HF_HUB_OFFLINE=1 python examples/step14_autobackbone.py --model ./swin --image ./cat.jpg
"""

import argparse
import json

import torch

from lightpipe import AutoBackbone, AutoImageProcessor
from lightpipe.processing.image import load_image

URL = "https://huggingface.co/datasets/huggingface/documentation-images/resolve/main/pipeline-cat-chonk.jpeg"

parser = argparse.ArgumentParser(description="Tutorial step 14: AutoBackbone")
parser.add_argument("--model", default="microsoft/swin-tiny-patch4-window7-224")
parser.add_argument("--image", default=URL, help="an image file, URL or base64 data")
args = parser.parse_args()

processor = AutoImageProcessor.from_pretrained(args.model)
inputs = processor(load_image(args.image), return_tensors="pt")

for name, selection in [("out_indices", {"out_indices": (1,)}),
                        ("out_features", {"out_features": ["stage1", "stage3"]})]:
    model = AutoBackbone.from_pretrained(args.model, **selection)
    with torch.inference_mode():
        feature_maps = model(**inputs).feature_maps
    print(f"{name}:", json.dumps({
        "stage_names": model.stage_names, "out_features": model.out_features,
        "out_indices": list(model.out_indices), "channels": model.channels,
        "shapes": [list(m.shape) for m in feature_maps],
        "means": [m.mean().item() for m in feature_maps]}))
