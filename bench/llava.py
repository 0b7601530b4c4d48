"""LLaVA generate() speed: lightpipe vs transformers on a small random LlavaForConditionalGeneration.

A random model built by transformers at run time (CLIP vision tower 256 wide, 4 layers, 224x224
images in 14x14 patches = 256 image tokens; Llama 512 wide, 4 layers, 8,000-token vocabulary;
float32), saved and loaded by both libraries in ONE process. The prompt is one image plus ~20
text tokens; ``generate(max_new_tokens=16, min_new_tokens=16)`` greedy (16 steps each run).
Repeats are interleaved (lightpipe, transformers, lightpipe, ...); medians and their ratio are
printed, and the two libraries' output ids compared.

    python bench/llava.py [--repeats 5] [--threads 2]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine, median, table  # noqa: E402


def build(folder: str) -> int:
    import torch
    import transformers

    vision = transformers.CLIPVisionConfig(hidden_size=256, intermediate_size=1024, num_hidden_layers=4,
                                           num_attention_heads=4, image_size=224, patch_size=14)
    text = transformers.LlamaConfig(vocab_size=8000, hidden_size=512, intermediate_size=1408,
                                    num_hidden_layers=4, num_attention_heads=8, num_key_value_heads=8,
                                    max_position_embeddings=1024, bos_token_id=1, eos_token_id=2)
    config = transformers.LlavaConfig(vision_config=vision.to_dict(), text_config=text.to_dict(),
                                      image_token_index=7999, image_seq_length=256)
    torch.manual_seed(0)
    transformers.LlavaForConditionalGeneration(config).eval().save_pretrained(folder)
    return 7999


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    import torch
    import transformers

    from lightpipe.config import Config
    from lightpipe.models import model_class

    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as folder:
        image_token = build(folder)
        ours = model_class(Config.from_folder(Path(folder)), "AutoModelForImageTextToText").from_pretrained(folder)
        ref = transformers.LlavaForConditionalGeneration.from_pretrained(folder).eval()
    generator = torch.Generator().manual_seed(0)
    text = torch.randint(3, 7000, (1, 20), generator=generator)
    input_ids = torch.cat([text[:, :3], torch.full((1, 256), image_token), text[:, 3:]], dim=1)
    inputs = {"input_ids": input_ids, "attention_mask": torch.ones_like(input_ids),
              "pixel_values": torch.randn(1, 3, 224, 224, generator=generator)}
    options = dict(max_new_tokens=16, min_new_tokens=16, do_sample=False)
    times = {"lightpipe": [], "transformers": []}
    outputs = {}
    with torch.inference_mode():
        for name, model in (("lightpipe", ours), ("transformers", ref)):  # warm-up
            model.generate(**inputs, max_new_tokens=2, do_sample=False)
        for _ in range(args.repeats):
            for name, model in (("lightpipe", ours), ("transformers", ref)):
                start = time.perf_counter()
                outputs[name] = model.generate(**inputs, **options)
                times[name].append(time.perf_counter() - start)
    same = outputs["lightpipe"].tolist() == outputs["transformers"].tolist()
    ours_s, ref_s = median(times["lightpipe"]), median(times["transformers"])
    print(machine())
    print(table([["generate 16 tokens (1 image, 279-token prompt)", ref_s, ours_s, ref_s / ours_s,
                  "yes" if same else "NO"]],
                ["case", "transformers s (median)", "lightpipe s (median)",
                 "speed-up (tf/lp)", "same ids"]))


if __name__ == "__main__":
    main()
