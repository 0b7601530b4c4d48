"""Tutorial step 13: AutoImageProcessor.

The learner loaded the image processor of google/vit-base-patch16-224 and turned an image into
the tensor the model reads (resized to 224x224, rescaled to [0, 1], normalised with the
checkpoint's mean and std), then fed it to the model.

    python examples/step13_autoimageprocessor.py          # downloads the model and the image
    HF_HUB_OFFLINE=1 python examples/step13_autoimageprocessor.py --model ./vit --image ./cat.jpg
"""

import argparse
import json

import torch

from lightpipe import AutoImageProcessor, AutoModelForImageClassification
from lightpipe.processing.image import load_image

URL = "https://huggingface.co/datasets/huggingface/documentation-images/resolve/main/pipeline-cat-chonk.jpeg"

parser = argparse.ArgumentParser(description="Tutorial step 13: AutoImageProcessor")
parser.add_argument("--model", default="google/vit-base-patch16-224")
parser.add_argument("--image", default=URL, help="an image file, URL or base64 data")
args = parser.parse_args()

# 1. The processor named in the checkpoint's preprocessor_config.json.
image_processor = AutoImageProcessor.from_pretrained(args.model)
print("processor:", type(image_processor).__name__)
print("settings:", json.dumps({"size": image_processor.size, "resample": image_processor.resample,
                               "image_mean": list(image_processor.image_mean),
                               "image_std": list(image_processor.image_std)}))

# 2. An image -> pixel_values: (batch, channels, height, width), float32.
image = load_image(args.image)
inputs = image_processor(image, return_tensors="pt")
pixels = inputs["pixel_values"]
print("pixel_values:", json.dumps({"shape": list(pixels.shape), "dtype": str(pixels.dtype),
                                   "mean": pixels.mean().item(), "std": pixels.std().item(),
                                   "corner": pixels[0, :, 0, 0].tolist()}))

# 3. The model reads them as they are.
model = AutoModelForImageClassification.from_pretrained(args.model)
with torch.inference_mode():
    logits = model(**inputs).logits
best = int(logits.argmax(-1))
print("prediction:", json.dumps({"label": model.config.id2label[best], "logit": logits[0, best].item()}))
