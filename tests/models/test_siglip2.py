"""SigLIP 2 (NaFlex) against the reference on tiny random checkpoints it saved: the resampled
position embeddings, both towers and the sigmoid scores over padded patch sequences, the vision
model alone, the classification head (mean over real patches), the NaFlex image processor
(sizes, patches, masks, spatial_shapes) and the zero-shot-image-classification pipeline."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import transformers

import lightpipe

from ..conftest import assert_outputs_close

LABELS = ["cat", "dog", "bird"]
TEXT = dict(hidden_size=48, intermediate_size=40, num_hidden_layers=2, num_attention_heads=4,
            max_position_embeddings=64, projection_size=32, layer_norm_eps=1e-5)
VISION = dict(hidden_size=32, intermediate_size=36, num_hidden_layers=2, num_attention_heads=2,
              patch_size=4, num_patches=16, hidden_act="gelu", layer_norm_eps=1e-5)
PROCESSOR = dict(patch_size=4, max_num_patches=24)


def _tokenizer():
    chars = "abcdefghijklmnopqrstuvwxyz .,!?'0123456789"
    vocab = {"<pad>": 0, "<eos>": 1, "<bos>": 2, "<unk>": 3, "<mask>": 4}
    for c in ["▁"] + list(chars):
        vocab.setdefault(c, len(vocab))
    merges = [("▁", "a"), ("c", "a"), ("ca", "t"), ("d", "o"), ("do", "g"), ("t", "h")]
    for a, b in merges:
        vocab.setdefault(a + b, len(vocab))
    return transformers.Siglip2Tokenizer(vocab=vocab, merges=merges)


def _spread(model) -> None:
    with torch.no_grad():
        for name, param in model.named_parameters():
            if name in ("logit_scale", "logit_bias"):
                param.fill_(1.5 if name == "logit_scale" else -0.7)
            elif name.startswith(("classifier", "vision_model.head.probe", "head.probe")) \
                    or "position_embedding" in name:
                param.normal_(0.0, 0.5)


@pytest.fixture(scope="module")
def siglip2(tmp_path_factory):
    root = tmp_path_factory.mktemp("siglip2")
    built: dict = {}

    def get(head: str = "Siglip2Model") -> Path:
        if head in built:
            return built[head]
        folder = root / head
        tokenizer = _tokenizer()
        if head == "Siglip2VisionModel":
            config = transformers.Siglip2VisionConfig(**VISION)
        else:
            labels = dict(id2label=dict(enumerate(LABELS)), label2id={l: i for i, l in enumerate(LABELS)})
            config = transformers.Siglip2Config(text_config={**TEXT, "vocab_size": len(tokenizer)},
                                                vision_config=VISION, **labels)
        torch.manual_seed(0)
        model = getattr(transformers, head)(config).eval()
        _spread(model)
        model.save_pretrained(folder)
        image_processor = transformers.Siglip2ImageProcessorPil(**PROCESSOR)
        transformers.Siglip2Processor(image_processor=image_processor, tokenizer=tokenizer).save_pretrained(folder)
        built[head] = folder
        return folder

    return get


def _images(test_images):
    return [test_images[k] for k in ("rgb_jpeg", "rgba_pil", "gray_pil", "exif_jpeg", "tiny_pil")]


def _inputs(folder, test_images):
    from lightpipe.processing.image_io import load_image

    image_processor = transformers.AutoImageProcessor.from_pretrained(str(folder), backend="pil")
    tokenizer = transformers.AutoTokenizer.from_pretrained(str(folder))
    images = [load_image(i) for i in _images(test_images)]
    return {**image_processor(images, return_tensors="pt"),
            **tokenizer(["a photo of the cat", "dog", "The dog."], padding="max_length", max_length=64,
                        return_tensors="pt")}


def _close(got, want, name=""):
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5, msg=name)


def test_image_processor_matches_reference(siglip2, test_images):
    folder = siglip2()
    ours = lightpipe.AutoImageProcessor.from_pretrained(folder)
    theirs = transformers.AutoImageProcessor.from_pretrained(str(folder), backend="pil")
    assert type(ours).__name__ == "Siglip2ImageProcessor"
    from lightpipe.processing.image_io import load_image

    images = [load_image(i) for i in _images(test_images)]
    got, want = ours(images, return_tensors="pt"), theirs(images, return_tensors="pt")
    assert set(got) == set(want)
    assert got["spatial_shapes"].tolist() == want["spatial_shapes"].tolist()
    assert got["pixel_attention_mask"].tolist() == want["pixel_attention_mask"].tolist()
    _close(got["pixel_values"], want["pixel_values"].float())
    assert 0 < int(want["pixel_attention_mask"].sum(-1).min()) < PROCESSOR["max_num_patches"]  # padded


def test_scores_and_towers_match_reference(siglip2, test_images):
    folder = siglip2()
    ours = lightpipe.AutoModel.from_pretrained(folder)
    theirs = transformers.AutoModel.from_pretrained(str(folder)).eval()
    assert type(ours).__name__ == type(theirs).__name__ == "Siglip2Model"
    inputs = _inputs(folder, test_images)
    with torch.inference_mode():
        got, want = ours(**inputs), theirs(**inputs)
    for key in ("logits_per_image", "logits_per_text", "text_embeds", "image_embeds"):
        _close(got[key], want[key], key)
    mask = inputs["pixel_attention_mask"].bool()
    _close(got.vision_model_output.last_hidden_state[mask], want.vision_model_output.last_hidden_state[mask])
    vision_only = {k: inputs[k] for k in ("pixel_values", "pixel_attention_mask", "spatial_shapes")}
    with torch.inference_mode():
        _close(ours.get_image_features(**vision_only).pooler_output,
               theirs.get_image_features(**vision_only).pooler_output)
    folder = siglip2("Siglip2VisionModel")
    ours = lightpipe.AutoModel.from_pretrained(folder)
    theirs = transformers.AutoModel.from_pretrained(str(folder)).eval()
    assert type(ours).__name__ == "Siglip2VisionModel"
    with torch.inference_mode():
        _close(ours(**vision_only).pooler_output, theirs(**vision_only).pooler_output)


def test_classification_matches_reference(siglip2, test_images):
    folder = siglip2("Siglip2ForImageClassification")
    ours = lightpipe.AutoModelForImageClassification.from_pretrained(folder)
    theirs = transformers.AutoModelForImageClassification.from_pretrained(str(folder)).eval()
    inputs = _inputs(folder, test_images)
    vision_only = {k: inputs[k] for k in ("pixel_values", "pixel_attention_mask", "spatial_shapes")}
    with torch.inference_mode():
        _close(ours(**vision_only).logits, theirs(**vision_only).logits)


def test_zero_shot_pipeline_matches_reference(siglip2, test_images):
    folder = siglip2()
    theirs = transformers.pipeline("zero-shot-image-classification", model=str(folder))
    ours = lightpipe.pipeline("zero-shot-image-classification", model=str(folder))
    images = _images(test_images)[:3]
    labels = ["cat", "dog", "a photo of the bird"]
    want = theirs(images, candidate_labels=labels)
    assert_outputs_close(ours(images, candidate_labels=labels), want)
    assert_outputs_close(ours(images, candidate_labels=labels, batch_size=2), want)


def test_tokenizer_lower_cases_hub_folders_as_the_reference(siglip2, tmp_path):
    """Hub SigLIP 2 folders name GemmaTokenizer and their tokenizer.json does not lower-case;
    transformers 5 loads them as Siglip2Tokenizer, which does."""
    import json
    import shutil

    source = siglip2()
    for name in ("tokenizer.json", "tokenizer_config.json", "config.json"):
        shutil.copy(source / name, tmp_path / name)
    backend = json.loads((tmp_path / "tokenizer.json").read_text())
    backend["normalizer"] = backend["normalizer"]["normalizers"][1]  # drop the Lowercase
    (tmp_path / "tokenizer.json").write_text(json.dumps(backend))
    settings = json.loads((tmp_path / "tokenizer_config.json").read_text())
    (tmp_path / "tokenizer_config.json").write_text(json.dumps({**settings, "tokenizer_class": "GemmaTokenizer"}))
    theirs = transformers.AutoTokenizer.from_pretrained(str(tmp_path))
    ours = lightpipe.AutoTokenizer.from_pretrained(tmp_path)
    for text in ("A Photo of THE Cat!", "dog", "The DOG."):
        assert ours(text)["input_ids"] == theirs(text)["input_ids"], text
    assert ours("THE CAT")["input_ids"] == ours("the cat")["input_ids"]
