"""Tutorial step 12: AutoTokenizer ("Write portable code with AutoClass").

Load a tokenizer by name, encode a sentence into input_ids / token_type_ids /
attention_mask, look at the tokens, and decode the ids back to text.

    python examples/step12_autotokenizer.py                 # google-bert/bert-base-uncased
    HF_HUB_OFFLINE=1 python examples/step12_autotokenizer.py --model ./bert-base-uncased
"""

import argparse
import json

from lightpipe import AutoTokenizer

parser = argparse.ArgumentParser(description="Tutorial step 12: AutoTokenizer")
parser.add_argument("--model", default="google-bert/bert-base-uncased")
args = parser.parse_args()

tokenizer = AutoTokenizer.from_pretrained(args.model)
sequence = "In a hole in the ground there lived a hobbit."
encoding = tokenizer(sequence)
print("encoding:", json.dumps(dict(encoding)))
print("tokens:", json.dumps(tokenizer.convert_ids_to_tokens(encoding["input_ids"])))
print("decoded:", json.dumps(tokenizer.decode(encoding["input_ids"])))
print("decoded without special tokens:",
      json.dumps(tokenizer.decode(encoding["input_ids"], skip_special_tokens=True)))
