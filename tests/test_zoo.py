"""The checkpoint zoo: tiny checkpoints of every family saved by each transformers era
(tests/golden/zoo/<era>/<family>/, made by tests/golden/make_zoo.py) load in lightpipe and give
that era's outputs. Each entry is tested twice, ids ``family-era``: the model on the stored
inputs, and lightpipe's preprocessing (tokenizer / image processor / feature extractor /
processor read from the folder) against the inputs the reference made. Then the three breaks
issue 15 found, each on the folder that showed it."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch

import lightpipe
from tests.golden.zoo_inputs import resolve

GOLDEN = Path(__file__).resolve().parent / "golden"
# LIGHTPIPE_ZOO: more zoo folders (os.pathsep-separated), e.g. one made by a new release.
ZOOS = [GOLDEN / "zoo"] + [Path(p) for p in os.environ.get("LIGHTPIPE_ZOO", "").split(os.pathsep) if p]
ENTRIES = sorted(path.parent for zoo in ZOOS for path in zoo.glob("v*/*/zoo.json"))
# (family, era) or (family, era, "model" | "preprocessing") -> why lightpipe does not match
# yet (strict: a fix shows as XPASS, then delete the line).
KNOWN_BREAKS: dict[tuple[str, ...], str] = {}
# (family, era, input) the era's reference made differently from today's (which lightpipe
# follows): not compared.
ERA_CHANGES: dict[tuple[str, str, str], str] = {
    ("owlv2", era, "pixel_values"): "4.x's Owlv2ImageProcessor pads and resizes otherwise than 5.x"
    for era in ("v4.40", "v4.57")
} | {
    (family, era, name): "4.x loads Mistral's and Phi-3's LlamaTokenizer class (left padding); 5.x "
                         "their generic tokenizer (right padding)"
    for family, era in (("mistral", "v4.57"), ("phi3", "v4.57"), ("mistral", "v4.40"))
    for name in ("input_ids", "attention_mask")
}


def entry_id(folder: Path) -> str:
    return f"{folder.name}-{folder.parent.name}"


def entries(check: str):
    params = []
    for folder in ENTRIES:
        if check == "preprocessing" and json.loads((folder / "zoo.json").read_text(encoding="utf-8"))[
                "call"]["kind"] == "none":  # a vocoder: no preprocessor, its inputs are stored
            continue
        reason = KNOWN_BREAKS.get((folder.name, folder.parent.name, check)) or KNOWN_BREAKS.get(
            (folder.name, folder.parent.name))
        marks = [pytest.mark.xfail(reason=reason, strict=True)] if reason else []
        params.append(pytest.param(folder, id=entry_id(folder), marks=marks))
    return params


def load(folder: Path) -> tuple[dict, dict]:
    meta = json.loads((folder / "zoo.json").read_text(encoding="utf-8"))
    with np.load(folder / "golden.npz") as arrays:
        golden = {name: torch.from_numpy(arrays[name]) for name in arrays.files}
    return meta, golden


def assert_close(ours, theirs: torch.Tensor, what: str) -> None:
    ours = torch.as_tensor(ours)
    if theirs.dtype.is_floating_point:
        scale = max(1.0, theirs.abs().max().item())
        torch.testing.assert_close(ours.float(), theirs, rtol=1e-4, atol=1e-4 * scale, msg=lambda m: f"{what}: {m}")
    else:
        assert ours.tolist() == theirs.tolist(), f"{what}: {ours.tolist()} != {theirs.tolist()}"


def test_zoo_is_complete():
    """Every era holds every family lightpipe supports (or says why it cannot)."""
    from lightpipe.families import FAMILIES

    eras = sorted({folder.parent for folder in ENTRIES})
    assert len(eras) >= 3, f"the zoo has eras {eras}: run tests/golden/make_zoo.py in each venv"
    for era in eras:  # era.json lists the families newer than the era's transformers
        absent = set(json.loads((era / "era.json").read_text(encoding="utf-8"))["absent"])
        missing = set(FAMILIES) - absent - {folder.name for folder in ENTRIES if folder.parent == era}
        assert not missing, f"{era.name} lacks {sorted(missing)}: add them to tests/golden/zoo_recipes.py"
    size = sum(path.stat().st_size for path in (GOLDEN / "zoo").rglob("*") if path.is_file())
    # 3 eras x 78 families, ~180 KB an entry; the cap makes a growing entry a decision
    assert size < 46e6, f"the zoo is {size / 1e6:.1f} MB: keep it small"


def real_positions(meta: dict, inputs: dict):
    """A decoder's outputs at padding positions are arbitrary (they differ between eras):
    compare the real positions only."""
    if meta["auto"] in ("AutoModelForCausalLM", "AutoModelForImageTextToText") and "attention_mask" in inputs:
        return inputs["attention_mask"].bool()
    return None


@pytest.mark.parametrize("folder", entries("model"))
def test_zoo_model(folder: Path):
    meta, golden = load(folder)
    inputs = {name[3:]: value for name, value in golden.items() if name.startswith("in.")}
    model = getattr(lightpipe, meta["auto"]).from_pretrained(folder)
    with torch.inference_mode():  # (Bark, without a forward: the sub-model "module" names)
        output = (getattr(model, meta["module"]) if meta.get("module") else model)(**inputs)
    real = real_positions(meta, inputs)
    for name in meta["outputs"]:
        ours = output if isinstance(output, torch.Tensor) else output[name]  # a vocoder's waveform
        if isinstance(ours, (tuple, list)):  # a backbone's feature maps, stored one by one
            assert len(ours) == sum(key.startswith(f"out.{name}.") for key in golden), name
            for i, item in enumerate(ours):
                assert_close(item, golden[f"out.{name}.{i}"], f"{name}[{i}]")
            continue
        theirs = golden[f"out.{name}"]
        if real is not None:
            ours, theirs = ours[real], theirs[real]
        assert_close(ours, theirs, name)
    if meta["base"]:  # the head's checkpoint read by the base model: the prefix stripped
        base = lightpipe.AutoModel.from_pretrained(folder)
        keys = ("input_ids", "attention_mask", "token_type_ids")
        with torch.inference_mode():
            hidden = base(**{k: v for k, v in inputs.items() if k in keys}).last_hidden_state
        real = inputs["attention_mask"].bool()  # padding positions differ between eras
        assert_close(hidden[real], golden["base.last_hidden_state"][real], "AutoModel last_hidden_state")


def preprocess(folder: Path, call: dict) -> dict:
    """lightpipe's preprocessing of the entry's inputs, as the reference's call in make_zoo.py."""
    kind = call["kind"]
    if kind == "tapas":
        tokenizer = lightpipe.AutoTokenizer.from_pretrained(folder)
        return dict(tokenizer(table=call["kwargs"]["table"], queries=call["kwargs"]["queries"],
                              padding=True, return_tensors="pt"))
    loader = {"tokenizer": lightpipe.AutoTokenizer, "image_processor": lightpipe.AutoImageProcessor,
              "feature_extractor": lightpipe.AutoFeatureExtractor,
              "processor": lightpipe.AutoProcessor}[kind]
    preprocessor = loader.from_pretrained(folder)
    return dict(preprocessor(*resolve(call.get("args", [])), **resolve(call.get("kwargs", {})),
                             return_tensors="pt"))


@pytest.mark.parametrize("folder", entries("preprocessing"))
def test_zoo_preprocessing(folder: Path):
    meta, golden = load(folder)
    ours = preprocess(folder, meta["call"])
    for name in meta["compare"]:
        if (folder.name, folder.parent.name, name) in ERA_CHANGES:
            continue
        assert name in ours, f"lightpipe's preprocessing gave {sorted(ours)}, no {name}"
        assert_close(ours[name], golden[f"in.{name}"], name)


# --- the breaks issue 15 found ---------------------------------------------------------------

def test_nested_processor_config_wav2vec2_v5_25():
    """transformers 5.25's Wav2Vec2Processor.save_pretrained nests the feature extractor in
    processor_config.json (no preprocessor_config.json): found by AutoFeatureExtractor,
    AutoProcessor and pipeline()."""
    folder = GOLDEN / "zoo" / "v5.25" / "wav2vec2"
    assert not (folder / "preprocessor_config.json").exists()
    assert "feature_extractor" in json.loads((folder / "processor_config.json").read_text())
    _, golden = load(folder)
    audio = resolve("@audio")
    extractor = lightpipe.AutoFeatureExtractor.from_pretrained(folder)
    assert_close(extractor(audio, sampling_rate=16000, return_tensors="pt")["input_values"],
                 golden["in.input_values"], "AutoFeatureExtractor input_values")
    processor = lightpipe.AutoProcessor.from_pretrained(folder)
    assert_close(processor(audio, sampling_rate=16000, return_tensors="pt")["input_values"],
                 golden["in.input_values"], "AutoProcessor input_values")
    result = lightpipe.pipeline("automatic-speech-recognition", model=str(folder))(audio)
    tokenizer = lightpipe.AutoTokenizer.from_pretrained(folder)  # CTC: repeats and pads dropped
    assert result["text"] == tokenizer.decode(golden["out.logits"][0].argmax(-1).tolist())


def test_detr_saved_by_transformers_5():
    """A DETR folder saved by transformers 5.25: no ``use_timm_backbone``, a ResNet
    ``backbone_config``. Every weight loads (no missing ones) and the outputs match."""
    folder = GOLDEN / "zoo" / "v5.25" / "detr"
    config = json.loads((folder / "config.json").read_text())
    assert "use_timm_backbone" not in config and config["backbone_config"]["model_type"] == "resnet"
    _, golden = load(folder)
    model = lightpipe.AutoModelForObjectDetection.from_pretrained(folder)
    inputs = {name[3:]: value for name, value in golden.items() if name.startswith("in.")}
    with torch.inference_mode():
        output = model(**inputs)
    assert_close(output["logits"], golden["out.logits"], "logits")
    assert_close(output["pred_boxes"], golden["out.pred_boxes"], "pred_boxes")


def test_legacy_pickle_bin():
    """A pytorch_model.bin in torch's legacy non-zip format (``_use_new_zipfile_serialization
    =False``, as older Hub repositories hold), with 2019-style gamma/beta LayerNorm names,
    loads (weights_only, no mmap) and matches."""
    folder = GOLDEN / "zoo" / "v4.40" / "bert"
    assert not (folder / "pytorch_model.bin").read_bytes()[:2] == b"PK"  # not a zip file
    assert not (folder / "model.safetensors").exists()
    _, golden = load(folder)
    model = lightpipe.AutoModelForMaskedLM.from_pretrained(folder)
    inputs = {name[3:]: value for name, value in golden.items() if name.startswith("in.")}
    with torch.inference_mode():
        assert_close(model(**inputs)["logits"], golden["out.logits"], "logits")
