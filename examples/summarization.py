"""Summarize and translate with encoder-decoder models (BART, T5, Marian).

``pipeline("summarization")`` runs the model's encoder once over the article and beam-searches
a summary with its decoder; ``min_length`` / ``max_length`` count the summary's tokens. The
translation pipeline works the same way (T5 reads the "translate English to German: " prefix
from its config; Marian / OPUS-MT models translate one language pair each).

    python examples/summarization.py                            # downloads distilbart-cnn-12-6
    HF_HUB_OFFLINE=1 python examples/summarization.py --model ./my-bart --translator ./opus-mt-en-de
"""

import argparse
import json

from lightpipe import pipeline

parser = argparse.ArgumentParser(description="Summarization and translation")
parser.add_argument("--model", default="sshleifer/distilbart-cnn-12-6", help="a summarizer")
parser.add_argument("--translator", default=None,
                    help="an English-to-German model (e.g. Helsinki-NLP/opus-mt-en-de, or t5-small)")
args = parser.parse_args()

ARTICLE = ("The tower is 324 metres tall, about the same height as an 81-storey building, and the "
           "tallest structure in Paris. Its base is square, measuring 125 metres on each side. "
           "During its construction, the Eiffel Tower surpassed the Washington Monument to become "
           "the tallest man-made structure in the world, a title it held for 41 years until the "
           "Chrysler Building in New York City was finished in 1930.")

# truncation=True: articles longer than the model reads are cut to its maximum length.
summarizer = pipeline("summarization", model=args.model, truncation=True)

# 1. One article; the model's own generation settings (beams, lengths) apply.
print("summary:", json.dumps(summarizer(ARTICLE)))

# 2. Length limits of one's own, and several articles batched together (one record each).
print("short:", json.dumps(summarizer(ARTICLE, min_length=5, max_length=20)))
print("batch:", json.dumps(summarizer([ARTICLE, ARTICLE[:150]], max_length=30, batch_size=2)))

# 3. Translation: the task name carries the language pair.
if args.translator:
    translator = pipeline("translation_en_to_de", model=args.translator)
    print("translation:", json.dumps(translator(["How old are you?", "The tower is tall."])))
