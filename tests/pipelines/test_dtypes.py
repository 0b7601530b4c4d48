"""Pipelines of every modality run a model loaded in bfloat16: float32 features and pixels
are cast to the model's dtype, and the scores stay close to float32's."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import lightpipe

GOLDEN = Path(__file__).resolve().parents[1] / "golden" / "seq2seq"


def _scores(results: list) -> dict:
    return {entry["label"]: entry["score"] for entry in results}


@pytest.mark.parametrize("task", ["audio-classification", "image-classification",
                                  "zero-shot-image-classification"])
def test_bfloat16_scores_close_to_float32(task, wav2vec2_folder, vision_model, speech_files, test_images):
    folder, item, kwargs = {
        "audio-classification": (wav2vec2_folder("AutoModelForAudioClassification"),
                                 str(speech_files["wav"]), {}),
        "image-classification": (vision_model("vit", "AutoModelForImageClassification"),
                                 test_images["rgb_jpeg"], {"top_k": 3}),
        "zero-shot-image-classification": (vision_model("clip", "AutoModel"), test_images["rgb_jpeg"],
                                           {"candidate_labels": ["a cat", "a dog"]}),
    }[task]
    full = lightpipe.pipeline(task, model=str(folder))
    half = lightpipe.pipeline(task, model=str(folder), dtype=torch.bfloat16)
    assert half.model.dtype == torch.bfloat16
    want, got = _scores(full(item, **kwargs)), _scores(half(item, **kwargs))
    common = set(want) & set(got)
    assert common
    for label in common:
        assert abs(want[label] - got[label]) < 0.05, (label, want[label], got[label])


@pytest.mark.parametrize("task, folder", [("automatic-speech-recognition", "whisper"),
                                          ("summarization", "bart"), ("text2text-generation", "t5")])
def test_bfloat16_generation_runs(task, folder, whisper_folder, speech_files):
    model = str(whisper_folder()) if folder == "whisper" else str(GOLDEN / folder)
    item = str(speech_files["wav"]) if folder == "whisper" else "the quick brown fox"
    pipe = lightpipe.pipeline(task, model=model, dtype=torch.bfloat16)
    assert pipe.model.dtype == torch.bfloat16
    out = pipe(item, max_new_tokens=4) if folder != "whisper" else pipe(item, generate_kwargs={"max_new_tokens": 4})
    text = out["text"] if isinstance(out, dict) else next(iter(out[0].values()))
    assert isinstance(text, str)
