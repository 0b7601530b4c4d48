"""The document-QA example (tutorial step 07), run as a user runs it (a subprocess,
HF_HUB_OFFLINE=1) on a tiny local LayoutLM checkpoint and a rendered invoice; what it prints is
checked against transformers on the same folder and image."""

from __future__ import annotations

import transformers

from tests.conftest import assert_outputs_close
from tests.fixtures.document import *  # noqa: F401,F403  (until tests/conftest.py imports it)

from .test_examples import printed, run_example


def test_step07_document_qa(layoutlm_model, document_image):
    import pytesseract  # noqa: F401  (test dependency: the reference's OCR runs through it)
    from PIL import Image
    from transformers.pipelines.document_question_answering import apply_tesseract

    folder = str(layoutlm_model("roberta"))
    image = str(document_image)
    stdout = run_example("step07_document_qa.py", "--model", folder, "--image", image)
    reference = transformers.pipeline("document-question-answering", model=folder)
    assert_outputs_close(printed(stdout, "answer"),
                         reference(image=image, question="What is the invoice number?"))
    words, boxes = apply_tesseract(Image.open(image).convert("RGB"), None, "")
    assert f"OCR: {len(words)} words" in stdout
    questions = ["What is the invoice number?", "What is the total?", "What is the due date?"]
    want = [reference(image=None, question=q, word_boxes=list(zip(words, boxes)), top_k=2)
            for q in questions]
    assert_outputs_close(printed(stdout, "batch"), want)
