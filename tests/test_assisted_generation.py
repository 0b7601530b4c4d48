"""Assisted generation (``prompt_lookup_num_tokens``, ``assistant_model``) against the reference
on tiny random decoders: the same tokens as the reference's assisted generate and as plain
greedy search, the same scores, the C decode step's chunks of candidates (float32, weight-only
and int8-dynamic), sampling, streamers, the candidate lookup itself, and the errors."""

from __future__ import annotations

import logging

import pytest
import torch
import transformers

import lightpipe
from lightpipe.errors import InputError, UnsupportedModelError
from lightpipe.generation import LogitsProcessorList, assisted

from .conftest import DECODER_TYPES, load_pair, prompts

# Repetitive text: the lookup finds earlier n-grams, so candidates are offered and kept.
TEXT = "the cat sat on the mat and the dog sat on the log and the cat sat on the"


def _one(folder, text=TEXT):
    inputs = prompts(folder, [text])
    return {"input_ids": inputs["input_ids"], "attention_mask": inputs["attention_mask"]}


@pytest.mark.parametrize("model_type", DECODER_TYPES)
def test_prompt_lookup_matches_reference_and_greedy(decoder, model_type):
    folder = decoder(model_type)
    ours, theirs = load_pair(folder)
    inputs = _one(folder)
    plain = ours.generate(**inputs, max_new_tokens=24, do_sample=False)
    for count, ngram in ((10, None), (3, 1), (5, 3)):
        extra = {} if ngram is None else {"max_matching_ngram_size": ngram}
        mine = ours.generate(**inputs, max_new_tokens=24, do_sample=False,
                             prompt_lookup_num_tokens=count, **extra)
        with torch.no_grad():
            reference = theirs.generate(**inputs, max_new_tokens=24, do_sample=False,
                                        prompt_lookup_num_tokens=count, **extra)
        assert mine.tolist() == reference.tolist() == plain.tolist(), (count, ngram)


def test_prompt_lookup_scores_and_logits_match_reference(decoder):
    folder = decoder("llama")
    ours, theirs = load_pair(folder)
    inputs = _one(folder)
    kwargs = dict(max_new_tokens=16, do_sample=False, prompt_lookup_num_tokens=6,
                  return_dict_in_generate=True, output_scores=True, output_logits=True,
                  repetition_penalty=1.3)
    mine = ours.generate(**inputs, **kwargs)
    with torch.no_grad():
        reference = theirs.generate(**inputs, **kwargs)
    assert mine.sequences.tolist() == reference.sequences.tolist()
    assert len(mine.scores) == len(reference.scores) == 16
    for a, b in zip(mine.scores + mine.logits, reference.scores + reference.logits):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)


def test_assistant_model_matches_reference(decoder):
    folder = decoder("llama")
    small = decoder("llama", num_hidden_layers=1, hidden_size=16, intermediate_size=24)
    ours, theirs = load_pair(folder)
    helper, reference_helper = load_pair(small)
    inputs = _one(folder, "Hello world, this is a test of")
    plain = ours.generate(**inputs, max_new_tokens=20, do_sample=False)
    mine = ours.generate(**inputs, max_new_tokens=20, do_sample=False, assistant_model=helper)
    with torch.no_grad():
        reference = theirs.generate(**inputs, max_new_tokens=20, do_sample=False,
                                    assistant_model=reference_helper)
    assert mine.tolist() == reference.tolist() == plain.tolist()
    # the model as its own assistant: every candidate is kept, still the same tokens
    assert ours.generate(**inputs, max_new_tokens=20, do_sample=False,
                         assistant_model=ours).tolist() == plain.tolist()


def test_heuristic_schedule_carries_the_count_to_the_next_call(decoder):
    folder = decoder("llama")
    ours, _ = load_pair(folder)
    helper = lightpipe.AutoModelForCausalLM.from_pretrained(folder)  # its own config object
    helper.generation_config.num_assistant_tokens = 3
    helper.generation_config.num_assistant_tokens_schedule = "heuristic"
    helper.generation_config.assistant_confidence_threshold = 0.0
    ours.generate(**_one(folder), max_new_tokens=12, do_sample=False, assistant_model=helper)
    # the same weights: every draft is kept, so the count grew by 2 a step
    assert helper.generation_config.num_assistant_tokens > 3


@pytest.mark.parametrize("quantization", [None, "int8", "int4", "int8-dynamic"])
def test_candidates_go_through_the_c_step_in_one_chunk(decoder, quantization, monkeypatch):
    """Llama-shaped models check their candidates in the C step (one call for all of them),
    with the numbers of one token at a time: the same tokens as plain greedy search."""
    from lightpipe.quantization import kernels, step

    if not kernels.available():
        pytest.skip("the C step needs a compiler")
    folder = decoder("llama", hidden_size=64, intermediate_size=96)
    kwargs = {} if quantization is None else {"quantization": quantization}
    ours = lightpipe.AutoModelForCausalLM.from_pretrained(folder, **kwargs)
    inputs = _one(folder)
    plain = ours.generate(**inputs, max_new_tokens=24, do_sample=False)
    chunks = []
    real = step.DecodeStep.__call__

    def spy(self, hidden_states, *args):
        out = real(self, hidden_states, *args)
        if hidden_states.shape[1] > 1:
            chunks.append(out is not None)
        return out
    monkeypatch.setattr(step.DecodeStep, "__call__", spy)
    mine = ours.generate(**inputs, max_new_tokens=24, do_sample=False, prompt_lookup_num_tokens=8)
    assert mine.tolist() == plain.tolist()
    assert chunks and all(chunks), chunks


def test_c_step_chunk_equals_one_token_at_a_time(decoder):
    """The C step's chunk (n tokens of one sequence after its cache) against n one-token steps:
    the same logits, the same cache after."""
    from lightpipe.quantization import kernels

    if not kernels.available():
        pytest.skip("the C step needs a compiler")
    folder = decoder("llama", hidden_size=64, intermediate_size=96)
    for quantization in (None, "int8-dynamic"):
        kwargs = {} if quantization is None else {"quantization": quantization}
        model = lightpipe.AutoModelForCausalLM.from_pretrained(folder, **kwargs)
        ids = _one(folder)["input_ids"]
        model.pack_linear_weights()
        model.begin_decode()
        try:
            assert model.model.__dict__.get("native_step") is not None
            results = []
            for chunked in (True, False):
                cache = model.new_cache(64)
                model(input_ids=ids[:, :10], cache=cache, use_cache=True, logits_to_keep=1)
                if chunked:
                    logits = model(input_ids=ids[:, 10:16], position_ids=torch.arange(10, 16)[None],
                                   cache=cache, use_cache=True, logits_to_keep=6).logits
                else:
                    logits = torch.cat([model(input_ids=ids[:, i:i + 1], position_ids=torch.tensor([[i]]),
                                              cache=cache, use_cache=True, logits_to_keep=1).logits
                                        for i in range(10, 16)], dim=1)
                results.append((logits, cache.keys[0][:, :, :16].clone(), cache.get_seq_length()))
        finally:
            model.end_decode()
        (a, keys_a, length_a), (b, keys_b, length_b) = results
        assert length_a == length_b == 16
        torch.testing.assert_close(a, b, rtol=0, atol=1e-5)
        torch.testing.assert_close(keys_a, keys_b, rtol=0, atol=1e-6)


def test_sampling_with_prompt_lookup(decoder):
    """Each kept token is the model's own draw: top_k=1 sampling is greedy search; a seeded
    generator repeats itself; every token is in the vocabulary."""
    folder = decoder("llama")
    ours, _ = load_pair(folder)
    inputs = _one(folder)
    plain = ours.generate(**inputs, max_new_tokens=20, do_sample=False)
    top1 = ours.generate(**inputs, max_new_tokens=20, do_sample=True, top_k=1,
                         prompt_lookup_num_tokens=5)
    assert top1.tolist() == plain.tolist()
    runs = [ours.generate(**inputs, max_new_tokens=20, do_sample=True, prompt_lookup_num_tokens=5,
                          generator=torch.Generator().manual_seed(7)) for _ in range(2)]
    assert runs[0].tolist() == runs[1].tolist()
    assert runs[0].shape[1] == inputs["input_ids"].shape[1] + 20
    assert int(runs[0].max()) < ours.config.vocab_size


def test_streamer_gets_every_token_once(decoder):
    folder = decoder("llama")
    ours, _ = load_pair(folder)
    inputs = _one(folder)

    class Collect:
        def __init__(self):
            self.parts = []

        def put(self, value):
            self.parts.append(value.reshape(-1).tolist())

        def end(self):
            self.parts.append("end")
    streamer = Collect()
    out = ours.generate(**inputs, max_new_tokens=20, do_sample=False, prompt_lookup_num_tokens=6,
                        streamer=streamer)
    assert streamer.parts[-1] == "end"
    streamed = [token for part in streamer.parts[1:-1] for token in part]
    assert streamer.parts[0] == inputs["input_ids"][0].tolist()
    assert streamed == out[0, inputs["input_ids"].shape[1]:].tolist()
    assert len(streamer.parts) - 2 < 20  # several tokens a step somewhere


def test_stops_at_eos_and_at_max_length(decoder):
    folder = decoder("llama")
    ours, theirs = load_pair(folder)
    inputs = _one(folder)
    plain = ours.generate(**inputs, max_new_tokens=24, do_sample=False)
    new = plain[0, inputs["input_ids"].shape[1]:].tolist()
    stop = new[5]  # a token made early: as the end-of-sequence token the output ends there
    kwargs = dict(max_new_tokens=24, do_sample=False, eos_token_id=stop, pad_token_id=0)
    mine = ours.generate(**inputs, prompt_lookup_num_tokens=8, **kwargs)
    with torch.no_grad():
        reference = theirs.generate(**inputs, prompt_lookup_num_tokens=8, **kwargs)
    assert mine.tolist() == reference.tolist() == ours.generate(**inputs, **kwargs).tolist()
    assert mine[0, -1] == stop and mine.shape[1] == inputs["input_ids"].shape[1] + new.index(stop) + 1
    for length in (1, 2, 7):
        got = ours.generate(**inputs, max_new_tokens=length, do_sample=False, prompt_lookup_num_tokens=8)
        assert got.tolist() == plain[:, :inputs["input_ids"].shape[1] + length].tolist()


def test_lookup_candidates():
    ids = torch.tensor([[1, 2, 3, 4, 5, 9, 2, 3, 6, 1, 2, 3]])
    # the last 2-gram (2, 3) first occurs at 1: what followed it
    assert assisted.lookup_candidates(ids, 4, 2, 50, None) == [4, 5, 9, 2]
    assert assisted.lookup_candidates(ids, 10, 2, 50, None) == [4, 5, 9, 2, 3, 6, 1, 2, 3]
    assert assisted.lookup_candidates(ids, 10, 2, 3, None) == [4, 5, 9]  # room
    assert assisted.lookup_candidates(ids, 10, 2, 50, torch.tensor([9])) == [4, 5]  # cut at EOS
    # a 3-gram first when allowed: (1, 2, 3) occurs at 0
    assert assisted.lookup_candidates(ids, 2, 3, 50, None) == [4, 5]
    # nothing repeats: no candidates
    assert assisted.lookup_candidates(torch.tensor([[1, 2, 3, 4]]), 5, 2, 50, None) == []

    def ban_four(sequence, scores):
        scores = scores.clone()
        scores[:, 4] = float("-inf")
        return scores
    # the processors rule out the first candidate there: the next occurrence of (2, 3) offers 6
    banned = LogitsProcessorList([ban_four])
    assert assisted.lookup_candidates(ids, 3, 2, 50, None, banned, 10) == [6, 1, 2]


def test_errors_and_beam_search(decoder, caplog):
    folder = decoder("llama")
    ours, theirs = load_pair(folder)
    batch = prompts(folder, ["Hello world", "the cat sat"])
    with pytest.raises(ValueError, match="only supported for batch_size = 1"):
        ours.generate(**batch, max_new_tokens=5, prompt_lookup_num_tokens=3)
    with pytest.raises(ValueError, match="only supported for batch_size = 1"):
        ours.generate(**_one(folder), max_new_tokens=5, do_sample=True, num_return_sequences=2,
                      prompt_lookup_num_tokens=3)
    other = decoder("llama", vocab_size=300)
    helper, _ = load_pair(other)
    with pytest.raises(InputError, match="different tokenizer"):
        ours.generate(**_one(folder), max_new_tokens=5, assistant_model=helper)
    with pytest.raises(UnsupportedModelError, match="assistant_tokenizer"):
        ours.generate(**_one(folder), max_new_tokens=5, assistant_model=ours,
                      assistant_tokenizer=object())
    # beam search ignores the flags, with a warning (as the reference)
    inputs = _one(folder)
    with caplog.at_level(logging.WARNING, logger="lightpipe"):
        mine = ours.generate(**inputs, max_new_tokens=8, num_beams=2, prompt_lookup_num_tokens=3)
    assert "assisted generate" in caplog.text
    with torch.no_grad():
        reference = theirs.generate(**inputs, max_new_tokens=8, num_beams=2)
    assert mine.tolist() == reference.tolist()


def test_assistant_refused_for_encoder_decoders():
    """An encoder-decoder model takes prompt lookup but not an assistant model (a clear error)."""
    class Fake:
        is_encoder_decoder = True
        config = transformers.PretrainedConfig()

        def generate(self):
            pass
    with pytest.raises(UnsupportedModelError, match="decoder-only"):
        assisted.check_assistant(Fake(), Fake(), None)


def test_text_generation_pipeline_takes_an_assistant_and_prompt_lookup(decoder):
    """pipeline(..., assistant_model=<folder or model>) and a call's prompt_lookup_num_tokens,
    as the reference's text-generation pipeline: the same text as without them (greedy)."""
    folder = decoder("llama")
    small = decoder("llama", num_hidden_layers=1, hidden_size=16, intermediate_size=24)
    plain = lightpipe.pipeline("text-generation", model=str(folder))
    want = plain(TEXT, max_new_tokens=12, do_sample=False)
    assert plain(TEXT, max_new_tokens=12, do_sample=False, prompt_lookup_num_tokens=5) == want
    helped = lightpipe.pipeline("text-generation", model=str(folder), assistant_model=str(small))
    assert helped(TEXT, max_new_tokens=12, do_sample=False) == want
    reference = transformers.pipeline("text-generation", model=str(folder), assistant_model=str(small))
    assert reference(TEXT, max_new_tokens=12, do_sample=False) == want


@pytest.mark.parametrize("name", ["t5", "bart"])
def test_prompt_lookup_on_encoder_decoders(seq2seq, name):
    """Encoder-decoders take prompt lookup too (the decoder's tokens are searched): the
    reference's tokens, the same as plain greedy search."""
    folder = seq2seq(name)
    ours = lightpipe.AutoModelForSeq2SeqLM.from_pretrained(folder)
    theirs = transformers.AutoModelForSeq2SeqLM.from_pretrained(folder).eval()
    ids = torch.tensor([[5, 6, 7, 8, 5, 6, 7, 9, 10, 5, 6, 3]])
    plain = ours.generate(input_ids=ids, max_new_tokens=20, do_sample=False)
    mine = ours.generate(input_ids=ids, max_new_tokens=20, do_sample=False, prompt_lookup_num_tokens=4)
    with torch.no_grad():
        reference = theirs.generate(input_ids=ids, max_new_tokens=20, do_sample=False,
                                    prompt_lookup_num_tokens=4)
    assert mine.tolist() == reference.tolist() == plain.tolist()


def test_prompt_lookup_after_an_embedded_prompt(decoder):
    """A prompt given as embeddings (generate(inputs_embeds=...)): the same new tokens as
    plain greedy search from the same embeddings."""
    folder = decoder("llama")
    ours, _ = load_pair(folder)
    ids = _one(folder)["input_ids"]
    embeds = ours.get_input_embeddings()(ids)
    plain = ours.generate(inputs_embeds=embeds, max_new_tokens=16, do_sample=False)
    mine = ours.generate(inputs_embeds=embeds, max_new_tokens=16, do_sample=False,
                         prompt_lookup_num_tokens=5)
    assert mine.tolist() == plain.tolist() and mine.shape[1] == 16


def test_lookup_budget_follows_step_costs_and_the_kept_share():
    """Where a check costs about one step whatever its candidates (weights streamed once), all
    are offered; where each candidate costs about a step (a kernel taking rows one at a time)
    and few are kept, one (a probe); before any timing, prompt_lookup_num_tokens."""
    budget = assisted.LookupBudget(10)
    assert budget.size() == 10
    budget.record(0, 0, 0.025)  # a step without candidates: 25 ms
    for _ in range(5):
        budget.record(10, 6, 0.030)  # 10 offered, 6 kept, 30 ms
    assert budget.size() == 10
    slow = assisted.LookupBudget(10)
    slow.record(0, 0, 0.010)
    for _ in range(5):
        slow.record(4, 1, 0.050)  # each candidate costs a step, one in four kept
    assert slow.size() == 1
