"""Tutorial step 17: AutoTokenizer in the quick tour.

One sentence, then a batch padded to the longest text, truncated to the model's limit and
returned as PyTorch tensors, ready for the model (step 18).

    python examples/step17_tokenizer_batches.py   # nlptown/bert-base-multilingual-uncased-sentiment
    HF_HUB_OFFLINE=1 python examples/step17_tokenizer_batches.py --model ./nlptown
"""

import argparse
import json

from lightpipe import AutoTokenizer

parser = argparse.ArgumentParser(description="Tutorial step 17: tokenizer batches")
parser.add_argument("--model", default="nlptown/bert-base-multilingual-uncased-sentiment")
args = parser.parse_args()

tokenizer = AutoTokenizer.from_pretrained(args.model)
encoding = tokenizer("We are very happy to show you the 🤗 Transformers library.")
print("encoding:", json.dumps(dict(encoding)))

pt_batch = tokenizer(
    ["We are very happy to show you the 🤗 Transformers library.", "We hope you don't hate it."],
    padding=True,
    truncation=True,
    max_length=512,
    return_tensors="pt",
)
print("batch:", json.dumps({name: tensor.tolist() for name, tensor in pt_batch.items()}))
types = {name: f"{type(tensor).__name__} {tensor.dtype} {tuple(tensor.shape)}"
         for name, tensor in pt_batch.items()}
print("batch types:", json.dumps(types))
