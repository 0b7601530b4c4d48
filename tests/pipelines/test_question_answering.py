"""question-answering against transformers 4.57's pipeline (v5 removed it): golden outputs
recorded by tests/golden/make_question_answering.py on tiny committed checkpoints (bert,
distilbert, roberta, xlm-roberta), replayed here batched and not; the heads' logits against
transformers 5 on the same folders; input forms; bad input."""

from __future__ import annotations

import builtins
import json
import logging
from pathlib import Path

import pytest
import torch
import transformers

import lightpipe
from lightpipe.errors import InputError, InputTypeError, LightpipeError

from ..conftest import assert_outputs_close

GOLDEN = Path(__file__).resolve().parent.parent / "golden" / "question_answering"
CASES = json.loads((GOLDEN / "cases.json").read_text(encoding="utf-8"))["cases"]
MODELS = ["bert", "distilbert", "roberta", "xlm-roberta"]
ANSWERED = [case for case in CASES if "output" in case]
FAILED = [case for case in CASES if "error" in case]

PARIS = "Paris is the capital and largest city of France. It has about two million residents."
BERLIN = "My name is Wolfgang and I live in Berlin. I work as an engineer at a small company."


def _case_id(case: dict) -> str:
    kwargs = {k: v for k, v in case["kwargs"].items() if k not in ("question", "context")}
    shape = "args" if case["args"] else type(case["kwargs"].get("question")).__name__
    side = f"-{case['padding_side']}" if case["padding_side"] else ""
    return f"{case['model']}{side}-{shape}-{json.dumps({**case['init'], **kwargs}, sort_keys=True)}"


@pytest.fixture(scope="module")
def pipes():
    """Our pipeline per (checkpoint, tokenizer padding side, pipeline() arguments)."""
    cache: dict = {}

    def get(model: str, padding_side: str | None = None, init: dict | None = None):
        key = (model, padding_side, json.dumps(init or {}, sort_keys=True))
        if key not in cache:
            pipe = lightpipe.pipeline("question-answering", model=GOLDEN / model, **(init or {}))
            if padding_side:  # the context goes first and only it is truncated
                pipe.tokenizer.padding_side = padding_side
            cache[key] = pipe
        return cache[key]

    return get


def _run(pipes, case: dict, batch_size: int):
    pipe = pipes(case["model"], case["padding_side"], case["init"])
    return pipe(*case["args"], batch_size=batch_size, **case["kwargs"])


def test_golden_cases_cover_every_argument():
    used = set().union(*(case["kwargs"] for case in ANSWERED), *(case["init"] for case in ANSWERED))
    assert used >= {"question", "context", "top_k", "topk", "doc_stride", "max_seq_len",
                    "max_question_len", "max_answer_len", "handle_impossible_answer",
                    "align_to_words", "padding"}
    assert {case["model"] for case in ANSWERED} == set(MODELS)
    assert any(case["padding_side"] == "left" for case in ANSWERED)
    assert any(case["batch_size"] > 1 for case in ANSWERED)
    assert len(ANSWERED) > 60 and len(FAILED) > 10


@pytest.mark.parametrize("case", ANSWERED, ids=_case_id)
def test_matches_transformers_457(pipes, case):
    assert_outputs_close(_run(pipes, case, case["batch_size"]), case["output"])


# Batched runs pad pieces to a common length. BERT-style models number positions from the
# first column, so left padding shifts them (as in the reference's own batches); RoBERTa-style
# models number positions from the first real token, so every case batches exactly.
@pytest.mark.parametrize("case", [c for c in ANSWERED if c["batch_size"] == 1 and (
    c["padding_side"] is None or "roberta" in c["model"])], ids=_case_id)
def test_batched_matches_unbatched_reference(pipes, case):
    assert_outputs_close(_run(pipes, case, 4), case["output"])


@pytest.mark.parametrize("case", FAILED, ids=_case_id)
def test_bad_input_raises_like_reference(pipes, case):
    expected = next(getattr(builtins, name) for name in case["error"] if hasattr(builtins, name))
    with pytest.raises(expected) as caught:
        _run(pipes, case, 1)
    assert isinstance(caught.value, LightpipeError), f"not our own error: {caught.value!r}"
    assert len(str(caught.value)) > 20  # a message a person can act on


@pytest.mark.parametrize("model", MODELS)
def test_answers_are_spans_of_the_context(pipes, model):
    context = _long_context()
    for side, align in ((None, True), (None, False), ("left", True)):
        results = pipes(model, side)(question=["Who finished the town hall?", "When?"], context=context,
                                     top_k=5, align_to_words=align, max_seq_len=48, doc_stride=16)
        assert len(results) == 2
        for answers in results:
            assert len(answers) == 5
            for answer in answers:
                assert type(answer["score"]) is float and 0.0 <= answer["score"]
                assert type(answer["start"]) is int and type(answer["end"]) is int
                assert answer["answer"] == context[answer["start"]:answer["end"]]


@pytest.mark.parametrize("model", MODELS)
def test_head_logits_match_transformers(model):
    folder = GOLDEN / model
    theirs_model = transformers.AutoModelForQuestionAnswering.from_pretrained(folder).eval()
    ours_model = lightpipe.AutoModelForQuestionAnswering.from_pretrained(folder)
    tokenizer = transformers.AutoTokenizer.from_pretrained(folder)
    batch = tokenizer(["Where do I live?", "What is the capital of France?"], [BERLIN, PARIS],
                      padding=True, return_tensors="pt")
    with torch.no_grad():
        expected = theirs_model(**batch)
        ours = ours_model(**batch)
    mask = batch["attention_mask"].bool()
    for name in ("start_logits", "end_logits"):
        torch.testing.assert_close(ours[name][mask], expected[name][mask], rtol=1e-4, atol=1e-5)
    assert expected["start_logits"].std() > 0.1  # the widened head gives distinct answers


def test_same_answers_in_every_input_form(pipes):
    pipe = pipes("roberta")
    one = pipe(question="Where do I live?", context=BERLIN, top_k=2)
    assert isinstance(one, list) and len(one) == 2
    item = {"question": "Where do I live?", "context": BERLIN}
    for result in (pipe(item, top_k=2), pipe([item], top_k=2), pipe("Where do I live?", BERLIN, top_k=2),
                   pipe(question=["Where do I live?"], context=[BERLIN], top_k=2),
                   pipe(data=[item], top_k=2), pipe((item,), top_k=2)):
        assert_outputs_close(result, one)
    many = pipe([item, {"question": "What is the capital?", "context": PARIS}])
    assert isinstance(many, list) and len(many) == 2
    assert_outputs_close(many[0], one[0])
    assert pipe([]) == []


def test_iterators_stream_results(pipes):
    pipe = pipes("distilbert")
    items = [{"question": q, "context": c} for q, c in
             [("Where do I live?", BERLIN), ("Who?", PARIS), ("How many?", PARIS)]]
    expected = pipe(items, top_k=2)

    class Dataset:  # a sized, indexable collection, like a torch Dataset
        def __len__(self):
            return len(items)

        def __getitem__(self, index):
            return items[index]

    for source in ((item for item in items), Dataset()):
        streamed = pipe(source, top_k=2, batch_size=2)
        assert not isinstance(streamed, list)
        assert_outputs_close(list(streamed), expected)


def test_arguments_change_the_answers(pipes):
    pipe = pipes("bert")
    base = pipe(question="Who finished the town hall?", context=_long_context(), top_k=3)
    assert len(base) == 3 and [a["score"] for a in base] == sorted((a["score"] for a in base), reverse=True)
    short = pipe(question="Who finished the town hall?", context=_long_context(), top_k=3, max_answer_len=1)
    assert short != base and all(" " not in a["answer"] for a in short)
    windows = pipe.preprocess_many([{"question": "Who?", "context": _long_context()}])[0]
    assert len(windows) > 1 and all(len(w["input_ids"]) <= 128 for w in windows)
    small = pipe.preprocess_many([{"question": "Who?", "context": _long_context()}],
                                 max_seq_len=40, doc_stride=10)[0]
    assert len(small) > len(windows) and max(len(w["input_ids"]) for w in small) == 40
    impossible = pipe(question="Who?", context=PARIS, top_k=100, handle_impossible_answer=True)
    assert {"start": 0, "end": 0, "answer": ""}.items() <= next(a for a in impossible if not a["answer"]).items()


def _long_context() -> str:
    case = next(c for c in ANSWERED if c["model"] == "bert" and len(c["kwargs"].get("context", "")) > 900)
    return case["kwargs"]["context"]


def test_non_string_inputs_are_clear_errors(pipes):
    pipe = pipes("bert")
    with pytest.raises(InputTypeError, match="question must be a string"):
        pipe({"question": 3, "context": PARIS})
    with pytest.raises(InputTypeError, match="context must be a string"):
        pipe({"question": "Who?", "context": ["a", "list"]})
    with pytest.raises(InputTypeError, match="context must be a string"):
        pipe(question=["Who?"], context=[b"bytes"])
    with pytest.raises(InputError, match="dict"):
        pipe([1, 2])
    with pytest.raises(InputError, match="Cannot pair"):
        pipe(question=42, context=PARIS)
    with pytest.raises(InputError, match="context= without question="):
        pipe(context=PARIS)
    with pytest.raises(InputError, match="needs inputs"):
        pipe()
    with pytest.raises(InputError, match="one string"):
        pipe("Where do I live?")
    with pytest.raises(InputError, match="question cannot be empty"):
        pipe(question=["Who?", ""], context=PARIS)
    with pytest.raises(InputError, match="top_k"):
        pipe(question="Who?", context=PARIS, top_k=1.5)
    with pytest.raises(InputError, match="top_k"):
        lightpipe.pipeline("question-answering", model=GOLDEN / "bert", top_k=0)
    with pytest.raises(InputError, match="could not encode"):  # no room left for the context
        pipe(question="Who " * 30 + "?", context=PARIS, max_seq_len=20, doc_stride=5)


def test_unknown_arguments_are_ignored_with_a_warning(pipes, caplog):
    pipe = pipes("bert")
    with caplog.at_level(logging.WARNING, logger="lightpipe"):
        result = pipe(question="Who?", context=PARIS, tpo_k=3)
    assert "tpo_k" in caplog.text
    assert_outputs_close(result, pipe(question="Who?", context=PARIS))
