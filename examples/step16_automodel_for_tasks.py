"""Tutorial step 16: AutoModelFor* ("Write portable code with AutoClass").

The same checkpoint loaded with two task heads: AutoModelForSequenceClassification (one
row of logits per text) and AutoModelForTokenClassification (one row per token). Heads the
checkpoint lacks start random, as in transformers: fine-tune before trusting them.

    python examples/step16_automodel_for_tasks.py           # distilbert/distilbert-base-uncased
    HF_HUB_OFFLINE=1 python examples/step16_automodel_for_tasks.py --model ./distilbert
"""

import argparse
import json

import torch

from lightpipe import (AutoModelForSequenceClassification, AutoModelForTokenClassification,
                       AutoTokenizer)

parser = argparse.ArgumentParser(description="Tutorial step 16: AutoModelFor* classes")
parser.add_argument("--model", default="distilbert/distilbert-base-uncased")
args = parser.parse_args()

tokenizer = AutoTokenizer.from_pretrained(args.model)
inputs = tokenizer("Hugging Face is based in New York City.", return_tensors="pt")
print("tokens:", json.dumps(tokenizer.convert_ids_to_tokens(inputs["input_ids"][0])))

model = AutoModelForSequenceClassification.from_pretrained(args.model)
with torch.no_grad():
    logits = model(**inputs).logits  # (batch, num_labels)
print("sequence classification logits:", json.dumps(logits.tolist()))
print("sequence label:", model.config.id2label[int(logits.argmax(-1))])

model = AutoModelForTokenClassification.from_pretrained(args.model)
with torch.no_grad():
    logits = model(**inputs).logits  # (batch, tokens, num_labels)
print("token classification logits shape:", json.dumps(list(logits.shape)))
print("token labels:", json.dumps([model.config.id2label[int(i)] for i in logits.argmax(-1)[0]]))
