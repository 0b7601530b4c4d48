"""SentencePiece tokenizers without tokenizer.json: MarianTokenizer (source.spm / target.spm /
vocab.json) and T5Tokenizer (spiece.model) against the reference classes, on tiny
SentencePiece models trained in the test session (tests/fixtures/seq2seq.py)."""

from __future__ import annotations

import builtins
import json
import shutil

import pytest
import torch
import transformers

import lightpipe
from lightpipe.tokenization.spm import MarianTokenizer, T5Tokenizer

TEXTS = ["The quick brown fox jumps over the lazy dog.", "Paris is the capital of France!",
         "", "   spaces   and 123 numbers  ", "Ünïcödé zebra qx 東京", ">>de<< My name is Wolfgang.",
         "ends with eos </s> inside", "Mein Name ist Wolfgang."]
TARGETS = ["Der schnelle braune Fuchs springt.", "Paris ist die Hauptstadt.", "", "Zwei Katzen",
           "Ünïcödé", "Mein Name", "x </s> y", "Berlin"]


@pytest.fixture(scope="module")
def marian_pair(marian_tokenizer_path):
    ours = lightpipe.AutoTokenizer.from_pretrained(marian_tokenizer_path)
    theirs = transformers.AutoTokenizer.from_pretrained(marian_tokenizer_path)
    return ours, theirs


def test_marian_loads_as_its_class(marian_pair):
    ours, theirs = marian_pair
    assert isinstance(ours, MarianTokenizer)
    assert (ours.pad_token_id, ours.eos_token_id, ours.unk_token_id) == \
        (theirs.pad_token_id, theirs.eos_token_id, theirs.unk_token_id)
    assert ours.model_max_length == theirs.model_max_length == 24
    assert ours.get_vocab() == theirs.get_vocab()
    assert len(ours) == len(theirs)


@pytest.mark.parametrize("text", TEXTS)
def test_marian_encoding_matches(marian_pair, text):
    ours, theirs = marian_pair
    assert ours(text)["input_ids"] == theirs(text)["input_ids"]
    assert ours(text)["attention_mask"] == theirs(text)["attention_mask"]
    assert ours.tokenize(text) == theirs.tokenize(text)
    assert ours.encode(text, add_special_tokens=False) == theirs.encode(text, add_special_tokens=False)


def test_marian_batches_targets_truncation_tensors(marian_pair):
    ours, theirs = marian_pair
    for kwargs in ({"padding": True}, {"padding": "max_length", "max_length": 30},
                   {"truncation": True}, {"truncation": True, "max_length": 6, "padding": True},
                   {"padding": True, "return_tensors": "pt"}, {"text_target": TARGETS, "padding": True}):
        want = theirs(TEXTS, **kwargs)
        got = ours(TEXTS, **kwargs)
        assert set(got.keys()) == set(want.keys()), kwargs
        for key in want:
            if isinstance(want[key], torch.Tensor):
                assert torch.equal(got[key], want[key]), (kwargs, key)
            else:
                assert got[key] == want[key], (kwargs, key)
    assert ours(text_target="Der Hund")["labels"] == theirs(text_target="Der Hund")["input_ids"]


def test_marian_decoding_matches(marian_pair):
    ours, theirs = marian_pair
    rows = theirs(text_target=TARGETS)["input_ids"] + theirs(TEXTS)["input_ids"]
    rows.append([theirs.pad_token_id, 5, 6, theirs.unk_token_id, 7, 0, theirs.pad_token_id])
    for row in rows:
        for kwargs in ({}, {"skip_special_tokens": True},
                       {"skip_special_tokens": True, "clean_up_tokenization_spaces": True}):
            assert ours.decode(row, **kwargs) == theirs.decode(row, **kwargs), (row, kwargs)
    same_length = torch.tensor([rows[0], rows[0][::-1]])
    assert ours.batch_decode(same_length, skip_special_tokens=True) == \
        theirs.batch_decode(same_length, skip_special_tokens=True)
    assert ours.convert_ids_to_tokens(rows[0]) == theirs.convert_ids_to_tokens(rows[0])


def test_marian_save_and_reload(marian_pair, tmp_path):
    ours, theirs = marian_pair
    ours.save_pretrained(tmp_path)
    for reloaded in (lightpipe.AutoTokenizer.from_pretrained(tmp_path),
                     transformers.AutoTokenizer.from_pretrained(tmp_path)):
        assert reloaded(TEXTS)["input_ids"] == theirs(TEXTS)["input_ids"]


def test_missing_sentencepiece_is_a_clear_error(marian_tokenizer_path, monkeypatch):
    real_import = builtins.__import__

    def fake_import(name, *args, **kwargs):
        if name == "sentencepiece":
            raise ImportError("No module named 'sentencepiece'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", fake_import)
    with pytest.raises(ImportError, match=r"pip install lightpipe\[sentencepiece\]"):
        lightpipe.AutoTokenizer.from_pretrained(marian_tokenizer_path)


def test_missing_vocab_file_is_a_clear_error(marian_tokenizer_path, tmp_path):
    folder = tmp_path / "broken"
    shutil.copytree(marian_tokenizer_path, folder)
    (folder / "vocab.json").unlink()
    with pytest.raises(lightpipe.ModelNotFoundError, match="vocab.json"):
        lightpipe.AutoTokenizer.from_pretrained(folder)


@pytest.fixture(scope="module")
def t5_spiece(t5_spiece_model, tmp_path_factory):
    """A T5 folder with spiece.model only (no tokenizer.json)."""
    folder = tmp_path_factory.mktemp("t5_spiece")
    shutil.copy(t5_spiece_model, folder / "spiece.model")
    (folder / "tokenizer_config.json").write_text(json.dumps(
        {"tokenizer_class": "T5Tokenizer", "extra_ids": 3, "model_max_length": 32,
         "eos_token": "</s>", "unk_token": "<unk>", "pad_token": "<pad>"}))
    return folder


def test_t5_spiece_only_matches_reference(t5_spiece):
    """Against transformers 5's T5Tokenizer built from the same pieces and scores (it cannot
    read spiece.model itself without protobuf)."""
    import sentencepiece

    ours = lightpipe.AutoTokenizer.from_pretrained(t5_spiece)
    assert isinstance(ours, T5Tokenizer)
    processor = sentencepiece.SentencePieceProcessor(model_file=str(t5_spiece / "spiece.model"))
    pieces = [(processor.id_to_piece(i), processor.get_score(i)) for i in range(processor.get_piece_size())]
    theirs = transformers.T5Tokenizer(vocab=pieces, extra_ids=3)
    assert (ours.pad_token_id, ours.eos_token_id, ours.unk_token_id) == (0, 1, 2)
    # Sentinels count down from the end, as in every T5 checkpoint (t5-small: <extra_id_0> =
    # 32099); the reference built from a piece list numbers them upwards, so not compared.
    size = len(pieces)
    assert ours.convert_tokens_to_ids(["<extra_id_0>", "<extra_id_2>"]) == [size + 2, size]
    assert ours.decode([5, size + 2, 1], skip_special_tokens=True) == ours.decode([5])
    for text in ["The quick brown fox jumps over the lazy dog.", "Paris is the capital",
                 "Mein Name ist Wolfgang und ich wohne in Berlin."]:
        assert ours(text)["input_ids"] == theirs(text)["input_ids"], text
        ids = theirs(text)["input_ids"]
        assert ours.decode(ids, skip_special_tokens=True) == theirs.decode(ids, skip_special_tokens=True)


def test_t5_with_tokenizer_json_is_the_generic_tokenizer():
    from lightpipe.tokenization import Tokenizer

    from tests.pipelines.test_text2text_generation import GOLDEN

    tokenizer = lightpipe.AutoTokenizer.from_pretrained(GOLDEN / "t5")
    assert type(tokenizer) is Tokenizer
    reference = transformers.AutoTokenizer.from_pretrained(GOLDEN / "t5")
    text = "translate English to German: The quick brown fox."
    assert tokenizer(text)["input_ids"] == reference(text)["input_ids"]
