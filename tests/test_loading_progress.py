"""A progress bar while a checkpoint's shards load (issue 22, item 9): "Loading checkpoint
shards" on stderr over two or more shards, as transformers shows it; none for one file; none
when progress bars are off (lightpipe.logging.disable_progress_bar(), the
LIGHTPIPE_DISABLE_PROGRESS_BARS or HF_HUB_DISABLE_PROGRESS_BARS variables, or a verbosity of
error); the loaded model still equals the reference."""

from __future__ import annotations

import logging

import pytest
import torch

import lightpipe

transformers = pytest.importorskip("transformers")

BAR = "Loading checkpoint shards"
IDS = torch.tensor([[101, 2023, 103, 102]])


@pytest.fixture(scope="module")
def checkpoints(tiny_model, tmp_path_factory):
    """(reference model, sharded folder, its shard count, single-file folder)."""
    source = tiny_model("bert", "AutoModelForMaskedLM")
    reference = transformers.AutoModelForMaskedLM.from_pretrained(source).eval()
    sharded = tmp_path_factory.mktemp("sharded")
    reference.save_pretrained(sharded, max_shard_size="200KB")
    shards = len(list(sharded.glob("model-*.safetensors")))
    assert shards > 1 and (sharded / "model.safetensors.index.json").is_file()
    return reference, sharded, shards, source


@pytest.fixture()
def switches(monkeypatch):
    """Progress bars as a fresh process has them; restored afterwards."""
    log = lightpipe.logging
    for name in ("LIGHTPIPE_DISABLE_PROGRESS_BARS", "HF_HUB_DISABLE_PROGRESS_BARS"):
        monkeypatch.delenv(name, raising=False)
    level = logging.getLogger("lightpipe").level
    monkeypatch.setattr(log, "_progress_bars", None)
    log.set_verbosity_warning()
    yield log
    logging.getLogger("lightpipe").setLevel(level)


def _load(folder, capsys) -> tuple[object, str]:
    capsys.readouterr()
    model = lightpipe.AutoModelForMaskedLM.from_pretrained(folder)
    return model, capsys.readouterr().err


def test_bar_over_shards_on_stderr(checkpoints, switches, capsys):
    reference, sharded, shards, single = checkpoints
    assert switches.is_progress_bar_enabled()
    model, err = _load(sharded, capsys)
    assert BAR in err and f"{shards}/{shards}" in err, err
    with torch.inference_mode():
        torch.testing.assert_close(model(input_ids=IDS).logits, reference(input_ids=IDS).logits)
    _, err = _load(single, capsys)  # one file: no bar
    assert BAR not in err


def test_bar_silent_when_disabled(checkpoints, switches, capsys, monkeypatch):
    _, sharded, shards, _ = checkpoints
    switches.disable_progress_bar()
    assert not switches.is_progress_bar_enabled()
    assert BAR not in _load(sharded, capsys)[1]
    switches.enable_progress_bar()
    assert f"{shards}/{shards}" in _load(sharded, capsys)[1]
    switches.set_verbosity_error()  # quiet means quiet, bars included
    assert BAR not in _load(sharded, capsys)[1]
    switches.set_verbosity_warning()
    monkeypatch.setattr(switches, "_progress_bars", None)
    for name in ("LIGHTPIPE_DISABLE_PROGRESS_BARS", "HF_HUB_DISABLE_PROGRESS_BARS"):
        monkeypatch.setenv(name, "1")
        assert not switches.is_progress_bar_enabled()
        assert BAR not in _load(sharded, capsys)[1], name
        monkeypatch.setenv(name, "0")
        assert switches.is_progress_bar_enabled()
    switches.enable_progress_bar()  # an explicit switch wins over the environment
    monkeypatch.setenv("LIGHTPIPE_DISABLE_PROGRESS_BARS", "1")
    assert BAR in _load(sharded, capsys)[1]


def test_pipeline_from_a_sharded_folder_shows_the_bar(checkpoints, switches, capsys):
    _, sharded, shards, source = checkpoints
    for name in ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json"):
        if (source / name).is_file():
            (sharded / name).write_bytes((source / name).read_bytes())
    capsys.readouterr()
    pipe = lightpipe.pipeline("fill-mask", model=str(sharded))
    assert f"{shards}/{shards}" in capsys.readouterr().err
    assert len(pipe("Paris is the [MASK] of France.")) == 5
