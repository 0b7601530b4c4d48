"""token-classification (alias ner): a label per token, or entities grouped from them.

Matches ``transformers.TokenClassificationPipeline`` (v5): the same pre-entities (special
tokens skipped, sub-words found from the tokenizer's continuing-subword prefix or from the
spaces around a token), the same word aggregation (first / average / max), the same B-/I-
grouping, and the same merge of entities seen by overlapping ``stride`` windows. Scores are
computed in float32 as the reference computes them, and returned as Python floats (the
reference returns numpy float32 scalars, which JSON and most code do not expect).
"""

from __future__ import annotations

import enum
import warnings
from typing import Any

import numpy as np
import torch

from ..errors import InputError
from .base import Pipeline
from .common import refuse_unknown, softmax


class AggregationStrategy(str, enum.Enum):
    """How tokens are fused into entities (the reference's enum; plain strings work too)."""

    NONE = "none"
    SIMPLE = "simple"
    FIRST = "first"
    AVERAGE = "average"
    MAX = "max"


_WORD_STRATEGIES = ("first", "average", "max")


class UnknownStrategyError(InputError, KeyError):
    """An ``aggregation_strategy`` name that is not one of AggregationStrategy's (a KeyError
    too, as the reference raises one)."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


def _strategy_name(value: Any) -> str:
    name = str(getattr(value, "value", value)).lower()
    if name not in {s.value for s in AggregationStrategy}:
        raise UnknownStrategyError(
            f"aggregation_strategy={value!r} is not one of "
            f"{', '.join(s.value for s in AggregationStrategy)}.")
    return name


def _tag(label: str) -> tuple[str, str]:
    """("B" or "I", entity type); a label without a B-/I- prefix counts as a continuation."""
    if label.startswith(("B-", "I-")):
        return label[0], label[2:]
    return "I", label


def _merge_windows(entities: list[dict]) -> list[dict]:
    """Entities from overlapping stride windows: of those that overlap, keep the longest (then
    the higher score), as the reference does."""
    if not entities:
        return entities
    entities = sorted(entities, key=lambda entity: entity["start"])
    kept, previous = [], entities[0]
    for entity in entities:
        if previous["start"] <= entity["start"] < previous["end"]:
            length, previous_length = (entity["end"] - entity["start"],
                                       previous["end"] - previous["start"])
            if length > previous_length or (length == previous_length
                                            and entity["score"] > previous["score"]):
                previous = entity
        else:
            kept.append(previous)
            previous = entity
    kept.append(previous)
    return kept


class TokenClassificationPipeline(Pipeline):
    """Labels each token (or word, or entity span) of a text: named entities, parts of speech, ...

    Call:
        ``pipe(text, **args)`` with a string, a list of strings, or an iterator / dataset of them;
        with ``is_split_into_words=True``, a list of words (or a list of such lists).

    Arguments:
        aggregation_strategy (str, default "none"): "none" (one entry per token), "simple"
            (adjacent tokens of the same type grouped, a B- tag starting a new group), or
            "first" / "average" / "max" (as simple, but every word takes one label: its first
            token's, the best of its averaged scores, or its most confident token's).
        ignore_labels (list[str], default ``["O"]``): labels left out of the result.
        stride (int, optional): read texts longer than the model in overlapping windows that
            share this many tokens (needs a fast tokenizer and an aggregation other than "none").
        is_split_into_words (bool, default False): the input is already a list of words.
        delimiter (str, default " "): joins the words of a split input into the text the
            offsets refer to.
        offset_mapping (list[tuple[int, int]], optional): character offsets of the tokens,
            overriding the tokenizer's.

    Returns:
        For one text, a list of dicts, one per token: ``{"entity": str, "score": float,
        "index": int, "word": str, "start": int | None, "end": int | None}``; with an
        aggregation, one per group: ``{"entity_group": str, "score", "word", "start", "end"}``.
        A list of texts gives a list of those lists.
    """

    task = "token-classification"
    chunked = True
    sequence_outputs = ("logits",)

    def _sanitize_parameters(self, ignore_labels: list[str] | None = None,
                             aggregation_strategy: Any = None,
                             offset_mapping: list | None = None,
                             is_split_into_words: bool | None = None, stride: int | None = None,
                             delimiter: str | None = None, **kwargs: Any):
        refuse_unknown(self, kwargs, " (it takes aggregation_strategy, ignore_labels, stride, "
                                     "is_split_into_words, delimiter, offset_mapping).")
        pre: dict[str, Any] = {}
        post: dict[str, Any] = {}
        if is_split_into_words is not None:
            pre["is_split_into_words"] = bool(is_split_into_words)
        if delimiter is not None:
            pre["delimiter"] = delimiter
        if offset_mapping is not None:
            pre["offset_mapping"] = offset_mapping
        if aggregation_strategy is not None:
            aggregation_strategy = _strategy_name(aggregation_strategy)
            if aggregation_strategy in _WORD_STRATEGIES and not getattr(self.tokenizer, "is_fast", True):
                raise ValueError("Slow tokenizers cannot handle subwords. Please set the "
                                 '`aggregation_strategy` option to `"simple"` or use a fast tokenizer.')
            post["aggregation_strategy"] = aggregation_strategy
        if ignore_labels is not None:
            post["ignore_labels"] = ignore_labels
        if stride is not None:
            pre["stride"] = self._check_stride(stride, aggregation_strategy)
        return pre, {}, post

    def _check_stride(self, stride: Any, aggregation_strategy: str | None) -> int:
        if not isinstance(stride, int) or isinstance(stride, bool) or stride < 0:
            raise InputError(f"stride must be a non-negative integer, got {stride!r}.")
        max_length = self.tokenizer.model_max_length
        if stride >= max_length:
            raise InputError(f"`stride` ({stride}) must be less than `tokenizer.model_max_length` "
                             f"({max_length}), and lower still for the special tokens it adds.")
        room = max_length - self.tokenizer.num_special_tokens_to_add()
        if stride >= room:
            raise InputError(f"`stride` ({stride}) must be less than {room}: the model reads "
                             f"{max_length} tokens, {max_length - room} of them special tokens.")
        if aggregation_strategy == "none":
            raise InputError('`stride` was provided to process all the text but '
                             '`aggregation_strategy="none"`, please select another one instead.')
        if not getattr(self.tokenizer, "is_fast", True):
            raise InputError("`stride` was provided to process all the text but you're using a "
                             "slow tokenizer. Please use a fast tokenizer.")
        return stride

    def split_inputs(self, inputs: Any, params: dict) -> tuple[Any, bool]:
        if inputs is None or (isinstance(inputs, (list, tuple)) and len(inputs) == 0):
            raise InputError("At least one input is required: pass a text or a list of texts.")
        split = params.get("is_split_into_words",
                           self._preprocess_params.get("is_split_into_words", False))
        # One pre-split text (a list of words) is run as a batch of one, as in the reference.
        if split and isinstance(inputs, list) and not all(isinstance(i, list) for i in inputs):
            inputs = [inputs]
        offsets = params.get("offset_mapping")
        if offsets:
            if not isinstance(inputs, (str, list)):
                raise InputError("offset_mapping needs a text or a list of texts (one mapping "
                                 "per text), not a stream.")
            params["offset_mapping"] = self._offsets_per_item(
                offsets, 1 if isinstance(inputs, str) else len(inputs))
        return super().split_inputs(inputs, params)

    @staticmethod
    def _offsets_per_item(offsets: Any, count: int) -> list:
        if isinstance(offsets, list) and offsets and isinstance(offsets[0], tuple):
            offsets = [offsets]  # one text's (start, end) pairs
        if not isinstance(offsets, list) or len(offsets) != count:
            raise InputError("offset_mapping should have the same batch size as the input: one "
                             "list of (start, end) tuples per text.")
        return offsets

    # --- preprocess: one tokenizer call for the whole window ---
    def _refuse(self, item: Any, expected: str):
        # A ValueError, as the reference raises for a text that is not a string.
        raise InputError(f"The {self.task} pipeline takes {expected}, but got "
                         f"{type(item).__name__}: {item!r:.80}.")

    def preprocess_many(self, items: list, is_split_into_words: bool = False,
                        delimiter: str | None = None, offset_mapping: list | None = None,
                        stride: int | None = None) -> list:
        delimiter = " " if delimiter is None else delimiter
        sentences, char_maps = [], []
        for item in items:
            if is_split_into_words:
                if not isinstance(item, list) or not all(isinstance(w, str) for w in item):
                    self._refuse(item, "a list of words (strings), or a list of such lists, "
                                 "when is_split_into_words=True")
                sentence, start, char_map = delimiter.join(item), 0, []
                for word in item:  # word index -> its (start, end) in the joined sentence
                    char_map.append((start, start + len(word)))
                    start += len(word) + len(delimiter)
                sentences.append(sentence)
                char_maps.append(char_map)
            else:
                if not isinstance(item, str):
                    self._refuse(item, "a string or a list of strings (lists of words need "
                                 "is_split_into_words=True)")
                sentences.append(item)
                char_maps.append(None)
        if offset_mapping is not None:
            offset_mapping = self._offsets_per_item(offset_mapping, len(items))

        max_length = self.tokenizer.model_max_length
        window_args = ({"return_overflowing_tokens": True, "stride": stride}
                       if stride is not None else {})
        batch = self.tokenizer(items if is_split_into_words else sentences,
                               truncation=bool(max_length and max_length > 0),
                               is_split_into_words=is_split_into_words,
                               return_special_tokens_mask=True, return_offsets_mapping=True,
                               **window_args)
        owners = batch["overflow_to_sample_mapping"] if stride is not None else range(len(items))
        inputs = [k for k in batch.keys() if k in self.model_input_names()]
        pieces: list[list[dict]] = [[] for _ in items]
        for row, owner in enumerate(owners):
            piece = {key: batch[key][row] for key in inputs}
            piece.update(
                token_ids=batch["input_ids"][row],
                special_tokens_mask=batch["special_tokens_mask"][row],
                offset_mapping=(offset_mapping[owner] if offset_mapping is not None
                                else batch["offset_mapping"][row]),
                sentence=sentences[owner])
            if char_maps[owner] is not None:
                piece.update(word_ids=batch.word_ids(row), word_to_chars=char_maps[owner])
            pieces[owner].append(piece)
        return pieces

    # --- postprocess: tokens -> pre-entities -> words -> groups ---
    def postprocess(self, outputs: list[dict], aggregation_strategy: str = "none",
                    ignore_labels: list[str] | None = None) -> list[dict]:
        if ignore_labels is None:
            ignore_labels = ["O"]
        entities: list[dict] = []
        for output in outputs:
            logits = output["logits"][0]
            if logits.dtype in (torch.float16, torch.bfloat16):  # numpy has no bfloat16
                logits = logits.float()
            scores = softmax(logits.numpy())
            pre_entities = self._pre_entities(output, scores, aggregation_strategy)
            for entity in self._aggregate(pre_entities, aggregation_strategy):
                if (entity.get("entity") not in ignore_labels
                        and entity.get("entity_group") not in ignore_labels):
                    entities.append(entity)
        entities = _merge_windows(entities) if len(outputs) > 1 else entities
        for entity in entities:
            entity["score"] = float(entity["score"])
        return entities

    def _pre_entities(self, output: dict, scores: np.ndarray, strategy: str) -> list[dict]:
        """One dict per non-special token: its token string, scores, offsets, and whether it
        continues the previous word."""
        tokenizer = self.tokenizer
        sentence = output["sentence"]
        offsets = output["offset_mapping"]
        word_ids, word_to_chars = output.get("word_ids"), output.get("word_to_chars")
        model = getattr(getattr(tokenizer, "backend_tokenizer", None), "model", None)
        word_aware = bool(getattr(model, "continuing_subword_prefix", None))
        if not word_aware and strategy in _WORD_STRATEGIES:
            warnings.warn("Tokenizer does not support real words, using fallback heuristic",
                          UserWarning, stacklevel=3)
        unk_id = tokenizer.unk_token_id
        pre_entities = []
        for index, token_scores in enumerate(scores):
            if output["special_tokens_mask"][index]:
                continue
            token_id = int(output["token_ids"][index])
            word = tokenizer.convert_ids_to_tokens(token_id)
            if index >= len(offsets):
                raise InputError(f"offset_mapping has {len(offsets)} entries but the text has "
                                 f"more tokens (token {index} has none).")
            start, end = (int(value) for value in offsets[index])
            if word_ids is not None and word_ids[index] is not None:
                shift = word_to_chars[word_ids[index]][0]  # word-relative -> sentence
                start, end = start + shift, end + shift
            word_ref = sentence[start:end]
            if word_aware:  # "##ing" is longer than the "ing" it covers
                is_subword = len(word) != len(word_ref)
            else:  # no sub-word marker: a token not after a space continues a word
                is_subword = start > 0 and " " not in sentence[start - 1:start + 1]
            if token_id == unk_id:
                word, is_subword = word_ref, False
            pre_entities.append({"word": word, "scores": token_scores, "start": start, "end": end,
                                 "index": index, "is_subword": is_subword})
        return pre_entities

    def _aggregate(self, pre_entities: list[dict], strategy: str) -> list[dict]:
        id2label = self.model.config.id2label
        if strategy in ("none", "simple"):
            entities = []
            for pre in pre_entities:
                best = int(pre["scores"].argmax())
                entities.append({"entity": id2label[best], "score": pre["scores"][best],
                                 "index": pre["index"], "word": pre["word"],
                                 "start": pre["start"], "end": pre["end"]})
            if strategy == "none":
                return entities
        else:
            entities = [self._aggregate_word(group, strategy)
                        for group in self._words(pre_entities)]
        return self._group(entities)

    @staticmethod
    def _words(pre_entities: list[dict]) -> list[list[dict]]:
        """Tokens gathered into words: each sub-word joins the word before it."""
        words: list[list[dict]] = []
        for pre in pre_entities:
            if words and pre["is_subword"]:
                words[-1].append(pre)
            else:
                words.append([pre])
        return words

    def _aggregate_word(self, tokens: list[dict], strategy: str) -> dict:
        if strategy == "first":
            scores = tokens[0]["scores"]
        elif strategy == "max":
            scores = max(tokens, key=lambda token: token["scores"].max())["scores"]
        else:  # average
            scores = np.nanmean(np.stack([token["scores"] for token in tokens]), axis=0)
        best = int(scores.argmax())
        return {"entity": self.model.config.id2label[best], "score": scores[best],
                "word": self.tokenizer.convert_tokens_to_string([t["word"] for t in tokens]),
                "start": tokens[0]["start"], "end": tokens[-1]["end"]}

    def _group(self, entities: list[dict]) -> list[dict]:
        """Adjacent entities of one type become one group; a B- label starts a new group."""
        groups: list[list[dict]] = []
        for entity in entities:
            if groups:
                bi, tag = _tag(entity["entity"])
                if tag == _tag(groups[-1][-1]["entity"])[1] and bi != "B":
                    groups[-1].append(entity)
                    continue
            groups.append([entity])
        return [{"entity_group": group[0]["entity"].split("-", 1)[-1],
                 "score": np.mean(np.nanmean([entity["score"] for entity in group])),
                 "word": self.tokenizer.convert_tokens_to_string([e["word"] for e in group]),
                 "start": group[0]["start"], "end": group[-1]["end"]}
                for group in groups]


NerPipeline = TokenClassificationPipeline
