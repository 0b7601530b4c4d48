"""HuBERT and WavLM against the reference: every head's outputs (hidden states, CTC logits,
class logits) with and without padding, config variants (stable layer norm, no feature
projection norm, batch-norm positional conv, weighted layer sum, relative-position buckets),
the Auto classes' dispatch, and the automatic-speech-recognition and audio-classification
pipelines."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import transformers

import lightpipe

from ..conftest import assert_outputs_close
from ..fixtures.audio import TINY_WAV2VEC2, _spread, noise_audio, save_ctc_preprocessors

CONFIGS = {"hubert": transformers.HubertConfig, "wavlm": transformers.WavLMConfig}
CLASSES = {
    ("hubert", "AutoModel"): "HubertModel", ("hubert", "AutoModelForCTC"): "HubertForCTC",
    ("hubert", "AutoModelForAudioClassification"): "HubertForSequenceClassification",
    ("wavlm", "AutoModel"): "WavLMModel", ("wavlm", "AutoModelForCTC"): "WavLMForCTC",
    ("wavlm", "AutoModelForAudioClassification"): "WavLMForSequenceClassification",
}


def build(folder, model_type: str, head: str, **overrides):
    """A tiny random checkpoint saved by the reference, with a CTC tokenizer and feature
    extractor as Hub speech checkpoints have them."""
    stable = overrides.get("do_stable_layer_norm", False)
    vocab = save_ctc_preprocessors(folder, stable)
    sizes = {**TINY_WAV2VEC2, "vocab_size": len(vocab), "pad_token_id": 0,
             "hidden_act": "gelu_new", **overrides}
    if model_type == "wavlm":
        sizes.setdefault("num_buckets", 24)
        sizes.setdefault("max_bucket_distance", 40)
    if stable:
        sizes.setdefault("feat_extract_norm", "layer")
    torch.manual_seed(0)
    model = getattr(transformers, head).from_config(CONFIGS[model_type](**sizes))
    _spread(model, 0.3)
    with torch.no_grad():  # the defaults (ones, zeros) would hide a mix-up of these
        for name, param in model.named_parameters():
            if "gru_rel_pos_const" in name or "batch_norm" in name:
                param.uniform_(0.5, 1.5)
        for name, buffer in model.named_buffers():
            if "running_" in name:
                buffer.uniform_(0.5, 1.5)
    model.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    cache: dict = {}

    def get(model_type: str, head: str, **overrides):
        key = (model_type, head, json.dumps(overrides, sort_keys=True))
        if key not in cache:
            cache[key] = build(tmp_path_factory.mktemp(model_type), model_type, head, **overrides)
        return cache[key]

    return get


CASES = [
    ("AutoModel", {}),
    ("AutoModelForCTC", {}),
    ("AutoModelForCTC", {"do_stable_layer_norm": True, "conv_bias": True}),  # hubert-large-ft's
    ("AutoModelForAudioClassification", {"num_labels": 3, "use_weighted_layer_sum": True}),
    ("AutoModelForAudioClassification", {"num_labels": 3, "use_weighted_layer_sum": True,
                                         "do_stable_layer_norm": True}),
]
HUBERT_ONLY = [
    ("AutoModel", {"feat_proj_layer_norm": False}),
    ("AutoModel", {"conv_pos_batch_norm": True, "num_conv_pos_embeddings": 15}),
]


def _compare(folder, head):
    theirs = getattr(transformers, head).from_pretrained(folder).eval()
    ours = getattr(lightpipe, head).from_pretrained(folder)
    assert type(ours).__name__ == type(theirs).__name__  # Auto dispatch picks the same class
    audio = torch.from_numpy(np.stack([noise_audio(0.6, 0), noise_audio(0.6, 1)]))
    mask = torch.ones(2, audio.shape[1], dtype=torch.long)
    mask[1, 5000:] = 0
    key = "last_hidden_state" if head == "AutoModel" else "logits"
    for attention_mask in (None, mask):
        with torch.no_grad():
            want = theirs(audio, attention_mask=attention_mask, output_hidden_states=True)
        got = ours(audio, attention_mask=attention_mask, output_hidden_states=True)
        torch.testing.assert_close(got[key], want[key], rtol=1e-4, atol=5e-5)
        assert len(got.hidden_states) == len(want.hidden_states)
        for mine, ref in zip(got.hidden_states, want.hidden_states):
            torch.testing.assert_close(mine, ref, rtol=1e-4, atol=5e-5)


@pytest.mark.parametrize("model_type", ["hubert", "wavlm"])
@pytest.mark.parametrize("head,overrides", CASES)
def test_matches_reference(checkpoint, model_type, head, overrides):
    _compare(checkpoint(model_type, head, **overrides), head)


@pytest.mark.parametrize("head,overrides", HUBERT_ONLY)
def test_hubert_variants_match_reference(checkpoint, head, overrides):
    _compare(checkpoint("hubert", head, **overrides), head)


def test_wavlm_far_positions_use_log_buckets(checkpoint):
    """More frames than max_bucket_distance: the logarithmic and the clamped buckets."""
    folder = checkpoint("wavlm", "AutoModel", max_bucket_distance=12, num_buckets=16)
    theirs = transformers.AutoModel.from_pretrained(folder).eval()
    ours = lightpipe.AutoModel.from_pretrained(folder)
    audio = torch.from_numpy(noise_audio(0.9, 3)[None])
    with torch.no_grad():
        want = theirs(audio).last_hidden_state
    assert want.shape[1] > 40
    torch.testing.assert_close(ours(audio).last_hidden_state, want, rtol=1e-4, atol=5e-5)


CLIPS = [noise_audio(0.9, 0), noise_audio(1.2, 1), noise_audio(0.5, 2)]  # short: WavLM's
# reference attention (bias per head and pair of frames) is slow on long clips


@pytest.mark.parametrize("model_type", ["hubert", "wavlm"])
def test_speech_recognition_pipeline_matches_reference(checkpoint, model_type):
    folder = str(checkpoint(model_type, "AutoModelForCTC"))
    ours = lightpipe.pipeline("automatic-speech-recognition", model=folder)
    theirs = transformers.pipeline("automatic-speech-recognition", model=folder)
    for kwargs in ({}, {"return_timestamps": "char", "batch_size": 2},
                   {"chunk_length_s": 0.5, "stride_length_s": 0.1}):
        assert_outputs_close(ours(CLIPS, **kwargs), theirs(CLIPS, **kwargs))


@pytest.mark.parametrize("model_type", ["hubert", "wavlm"])
def test_audio_classification_pipeline_matches_reference(checkpoint, model_type):
    folder = str(checkpoint(model_type, "AutoModelForAudioClassification", num_labels=4))
    ours = lightpipe.pipeline("audio-classification", model=folder)
    theirs = transformers.pipeline("audio-classification", model=folder)
    for kwargs in ({}, {"top_k": 2, "batch_size": 2}, {"function_to_apply": "sigmoid"}):
        assert_outputs_close(ours(CLIPS, **kwargs), theirs(CLIPS, **kwargs))
    # the task is found from the checkpoint alone
    assert lightpipe.pipeline(model=folder).task == "audio-classification"
