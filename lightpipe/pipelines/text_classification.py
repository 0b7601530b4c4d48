"""text-classification (alias sentiment-analysis): labels and scores for texts or text pairs."""

from __future__ import annotations

from typing import Any

from .base import Pipeline
from .common import check_function_to_apply, class_scores, encoding_rows, raise_type, ranked_labels


class TextClassificationPipeline(Pipeline):
    """Classifies texts (or text pairs) with a sequence classification model (sentiment, NLI, ...).

    Call:
        ``pipe(text, **args)`` where ``text`` is a string, a ``{"text": ..., "text_pair": ...}``
        dict, a ``[text, pair]`` list inside a list (``[[text, pair]]``), a list of any of these,
        or an iterator / dataset of them (results stream out).

    Arguments:
        top_k (int | None, default 1): how many labels to return per text, best first; None
            returns every label. Giving it (even as 1) switches to the list-per-text output.
        function_to_apply (str, default chosen from the config): "softmax", "sigmoid" or "none";
            by default sigmoid for one label or multi-label models, none for regression, softmax
            otherwise, as the reference chooses.
        return_all_scores (bool, optional): the reference's old spelling; True means
            ``top_k=None``, False means ``top_k=1``.
        text_pair (str, optional): a second text paired with a string input.
        **tokenizer_kwargs: passed to the tokenizer (``truncation``, ``max_length``, ...);
            ``padding`` is ignored (batches are padded by the pipeline).

    Returns:
        Without ``top_k``: a string gives ``[{"label": str, "score": float}]`` (the best label,
        in a list); a list of texts gives one such dict per text. With ``top_k``: a list of
        ``{"label", "score"}`` dicts per text, best first (a list of those lists for a list of
        texts).
    """

    task = "text-classification"

    def _sanitize_parameters(self, function_to_apply: Any = None, top_k: Any = "",
                             return_all_scores: Any = None, **tokenizer_kwargs: Any):
        post: dict[str, Any] = {}
        if return_all_scores is not None:  # the reference's removed spelling of top_k=None
            top_k = None if return_all_scores else 1
        if isinstance(top_k, int) or top_k is None:
            if isinstance(top_k, int) and top_k < 1:
                raise ValueError(f"top_k must be a positive integer or None, got {top_k}.")
            post["top_k"] = top_k
            post["_legacy"] = False
        if function_to_apply is not None:
            post["function_to_apply"] = check_function_to_apply(function_to_apply)
        tokenizer_kwargs.pop("padding", None)  # batches are padded by the pipeline
        return tokenizer_kwargs, {}, post

    def shape_results(self, inputs: Any, single: bool, params: dict, results: list) -> Any:
        # The reference wraps the one result of a lone string in a list unless top_k was given.
        if single and isinstance(inputs, str) and "top_k" not in params:
            return results
        return super().shape_results(inputs, single, params, results)

    def preprocess_many(self, items: list, text_pair: str | None = None, **tokenizer_kwargs: Any) -> list:
        singles, pairs = [], []  # (position, text) and (position, text, pair)
        for position, item in enumerate(items):
            if isinstance(item, str):
                if not text_pair:
                    singles.append((position, item))
                else:
                    pairs.append((position, item, text_pair))
            elif isinstance(item, dict):
                if "text" not in item or not set(item) <= {"text", "text_pair"}:
                    raise ValueError(f"A text-pair input is a dict with keys 'text' and "
                                     f"'text_pair'; got keys {sorted(item)}.")
                text, pair = item["text"], item.get("text_pair")
                for value in (text, pair):
                    if value is not None and not isinstance(value, str):
                        raise_type(value, self.task, "strings in 'text' and 'text_pair'")
                if not pair:
                    singles.append((position, text))
                else:
                    pairs.append((position, text, pair))
            elif (isinstance(item, list) and len(item) == 1 and isinstance(item[0], list)
                  and len(item[0]) == 2):
                if item[0][1]:
                    pairs.append((position, item[0][0], item[0][1]))
                else:
                    singles.append((position, item[0][0]))
            elif isinstance(item, list):
                raise ValueError(
                    "The pipeline received invalid inputs: to send text pairs, send a dict "
                    '{"text": "My text", "text_pair": "My pair"} (or a list of them).')
            else:
                raise_type(item, self.task, "a string, a {'text', 'text_pair'} dict, or a list of them")
        # The reference tokenizes one item at a time, where an empty pair ("") means no pair;
        # here pairs go through the tokenizer together (batch mode), so such items join the singles.
        encoded: list[dict | None] = [None] * len(items)
        if singles:
            rows = encoding_rows(self.tokenizer([t for _, t in singles], **tokenizer_kwargs))
            for row, (position, _) in zip(rows, singles):
                encoded[position] = row
        if pairs:
            rows = encoding_rows(self.tokenizer([t for _, t, _ in pairs],
                                                text_pair=[p for _, _, p in pairs], **tokenizer_kwargs))
            for row, (position, _, _) in zip(rows, pairs):
                encoded[position] = row
        return encoded

    def postprocess(self, model_outputs: dict, function_to_apply: str | None = None,
                    top_k: int | None = 1, _legacy: bool = True) -> Any:
        config = self.model.config
        scores = class_scores(config, model_outputs["logits"][0], function_to_apply)
        if _legacy:
            if top_k == 1:
                return {"label": config.id2label[int(scores.argmax())], "score": scores.max().item()}
            return [{"label": config.id2label[i], "score": score.item()} for i, score in enumerate(scores)]
        return [{"label": label, "score": score} for label, score in ranked_labels(config, scores, top_k)]
