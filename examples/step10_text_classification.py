"""Tutorial step 10: text classification with pipeline().

The learner ran the task's default model, an NLI model on a premise/hypothesis pair
(FacebookAI/roberta-large-mnli, three labels), a reranker that gives one relevance score
per (query, passage) pair (BAAI/bge-reranker-v2-m3, XLM-RoBERTa) and a domain model
(financial-news sentiment), whose labels surprised them.

    python examples/step10_text_classification.py          # downloads the tutorial's models
    HF_HUB_OFFLINE=1 python examples/step10_text_classification.py --model ./sst2 \
        --nli-model ./mnli --reranker-model ./reranker --finance-model ./finance
"""

import argparse
import json

from lightpipe import pipeline

parser = argparse.ArgumentParser(description="Tutorial step 10: text classification")
parser.add_argument("--model", help="sentiment model (default: the task's default model)")
parser.add_argument("--nli-model", default="FacebookAI/roberta-large-mnli")
parser.add_argument("--reranker-model", default="BAAI/bge-reranker-v2-m3")
parser.add_argument("--finance-model",
                    default="mrm8488/distilroberta-finetuned-financial-news-sentiment-analysis")
args = parser.parse_args()

# 1. No model: the task's default (a warning names it), or the one given.
classifier = pipeline("text-classification", model=args.model)
print("sentiment:", json.dumps(classifier(["I love this movie!", "This film was terrible."])))

# 2. Natural language inference: does the premise entail the hypothesis? All three labels.
nli = pipeline("text-classification", model=args.nli_model)
pair = {"text": "A soccer game with multiple males playing.",
        "text_pair": "Some men are playing a sport."}
print("nli:", json.dumps(nli(pair, top_k=None)))

# 3. A reranker: one logit per (query, passage), turned into a relevance score by a sigmoid.
reranker = pipeline("text-classification", model=args.reranker_model)
query = "What is the capital of France?"
passages = ["Paris is the capital of France.", "The quick brown fox jumps over the lazy dog.",
            "France is a country in Europe."]
scores = reranker([{"text": query, "text_pair": passage} for passage in passages],
                  function_to_apply="sigmoid")
print("rerank:", json.dumps(scores))
for passage, score in sorted(zip(passages, scores), key=lambda item: -item[1]["score"]):
    print(f"  {score['score']:.4f}  {passage}")

# 4. A domain model: its labels are its own (negative / neutral / positive for finance news).
finance = pipeline("sentiment-analysis", model=args.finance_model)
news = ["Operating profit rose to EUR 13.1 mn from EUR 8.7 mn a year earlier.",
        "The company's shares fell 5% after the results were published."]
print("finance:", json.dumps(finance(news)))
