"""text-to-audio with Bark: seconds of audio made per second of wall time, lightpipe vs
transformers side by side, in one process, interleaved repeats.

The model has suno/bark-small's shapes (hidden 768, 12 heads; the vocabularies, offsets and
special ids of its configs; EnCodec 24 kHz with 8 codebooks decoded) with random weights built
by transformers (no Hub access here), ``--layers`` layers per stage (bark-small has 12), and
its generation settings (sampling at temperatures 0.7 / 0.7 / 0.5, coarse windows of 60 over a
history of 630, fine windows of 1024). A tiny WordPiece vocabulary stands in for
bert-base-multilingual-cased. Each repeat runs ``pipe(TEXT, forward_params=
{"semantic_max_new_tokens": N})`` in both libraries under the same seed, so both make the
same audio (checked). torch.set_num_threads(2) for both. The machine is shared and noisy:
medians of the repeats and their ratio are printed.

    python bench/bark.py [--repeats 3] [--layers 4] [--semantic-tokens 48]
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

TEXT = "hello my dog is cute"
VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "hello", "my", "dog", "is", "cute",
         *"abcdefghijklmnopqrstuvwxyz"]
GENERATION = {
    "semantic_config": {"eos_token_id": 10_000, "max_input_semantic_length": 256,
                        "max_new_tokens": 768, "semantic_infer_token": 129_599,
                        "semantic_rate_hz": 49.9, "semantic_vocab_size": 10_000,
                        "text_encoding_offset": 10_048, "text_pad_token": 129_595,
                        "temperature": 0.7, "do_sample": True},
    "coarse_acoustics_config": {"coarse_infer_token": 12_050, "coarse_rate_hz": 75,
                                "coarse_semantic_pad_token": 12_048, "max_coarse_history": 630,
                                "max_coarse_input_length": 256, "n_coarse_codebooks": 2,
                                "sliding_window_len": 60, "temperature": 0.7, "do_sample": True},
    "fine_acoustics_config": {"max_fine_history_length": 512, "max_fine_input_length": 1024,
                              "n_fine_codebooks": 8, "temperature": 0.5},
    "sample_rate": 24_000, "codebook_size": 1024}


def build(folder: Path, layers: int) -> Path:
    import torch
    from transformers import (BarkCoarseConfig, BarkConfig, BarkFineConfig, BarkModel,
                              BarkSemanticConfig, BertTokenizer, EncodecConfig, GenerationConfig)

    shared = dict(hidden_size=768, num_heads=12, num_layers=layers, block_size=1024)
    config = BarkConfig(
        semantic_config=BarkSemanticConfig(input_vocab_size=129_600, output_vocab_size=10_048,
                                           bias=False, **shared).to_dict(),
        coarse_acoustics_config=BarkCoarseConfig(input_vocab_size=12_096, output_vocab_size=12_096,
                                                 bias=False, **shared).to_dict(),
        fine_acoustics_config=BarkFineConfig(input_vocab_size=1056, output_vocab_size=1056,
                                             n_codes_total=8, n_codes_given=1, **shared).to_dict(),
        codec_config=EncodecConfig().to_dict())
    torch.manual_seed(0)
    model = BarkModel(config).eval()
    with torch.no_grad():  # the EOS rarer than at random init: every run makes N tokens
        model.semantic.lm_head.weight[10_000] -= 1.0
    model.generation_config = GenerationConfig()
    model.save_pretrained(folder)
    (folder / "generation_config.json").write_text(json.dumps(GENERATION))
    (folder / "vocab.txt").write_text("\n".join(VOCAB) + "\n")
    BertTokenizer(str(folder / "vocab.txt")).save_pretrained(folder)
    return folder


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--semantic-tokens", type=int, default=48)
    args = parser.parse_args()

    import numpy as np
    import torch
    import transformers

    import lightpipe

    torch.set_num_threads(2)
    call = {"forward_params": {"semantic_max_new_tokens": args.semantic_tokens}}
    with tempfile.TemporaryDirectory() as tmp:
        folder = str(build(Path(tmp), args.layers))
        pipes = {"lightpipe": lightpipe.pipeline("text-to-audio", model=folder),
                 "transformers": transformers.pipeline("text-to-audio", model=folder)}
        rates: dict[str, list[float]] = {name: [] for name in pipes}
        outputs: dict[str, dict] = {}
        for repeat in range(args.repeats):
            order = list(pipes) if repeat % 2 == 0 else list(reversed(pipes))
            for name in order:
                torch.manual_seed(repeat)
                start = time.perf_counter()
                result = pipes[name](TEXT, **call)
                elapsed = time.perf_counter() - start
                rates[name].append(len(result["audio"]) / result["sampling_rate"] / elapsed)
                outputs[name] = result
        ours, theirs = outputs["lightpipe"]["audio"], outputs["transformers"]["audio"]
        same = ours.shape == theirs.shape and float(np.abs(ours - theirs).max()) < 1e-4
    mo, mt = statistics.median(rates["lightpipe"]), statistics.median(rates["transformers"])
    print(f"Bark (bark-small shapes, {args.layers} layers per stage), {args.semantic_tokens} "
          f"semantic tokens, {len(ours) / 24000:.2f} s of audio a run, {args.repeats} repeats, "
          "2 threads")
    print(f"lightpipe    median {mo:.3f} s audio / s  (runs {[round(r, 3) for r in rates['lightpipe']]})")
    print(f"transformers median {mt:.3f} s audio / s  (runs {[round(r, 3) for r in rates['transformers']]})")
    print(f"ratio lightpipe / transformers: {mo / mt:.2f}x; same audio: {same}")


if __name__ == "__main__":
    main()
