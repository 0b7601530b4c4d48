"""Tutorial step 15: AutoFeatureExtractor.

The learner loaded the feature extractor of a wav2vec2 checkpoint and ran it on the audio
of a dataset's rows: it normalises each clip (zero mean, unit variance), pads a batch to its
longest clip (or to max_length, with truncation) and returns the model's input_values.

    python examples/step15_feature_extractor.py
    HF_HUB_OFFLINE=1 python examples/step15_feature_extractor.py --model ./wav2vec2 a.wav b.flac
"""

import argparse
import json

from lightpipe import AutoFeatureExtractor
from lightpipe.processing.audio import load_audio

parser = argparse.ArgumentParser(description="Tutorial step 15: AutoFeatureExtractor")
parser.add_argument("--model", default="facebook/wav2vec2-base")
parser.add_argument("audio", nargs="+", help="audio files (decoded and resampled to 16 kHz)")
args = parser.parse_args()

feature_extractor = AutoFeatureExtractor.from_pretrained(args.model)
print("extractor:", type(feature_extractor).__name__, feature_extractor.sampling_rate)
# The dataset's rows: {"array": samples, "sampling_rate": 16000}, as `datasets` casts them.
rows = [{"array": load_audio(path, feature_extractor.sampling_rate)[0],
         "sampling_rate": feature_extractor.sampling_rate} for path in args.audio]

one = feature_extractor(rows[0]["array"], sampling_rate=16000)
values = one["input_values"][0]
print("one:", json.dumps({"length": len(values), "mean": round(float(values.mean()), 4),
                          "std": round(float(values.std()), 4)}))

batch = feature_extractor([row["array"] for row in rows], sampling_rate=16000, padding=True,
                          return_attention_mask=True, return_tensors="pt")
print("padded:", json.dumps({k: list(v.shape) for k, v in batch.items()}))
print("attention_mask sums:", json.dumps(batch["attention_mask"].sum(-1).tolist()))

cut = feature_extractor([row["array"] for row in rows], sampling_rate=16000, padding="max_length",
                        max_length=16000, truncation=True, return_tensors="np")
print("max_length:", json.dumps(list(cut["input_values"].shape)))
print("input_values[0][:5]:", json.dumps([round(float(v), 5) for v in batch["input_values"][0][:5]]))
