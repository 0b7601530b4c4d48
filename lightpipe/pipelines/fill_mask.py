"""fill-mask: the most likely tokens for each mask token of a text, from a masked LM head."""

from __future__ import annotations

import logging
from typing import Any

import torch

from ..errors import InputError
from .base import Pipeline
from .common import check_text, check_top_k

logger = logging.getLogger("lightpipe")


class FillMaskPipeline(Pipeline):
    """Fills the mask token of a text with the words a masked language model finds most likely.

    Call:
        ``pipe(text, **args)`` where ``text`` holds the tokenizer's mask token (``[MASK]`` for
        BERT, ``<mask>`` for RoBERTa): a string, a list of strings, or an iterator of them.

    Arguments:
        top_k (int, default 5): how many fillers to return per mask, best first.
        targets (str | list[str], optional): limit the choice to these words; a word the
            vocabulary lacks is replaced by its first sub-token, with a warning.
        tokenizer_kwargs (dict, optional): passed to the tokenizer (e.g. ``{"truncation": True}``).

    Returns:
        For a text with one mask, a list of ``top_k`` dicts ``{"score": float, "token": int,
        "token_str": str, "sequence": str}`` (the text with the mask filled), best first. A text
        with several masks gives one such list per mask (each mask scored on its own, as the
        reference does). A list of texts gives a list of results; a list of one text gives the
        same result as the text alone, as in the reference.
    """

    task = "fill-mask"

    def _sanitize_parameters(self, top_k: Any = None, targets: Any = None,
                             tokenizer_kwargs: dict | None = None):
        if self.tokenizer.mask_token_id is None:
            raise InputError("The fill-mask pipeline needs a tokenizer with a mask token "
                             "(tokenizer.mask_token is None); use a masked language model's "
                             "tokenizer, or set tokenizer.mask_token.")
        pre: dict[str, Any] = {}
        if tokenizer_kwargs is not None:
            if not isinstance(tokenizer_kwargs, dict):
                raise TypeError(f"tokenizer_kwargs must be a dict, got {type(tokenizer_kwargs).__name__}.")
            pre = dict(tokenizer_kwargs)
            pre.pop("padding", None)  # batches are padded by the pipeline
            pre.pop("return_tensors", None)  # pieces stay lists until batched
        post: dict[str, Any] = {}
        if top_k is not None:
            post["top_k"] = check_top_k(top_k)
        if targets is not None:
            post["target_ids"] = self._target_ids(targets)
        return pre, {}, post

    def _target_ids(self, targets: str | list[str]) -> list[int]:
        """Each target word -> a vocabulary id (its first sub-token when it is not one token)."""
        if isinstance(targets, str):
            targets = [targets]
        vocab = self.tokenizer.get_vocab()
        ids: list[int] = []
        for target in targets:
            token_id = vocab.get(target)
            if token_id is None:
                pieces = self.tokenizer(target, add_special_tokens=False, return_attention_mask=False,
                                        return_token_type_ids=False)["input_ids"]
                if not pieces:
                    logger.warning("The specified target token `%s` does not exist in the model "
                                   "vocabulary. We cannot replace it with anything meaningful, "
                                   "ignoring it", target)
                    continue
                token_id = pieces[0]
                logger.warning("The specified target token `%s` does not exist in the model "
                               "vocabulary. Replacing with `%s`.", target,
                               self.tokenizer.convert_ids_to_tokens(token_id))
            if token_id not in ids:
                ids.append(token_id)
        if not ids:
            raise InputError("targets is empty: give at least one word to score (or leave "
                             "targets out to rank the whole vocabulary).")
        return ids

    def shape_results(self, inputs: Any, single: bool, params: dict, results: list) -> Any:
        # The reference answers a list of one text as it answers the text alone.
        if isinstance(inputs, list) and len(inputs) == 1:
            return results[0]
        return super().shape_results(inputs, single, params, results)

    def preprocess_many(self, items: list, **tokenizer_kwargs: Any) -> list:
        texts = [check_text(item, self.task) for item in items]
        batch = self.tokenizer(texts, **tokenizer_kwargs)
        keys = list(batch.keys())
        mask_id = self.tokenizer.mask_token_id
        pieces = []
        for row, text in enumerate(texts):
            piece = {key: batch[key][row] for key in keys}
            if mask_id not in piece["input_ids"]:
                raise InputError(f"No mask_token ({self.tokenizer.mask_token}) found on the input "
                                 f"{text!r:.80}: the fill-mask pipeline fills each "
                                 f"{self.tokenizer.mask_token} of a text (one at least), e.g. "
                                 f"'Paris is the {self.tokenizer.mask_token} of France.'")
            piece["tokens"] = list(piece["input_ids"])  # kept for postprocess (not a model input)
            pieces.append(piece)
        return pieces

    def _forward(self, model_inputs: dict, **params: Any) -> dict:
        logits = self.model(**model_inputs)["logits"]  # (batch, seq, vocab)
        is_mask = model_inputs["input_ids"] == self.tokenizer.mask_token_id  # (batch, seq)
        most = int(is_mask.sum(dim=1).max())
        # Each row's mask positions first, in text order (a stable sort); rows with fewer masks
        # fill up with other positions, which postprocess ignores. Only these rows go to the CPU.
        positions = torch.argsort((~is_mask).to(torch.int8), dim=1, stable=True)[:, :most]
        picked = logits.gather(1, positions.unsqueeze(-1).expand(-1, -1, logits.shape[-1]))
        return {"probabilities": picked.float().softmax(dim=-1)}  # (batch, masks, vocab)

    def postprocess(self, model_outputs: dict, top_k: int = 5,
                    target_ids: list[int] | None = None) -> Any:
        tokenizer = self.tokenizer
        tokens = model_outputs["tokens"]
        positions = [i for i, token in enumerate(tokens) if token == tokenizer.mask_token_id]
        probabilities = model_outputs["probabilities"][0, :len(positions)]  # (masks, vocab)
        if target_ids is not None:
            probabilities = probabilities[:, target_ids]  # softmax over the vocabulary, then pick
            top_k = min(top_k, len(target_ids))
        if top_k > probabilities.shape[-1]:
            raise InputError(f"top_k={top_k} is more than the {probabilities.shape[-1]} tokens "
                             "the model can choose from.")
        scores, indices = probabilities.topk(top_k)
        single = len(positions) == 1
        pad_id = tokenizer.pad_token_id
        results = []
        for position, row_scores, row_indices in zip(positions, scores.tolist(), indices.tolist()):
            row = []
            for score, index in zip(row_scores, row_indices):
                token = target_ids[index] if target_ids is not None else index
                filled = list(tokens)
                filled[position] = token
                filled = [t for t in filled if t != pad_id]
                # With several masks the other masks stay visible, so special tokens are kept.
                row.append({"score": score, "token": token, "token_str": tokenizer.decode([token]),
                            "sequence": tokenizer.decode(filled, skip_special_tokens=single)})
            results.append(row)
        return results[0] if single else results
