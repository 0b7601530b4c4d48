"""document-question-answering against transformers 5's pipeline on the same tiny LayoutLM
checkpoints (RoBERTa-style and BERT-style tokenizers): every argument, every input form,
long documents in windows, batched and not; the OCR path (tesseract) against pytesseract's;
clear errors."""

from __future__ import annotations

import base64
import os
import shutil

import numpy as np
import pytest
import transformers

import lightpipe
from lightpipe.errors import InputError, InputTypeError, UnsupportedModelError
from tests.conftest import assert_outputs_close
from tests.fixtures.document import *  # noqa: F401,F403  (until tests/conftest.py imports it)
from tests.fixtures.document import (DOCUMENT_WORDS, INVOICE_LINES, LAYOUTLM_KINDS, QUESTIONS,
                                     render_document, word_boxes)

TASK = "document-question-answering"
_PIPES: dict = {}


def pipes(folder):
    """(ours, reference) pipelines of a folder, cached."""
    if folder not in _PIPES:
        transformers.logging.set_verbosity_error()
        _PIPES[folder] = (lightpipe.pipeline(TASK, model=str(folder)),
                          transformers.pipeline(TASK, model=str(folder)))
    return _PIPES[folder]


BOXES = word_boxes()
LONG_BOXES = word_boxes(DOCUMENT_WORDS * 4)  # ~100 words: several windows of 64 tokens

CASES = {
    "default": dict(question=QUESTIONS[0], word_boxes=BOXES),
    "top_k": dict(question=QUESTIONS[1], word_boxes=BOXES, top_k=5),
    "top_k_more_than_spans": dict(question="Who?", word_boxes=BOXES[:2], top_k=200),
    "max_answer_len": dict(question=QUESTIONS[2], word_boxes=BOXES, top_k=4, max_answer_len=2),
    "impossible": dict(question=QUESTIONS[3], word_boxes=BOXES, top_k=3,
                       handle_impossible_answer=True),
    "long_default_windows": dict(question=QUESTIONS[0], word_boxes=LONG_BOXES, top_k=3),
    "long_doc_stride": dict(question=QUESTIONS[2], word_boxes=LONG_BOXES, top_k=6,
                            max_seq_len=24, doc_stride=6),
    "long_impossible": dict(question=QUESTIONS[1], word_boxes=LONG_BOXES, max_seq_len=32,
                            doc_stride=10, handle_impossible_answer=True, top_k=2),
    "padding_max_length": dict(question=QUESTIONS[0], word_boxes=BOXES, padding="max_length",
                               top_k=3, max_seq_len=48),
    "empty_document": dict(question=QUESTIONS[0], word_boxes=[]),
    "empty_document_impossible": dict(question=QUESTIONS[0], word_boxes=[],
                                      handle_impossible_answer=True),
}


@pytest.mark.parametrize("kind", LAYOUTLM_KINDS)
@pytest.mark.parametrize("case", list(CASES))
def test_word_boxes_match_reference(layoutlm_model, kind, case):
    ours, reference = pipes(layoutlm_model(kind))
    arguments = CASES[case]
    got = ours(image=None, **arguments)
    want = reference(image=None, **arguments)
    assert_outputs_close(got, want)
    assert isinstance(got, list)  # a list even for one answer, as the reference
    if case.startswith("long_default"):  # the long cases do span several windows
        windows = ours.preprocess_many([{"question": arguments["question"],
                                         "word_boxes": arguments["word_boxes"]}])[0]
        assert len(windows) > 1


def test_max_question_len_is_accepted_and_ignored(layoutlm_model):
    """The reference documents max_question_len but its preprocess rejects it (TypeError);
    we accept it and, as its docs' QA sibling with a fast tokenizer, ignore it."""
    ours, reference = pipes(layoutlm_model("roberta"))
    arguments = dict(image=None, question=QUESTIONS[0], word_boxes=BOXES, top_k=2)
    with pytest.raises(TypeError, match="max_question_len"):
        reference(**arguments, max_question_len=2)
    assert_outputs_close(ours(**arguments, max_question_len=2), reference(**arguments))


@pytest.mark.parametrize("kind", LAYOUTLM_KINDS)
def test_input_forms_and_batches(layoutlm_model, kind):
    ours, reference = pipes(layoutlm_model(kind))
    items = [{"image": None, "question": q, "word_boxes": boxes}
             for q, boxes in zip(QUESTIONS, [BOXES, LONG_BOXES, BOXES[:5], LONG_BOXES])]
    # The reference cannot batch this task (batch_size > 1 fails in its postprocess), so each
    # of its answers comes from its one-at-a-time path.
    want = [reference(item, top_k=2, max_seq_len=40, doc_stride=8) for item in items]
    assert_outputs_close(ours(items[0], top_k=2, max_seq_len=40, doc_stride=8), want[0])
    for batch_size in (1, 3):
        assert_outputs_close(ours(items, top_k=2, max_seq_len=40, doc_stride=8,
                                  batch_size=batch_size), want)
    assert_outputs_close(ours(items[:1], top_k=2, max_seq_len=40, doc_stride=8),
                         reference(items[:1], top_k=2, max_seq_len=40, doc_stride=8))
    streamed = ours((item for item in items), top_k=2, max_seq_len=40, doc_stride=8, batch_size=2)
    assert not isinstance(streamed, list)
    assert_outputs_close(list(streamed), want)
    # Call arguments override construction-time ones.
    configured = lightpipe.pipeline(TASK, model=str(layoutlm_model(kind)), top_k=3)
    assert_outputs_close(configured(items[0]), reference(items[0], top_k=3))
    assert_outputs_close(configured(items[0], top_k=1), reference(items[0]))


def test_task_inferred_and_folder_without_processor(layoutlm_model):
    folder = layoutlm_model("roberta")
    assert not (folder / "preprocessor_config.json").exists()
    pipe = lightpipe.pipeline(model=str(folder))
    assert pipe.task == TASK and type(pipe).__name__ == "DocumentQuestionAnsweringPipeline"
    assert pipe.image_processor is None
    ours, reference = pipes(folder)
    assert_outputs_close(pipe(image=None, question=QUESTIONS[0], word_boxes=BOXES),
                         reference(image=None, question=QUESTIONS[0], word_boxes=BOXES))


def test_bfloat16_model(layoutlm_model):
    import torch

    folder = layoutlm_model("roberta")
    pipe = lightpipe.pipeline(TASK, model=str(folder), dtype=torch.bfloat16)
    got = pipe(image=None, question=QUESTIONS[0], word_boxes=BOXES, top_k=2)
    assert len(got) == 2 and all(isinstance(answer["score"], float) for answer in got)


# --- OCR (tesseract) --------------------------------------------------------------------------

def test_ocr_words_and_boxes_equal_pytesseract(document_image):
    import pytesseract  # noqa: F401  (test dependency: the reference's OCR runs through it)
    from PIL import Image
    from transformers.pipelines.document_question_answering import apply_tesseract as reference

    from lightpipe.processing.ocr import apply_tesseract

    image = Image.open(document_image).convert("RGB")
    words, boxes = apply_tesseract(image)
    assert (words, boxes) == reference(image, lang=None, tesseract_config="")
    assert "US-001" in words and "$154.06" in words  # the rendered text was read
    assert all(0 <= v <= 1000 for box in boxes for v in box)
    assert apply_tesseract(image, "eng", "--psm 6") == reference(image, "eng", "--psm 6")
    # A transparent page is read on white, as pytesseract does.
    rgba = render_document(INVOICE_LINES[:2]).convert("RGBA")
    assert apply_tesseract(rgba) == reference(rgba, lang=None, tesseract_config="")


@pytest.mark.parametrize("kind", LAYOUTLM_KINDS)
def test_ocr_pipeline_matches_reference(layoutlm_model, document_image, kind):
    ours, reference = pipes(layoutlm_model(kind))
    path = str(document_image)
    for arguments in (dict(question=QUESTIONS[0]),
                      dict(question=QUESTIONS[2], top_k=3, lang="eng", tesseract_config="--psm 6",
                           timeout=5.0)):
        want = reference(image=path, **arguments)
        assert_outputs_close(ours(image=path, **arguments), want)
    # Every image form gives the same words, so the same answers.
    from PIL import Image

    want = reference(image=path, question=QUESTIONS[1], top_k=2)
    pil = Image.open(path)
    data = base64.b64encode(document_image.read_bytes()).decode()
    for image in (pil, np.asarray(pil.convert("RGB")), data, f"data:image/png;base64,{data}",
                  document_image):
        assert_outputs_close(ours(image=image, question=QUESTIONS[1], top_k=2), want)
    # A list mixing OCR'd and given words, batched.
    items = [{"image": path, "question": QUESTIONS[0]},
             {"image": None, "question": QUESTIONS[1], "word_boxes": BOXES}]
    assert_outputs_close(ours(items, batch_size=2), [reference(item) for item in items])


def test_word_boxes_skip_ocr(layoutlm_model, document_image, monkeypatch):
    """With word_boxes, no OCR runs (tesseract need not even be installed)."""
    ours, reference = pipes(layoutlm_model("roberta"))
    monkeypatch.setenv("PATH", "/nonexistent")
    got = ours(image=str(document_image), question=QUESTIONS[0], word_boxes=BOXES)
    monkeypatch.undo()
    assert_outputs_close(got, reference(image=str(document_image), question=QUESTIONS[0],
                                        word_boxes=BOXES))


def test_tesseract_missing_is_a_clear_error(layoutlm_model, document_image, monkeypatch, tmp_path):
    from lightpipe.processing.ocr import TesseractNotFoundError

    ours, _ = pipes(layoutlm_model("roberta"))
    real_path = os.environ["PATH"]
    monkeypatch.setenv("PATH", str(tmp_path))  # a PATH without tesseract
    monkeypatch.delenv("TESSERACT_CMD", raising=False)
    with pytest.raises(TesseractNotFoundError) as caught:
        ours(image=str(document_image), question=QUESTIONS[0])
    message = str(caught.value)
    assert "apt-get install tesseract-ocr" in message and "brew install tesseract" in message
    assert "word_boxes=" in message
    assert isinstance(caught.value, ValueError)  # as the reference's ValueError
    # TESSERACT_CMD names the program by its full path.
    monkeypatch.setenv("TESSERACT_CMD", str(tmp_path / "tesseract"))
    with pytest.raises(TesseractNotFoundError, match="was not found"):
        ours(image=str(document_image), question=QUESTIONS[0])
    monkeypatch.setenv("TESSERACT_CMD", shutil.which("tesseract", path=real_path))
    assert ours(image=str(document_image), question=QUESTIONS[0])


def test_ocr_bad_language_is_a_clear_error(layoutlm_model, document_image):
    ours, _ = pipes(layoutlm_model("roberta"))
    with pytest.raises(InputError, match="tesseract failed.*'xyz'.*apt-get install tesseract-ocr-xyz"):
        ours(image=str(document_image), question=QUESTIONS[0], lang="xyz")


# --- errors ---------------------------------------------------------------------------------

@pytest.mark.parametrize("call, error, message", [
    (lambda p: p(image=None, question="What?"), InputError, "image or word_boxes"),
    (lambda p: p({"image": None, "question": "What?"}), InputError, "image or word_boxes"),
    (lambda p: p(), InputError, "needs a question"),
    (lambda p: p(image="page.png"), InputError, "without a question"),
    (lambda p: p(image=None, question=3, word_boxes=BOXES), InputTypeError, "question= must be a string"),
    (lambda p: p(image=None, question=["a", "b"], word_boxes=BOXES), InputTypeError, "list of"),
    (lambda p: p(word_boxes=BOXES), InputError, "without question"),
    (lambda p: p({"image": None, "question": None, "word_boxes": BOXES}), InputTypeError,
     "question must be a string"),
    (lambda p: p({"image": None, "question": "  ", "word_boxes": BOXES}), InputError, "empty"),
    (lambda p: p([{"question": "a", "word_boxes": BOXES}, "text"]), InputTypeError, "dict"),
    (lambda p: p(image=None, question="a", word_boxes="words"), InputTypeError, "word_boxes must"),
    (lambda p: p(image=None, question="a", word_boxes=[("w", [1, 2, 3])]), InputError, "4 whole"),
    (lambda p: p(image=None, question="a", word_boxes=[("w", [1, 2, 3.5, 4])]), InputError, "4 whole"),
    (lambda p: p(image=None, question="a", word_boxes=[(1, [1, 2, 3, 4])]), InputTypeError, "string word"),
    (lambda p: p(image=None, question="a", word_boxes=[("w", [1, 2, 3000, 4])]), InputError, "outside"),
    (lambda p: p(image=None, question="a", word_boxes=[("w", [9, 2, 3, 4])]), InputError, "x1 >= x0"),
    (lambda p: p(image=None, question="a", word_boxes=BOXES, top_k=0), InputError, "top_k"),
    (lambda p: p(image=None, question="a", word_boxes=BOXES, max_answer_len=0), InputError,
     "max_answer_len"),
    (lambda p: p(image=None, question="a", word_boxes=BOXES, doc_stride=-1), InputError, "doc_stride"),
    (lambda p: p(image=None, question="a", word_boxes=BOXES, lang=3), InputTypeError, "lang"),
    (lambda p: p(image=12, question="a"), InputTypeError, "image must be"),
    (lambda p: p(image=None, question="What is the number of this long question?",
                 word_boxes=LONG_BOXES, max_seq_len=20, doc_stride=10), InputError, "no room"),
    (lambda p: p(image="no/such/file.png", question="a"), InputError, "No image"),
])
def test_clear_errors(layoutlm_model, call, error, message):
    ours, _ = pipes(layoutlm_model("roberta"))
    with pytest.raises(error, match=message):
        call(ours)


def test_other_families_are_refused(tiny_model):
    folder = tiny_model("bert", "AutoModelForQuestionAnswering")
    with pytest.raises(UnsupportedModelError, match="AutoModelForDocumentQuestionAnswering"):
        lightpipe.pipeline(TASK, model=str(folder))
    model = lightpipe.AutoModelForQuestionAnswering.from_pretrained(folder)
    with pytest.raises(UnsupportedModelError, match="LayoutLM"):
        lightpipe.pipeline(TASK, model=model, tokenizer=str(folder))


def test_works_without_transformers(layoutlm_model, document_image):
    """With transformers (and pytesseract) unimportable, the pipeline gives the reference's
    answers, through word_boxes and through OCR."""
    import json
    import subprocess
    import sys
    import textwrap

    from tests.test_standalone import BLOCKER

    folder = layoutlm_model("roberta")
    ours, reference = pipes(folder)
    code = BLOCKER.replace('"optimum")', '"optimum", "pytesseract")') + textwrap.dedent(f"""
        import json, lightpipe
        pipe = lightpipe.pipeline("document-question-answering", model={str(folder)!r})
        given = pipe(image=None, question={QUESTIONS[0]!r}, word_boxes={BOXES!r}, top_k=2)
        read = pipe(image={str(document_image)!r}, question={QUESTIONS[2]!r})
        kin = [m for m in sys.modules if m.split(".")[0] in BLOCKED]
        print(json.dumps({{"given": given, "read": read, "kin": kin}}))
    """)
    assert '"pytesseract")' in code
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert out["kin"] == []
    assert_outputs_close(out["given"], reference(image=None, question=QUESTIONS[0],
                                                 word_boxes=BOXES, top_k=2))
    assert_outputs_close(out["read"], reference(image=str(document_image), question=QUESTIONS[2]))
