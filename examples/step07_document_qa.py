"""Tutorial step 07: multimodal with pipeline("document-question-answering").

The learner asked "What is the invoice number?" about an invoice image with
impira/layoutlm-document-qa (LayoutLM). The words of the image and their boxes come from the
tesseract OCR program (apt-get install tesseract-ocr / brew install tesseract); words already
read can be passed as word_boxes= instead, and then no OCR runs.

    python examples/step07_document_qa.py       # downloads the model and the invoice image
    HF_HUB_OFFLINE=1 python examples/step07_document_qa.py --model ./layoutlm-document-qa \
        --image ./invoice.png
"""

import argparse
import json

from lightpipe import pipeline
from lightpipe.processing.image import load_image
from lightpipe.processing.ocr import apply_tesseract

URL = ("https://huggingface.co/spaces/impira/docquery/resolve/"
       "2359223c1837a7587402bda0f2643382a6eefeab/invoice.png")

parser = argparse.ArgumentParser(description="Tutorial step 07: document question answering")
parser.add_argument("--model", default="impira/layoutlm-document-qa",
                    help="a LayoutLM document-QA model (a Hub id or a folder)")
parser.add_argument("--image", default=URL, help="a document image: file, URL or base64 data")
args = parser.parse_args()

document_qa = pipeline("document-question-answering", model=args.model)

# 1. The tutorial's call: OCR reads the image, the model picks the words that answer.
question = "What is the invoice number?"
answer = document_qa(image=args.image, question=question)
print("answer:", json.dumps(answer))
print("\n".join(f"  {a['score']:.4f}  {a['answer']!r} (words {a['start']}-{a['end']})"
                for a in answer))

# 2. Read the words once, then ask several questions without running OCR again.
words, boxes = apply_tesseract(load_image(args.image))
print(f"OCR: {len(words)} words, first: {' '.join(words[:8])}")
word_boxes = list(zip(words, boxes))
questions = ["What is the invoice number?", "What is the total?", "What is the due date?"]
answers = document_qa([{"image": None, "question": q, "word_boxes": word_boxes} for q in questions],
                      top_k=2, batch_size=3)
print("batch:", json.dumps(answers))
for q, found in zip(questions, answers):
    print(f"  {q} -> {found[0]['answer']!r}" if found else f"  {q} -> (no answer)")
