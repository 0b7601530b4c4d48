"""visual-question-answering (vqa) against transformers 4.57's pipeline (v5 removed it): golden
outputs recorded by tests/golden/make_multimodal.py on a tiny committed ViLT checkpoint,
replayed here (every input form, the image x question crossing, top_k, padding, truncation,
timeout, batch_size); batches of mixed image sizes (which 4.57 cannot batch) against the
unbatched goldens; iterators; bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

import lightpipe
from lightpipe.errors import InputError, InputTypeError

from ..conftest import assert_outputs_close
from ..fixtures.multimodal import multimodal_images, vilt_checkpoint  # noqa: F401

GOLDEN = Path(__file__).resolve().parent.parent / "golden" / "multimodal"
CASES = [case for case in json.loads((GOLDEN / "cases.json").read_text(encoding="utf-8"))["cases"]
         if case["task"] in ("visual-question-answering", "vqa")]
ANSWERED = [case for case in CASES if "output" in case]
FAILED = [case for case in CASES if "error" in case]


def _case_id(case: dict) -> str:
    call = {k: (v if not isinstance(v, (list, dict)) else f"{type(v).__name__}{len(v)}")
            for k, v in case["call"].items()}
    return f"{case['task']}-{json.dumps({**case['init'], **call}, sort_keys=True)}-pil{case['pil']}"


def _resolve(value, pil: bool):
    if isinstance(value, str) and value.startswith("images/"):
        return Image.open(GOLDEN / value) if pil else str(GOLDEN / value)
    if isinstance(value, list):
        return [_resolve(v, pil) for v in value]
    if isinstance(value, dict):
        return {k: _resolve(v, pil) for k, v in value.items()}
    return value


@pytest.fixture(scope="module")
def pipes():
    cache: dict = {}

    def get(task: str = "visual-question-answering", init: dict | None = None):
        key = (task, json.dumps(init or {}, sort_keys=True))
        if key not in cache:
            cache[key] = lightpipe.pipeline(task, model=GOLDEN / "vilt", **(init or {}))
        return cache[key]

    return get


def _call(pipe, case: dict):
    call = _resolve(dict(case["call"]), case["pil"])
    inputs = call.pop("inputs", None)
    return pipe(inputs, **call) if inputs is not None else pipe(**call)


def test_golden_cases_cover_every_argument():
    used = set().union(*(case["call"] for case in ANSWERED), *(case["init"] for case in ANSWERED))
    assert used >= {"image", "question", "inputs", "top_k", "padding", "truncation", "timeout",
                    "batch_size"}
    assert any(case["pil"] for case in ANSWERED) and {c["task"] for c in ANSWERED} == {
        "visual-question-answering", "vqa"}
    assert len(ANSWERED) >= 20 and FAILED


@pytest.mark.parametrize("case", ANSWERED, ids=_case_id)
def test_matches_transformers_457(pipes, case):
    pipe = pipes(case["task"], case["init"])
    assert_outputs_close(_call(pipe, case), case["output"], rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("case", FAILED, ids=_case_id)
def test_fails_where_transformers_457_fails_but_clearly(pipes, case):
    """4.57 crashes deep in torch (a question past ViLT's 40 positions); we say how to fix it."""
    with pytest.raises(InputError, match="truncation=True"):
        _call(pipes(case["task"], case["init"]), case)


def _golden(call: dict):
    for case in ANSWERED:
        if case["call"] in (call, {"inputs": call}) and not case["init"] and not case["pil"]:
            return case["output"]
    raise KeyError(call)


def test_mixed_image_sizes_share_a_batch(pipes):
    """4.57 cannot batch images of different sizes; here they are padded with a pixel mask, and
    each answer equals the unbatched golden."""
    pipe = pipes()
    singles = [({"image": "images/a.png", "question": "What is in the image?"}),
               ({"image": "images/b.png", "question": "How many cats are there?"}),
               ({"image": "images/c.png", "question": "What color is the sky?"})]
    want = [_golden(single) for single in singles]
    for batch_size in (1, 2, 3):
        got = pipe([_resolve(single, False) for single in singles], batch_size=batch_size)
        assert_outputs_close(got, want, rtol=1e-4, atol=1e-5)


def test_iterators_and_datasets_stream(pipes):
    pipe = pipes()
    items = [{"image": "images/a.png", "question": "What is in the image?"},
             {"image": "images/b.png", "question": "How many cats are there?"}]
    want = [_golden(item) for item in items]
    stream = pipe((_resolve(item, False) for item in items), batch_size=2)
    assert not isinstance(stream, list)
    assert_outputs_close(list(stream), want, rtol=1e-4, atol=1e-5)
    # an iterator of images with one question
    images = iter([str(GOLDEN / "images/a.png"), str(GOLDEN / "images/b.png"), str(GOLDEN / "images/c.png")])
    got = list(pipe(image=images, question="How many cats are there?"))
    assert_outputs_close(got, _golden({"image": ["images/a.png", "images/b.png", "images/c.png"],
                                       "question": "How many cats are there?"}), rtol=1e-4, atol=1e-5)


def test_positional_image_and_question_and_task_inference(pipes):
    want = _golden({"image": "images/a.png", "question": "What is in the image?"})
    pipe = pipes()
    assert_outputs_close(pipe(str(GOLDEN / "images/a.png"), "What is in the image?"), want,
                         rtol=1e-4, atol=1e-5)
    inferred = lightpipe.pipeline(model=str(GOLDEN / "vilt"))  # ViltForQuestionAnswering -> vqa
    assert inferred.task == "visual-question-answering"
    assert_outputs_close(inferred(image=str(GOLDEN / "images/a.png"), question="What is in the image?"),
                         want, rtol=1e-4, atol=1e-5)


def test_scores_are_python_floats_sorted(pipes):
    out = pipes()(image=str(GOLDEN / "images/b.png"), question="Is this a dog?", top_k=12)
    assert len(out) == 12 and all(type(item["score"]) is float for item in out)
    assert [item["score"] for item in out] == sorted((item["score"] for item in out), reverse=True)


def test_random_checkpoint_matches_reference_model(vilt_checkpoint, multimodal_images):
    """A transformers 5 checkpoint: the pipeline's scores are the sigmoid of the reference
    model's logits on the reference processor's inputs."""
    import torch
    import transformers

    folder = vilt_checkpoint()
    pipe = lightpipe.pipeline("vqa", model=folder)
    reference = transformers.ViltForQuestionAnswering.from_pretrained(str(folder)).eval()
    tokenizer = transformers.AutoTokenizer.from_pretrained(str(folder))
    processor = transformers.ViltImageProcessorPil.from_pretrained(str(folder))
    images = [image.convert("RGB") for image in multimodal_images[:3]]
    got = pipe(image=images, question="what is in the image?", top_k=4, batch_size=3)
    for image, answers in zip(images, got):
        inputs = {**tokenizer("what is in the image?", return_tensors="pt"),
                  **processor(image, return_tensors="pt")}
        with torch.no_grad():
            scores, ids = reference(**inputs).logits.sigmoid()[0].topk(4)
        want = [{"score": s, "answer": reference.config.id2label[i]}
                for s, i in zip(scores.tolist(), ids.tolist())]
        assert_outputs_close(answers, want, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("call, error, match", [
    (dict(image=str(GOLDEN / "images/a.png")), InputTypeError, "without a question"),
    (dict(image=str(GOLDEN / "images/a.png"), question=3), InputTypeError, "question as a string"),
    (dict(image=str(GOLDEN / "images/a.png"), question=["ok", 3]), InputTypeError, "questions as strings"),
    (dict(image=str(GOLDEN / "images/a.png"), question=[]), InputError, "empty list"),
    (dict(image=[], question="what?"), InputError, "empty list"),
    (dict(question="what?"), InputError, "needs an image"),
    (dict(image=12345, question="what?"), InputTypeError, "An image must be"),
    (dict(image="no/such/file.png", question="what?"), InputError, "No image at"),
    (dict(image={"image": "x", "question": "y"}, question="what?"), InputError, "not both"),
    (dict(image={"image": str(GOLDEN / "images/a.png")}), InputError, "no 'question'"),
    (dict(image=[{"question": "what?"}]), InputError, "no 'image'"),
    (dict(image=str(GOLDEN / "images/a.png"), question="what?", top_k=-1), InputError, "top_k"),
    (dict(image=str(GOLDEN / "images/a.png"), question="what?", top_k="2"), InputError, "top_k"),
])
def test_bad_input_is_a_clear_error(pipes, call, error, match):
    with pytest.raises(error, match=match):
        pipes()(**call)


def test_unknown_argument_is_a_clear_error(pipes):
    with pytest.raises(TypeError, match="unexpected arguments: threshold"):
        pipes()(image=str(GOLDEN / "images/a.png"), question="what?", threshold=0.5)
