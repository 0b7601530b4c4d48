"""Tutorial step 05: vision with pipeline("image-classification").

The learner classified an image from a URL with the task's default model
(google/vit-base-patch16-224), then asked for the top 2 labels and classified several images
at once.

    python examples/step05_image_classification.py       # downloads the default model and image
    HF_HUB_OFFLINE=1 python examples/step05_image_classification.py --model ./vit \
        --image ./cat.jpg
"""

import argparse
import json

from lightpipe import pipeline

URL = "https://huggingface.co/datasets/huggingface/documentation-images/resolve/main/pipeline-cat-chonk.jpeg"

parser = argparse.ArgumentParser(description="Tutorial step 05: image classification")
parser.add_argument("--model", help="image classifier (default: the task's default model)")
parser.add_argument("--image", default=URL, help="an image file, URL or base64 data")
args = parser.parse_args()

# 1. The task's default model (a warning names it), or the one given; an image URL or path.
vision_classifier = pipeline(task="image-classification", model=args.model)
predictions = vision_classifier(images=args.image)
print("predictions:", json.dumps(predictions))
print("\n".join(f"  {p['score']:.4f}  {p['label']}" for p in predictions))

# 2. Only the best two labels.
print("top 2:", json.dumps(vision_classifier(args.image, top_k=2)))

# 3. Several images in one call, batched: a list in, a list of results out.
print("batch:", json.dumps(vision_classifier([args.image, args.image], top_k=1, batch_size=2)))
