"""text-to-audio: VITS (MMS-TTS size) seconds of audio made per second of wall time, lightpipe
vs transformers side by side, in one process, interleaved repeats.

The model is facebook/mms-tts-eng's architecture (VitsConfig defaults: hidden 192, 6 encoder
layers, flow 192, HiFi-GAN 512 channels upsampling 8x8x2x2, 16 kHz) with random weights built
by transformers (no Hub access here), its character vocabulary (38 entries) and add_blank.
Each repeat runs ``pipe(TEXTS)`` (batch_size 1, as the reference's default) in both libraries
under the same seed, so both make the same audio (checked: same lengths, samples within 1e-4);
the figure is total audio seconds / wall seconds. torch.set_num_threads(2) for both. The
machine is shared and noisy: medians of the repeats and their ratio are printed.

    python bench/text_to_audio.py [--repeats 5]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

TEXTS = [
    "Hello, this is a test of the speech synthesis pipeline.",
    "The quick brown fox jumps over the lazy dog.",
    "Benchmarks on a shared machine are noisy, so we report medians.",
    "One more sentence, a little longer than the others, to finish the set of inputs.",
]
VOCAB = ["k", "'", "z", "y", "u", "d", "h", "e", "s", "w", "–", "3", "c", "p", "-", "1", "j",
         "m", "i", " ", "f", "l", "o", "0", "b", "r", "a", "4", "2", "n", "_", "x", "v", "t",
         "q", "5", "6", "g"]  # mms-tts-eng's 38 characters


def build(folder: Path) -> Path:
    import torch
    from transformers import VitsConfig, VitsModel, VitsTokenizer

    (folder / "vocab.json").write_text(json.dumps({c: i for i, c in enumerate(VOCAB)}))
    VitsTokenizer(str(folder / "vocab.json"), pad_token="k", unk_token="<unk>", phonemize=False,
                  language="eng").save_pretrained(folder)
    torch.manual_seed(0)
    VitsModel(VitsConfig(vocab_size=len(VOCAB))).eval().save_pretrained(folder)
    return folder


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()

    import numpy as np
    import torch
    import transformers

    import lightpipe

    torch.set_num_threads(2)
    with tempfile.TemporaryDirectory() as tmp:
        folder = str(build(Path(tmp)))
        pipes = {"lightpipe": lightpipe.pipeline("text-to-audio", model=folder),
                 "transformers": transformers.pipeline("text-to-audio", model=folder)}
        for pipe in pipes.values():  # warm-up
            torch.manual_seed(0)
            pipe(TEXTS[:1])
        rates: dict[str, list[float]] = {name: [] for name in pipes}
        outputs: dict[str, list] = {}
        for repeat in range(args.repeats):
            order = list(pipes) if repeat % 2 == 0 else list(reversed(pipes))
            for name in order:
                torch.manual_seed(repeat)
                start = time.perf_counter()
                results = pipes[name](TEXTS)
                elapsed = time.perf_counter() - start
                seconds = sum(len(r["audio"]) / r["sampling_rate"] for r in results)
                rates[name].append(seconds / elapsed)
                outputs[name] = results
        ours, theirs = outputs["lightpipe"], outputs["transformers"]
        same = all(a["audio"].shape == b["audio"].shape
                   and float(np.abs(a["audio"] - b["audio"]).max()) < 1e-4
                   for a, b in zip(ours, theirs))
    audio_s = sum(len(r["audio"]) / r["sampling_rate"] for r in ours)
    mo, mt = statistics.median(rates["lightpipe"]), statistics.median(rates["transformers"])
    print(f"VITS (mms-tts-eng size), {len(TEXTS)} texts, {audio_s:.1f} s of audio a run, "
          f"{args.repeats} repeats, 2 threads")
    print(f"lightpipe    median {mo:.2f} s audio / s  (runs {[round(r, 2) for r in rates['lightpipe']]})")
    print(f"transformers median {mt:.2f} s audio / s  (runs {[round(r, 2) for r in rates['transformers']]})")
    print(f"ratio lightpipe / transformers: {mo / mt:.2f}x; same audio: {same}")


if __name__ == "__main__":
    main()
