"""Tutorial step 06: text ("Run inference with pipelines"): zero-shot classification.

The learner classified a support message into labels chosen at call time with an NLI model
(facebook/bart-large-mnli): each label becomes a hypothesis ("This example is urgent.") and the
model's entailment score ranks the labels. The tutorial wrote ``pipeline(model=...)`` and let
the Hub name the task; lightpipe reads the task from the checkpoint alone, where an NLI model
looks like a text classifier, so the task is named here.

    python examples/step06_zero_shot.py                     # downloads facebook/bart-large-mnli
    HF_HUB_OFFLINE=1 python examples/step06_zero_shot.py --model ./my-nli-model
"""

import argparse
import json

from lightpipe import pipeline

parser = argparse.ArgumentParser(description="Tutorial step 06: zero-shot classification")
parser.add_argument("--model", default="facebook/bart-large-mnli",
                    help="an NLI model (a sequence classifier with an 'entailment' label)")
args = parser.parse_args()

classifier = pipeline("zero-shot-classification", model=args.model)

# 1. The tutorial's call: one text, five candidate labels; the scores sum to 1.
text = "I have a problem with my iphone that needs to be resolved asap!!"
result = classifier(text, candidate_labels=["urgent", "not urgent", "phone", "tablet", "computer"])
print("zero-shot:", json.dumps(result))
for label, score in zip(result["labels"], result["scores"]):
    print(f"  {score:.3f}  {label}")

# 2. Labels that can all be true: each is scored on its own (entailment vs contradiction).
print("multi-label:", json.dumps(classifier(text, candidate_labels="urgent, phone, travel",
                                            multi_label=True)))

# 3. Several texts and a template of one's own; all (text, label) pairs share the batches.
texts = ["The match was called off because of the rain.",
         "Parliament passed the budget after a long debate."]
print("batch:", json.dumps(classifier(texts, candidate_labels=["sports", "politics", "weather"],
                                      hypothesis_template="This text is about {}.", batch_size=4)))
