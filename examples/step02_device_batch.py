"""Tutorial step 02: device and batch_size.

The learner moved the pipeline to the GPU with `device=0` (or kept the CPU with `device=-1`),
let it choose with `device_map="auto"`, and passed several files with `batch_size=2`, which
raised an error in transformers' speech pipeline for them. Here every form works; a GPU is
used only when there is one.

    python examples/step02_device_batch.py
    HF_HUB_OFFLINE=1 python examples/step02_device_batch.py --model ./whisper a.wav b.flac c.mp3
"""

import argparse
import json

from lightpipe import pipeline

parser = argparse.ArgumentParser(description="Tutorial step 02: device and batch_size")
parser.add_argument("--model", default="openai/whisper-large-v2")
parser.add_argument("audio", nargs="*", default=[
    "https://huggingface.co/datasets/Narsil/asr_dummy/resolve/main/mlk.flac",
    "https://huggingface.co/datasets/Narsil/asr_dummy/resolve/main/1.flac"])
args = parser.parse_args()

import torch  # noqa: E402  (only to know whether there is a GPU)

device = 0 if torch.cuda.is_available() else -1
transcriber = pipeline(model=args.model, device=device)
print("device:", transcriber.device)
print("one by one:", json.dumps([transcriber(path) for path in args.audio]))

auto = pipeline(model=args.model, device_map="auto")
print("device_map auto:", auto.device)
print("batch_size=2:", json.dumps(auto(args.audio, batch_size=2)))
