"""summarization, translation and text2text-generation against transformers 4.57's pipelines
(v5 removed them): golden outputs recorded by tests/golden/make_seq2seq.py on tiny committed
checkpoints (BART, T5 v1.0 with task prefixes, Flan-T5-style, Marian), replayed here; input
forms; bad input."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
import torch

import lightpipe
from lightpipe.errors import InputError, InputTypeError, UnknownTaskError

from ..conftest import assert_outputs_close

GOLDEN = Path(__file__).resolve().parent.parent / "golden" / "seq2seq"
CASES = json.loads((GOLDEN / "cases.json").read_text(encoding="utf-8"))["cases"]
ANSWERED = [case for case in CASES if "output" in case]
FAILED = [case for case in CASES if "error" in case]


def _case_id(case: dict) -> str:
    shape = f"list{len(case['inputs'])}" if isinstance(case["inputs"], list) else "str"
    return (f"{case['task']}-{case['model']}-{shape}-"
            f"{json.dumps({**case['init'], **case['kwargs']}, sort_keys=True)}")


@pytest.fixture(scope="module")
def pipes():
    cache: dict = {}

    def get(task: str, model: str, init: dict | None = None):
        key = (task, model, json.dumps(init or {}, sort_keys=True))
        if key not in cache:
            cache[key] = lightpipe.pipeline(task, model=GOLDEN / model, **(init or {}))
        return cache[key]

    return get


def _plain(value):
    """Token-id tensors -> lists, as the golden file stores them."""
    if isinstance(value, torch.Tensor):
        return value.tolist()
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def test_golden_cases_cover_every_argument():
    used = set().union(*(case["kwargs"] for case in ANSWERED), *(case["init"] for case in ANSWERED))
    assert used >= {"min_length", "max_length", "max_new_tokens", "truncation", "return_text",
                    "return_tensors", "clean_up_tokenization_spaces", "num_beams",
                    "num_return_sequences", "no_repeat_ngram_size", "length_penalty",
                    "early_stopping", "batch_size", "stop_sequence"}
    assert {case["model"] for case in ANSWERED} == {"bart", "t5", "flan-t5", "opus-mt-en-de"}
    assert {case["task"] for case in ANSWERED} >= {"summarization", "translation",
                                                   "translation_en_to_de", "translation_en_to_fr",
                                                   "text2text-generation"}
    assert len(ANSWERED) > 60 and FAILED


@pytest.mark.parametrize("case", ANSWERED, ids=_case_id)
def test_matches_transformers_457(pipes, case):
    pipe = pipes(case["task"], case["model"], case["init"])
    assert_outputs_close(_plain(pipe(case["inputs"], **case["kwargs"])), case["output"])


@pytest.mark.parametrize("case", FAILED, ids=_case_id)
def test_fails_where_transformers_457_fails_but_clearly(pipes, case):
    """4.57 crashes deep in torch (an index past BART's position table); we say why and how
    to fix it."""
    pipe = pipes(case["task"], case["model"], case["init"])
    with pytest.raises(InputError, match="truncation=True"):
        pipe(case["inputs"], **case["kwargs"])


def test_t5_task_prefixes_from_config(pipes):
    assert pipes("summarization", "t5").prefix == "summarize: "
    assert pipes("translation_en_to_de", "t5").prefix == "translate English to German: "
    assert pipes("translation_en_to_fr", "t5").prefix == "translate English to French: "
    assert pipes("text2text-generation", "t5").prefix is None
    config = pipes("summarization", "t5").generation_config
    assert (config.num_beams, config.max_length, config.min_length) == (3, 30, 6)


def test_iterator_input_gives_an_iterator(pipes):
    pipe = pipes("summarization", "bart")
    texts = ["The quick brown fox.", "Paris is the capital of France."]
    streamed = list(pipe(iter(texts), max_new_tokens=4))
    assert streamed == [pipe(text, max_new_tokens=4) for text in texts]
    assert pipe([], max_new_tokens=4) == []


def test_bad_input(pipes):
    pipe = pipes("summarization", "bart")
    with pytest.raises(InputTypeError):
        pipe(42)
    with pytest.raises(InputTypeError):
        pipe(["ok", None])
    with pytest.raises(TypeError, match="unexpected"):
        pipe("text", not_an_argument=1)
    with pytest.raises(ValueError, match="num_return_sequences"):  # as the reference
        pipe("text", num_beams=2, num_return_sequences=3)


def test_unknown_language_pair_is_a_clear_error():
    with pytest.raises(InputError, match="translation_en_to_de"):
        lightpipe.pipeline("translation_en_to_it", model=GOLDEN / "t5")
    with pytest.raises(InputError, match="translation_en_to_de"):
        lightpipe.pipeline("translation_fr_to_en", model=GOLDEN / "opus-mt-en-de")
    with pytest.raises(UnknownTaskError):
        lightpipe.pipeline("translation_english_to_german", model=GOLDEN / "t5")


def test_encoder_only_model_is_refused(pipes):
    encoder = pipes("summarization", "bart").model.model  # the BartModel: no generate()
    with pytest.raises(InputError, match="encoder-decoder"):
        lightpipe.pipeline("summarization", model=encoder, tokenizer=GOLDEN / "bart")


def test_summarization_warns_about_lengths(pipes, caplog):
    pipe = pipes("summarization", "bart")
    with caplog.at_level(logging.WARNING, logger="lightpipe"):
        pipe("Short.", max_length=10, min_length=12)
    assert "min_length=12" in caplog.text and "input_length is only" in caplog.text


def test_model_and_tokenizer_objects(pipes):
    pipe = pipes("translation", "opus-mt-en-de")
    again = lightpipe.pipeline("translation", model=pipe.model, tokenizer=pipe.tokenizer)
    text = "The quick brown fox jumps over the lazy dog."
    assert again(text) == pipe(text)


def test_summarization_example(pipes):
    """examples/summarization.py on the golden checkpoints, as a user runs it."""
    from ..test_examples import printed, run_example

    stdout = run_example("summarization.py", "--model", GOLDEN / "bart",
                         "--translator", GOLDEN / "opus-mt-en-de")
    article = printed(stdout, "summary")
    assert isinstance(article, list) and set(article[0]) == {"summary_text"}
    batch = printed(stdout, "batch")
    assert len(batch) == 2 and all(set(r) == {"summary_text"} for r in batch)
    translations = printed(stdout, "translation")
    pipe = pipes("translation_en_to_de", "opus-mt-en-de")
    assert translations == pipe(["How old are you?", "The tower is tall."])


def test_stop_sequence_and_dict_outputs(pipes):
    pipe = pipes("text2text-generation", "flan-t5")
    with pytest.raises(InputError, match="stop_sequence"):
        pipe("Paris is nice.", stop_sequence="")
    plain = pipe("Paris is nice.", max_new_tokens=5)
    assert pipe("Paris is nice.", max_new_tokens=5, return_dict_in_generate=True) == plain
