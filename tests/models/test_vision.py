"""Parity of the vision families (ViT, Swin, ConvNeXt, ResNet, CLIP, DETR) with the reference on
tiny random checkpoints it saved: logits and hidden states per head; backbones' out_indices /
out_features / channels; DETR checkpoints with timm-style backbone names."""

from __future__ import annotations

import pytest
import torch
import transformers
from safetensors.torch import load_file, save_file

import lightpipe
from lightpipe.errors import InputError
from lightpipe.models.detr import timm_to_resnet

CLASSIFIERS = ["vit", "swin", "convnext", "resnet"]
BACKBONES = {"swin": "SwinBackbone", "convnext": "ConvNextBackbone", "resnet": "ResNetBackbone"}


def _pixels(batch=2, height=32, width=32, seed=0):
    return torch.randn(batch, 3, height, width, generator=torch.Generator().manual_seed(seed))


def _load(folder, head, reference_class=None, **kwargs):
    ours = getattr(lightpipe, head).from_pretrained(folder, **kwargs)
    cls = reference_class or getattr(transformers, head)
    theirs = cls.from_pretrained(str(folder), **kwargs).eval()
    return ours, theirs


def _close(got, want, name=""):
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5, msg=name)


@pytest.mark.parametrize("model_type", CLASSIFIERS)
@pytest.mark.parametrize("head", ["AutoModel", "AutoModelForImageClassification"])
def test_logits_match_reference(vision_model, model_type, head):
    ours, theirs = _load(vision_model(model_type, head), head)
    assert type(ours).__name__ == type(theirs).__name__
    pixels = _pixels()
    with torch.inference_mode():
        got, want = ours(pixel_values=pixels), theirs(pixel_values=pixels)
    for key in ("logits", "last_hidden_state", "pooler_output"):
        if want.get(key) is not None:
            _close(got[key], want[key], key)


@pytest.mark.parametrize("model_type", CLASSIFIERS)
def test_base_model_loads_from_classification_checkpoint(vision_model, model_type):
    """AutoModel over a head checkpoint (prefix stripped, head dropped) and the reverse."""
    folder = vision_model(model_type, "AutoModelForImageClassification")
    ours, theirs = _load(folder, "AutoModel")
    pixels = _pixels(seed=1)
    with torch.inference_mode():
        _close(ours(pixel_values=pixels).last_hidden_state, theirs(pixel_values=pixels).last_hidden_state)


@pytest.mark.parametrize("model_type", ["swin", "convnext", "resnet"])
def test_odd_image_sizes_match_reference(vision_model, model_type):
    ours, theirs = _load(vision_model(model_type, "AutoModelForImageClassification"),
                         "AutoModelForImageClassification")
    pixels = _pixels(batch=1, height=45, width=27, seed=2)
    with torch.inference_mode():
        _close(ours(pixel_values=pixels).logits, theirs(pixel_values=pixels).logits)


def test_vit_interpolated_positions_and_size_errors(vision_model):
    ours, theirs = _load(vision_model("vit", "AutoModel"), "AutoModel")
    pixels = _pixels(height=48, width=40, seed=3)
    with torch.inference_mode():
        got = ours(pixel_values=pixels, interpolate_pos_encoding=True).last_hidden_state
        want = theirs(pixel_values=pixels, interpolate_pos_encoding=True).last_hidden_state
    _close(got, want)
    with pytest.raises(InputError, match="48x40"):
        ours(pixel_values=pixels)
    with pytest.raises(InputError, match="pixel_values"):
        ours(pixel_values=torch.zeros(1, 4, 32, 32))


@pytest.mark.parametrize("model_type", list(BACKBONES))
@pytest.mark.parametrize("source", ["AutoModelForImageClassification", "AutoBackbone"])
@pytest.mark.parametrize("selection", [{}, {"out_indices": [1, 2]}, {"out_features": ["stage1", "stage3"]},
                                       {"out_indices": [0, -1]}])
def test_backbone_feature_maps_match_reference(vision_model, model_type, source, selection):
    folder = vision_model(model_type, source)
    # transformers.AutoBackbone asks the Hub about local folders, so the class is named here.
    ours, theirs = _load(folder, "AutoBackbone", getattr(transformers, BACKBONES[model_type]), **selection)
    assert ours.out_features == list(theirs.out_features)
    assert ours.out_indices == list(theirs.out_indices)
    assert ours.channels == list(theirs.channels)
    assert ours.stage_names == list(theirs.stage_names)
    pixels = _pixels(seed=4)
    with torch.inference_mode():
        got, want = ours(pixel_values=pixels), theirs(pixel_values=pixels)
    assert len(got.feature_maps) == len(want.feature_maps) == len(ours.out_features)
    for index, (a, b) in enumerate(zip(got.feature_maps, want.feature_maps)):
        assert a.shape[1] == ours.channels[index]
        _close(a, b, f"feature map {index}")


def test_backbone_bad_selection_is_a_clear_error(vision_model):
    folder = vision_model("swin", "AutoBackbone")
    with pytest.raises(InputError, match="stages"):
        lightpipe.AutoBackbone.from_pretrained(folder, out_features=["stage9"])
    with pytest.raises(InputError, match="different stages"):
        lightpipe.AutoBackbone.from_pretrained(folder, out_features=["stage1"], out_indices=[2])


def test_clip_logits_and_features_match_reference(vision_model):
    folder = vision_model("clip", "AutoModel")
    ours, theirs = _load(folder, "AutoModel")
    tokenizer = transformers.AutoTokenizer.from_pretrained(str(folder))
    texts = tokenizer(["a photo of the cat", "dog", "the dog of the cat at the"], padding=True,
                      return_tensors="pt")
    pixels = _pixels(seed=5)
    with torch.inference_mode():
        got, want = ours(**texts, pixel_values=pixels), theirs(**texts, pixel_values=pixels)
        for key in ("logits_per_image", "logits_per_text", "text_embeds", "image_embeds"):
            _close(got[key], want[key], key)
        assert got.logits_per_image.shape == (2, 3)
        _close(ours.get_image_features(pixel_values=pixels).pooler_output,
               theirs.get_image_features(pixel_values=pixels).pooler_output)
        _close(ours.get_text_features(**texts).pooler_output,
               theirs.get_text_features(**texts).pooler_output)
        _close(got.vision_model_output.last_hidden_state, want.vision_model_output.last_hidden_state)
    zero_shot = lightpipe.AutoModelForZeroShotImageClassification.from_pretrained(folder)
    assert type(zero_shot).__name__ == "CLIPModel"


def test_clip_legacy_eos_id_pools_at_the_highest_id(vision_model):
    """Old CLIP configs say eos_token_id 2: the reference then pools at the highest token id."""
    folder = vision_model("clip", "AutoModel", text={"eos_token_id": 2})
    ours, theirs = _load(folder, "AutoModel")
    ids = torch.tensor([[0, 300, 5, 1, 1], [0, 7, 400, 9, 1]])
    with torch.inference_mode():
        _close(ours.get_text_features(input_ids=ids).pooler_output,
               theirs.get_text_features(input_ids=ids).pooler_output)


def test_clip_tokenizer_matches_reference(vision_model):
    """Encoding is the generic tokenizer's over CLIP's tokenizer.json; decoding is CLIP's
    (lightpipe.tokenization_clip: ``</w>`` becomes a space)."""
    folder = vision_model("clip", "AutoModel")
    ours = lightpipe.AutoTokenizer.from_pretrained(folder)
    theirs = transformers.AutoTokenizer.from_pretrained(str(folder))
    texts = ["A photo of THE cat!", "dog", "  spaces   and\ttabs ", "ünïcödé and emoji 😀"]
    for kwargs in ({"padding": True}, {"padding": "max_length", "max_length": 24, "truncation": True}):
        got, want = ours(texts, **kwargs), theirs(texts, **kwargs)
        assert got["input_ids"] == want["input_ids"]
        assert got["attention_mask"] == want["attention_mask"]
    assert type(ours).__name__ == "CLIPTokenizer"
    for row in want["input_ids"]:
        for skip in (True, False):
            assert ours.decode(row, skip_special_tokens=skip) == theirs.decode(row, skip_special_tokens=skip)
    assert ours.batch_decode(want["input_ids"]) == theirs.batch_decode(want["input_ids"])


def test_detr_logits_and_boxes_match_reference(vision_model):
    ours, theirs = _load(vision_model("detr", "AutoModelForObjectDetection"), "AutoModelForObjectDetection")
    pixels = _pixels(height=48, width=70, seed=6)
    mask = torch.ones(2, 48, 70, dtype=torch.long)
    mask[1, :, 50:] = 0
    mask[1, 40:] = 0
    for pixel_mask in (None, mask):
        with torch.inference_mode():
            got = ours(pixel_values=pixels, pixel_mask=pixel_mask)
            want = theirs(pixel_values=pixels, pixel_mask=pixel_mask)
        _close(got.logits, want.logits, "logits")
        _close(got.pred_boxes, want.pred_boxes, "pred_boxes")


def test_detr_loads_timm_backbone_names(vision_model, tmp_path):
    """facebook/detr-resnet-50 stores its backbone with timm's names (layer1.0.conv1, bn1,
    downsample.0/1). The tiny checkpoint's backbone, renamed to timm's layout, loads into the
    same modules and gives the reference's logits."""
    folder = vision_model("detr", "AutoModelForObjectDetection")
    state = load_file(str(folder / "model.safetensors"))
    to_timm = {}
    for name in state:
        timm_name = (name.replace("embedder.embedder.convolution", "conv1")
                     .replace("embedder.embedder.normalization", "bn1"))
        parts = timm_name.split(".")
        if "stages" in parts:
            at = parts.index("stages")
            stage, block = int(parts[at + 1]), parts[at + 3]
            rest = parts[at + 4:]
            if rest[0] == "layer":
                kind = "conv" if rest[2] == "convolution" else "bn"
                rest = [f"{kind}{int(rest[1]) + 1}"] + rest[3:]
            else:  # shortcut
                rest = ["downsample", "0" if rest[1] == "convolution" else "1"] + rest[2:]
            parts = parts[:at - 1] + [f"layer{stage + 1}", block] + rest
        to_timm[name] = ".".join(parts)
    assert "model.backbone.conv_encoder.model.layer1.0.conv1.weight" in to_timm.values()
    assert "model.backbone.conv_encoder.model.layer2.0.downsample.1.running_var" in to_timm.values()
    assert all(timm_to_resnet(timm) == name for name, timm in to_timm.items())
    renamed = tmp_path / "detr_timm_names"
    renamed.mkdir()
    save_file({to_timm[k]: v.contiguous() for k, v in state.items()}, str(renamed / "model.safetensors"),
              metadata={"format": "pt"})
    (renamed / "config.json").write_text((folder / "config.json").read_text())
    ours = lightpipe.AutoModelForObjectDetection.from_pretrained(renamed)
    theirs = transformers.AutoModelForObjectDetection.from_pretrained(str(folder)).eval()
    pixels = _pixels(batch=1, height=40, width=56, seed=7)
    with torch.inference_mode():
        _close(ours(pixel_values=pixels).logits, theirs(pixel_values=pixels).logits)


def test_timm_resnet50_layout_is_built_from_the_backbone_name():
    from lightpipe.config import Config
    from lightpipe.models.detr import DetrForObjectDetection

    config = Config(model_type="detr", use_timm_backbone=True, backbone="resnet50", d_model=32,
                    encoder_layers=1, decoder_layers=1, encoder_attention_heads=4,
                    decoder_attention_heads=4, encoder_ffn_dim=16, decoder_ffn_dim=16, num_queries=5)
    with torch.device("meta"):
        model = DetrForObjectDetection(config)
    names = {timm_to_resnet(n) for n in ("model.backbone.conv_encoder.model.layer4.2.conv3.weight",
                                         "model.backbone.conv_encoder.model.layer3.0.downsample.0.weight",
                                         "model.backbone.conv_encoder.model.bn1.running_mean")}
    assert names <= set(model.state_dict())
    assert model.model.input_projection.in_channels == 2048


@pytest.mark.parametrize("model_type,overrides", [
    ("swin", {"use_absolute_embeddings": True}),
    ("resnet", {"layer_type": "basic", "downsample_in_first_stage": True}),
    ("resnet", {"downsample_in_bottleneck": True}),
    ("convnext", {"layer_scale_init_value": 0.0}),
    ("vit", {"qkv_bias": False, "hidden_act": "gelu_new"}),
])
def test_config_variants_match_reference(vision_model, model_type, overrides):
    folder = vision_model(model_type, "AutoModelForImageClassification", **overrides)
    ours, theirs = _load(folder, "AutoModelForImageClassification")
    pixels = _pixels(seed=8)
    with torch.inference_mode():
        _close(ours(pixel_values=pixels).logits, theirs(pixel_values=pixels).logits)


@pytest.mark.parametrize("model_type,head", [("vit", "AutoModelForImageClassification"),
                                             ("swin", "AutoModelForImageClassification"),
                                             ("clip", "AutoModel"),
                                             ("detr", "AutoModelForObjectDetection")])
def test_save_pretrained_round_trip_loads_in_the_reference(vision_model, tmp_path, model_type, head):
    folder = vision_model(model_type, head)
    ours = getattr(lightpipe, head).from_pretrained(folder)
    ours.save_pretrained(tmp_path / "saved")
    theirs = getattr(transformers, head).from_pretrained(str(tmp_path / "saved")).eval()
    original = getattr(transformers, head).from_pretrained(str(folder)).eval()
    for name, tensor in original.state_dict().items():
        torch.testing.assert_close(theirs.state_dict()[name], tensor, msg=name)
