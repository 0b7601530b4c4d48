"""Tutorial step 01: pipeline basics with speech recognition.

The learner ran `pipeline(task="automatic-speech-recognition")` with no model (the task's
default, facebook/wav2vec2-base-960h), then `pipeline(model="openai/whisper-large-v2")` with no
task (the task comes from the model), then whisper-large-v3. With transformers, reading the
audio file failed: "ffmpeg was not found but is required to load audio files from filename".
lightpipe decodes wav, flac, ogg and mp3 files itself (soundfile / PyAV), no ffmpeg needed.

    python examples/step01_speech_recognition.py               # downloads the tutorial's models
    HF_HUB_OFFLINE=1 python examples/step01_speech_recognition.py --model ./wav2vec2 \
        --whisper-model ./whisper --whisper-v3-model ./whisper3 --audio speech.flac
"""

import argparse
import json

from lightpipe import pipeline

AUDIO = "https://huggingface.co/datasets/Narsil/asr_dummy/resolve/main/mlk.flac"

parser = argparse.ArgumentParser(description="Tutorial step 01: speech recognition")
parser.add_argument("--model", help="CTC model (default: the task's default model)")
parser.add_argument("--whisper-model", default="openai/whisper-large-v2")
parser.add_argument("--whisper-v3-model", default="openai/whisper-large-v3")
parser.add_argument("--audio", default=AUDIO, help="an audio file (wav, flac, ogg, mp3) or URL")
args = parser.parse_args()

# 1. A task and no model: the task's default model (a warning names it), or the one given.
transcriber = pipeline(task="automatic-speech-recognition", model=args.model)
print("default:", json.dumps(transcriber(args.audio)))

# 2. A model and no task: the task is read from the model's config (Whisper -> ASR).
whisper = pipeline(model=args.whisper_model)
print("task:", whisper.task)
print("whisper:", json.dumps(whisper(args.audio)))

# 3. Another checkpoint: only the name changes.
whisper_v3 = pipeline(model=args.whisper_v3_model)
print("whisper-v3:", json.dumps(whisper_v3(args.audio)))
