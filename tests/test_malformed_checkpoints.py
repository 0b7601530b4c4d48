"""Malformed checkpoints (issue 16, and the legacy .bin of issue 15): every broken safetensors
header, shard index and config.json is a lightpipe error naming the file, the entry and the
fix, raised before anything large is allocated; old save formats load as the reference loads
them; a config that leaves checkpoint weights unused says so in a warning."""

from __future__ import annotations

import json
import logging
import shutil
import struct
import time
from pathlib import Path

import pytest
import torch
import transformers

import lightpipe
from lightpipe.config import Config
from lightpipe.errors import LightpipeError, WeightsError


def _copy(folder: Path, target: Path) -> Path:
    shutil.copytree(folder, target)
    return target


def _edit_config(folder: Path, **changes) -> None:
    path = folder / "config.json"
    data = json.loads(path.read_text())
    data.update(changes)
    path.write_text(json.dumps(data))


def _rewrite_header(path: Path, edit) -> dict:
    """Apply ``edit(header)`` to a safetensors file's header, keeping its data bytes (the header
    is padded to its old length when it fits, so the data stays aligned)."""
    data = path.read_bytes()
    (length,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + length])
    edit(header)
    raw = json.dumps(header).encode()
    raw = raw.ljust(length) if len(raw) <= length else raw
    path.write_bytes(struct.pack("<Q", len(raw)) + raw + data[8 + length:])
    return header


@pytest.fixture
def bert_copy(tiny_model, tmp_path) -> Path:
    return _copy(tiny_model("bert", "AutoModelForSequenceClassification"), tmp_path / "bert")


# --- safetensors headers ---
_TENSOR = "bert.encoder.layer.0.attention.self.query.weight"  # (32, 32) float32: 4096 bytes


def _negative_offsets(entry, header_length):
    begin, end = entry["data_offsets"]
    entry["data_offsets"] = [-(end - begin), 0]  # the bytes just before the data: the header


def _before_the_file(entry, header_length):
    size = entry["data_offsets"][1] - entry["data_offsets"][0]
    entry["data_offsets"] = [-(8 + header_length) - size, -(8 + header_length)]


def _float_offsets(entry, header_length):
    entry["data_offsets"] = [float(v) for v in entry["data_offsets"]]


def _negative_dims(entry, header_length):
    entry["shape"] = [-dim for dim in entry["shape"]]


def _past_the_end(entry, header_length):
    entry["data_offsets"][1] += 10_000_000


def _unknown_dtype(entry, header_length):
    entry["dtype"] = "F128"


def _shape_of_another_size(entry, header_length):
    entry["shape"] = [16, 32]


def _bool_shape(entry, header_length):
    entry["shape"] = [True, 1024]


def _offsets_not_a_pair(entry, header_length):
    entry["data_offsets"] = [entry["data_offsets"][0]]


@pytest.mark.parametrize("damage, message", [
    (_negative_offsets, "offsets"),
    (_before_the_file, "offsets"),
    (_float_offsets, "offsets.*whole numbers"),
    (_negative_dims, "shape"),
    (_past_the_end, "truncated|past the end"),
    (_unknown_dtype, "dtype 'F128'"),
    (_shape_of_another_size, "bytes for shape"),
    (_bool_shape, "shape"),
    (_offsets_not_a_pair, "offsets"),
])
def test_bad_safetensors_header_entry_is_refused(bert_copy, damage, message):
    path = bert_copy / "model.safetensors"
    (length,) = struct.unpack("<Q", path.read_bytes()[:8])
    _rewrite_header(path, lambda header: damage(header[_TENSOR], length))
    with pytest.raises(WeightsError, match=message) as caught:
        lightpipe.AutoModelForSequenceClassification.from_pretrained(bert_copy)
    assert "model.safetensors" in str(caught.value) and _TENSOR in str(caught.value)
    from safetensors.torch import load_file

    with pytest.raises(Exception):  # the reference reader refuses the same file
        load_file(path)


def test_overlapping_tensors_are_refused(bert_copy):
    """Two tensors over the same bytes (or a gap between tensors): the safetensors library
    refuses such a file, and so does lightpipe."""
    path = bert_copy / "model.safetensors"
    key = "bert.encoder.layer.0.attention.self.key.weight"
    _rewrite_header(path, lambda header: header[key].update(
        data_offsets=list(header[_TENSOR]["data_offsets"])))
    with pytest.raises(WeightsError, match="overlap|offsets"):
        lightpipe.AutoModelForSequenceClassification.from_pretrained(bert_copy)


def test_header_entry_that_is_not_an_object(bert_copy):
    _rewrite_header(bert_copy / "model.safetensors", lambda header: header.update({_TENSOR: 5}))
    with pytest.raises(WeightsError, match=_TENSOR):
        lightpipe.AutoModelForSequenceClassification.from_pretrained(bert_copy)


# --- shard indexes ---
@pytest.fixture
def sharded(tiny_model, tmp_path) -> Path:
    reference = transformers.AutoModelForMaskedLM.from_pretrained(tiny_model("bert", "AutoModelForMaskedLM"))
    folder = tmp_path / "sharded"
    reference.save_pretrained(folder, max_shard_size="200KB")
    assert (folder / "model.safetensors.index.json").is_file()
    return folder


def _edit_index(folder: Path, edit, name: str = "model.safetensors.index.json") -> None:
    path = folder / name
    index = json.loads(path.read_text())
    edit(index)
    path.write_text(json.dumps(index))


@pytest.mark.parametrize("where", ["relative", "absolute"])
def test_shard_outside_the_model_folder_is_refused(sharded, tmp_path, where):
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    shard = sorted(sharded.glob("model-*.safetensors"))[0]
    moved = outside / shard.name
    shutil.move(shard, moved)
    target = f"../elsewhere/{shard.name}" if where == "relative" else str(moved)

    def point_outside(index):
        index["weight_map"] = {k: (target if v == shard.name else v) for k, v in index["weight_map"].items()}

    _edit_index(sharded, point_outside)
    with pytest.raises(WeightsError, match="outside the model folder"):
        lightpipe.AutoModelForMaskedLM.from_pretrained(sharded)


@pytest.mark.parametrize("weight_map, message", [
    ({"bert.embeddings.word_embeddings.weight": 5}, "not a file name"),
    ({"bert.embeddings.word_embeddings.weight": ["model-00001-of-00002.safetensors"]}, "not a file name"),
    (5, "weight_map"),
    (["model-00001-of-00002.safetensors"], "weight_map"),
    ({}, "weight_map"),
    (None, "weight_map"),
])
def test_malformed_weight_map_is_a_clear_error(sharded, weight_map, message):
    def damage(index):
        if weight_map is None:
            del index["weight_map"]
        else:
            index["weight_map"] = weight_map

    _edit_index(sharded, damage)
    with pytest.raises(WeightsError, match=message) as caught:
        lightpipe.AutoModelForMaskedLM.from_pretrained(sharded)
    assert "model.safetensors.index.json" in str(caught.value)


def test_damaged_index_json_is_a_clear_error(sharded):
    (sharded / "model.safetensors.index.json").write_text("{not json")
    with pytest.raises(LightpipeError, match="model.safetensors.index.json"):
        lightpipe.AutoModelForMaskedLM.from_pretrained(sharded)


# --- pytorch_model.bin in older formats (issue 15) ---
def _logits(model, ids):
    with torch.inference_mode():
        return model(input_ids=ids).logits


def test_legacy_pytorch_bin_loads(tiny_model, tmp_path):
    """torch.save(..., _use_new_zipfile_serialization=False): the pre-1.6 format, common in older
    Hub repositories. It cannot be memory-mapped, but it loads (still with weights_only)."""
    folder = tiny_model("bert", "AutoModelForSequenceClassification")
    reference = transformers.AutoModelForSequenceClassification.from_pretrained(folder)
    shutil.copy(folder / "config.json", tmp_path / "config.json")
    torch.save(reference.state_dict(), tmp_path / "pytorch_model.bin", _use_new_zipfile_serialization=False)
    model = lightpipe.AutoModelForSequenceClassification.from_pretrained(tmp_path)
    ids = torch.tensor([[101, 2023, 2003, 102]])
    torch.testing.assert_close(_logits(model, ids), _logits(reference, ids))


def test_legacy_pytorch_bin_with_code_is_still_refused(tiny_model, tmp_path):
    shutil.copy(tiny_model("bert") / "config.json", tmp_path / "config.json")
    torch.save({"weights": object.__new__(Config)}, tmp_path / "pytorch_model.bin",
               _use_new_zipfile_serialization=False)
    with pytest.raises(WeightsError, match="weights_only"):
        lightpipe.AutoModel.from_pretrained(tmp_path)


@pytest.mark.parametrize("legacy", [False, True])
def test_sharded_pytorch_bin_loads(tiny_model, tmp_path, legacy):
    """pytorch_model-0000N-of-0000M.bin with pytorch_model.bin.index.json, as transformers 4
    wrote them (safe_serialization=False)."""
    folder = tiny_model("bert", "AutoModelForMaskedLM")
    reference = transformers.AutoModelForMaskedLM.from_pretrained(folder)
    shutil.copy(folder / "config.json", tmp_path / "config.json")
    state = reference.state_dict()
    names = list(state)
    halves = [names[: len(names) // 2], names[len(names) // 2:]]
    weight_map = {}
    for number, part in enumerate(halves, 1):
        shard = f"pytorch_model-{number:05d}-of-00002.bin"
        torch.save({k: state[k].clone() for k in part}, tmp_path / shard,
                   _use_new_zipfile_serialization=not legacy)
        weight_map.update({k: shard for k in part})
    (tmp_path / "pytorch_model.bin.index.json").write_text(json.dumps(
        {"metadata": {"total_size": sum(t.numel() * t.element_size() for t in state.values())},
         "weight_map": weight_map}))
    model = lightpipe.AutoModelForMaskedLM.from_pretrained(tmp_path)
    ids = torch.tensor([[101, 2023, 103, 102]])
    torch.testing.assert_close(_logits(model, ids), _logits(reference, ids))


# --- a config that does not use every checkpoint weight ---
def test_fewer_layers_than_the_checkpoint_warns(tiny_model, tmp_path, caplog):
    """As the reference does: a warning that lists the unused weights (shortened), here with
    what to check, as the model then is not the one that was saved."""
    folder = _copy(tiny_model("bert"), tmp_path / "bert")
    _edit_config(folder, num_hidden_layers=1)
    with caplog.at_level(logging.WARNING, logger="lightpipe"):
        model = lightpipe.AutoModel.from_pretrained(folder)
    assert len(model.encoder.layer) == 1
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1, warnings
    assert "encoder.layer.1" in warnings[0] and "not used" in warnings[0]
    assert "num_hidden_layers" in warnings[0] and "config.json" in warnings[0]
    assert len(warnings[0]) < 600, "16 unused weights of one layer are shown in a line or two"


def test_unused_weights_of_another_head_warn_as_the_reference(tiny_model, caplog):
    folder = tiny_model("bert", "AutoModelForSequenceClassification")
    with caplog.at_level(logging.WARNING, logger="lightpipe"):
        lightpipe.AutoModel.from_pretrained(folder)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "classifier.{bias, weight}" in warnings[0], warnings
    assert "num_hidden_layers" not in warnings[0]


# --- config.json validated before anything is built ---
_CONFIG_CASES = [
    (dict(hidden_size="32"), "hidden_size.*whole number"),
    (dict(num_hidden_layers="2"), "num_hidden_layers.*whole number"),
    (dict(layer_norm_eps="abc"), "layer_norm_eps.*number"),
    (dict(layer_norm_eps=-1.0), "layer_norm_eps"),
    (dict(num_attention_heads=0), "num_attention_heads.*at least 1"),
    (dict(hidden_size=30), "hidden_size=30.*multiple of num_attention_heads=4"),
    (dict(id2label=["NEG", "POS"]), "id2label"),
    (dict(id2label={"zero": "NEG"}), "id2label"),
    (dict(intermediate_size=-5), "intermediate_size.*-5"),
    (dict(vocab_size=0), "vocab_size.*at least 1"),
    (dict(num_hidden_layers=1e6), "num_hidden_layers.*whole number"),
    (dict(num_hidden_layers=1_000_000), "num_hidden_layers=1000000"),
    (dict(num_labels=1e9), "num_labels.*whole number"),
    (dict(num_labels=1_000_000_000), "num_labels=1000000000"),
    (dict(num_labels=-1), "num_labels"),
    (dict(vocab_size=10**12), "vocab_size"),
    (dict(max_position_embeddings=10**11), "max_position_embeddings"),
    (dict(hidden_size=True), "hidden_size"),
]


@pytest.mark.parametrize("changes, message", _CONFIG_CASES,
                         ids=[f"{k}={v!r}"[:40] for c, _ in _CONFIG_CASES for k, v in c.items()])
def test_bad_config_is_refused_before_building(bert_copy, changes, message):
    _edit_config(bert_copy, **changes)
    start = time.perf_counter()
    with pytest.raises(LightpipeError, match=message) as caught:
        lightpipe.AutoModelForSequenceClassification.from_pretrained(bert_copy)
    assert isinstance(caught.value, ValueError)  # as transformers users catch config errors
    assert time.perf_counter() - start < 10


@pytest.mark.parametrize("changes, message", [
    (dict(num_hidden_layers=1_000_000), "num_hidden_layers"),
    (dict(vocab_size=10**12), "vocab_size"),
    (dict(hidden_size=2**20, num_attention_heads=1), "memory"),
    (dict(num_attention_heads=0), "num_attention_heads"),
])
def test_bad_config_is_refused_by_from_config(changes, message):
    config = Config(model_type="bert", hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                    intermediate_size=37, vocab_size=100)
    config.update(changes)
    start = time.perf_counter()
    with pytest.raises(LightpipeError, match=message):
        lightpipe.AutoModel.from_config(config)
    assert time.perf_counter() - start < 10


def test_num_labels_is_checked_when_set(bert_copy):
    config = Config.from_folder(bert_copy)
    with pytest.raises(LightpipeError, match="num_labels"):
        config.num_labels = 10**9
    with pytest.raises(LightpipeError, match="num_labels"):
        Config(num_labels="3")
    config.num_labels = 3
    assert config.id2label == {0: "LABEL_0", 1: "LABEL_1", 2: "LABEL_2"}


def test_sizes_in_nested_configs_and_aliases_are_checked(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "distilbert", "dim": 30,
                                                      "n_heads": 4}))
    with pytest.raises(LightpipeError, match="multiple of"):
        lightpipe.AutoModel.from_config(Config.from_folder(tmp_path))
    nested = Config(model_type="clip", text_config={"hidden_size": "64"})
    with pytest.raises(LightpipeError, match="text_config.hidden_size"):
        lightpipe.AutoModel.from_config(nested)


def test_good_configs_still_load(tiny_model):
    """The checks refuse nothing a real checkpoint has (lists of sizes, None, floats as ints)."""
    for model_type in ("bert", "distilbert", "roberta"):
        lightpipe.AutoModel.from_pretrained(tiny_model(model_type))
