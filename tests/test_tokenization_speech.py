"""The CTC and Whisper tokenizers against the reference: encoding, CTC collapse and offsets,
Whisper prompts, timestamps, offsets and the ASR chunk merging."""

from __future__ import annotations

import pytest
import torch
import transformers

import lightpipe
from lightpipe.tokenization.ctc import Wav2Vec2CTCTokenizer
from lightpipe.tokenization.whisper import WhisperTokenizer


@pytest.fixture(scope="module")
def ctc_pair(wav2vec2_folder):
    folder = wav2vec2_folder("AutoModelForCTC")
    return lightpipe.AutoTokenizer.from_pretrained(folder), transformers.AutoTokenizer.from_pretrained(folder)


FRAMES = [[0, 8, 8, 0, 8, 4, 4, 9, 0, 0, 9, 10, 1, 4, 3, 0], [5, 5, 5, 4, 0, 6, 6, 7, 2, 4], [0, 0], [],
          [4, 4, 7, 0, 0, 4, 11, 4]]


def test_ctc_tokenizer_matches_reference(ctc_pair):
    ours, theirs = ctc_pair
    assert isinstance(ours, Wav2Vec2CTCTokenizer)
    for text in ("HELLO WORLD", "A B  C", "<unk>XY'Z"):
        assert ours(text)["input_ids"] == theirs(text)["input_ids"]
    for ids in FRAMES:
        for kwargs in ({}, {"skip_special_tokens": True}, {"group_tokens": False}):
            assert ours.decode(ids, **kwargs) == theirs.decode(ids, **kwargs), (ids, kwargs)
        want = theirs.decode(ids, output_char_offsets=True, output_word_offsets=True)
        got = ours.decode(ids, output_char_offsets=True, output_word_offsets=True)
        assert got["text"] == want.text
        assert got["char_offsets"] == [{k: (int(v) if k != "char" else v) for k, v in o.items()}
                                       for o in want.char_offsets]
        assert got["word_offsets"] == [{k: (int(v) if k != "word" else v) for k, v in o.items()}
                                       for o in want.word_offsets]
    assert ours.batch_decode(torch.tensor([FRAMES[1], FRAMES[1]])) == \
        theirs.batch_decode(torch.tensor([FRAMES[1], FRAMES[1]]))
    assert ours.pad_token_id == theirs.pad_token_id and len(ours) == len(theirs)


@pytest.fixture(scope="module")
def whisper_pair(whisper_folder):
    folder = whisper_folder()
    return lightpipe.AutoTokenizer.from_pretrained(folder), transformers.AutoTokenizer.from_pretrained(folder)


def test_whisper_language_tables_match_reference():
    from transformers.models.whisper import tokenization_whisper as reference

    from lightpipe.tokenization import whisper as tokenization_whisper

    assert tokenization_whisper.LANGUAGES == reference.LANGUAGES
    assert tokenization_whisper.TO_LANGUAGE_CODE == reference.TO_LANGUAGE_CODE


def test_whisper_prompts_and_encoding(whisper_pair):
    ours, theirs = whisper_pair
    assert isinstance(ours, WhisperTokenizer)
    for kwargs in ({}, {"language": "french", "task": "translate"}, {"language": "de", "no_timestamps": False},
                   {"task": "transcribe"}):
        assert ours.get_decoder_prompt_ids(**kwargs) == theirs.get_decoder_prompt_ids(**kwargs)
    ours.set_prefix_tokens(language="english", task="transcribe", predict_timestamps=False)
    theirs.set_prefix_tokens(language="english", task="transcribe", predict_timestamps=False)
    assert ours("Hello world!")["input_ids"] == theirs("Hello world!")["input_ids"]
    assert ours.prefix_tokens == theirs.prefix_tokens


def test_whisper_decoding_with_timestamps(whisper_pair):
    ours, theirs = whisper_pair
    ts = ours.convert_tokens_to_ids("<|notimestamps|>") + 1
    text = theirs("Hello world, the quick fox", add_special_tokens=False)["input_ids"]
    sequences = [
        [334, 348, 436] + [ts] + text[:3] + [ts + 50, ts + 50] + text[3:] + [ts + 120, 333],
        [334, 436, ts + 10] + text + [ts + 90, ts + 5] + text[:2] + [ts + 40],
        text + [333],
        [ts, ts + 20, ts + 20] + text[1:4] + [ts + 1400, ts + 3] + text[:3] + [ts + 60, ts + 60],
    ]
    for ids in sequences:
        for kwargs in ({}, {"skip_special_tokens": True}, {"decode_with_timestamps": True},
                       {"decode_with_timestamps": True, "skip_special_tokens": True},
                       {"output_offsets": True}, {"output_offsets": True, "time_precision": 0.04}):
            assert ours.decode(ids, **kwargs) == theirs.decode(ids, **kwargs), (ids, kwargs)
    assert ours.batch_decode(sequences[2:], skip_special_tokens=True) == \
        theirs.batch_decode(sequences[2:], skip_special_tokens=True)


def test_whisper_decode_asr_merges_chunks_as_reference(whisper_pair):
    ours, theirs = whisper_pair
    ts = ours.convert_tokens_to_ids("<|notimestamps|>") + 1
    words = theirs(" the quick brown fox jumps over the lazy dog again and again",
                   add_special_tokens=False)["input_ids"]
    outputs = [
        {"tokens": torch.tensor([[ts] + words[:8] + [ts + 400, ts + 400] + words[8:12] + [ts + 700]]),
         "stride": (15.0, 0.0, 3.0)},
        {"tokens": torch.tensor([[ts + 20] + words[6:14] + [ts + 450, ts + 460] + words[14:] + [ts + 600]]),
         "stride": (15.0, 3.0, 3.0)},
        {"tokens": torch.tensor([[ts] + words[12:] + [ts + 200]]), "stride": (9.0, 3.0, 0.0)},
    ]
    for return_timestamps in (None, True):
        want = theirs._decode_asr([dict(o) for o in outputs], return_timestamps=return_timestamps,
                                  return_language=None, time_precision=0.02)
        got = ours._decode_asr([dict(o) for o in outputs], return_timestamps=return_timestamps,
                               return_language=None, time_precision=0.02)
        assert got == want
    no_ts = [{"tokens": torch.tensor([words[:9]])}, {"tokens": torch.tensor([words[5:]])}]
    assert ours._decode_asr(no_ts, return_timestamps=None, return_language=None, time_precision=0.02) == \
        theirs._decode_asr(no_ts, return_timestamps=None, return_language=None, time_precision=0.02)
