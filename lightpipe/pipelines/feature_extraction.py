"""feature-extraction: the model's last hidden states for each token of a text."""

from __future__ import annotations

from typing import Any

from .base import Pipeline
from .common import check_text, encoding_rows


class FeatureExtractionPipeline(Pipeline):
    """Returns the hidden states of a text model: one vector per token.

    Call:
        ``pipe(text, **args)`` with a string, a list of strings, or an iterator / dataset of them.

    Arguments:
        truncation (bool | str, optional): cut texts longer than the model (to the tokenizer's
            ``model_max_length``).
        tokenize_kwargs (dict, optional): more tokenizer arguments (``max_length``,
            ``add_special_tokens``, ...); other unknown keywords go there too. ``padding`` is
            ignored: batches are padded by the pipeline.
        return_tensors (bool, default False): return torch tensors instead of nested lists.

    Returns:
        For one text, nested lists of shape ``[1][tokens][hidden]`` (a ``(1, tokens, hidden)``
        tensor with ``return_tensors=True``); for a list, a list of those. Each text comes back
        at its own length: padding is cut off, so its features do not depend on what it was
        batched with.
    """

    task = "feature-extraction"
    sequence_outputs = ("last_hidden_state",)

    def _sanitize_parameters(self, truncation: Any = None, tokenize_kwargs: dict | None = None,
                             return_tensors: Any = None, **kwargs: Any):
        tokenize_kwargs = dict(tokenize_kwargs or {})
        tokenize_kwargs.update(kwargs)
        if truncation is not None:
            if "truncation" in tokenize_kwargs:
                raise ValueError("truncation is given twice (as an argument and in tokenize_kwargs).")
            tokenize_kwargs["truncation"] = truncation
        tokenize_kwargs.pop("padding", None)  # batches are padded by the pipeline
        post = {"return_tensors": return_tensors} if return_tensors is not None else {}
        return tokenize_kwargs, {}, post

    def preprocess_many(self, items: list, **tokenize_kwargs: Any) -> list:
        texts = [check_text(item, self.task) for item in items]
        return encoding_rows(self.tokenizer(texts, **tokenize_kwargs))

    def postprocess(self, model_outputs: dict, return_tensors: bool = False) -> Any:
        hidden = next(iter(model_outputs.values()))  # the model's first output, (1, tokens, hidden)
        return hidden if return_tensors else hidden.tolist()
