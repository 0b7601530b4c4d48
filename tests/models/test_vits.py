"""VITS (MMS-TTS) against the reference: seeded waveforms, one and several speakers, padded
batches, the deterministic duration predictor, legacy weight-norm names, the Auto classes, and
the character tokenizer (normalisation, add_blank, special tokens, phonemes refused)."""

from __future__ import annotations

import pytest
import torch

from lightpipe import AutoModel, AutoModelForTextToSpectrogram, AutoModelForTextToWaveform, AutoTokenizer
from lightpipe.errors import InputTypeError, MissingExtraError, UnsupportedModelError
from lightpipe.models.vits import VitsModel

from ..fixtures.vits import build_vits

transformers = pytest.importorskip("transformers")


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    root = tmp_path_factory.mktemp("vits")
    return {
        "single": build_vits(root / "single"),
        "speakers": build_vits(root / "speakers", num_speakers=3, seed=1, window_size=2),
        "plain": build_vits(root / "plain", seed=2, use_stochastic_duration_prediction=False,
                            legacy_names=True, ffn_kernel_size=1, num_attention_heads=4),
    }


def _pair(folder):
    return transformers.VitsModel.from_pretrained(folder).eval(), VitsModel.from_pretrained(folder)


def _seeded(model, seed: int, **inputs):
    torch.manual_seed(seed)
    with torch.no_grad():
        return model(**inputs)


def _batch(lengths: list[int], seed: int = 0):
    generator = torch.Generator().manual_seed(seed)
    ids = torch.randint(1, 30, (len(lengths), max(lengths)), generator=generator)
    mask = torch.zeros_like(ids)
    for row, length in enumerate(lengths):
        mask[row, :length] = 1
    return ids * mask, mask


@pytest.mark.parametrize("name", ["single", "speakers", "plain"])
def test_seeded_waveform_equals_reference(checkpoints, name):
    theirs, ours = _pair(checkpoints[name])
    extra = {"speaker_id": 2} if name == "speakers" else {}
    for lengths in ([2], [17], [11, 5, 8]):  # shorter and longer than the attention window
        ids, mask = _batch(lengths, seed=len(lengths))
        want = _seeded(theirs, 7, input_ids=ids, attention_mask=mask, **extra)
        got = _seeded(ours, 7, input_ids=ids, attention_mask=mask, **extra)
        assert torch.equal(got.sequence_lengths, want.sequence_lengths)
        torch.testing.assert_close(got.spectrogram, want.spectrogram, rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(got.waveform, want.waveform, rtol=1e-4, atol=1e-5)
        assert got.waveform.std() > 1e-3  # a real signal, not silence


def test_without_mask_speaking_rate_and_noise_scales(checkpoints):
    theirs, ours = _pair(checkpoints["single"])
    ids, _ = _batch([12], seed=3)
    for model in (theirs, ours):  # set as attributes, as with transformers
        model.noise_scale, model.noise_scale_duration = 0.9, 0.3
    want = _seeded(theirs, 3, input_ids=ids, speaking_rate=0.7)
    got = _seeded(ours, 3, input_ids=ids, speaking_rate=0.7)
    torch.testing.assert_close(got.waveform, want.waveform, rtol=1e-4, atol=1e-5)
    slower = _seeded(ours, 3, input_ids=ids, speaking_rate=0.1)
    assert slower.waveform.shape[1] > got.waveform.shape[1]
    # a different seed draws other durations and noise
    assert not torch.equal(_seeded(ours, 4, input_ids=ids, speaking_rate=0.7).waveform, got.waveform)


def test_hidden_states_equal_reference(checkpoints):
    theirs, ours = _pair(checkpoints["speakers"])
    ids, mask = _batch([9, 6], seed=5)
    want = _seeded(theirs, 0, input_ids=ids, attention_mask=mask, output_hidden_states=True)
    got = _seeded(ours, 0, input_ids=ids, attention_mask=mask, output_hidden_states=True)
    assert len(got.hidden_states) == len(want.hidden_states)
    for a, b in zip(got.hidden_states, want.hidden_states):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


def test_speaker_errors(checkpoints):
    ours = VitsModel.from_pretrained(checkpoints["speakers"])
    ids, _ = _batch([5])
    with pytest.raises(ValueError, match=r"speaker_id 3 is out of range.*0-2"):
        ours(ids, speaker_id=3)
    with pytest.raises(ValueError, match="out of range"):
        ours(ids, speaker_id=torch.tensor([-1]))
    with pytest.raises(InputTypeError, match="speaker_id must be an integer"):
        ours(ids, speaker_id="two")
    with pytest.raises(ValueError, match="at least one token"):
        ours(torch.zeros(1, 0, dtype=torch.long))
    with pytest.raises(TypeError, match="unexpected arguments: noise"):
        ours(ids, noise=0.1)
    ours.noise_scale_duration = float("nan")  # as a broken-down spline (bf16) gives
    with pytest.raises(ValueError, match="non-finite durations.*float32"):
        ours(ids)


def test_auto_classes(checkpoints):
    folder = checkpoints["single"]
    assert type(AutoModelForTextToWaveform.from_pretrained(folder)) is VitsModel
    assert type(AutoModel.from_pretrained(folder)) is VitsModel
    with pytest.raises(UnsupportedModelError, match="no AutoModelForTextToSpectrogram"):
        AutoModelForTextToSpectrogram.from_pretrained(folder)
    # the training-only weights (posterior encoder, posterior flows) are dropped, not missing
    _, info = VitsModel.from_pretrained(folder, output_loading_info=True)
    assert info == {"missing_keys": [], "unexpected_keys": []}


TEXTS = ["Hello, World!", "  hi  there  ", "a<unk>b", "A<PAD>b", "ÉTÉ ça va", "x\ny", "!!!", "",
         "it's a well-known fact", "MiXeD CaSe"]


@pytest.mark.parametrize("settings", [{}, {"normalize": False}, {"add_blank": False},
                                      {"language": "ron", "normalize": False}])
def test_tokenizer_equals_reference(checkpoints, tmp_path, settings):
    folder = build_vits(tmp_path / "tok", tokenizer=settings)
    theirs, ours = transformers.AutoTokenizer.from_pretrained(folder), AutoTokenizer.from_pretrained(folder)
    assert type(ours).__name__ == "VitsTokenizer"
    for text in TEXTS + ["ț"]:
        assert ours(text)["input_ids"] == theirs(text)["input_ids"], text
        assert ours.tokenize(text) == theirs.tokenize(text), text
    want = theirs(TEXTS[:3], padding=True, return_tensors="pt")
    got = ours(TEXTS[:3], padding=True, return_tensors="pt")
    assert torch.equal(got["input_ids"], want["input_ids"])
    assert torch.equal(got["attention_mask"], want["attention_mask"])
    ids = theirs("hello there")["input_ids"]
    assert ours.decode(ids) == theirs.decode(ids)
    assert ours.pad_token_id == theirs.pad_token_id and ours.unk_token_id == theirs.unk_token_id
    # the per-call switch
    assert ours("AB!", normalize=True)["input_ids"] == theirs("AB!", normalize=True)["input_ids"]


def test_phonemizing_tokenizer_is_refused_clearly(tmp_path):
    folder = build_vits(tmp_path / "phon")
    config = (folder / "tokenizer_config.json")
    config.write_text(config.read_text().replace('"phonemize": false', '"phonemize": true'))
    try:
        import phonemizer  # noqa: F401
    except ImportError:
        with pytest.raises(MissingExtraError, match="phonemizer package and the espeak-ng"):
            AutoTokenizer.from_pretrained(folder)
    else:  # pragma: no cover - the phonemizer is not a test dependency
        assert AutoTokenizer.from_pretrained(folder).phonemize


def test_tokenizer_special_tokens_outside_the_vocabulary(tmp_path):
    """MMS-TTS folders: pad_token "k" (id 0, the blank) and an unk_token that vocab.json lacks,
    which takes the next free id (as the reference)."""
    import json

    (tmp_path / "vocab.json").write_text(json.dumps({c: i for i, c in enumerate("kabc '-")}))
    (tmp_path / "tokenizer_config.json").write_text(json.dumps(
        {"add_blank": True, "normalize": True, "pad_token": "k", "unk_token": "<unk>",
         "phonemize": False, "language": "eng", "tokenizer_class": "VitsTokenizer"}))
    theirs = transformers.AutoTokenizer.from_pretrained(tmp_path)
    ours = AutoTokenizer.from_pretrained(tmp_path)
    assert (ours.pad_token_id, ours.unk_token_id) == (theirs.pad_token_id, theirs.unk_token_id) == (0, 7)
    for text in ["A cab, back!", "ab<unk>c", "zzz abc"]:
        for normalize in (True, False):
            assert ours(text, normalize=normalize)["input_ids"] == \
                theirs(text, normalize=normalize)["input_ids"], (text, normalize)
