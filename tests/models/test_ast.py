"""Audio Spectrogram Transformer against the reference: the feature extractor (Kaldi-style filter
banks, numpy path, padded and cut), ASTModel and ASTForAudioClassification outputs, the Auto
classes' dispatch, and the audio-classification pipeline."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import transformers

import lightpipe
from lightpipe.errors import InputError
from lightpipe.processing.audio import AutoFeatureExtractor

from ..conftest import assert_outputs_close
from ..fixtures.audio import noise_audio

# 1.0 s and 2.3 s are longer than max_length (cut), 0.3 s shorter (padded).
CLIPS = [noise_audio(1.0, 0), noise_audio(0.3, 1), noise_audio(2.3, 2)]
TINY = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=37,
            patch_size=8, frequency_stride=4, time_stride=6, max_length=64, num_mel_bins=32,
            hidden_act="gelu_new", layer_norm_eps=1e-6, qkv_bias=False)


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("ast")
    transformers.ASTFeatureExtractor(num_mel_bins=32, max_length=64, mean=-3.1,
                                     std=2.2).save_pretrained(folder)
    config = transformers.ASTConfig(**TINY, num_labels=5,
                                    id2label={i: f"sound{i}" for i in range(5)})
    torch.manual_seed(0)
    model = transformers.ASTForAudioClassification(config)
    with torch.no_grad():
        for param in model.parameters():
            param.normal_(0.0, 0.2)
    model.save_pretrained(folder)
    return folder


def test_feature_extractor_matches_reference(folder):
    theirs = transformers.AutoFeatureExtractor.from_pretrained(folder)
    ours = AutoFeatureExtractor.from_pretrained(folder)
    assert type(ours).__name__ == "ASTFeatureExtractor"
    want = theirs(CLIPS, sampling_rate=16000, return_tensors="np")["input_values"]
    got = ours(CLIPS, sampling_rate=16000, return_tensors="np")["input_values"]
    assert got.shape == want.shape == (3, 64, 32) and got.dtype == want.dtype
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    single = ours(CLIPS[1] * 1000, sampling_rate=16000, return_tensors="pt")["input_values"]
    want = theirs(CLIPS[1] * 1000, sampling_rate=16000, return_tensors="pt")["input_values"]
    torch.testing.assert_close(single, want, rtol=1e-5, atol=1e-5)
    with pytest.raises(InputError, match="400"):
        ours(np.zeros(100, np.float32), sampling_rate=16000)
    with pytest.raises(InputError, match="sampling_rate"):
        ours(CLIPS[0], sampling_rate=8000)


@pytest.mark.parametrize("head", ["AutoModel", "AutoModelForAudioClassification"])
def test_model_matches_reference(folder, head):
    theirs = getattr(transformers, head).from_pretrained(folder).eval()
    ours = getattr(lightpipe, head).from_pretrained(folder)
    assert type(ours).__name__ == type(theirs).__name__
    inputs = transformers.AutoFeatureExtractor.from_pretrained(folder)(
        CLIPS, sampling_rate=16000, return_tensors="pt")["input_values"]
    with torch.no_grad():
        want = theirs(inputs, output_hidden_states=True)
    got = ours(inputs, output_hidden_states=True)
    keys = ["last_hidden_state", "pooler_output"] if head == "AutoModel" else ["logits"]
    for key in keys:
        torch.testing.assert_close(got[key], want[key], rtol=1e-4, atol=1e-5)
    for mine, ref in zip(got.hidden_states, want.hidden_states, strict=True):
        torch.testing.assert_close(mine, ref, rtol=1e-4, atol=1e-5)
    with pytest.raises(InputError, match="ASTFeatureExtractor"):
        ours(inputs[:, :10])


def test_audio_classification_pipeline_matches_reference(folder):
    ours = lightpipe.pipeline("audio-classification", model=str(folder))
    theirs = transformers.pipeline("audio-classification", model=str(folder))
    for kwargs in ({}, {"top_k": 2}, {"batch_size": 2, "function_to_apply": "sigmoid"}):
        assert_outputs_close(ours(CLIPS, **kwargs), theirs(CLIPS, **kwargs))
        assert_outputs_close(ours(CLIPS[0], **kwargs), theirs(CLIPS[0], **kwargs))
    item = {"raw": CLIPS[2], "sampling_rate": 16000}  # (the reference resamples only with torchaudio)
    assert_outputs_close(ours(dict(item)), theirs(dict(item)))
    assert lightpipe.pipeline(model=str(folder)).task == "audio-classification"
