"""generate() against the reference on tiny random decoders: greedy and beam search token for
token, sampling's filtered distributions and seeded draws, logits processors, stopping
criteria (EOS, stop strings), streamers, GenerationConfig merging, and bad input.

The tiny causal-LM checkpoints (the ``decoder`` fixture) and their helpers are in conftest.py.
"""

from __future__ import annotations

import contextlib
import io
import json
import threading

import pytest
import torch
import transformers

import lightpipe
from lightpipe.errors import InputError
from lightpipe.generation import (GenerationConfig, StopStringCriteria, TextIteratorStreamer,
                                  TextStreamer)

from .conftest import DECODER_TYPES, EOS, PAD, load_pair, prompts

TEXTS = ["Hello world, this is", "The quick brown fox jumps over the lazy dog! What",
         "Tokenizers split"]


def both(ours, theirs, inputs: dict, **kwargs):
    """generate() of both models on the same inputs; sampling starts from the same seed."""
    torch.manual_seed(1234)
    mine = ours.generate(**inputs, **kwargs)
    torch.manual_seed(1234)
    with torch.no_grad():
        reference = theirs.generate(**inputs, **kwargs)
    return mine, reference


# --- greedy and beam search -------------------------------------------------------------------

@pytest.mark.parametrize("model_type", DECODER_TYPES)
def test_greedy_matches_reference_on_padded_batch(decoder, model_type):
    folder = decoder(model_type)
    ours, theirs = load_pair(folder)
    inputs = prompts(folder, TEXTS)
    assert bool((inputs["attention_mask"] == 0).any()), "the batch should need left padding"
    mine, reference = both(ours, theirs, inputs, max_new_tokens=12, do_sample=False)
    assert mine.shape == reference.shape
    assert mine.tolist() == reference.tolist()
    # A row alone gives the same new tokens as in the padded batch.
    alone = ours.generate(**prompts(folder, TEXTS[2:]), max_new_tokens=12, do_sample=False)
    assert alone[0, -12:].tolist() == mine[2, -12:].tolist()


@pytest.mark.parametrize("num_beams", [1, 2])
def test_sequences_grow_past_their_first_buffers(decoder, monkeypatch, num_beams):
    """The sequence buffers start small and double (a huge max_new_tokens allocates nothing
    for tokens never made): tokens equal the reference's across several doublings, padded."""
    from lightpipe.generation import state as state_module

    monkeypatch.setattr(state_module, "PREALLOCATED_TOKENS", 2)
    folder = decoder("llama")
    ours, theirs = load_pair(folder)
    mine, reference = both(ours, theirs, prompts(folder, TEXTS), max_new_tokens=13,
                           do_sample=False, num_beams=num_beams)
    assert mine.tolist() == reference.tolist()


def test_huge_max_new_tokens(decoder):
    """Greedy decoding with max_new_tokens=10**12 runs until EOS; beam search, whose buffers
    have the final length (as the reference's), says what it would need."""
    ours, _ = load_pair(decoder("llama"))
    inputs = prompts(decoder("llama"), TEXTS[:1])
    first = ours.generate(**inputs, max_new_tokens=3, do_sample=False)[0, -1].item()
    out = ours.generate(**inputs, max_new_tokens=10**12, do_sample=False, eos_token_id=first)
    assert out[0, -1].item() == first
    with pytest.raises(InputError, match="GiB for its sequences"):
        ours.generate(**inputs, max_new_tokens=10**12, num_beams=2)


@pytest.mark.parametrize("model_type", DECODER_TYPES)
def test_beam_search_matches_reference(decoder, model_type):
    folder = decoder(model_type)
    ours, theirs = load_pair(folder)
    inputs = prompts(folder, TEXTS)
    # An EOS the model actually produces, so finished hypotheses compete with running ones.
    greedy = theirs.generate(**inputs, max_new_tokens=6, do_sample=False)
    eos = int(greedy[0, -3])
    for kwargs in ({"num_beams": 3, "num_return_sequences": 2},
                   {"num_beams": 4, "eos_token_id": eos, "length_penalty": 0.5},
                   {"num_beams": 3, "eos_token_id": [eos, int(greedy[1, -2])], "early_stopping": True},
                   {"num_beams": 2, "eos_token_id": eos, "early_stopping": "never",
                    "num_return_sequences": 2, "no_repeat_ngram_size": 2}):
        mine, reference = both(ours, theirs, inputs, max_new_tokens=10, do_sample=False, **kwargs)
        assert mine.tolist() == reference.tolist(), kwargs


def test_beam_scores_match_reference(decoder):
    ours, theirs = load_pair(decoder("llama"))
    inputs = prompts(decoder("llama"), TEXTS[:2])
    kwargs = dict(max_new_tokens=6, num_beams=3, num_return_sequences=3, output_scores=True,
                  return_dict_in_generate=True, do_sample=False)
    mine, reference = both(ours, theirs, inputs, **kwargs)
    assert mine.sequences.tolist() == reference.sequences.tolist()
    torch.testing.assert_close(mine.sequences_scores, reference.sequences_scores)
    assert mine.beam_indices.tolist() == reference.beam_indices.tolist()


@pytest.mark.parametrize("model_type", ["gpt2", "llama"])
def test_processors_match_reference(decoder, model_type):
    folder = decoder(model_type)
    ours, theirs = load_pair(folder)
    inputs = prompts(folder, TEXTS)
    for kwargs in ({"repetition_penalty": 1.8}, {"repetition_penalty": 0.7},
                   {"no_repeat_ngram_size": 2}, {"min_new_tokens": 8, "eos_token_id": EOS},
                   {"suppress_tokens": [3, 4, 7]}, {"repetition_penalty": 1.3, "num_beams": 2},
                   # empty lists (a checkpoint's generation_config may hold them): nothing banned
                   {"suppress_tokens": [], "begin_suppress_tokens": []}):
        mine, reference = both(ours, theirs, inputs, do_sample=False, max_new_tokens=10, **kwargs)
        assert mine.tolist() == reference.tolist(), kwargs
    mine, reference = both(ours, theirs, inputs, do_sample=False, max_length=20)  # a total length
    assert mine.tolist() == reference.tolist() and mine.shape[1] == 20


def test_eos_rows_are_padded_and_stop(decoder):
    folder = decoder("llama")
    ours, theirs = load_pair(folder)
    inputs = prompts(folder, TEXTS)
    greedy = theirs.generate(**inputs, max_new_tokens=8, do_sample=False)
    eos = int(greedy[1, inputs["input_ids"].shape[1] + 2])  # row 1 ends after 3 new tokens
    mine, reference = both(ours, theirs, inputs, max_new_tokens=8, do_sample=False,
                           eos_token_id=eos, pad_token_id=PAD)
    assert mine.tolist() == reference.tolist()
    row = mine[1, inputs["input_ids"].shape[1]:].tolist()
    assert eos in row and set(row[row.index(eos) + 1:]) <= {PAD}


# --- sampling -------------------------------------------------------------------------------

@pytest.mark.parametrize("kwargs", [{"temperature": 0.7}, {"top_k": 5}, {"top_p": 0.8},
                                    {"temperature": 1.3, "top_k": 20, "top_p": 0.9},
                                    {"min_p": 0.1}, {"top_k": 1}, {"typical_p": 0.6},
                                    {"temperature": 0.8, "top_k": 30, "typical_p": 0.9}])
def test_sampling_filtered_distributions_match_reference(decoder, kwargs):
    folder = decoder("llama")
    ours, theirs = load_pair(folder)
    inputs = prompts(folder, TEXTS)
    options = dict(do_sample=True, max_new_tokens=6, output_scores=True,
                   return_dict_in_generate=True, **kwargs)
    mine, reference = both(ours, theirs, inputs, **options)
    # Same seed, same filtered distribution -> the same draws.
    assert mine.sequences.tolist() == reference.sequences.tolist()
    assert len(mine.scores) == len(reference.scores) == 6
    for got, want in zip(mine.scores, reference.scores):
        assert torch.equal(torch.isinf(got), torch.isinf(want))  # the same tokens filtered out
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4)


def test_sample_num_return_sequences_and_beam_sample(decoder):
    folder = decoder("qwen2")
    ours, theirs = load_pair(folder)
    inputs = prompts(folder, TEXTS[:2])
    for kwargs in ({"num_return_sequences": 3}, {"num_beams": 3, "num_return_sequences": 2}):
        mine, reference = both(ours, theirs, inputs, do_sample=True, max_new_tokens=8, **kwargs)
        assert mine.shape[0] == 2 * kwargs["num_return_sequences"]
        assert mine.tolist() == reference.tolist(), kwargs


def test_seeded_generator_is_reproducible_and_leaves_global_rng(decoder):
    ours, _ = load_pair(decoder("gpt2"))
    inputs = prompts(decoder("gpt2"), TEXTS[:1])
    state = torch.random.get_rng_state()
    first = ours.generate(**inputs, do_sample=True, max_new_tokens=10,
                          generator=torch.Generator().manual_seed(7))
    second = ours.generate(**inputs, do_sample=True, max_new_tokens=10,
                           generator=torch.Generator().manual_seed(7))
    other = ours.generate(**inputs, do_sample=True, max_new_tokens=10, top_k=0,
                          generator=torch.Generator().manual_seed(8))
    assert torch.equal(torch.random.get_rng_state(), state)
    assert first.tolist() == second.tolist()
    assert first.tolist() != other.tolist()


# --- stopping -------------------------------------------------------------------------------

def test_stop_strings_match_reference(decoder):
    folder = decoder("gpt2")
    ours, theirs = load_pair(folder)
    inputs = prompts(folder, TEXTS)
    ours_tok = lightpipe.AutoTokenizer.from_pretrained(folder)
    ref_tok = transformers.AutoTokenizer.from_pretrained(folder)
    free = theirs.generate(**inputs, max_new_tokens=12, do_sample=False)
    new_text = ref_tok.decode(free[0, inputs["input_ids"].shape[1]:])
    stop = new_text[3:6]  # a string the first row produces part-way
    torch.manual_seed(0)
    mine = ours.generate(**inputs, max_new_tokens=12, do_sample=False, stop_strings=[stop, "zzz"],
                         tokenizer=ours_tok)
    reference = theirs.generate(**inputs, max_new_tokens=12, do_sample=False,
                                stop_strings=[stop, "zzz"], tokenizer=ref_tok)
    assert mine.tolist() == reference.tolist()
    assert stop in ref_tok.decode(mine[0, inputs["input_ids"].shape[1]:])
    assert mine.shape[1] < free.shape[1] or not bool((mine == free).all())


def test_stop_string_criteria_edge_cases_match_reference(decoder):
    """Stop strings split across tokens, inside or overhanging the last token, or complete
    before it, on hand-made sequences, against the reference criterion."""
    folder = decoder("gpt2")
    ours_tok = lightpipe.AutoTokenizer.from_pretrained(folder)
    ref_tok = transformers.AutoTokenizer.from_pretrained(folder)
    vocab = ref_tok.get_vocab()
    cases = [(["he", "llo", "to"], "hello"), (["he", "llo", "to"], "llo"), (["x", "he", "llo"], "llo"),
             (["x", "Hello"], "ello"), (["x", "Hello"], "Hel"), (["he", "llo"], "ell"),
             (["Hello", "x", "x"], "Hello"), (["he", "llo", "a", "to"], "lloa"),
             (["x", "he", "llo"], "xhel"), (["Ġw", "ĠBPE"], " w B"), (["x", "x"], "zz")]
    for tokens, stop in cases:
        ids = torch.tensor([[vocab[t] for t in tokens]])
        mine = StopStringCriteria(ours_tok, [stop, "qqqq"])(ids)
        reference = transformers.StopStringCriteria(ref_tok, [stop, "qqqq"])(ids, None)
        assert mine.tolist() == reference.tolist(), (tokens, stop)
    assert [StopStringCriteria(ours_tok, [s])(torch.tensor([[vocab[t] for t in toks]])).item()
            for toks, s in cases[:5]] == [False, False, True, True, True]


# --- streamers ------------------------------------------------------------------------------

def test_text_streamer_prints_what_the_reference_prints(decoder):
    folder = decoder("llama")
    ours, theirs = load_pair(folder)
    inputs = prompts(folder, TEXTS[:1])
    outputs = []
    for model, tokenizer, streamer_class in (
            (ours, lightpipe.AutoTokenizer.from_pretrained(folder), TextStreamer),
            (theirs, transformers.AutoTokenizer.from_pretrained(folder), transformers.TextStreamer)):
        buffer = io.StringIO()
        with contextlib.redirect_stdout(buffer), torch.no_grad():
            model.generate(**inputs, max_new_tokens=12, do_sample=False,
                           streamer=streamer_class(tokenizer, skip_prompt=True))
        outputs.append(buffer.getvalue())
    assert outputs[0] == outputs[1]
    assert len(outputs[0]) > 1


def test_text_iterator_streamer_in_a_thread(decoder):
    folder = decoder("gpt2")
    ours, _ = load_pair(folder)
    tokenizer = lightpipe.AutoTokenizer.from_pretrained(folder)
    inputs = prompts(folder, TEXTS[:1])
    streamer = TextIteratorStreamer(tokenizer, skip_prompt=True, timeout=30)
    result = {}
    worker = threading.Thread(target=lambda: result.setdefault(
        "ids", ours.generate(**inputs, max_new_tokens=10, do_sample=False, streamer=streamer)))
    worker.start()
    pieces = list(streamer)
    worker.join()
    new_ids = result["ids"][0, inputs["input_ids"].shape[1]:]
    assert "".join(pieces) == tokenizer.decode(new_ids)
    assert len(pieces) >= 2


# --- configuration --------------------------------------------------------------------------

def test_generation_config_json_merges_with_call_arguments(decoder, tmp_path):
    import shutil

    folder = tmp_path / "model"
    shutil.copytree(decoder("llama"), folder)
    data = json.loads((folder / "generation_config.json").read_text())
    data.update(max_new_tokens=4, no_repeat_ngram_size=2, eos_token_id=[EOS, 7])
    (folder / "generation_config.json").write_text(json.dumps(data))
    ours = lightpipe.AutoModelForCausalLM.from_pretrained(folder)
    theirs = transformers.AutoModelForCausalLM.from_pretrained(folder).eval()
    assert ours.generation_config.max_new_tokens == 4
    assert ours.generation_config.eos_token_id == [EOS, 7]
    inputs = prompts(folder, TEXTS)
    for kwargs in ({}, {"max_new_tokens": 9}, {"generation_config": GenerationConfig(max_new_tokens=6)}):
        reference_kwargs = dict(kwargs)
        if "generation_config" in kwargs:
            reference_kwargs["generation_config"] = transformers.GenerationConfig(max_new_tokens=6)
        mine, reference = both(ours, theirs, inputs, **kwargs) if not kwargs.get("generation_config") \
            else (ours.generate(**inputs, **kwargs), theirs.generate(**inputs, **reference_kwargs))
        assert mine.tolist() == reference.tolist(), kwargs
    assert ours.generate(**inputs).shape[1] == inputs["input_ids"].shape[1] + 4
    ours.save_pretrained(tmp_path / "saved")
    assert json.loads((tmp_path / "saved" / "generation_config.json").read_text())["max_new_tokens"] == 4


def test_default_length_and_bos_start(decoder):
    folder = decoder("gpt2")
    ours, theirs = load_pair(folder)
    with pytest.warns(UserWarning, match="max_length"):
        mine = ours.generate(input_ids=torch.tensor([[10, 11, 12]]))
    assert mine.shape == (1, 23)  # 20 new tokens by default
    with torch.no_grad():
        reference = theirs.generate(max_new_tokens=5, do_sample=False)
    assert ours.generate(max_new_tokens=5).tolist() == reference.tolist()  # from BOS


# --- bad input ------------------------------------------------------------------------------

def test_bad_generation_arguments_are_clear_errors(decoder):
    folder = decoder("gpt2")
    ours, _ = load_pair(folder)
    ids = torch.tensor([[10, 11, 12]])
    cases = [
        (dict(do_sample=True, temperature=0.0), "temperature.*strictly positive.*do_sample=False"),
        (dict(do_sample=True, temperature=-1.0), "temperature"),
        (dict(do_sample=True, top_p=0.0), "top_p"),
        (dict(do_sample=True, top_p=1.5), "top_p"),
        (dict(num_return_sequences=2, max_new_tokens=3), "num_return_sequences"),
        (dict(num_beams=2, num_return_sequences=3), "num_return_sequences"),
        (dict(max_new_tokens=0), "max_new_tokens"),
        (dict(stop_strings=["x"], max_new_tokens=3), "tokenizer"),
        (dict(max_new_tokens=5, temprature=0.5), "not used by the model.*temprature"),
        (dict(max_new_tokens=5, do_sample=True, typical_p=0.0), "typical_p"),
        (dict(max_new_tokens=5, epsilon_cutoff=0.1), "epsilon_cutoff"),
        (dict(max_length=2), "max_length"),
    ]
    for kwargs, message in cases:
        if "max_length" not in kwargs:
            kwargs.setdefault("max_new_tokens", 3)
        with pytest.raises(ValueError, match=message):
            ours.generate(ids, **kwargs)
    with pytest.raises(ValueError, match="streamer"):
        ours.generate(ids, num_beams=2, max_new_tokens=3, streamer=TextStreamer(None))
    with pytest.raises(InputError, match="empty"):
        ours.generate(torch.zeros(1, 0, dtype=torch.long), max_new_tokens=3)
    with pytest.raises(InputError, match="2-D"):
        ours.generate(torch.tensor([10, 11]), max_new_tokens=3)


def test_prompt_longer_than_positions(decoder, caplog):
    """GPT-2 and OPT learn a fixed table of positions: a prompt that fills it is refused up
    front; a generation that would run past it stops at the last position, with a warning.
    Rotary models extrapolate (with a warning), as the reference does."""
    folder = decoder("gpt2")
    ours, _ = load_pair(folder)
    with pytest.raises(InputError, match="at most 128 positions"):
        ours.generate(torch.full((1, 130), 10), max_new_tokens=2)
    with pytest.raises(InputError, match="no room"):
        ours.generate(torch.full((1, 128), 10), max_new_tokens=2)
    with caplog.at_level("WARNING", logger="lightpipe"):
        assert ours.generate(torch.full((1, 120), 10), max_new_tokens=10).shape == (1, 128)
    assert "generating at most 8 new tokens" in caplog.text
    llama, _ = load_pair(decoder("llama"))
    assert llama.generate(torch.full((1, 126), 10), max_new_tokens=4).shape == (1, 130)


def test_packed_cpu_weights_give_the_same_tokens_and_follow_edits(decoder, monkeypatch):
    """generate() on the CPU keeps a oneDNN-layout copy of the linear weights for the Python
    plan (the C step, off here, reads them as they are: tests/test_native_step.py): the same
    tokens as without it, dropped when a weight changes, freed by unpack_linear_weights."""
    monkeypatch.setenv("LIGHTPIPE_NATIVE_STEP", "0")
    folder = decoder("llama")
    model = lightpipe.AutoModelForCausalLM.from_pretrained(folder)
    inputs = prompts(folder, TEXTS)
    model.pack_weights = False
    plain = model.generate(**inputs, max_new_tokens=8, do_sample=False)
    proj = model.model.layers[0].self_attn.q_proj
    assert proj.packed_weight() is None
    model.pack_weights = True
    assert model.generate(**inputs, max_new_tokens=8, do_sample=False).tolist() == plain.tolist()
    assert proj.packed_weight() is not None
    ids = torch.tensor([[10, 11, 12]])
    before = model(ids).logits
    with torch.no_grad():
        proj.weight.mul_(2.0)  # an in-place edit: the packed copy is stale and unused
    assert proj.packed_weight() is None
    assert not torch.allclose(model(ids).logits, before)
    model.unpack_linear_weights()
    assert all(getattr(m, "_packed", None) is None for m in model.modules())


# --- a prompt given as embeddings (generate(inputs_embeds=...)) ---------------------------------

EMBEDS_TYPES = ["gpt2", "llama", "opt"]


def _embeds(model, ids: torch.Tensor, noise: float = 0.05) -> torch.Tensor:
    """The model's input embeddings of ``ids``, moved off the token embeddings by a little
    seeded noise (so only a model that reads the embeddings gives the reference's tokens)."""
    with torch.no_grad():
        embeds = model.get_input_embeddings()(ids)
    if noise:
        generator = torch.Generator().manual_seed(0)
        embeds = embeds + noise * torch.randn(embeds.shape, generator=generator)
    return embeds


def _embeds_inputs(folder, theirs, texts=TEXTS, with_ids=False, noise=0.05) -> dict:
    """Left-padded prompts as inputs_embeds + attention_mask (and the ids, if asked)."""
    inputs = prompts(folder, texts)
    assert bool((inputs["attention_mask"] == 0).any()) or len(texts) == 1
    given = {"inputs_embeds": _embeds(theirs, inputs["input_ids"], noise),
             "attention_mask": inputs["attention_mask"]}
    if with_ids:
        given["input_ids"] = inputs["input_ids"]
    return given


@pytest.mark.parametrize("model_type", DECODER_TYPES)
def test_inputs_embeds_greedy_matches_reference(decoder, model_type):
    """Embeddings alone, batched with left padding: the reference's new tokens (and only the
    new tokens, as it returns them); exact token embeddings give what the ids give."""
    folder = decoder(model_type)
    ours, theirs = load_pair(folder)
    given = _embeds_inputs(folder, theirs)
    mine, reference = both(ours, theirs, given, max_new_tokens=8, do_sample=False)
    assert mine.shape == reference.shape == (3, 8)
    assert mine.tolist() == reference.tolist()
    inputs = prompts(folder, TEXTS)
    exact = ours.generate(inputs_embeds=_embeds(theirs, inputs["input_ids"], noise=0.0),
                          attention_mask=inputs["attention_mask"], max_new_tokens=8, do_sample=False)
    from_ids = ours.generate(**inputs, max_new_tokens=8, do_sample=False)
    assert exact.tolist() == from_ids[:, -8:].tolist()


@pytest.mark.parametrize("model_type", EMBEDS_TYPES)
def test_inputs_embeds_beam_search_matches_reference(decoder, model_type):
    folder = decoder(model_type)
    ours, theirs = load_pair(folder)
    given = _embeds_inputs(folder, theirs)
    with torch.no_grad():
        greedy = theirs.generate(**given, max_new_tokens=6, do_sample=False)
    eos = int(greedy[0, 2])  # a token the model produces: finished beams compete
    for kwargs in ({"num_beams": 3, "num_return_sequences": 2},
                   {"num_beams": 4, "eos_token_id": eos, "length_penalty": 0.5},
                   {"num_beams": 2, "eos_token_id": eos, "early_stopping": "never",
                    "num_return_sequences": 2}):
        mine, reference = both(ours, theirs, given, max_new_tokens=8, do_sample=False, **kwargs)
        assert mine.tolist() == reference.tolist(), kwargs
    kwargs = dict(max_new_tokens=6, num_beams=3, num_return_sequences=2, output_scores=True,
                  return_dict_in_generate=True, do_sample=False)
    mine, reference = both(ours, theirs, given, **kwargs)
    assert mine.sequences.tolist() == reference.sequences.tolist()
    torch.testing.assert_close(mine.sequences_scores, reference.sequences_scores)
    assert mine.beam_indices.tolist() == reference.beam_indices.tolist()


@pytest.mark.parametrize("model_type", EMBEDS_TYPES)
def test_inputs_embeds_seeded_sampling_matches_reference(decoder, model_type):
    folder = decoder(model_type)
    ours, theirs = load_pair(folder)
    given = _embeds_inputs(folder, theirs)
    options = dict(do_sample=True, max_new_tokens=6, output_scores=True,
                   return_dict_in_generate=True, temperature=0.9, top_k=20, top_p=0.9,
                   num_return_sequences=2)
    mine, reference = both(ours, theirs, given, **options)
    assert mine.sequences.tolist() == reference.sequences.tolist()
    assert mine.sequences.shape[0] == 6  # 3 prompts x 2, only new tokens
    for got, want in zip(mine.scores, reference.scores, strict=True):
        assert torch.equal(torch.isinf(got), torch.isinf(want))
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4)
    mine, reference = both(ours, theirs, given, do_sample=True, max_new_tokens=6, num_beams=3,
                           num_return_sequences=2)  # beam sampling
    assert mine.tolist() == reference.tolist()


@pytest.mark.parametrize("model_type", EMBEDS_TYPES)
def test_input_ids_with_inputs_embeds_match_reference(decoder, model_type):
    """Ids and their (altered) embeddings together: the model reads the embeddings, the
    returned sequences start with the ids, and max_length counts the ids."""
    folder = decoder(model_type)
    ours, theirs = load_pair(folder)
    given = _embeds_inputs(folder, theirs, with_ids=True)
    ids = given["input_ids"]
    for kwargs in ({"max_new_tokens": 7}, {"max_length": ids.shape[1] + 5},
                   {"max_new_tokens": 7, "num_beams": 3, "num_return_sequences": 2},
                   {"max_new_tokens": 7, "repetition_penalty": 1.8},
                   {"max_new_tokens": 7, "no_repeat_ngram_size": 2, "num_beams": 2}):
        mine, reference = both(ours, theirs, given, do_sample=False, **kwargs)
        assert mine.tolist() == reference.tolist(), kwargs
        step = kwargs.get("num_return_sequences", 1)
        assert mine[::step, :ids.shape[1]].tolist() == ids.tolist()
    # The ids without a mask: the mask is inferred from their padding, as the reference does.
    no_mask = {k: v for k, v in given.items() if k != "attention_mask"}
    mine, reference = both(ours, theirs, no_mask, do_sample=False, max_new_tokens=5,
                           pad_token_id=PAD)
    assert mine.tolist() == reference.tolist()


def test_inputs_embeds_lengths_match_reference(decoder):
    """max_length / min_length count the embedded prompt when no ids stand for it (the
    reference subtracts its length); max/min_new_tokens count new tokens; the default is 20
    new tokens; a soft prompt (more embedded positions than ids, with a mask) works."""
    folder = decoder("llama")
    ours, theirs = load_pair(folder)
    given = _embeds_inputs(folder, theirs)
    length = given["inputs_embeds"].shape[1]
    with torch.no_grad():
        free = theirs.generate(**given, max_new_tokens=8, do_sample=False)
    eos = int(free[0, 1])  # row 0 would stop after 2 new tokens
    for kwargs in ({"max_length": length + 5}, {"max_length": length + 6, "min_length": length + 4,
                                                 "eos_token_id": eos},
                   {"max_new_tokens": 6, "min_new_tokens": 4, "eos_token_id": eos}):
        mine, reference = both(ours, theirs, given, do_sample=False, **kwargs)
        assert mine.tolist() == reference.tolist(), kwargs
    mine, _ = both(ours, theirs, given, do_sample=False, max_length=length + 5)
    assert mine.shape == (3, 5)
    with pytest.warns(UserWarning, match="max_length"):
        mine = ours.generate(**given, do_sample=False)
    with torch.no_grad():
        reference = theirs.generate(**given, do_sample=False)
    assert mine.shape == (3, 20) and mine.tolist() == reference.tolist()
    with pytest.raises(ValueError, match="max_length"):
        ours.generate(**given, max_length=length)  # no room left after the embedded prompt
    # A soft prompt: two learned positions before the tokens' embeddings.
    inputs = prompts(folder, TEXTS)
    soft = torch.randn(3, 2, given["inputs_embeds"].shape[-1],
                       generator=torch.Generator().manual_seed(1))
    soft_given = {"input_ids": inputs["input_ids"],
                  "inputs_embeds": torch.cat((soft, given["inputs_embeds"]), dim=1),
                  "attention_mask": torch.cat((torch.ones(3, 2, dtype=torch.long),
                                               inputs["attention_mask"]), dim=1)}
    # (max_length: the reference subtracts the embedded length, then counts ids + new tokens)
    for kwargs in ({"max_new_tokens": 6}, {"max_length": (length + 2) + length + 4}):
        mine, reference = both(ours, theirs, soft_given, do_sample=False, **kwargs)
        assert mine.tolist() == reference.tolist(), kwargs
        assert mine[:, :length].tolist() == inputs["input_ids"].tolist()
        assert mine.shape[1] == length + kwargs.get("max_new_tokens", 4)


@pytest.mark.parametrize("model_type", ["gpt2", "llama"])
def test_inputs_embeds_processors_see_the_reference_ids(decoder, model_type):
    """Without ids, repetition_penalty and no_repeat_ngram_size see only the new tokens (with
    a warning, as the reference), and the same per-row padding offsets as the reference."""
    folder = decoder(model_type)
    ours, theirs = load_pair(folder)
    given = _embeds_inputs(folder, theirs)
    for kwargs in ({"repetition_penalty": 1.8}, {"repetition_penalty": 0.6},
                   {"no_repeat_ngram_size": 2}, {"repetition_penalty": 1.5, "num_beams": 2},
                   {"suppress_tokens": [3, 4, 7], "begin_suppress_tokens": [9]},
                   {"bad_words_ids": [[9], [10, 11]]}):
        with pytest.warns() if ("repetition_penalty" in kwargs or "no_repeat_ngram_size" in kwargs) \
                else contextlib.nullcontext():
            mine, reference = both(ours, theirs, given, do_sample=False, max_new_tokens=12, **kwargs)
        assert mine.tolist() == reference.tolist(), kwargs
    with pytest.warns(UserWarning, match="inputs_embeds.*only to newly generated"):
        ours.generate(**given, do_sample=False, max_new_tokens=3, repetition_penalty=1.2)


def test_inputs_embeds_without_cache_and_streamer(decoder):
    """use_cache=False: the reference turns the cache on for embeddings; so do we. A streamer
    gets the (empty) prompt ids, then each new token."""
    folder = decoder("gpt2")
    ours, theirs = load_pair(folder)
    given = _embeds_inputs(folder, theirs)
    mine, reference = both(ours, theirs, given, do_sample=False, max_new_tokens=6, use_cache=False)
    assert mine.tolist() == reference.tolist()
    assert mine.tolist() == ours.generate(**given, do_sample=False, max_new_tokens=6).tolist()
    single = _embeds_inputs(folder, theirs, texts=TEXTS[:1])
    outputs = []
    for model, tokenizer, streamer_class in (
            (ours, lightpipe.AutoTokenizer.from_pretrained(folder), TextStreamer),
            (theirs, transformers.AutoTokenizer.from_pretrained(folder), transformers.TextStreamer)):
        buffer = io.StringIO()
        with contextlib.redirect_stdout(buffer), torch.no_grad():
            model.generate(**single, max_new_tokens=10, do_sample=False,
                           streamer=streamer_class(tokenizer))
        outputs.append(buffer.getvalue())
    assert outputs[0] == outputs[1] and len(outputs[0]) > 1


def test_inputs_embeds_bad_input_is_a_clear_error(decoder, seq2seq, caplog):
    folder = decoder("gpt2")
    ours, theirs = load_pair(folder)
    given = _embeds_inputs(folder, theirs, with_ids=True)
    embeds, mask, ids = given["inputs_embeds"], given["attention_mask"], given["input_ids"]
    cases = [
        (dict(inputs_embeds=embeds[0]), "3-D float tensor"),
        (dict(inputs_embeds=ids), "3-D float tensor"),
        (dict(inputs_embeds=embeds.tolist()), "3-D float tensor"),
        (dict(inputs_embeds=embeds[:, :0]), "empty"),
        (dict(inputs_embeds=torch.zeros(3, 4, 48)), "48 features.*32"),
        (dict(inputs_embeds=embeds, attention_mask=mask[:, 1:]), "mask must cover"),
        (dict(inputs_embeds=embeds, attention_mask=mask[:2]), "mask must cover"),
        (dict(inputs_embeds=embeds, input_ids=ids[:2]), "do not fit"),
        (dict(inputs_embeds=embeds[:, 1:], input_ids=ids), "do not fit"),
        (dict(inputs_embeds=embeds, input_ids=ids[:, 1:]), "pass attention_mask"),
        (dict(inputs_embeds=embeds, input_ids=embeds[..., 0]), "2-D tensor of token ids"),
        (dict(inputs_embeds=torch.zeros(1, 128, 32)), "no room"),
    ]
    for kwargs, message in cases:
        with pytest.raises(InputError, match=message):
            ours.generate(**kwargs, max_new_tokens=3)
    with caplog.at_level("WARNING", logger="lightpipe"):  # learned positions run out
        assert ours.generate(inputs_embeds=torch.zeros(1, 125, 32), max_new_tokens=6).shape == (1, 3)
    assert "at most 3 new tokens" in caplog.text
    # Encoder-decoders keep refusing it (out of lightpipe's scope for them).
    bart = lightpipe.AutoModelForSeq2SeqLM.from_pretrained(seq2seq("bart"))
    with pytest.raises(ValueError, match="not used.*inputs_embeds"):
        bart.generate(torch.tensor([[0, 10, 11, 2]]), inputs_embeds=torch.zeros(1, 4, 32),
                      max_new_tokens=2)


# --- the model contract -----------------------------------------------------------------------

def test_generative_models_offer_the_contract():
    """Every class with generate() has what generation/contract.py says generate() calls."""
    import importlib
    import inspect

    from lightpipe.generation import EncoderDecoderModel, GenerationMixin, GenerativeModel

    def members(protocol):
        return {name for name, value in vars(protocol).items()
                if not name.startswith("_") and (callable(value) or isinstance(value, property))}

    found = 0
    for name in ("gpt2", "llama", "opt", "t5", "bart", "marian", "whisper", "blip",
                 "vision_encoder_decoder", "llava"):
        module = importlib.import_module(f"lightpipe.models.{name}")
        for cls in module.HEADS.values():
            if not issubclass(cls, GenerationMixin):
                continue
            found += 1
            wanted = members(GenerativeModel) - {"get_input_embeddings", "modules"}
            if cls.is_encoder_decoder:
                wanted |= members(EncoderDecoderModel) | {"prepend_decoder_start"}
            missing = {m for m in wanted if not hasattr(cls, m)}
            assert not missing, f"{cls.__name__} lacks {sorted(missing)}"
            for flag in ("learned_positions", "is_encoder_decoder", "pack_weights"):
                assert isinstance(getattr(cls, flag), bool), (cls.__name__, flag)
            assert inspect.signature(cls.max_positions).parameters.keys() == {"self"}
    assert found >= 10
