"""Tutorial step 18: AutoModel in the quick tour.

Tokenize a batch, run AutoModelForSequenceClassification, turn the logits into
probabilities with a softmax, then save the model and tokenizer with save_pretrained and load
them back with from_pretrained (the reloaded model gives the same logits).

    python examples/step18_automodel_quicktour.py    # nlptown/bert-base-multilingual-...-sentiment
    HF_HUB_OFFLINE=1 python examples/step18_automodel_quicktour.py --model ./nlptown
"""

import argparse
import json
import tempfile

import torch
from torch import nn

from lightpipe import AutoModelForSequenceClassification, AutoTokenizer

parser = argparse.ArgumentParser(description="Tutorial step 18: AutoModel")
parser.add_argument("--model", default="nlptown/bert-base-multilingual-uncased-sentiment")
parser.add_argument("--save-dir", help="where to save_pretrained (default: a temporary folder)")
args = parser.parse_args()

tokenizer = AutoTokenizer.from_pretrained(args.model)
pt_model = AutoModelForSequenceClassification.from_pretrained(args.model)
pt_batch = tokenizer(
    ["We are very happy to show you the 🤗 Transformers library.", "We hope you don't hate it."],
    padding=True, truncation=True, max_length=512, return_tensors="pt",
)
with torch.no_grad():
    pt_outputs = pt_model(**pt_batch)
pt_predictions = nn.functional.softmax(pt_outputs.logits, dim=-1)
print("logits:", json.dumps(pt_outputs.logits.tolist()))
print("predictions:", json.dumps(pt_predictions.tolist()))
print("labels:", json.dumps([pt_model.config.id2label[int(i)] for i in pt_predictions.argmax(-1)]))

with tempfile.TemporaryDirectory() as temporary:
    pt_save_directory = args.save_dir or temporary
    tokenizer.save_pretrained(pt_save_directory)
    pt_model.save_pretrained(pt_save_directory)
    reloaded_tokenizer = AutoTokenizer.from_pretrained(pt_save_directory)
    reloaded = AutoModelForSequenceClassification.from_pretrained(pt_save_directory)
    reloaded_batch = reloaded_tokenizer(
        ["We are very happy to show you the 🤗 Transformers library.", "We hope you don't hate it."],
        padding=True, truncation=True, max_length=512, return_tensors="pt",
    )
    with torch.no_grad():
        reloaded_logits = reloaded(**reloaded_batch).logits
    print("saved to:", pt_save_directory)
    print("round trip max abs difference:",
          json.dumps((reloaded_logits - pt_outputs.logits).abs().max().item()))
