"""text-generation against the reference pipeline: strings, lists, chats, batches of different
lengths, return_full_text, generate arguments, the default sampling; streaming; the CLI's
`chat` and `run text-generation`; bad input."""

from __future__ import annotations

import io
import json
import sys

import pytest
import torch
import transformers

import lightpipe
from lightpipe.cli import main
from lightpipe.errors import InputError, InputTypeError
from lightpipe.generation import TextIteratorStreamer

from ..conftest import DECODER_TYPES

TEXTS = ["Hello world, this is", "The quick brown fox jumps over the lazy dog! What", "Tokenizers",
         "Paris is the capital of"]
CHAT = [{"role": "system", "content": "You are terse."},
        {"role": "user", "content": "What is the capital of France?"}]
GREEDY = {"do_sample": False, "max_new_tokens": 8}
_PIPES: dict = {}


@pytest.fixture(scope="module")
def pipes(decoder):
    """(ours, reference) pipelines per (model_type, config overrides), built once."""
    def get(model_type="llama", **overrides):
        key = (model_type, json.dumps(overrides, sort_keys=True))
        if key not in _PIPES:
            folder = str(decoder(model_type, **overrides))
            _PIPES[key] = (lightpipe.pipeline("text-generation", model=folder),
                           transformers.pipeline("text-generation", model=folder))
        return _PIPES[key]

    return get


@pytest.mark.parametrize("model_type", DECODER_TYPES)
def test_matches_reference(pipes, model_type):
    ours, theirs = pipes(model_type)
    for inputs, kwargs in [
        (TEXTS[0], GREEDY),
        (TEXTS, GREEDY),
        (CHAT, GREEDY),
        ([CHAT, CHAT[1:]], GREEDY),
        (TEXTS[1], {**GREEDY, "return_full_text": False}),
        (TEXTS[2], {**GREEDY, "num_beams": 3, "num_return_sequences": 2}),
        (TEXTS[3], {**GREEDY, "repetition_penalty": 1.5, "no_repeat_ngram_size": 2}),
    ]:
        assert ours(inputs, **kwargs) == theirs(inputs, **kwargs), (inputs, kwargs)


@pytest.mark.parametrize("model_type", ["gpt2", "llama", "opt"])
def test_batches_of_different_lengths(pipes, model_type):
    ours, theirs = pipes(model_type)
    expected = theirs(TEXTS, **GREEDY)
    for batch_size in (2, 4):
        assert ours(TEXTS, batch_size=batch_size, **GREEDY) == expected
    chats = [CHAT, CHAT[1:], [{"role": "user", "content": "Hi"}]]
    assert ours(chats, batch_size=3, **GREEDY) == theirs(chats, **GREEDY)


def test_default_generation_settings_match_reference(pipes):
    """No arguments: the reference's pipeline defaults (sampling at temperature 0.7, 256 new
    tokens unless the model says otherwise); the same seed gives the same text."""
    ours, theirs = pipes("llama")
    torch.manual_seed(3)
    mine = ours(TEXTS[0], max_new_tokens=12)
    torch.manual_seed(3)
    reference = theirs(TEXTS[0], max_new_tokens=12)
    assert mine == reference
    torch.manual_seed(3)
    assert ours(TEXTS[0], max_new_tokens=12, do_sample=False) != mine  # it did sample


def test_output_forms(pipes):
    ours, theirs = pipes("gpt2")
    for kwargs in ({"return_tensors": True}, {"return_full_text": True}, {"return_text": True},
                   {"skip_special_tokens": False}, {"clean_up_tokenization_spaces": True}):
        assert ours(TEXTS[:2], **GREEDY, **kwargs) == theirs(TEXTS[:2], **GREEDY, **kwargs), kwargs
    record = ours(TEXTS[0], **GREEDY, return_tensors=True)[0]
    assert list(record) == ["generated_token_ids"] and all(isinstance(t, int) for t in record["generated_token_ids"])
    with pytest.raises(ValueError, match="mutually exclusive"):
        ours(TEXTS[0], return_full_text=True, return_tensors=True)


def test_chat_prefill_and_stop_sequence(pipes):
    ours, theirs = pipes("qwen2")
    prefill = CHAT + [{"role": "assistant", "content": "The capital"}]
    assert ours(prefill, **GREEDY) == theirs(prefill, **GREEDY)
    result = ours(prefill, **GREEDY)[0]["generated_text"]
    assert result[-1]["role"] == "assistant" and result[-1]["content"].startswith("The capital")
    assert len(result) == len(prefill)
    assert ours(CHAT, continue_final_message=False, **GREEDY) == theirs(CHAT, continue_final_message=False, **GREEDY)
    free = ours(TEXTS[1], return_full_text=False, **GREEDY)[0]["generated_text"]
    stop = free[2:5]
    stopped = ours(TEXTS[1], return_full_text=False, stop_sequence=stop, **GREEDY)
    assert stopped == theirs(TEXTS[1], return_full_text=False, stop_sequence=stop, **GREEDY)
    assert stop in stopped[0]["generated_text"]


def test_pipeline_arguments_at_construction_and_prefix(decoder):
    folder = str(decoder("llama"))
    ours = lightpipe.pipeline("text-generation", model=folder, **GREEDY)
    theirs = transformers.pipeline("text-generation", model=folder, **GREEDY)
    assert ours(TEXTS[:2]) == theirs(TEXTS[:2])
    assert ours(TEXTS[0], prefix="Once upon a time. ") == theirs(TEXTS[0], prefix="Once upon a time. ")
    assert ours(TEXTS[0], max_length=12) == theirs(TEXTS[0], max_length=12)


def test_iterator_in_iterator_out(pipes):
    ours, theirs = pipes("llama")
    stream = ours((text for text in TEXTS), batch_size=2, **GREEDY)
    assert not isinstance(stream, list)
    assert list(stream) == theirs(TEXTS, **GREEDY)
    chats = ours((chat for chat in [CHAT, CHAT[1:]]), **GREEDY)
    assert list(chats) == theirs([CHAT, CHAT[1:]], **GREEDY)


def test_streaming(pipes):
    ours, _ = pipes("llama")
    full = ours(TEXTS[1], return_full_text=False, **GREEDY)[0]["generated_text"]
    pieces = list(ours.stream(TEXTS[1], **GREEDY))
    assert len(pieces) >= 2 and "".join(pieces) == full
    reply = ours(CHAT, **GREEDY)[0]["generated_text"][-1]["content"]
    assert "".join(ours.stream(CHAT, **GREEDY)) == reply
    # The transformers way: a TextIteratorStreamer given to the pipeline.
    streamer = TextIteratorStreamer(ours.tokenizer, skip_prompt=True, skip_special_tokens=True)
    ours(TEXTS[1], streamer=streamer, **GREEDY)
    assert "".join(streamer) == full
    with pytest.raises(ValueError, match="temperature"):
        list(ours.stream(TEXTS[0], do_sample=True, temperature=0.0))
    with pytest.raises(InputError):
        list(ours.stream(TEXTS, **GREEDY))


def test_empty_prompt_starts_from_bos(pipes):
    """An empty prompt is allowed: generation starts from the model's BOS token, as in the
    reference."""
    ours, theirs = pipes("llama")
    assert ours("", **GREEDY) == theirs("", **GREEDY)
    assert len(ours("", **GREEDY)[0]["generated_text"]) > 0


def test_long_prompts(pipes):
    """A prompt past GPT-2's positions is a clear error; with handle_long_generation='hole'
    the prompt is cut from the left (with a warning) as the reference does."""
    ours, theirs = pipes("gpt2")
    long_text = " ".join(["Hello world, this is a tiny corpus."] * 20)
    with pytest.raises(InputError, match="positions"):
        ours(long_text, **GREEDY)
    kwargs = {**GREEDY, "handle_long_generation": "hole"}
    assert ours(long_text, **kwargs) == theirs(long_text, **kwargs)


def test_bad_input(pipes, decoder):
    ours, _ = pipes("gpt2")
    with pytest.raises(InputTypeError):
        ours(42, **GREEDY)
    with pytest.raises(ValueError, match="role.*content"):
        ours([{"role": "user", "content": "hi"}, {"role": "assistant"}], **GREEDY)
    with pytest.raises(ValueError, match="temperature"):
        ours(TEXTS[0], do_sample=True, temperature=-1.0)
    with pytest.raises(ValueError, match="top_p"):
        ours(TEXTS[0], do_sample=True, top_p=2.0)
    with pytest.raises(ValueError, match="handle_long_generation"):
        ours(TEXTS[0], handle_long_generation="middle")
    plain = lightpipe.pipeline("text-generation", model=str(decoder("gpt2", chat_template=None)))
    with pytest.raises(InputError, match="no chat template"):
        plain(CHAT, **GREEDY)


# --- the command line ---

def test_cli_chat_streams_replies(decoder, capsys, monkeypatch):
    # a context the two turns fit in (past it, chat drops the oldest turns: tests/test_cli_chat.py)
    folder = str(decoder("llama", max_position_embeddings=512))
    monkeypatch.setattr(sys, "stdin", io.StringIO("What is the capital of France?\nAnd of Italy?\n"))
    assert main(["chat", "--model", folder, "--system", "You are terse.", "--max-new-tokens", "8",
                 "--kwargs", '{"do_sample": false}']) == 0
    replies = capsys.readouterr().out.splitlines()
    reference = transformers.pipeline("text-generation", model=folder)
    conversation = [{"role": "system", "content": "You are terse."}]
    expected = []
    for message in ("What is the capital of France?", "And of Italy?"):
        conversation = reference(conversation + [{"role": "user", "content": message}],
                                 **GREEDY)[0]["generated_text"]
        expected.append(conversation[-1]["content"])
    assert replies == expected


def test_cli_chat_refuses_a_model_without_template(decoder, capsys, monkeypatch):
    monkeypatch.setattr(sys, "stdin", io.StringIO("Hi\n"))
    assert main(["chat", "--model", str(decoder("gpt2", chat_template=None))]) == 2
    assert "no chat template" in capsys.readouterr().err


def test_cli_run_text_generation_from_stdin(decoder, capsys, monkeypatch):
    folder = str(decoder("opt"))
    lines = TEXTS[0] + "\n" + json.dumps(CHAT) + "\n"
    monkeypatch.setattr(sys, "stdin", io.StringIO(lines))
    assert main(["run", "text-generation", "--model", folder, "--kwargs", json.dumps(GREEDY)]) == 0
    results = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    reference = transformers.pipeline("text-generation", model=folder)
    assert results == [reference(TEXTS[0], **GREEDY), reference(CHAT, **GREEDY)]
