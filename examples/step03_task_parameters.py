"""Tutorial step 03: task-specific parameters of speech recognition.

The learner asked for timestamps (`return_timestamps=True`: the text in timed segments) and
transcribed audio longer than Whisper's 30 s window with `chunk_length_s=30` (overlapping
chunks, merged back into one text).

    python examples/step03_task_parameters.py
    HF_HUB_OFFLINE=1 python examples/step03_task_parameters.py --model ./whisper \
        --audio speech.wav --long-audio long.flac
"""

import argparse
import json

from lightpipe import pipeline

parser = argparse.ArgumentParser(description="Tutorial step 03: task-specific parameters")
parser.add_argument("--model", default="openai/whisper-large-v2")
parser.add_argument("--audio", default="https://huggingface.co/datasets/Narsil/asr_dummy/resolve/main/mlk.flac")
parser.add_argument("--long-audio", default="https://huggingface.co/datasets/reach-vb/random-audios/resolve/main/ted_60.wav")
args = parser.parse_args()

transcriber = pipeline(model=args.model)
print("timestamps:", json.dumps(transcriber(args.audio, return_timestamps=True)))
print("long audio:", json.dumps(transcriber(args.long_audio, chunk_length_s=30, batch_size=2)))
print("long audio with timestamps:", json.dumps(
    transcriber(args.long_audio, chunk_length_s=30, return_timestamps=True)))
