"""Resolving a model (folder, Hub cache, offline), reading config.json, and loading weights:
safetensors single and sharded, memory-mapped without a copy, dtypes, legacy names,
pytorch_model.bin, and every broken-checkpoint case with a clear error."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
import transformers

import lightpipe
from lightpipe import weights as weights_io
from lightpipe.config import AutoConfig, Config
from lightpipe.errors import (ModelNotFoundError, RemoteCodeError, UnsupportedModelError,
                              WeightsError)
from lightpipe.hub import resolve

COMMIT = "0123456789abcdef0123456789abcdef01234567"


def _copy(folder: Path, tmp_path: Path, name: str = "copy") -> Path:
    target = tmp_path / name
    shutil.copytree(folder, target)
    return target


# --- hub ---
def test_local_folder_is_used_as_is(tiny_model):
    folder = tiny_model("bert")
    assert resolve(folder) == folder
    assert resolve(str(folder)) == folder


def test_missing_folder_is_a_clear_error(tmp_path):
    with pytest.raises(ModelNotFoundError, match="no folder"):
        resolve(str(tmp_path / "nope" / "deeper" / "still"))
    with pytest.raises(ModelNotFoundError, match="is a file"):
        (tmp_path / "f.txt").write_text("x")
        resolve(tmp_path / "f.txt")


@pytest.fixture
def hub_cache(tmp_path, tiny_model):
    """A Hugging Face cache holding 'org/tiny-bert' as huggingface_hub lays it out."""
    repo = tmp_path / "cache" / "models--org--tiny-bert"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(COMMIT)
    shutil.copytree(tiny_model("bert", "AutoModelForSequenceClassification"), repo / "snapshots" / COMMIT)
    return tmp_path / "cache"


def test_hub_id_from_cache_offline(hub_cache, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    folder = resolve("org/tiny-bert", cache_dir=hub_cache)
    assert folder.name == COMMIT and (folder / "config.json").is_file()
    assert resolve("org/tiny-bert", cache_dir=hub_cache, revision=COMMIT) == folder
    model = lightpipe.AutoModelForSequenceClassification.from_pretrained("org/tiny-bert", cache_dir=hub_cache)
    assert type(model).__name__ == "BertForSequenceClassification"


def test_offline_and_not_cached_says_so(hub_cache, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelNotFoundError, match="not in the local Hugging Face cache.*HF_HUB_OFFLINE"):
        resolve("org/not-downloaded", cache_dir=hub_cache)
    with pytest.raises(ModelNotFoundError, match="local_files_only"):
        resolve("org/not-downloaded", cache_dir=hub_cache, local_files_only=True)


def test_offline_pipeline_from_cache(hub_cache, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(hub_cache))
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(hub_cache))
    clf = lightpipe.pipeline("text-classification", model="org/tiny-bert")
    assert clf("hello")[0]["label"].startswith("LABEL_")


# --- config ---
def test_config_fields_and_labels(tiny_model):
    folder = tiny_model("bert", "AutoModelForSequenceClassification")
    config = AutoConfig.from_pretrained(folder)
    reference = transformers.AutoConfig.from_pretrained(folder)
    assert config.model_type == "bert" and config.hidden_size == reference.hidden_size
    assert config.id2label == reference.id2label and all(isinstance(k, int) for k in config.id2label)
    assert config.label2id == reference.label2id and config.num_labels == reference.num_labels
    assert config.architectures == ["BertForSequenceClassification"]
    assert config.problem_type is None
    config.num_labels = 4
    assert config.id2label == {i: f"LABEL_{i}" for i in range(4)}
    with pytest.raises(AttributeError):
        config.no_such_field


def test_config_defaults_and_aliases(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "distilbert", "dim": 64,
                                                      "id2label": {"0": "NEG", "1": "POS"}}))
    config = Config.from_folder(tmp_path, n_layers=3)
    assert config.hidden_size == 64 and config.num_hidden_layers == 3  # distilbert's names
    assert config.id2label == {0: "NEG", 1: "POS"} and config.label2id == {"NEG": 0, "POS": 1}
    model = lightpipe.AutoModel.from_config(config)
    assert model.config.n_heads == 12 and model.config.hidden_dim == 3072  # family defaults


def test_missing_config_is_a_clear_error(tmp_path):
    with pytest.raises(ModelNotFoundError, match="no config.json"):
        lightpipe.AutoModel.from_pretrained(tmp_path)
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(ModelNotFoundError, match="not valid JSON"):
        lightpipe.AutoModel.from_pretrained(tmp_path)


def test_unsupported_model_type_names_it_and_the_supported(tiny_model, tmp_path):
    folder = _copy(tiny_model("bert"), tmp_path)
    config = json.loads((folder / "config.json").read_text())
    config["model_type"] = "bertt"
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(UnsupportedModelError, match=r"'bertt'.*Did you mean 'bert'.*distilbert"):
        lightpipe.AutoModel.from_pretrained(folder)
    config["model_type"] = "mamba"
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(UnsupportedModelError, match="'mamba' is not supported"):
        lightpipe.pipeline("feature-extraction", model=folder)


def test_trust_remote_code_is_refused(tiny_model):
    folder = tiny_model("bert")
    with pytest.raises(RemoteCodeError, match="trust_remote_code"):
        lightpipe.AutoModel.from_pretrained(folder, trust_remote_code=True)
    with pytest.raises(RemoteCodeError):
        lightpipe.pipeline("feature-extraction", model=folder, trust_remote_code=True)
    with pytest.raises(RemoteCodeError):
        lightpipe.AutoConfig.from_pretrained(folder, trust_remote_code=True)


# --- weights ---
def test_safetensors_are_memory_mapped_without_copies(tiny_model):
    folder = tiny_model("bert")
    header, start = weights_io.read_safetensors_header(folder / "model.safetensors")
    model = lightpipe.AutoModel.from_pretrained(folder)
    params = dict(model.named_parameters())
    a, b = "embeddings.word_embeddings.weight", "encoder.layer.0.attention.self.query.weight"
    # Two parameters sit as far apart in memory as in the file: both view one mapping.
    distance = params[b].data_ptr() - params[a].data_ptr()
    assert distance == header[b]["data_offsets"][0] - header[a]["data_offsets"][0]


@pytest.mark.parametrize("dtype, expected", [("auto", torch.float32), (torch.bfloat16, torch.bfloat16),
                                             ("float16", torch.float16), ("bfloat16", torch.bfloat16)])
def test_dtype_argument(tiny_model, dtype, expected):
    model = lightpipe.AutoModel.from_pretrained(tiny_model("bert"), dtype=dtype)
    assert model.dtype == expected
    assert all(p.dtype == expected for p in model.parameters())


def test_dtype_auto_keeps_a_bf16_checkpoint_in_bf16(tiny_model, tmp_path):
    reference = transformers.AutoModel.from_pretrained(tiny_model("bert"), dtype=torch.bfloat16)
    reference.save_pretrained(tmp_path)
    model = lightpipe.AutoModel.from_pretrained(tmp_path)
    assert model.dtype == torch.bfloat16
    ids = torch.tensor([[101, 2023, 2003, 1037, 3231, 102]])
    with torch.inference_mode():
        torch.testing.assert_close(model(input_ids=ids).last_hidden_state,
                                   reference(input_ids=ids).last_hidden_state)
    assert lightpipe.AutoModel.from_pretrained(tmp_path, dtype=torch.float32).dtype == torch.float32
    with pytest.raises(ValueError, match="not a dtype"):
        lightpipe.AutoModel.from_pretrained(tmp_path, dtype="float33")


def test_sharded_checkpoint(tiny_model, tmp_path):
    reference = transformers.AutoModelForMaskedLM.from_pretrained(tiny_model("bert", "AutoModelForMaskedLM"))
    reference.save_pretrained(tmp_path, max_shard_size="200KB")
    assert (tmp_path / "model.safetensors.index.json").is_file()
    assert len(list(tmp_path.glob("model-*.safetensors"))) > 1
    model = lightpipe.AutoModelForMaskedLM.from_pretrained(tmp_path)
    ids = torch.tensor([[101, 2023, 103, 102]])
    with torch.inference_mode():
        torch.testing.assert_close(model(input_ids=ids).logits, reference(input_ids=ids).logits)
    next(tmp_path.glob("model-*.safetensors")).unlink()
    with pytest.raises(WeightsError, match="incomplete"):
        lightpipe.AutoModelForMaskedLM.from_pretrained(tmp_path)


def test_pytorch_bin_with_legacy_names(tiny_model, tmp_path):
    """An old-style checkpoint: pytorch_model.bin, LayerNorm gamma/beta, no base prefix."""
    folder = tiny_model("bert", "AutoModelForSequenceClassification")
    reference = transformers.AutoModelForSequenceClassification.from_pretrained(folder)
    state = {}
    for name, tensor in reference.state_dict().items():
        name = name.replace("LayerNorm.weight", "LayerNorm.gamma").replace("LayerNorm.bias", "LayerNorm.beta")
        state[name] = tensor.clone()
    shutil.copy(folder / "config.json", tmp_path / "config.json")
    torch.save(state, tmp_path / "pytorch_model.bin")
    model = lightpipe.AutoModelForSequenceClassification.from_pretrained(tmp_path)
    ids = torch.tensor([[101, 2023, 2003, 102]])
    with torch.inference_mode():
        torch.testing.assert_close(model(input_ids=ids).logits, reference(input_ids=ids).logits)


def test_pickle_with_code_is_refused(tiny_model, tmp_path):
    shutil.copy(tiny_model("bert") / "config.json", tmp_path / "config.json")
    torch.save({"weights": object.__new__(Config)}, tmp_path / "pytorch_model.bin")
    with pytest.raises(WeightsError, match="weights_only"):
        lightpipe.AutoModel.from_pretrained(tmp_path)


def test_no_weights_is_a_clear_error(tiny_model, tmp_path):
    shutil.copy(tiny_model("bert") / "config.json", tmp_path / "config.json")
    with pytest.raises(WeightsError, match="No weights.*model.safetensors"):
        lightpipe.AutoModel.from_pretrained(tmp_path)


@pytest.mark.parametrize("damage", ["truncate", "header", "empty", "garbage"])
def test_corrupt_safetensors_is_a_clear_error(tiny_model, tmp_path, damage):
    folder = _copy(tiny_model("bert"), tmp_path)
    path = folder / "model.safetensors"
    data = path.read_bytes()
    if damage == "truncate":
        path.write_bytes(data[: len(data) // 2])
    elif damage == "header":
        path.write_bytes(data[:8] + b"{" * 20 + data[28:])
    elif damage == "empty":
        path.write_bytes(b"")
    else:
        path.write_bytes(b"\xff" * 64)
    with pytest.raises(WeightsError, match="(truncated|corrupt|not a valid)"):
        lightpipe.AutoModel.from_pretrained(folder)


def test_checkpoint_that_does_not_fit_the_config(tiny_model, tmp_path):
    folder = _copy(tiny_model("bert"), tmp_path)
    config = json.loads((folder / "config.json").read_text())
    config["intermediate_size"] = 64
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(WeightsError, match="shape"):
        lightpipe.AutoModel.from_pretrained(folder)
    config["intermediate_size"], config["num_hidden_layers"] = 37, 3
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(WeightsError, match="missing.*encoder.layer.2"):
        lightpipe.AutoModel.from_pretrained(folder)


@pytest.mark.parametrize("head", ["AutoModelForSequenceClassification", "AutoModelForMaskedLM"])
def test_save_pretrained_round_trip_with_the_reference(tiny_model, tmp_path, head):
    ours = getattr(lightpipe, head).from_pretrained(tiny_model("roberta", head))
    ours.save_pretrained(tmp_path)
    reloaded = getattr(lightpipe, head).from_pretrained(tmp_path)
    reference = getattr(transformers, head).from_pretrained(tmp_path)
    ids = torch.tensor([[0, 45, 67, 89, 2]])
    with torch.inference_mode():
        expected = reference(input_ids=ids).logits
        torch.testing.assert_close(reloaded(input_ids=ids).logits, expected)
        torch.testing.assert_close(ours(input_ids=ids).logits, expected)
