"""Whisper against the reference beyond 30 s and with languages (issue 15): the pipeline's
``return_language``, long-form sequential decoding of audio over 30 s without
``chunk_length_s`` (generate() window by window, seeking by the last timestamp, the previous
text as prompt with ``condition_on_prev_tokens``), batched long-form generate(), and the real
tiny.en weights on ~45 s of espeak-ng speech."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import transformers

import lightpipe
from lightpipe.errors import InputError

from .conftest import assert_outputs_close
from .fixtures.audio import make_speech, noise_audio
from .models.test_speech import real_whisper  # noqa: F401  (fixture)
from .pipelines.test_speech_pipelines import assert_words_close

TASK = "automatic-speech-recognition"
ALIGNMENT_HEADS = [[0, 1], [1, 0], [1, 3]]
SENTENCES = ["the quick brown fox jumps over the lazy dog",
             "a journey of a thousand miles begins with a single step",
             "all that glitters is not gold, and not all those who wander are lost",
             "to be or not to be, that is the question",
             "she sells sea shells by the sea shore on a sunny summer morning",
             "the rain in spain stays mainly in the plain"]
LONG = [noise_audio(48.0, 2), noise_audio(37.0, 3)]  # 4800 and 3700 log-mel frames


@pytest.fixture(scope="module")
def pipes(whisper_folder):
    folder = str(whisper_folder())
    return lightpipe.pipeline(TASK, model=folder), transformers.pipeline(TASK, model=folder)


@pytest.fixture(scope="module")
def aligned(whisper_folder):
    return whisper_folder(alignment_heads=ALIGNMENT_HEADS)


# --- return_language ------------------------------------------------------------------------

@pytest.mark.parametrize("kwargs", [
    {}, {"return_timestamps": True}, {"generate_kwargs": {"language": "fr"}},
    {"chunk_length_s": 10, "num_beams": 1},
])
def test_return_language_matches_reference(pipes, kwargs):
    """Each chunk's language (the multilingual tiny model detects one, and writes others as
    text): the same chunks as the reference."""
    ours, theirs = pipes
    for clip in (noise_audio(4.0, 0), noise_audio(25.0, 1)):
        want = theirs(clip.copy(), return_language=True, **kwargs)
        assert "language" in want["chunks"][0]
        assert ours(clip, return_language=True, **kwargs) == want
    assert ours(clip, return_language=False, **kwargs) == theirs(clip.copy(), return_language=False,
                                                                 **kwargs)


def test_return_language_batched(pipes):
    """A batch gives each clip's languages (the reference fails on a batch: it keeps only the
    first row's language token): the answers each clip gets alone."""
    ours, theirs = pipes
    clips = [noise_audio(4.0, 0), noise_audio(25.0, 1)]
    want = [theirs(clip.copy(), return_language=True) for clip in clips]
    assert ours(clips, return_language=True, batch_size=2) == want


def test_return_language_is_whisper_only(wav2vec2_folder):
    ctc = lightpipe.pipeline(TASK, model=str(wav2vec2_folder("AutoModelForCTC")))
    with pytest.raises(ValueError, match="Only Whisper"):
        ctc(noise_audio(1.0), return_language=True)


# --- long-form decoding ----------------------------------------------------------------------

@pytest.mark.parametrize("kwargs", [
    {"return_timestamps": True}, {"return_timestamps": True, "num_beams": 1},
    {"return_timestamps": True, "num_beams": 1,
     "generate_kwargs": {"condition_on_prev_tokens": True}},
    {"return_timestamps": True, "return_language": True, "num_beams": 1},
    {"return_timestamps": True, "max_new_tokens": 20, "language": "de"},
])
def test_long_form_matches_reference(pipes, kwargs):
    ours, theirs = pipes
    for clip in LONG:
        assert ours(clip, **kwargs) == theirs(clip.copy(), **kwargs)


def test_long_form_batched_pipeline(pipes):
    """Long clips batch with clips of their own length, so each gets what it gets alone (the
    reference cannot collate long features of different lengths)."""
    ours, theirs = pipes
    clips = LONG + [LONG[0], noise_audio(5.0, 4)]
    want = [theirs(clip.copy(), return_timestamps=True, num_beams=1) for clip in clips]
    assert ours(clips, return_timestamps=True, num_beams=1, batch_size=3) == want


def test_long_form_word_timestamps_match_reference(aligned):
    ours = lightpipe.pipeline(TASK, model=str(aligned))
    theirs = transformers.pipeline(TASK, model=str(aligned))
    for clip in LONG:
        want = theirs(clip.copy(), return_timestamps="word", num_beams=1)
        assert max(w["timestamp"][1] or 0 for w in want["chunks"]) > 30
        assert_words_close(ours(clip, return_timestamps="word", num_beams=1), want)


@pytest.mark.parametrize("kwargs", [
    {}, {"num_beams": 2}, {"return_token_timestamps": True}, {"return_segments": True},
    {"language": ["fr", "de", "en"], "max_new_tokens": 10}, {"temperature": 0.0},
])
def test_long_form_generate_batch_matches_reference(aligned, kwargs):
    """generate() on a batch of long features with their attention mask (each row decoded to
    its own length; the 12 s row too), as the reference: the sequences, token times and
    segments (tokens, start / end, the window's whole output)."""
    extractor = transformers.WhisperFeatureExtractor.from_pretrained(aligned)
    theirs = transformers.WhisperForConditionalGeneration.from_pretrained(aligned).eval()
    ours = lightpipe.AutoModelForSpeechSeq2Seq.from_pretrained(aligned)
    inputs = extractor(LONG + [noise_audio(12.0, 5)], sampling_rate=16000, return_tensors="pt",
                       truncation=False, padding="longest", return_attention_mask=True)
    args = (inputs.input_features,)
    kwargs = {"attention_mask": inputs.attention_mask, "return_timestamps": True, **kwargs}
    with torch.no_grad():
        want = theirs.generate(*args, **kwargs)
    got = ours.generate(*args, **kwargs)
    if not isinstance(want, dict):
        assert got.tolist() == want.tolist()
        return
    assert got["sequences"].tolist() == want["sequences"].tolist()
    if "token_timestamps" in want:
        torch.testing.assert_close(got["token_timestamps"], want["token_timestamps"].float(),
                                   rtol=0, atol=0.021)
    for mine, theirs_row in zip(got.get("segments", []), want.get("segments", [])):
        assert len(mine) == len(theirs_row)
        for a, b in zip(mine, theirs_row):
            assert a["tokens"].tolist() == b["tokens"].tolist()
            assert a["result"].tolist() == b["result"].tolist()
            assert a["start"] == pytest.approx(float(b["start"])) and \
                a["end"] == pytest.approx(float(b["end"]))


def test_long_form_errors(pipes, aligned):
    ours, theirs = pipes
    with pytest.raises(ValueError, match="return_timestamps"):  # the reference's rule
        theirs(LONG[1].copy())
    with pytest.raises(InputError, match="chunk_length_s"):
        ours(LONG[1])
    model = lightpipe.AutoModelForSpeechSeq2Seq.from_pretrained(aligned)
    features = torch.zeros(2, 80, 3500)
    with pytest.raises(InputError, match="attention_mask"):
        model.generate(features, return_timestamps=True)
    with pytest.raises(InputError, match="temperature fallback"):
        model.generate(features[:1], return_timestamps=True, logprob_threshold=-1.0)


# --- real weights ----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def long_speech(tmp_path_factory):
    """~43 s: six espeak-ng sentences twice over, 0.6 s of silence after each."""
    from lightpipe.processing.audio import load_audio

    folder = tmp_path_factory.mktemp("long-speech")
    parts = []
    for index, text in enumerate(SENTENCES):
        wav = make_speech(folder, text, f"s{index}")["wav"]
        parts += [load_audio(str(wav), 16000)[0], np.zeros(9600, dtype=np.float32)]
    return np.concatenate(parts * 2)


def test_real_whisper_long_form(real_whisper, long_speech):
    """tiny.en decodes ~43 s of speech window by window: the reference's text and segments."""
    ours = lightpipe.pipeline(TASK, model=str(real_whisper))
    theirs = transformers.pipeline(TASK, model=str(real_whisper))
    kwargs = {"return_timestamps": True, "num_beams": 1}
    got = ours(long_speech, **kwargs)
    assert got["text"].lower().count("lazy dog") == 2
    assert got["chunks"][-1]["timestamp"][0] > 30
    assert_outputs_close(got, theirs(long_speech.copy(), **kwargs))
