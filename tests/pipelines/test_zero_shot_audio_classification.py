"""zero-shot-audio-classification (CLAP) against the reference pipeline: fused and not, long
clips with seeded random crops, templates, batching, input forms, bad input."""

from __future__ import annotations

import numpy as np
import pytest
import transformers

import lightpipe
from lightpipe.errors import InputError

from ..conftest import assert_outputs_close
from ..fixtures.audio import noise_audio
from ..fixtures.clap import build_clap

CLIPS = [noise_audio(0.6, 0), noise_audio(1.4, 1), noise_audio(0.3, 2)]
LABELS = ["dog", "rain", "a car engine", "birds"]


@pytest.fixture(scope="module")
def pipes(tmp_path_factory, roberta_path, byte_level_bpe):
    root = tmp_path_factory.mktemp("clap_pipe")
    cache = {}

    def get(fusion: bool):
        if fusion not in cache:
            folder = str(build_clap(root / str(fusion), roberta_path, len(byte_level_bpe[0]),
                                    fusion=fusion, seed=1))
            cache[fusion] = (lightpipe.pipeline("zero-shot-audio-classification", model=folder),
                             transformers.pipeline("zero-shot-audio-classification", model=folder))
        return cache[fusion]

    return get


def _both(ours, theirs, inputs, **kwargs):
    np.random.seed(11)
    expected = theirs(inputs, **kwargs)
    np.random.seed(11)
    return ours(inputs, **kwargs), expected


@pytest.mark.parametrize("fusion", [False, True])
@pytest.mark.parametrize("kwargs", [{}, {"hypothesis_template": "Sound of {}"},
                                    {"batch_size": 2}])
def test_matches_reference(pipes, fusion, kwargs):
    ours, theirs = pipes(fusion)
    got, expected = _both(ours, theirs, CLIPS, candidate_labels=LABELS, **kwargs)
    assert_outputs_close(got, expected)
    assert got[0][0]["score"] - got[0][-1]["score"] > 0.01  # the scores are not all equal
    got, expected = _both(ours, theirs, CLIPS[1], candidate_labels=LABELS[:2], **kwargs)
    assert_outputs_close(got, expected)


def test_input_forms(pipes, tmp_path):
    import soundfile

    ours, theirs = pipes(False)
    clip = CLIPS[0]
    expected = theirs(clip, candidate_labels=LABELS)
    assert_outputs_close(ours({"raw": clip, "sampling_rate": 16000}, candidate_labels=LABELS), expected)
    assert_outputs_close(ours({"array": clip.astype(np.float64), "sampling_rate": 16000},
                              candidate_labels=LABELS), expected)
    path = tmp_path / "clip.wav"
    soundfile.write(str(path), clip, 16000, subtype="FLOAT")
    assert_outputs_close(ours(str(path), candidate_labels=LABELS), expected)
    assert_outputs_close(ours(path.read_bytes(), candidate_labels=LABELS), expected)
    other_rate = ours({"raw": noise_audio(0.5, 4, rate=8000), "sampling_rate": 8000},
                      candidate_labels=LABELS)
    assert sorted(r["label"] for r in other_rate) == sorted(LABELS)
    assert [r["label"] for r in next(ours(iter(CLIPS), candidate_labels=LABELS))] == \
        [r["label"] for r in expected]
    assert ours(clip, "dog, rain") == ours(clip, candidate_labels=["dog", "rain"])


def test_labels_encoded_once_per_call(pipes, monkeypatch):
    ours, _ = pipes(False)
    calls = []
    original = type(ours.tokenizer).__call__

    def counting(self, *args, **kwargs):
        calls.append(args)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(type(ours.tokenizer), "__call__", counting)
    ours._texts = None
    ours(CLIPS, candidate_labels=["x", "y"], batch_size=1)
    assert len(calls) == 1


def test_bad_input(pipes):
    ours, _ = pipes(False)
    with pytest.raises(InputError, match="empty"):
        ours(np.zeros(0, dtype=np.float32), candidate_labels=LABELS)
    with pytest.raises(InputError, match="candidate_labels"):
        ours(CLIPS[0], candidate_labels=[])
    with pytest.raises(InputError, match="candidate_labels"):
        ours(CLIPS[0])
    with pytest.raises(InputError, match="hypothesis_template"):
        ours(CLIPS[0], candidate_labels=LABELS, hypothesis_template="no slot")
    with pytest.raises(InputError, match="sampling_rate"):
        ours({"raw": CLIPS[0]}, candidate_labels=LABELS)
    with pytest.raises(TypeError, match="top_k"):
        ours(CLIPS[0], candidate_labels=LABELS, top_k=2)


def test_cli_and_server(pipes, tmp_path, capsys):
    import base64
    import json

    import soundfile

    from lightpipe.cli import main

    from ..test_server import start_from_config

    ours, _ = pipes(False)
    folder = ours.model.name_or_path
    path = tmp_path / "clip.wav"
    soundfile.write(str(path), CLIPS[0], 16000, subtype="FLOAT")
    local = ours(str(path), candidate_labels=LABELS)
    assert main(["run", "zero-shot-audio-classification", "--model", folder,
                 "--kwargs", json.dumps({"candidate_labels": LABELS}), str(path)]) == 0
    assert_outputs_close(json.loads(capsys.readouterr().out.splitlines()[0]), local)
    running = start_from_config(tmp_path, {"models": [
        {"name": "clap", "task": "zero-shot-audio-classification", "model": folder}]})
    try:
        answer = running.post("/v1/pipelines/clap", {
            "inputs": [base64.b64encode(path.read_bytes()).decode(),
                       {"array": CLIPS[0].tolist(), "sampling_rate": 16000}],
            "parameters": {"candidate_labels": LABELS, "hypothesis_template": "Sound of {}"}})
        assert answer.status_code == 200, answer.text
        expected = ours([CLIPS[0], CLIPS[0]], candidate_labels=LABELS, hypothesis_template="Sound of {}")
        assert_outputs_close(answer.json(), expected)
    finally:
        assert running.stop() == 0, "".join(running.lines)


def test_demo_page(pipes, tmp_path):
    import soundfile

    from lightpipe.demo import page_for

    ours, _ = pipes(False)
    path = tmp_path / "clip.wav"
    soundfile.write(str(path), CLIPS[0], 16000, subtype="FLOAT")  # short: no random crop
    bars = page_for(ours).run(str(path), "dog, rain,")
    assert bars == {r["label"]: r["score"] for r in ours(str(path), candidate_labels=["dog", "rain"])}
