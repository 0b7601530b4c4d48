"""zero-shot-classification: rank labels chosen at call time with a model trained on NLI.

Each (sequence, label) becomes a premise/hypothesis pair ("This example is {label}."); the
model's entailment logit says how well the label fits. All pairs of all sequences go through
the model together, in batches of ``batch_size`` pairs.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from ..errors import InputError
from .base import Pipeline
from .common import check_text, encoding_rows, softmax

logger = logging.getLogger("lightpipe")

DEFAULT_TEMPLATE = "This example is {}."


def parse_labels(labels: Any) -> list:
    """Candidate labels as a list: ``"a, b"`` -> ``["a", "b"]`` (empty names dropped)."""
    if isinstance(labels, str):
        return [label.strip() for label in labels.split(",") if label.strip()]
    if isinstance(labels, (list, tuple)):
        return list(labels)
    raise InputError(f"candidate_labels must be a list of labels or a comma-separated string, "
                     f"got {type(labels).__name__}.")


class ZeroShotClassificationPipeline(Pipeline):
    """Classifies texts into labels chosen at call time, with an NLI model (entailment scores).

    Call:
        ``pipe(text, candidate_labels=[...], **args)``, or ``pipe(text, labels)`` with the labels
        second; ``text`` is a string, a list of strings or an iterator of them.

    Arguments:
        candidate_labels (list[str] | str): the labels, as a list or a comma-separated string
            (required).
        hypothesis_template (str, default "This example is {}."): the hypothesis each label is
            put into; it must contain ``{}`` where the label goes.
        multi_label (bool, default False): False softmaxes the entailment logits across the
            labels, so the scores sum to 1; True (and always for a single label) scores each
            label on its own, by a softmax of its entailment against its contradiction logit.

    Returns:
        For one text, ``{"sequence": str, "labels": list[str], "scores": list[float]}``, the
        labels sorted by score, best first; a list of texts gives a list of those dicts.
    """

    task = "zero-shot-classification"
    chunked = True  # one piece per (sequence, label) pair

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        if self.entailment_id == -1:
            logger.warning("Failed to determine 'entailment' label id from the label2id mapping in "
                           "the model config. Setting to -1. Define a descriptive label2id mapping "
                           "in the model config to ensure correct outputs.")

    @property
    def entailment_id(self) -> int:
        """The id of the first label named "entail..." (any case), else -1 (the last logit)."""
        for label, index in self.model.config.label2id.items():
            if label.lower().startswith("entail"):
                return index
        return -1

    @property
    def contradiction_id(self) -> int:
        # The reference takes logit 0, or the last one when entailment is 0 (the MNLI layouts
        # contradiction/neutral/entailment and entailment/neutral/contradiction).
        return -1 if self.entailment_id == 0 else 0

    def _sanitize_parameters(self, candidate_labels: Any = None, hypothesis_template: Any = None,
                             multi_label: Any = None):
        pre: dict[str, Any] = {}
        if candidate_labels is not None:
            pre["candidate_labels"] = parse_labels(candidate_labels)
        if hypothesis_template is not None:
            pre["hypothesis_template"] = hypothesis_template
        post = {"multi_label": multi_label} if multi_label is not None else {}
        return pre, {}, post

    def gather_inputs(self, sequences: Any = None, *args: Any, **params: Any) -> tuple[Any, dict]:
        """``pipe(sequences, candidate_labels)``: the labels may come second."""
        if len(args) == 1 and "candidate_labels" not in params:
            params["candidate_labels"] = args[0]
        elif args:
            raise ValueError(f"Unable to understand extra arguments {args}: pass the labels once, "
                             "as candidate_labels=[...] or as the second argument.")
        return sequences, params

    def preprocess_many(self, items: list, candidate_labels: list | None = None,
                        hypothesis_template: str = DEFAULT_TEMPLATE) -> list:
        if not candidate_labels:
            raise InputError("zero-shot-classification needs candidate labels: pass "
                             "candidate_labels=['label one', 'label two'] (or 'one, two').")
        _check_template(hypothesis_template, candidate_labels[0])
        hypotheses = [hypothesis_template.format(label) for label in candidate_labels]
        sequences = [check_text(item, self.task) for item in items]
        for sequence in sequences:
            if not sequence:
                raise InputError("zero-shot-classification got an empty sequence: give each "
                                 "sequence some text to classify.")
        premises = [sequence for sequence in sequences for _ in hypotheses]
        encoded = self._tokenize_pairs(premises, hypotheses * len(sequences))
        n = len(candidate_labels)
        return [[{**encoded[i * n + j], "candidate_label": label, "sequence": sequence}
                 for j, label in enumerate(candidate_labels)]
                for i, sequence in enumerate(sequences)]

    def _tokenize_pairs(self, premises: list[str], hypotheses: list[str]) -> list[dict]:
        """Tokenize every pair at once, truncating only the premise (the hypothesis holds the
        label). A pair whose hypothesis alone is too long is kept whole, as the reference does."""
        try:
            return encoding_rows(self.tokenizer(premises, text_pair=hypotheses, truncation="only_first"))
        except InputError as err:
            if "too short" not in str(err):
                raise
        rows = []
        for premise, hypothesis in zip(premises, hypotheses):
            try:
                rows += encoding_rows(self.tokenizer([premise], text_pair=[hypothesis],
                                             truncation="only_first"))
            except InputError as err:
                if "too short" not in str(err):
                    raise
                rows += encoding_rows(self.tokenizer([premise], text_pair=[hypothesis], truncation=False))
        return rows

    def postprocess(self, model_outputs: list[dict], multi_label: bool = False) -> dict:
        labels = [output["candidate_label"] for output in model_outputs]
        logits = np.concatenate([output["logits"].float().numpy() for output in model_outputs])
        if multi_label or len(labels) == 1:
            # Each label on its own: entailment against contradiction.
            pair = logits[:, [self.contradiction_id, self.entailment_id]]
            scores = softmax(pair)[:, 1]
        else:
            # One distribution over the labels, from their entailment logits.
            scores = softmax(logits[:, self.entailment_id])
        order = list(reversed(scores.argsort()))
        return {"sequence": model_outputs[0]["sequence"], "labels": [labels[i] for i in order],
                "scores": scores[order].tolist()}


def _check_template(template: Any, label: Any) -> None:
    if not isinstance(template, str):
        raise InputError(f"hypothesis_template must be a string with {{}} where the label goes, "
                         f"got {type(template).__name__}.")
    try:
        hypothesis = template.format(label)
    except (IndexError, KeyError, ValueError) as err:
        raise InputError(f"The hypothesis_template {template!r} could not be formatted with a "
                         f"label ({type(err).__name__}: {err}). Use {{}} where the label goes, e.g. "
                         f"{DEFAULT_TEMPLATE!r}.") from err
    if hypothesis == template:
        raise InputError(f"The hypothesis_template {template!r} has no {{}} for the label, so every "
                         f"label would give the same hypothesis. Use e.g. {DEFAULT_TEMPLATE!r}.")

