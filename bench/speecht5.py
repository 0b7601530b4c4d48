"""text-to-speech with SpeechT5: generate_speech time, lightpipe vs transformers side by side,
in one process, interleaved repeats.

The model is microsoft/speecht5_tts's architecture (SpeechT5Config defaults: hidden 768, 12
encoder and 6 decoder layers, 80 mel bins, reduction factor 2) with random weights built by
transformers (no Hub access here). Random weights never reach the stop threshold, so each call
runs a fixed number of decoder steps: ``--tokens`` input ids, ``maxlenratio`` 5 (100 steps, 200
frames for 40 tokens). Both run under the same seed and make the same spectrogram (checked).
Both run with the thread count lightpipe's loader picks (threads.py: the idle cores; two
spinning threads on a busy core were 10x slower here). The machine is shared and noisy: medians
and their ratio.

    python bench/speecht5.py [--repeats 3] [--tokens 40]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--tokens", type=int, default=40)
    args = parser.parse_args()

    import torch
    import transformers

    from lightpipe import AutoModelForTextToSpectrogram

    with tempfile.TemporaryDirectory() as tmp:
        torch.manual_seed(0)
        theirs = transformers.SpeechT5ForTextToSpeech(transformers.SpeechT5Config()).eval()
        theirs.save_pretrained(tmp)
        ours = AutoModelForTextToSpectrogram.from_pretrained(tmp)
    print(f"torch threads: {torch.get_num_threads()} (both)")
    ids = torch.randint(4, 81, (1, args.tokens), generator=torch.Generator().manual_seed(0))
    speaker = torch.randn(1, 512, generator=torch.Generator().manual_seed(1))
    options = dict(threshold=10.0, maxlenratio=5.0)
    times: dict[str, list[float]] = {"transformers": [], "lightpipe": []}
    outputs = {}
    for _ in range(args.repeats):
        for name, model in (("transformers", theirs), ("lightpipe", ours)):
            torch.manual_seed(0)
            start = time.perf_counter()
            with torch.inference_mode():
                outputs[name] = model.generate_speech(ids, speaker, **options)
            times[name].append(time.perf_counter() - start)
    torch.testing.assert_close(outputs["lightpipe"], outputs["transformers"], rtol=1e-3, atol=1e-4)
    frames = outputs["lightpipe"].shape[0]
    medians = {name: statistics.median(values) for name, values in times.items()}
    for name, median in medians.items():
        print(f"{name:12s} {frames} frames: median {median:.3f} s "
              f"({frames / median:.1f} frames/s; runs {', '.join(f'{t:.2f}' for t in times[name])})")
    print(f"lightpipe / transformers speed: {medians['transformers'] / medians['lightpipe']:.2f}x")


if __name__ == "__main__":
    main()
