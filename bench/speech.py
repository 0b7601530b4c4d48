"""Speech: lightpipe vs transformers side by side, in one process, interleaved repeats.

  features: Whisper log-mel features (80 bins) of 100 clips of 30 s (16 kHz, seeded
            speech-like signals), ``extractor(clips, sampling_rate=16000, return_tensors="np")``.
            Goal: lightpipe >= 3x the reference's WhisperFeatureExtractor (torch path).
  asr:      ``pipeline("automatic-speech-recognition")`` on 60 s of audio with
            chunk_length_s=30, batch_size=4, max_new_tokens=64 and the pipeline's default
            beam search (5 beams, as transformers applies it to Whisper), with a random
            whisper-tiny-sized model (d_model 384, 4+4 layers, 6 heads, 80 mel bins) built by
            transformers; the tokenizer is a small byte-level BPE with Whisper's special and
            timestamp tokens (vocabulary ~2k instead of 51,865). Goal: lightpipe faster.

torch.set_num_threads(2) for both. The machine is shared and noisy: medians of the repeats
and their ratio are printed (and each run's time). The outputs of both libraries are compared.

    python bench/speech.py [--repeats 5] [--clips 100] [--tasks features asr]
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


def median_ratio(label: str, ours: list[float], theirs: list[float]) -> dict:
    mo, mt = statistics.median(ours), statistics.median(theirs)
    print(f"{label}: lightpipe median {mo:.3f} s, transformers median {mt:.3f} s, "
          f"speedup {mt / mo:.2f}x  (runs: lightpipe {[round(t, 3) for t in ours]}, "
          f"transformers {[round(t, 3) for t in theirs]})")
    return {"lightpipe_s": mo, "transformers_s": mt, "speedup": mt / mo,
            "lightpipe_runs": ours, "transformers_runs": theirs}


def bench_features(clips: int, repeats: int) -> dict:
    import numpy as np
    import transformers

    from lightpipe.processing.audio import WhisperFeatureExtractor
    from tests.fixtures.audio import noise_audio

    audio = [noise_audio(30.0, seed) for seed in range(clips)]
    ours, theirs = WhisperFeatureExtractor(), transformers.WhisperFeatureExtractor()
    got = ours(audio[:4], sampling_rate=16000, return_tensors="np")["input_features"]
    want = theirs(audio[:4], sampling_rate=16000, return_tensors="np")["input_features"]
    print(f"features: max |difference| on 4 clips = {np.abs(got - want).max():.2e}")
    times: dict[str, list[float]] = {"ours": [], "theirs": []}
    for _ in range(repeats):
        for name, extractor in (("ours", ours), ("theirs", theirs)):
            start = time.perf_counter()
            extractor(audio, sampling_rate=16000, return_tensors="np")
            times[name].append(time.perf_counter() - start)
    return median_ratio(f"features ({clips} clips x 30 s)", times["ours"], times["theirs"])


def build_whisper_tiny(folder: Path) -> Path:
    import transformers
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    from tests.fixtures.audio import build_whisper

    corpus = ["the quick brown fox jumps over the lazy dog", "speech recognition with whisper",
              "Hello world, this is a tiny corpus for a byte level BPE tokenizer."] * 20
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    tokenizer.train_from_iterator(corpus, trainers.BpeTrainer(
        vocab_size=420, show_progress=False, special_tokens=["<|endoftext|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    model = json.loads(tokenizer.to_str())["model"]
    merges = [tuple(m) if isinstance(m, list) else tuple(m.split(" ")) for m in model["merges"]]
    transformers.logging.set_verbosity_error()
    return build_whisper(folder, model["vocab"], merges, std=0.1, d_model=384, encoder_layers=4,
                         decoder_layers=4, encoder_attention_heads=6, decoder_attention_heads=6,
                         encoder_ffn_dim=1536, decoder_ffn_dim=1536, max_target_positions=448)


def bench_asr(repeats: int) -> dict:
    import transformers

    import lightpipe
    from tests.fixtures.audio import noise_audio

    folder = str(build_whisper_tiny(Path(tempfile.mkdtemp()) / "whisper-tiny-random"))
    audio = noise_audio(60.0, 7)
    kwargs = {"chunk_length_s": 30, "batch_size": 4, "max_new_tokens": 64}
    ours = lightpipe.pipeline("automatic-speech-recognition", model=folder)
    theirs = transformers.pipeline("automatic-speech-recognition", model=folder)
    first_ours, first_theirs = ours(audio, **kwargs), theirs(audio, **kwargs)
    print(f"asr: same text: {first_ours == first_theirs} ({len(first_ours['text'])} characters)")
    times: dict[str, list[float]] = {"ours": [], "theirs": []}
    for _ in range(repeats):
        for name, pipe in (("ours", ours), ("theirs", theirs)):
            start = time.perf_counter()
            pipe(audio, **kwargs)
            times[name].append(time.perf_counter() - start)
    return median_ratio("asr (60 s, chunk 30 s, batch 4, 5 beams, 64 new tokens)",
                        times["ours"], times["theirs"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--clips", type=int, default=100)
    parser.add_argument("--tasks", nargs="+", default=["features", "asr"])
    args = parser.parse_args()
    import warnings

    import torch

    warnings.filterwarnings("ignore")
    torch.set_num_threads(2)
    results = {}
    if "features" in args.tasks:
        results["features"] = bench_features(args.clips, args.repeats)
    if "asr" in args.tasks:
        results["asr"] = bench_asr(args.repeats)
    out = ROOT / "bench" / "out"
    out.mkdir(exist_ok=True)
    (out / "speech.json").write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
