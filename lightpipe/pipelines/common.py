"""Helpers the task pipelines share: input checks, parameter checks, encodings to pieces and
classifier scores (in numpy, as the reference computes them)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..errors import InputTypeError

if TYPE_CHECKING:
    import numpy as np
    import torch

CLASS_FUNCTIONS = ("softmax", "sigmoid", "none")


# --- inputs ---
def check_text(item: Any, task: str) -> str:
    """A text input must be a string; anything else is a clear error."""
    if not isinstance(item, str):
        raise_type(item, task, "a string (or a list of strings)")
    return item


def raise_type(item: Any, task: str, expected: str):
    raise InputTypeError(f"The {task} pipeline takes {expected}, but got "
                         f"{type(item).__name__}: {item!r:.80}.")


def is_dataset(inputs: Any) -> bool:
    """A `datasets.Dataset`, a KeyDataset or any other sized, indexable collection that is not
    a text, a list or an array: streamed lazily, as the reference does."""
    if isinstance(inputs, (str, bytes, dict, tuple, list)) or hasattr(inputs, "shape"):
        return False
    return hasattr(inputs, "__len__") and hasattr(inputs, "__getitem__")


def encoding_rows(batch: Any) -> list[dict]:
    """A tokenizer's batch output (lists per key) -> one dict per row: the pieces to batch."""
    keys = list(batch.keys())
    return [{key: batch[key][row] for key in keys} for row in range(len(batch["input_ids"]))]


# --- parameters ---
def given(**values: Any) -> dict:
    """The keyword arguments that are not None: the parameters a call actually set."""
    return {name: value for name, value in values.items() if value is not None}


def refuse_unknown(pipe: Any, kwargs: dict, hint: str = "") -> None:
    """A TypeError naming the arguments a pipeline does not take (``hint``: what it takes)."""
    if kwargs:
        raise TypeError(f"{type(pipe).__name__} got unexpected arguments: {', '.join(kwargs)}{hint}")


def check_top_k(top_k: Any) -> int:
    """``top_k``: a positive integer."""
    if not isinstance(top_k, int) or isinstance(top_k, bool) or top_k < 1:
        raise ValueError(f"top_k must be a positive integer, got {top_k!r}.")
    return top_k


def check_function_to_apply(value: Any) -> str:
    """A classifier's ``function_to_apply`` (a string or the reference's enum) -> its name."""
    name = str(getattr(value, "value", value)).lower()
    if name not in CLASS_FUNCTIONS:
        raise ValueError(f"function_to_apply={value!r} is not one of {', '.join(CLASS_FUNCTIONS)}.")
    return name


def classifier_options(top_k: Any = None, function_to_apply: Any = None) -> dict:
    """A classifier's postprocess parameters that a call set, checked."""
    post: dict[str, Any] = {}
    if top_k is not None:
        post["top_k"] = check_top_k(top_k)
    if function_to_apply is not None:
        post["function_to_apply"] = check_function_to_apply(function_to_apply)
    return post


# --- scores ---
def softmax(logits: "np.ndarray") -> "np.ndarray":
    """Softmax over the last axis, in numpy as the reference computes its scores."""
    import numpy as np

    shifted = np.exp(logits - np.max(logits, axis=-1, keepdims=True))
    return shifted / shifted.sum(axis=-1, keepdims=True)


def class_scores(config: Any, logits: "torch.Tensor", function_to_apply: str | None = None,
                 one_label_sigmoid: bool = True) -> "np.ndarray":
    """One item's classifier logits (num_labels,) -> scores, in numpy as the reference computes
    them. The default function is the reference's: none for regression, sigmoid for multi-label
    models (and for one-label text and image classifiers), softmax otherwise."""
    import numpy as np

    if function_to_apply is None:
        problem = config.get("problem_type")
        if problem == "regression":
            function_to_apply = "none"
        elif problem == "multi_label_classification" or (one_label_sigmoid and config.num_labels == 1):
            function_to_apply = "sigmoid"
        else:
            function_to_apply = "softmax"
    values = logits.float().numpy()
    if function_to_apply == "softmax":
        return softmax(values)
    if function_to_apply == "sigmoid":
        return 1.0 / (1.0 + np.exp(-values))
    return values


def ranked_labels(config: Any, scores: "np.ndarray", top_k: int | None = None) -> list[tuple[str, float]]:
    """One item's class scores -> its ``top_k`` best (label, score) pairs (all when None), best
    first; equal scores keep the label order."""
    import numpy as np

    order = np.argsort(-scores, kind="stable")[:top_k]
    return [(config.id2label[int(index)], scores[index].item()) for index in order]
