"""Tutorial step 04: pipelines on a dataset.

The learner fed the pipeline from a generator (`yield`), so results stream out while inputs
are read, and then ran a Hub dataset through it (`KeyDataset(dataset, "audio")` over
hf-internal-testing/librispeech_asr_dummy). Without the `datasets` package (as here, offline)
a list of rows with the same layout stands in for the dataset: each row's "audio" is
{"array": samples, "sampling_rate": rate}, which the pipeline resamples to the model's rate.

    python examples/step04_dataset.py
    HF_HUB_OFFLINE=1 python examples/step04_dataset.py --model ./whisper a.wav b.wav c.wav
"""

import argparse
import json

from lightpipe import pipeline

parser = argparse.ArgumentParser(description="Tutorial step 04: pipelines on a dataset")
parser.add_argument("--model", default="openai/whisper-tiny")
parser.add_argument("audio", nargs="*", help="audio files for the generator and the rows")
args = parser.parse_args()

transcriber = pipeline(model=args.model)


# 1. A generator: the pipeline returns an iterator and reads ahead a window of inputs.
def data():
    for path in args.audio:
        yield path


for index, out in enumerate(transcriber(data(), batch_size=2)):
    print(f"generator {index}:", json.dumps(out))

# 2. A dataset: `datasets` when installed (the tutorial's), else rows of the same layout,
# streamed through KeyDataset as the tutorial does (lightpipe.pipelines.pt_utils).
from lightpipe.pipelines.pt_utils import KeyDataset

try:
    from datasets import load_dataset

    if args.audio:
        raise ImportError  # local files given: use them
    dataset = load_dataset("hf-internal-testing/librispeech_asr_dummy", "clean", split="validation[:4]")
except ImportError:
    import soundfile

    dataset = []
    for path in args.audio:
        samples, rate = soundfile.read(path, dtype="float32")
        dataset.append({"audio": {"array": samples, "sampling_rate": rate, "path": path}})
for index, out in enumerate(transcriber(KeyDataset(dataset, "audio"), batch_size=2)):
    print(f"dataset {index}:", json.dumps(out))
