"""SigLIP against the reference on tiny random checkpoints it saved: both towers' outputs and the
sigmoid scores (logit_scale and logit_bias), the vision model alone (``siglip_vision_model``,
and from a full checkpoint), the image-classification head, SiglipTokenizer (SentencePiece with
canonicalised text), the image processor and processor, and the zero-shot-image-classification,
image-feature-extraction and image-classification pipelines."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import transformers

import lightpipe
from lightpipe.errors import InputError

from ..conftest import assert_outputs_close

SPIECE = Path(__file__).parent.parent / "golden" / "zoo" / "v4.40" / "t5" / "spiece.model"
LABELS = ["cat", "dog", "bird", "fish"]
TEXT = dict(hidden_size=48, intermediate_size=40, num_hidden_layers=2, num_attention_heads=4,
            max_position_embeddings=64, projection_size=32, layer_norm_eps=1e-5)
VISION = dict(hidden_size=32, intermediate_size=36, num_hidden_layers=2, num_attention_heads=2,
              image_size=32, patch_size=8, hidden_act="gelu", layer_norm_eps=1e-5)


def _spread(model) -> None:
    """Random SigLIP heads start near zero; widen the scores so their order means something."""
    with torch.no_grad():
        for name, param in model.named_parameters():
            if name in ("logit_scale", "logit_bias"):
                param.fill_(1.5 if name == "logit_scale" else -0.7)
            elif name.startswith(("classifier", "vision_model.head.probe", "head.probe")):
                param.normal_(0.0, 0.5)


def _build(root: Path, name: str, head: str, vision: dict | None = None) -> Path:
    folder = root / name
    tokenizer = transformers.SiglipTokenizer(vocab_file=str(SPIECE), model_max_length=64)
    vision = {**VISION, **(vision or {})}
    if head == "SiglipVisionModel":
        config = transformers.SiglipVisionConfig(**vision)
    else:
        labels = dict(id2label=dict(enumerate(LABELS)), label2id={l: i for i, l in enumerate(LABELS)})
        config = transformers.SiglipConfig(text_config={**TEXT, "vocab_size": len(tokenizer)},
                                           vision_config=vision, **labels)
    torch.manual_seed(0)
    model = getattr(transformers, head)(config).eval()
    _spread(model)
    model.save_pretrained(folder)
    image_processor = transformers.SiglipImageProcessorPil(size={"height": 32, "width": 32})
    transformers.SiglipProcessor(image_processor=image_processor, tokenizer=tokenizer).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def siglip(tmp_path_factory):
    root = tmp_path_factory.mktemp("siglip")
    built: dict = {}

    def get(head: str = "SiglipModel", **vision) -> Path:
        key = (head, tuple(sorted(vision.items())))
        if key not in built:
            built[key] = _build(root, f"{head}_{len(built)}", head, vision)
        return built[key]

    return get


def _pixels(batch=2, size=32, seed=0):
    return torch.randn(batch, 3, size, size, generator=torch.Generator().manual_seed(seed))


def _close(got, want, name=""):
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5, msg=name)


def _texts(folder, texts, **kwargs):
    return transformers.AutoTokenizer.from_pretrained(str(folder))(texts, return_tensors="pt", **kwargs)


def test_siglip_scores_and_towers_match_reference(siglip):
    folder = siglip()
    ours = lightpipe.AutoModel.from_pretrained(folder)
    theirs = transformers.AutoModel.from_pretrained(str(folder)).eval()
    assert type(ours).__name__ == type(theirs).__name__ == "SiglipModel"
    pixels = _pixels()
    for kwargs in ({"padding": "max_length", "max_length": 64}, {"padding": True}):
        texts = _texts(folder, ["a photo of the cat", "dog", "the dog of the cat at the"], **kwargs)
        with torch.inference_mode():
            got, want = ours(**texts, pixel_values=pixels), theirs(**texts, pixel_values=pixels)
        for key in ("logits_per_image", "logits_per_text", "text_embeds", "image_embeds"):
            _close(got[key], want[key], key)
        assert got.logits_per_image.shape == (2, 3)
        _close(got.vision_model_output.last_hidden_state, want.vision_model_output.last_hidden_state)
        _close(got.text_model_output.last_hidden_state, want.text_model_output.last_hidden_state)
    with torch.inference_mode():
        _close(ours.get_image_features(pixel_values=pixels).pooler_output,
               theirs.get_image_features(pixel_values=pixels).pooler_output)
        _close(ours.get_text_features(**texts).pooler_output,
               theirs.get_text_features(**texts).pooler_output)
        big = _pixels(1, 48, seed=3)  # 6x6 patches from a 4x4 position table
        _close(ours.get_image_features(pixel_values=big, interpolate_pos_encoding=True).pooler_output,
               theirs.get_image_features(pixel_values=big, interpolate_pos_encoding=True).pooler_output)
    with pytest.raises(InputError, match="interpolate_pos_encoding"):
        ours.get_image_features(pixel_values=big)
    assert type(lightpipe.AutoModelForZeroShotImageClassification.from_pretrained(folder)).__name__ == "SiglipModel"


def test_siglip_vision_model_matches_reference(siglip):
    """siglip_vision_model checkpoints (transformers 5 saves them without the vision_model.
    prefix), the vision half of a full checkpoint, and a tower without its pooling head."""
    pixels = _pixels(seed=1)
    for folder in (siglip("SiglipVisionModel"), siglip()):
        ours = lightpipe.AutoModel.from_pretrained(folder) if "Vision" in folder.name \
            else lightpipe.models.siglip.SiglipVisionModel.from_pretrained(folder)
        theirs = transformers.SiglipVisionModel.from_pretrained(str(folder)).eval()
        assert type(ours).__name__ == "SiglipVisionModel"
        with torch.inference_mode():
            got, want = ours(pixel_values=pixels), theirs(pixel_values=pixels)
        _close(got.last_hidden_state, want.last_hidden_state)
        _close(got.pooler_output, want.pooler_output)
    folder = siglip("SiglipVisionModel", vision_use_head=False)
    ours = lightpipe.AutoModel.from_pretrained(folder)
    theirs = transformers.AutoModel.from_pretrained(str(folder)).eval()
    with torch.inference_mode():
        got, want = ours(pixel_values=pixels), theirs(pixel_values=pixels)
    _close(got.last_hidden_state, want.last_hidden_state)
    assert got.get("pooler_output") is None and want.pooler_output is None


def test_siglip_image_classification_matches_reference(siglip, test_images):
    folder = siglip("SiglipForImageClassification")
    ours = lightpipe.AutoModelForImageClassification.from_pretrained(folder)
    theirs = transformers.AutoModelForImageClassification.from_pretrained(str(folder)).eval()
    assert type(ours).__name__ == "SiglipForImageClassification"
    pixels = _pixels(3, seed=2)
    with torch.inference_mode():
        _close(ours(pixel_values=pixels).logits, theirs(pixel_values=pixels).logits)
    images = [test_images["rgb_jpeg"], test_images["rgba_pil"], test_images["gray_pil"]]
    want = transformers.pipeline("image-classification", model=str(folder))(images, top_k=3)
    got = lightpipe.pipeline("image-classification", model=str(folder))(images, top_k=3)
    assert_outputs_close(got, want)


def test_siglip_tokenizer_matches_reference(siglip):
    folder = siglip()
    theirs = transformers.AutoTokenizer.from_pretrained(str(folder))
    ours = lightpipe.AutoTokenizer.from_pretrained(folder)
    assert type(ours).__name__ == type(theirs).__name__ == "SiglipTokenizer"
    texts = ["A photo of a CAT!", "hello</s> world", "  Leading, spaces.. and   runs",
             "ünïcödé café 123 !?", "x", "a ▁ b", "</s>x", "This is a photo of {}.", "", "ends here</s>"]
    for text in texts:
        assert ours.tokenize(text) == theirs.tokenize(text), text
        assert ours(text)["input_ids"] == theirs(text)["input_ids"], text
        ids = theirs(text)["input_ids"]
        for skip in (False, True):
            assert ours.decode(ids, skip_special_tokens=skip) == theirs.decode(ids, skip_special_tokens=skip)
    for kwargs in ({"padding": "max_length", "max_length": 12, "truncation": True},
                   {"padding": True}, {"padding": "max_length"}):
        assert ours(texts[:4], **kwargs).data == theirs(texts[:4], **kwargs).data, kwargs
    assert ours.model_max_length == theirs.model_max_length == 64


def test_siglip_processor_matches_reference(siglip, test_images):
    folder = siglip()
    theirs = transformers.AutoProcessor.from_pretrained(str(folder))
    ours = lightpipe.AutoProcessor.from_pretrained(folder)
    assert type(ours).__name__ == type(theirs).__name__ == "SiglipProcessor"
    images = [test_images["rgb_jpeg"], test_images["rgba_pil"], test_images["palette_png"]]
    from lightpipe.processing.image_io import load_image

    pil = [load_image(i) for i in images]
    for kwargs in ({"padding": "max_length"}, {"padding": True}):
        got = ours(text=["a cat", "the DOG, running"], images=pil, return_tensors="pt", **kwargs)
        want = theirs(text=["a cat", "the DOG, running"], images=pil, return_tensors="pt", **kwargs)
        assert set(got) == set(want)
        for key in want:
            _close(got[key], want[key], key)
    got = lightpipe.AutoImageProcessor.from_pretrained(folder)(pil, return_tensors="pt")
    want = transformers.AutoImageProcessor.from_pretrained(str(folder), backend="pil")(pil, return_tensors="pt")
    _close(got["pixel_values"], want["pixel_values"])
    assert type(lightpipe.AutoImageProcessor.from_pretrained(folder)).__name__ == "SiglipImageProcessor"


def test_siglip_zero_shot_pipeline_matches_reference(siglip, test_images):
    folder = siglip()
    theirs = transformers.pipeline("zero-shot-image-classification", model=str(folder))
    ours = lightpipe.pipeline("zero-shot-image-classification", model=str(folder))
    images = [test_images["rgb_jpeg"], test_images["rgba_pil"], test_images["exif_jpeg"]]
    labels = ["cat", "dog", "a photo of the bird", "x"]
    want = theirs(images, candidate_labels=labels)
    assert_outputs_close(ours(images, candidate_labels=labels), want)
    assert_outputs_close(ours(images, candidate_labels=labels, batch_size=2), want)
    assert sum(item["score"] for item in want[0]) != pytest.approx(1.0)  # sigmoid, not softmax
    assert_outputs_close(ours(images[0], candidate_labels=labels, hypothesis_template="a {} here"),
                         theirs(images[0], candidate_labels=labels, hypothesis_template="a {} here"))


def test_siglip_image_feature_extraction_pipeline_matches_reference(siglip, test_images):
    folder = siglip("SiglipVisionModel")
    theirs = transformers.pipeline("image-feature-extraction", model=str(folder))
    ours = lightpipe.pipeline("image-feature-extraction", model=str(folder))
    images = [test_images["rgb_jpeg"], test_images["gray_pil"]]
    for kwargs in ({}, {"pool": True}, {"return_tensors": True}):
        assert_outputs_close(ours(images, **kwargs), theirs(images, **kwargs))
