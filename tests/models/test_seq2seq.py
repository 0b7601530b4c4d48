"""T5 (v1.0, v1.1/Flan, mT5), BART and Marian against transformers 5: logits on padded batches,
the decoder's cache step by step, and generate() token for token (greedy and beam search with
every length and n-gram setting, batched inputs of different lengths); BART's
sequence-classification head and the zero-shot pipeline on it; saving; bad input."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
import transformers

import lightpipe
from lightpipe.errors import InputError
from lightpipe.generation import EncoderDecoderCache

from ..fixtures.seq2seq import SEQ2SEQ_TYPES

GOLDEN = Path(__file__).resolve().parent.parent / "golden" / "seq2seq"
_PAIRS: dict = {}


def load_pair(folder: Path):
    if folder not in _PAIRS:
        _PAIRS[folder] = (lightpipe.AutoModelForSeq2SeqLM.from_pretrained(folder),
                          transformers.AutoModelForSeq2SeqLM.from_pretrained(folder).eval())
    return _PAIRS[folder]


def batch(model, lengths=(9, 4, 13), seed: int = 0) -> dict:
    """Right-padded source ids (no special ids) with their mask."""
    config = model.config
    generator = torch.Generator().manual_seed(seed)
    longest = max(lengths)
    ids = torch.randint(3, 60, (len(lengths), longest), generator=generator)
    mask = torch.zeros_like(ids)
    for row, length in enumerate(lengths):
        mask[row, :length] = 1
    return {"input_ids": ids.masked_fill(mask == 0, config.pad_token_id), "attention_mask": mask}


def decoder_ids(model, batch_size: int, length: int = 7) -> torch.Tensor:
    ids = torch.randint(3, 60, (batch_size, length), generator=torch.Generator().manual_seed(1))
    ids[:, 0] = model.config.decoder_start_token_id
    return ids


@pytest.mark.parametrize("name", SEQ2SEQ_TYPES)
def test_logits_match_reference(seq2seq, name):
    ours, theirs = load_pair(seq2seq(name))
    inputs = batch(ours)
    decoder = decoder_ids(ours, 3)
    with torch.no_grad():
        want = theirs(**inputs, decoder_input_ids=decoder)
    got = ours(**inputs, decoder_input_ids=decoder)
    torch.testing.assert_close(got.logits, want.logits, rtol=1e-4, atol=1e-4)
    real = inputs["attention_mask"].bool()
    torch.testing.assert_close(got.encoder_last_hidden_state[real],
                               want.encoder_last_hidden_state[real], rtol=1e-4, atol=1e-4)
    # a right-padded decoder batch: the real positions match
    decoder_mask = torch.ones_like(decoder)
    decoder_mask[1, 4:] = 0
    with torch.no_grad():
        want = theirs(**inputs, decoder_input_ids=decoder, decoder_attention_mask=decoder_mask)
    got = ours(**inputs, decoder_input_ids=decoder, decoder_attention_mask=decoder_mask)
    kept = decoder_mask.bool()
    torch.testing.assert_close(got.logits[kept], want.logits[kept], rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("name", SEQ2SEQ_TYPES)
def test_cached_decoding_equals_one_forward(seq2seq, name):
    """encode() once, then decode() token by token through an EncoderDecoderCache."""
    ours, _ = load_pair(seq2seq(name))
    inputs = batch(ours)
    decoder = decoder_ids(ours, 3, 8)
    full = ours(**inputs, decoder_input_ids=decoder).logits
    states = ours.encode(inputs["input_ids"], inputs["attention_mask"])
    cache = EncoderDecoderCache()
    out = ours.decode(decoder[:, :3], states, inputs["attention_mask"], cache=cache, use_cache=True)
    steps = [out.logits]
    for end in range(4, 9):
        out = ours.decode(decoder[:, end - 1:end], states, inputs["attention_mask"], cache=cache,
                          use_cache=True)
        steps.append(out.logits)
    assert cache.get_seq_length() == 8 and len(cache.cross_keys) == len(cache)
    torch.testing.assert_close(torch.cat(steps, dim=1), full, rtol=1e-4, atol=1e-4)


GENERATE_KWARGS = [
    dict(max_new_tokens=12),
    dict(num_beams=4, max_new_tokens=12),
    dict(num_beams=3, num_return_sequences=2, max_new_tokens=10, no_repeat_ngram_size=2),
    dict(num_beams=4, min_length=8, max_length=15, length_penalty=2.0, early_stopping=True),
    dict(num_beams=2, max_new_tokens=9, early_stopping="never", length_penalty=-0.5),
    dict(max_new_tokens=10, min_new_tokens=6, repetition_penalty=1.3),
    dict(max_new_tokens=8, forced_bos_token_id=5, forced_eos_token_id=6),
    dict(max_new_tokens=8, bad_words_ids=[[7], [8, 9]], num_beams=2),
    dict(),  # the global default max_length
]


@pytest.mark.parametrize("kwargs", GENERATE_KWARGS, ids=str)
@pytest.mark.parametrize("name", ["bart", "t5", "t5-gated", "marian"])
def test_generate_matches_reference(seq2seq, name, kwargs):
    ours, theirs = load_pair(seq2seq(name))
    inputs = batch(ours, (9, 4, 13))
    with torch.no_grad():
        want = theirs.generate(**inputs, **kwargs)
    assert ours.generate(**inputs, **kwargs).tolist() == want.tolist()


@pytest.mark.parametrize("name", ["mt5", "marian-separate"])
def test_generate_variants_match_reference(seq2seq, name):
    ours, theirs = load_pair(seq2seq(name))
    inputs = batch(ours, (5, 11))
    for kwargs in (dict(max_new_tokens=10), dict(num_beams=3, max_new_tokens=10)):
        with torch.no_grad():
            want = theirs.generate(**inputs, **kwargs)
        assert ours.generate(**inputs, **kwargs).tolist() == want.tolist()


def test_generate_input_forms_match_reference(seq2seq):
    ours, theirs = load_pair(seq2seq("bart"))
    inputs = batch(ours, (6, 10))
    prompt = torch.tensor([[2, 17, 23], [2, 40, 41]])  # starts with the decoder start token
    bare = prompt[:, 1:]  # generate() prepends the start token
    for extra in ({"decoder_input_ids": prompt}, {"decoder_input_ids": bare}, {"use_cache": False},
                  {"return_dict_in_generate": True, "output_scores": True, "num_beams": 2}):
        with torch.no_grad():
            want = theirs.generate(**inputs, max_new_tokens=6, **extra)
        got = ours.generate(**inputs, max_new_tokens=6, **extra)
        if isinstance(want, torch.Tensor):
            assert got.tolist() == want.tolist()
        else:
            assert got.sequences.tolist() == want.sequences.tolist()
            torch.testing.assert_close(got.sequences_scores, want.sequences_scores, rtol=1e-4, atol=1e-4)
    # the encoder's output given instead of its input
    states = ours.encode(inputs["input_ids"], inputs["attention_mask"])
    with torch.no_grad():
        want = theirs.generate(**inputs, max_new_tokens=6)
    got = ours.generate(encoder_outputs=states, attention_mask=inputs["attention_mask"],
                        max_new_tokens=6)
    assert got.tolist() == want.tolist()
    # no mask: none is inferred from the padding (as the reference 5)
    with torch.no_grad():
        want = theirs.generate(input_ids=inputs["input_ids"], max_new_tokens=6)
    assert ours.generate(inputs["input_ids"], max_new_tokens=6).tolist() == want.tolist()


def test_generation_config_json_is_used(seq2seq, tmp_path):
    folder = tmp_path / "bart"
    shutil.copytree(seq2seq("bart"), folder)
    config = json.loads((folder / "generation_config.json").read_text())
    config.update(max_length=9, num_beams=3, no_repeat_ngram_size=2, min_length=4)
    (folder / "generation_config.json").write_text(json.dumps(config))
    ours, theirs = load_pair(folder)
    assert (ours.generation_config.num_beams, ours.generation_config.max_length) == (3, 9)
    inputs = batch(ours, (7, 3))
    with torch.no_grad():
        want = theirs.generate(**inputs)
    assert ours.generate(**inputs).tolist() == want.tolist()


def test_save_and_reload_in_reference(seq2seq, tmp_path):
    for name in ("t5", "bart", "marian"):
        ours, theirs = load_pair(seq2seq(name))
        ours.save_pretrained(tmp_path / name)
        again = transformers.AutoModelForSeq2SeqLM.from_pretrained(tmp_path / name).eval()
        inputs = batch(ours, (5,))
        decoder = decoder_ids(ours, 1)
        with torch.no_grad():
            torch.testing.assert_close(again(**inputs, decoder_input_ids=decoder).logits,
                                       theirs(**inputs, decoder_input_ids=decoder).logits)


def test_base_models(seq2seq):
    for name in ("bart", "t5"):
        folder = seq2seq(name)
        ours = lightpipe.AutoModel.from_pretrained(folder)
        theirs = transformers.AutoModel.from_pretrained(folder).eval()
        inputs = batch(ours, (6, 8))
        decoder = decoder_ids(ours, 2)
        with torch.no_grad():
            want = theirs(**inputs, decoder_input_ids=decoder).last_hidden_state
        torch.testing.assert_close(ours(**inputs, decoder_input_ids=decoder).last_hidden_state,
                                   want, rtol=1e-4, atol=1e-4)


def test_bart_classification_and_zero_shot(tmp_path):
    """BartForSequenceClassification (facebook/bart-large-mnli's head) and the zero-shot
    pipeline on it, against the reference."""
    folder = tmp_path / "bart-mnli"
    shutil.copytree(GOLDEN / "bart", folder)
    config = transformers.BartConfig.from_pretrained(folder, num_labels=3,
                                                     id2label={0: "contradiction", 1: "neutral", 2: "entailment"},
                                                     label2id={"contradiction": 0, "neutral": 1, "entailment": 2})
    torch.manual_seed(0)
    model = transformers.BartForSequenceClassification(config).eval()
    with torch.no_grad():
        for param in model.parameters():
            if param.dim() > 1:
                param.normal_(0.0, 0.3)
    model.save_pretrained(folder)
    ours = lightpipe.AutoModelForSequenceClassification.from_pretrained(folder)
    tokenizer = transformers.AutoTokenizer.from_pretrained(folder)
    inputs = tokenizer(["The quick brown fox.", "Paris is the capital and largest city of France."],
                       ["It is about animals.", "It is about cities."], return_tensors="pt",
                       padding=True)
    with torch.no_grad():
        want = model(**inputs).logits
    torch.testing.assert_close(ours(**inputs).logits, want, rtol=1e-4, atol=1e-4)
    labels = ["animals", "cities", "weather"]
    reference = transformers.pipeline("zero-shot-classification", model=str(folder))
    pipe = lightpipe.pipeline("zero-shot-classification", model=folder)
    for text in ("The quick brown fox jumps over the lazy dog.", "Paris is a city."):
        want = reference(text, candidate_labels=labels)
        got = pipe(text, candidate_labels=labels)
        assert got["labels"] == want["labels"]
        torch.testing.assert_close(torch.tensor(got["scores"]), torch.tensor(want["scores"]),
                                   rtol=1e-4, atol=1e-5)


def test_bad_input_is_a_clear_error(seq2seq):
    ours, _ = load_pair(seq2seq("t5"))
    with pytest.raises(InputError, match="empty"):
        ours.generate(torch.zeros(1, 0, dtype=torch.long))
    with pytest.raises(InputError, match="decoder_input_ids"):
        ours(input_ids=torch.tensor([[5, 6, 1]]))
    with pytest.raises(InputError, match="tensor"):
        ours.generate([[5, 6, 1]])


@pytest.mark.parametrize("name", ["bart", "t5", "marian"])
def test_bfloat16_generate_matches_reference(seq2seq, name):
    folder = seq2seq(name)
    ours = lightpipe.AutoModelForSeq2SeqLM.from_pretrained(folder, dtype=torch.bfloat16)
    theirs = transformers.AutoModelForSeq2SeqLM.from_pretrained(folder, dtype=torch.bfloat16).eval()
    inputs = batch(ours, (6, 9))
    with torch.no_grad():
        want = theirs.generate(**inputs, num_beams=2, max_new_tokens=8)
    assert ours.generate(**inputs, num_beams=2, max_new_tokens=8).tolist() == want.tolist()
