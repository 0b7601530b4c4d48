"""Build the visual-question-answering and image-to-image golden fixtures with the
transformers 4.57 pipelines.

transformers 5 removed these two pipelines (the models remain), so the reference outputs come
from transformers==4.57.6, run once in its own virtualenv (never imported by lightpipe or its
tests; no torchvision there, so 4.57 uses its PIL/numpy image processors):

    python -m venv /tmp/venv457
    /tmp/venv457/bin/pip install torch transformers==4.57.6 tokenizers safetensors numpy pillow
    /tmp/venv457/bin/pip install --target /tmp/pillow-tests pillow==<the tests' Pillow version>
    PYTHONPATH=/tmp/pillow-tests /tmp/venv457/bin/python tests/golden/make_multimodal.py

(Pillow's bicubic resize changed between 12.x and 13.x, by one level on some pixels: the
goldens are made with the Pillow the tests run with, 12.3.0 when they were made; cases.json
records the version.)

It writes, under tests/golden/multimodal/:
  vilt/          a tiny ViLT question-answering checkpoint (hidden 32, 2 layers, 16-pixel
                 patches, 12 answers), a ~100-token BERT WordPiece tokenizer (model_max_length
                 40, as the Hub's ViLT) and a ViltImageProcessor (short side 64);
  swin2sr/       a tiny Swin2SR x2 super-resolution checkpoint (embed 16, 2 stages of 2 layers,
                 window 4; the lightweight pixelshuffledirect upsampler, as the classical one's
                 64 fixed features would make the file 750 KB: tests/models/test_swin2sr.py
                 covers every upsampler against transformers 5) and its Swin2SRImageProcessor;
  images/        small PNG test images (odd sizes; RGB, RGBA, grayscale);
  cases.json     task, pipeline() arguments, inputs (image paths relative to this folder; a
                 "pil" flag asks for PIL images instead), call arguments, and the 4.57
                 pipeline's outputs or the exception it raised. Images come back as
                 {"size", "mode", "pixels": base64 of the raw bytes}.
tests/pipelines/test_visual_question_answering.py and tests/pipelines/test_image_to_image.py
replay every case with lightpipe. Everything is seeded: a re-run writes the same files.
"""

from __future__ import annotations

import base64
import json
import shutil
import tempfile
from pathlib import Path

import numpy as np
import torch
import transformers
from PIL import Image

HERE = Path(__file__).resolve().parent / "multimodal"

WORDS = ["what", "is", "in", "the", "image", "how", "many", "cats", "are", "there", "color",
         "of", "sky", "a", "dog", "where", "who", "wearing", "this", "picture", "on", "table",
         "red", "blue", "green", "yes", "no", "person", "car", "tree", "does", "have", "hat",
         "which", "animal", "can", "you", "see", "left", "right", "side", "big", "small"]
ANSWERS = ["yes", "no", "2", "cat", "dog", "red", "blue", "green", "hat", "nothing", "tree", "car"]
QUESTIONS = ["What is in the image?", "How many cats are there?", "What color is the sky?",
             "Is this a dog?", "Who is wearing a hat on the left side of the picture?"]
LONG_QUESTION = " ".join(["what is the big red car on the left side of the table"] * 5) + "?"

VILT = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=37,
            image_size=64, patch_size=16, max_position_embeddings=40)
SWIN2SR = dict(image_size=32, embed_dim=16, depths=[2, 2], num_heads=[2, 2], window_size=4,
               upscale=2, upsampler="pixelshuffledirect")


# --- images ----------------------------------------------------------------------------------

def make_images(folder: Path) -> dict[str, str]:
    """Smooth gradients with a little noise (so resizing matters), in odd sizes and modes."""
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    specs = {"a": (37, 53, "RGB"), "b": (70, 41, "RGB"), "c": (50, 50, "RGB"),
             "d": (37, 53, "RGB"), "e": (29, 19, "RGBA"), "f": (33, 64, "L"),
             "g": (13, 21, "RGB"), "h": (13, 21, "RGB"), "i": (16, 16, "RGB"), "j": (5, 3, "RGB")}
    names = {}
    for name, (height, width, mode) in specs.items():
        rows, cols = np.mgrid[0:height, 0:width]
        base = np.stack([rows * 255 / max(height - 1, 1), cols * 255 / max(width - 1, 1),
                         (rows + cols) * 127 / max(height + width - 2, 1)], axis=-1)
        pixels = np.clip(base + rng.normal(0, 25, base.shape), 0, 255).astype(np.uint8)
        image = Image.fromarray(pixels)
        if mode == "RGBA":
            alpha = Image.fromarray(((rows * 9 + cols * 5) % 256).astype(np.uint8))
            image.putalpha(alpha)
        elif mode == "L":
            image = image.convert("L")
        image.save(folder / f"{name}.png")
        names[name] = f"images/{name}.png"
    return names


# --- checkpoints -----------------------------------------------------------------------------

def build_vilt(folder: Path) -> None:
    chars = [chr(c) for c in range(ord("a"), ord("z") + 1)] + list("0123456789?.,!'")
    vocab = list(dict.fromkeys(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + WORDS + chars
                               + ["##" + c for c in chars]))
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "vocab.txt"
        path.write_text("\n".join(vocab) + "\n", encoding="utf-8")
        tokenizer = transformers.BertTokenizerFast(vocab_file=str(path), model_max_length=40)
    tokenizer.save_pretrained(folder)
    config = transformers.ViltConfig(
        vocab_size=len(vocab), id2label=dict(enumerate(ANSWERS)),
        label2id={a: i for i, a in enumerate(ANSWERS)}, **VILT)
    torch.manual_seed(0)
    model = transformers.ViltForQuestionAnswering(config).eval()
    with torch.no_grad():  # wider than the default init: answers depend on the inputs
        for name, param in model.named_parameters():
            if param.dim() > 1:
                param.normal_(0.0, 0.15 if name.startswith("classifier") else 0.35)
    model.save_pretrained(folder)
    transformers.ViltImageProcessor(size={"shortest_edge": 64}).save_pretrained(folder)


def build_swin2sr(folder: Path) -> None:
    config = transformers.Swin2SRConfig(**SWIN2SR)
    torch.manual_seed(1)
    model = transformers.Swin2SRForImageSuperResolution(config).eval()
    model.save_pretrained(folder)
    transformers.Swin2SRImageProcessor().save_pretrained(folder)


# --- cases -----------------------------------------------------------------------------------

def case(task: str, model: str, call: dict, init: dict | None = None, pil: bool = False) -> dict:
    """``call``: the pipeline call's arguments; "inputs" is the positional one."""
    return {"task": task, "model": model, "call": call, "init": init or {}, "pil": pil}


def cases(images: dict[str, str]) -> list[dict]:
    a, b, c, d, e, f = (images[k] for k in "abcdef")
    q1, q2, q3, q4, q5 = QUESTIONS
    vqa = "visual-question-answering"
    out = [
        case(vqa, "vilt", {"image": a, "question": q1}),
        case(vqa, "vilt", {"image": a, "question": q1}, pil=True),
        case("vqa", "vilt", {"image": b, "question": q2}),
        case(vqa, "vilt", {"inputs": {"image": c, "question": q3}}),
        case(vqa, "vilt", {"inputs": [{"image": a, "question": q4}, {"image": b, "question": q5},
                                      {"image": e, "question": q1}]}),
        case(vqa, "vilt", {"image": [a, b, c], "question": q2}),
        case(vqa, "vilt", {"image": f, "question": [q1, q3, q5]}),
        case(vqa, "vilt", {"image": [a, e], "question": [q1, q2, q4]}),
        case(vqa, "vilt", {"image": [a, e], "question": [q1, q2, q4]}, pil=True),
        case(vqa, "vilt", {"image": a, "question": q1, "top_k": 2}),
        case(vqa, "vilt", {"image": b, "question": q3, "top_k": 1}),
        case(vqa, "vilt", {"image": b, "question": q3, "top_k": 100}),
        case(vqa, "vilt", {"image": c, "question": q5, "top_k": 12}),
        case(vqa, "vilt", {"image": c, "question": q5, "top_k": 0}),
        case(vqa, "vilt", {"image": c, "question": q2}, init={"top_k": 3}),
        case(vqa, "vilt", {"image": a, "question": q1, "timeout": 5.0}),
        case(vqa, "vilt", {"image": a, "question": q3, "padding": "max_length"}),
        case(vqa, "vilt", {"image": a, "question": LONG_QUESTION, "truncation": True}),
        case(vqa, "vilt", {"image": a, "question": LONG_QUESTION}),  # 4.57: past the positions
        # batches: 4.57 stacks pixel values, so only images of one size batch there
        case(vqa, "vilt", {"image": [a, d], "question": [q1, q2, q5], "batch_size": 2}),
        case(vqa, "vilt", {"inputs": [{"image": a, "question": q1}, {"image": d, "question": q5},
                                      {"image": a, "question": q4}], "batch_size": 3}),
        case(vqa, "vilt", {"image": [a, d], "question": q3, "batch_size": 2, "top_k": 3}),
        case(vqa, "vilt", {"image": [a, d], "question": q3, "batch_size": 2},
             init={"batch_size": 4}),
    ]
    g, h, i, j = (images[k] for k in "ghij")
    i2i = "image-to-image"
    out += [
        case(i2i, "swin2sr", {"inputs": g}),
        case(i2i, "swin2sr", {"inputs": g}, pil=True),
        case(i2i, "swin2sr", {"inputs": i, "timeout": 5.0}),
        case(i2i, "swin2sr", {"inputs": j}),
        case(i2i, "swin2sr", {"inputs": images["e"]}),
        case(i2i, "swin2sr", {"inputs": images["f"]}),
        case(i2i, "swin2sr", {"inputs": [g, i, h]}),
        case(i2i, "swin2sr", {"inputs": [g, h], "batch_size": 2}),
        case(i2i, "swin2sr", {"inputs": [g, h, g], "batch_size": 2}, pil=True),
        case(i2i, "swin2sr", {"inputs": [i]}),
    ]
    return out


def jsonable(value):
    if isinstance(value, Image.Image):
        return {"size": list(value.size), "mode": value.mode,
                "pixels": base64.b64encode(value.tobytes()).decode("ascii")}
    if isinstance(value, torch.Tensor):
        return value.tolist()
    if isinstance(value, dict):
        return {k: jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    return value


def resolve(value, pil: bool):
    """Relative image paths -> absolute paths, or opened PIL images when ``pil``."""
    if isinstance(value, str) and value.startswith("images/"):
        path = HERE / value
        return Image.open(path) if pil else str(path)
    if isinstance(value, list):
        return [resolve(v, pil) for v in value]
    if isinstance(value, dict):
        return {k: resolve(v, pil) for k, v in value.items()}
    return value


def run(spec: dict, pipes: dict) -> dict:
    key = (spec["task"], spec["model"], json.dumps(spec["init"], sort_keys=True))
    try:
        if key not in pipes:
            pipes[key] = transformers.pipeline(spec["task"], model=str(HERE / spec["model"]),
                                               **spec["init"])
        call = resolve(dict(spec["call"]), spec["pil"])
        inputs = call.pop("inputs", None)
        output = pipes[key](inputs, **call) if inputs is not None else pipes[key](**call)
        return {**spec, "output": jsonable(output)}
    except Exception as err:  # noqa: BLE001 - recorded as the expected failure
        return {**spec, "error": type(err).__name__, "message": str(err)[:300]}


def main() -> None:
    shutil.rmtree(HERE, ignore_errors=True)
    HERE.mkdir(parents=True)
    images = make_images(HERE / "images")
    build_vilt(HERE / "vilt")
    build_swin2sr(HERE / "swin2sr")
    for name in ("vilt", "swin2sr"):
        size = sum(p.stat().st_size for p in (HERE / name).iterdir())
        assert size < 300_000, f"{name} is {size} bytes"
    pipes: dict = {}
    results = [run(spec, pipes) for spec in cases(images)]
    import PIL

    data = {"transformers": transformers.__version__, "torch": torch.__version__,
            "pillow": PIL.__version__, "cases": results}
    (HERE / "cases.json").write_text(json.dumps(data, indent=1) + "\n", encoding="utf-8")
    failed = [r for r in results if "error" in r]
    print(f"{len(results)} cases, {len(failed)} errors:",
          [(r["task"], r["call"].get("question", "")[:20], r["error"], r["message"][:80]) for r in failed])


if __name__ == "__main__":
    torch.set_num_threads(1)
    main()
