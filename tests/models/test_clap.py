"""CLAP against the reference: the feature extractor in every truncation / padding mode (random
crops reproduced under np.random.seed), both towers with and without fusion, the projection
models, and loading through the Auto classes."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import transformers

from lightpipe.errors import InputError
from lightpipe.models.clap import (ClapAudioModelWithProjection, ClapModel,
                                   ClapTextModelWithProjection)
from lightpipe.processing.clap import ClapFeatureExtractor

from ..fixtures.audio import noise_audio
from ..fixtures.clap import FEATURES, build_clap

SHORT, EXACT, LONG = noise_audio(0.45, 0), noise_audio(1.0, 1), noise_audio(1.7, 2)


@pytest.fixture(scope="module")
def clap_folders(tmp_path_factory, roberta_path, byte_level_bpe):
    vocab = len(byte_level_bpe[0])
    root = tmp_path_factory.mktemp("clap")
    return {fusion: build_clap(root / f"fusion{int(fusion)}", roberta_path, vocab, fusion=fusion)
            for fusion in (False, True)}


@pytest.mark.parametrize("truncation", ["fusion", "rand_trunc"])
@pytest.mark.parametrize("padding", ["repeatpad", "repeat", "pad"])
def test_feature_extractor_matches_reference(truncation, padding):
    settings = dict(FEATURES, truncation=truncation, padding=padding)
    ours = ClapFeatureExtractor(**settings)
    theirs = transformers.ClapFeatureExtractor(**settings)
    for clips in ([SHORT], [SHORT, EXACT], [SHORT, LONG, EXACT], LONG):
        for return_tensors in ("pt", "np"):
            np.random.seed(7)
            expected = theirs(clips, sampling_rate=16000, return_tensors=return_tensors)
            np.random.seed(7)
            got = ours(clips, sampling_rate=16000, return_tensors=return_tensors)
            assert got["input_features"].dtype == expected["input_features"].dtype
            np.testing.assert_allclose(np.asarray(got["input_features"]),
                                       np.asarray(expected["input_features"]), atol=2e-4, rtol=1e-5)
            assert np.asarray(got["is_longer"]).tolist() == np.asarray(expected["is_longer"]).tolist()


def test_feature_extractor_errors_and_round_trip(tmp_path):
    ours = ClapFeatureExtractor(**FEATURES)
    with pytest.raises(InputError, match="16000"):
        ours(SHORT, sampling_rate=48000)
    with pytest.raises(InputError, match="empty"):
        ours(np.zeros(0, dtype=np.float32), sampling_rate=16000)
    with pytest.raises(InputError, match="truncation"):
        ours(LONG, sampling_rate=16000, truncation="middle")
    ours.save_pretrained(tmp_path)
    loaded = transformers.ClapFeatureExtractor.from_pretrained(tmp_path)
    assert loaded.nb_max_samples == ours.nb_max_samples == 16000


def _audio_inputs(folder):
    np.random.seed(3)
    extractor = transformers.ClapFeatureExtractor.from_pretrained(folder)
    return extractor([SHORT, LONG, EXACT], sampling_rate=16000, return_tensors="pt")


@pytest.mark.parametrize("fusion", [False, True])
def test_clap_model_matches_reference(clap_folders, fusion):
    folder = clap_folders[fusion]
    reference = transformers.ClapModel.from_pretrained(folder).eval()
    ours = ClapModel.from_pretrained(folder)
    features = _audio_inputs(folder)
    if fusion:
        assert features["is_longer"].tolist() == [[False], [True], [False]]
    tokenizer = transformers.AutoTokenizer.from_pretrained(folder)
    text = tokenizer(["a dog barks", "rain on a tin roof, loud", "silence"], padding=True,
                     return_tensors="pt")
    with torch.no_grad():
        expected = reference(**text, **features)
        got = ours(**text, **features)
        for key in ("logits_per_audio", "logits_per_text", "text_embeds", "audio_embeds"):
            torch.testing.assert_close(got[key], expected[key], rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(got["audio_model_output"]["last_hidden_state"],
                                   expected.audio_model_output.last_hidden_state, rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(ours.get_text_features(**text).pooler_output,
                                   reference.get_text_features(**text).pooler_output, rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(ours.get_audio_features(**features).pooler_output,
                                   reference.get_audio_features(**features).pooler_output,
                                   rtol=1e-4, atol=1e-5)
    assert expected.logits_per_audio.std() > 0.1  # scores are not all equal
    if fusion:
        with pytest.raises(InputError, match="is_longer"):
            ours(**text, input_features=features["input_features"])


def test_projection_models_match_reference(clap_folders, tmp_path):
    folder = clap_folders[True]
    full = transformers.ClapModel.from_pretrained(folder).eval()
    audio_ref = transformers.ClapAudioModelWithProjection(full.config.audio_config).eval()
    audio_ref.audio_model.load_state_dict(full.audio_model.state_dict())
    audio_ref.audio_projection.load_state_dict(full.audio_projection.state_dict())
    audio_ref.save_pretrained(tmp_path / "audio")
    text_ref = transformers.ClapTextModelWithProjection(full.config.text_config).eval()
    text_ref.text_model.load_state_dict(full.text_model.state_dict())
    text_ref.text_projection.load_state_dict(full.text_projection.state_dict())
    text_ref.save_pretrained(tmp_path / "text")
    features = _audio_inputs(folder)
    ids = torch.tensor([[0, 40, 41, 42, 2, 1], [0, 50, 51, 52, 53, 2]])
    with torch.no_grad():
        audio = ClapAudioModelWithProjection.from_pretrained(tmp_path / "audio")(**features)
        expected = audio_ref(**features)
        torch.testing.assert_close(audio.audio_embeds, expected.audio_embeds, rtol=1e-4, atol=1e-5)
        text = ClapTextModelWithProjection.from_pretrained(tmp_path / "text")(ids, ids.ne(1).long())
        expected = text_ref(input_ids=ids, attention_mask=ids.ne(1).long())
        torch.testing.assert_close(text.text_embeds, expected.text_embeds, rtol=1e-4, atol=1e-5)


def test_auto_classes_load_clap(clap_folders):
    import lightpipe

    folder = clap_folders[False]
    model = lightpipe.AutoModel.from_pretrained(folder)
    assert isinstance(model, ClapModel)
    extractor = lightpipe.AutoFeatureExtractor.from_pretrained(folder)
    assert isinstance(extractor, ClapFeatureExtractor) and extractor.truncation == "rand_trunc"
    processor = lightpipe.AutoProcessor.from_pretrained(folder)
    out = processor(audio=SHORT, text=["a dog"], sampling_rate=16000, return_tensors="pt")
    assert {"input_ids", "input_features", "is_longer"} <= set(out)
