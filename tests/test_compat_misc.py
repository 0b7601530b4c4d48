"""Smaller compatibility items of issue 15, each against the reference: TAPAS reads
``model_max_length`` from tokenizer_config.json (a 96-position model drops rows to fit),
images in chat messages are converted as the reference's processor converts them (RGBA), and
every task `lightpipe tasks` shows as ready has a default model of a family lightpipe runs."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import transformers

import lightpipe
from lightpipe.families import FAMILIES
from lightpipe.pipelines import SUPPORTED_TASKS

from .conftest import assert_outputs_close
from .fixtures.llava import llava_path  # noqa: F401  (fixture)
from .fixtures.table import _build, reference_frame

# --- TAPAS: model_max_length from tokenizer_config.json --------------------------------------
LONG = {"Name": [f"name {i} the of a" for i in range(60)],
        "Year": [str(1900 + i) for i in range(60)],
        "Count": [str(i * 7) for i in range(60)]}  # ~750 tokens


@pytest.fixture(scope="module", params=["wtq", "sqa"])
def tapas96(request, tmp_path_factory):
    """A TAPAS with 96 positions whose tokenizer_config.json says model_max_length=96."""
    extra = {} if request.param == "wtq" else dict(
        num_aggregation_labels=0, aggregation_labels=None, no_aggregation_label_index=None,
        reset_position_index_per_cell=False)
    folder = _build(tmp_path_factory.mktemp("tapas96") / request.param,
                    max_position_embeddings=96, **extra)
    path = folder / "tokenizer_config.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), "model_max_length": 96}))
    return folder


@pytest.mark.parametrize("kwargs", [{}, {"truncation": True}, {"padding": "max_length"},
                                    {"batch_size": 1}])
def test_tapas_drops_rows_to_fit_model_max_length(tapas96, kwargs):
    ours = lightpipe.pipeline("table-question-answering", model=str(tapas96))
    theirs = transformers.pipeline("table-question-answering", model=str(tapas96))
    assert ours.tokenizer.model_max_length == theirs.tokenizer.model_max_length == 96
    for query in (["what is the count of name 3?", "year"], "how many names?"):
        assert_outputs_close(ours(table=LONG, query=query, **kwargs),
                             theirs(table=reference_frame(LONG), query=query, **kwargs))
    encoded = ours.tokenizer(table=LONG, queries="year", truncation="drop_rows_to_fit")
    assert len(encoded["input_ids"]) <= 96
    # sequential runs too (the reference's fails on the dropped rows: KeyError)
    assert ours(table=LONG, query=["year", "name"], sequential=True)


def test_tapas_default_model_max_length(tapas_path, tmp_path):
    """Without model_max_length in tokenizer_config.json: the reference class's 512."""
    import shutil

    folder = tmp_path / "tapas"
    shutil.copytree(tapas_path, folder)
    path = folder / "tokenizer_config.json"
    settings = json.loads(path.read_text())
    settings.pop("model_max_length", None)
    path.write_text(json.dumps(settings))
    assert lightpipe.AutoTokenizer.from_pretrained(folder).model_max_length == \
        transformers.AutoTokenizer.from_pretrained(folder).model_max_length == 512


# --- image-text-to-text: images inside chat messages ------------------------------------------

@pytest.fixture(scope="module")
def rgba(tmp_path_factory):
    """A 48x40 RGBA image with transparent, half-transparent and opaque pixels, and its PNG."""
    from PIL import Image

    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, (40, 48, 4), dtype=np.uint8)
    pixels[..., 3] = rng.choice([0, 128, 255], size=(40, 48))
    image = Image.fromarray(pixels, "RGBA")
    path = tmp_path_factory.mktemp("rgba") / "rgba.png"
    image.save(path)
    return image, path


def _chat(image_part):
    return [{"role": "user", "content": [{"type": "image", **image_part},
                                         {"type": "text", "text": "Describe it."}]}]


def test_chat_rgba_image_matches_reference(llava_path, rgba):
    """A PIL RGBA image in a chat reaches the image processor as it is (which composites it on
    white); a path is loaded as RGB (alpha dropped), as the reference does both."""
    ours = lightpipe.pipeline("image-text-to-text", model=str(llava_path))
    theirs = transformers.pipeline("image-text-to-text", model=str(llava_path))
    image, path = rgba
    answers = []
    for part in ({"image": image}, {"path": str(path)}, {"image": str(path)}):
        want = theirs(text=_chat(part), max_new_tokens=8)
        assert ours(text=_chat(part), max_new_tokens=8) == want
        answers.append(want[0]["generated_text"][-1]["content"])
    assert answers[0] != answers[1] == answers[2]  # compositing is not dropping the alpha
    prompt = "USER: <image>\nWhat is it? ASSISTANT:"
    assert ours(images=image, text=prompt, max_new_tokens=8) == \
        theirs(images=image, text=prompt, max_new_tokens=8)


def test_llava_processor_pixels_of_rgba(llava_path, rgba):
    from lightpipe.processing.llava import LlavaProcessor

    image, _ = rgba
    reference = transformers.AutoProcessor.from_pretrained(llava_path)
    chat = _chat({"image": image})
    want = reference.apply_chat_template(chat, add_generation_prompt=True, tokenize=True,
                                         return_dict=True, return_tensors="pt")["pixel_values"]
    got = LlavaProcessor.from_pretrained(llava_path)(text="<image>", images=[image])["pixel_values"]
    torch.testing.assert_close(torch.as_tensor(got), want, rtol=0, atol=1e-5)


# --- runnable defaults ------------------------------------------------------------------------
# The model_type of each default checkpoint (their config.json on the Hub).
DEFAULT_MODEL_TYPES = {
    "distilbert/distilbert-base-uncased-finetuned-sst-2-english": "distilbert",
    "distilbert/distilbert-base-cased": "distilbert",
    "dbmdz/bert-large-cased-finetuned-conll03-english": "bert",
    "distilbert/distilroberta-base": "roberta",
    "distilbert/distilbert-base-cased-distilled-squad": "distilbert",
    "facebook/bart-large-mnli": "bart",
    "openai-community/gpt2": "gpt2",
    "google-t5/t5-base": "t5",
    "sshleifer/distilbart-cnn-12-6": "bart",
    "google/tapas-base-finetuned-wtq": "tapas",
    "facebook/wav2vec2-base-960h": "wav2vec2",
    "superb/wav2vec2-base-superb-ks": "wav2vec2",
    "google/vit-base-patch16-224": "vit",
    "openai/clip-vit-base-patch32": "clip",
    "facebook/detr-resnet-50": "detr",
    "google/owlvit-base-patch32": "owlvit",
    "facebook/detr-resnet-50-panoptic": "detr",
    "Intel/dpt-large": "dpt",
    "caidas/swin2SR-classical-sr-x2-64": "swin2sr",
    "MCG-NJU/videomae-base-finetuned-kinetics": "videomae",
    "ydshieh/vit-gpt2-coco-en": "vision-encoder-decoder",
    "llava-hf/llava-1.5-7b-hf": "llava",
    "dandelin/vilt-b32-finetuned-vqa": "vilt",
    "impira/layoutlm-document-qa": "layoutlm",
    "laion/clap-htsat-fused": "clap",
    "facebook/sam-vit-huge": "sam",
    "facebook/mms-tts-eng": "vits",
    "suno/bark-small": "bark",
}


def test_ready_tasks_default_to_a_family_lightpipe_runs():
    for name, task in SUPPORTED_TASKS.items():
        if not task.available:
            continue
        model = task.default[0]
        assert model in DEFAULT_MODEL_TYPES, f"{name}: add {model}'s model_type to the table"
        assert DEFAULT_MODEL_TYPES[model] in FAMILIES, (name, model)


# --- the padding side a tokenizer class sets when the folder does not say ------------------
@pytest.mark.parametrize("model_type,byte_level", [
    ("llama", False), ("llama", True), ("mistral", False), ("phi3", False), ("qwen2", False)])
def test_default_padding_side_follows_the_class_transformers_picks(tmp_path, model_type, byte_level):
    """A folder naming LlamaTokenizer pads on the left (the class default) unless transformers
    5 loads it with its generic tokenizer: a byte-level tokenizer.json (Llama 3 style) or a
    model type whose folders name the class wrongly (Mistral, Phi-3)."""
    from tokenizers import Tokenizer, decoders, pre_tokenizers
    from tokenizers.models import BPE

    vocab = {"<unk>": 0, "<s>": 1, "</s>": 2, **{c: i + 3 for i, c in enumerate("abcdefgh ")}}
    backend = Tokenizer(BPE(vocab=vocab, merges=[], unk_token="<unk>"))
    if byte_level:
        backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        backend.decoder = decoders.ByteLevel()
    backend.save(str(tmp_path / "tokenizer.json"))
    (tmp_path / "tokenizer_config.json").write_text(json.dumps(
        {"tokenizer_class": "LlamaTokenizer", "bos_token": "<s>", "eos_token": "</s>",
         "unk_token": "<unk>", "pad_token": "<unk>", "add_bos_token": False}))
    (tmp_path / "config.json").write_text(json.dumps({"model_type": model_type}))
    theirs = transformers.AutoTokenizer.from_pretrained(tmp_path)
    ours = lightpipe.AutoTokenizer.from_pretrained(tmp_path)
    assert ours.padding_side == theirs.padding_side
    texts = ["ab", "abcdefg"]
    assert (ours(texts, padding=True)["attention_mask"]
            == theirs(texts, padding=True)["attention_mask"])


def test_a_checkpoint_saved_untied_keeps_both_weights(tmp_path):
    """A checkpoint holding both weights of a tie with different values (BLIP saved by 4.40,
    fine-tunes saved untied) keeps both, as the reference does; equal ones are tied."""
    from safetensors.torch import load_file, save_file

    config = transformers.GPT2Config(n_embd=32, n_layer=2, n_head=2, vocab_size=50, n_positions=32)
    torch.manual_seed(0)
    transformers.GPT2LMHeadModel(config).save_pretrained(tmp_path)
    state = load_file(tmp_path / "model.safetensors")
    state["lm_head.weight"] = torch.randn_like(state["transformer.wte.weight"])
    save_file(state, tmp_path / "model.safetensors", metadata={"format": "pt"})
    theirs = transformers.GPT2LMHeadModel.from_pretrained(tmp_path).eval()
    ours = lightpipe.AutoModelForCausalLM.from_pretrained(tmp_path)
    ids = torch.tensor([[1, 5, 9, 3]])
    with torch.no_grad():
        want = theirs(ids).logits
    torch.testing.assert_close(ours(ids).logits, want)
    assert ours.lm_head.weight.data_ptr() != ours.transformer.wte.weight.data_ptr()
    ours.save_pretrained(tmp_path / "again")  # both weights written back
    assert "lm_head.weight" in load_file(tmp_path / "again" / "model.safetensors")


def test_a_clip_folder_without_tokenizer_json_tokenizes_as_the_reference():
    """CLIP's vocab.json + merges.txt (4.x's slow tokenizer saved no tokenizer.json) read with
    CLIP's rules: lower case, whitespace runs, '</w>' word ends, <|startoftext|> / <|endoftext|>."""
    from pathlib import Path

    folder = Path(__file__).parent / "golden" / "zoo" / "v4.40" / "clip"
    assert not (folder / "tokenizer.json").exists()
    theirs = transformers.AutoTokenizer.from_pretrained(folder)
    ours = lightpipe.AutoTokenizer.from_pretrained(folder)
    texts = ["A PHOTO of a  Cat!", "two\tdogs, playing in the snow's light", "ünïcödé 123"]
    for text in texts:
        assert ours(text)["input_ids"] == theirs(text)["input_ids"], text
        assert ours.decode(ours(text)["input_ids"], skip_special_tokens=True) == \
            theirs.decode(theirs(text)["input_ids"], skip_special_tokens=True)
    assert ours(texts, padding=True)["input_ids"] == theirs(texts, padding=True)["input_ids"]


@pytest.mark.parametrize("family", ["llama", "xlm-roberta", "camembert"])
def test_a_sentencepiece_only_folder_tokenizes_as_transformers_5(family):
    """tokenizer.model / sentencepiece.bpe.model without tokenizer.json (4.x's slow tokenizers
    saved so): lightpipe builds the backend from the model file itself, as transformers 5 does."""
    from pathlib import Path

    folder = Path(__file__).parent / "golden" / "zoo" / "v4.40" / family
    assert not (folder / "tokenizer.json").exists()
    theirs = transformers.AutoTokenizer.from_pretrained(folder)
    ours = lightpipe.AutoTokenizer.from_pretrained(folder)
    texts = ["Hello world, this is a test.", "  Leading spaces and   runs", "ünïcödé café 123 !?",
             "tabs\tand\nnewlines", "x"]
    for text in texts:
        assert ours(text)["input_ids"] == theirs(text)["input_ids"], text
        ids = theirs(text)["input_ids"]
        assert ours.decode(ids, skip_special_tokens=True) == theirs.decode(ids, skip_special_tokens=True)
    assert ours(texts[:2], texts[2:4])["input_ids"] == theirs(texts[:2], texts[2:4])["input_ids"]
