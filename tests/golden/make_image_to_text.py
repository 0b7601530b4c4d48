"""Build the image-to-text golden fixtures with the transformers 4.57 pipeline.

transformers 5 removed the image-to-text pipeline, so the reference outputs come from
transformers==4.57.6, run once in its own virtualenv (never imported by lightpipe or its tests):

    python -m venv /tmp/venv457
    /tmp/venv457/bin/pip install torch transformers==4.57.6 tokenizers safetensors numpy
    /tmp/venv457/bin/pip install --target /tmp/pil12 pillow==12.3.0
    PYTHONPATH=/tmp/pil12 /tmp/venv457/bin/python tests/golden/make_image_to_text.py

Pillow must be the version the tests run with (12.3.0 here): pillow 13 rounds some bilinear
resizes differently by one level, which changes the pixels and so, over long captions, tokens.

It writes, under tests/golden/image_to_text/:
  images/       small test images: RGB JPEG, RGBA PNG, grayscale, palette, an EXIF-rotated
                JPEG, a tiny and a wide image (odd sizes: every one is resized);
  vit-gpt2/     a tiny deterministic VisionEncoderDecoderModel (ViT hidden 32, 2 layers +
                GPT-2 n_embd 32, 2 layers, cross-attention), a GPT-2 byte-level BPE tokenizer
                and a ViTImageProcessor, without generation_config.json (so the end token comes
                from the decoder's config, as on the Hub's vit-gpt2 captioners); its tokenizer
                has GPT-2's lack of a pad token, so 4.57 refuses to batch (recorded as errors);
  vit-gpt2-proj/ the same with a wider encoder (48: the enc_to_dec_proj projection) and a
                generation_config.json with max_length 12 (it replaces the pipeline's default
                max_new_tokens), no_repeat_ngram_size 2 and a pad token (batching works);
  blip/         a tiny BlipForConditionalGeneration with a BLIP WordPiece tokenizer and a
                BlipImageProcessor: captions with and without a prompt;
  cases.json    pipeline() arguments, inputs (image names), call arguments and the 4.57
                pipeline's outputs, or the exception it raised.
tests/pipelines/test_image_to_text.py replays every case with lightpipe.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import tempfile
from pathlib import Path

os.environ["TOKENIZERS_PARALLELISM"] = "false"

import numpy as np  # noqa: E402
import PIL  # noqa: E402
import torch  # noqa: E402
import transformers  # noqa: E402
from PIL import Image  # noqa: E402
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers  # noqa: E402

HERE = Path(__file__).resolve().parent / "image_to_text"

CAPTIONS = [
    "two birds are standing next to each other",
    "a man riding a wave on top of a surfboard",
    "a cat sitting on a couch next to a remote control",
    "a plate of food with broccoli and a fork",
    "a group of people standing around a kitchen",
    "a red double decker bus driving down a street",
]


def make_images(folder: Path) -> None:
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True, exist_ok=True)

    def noise(height, width, channels=3):
        small = rng.integers(0, 256, (max(2, height // 8), max(2, width // 8), channels), dtype=np.uint8)
        return np.asarray(Image.fromarray(small.squeeze()).resize((width, height), Image.BILINEAR))

    Image.fromarray(noise(37, 53)).save(folder / "rgb.jpg", quality=95)
    Image.fromarray(noise(61, 45)).save(folder / "rgb.png")
    Image.fromarray(noise(40, 29, 4), "RGBA").save(folder / "rgba.png")
    Image.fromarray(noise(33, 70, 1), "L").save(folder / "gray.png")
    Image.fromarray(noise(50, 31)).convert("P", palette=Image.Palette.ADAPTIVE, colors=16).save(
        folder / "palette.png")
    exif = Image.Exif()
    exif[0x0112] = 6  # stored sideways: rotate 270 to display
    Image.fromarray(noise(30, 64)).save(folder / "exif.jpg", exif=exif, quality=95)
    Image.fromarray(noise(5, 7)).save(folder / "tiny.png")
    Image.fromarray(noise(20, 160)).save(folder / "wide.png")


def gpt2_tokenizer(folder: Path, pad: bool) -> None:
    """A byte-level BPE with GPT-2's one special token <|endoftext|> (id 0: bos, eos, unk; also
    the pad token when ``pad``: without one, the 4.57 pipeline refuses to batch)."""
    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=300, show_progress=False, special_tokens=["<|endoftext|>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    backend.train_from_iterator(CAPTIONS * 5, trainer)
    model = json.loads(backend.to_str())["model"]
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "vocab.json").write_text(json.dumps(model["vocab"]), encoding="utf-8")
        merges = [m if isinstance(m, str) else " ".join(m) for m in model["merges"]]
        (Path(tmp) / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n",
                                              encoding="utf-8")
        tokenizer = transformers.GPT2TokenizerFast(
            vocab_file=str(Path(tmp) / "vocab.json"), merges_file=str(Path(tmp) / "merges.txt"),
            model_max_length=300, **({"pad_token": "<|endoftext|>"} if pad else {}))
    tokenizer.save_pretrained(folder)


def build(folder: Path, encoder_width: int, positions: int, seed: int, generation: dict | None,
          pad: bool, end_bias: float) -> None:
    gpt2_tokenizer(folder, pad)
    tokenizer = transformers.AutoTokenizer.from_pretrained(folder)
    transformers.ViTImageProcessor(size={"height": 32, "width": 32}).save_pretrained(folder)
    encoder = transformers.ViTConfig(hidden_size=encoder_width, num_hidden_layers=2,
                                     num_attention_heads=4, intermediate_size=37, image_size=32,
                                     patch_size=8)
    decoder = transformers.GPT2Config(vocab_size=len(tokenizer), n_embd=32, n_layer=2, n_head=4,
                                      n_positions=positions, n_inner=48, bos_token_id=0, eos_token_id=0,
                                      is_decoder=True, add_cross_attention=True)
    config = transformers.VisionEncoderDecoderConfig.from_encoder_decoder_configs(
        encoder, decoder, decoder_start_token_id=0, pad_token_id=0)
    torch.manual_seed(seed)
    model = transformers.VisionEncoderDecoderModel(config=config).eval()
    with torch.no_grad():  # wide weights: peaked choices, no near-ties
        for name, param in model.named_parameters():
            if param.dim() > 1 and "wpe" not in name:
                param.normal_(0.0, 0.3)
        # a bias of the final norm towards the end token's embedding: captions end on their own
        wte = model.decoder.transformer.wte.weight
        model.decoder.transformer.ln_f.bias.copy_(end_bias * wte[0] / wte[0].norm() ** 2)
    if generation:
        for key, value in generation.items():
            setattr(model.generation_config, key, value)
    model.save_pretrained(folder)
    if not generation:
        (folder / "generation_config.json").unlink()


def build_blip(folder: Path) -> None:
    """BlipForConditionalGeneration (vision hidden 32, 2 layers; text decoder hidden 32, 2
    layers), a WordPiece tokenizer saved as BLIP's ([DEC] bos, [ENC]) and a BlipImageProcessor."""
    words = sorted({word for caption in CAPTIONS for word in caption.split()} |
                   {"photo", "photography", "picture", "of", "an", "image"})
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + words + ["##s", "##ing", "##ed"]
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "vocab.txt").write_text("\n".join(vocab) + "\n", encoding="utf-8")
        tokenizer = transformers.BertTokenizerFast(vocab_file=str(Path(tmp) / "vocab.txt"),
                                                   bos_token="[DEC]", model_max_length=64,
                                                   additional_special_tokens=["[ENC]"],
                                                   model_input_names=["input_ids", "attention_mask"])
    tokenizer.save_pretrained(folder)
    transformers.BlipImageProcessor(size={"height": 32, "width": 32}).save_pretrained(folder)
    vision = dict(hidden_size=32, intermediate_size=37, num_hidden_layers=2, num_attention_heads=4,
                  image_size=32, patch_size=8)
    text = dict(vocab_size=len(tokenizer), hidden_size=32, encoder_hidden_size=32,
                intermediate_size=37, num_hidden_layers=2, num_attention_heads=4,
                max_position_embeddings=300, bos_token_id=tokenizer.bos_token_id,
                pad_token_id=tokenizer.pad_token_id, sep_token_id=tokenizer.sep_token_id)
    config = transformers.BlipConfig(vision_config=vision, text_config=text, projection_dim=16)
    torch.manual_seed(2)
    model = transformers.BlipForConditionalGeneration(config).eval()
    with torch.no_grad():
        for name, param in model.named_parameters():
            if param.dim() > 1 and "position" not in name:
                param.normal_(0.0, 0.3)
            elif name.endswith(("predictions.bias", "predictions.decoder.bias")):  # [SEP] (the end) likely enough
                param[tokenizer.sep_token_id] = 4.2
    model.save_pretrained(folder)


IMAGES = ["rgb.jpg", "rgb.png", "rgba.png", "gray.png", "palette.png", "exif.jpg", "tiny.png",
          "wide.png"]


def case(model: str, inputs, init: dict | None = None, **kwargs) -> dict:
    return {"model": model, "inputs": inputs, "init": init or {}, "kwargs": kwargs}


def cases() -> list[dict]:
    four = IMAGES[:4]
    out = []
    for model in ("vit-gpt2", "vit-gpt2-proj"):
        out += [
            case(model, IMAGES[0]),
            case(model, IMAGES),
            case(model, IMAGES, batch_size=3),
            case(model, IMAGES[5], max_new_tokens=5),
            case(model, four, max_new_tokens=5, batch_size=2),
            case(model, IMAGES[1], generate_kwargs={"num_beams": 3}),
            case(model, four, batch_size=4, generate_kwargs={"num_beams": 3, "max_new_tokens": 8}),
            case(model, IMAGES[2], generate_kwargs={"max_length": 6}),
            case(model, IMAGES[3], max_new_tokens=10, generate_kwargs={"repetition_penalty": 1.5}),
            case(model, IMAGES[4], generate_kwargs={"no_repeat_ngram_size": 2, "max_new_tokens": 15}),
            case(model, IMAGES[6], generate_kwargs={"num_beams": 2, "num_return_sequences": 2,
                                                    "max_new_tokens": 6}),
            case(model, IMAGES[7], generate_kwargs={"min_new_tokens": 9, "max_new_tokens": 12}),
            case(model, four, init={"max_new_tokens": 7}),
            case(model, four, init={"num_beams": 2}, batch_size=2),
            case(model, IMAGES[0], timeout=5.0),
            case(model, {"base64": "tiny.png"}),
            case(model, IMAGES[0], max_new_tokens=4, generate_kwargs={"max_new_tokens": 4}),
            case(model, IMAGES[0], prompt="a photo of"),
            case(model, IMAGES[0], prompt=["a", "b"]),
        ]
    out += [
        case("blip", IMAGES[0]),
        case("blip", IMAGES),
        case("blip", IMAGES, batch_size=3),
        case("blip", IMAGES[5], max_new_tokens=5),
        case("blip", IMAGES[1], prompt="a photo of"),
        case("blip", four, prompt="a picture of", batch_size=2, max_new_tokens=6),
        case("blip", four, prompt="a photo of"),
        case("blip", IMAGES[2], prompt="an image of", generate_kwargs={"num_beams": 3}),
        case("blip", IMAGES[3], generate_kwargs={"num_beams": 2, "num_return_sequences": 2,
                                                 "max_new_tokens": 7}),
        case("blip", IMAGES[4], prompt="a photo of", max_new_tokens=8,
             generate_kwargs={"repetition_penalty": 1.3, "no_repeat_ngram_size": 2}),
        case("blip", four, init={"max_new_tokens": 6, "num_beams": 2}, batch_size=4),
        case("blip", IMAGES[0], prompt=42),
    ]
    return out


def jsonable(value):
    if isinstance(value, torch.Tensor):
        return value.tolist()
    if isinstance(value, dict):
        return {k: jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    return value


def resolve_inputs(inputs):
    if isinstance(inputs, list):
        return [resolve_inputs(item) for item in inputs]
    if isinstance(inputs, dict):
        return base64.b64encode((HERE / "images" / inputs["base64"]).read_bytes()).decode("ascii")
    return str(HERE / "images" / inputs)


def run(spec: dict, pipes: dict) -> dict:
    key = (spec["model"], json.dumps(spec["init"], sort_keys=True))
    try:
        if key not in pipes:
            pipes[key] = transformers.pipeline("image-to-text", model=str(HERE / spec["model"]),
                                               **spec["init"])
        output = pipes[key](resolve_inputs(spec["inputs"]), **spec["kwargs"])
        return {**spec, "output": jsonable(output)}
    except Exception as err:  # noqa: BLE001 - recorded as the expected failure
        return {**spec, "error": type(err).__name__, "message": str(err)[:300]}


def main() -> None:
    shutil.rmtree(HERE, ignore_errors=True)
    HERE.mkdir(parents=True)
    make_images(HERE / "images")
    build(HERE / "vit-gpt2", encoder_width=32, positions=300, seed=0, generation=None,
          pad=False, end_bias=2.3)
    build(HERE / "vit-gpt2-proj", encoder_width=48, positions=64, seed=1,
          generation={"max_length": 12, "no_repeat_ngram_size": 2}, pad=True, end_bias=2.0)
    build_blip(HERE / "blip")
    for name in ("vit-gpt2", "vit-gpt2-proj", "blip"):
        size = sum(p.stat().st_size for p in (HERE / name).iterdir())
        assert size < 350_000, f"{name} is {size} bytes"
    pipes: dict = {}
    results = [run(spec, pipes) for spec in cases()]
    data = {"transformers": transformers.__version__, "torch": torch.__version__,
            "pillow": PIL.__version__, "cases": results}
    (HERE / "cases.json").write_text(json.dumps(data, indent=1, ensure_ascii=False) + "\n",
                                     encoding="utf-8")
    failed = [r for r in results if "error" in r]
    print(f"{len(results)} cases, {len(failed)} errors:", [(r["model"], r["error"]) for r in failed])
    lengths = [len(r["output"][0]["generated_text"]) if isinstance(r["output"][0], dict)
               else len(r["output"][0][0]["generated_text"]) for r in results if "output" in r]
    print("caption lengths (chars):", lengths)


if __name__ == "__main__":
    torch.set_num_threads(1)
    main()
