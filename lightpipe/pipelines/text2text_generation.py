"""text2text-generation, summarization and translation: an encoder-decoder's ``generate()``.

transformers 5 dropped these pipelines; lightpipe keeps them with transformers 4.57's
semantics (``pipelines/text2text_generation.py``): the same arguments, defaults and outputs.
- Generation settings: the call's > the pipeline's (``pipeline(..., num_beams=2)``) > the
  model's generation config > the task's ``config.task_specific_params`` (T5: "summarize: "
  prefix, lengths, beams) > the pipeline defaults ``max_new_tokens=256, num_beams=4``; as in
  4.57, a model ``max_length`` other than 20 replaces the default ``max_new_tokens``, and a
  ``max_new_tokens`` still set beats a ``max_length`` given in the call.
- Outputs: ``[{"generated_text"}]`` / ``[{"summary_text"}]`` / ``[{"translation_text"}]``
  (``return_tensors=True``: ``*_token_ids``); a list of texts gives one record per text.
"""

from __future__ import annotations

import enum
import logging
import re
from typing import Any

import torch

from ..errors import InputError
from ..generation import GENERATION_FIELDS, GenerationConfig
from .base import Pipeline
from .common import check_text
from .generative import pipeline_generation

logger = logging.getLogger("lightpipe")


def max_positions(model) -> int | None:
    """The longest input the model's encoder reads (None: no limit)."""
    limit = getattr(model, "max_positions", None)
    return limit() if callable(limit) else None


class ReturnType(enum.Enum):
    TENSORS = 0
    TEXT = 1


class Text2TextGenerationPipeline(Pipeline):
    """Generates text from text with an encoder-decoder model (T5, BART, ...).

    Call:
        ``pipe(text, **args)`` with a string, a list of strings, or an iterator of them.

    Arguments:
        max_length, min_length, max_new_tokens, num_beams, no_repeat_ngram_size,
            num_return_sequences, do_sample, ... : every ``generate()`` argument is a pipeline
            argument.
        truncation (bool, default False): cut inputs to the tokenizer's ``model_max_length``.
        return_tensors (bool, default False): return the token ids instead of text.
        return_text (bool, default True): return the text.
        return_type (ReturnType, optional): the reference's enum form of the two above.
        clean_up_tokenization_spaces (bool, default False): tidy spaces in the decoded text.
        stop_sequence (str, optional): stop generating at this string (its first token).

    Returns:
        For one text, a list of ``num_return_sequences`` dicts ``{"generated_text": str}``
        (``{"generated_token_ids": list[int]}`` with ``return_tensors=True``). A list of texts
        gives one dict per text, as the reference (a list of dicts per text when several
        sequences are returned).
    """

    task = "text2text-generation"
    return_name = "generated"
    default_generation = {"max_new_tokens": 256, "num_beams": 4}

    def __init__(self, model, tokenizer=None, *args: Any, task: str = "", **kwargs: Any):
        if not getattr(model, "is_encoder_decoder", False):
            raise InputError(f"The {type(self).task} pipeline needs an encoder-decoder model (T5, "
                             f"BART, Marian); {type(model).__name__} is not one.")
        self.task = task or type(self).task
        self.generation_config, self.prefix = pipeline_generation(
            model, tokenizer, kwargs, self.default_generation, self.task_params_key())
        super().__init__(model, tokenizer, *args, task=task, **kwargs)

    def task_params_key(self) -> str:
        """The ``task_specific_params`` entry of this pipeline."""
        return self.task

    def _sanitize_parameters(self, return_tensors=None, return_text=None, return_type=None,
                             clean_up_tokenization_spaces=None, truncation=None, stop_sequence=None,
                             **generate_kwargs: Any):
        pre: dict[str, Any] = {}
        if truncation is not None:
            pre["truncation"] = truncation
        post: dict[str, Any] = {}
        if return_tensors is not None and return_type is None:
            return_type = ReturnType.TENSORS if return_tensors else ReturnType.TEXT
        if return_type is not None:
            post["return_type"] = return_type
        if clean_up_tokenization_spaces is not None:
            post["clean_up_tokenization_spaces"] = clean_up_tokenization_spaces
        if stop_sequence is not None:
            ids = self.tokenizer.encode(stop_sequence, add_special_tokens=False)
            if not ids:
                raise InputError(f"stop_sequence={stop_sequence!r} has no tokens: give a non-empty text.")
            if len(ids) > 1:
                logger.warning("Stopping on a multiple token sequence is not yet supported: the "
                               "first token of the stop sequence is used.")
            generate_kwargs["eos_token_id"] = ids[0]
        unknown = [k for k in generate_kwargs if k not in GENERATION_FIELDS and k != "generation_config"]
        if unknown:
            raise TypeError(f"{type(self).__name__} got unexpected arguments: {', '.join(unknown)} "
                            "(neither pipeline nor generate() arguments).")
        return pre, generate_kwargs, post

    # --- running ---
    def split_inputs(self, inputs: Any, params: dict) -> tuple[Any, bool]:
        return super().split_inputs(list(inputs) if isinstance(inputs, tuple) else inputs, params)

    def shape_results(self, inputs: Any, single: bool, params: dict, results: list) -> Any:
        """One text -> a list of records; a list of texts -> one record per text (a list of
        records each when several sequences are returned per text)."""
        if isinstance(inputs, (list, tuple)) and all(isinstance(item, str) for item in inputs) \
                and all(len(records) == 1 for records in results):
            return [records[0] for records in results]
        return super().shape_results(inputs, single, params, results)

    def preprocess_many(self, items: list, truncation: Any = None, **params: Any) -> list:
        texts = [(self.prefix or "") + check_text(item, self.task) for item in items]
        options = {} if truncation is None else {"truncation": truncation}
        encoded = self.tokenizer(texts, **options)
        pieces = []
        for ids, mask in zip(encoded["input_ids"], encoded["attention_mask"]):
            self._check_length(len(ids))
            pieces.append({"input_ids": list(ids), "attention_mask": list(mask)})
        return pieces

    def _check_length(self, length: int) -> None:
        limit = max_positions(self.model)
        if limit is not None and length > limit:
            raise InputError(
                f"The input has {length} tokens but this model's encoder reads at most {limit} "
                "positions. Pass truncation=True to cut it to the tokenizer's model_max_length, "
                "or split the text.")

    def _forward(self, model_inputs: dict, **generate_kwargs: Any) -> dict:
        input_ids = model_inputs["input_ids"]
        batch, input_length = input_ids.shape
        config = generate_kwargs.pop("generation_config", None) or self.generation_config
        settings = {**config.to_diff_dict(), **generate_kwargs}
        self.check_inputs(input_length, settings.get("min_length", 0), settings.get("max_length", 20))
        # 4.57's lengths: max_new_tokens (counted after the start token) wins; a max_length left
        # at the global default 20 means 20 new tokens (capped by the position table).
        if settings.get("max_new_tokens") is not None:
            settings["max_length"] = settings["max_new_tokens"] + 1
        elif "max_length" not in generate_kwargs and settings.get("max_length", 20) == 20:
            limit = max_positions(self.model)
            settings["max_length"] = 21 if limit is None else min(21, limit)
        settings["max_new_tokens"] = None
        settings.pop("transformers_version", None)
        output_ids = self.model.generate(input_ids=input_ids,
                                         attention_mask=model_inputs.get("attention_mask"),
                                         generation_config=GenerationConfig(**settings))
        if not isinstance(output_ids, torch.Tensor):  # return_dict_in_generate=True
            output_ids = output_ids["sequences"]
        return {"output_ids": output_ids.reshape(batch, output_ids.shape[0] // batch, -1)}

    def check_inputs(self, input_length: int, min_length: int, max_length: int) -> None:
        """Warnings about lengths that look wrong for the task (summarization, translation)."""

    def postprocess(self, model_outputs: dict, return_type: ReturnType = ReturnType.TEXT,
                    clean_up_tokenization_spaces: bool = False) -> list[dict]:
        records = []
        for output_ids in model_outputs["output_ids"][0]:
            if return_type == ReturnType.TENSORS:
                records.append({f"{self.return_name}_token_ids": output_ids})
            else:
                text = self.tokenizer.decode(output_ids.tolist(), skip_special_tokens=True,
                                             clean_up_tokenization_spaces=clean_up_tokenization_spaces)
                records.append({f"{self.return_name}_text": text})
        return records


class SummarizationPipeline(Text2TextGenerationPipeline):
    """Summarizes texts with an encoder-decoder model (BART, T5, Pegasus, ...).

    Call:
        ``pipe(article, **args)`` with a string, a list of strings, or an iterator of them; e.g.
        ``pipe(article, min_length=5, max_length=20)``.

    Arguments:
        min_length, max_length, num_beams, ... : every ``generate()`` argument (the model's
            ``task_specific_params["summarization"]`` give the defaults); a ``max_length`` below
            ``min_length``, or above the input's length, is warned about, as in the reference.
        truncation (bool, default False): cut inputs to the tokenizer's ``model_max_length``.
        return_tensors (bool, default False): return the token ids instead of text.
        return_text (bool, default True): return the text.
        return_type (ReturnType, optional): the reference's enum form of the two above.
        clean_up_tokenization_spaces (bool, default False): tidy spaces in the decoded text.
        stop_sequence (str, optional): stop generating at this string.

    Returns:
        For one text, a list of dicts ``{"summary_text": str}`` (``{"summary_token_ids":
        list[int]}`` with ``return_tensors=True``), one per returned sequence. A list of texts
        gives one dict per text, as the reference (a list of dicts per text when several
        sequences are returned).
    """

    task = "summarization"
    return_name = "summary"

    def check_inputs(self, input_length: int, min_length: int, max_length: int) -> None:
        if max_length < min_length:
            logger.warning("Your min_length=%s must be inferior than your max_length=%s.",
                           min_length, max_length)
        if input_length < max_length:
            logger.warning(
                "Your max_length is set to %s, but your input_length is only %s. Since this is a "
                "summarization task, where outputs shorter than the input are typically wanted, "
                "you might consider decreasing max_length manually, e.g. summarizer('...', "
                "max_length=%s)", max_length, input_length, input_length // 2)


_OPUS_PAIR = re.compile(r"opus-mt-([a-z]{2,3})-([a-z]{2,3})(?:$|[^a-z])")


class TranslationPipeline(Text2TextGenerationPipeline):
    """Translates texts with an encoder-decoder model (T5, Marian, ...).

    Call:
        ``pipeline("translation_en_to_fr", model=...)(text, **args)`` with a string, a list of
        strings, or an iterator of them. T5 gets its prefix ("translate English to French: ")
        from ``task_specific_params``; a pair the model does not list is a clear error.

    Arguments:
        src_lang (str, optional), tgt_lang (str, optional): the languages, when the task name
            does not give them (multilingual models).
        max_length, num_beams, ... : every ``generate()`` argument.
        truncation (bool, default False): cut inputs to the tokenizer's ``model_max_length``.
        return_tensors (bool, default False): return the token ids instead of text.
        return_text (bool, default True): return the text.
        return_type (ReturnType, optional): the reference's enum form of the two above.
        clean_up_tokenization_spaces (bool, default False): tidy spaces in the decoded text.
        stop_sequence (str, optional): stop generating at this string.

    Returns:
        For one text, a list of dicts ``{"translation_text": str}``
        (``{"translation_token_ids": list[int]}`` with ``return_tensors=True``), one per returned
        sequence. A list of texts gives one dict per text, as the reference (a list of dicts
        per text when several sequences are returned).
    """

    task = "translation"
    return_name = "translation"

    def __init__(self, model, tokenizer=None, *args: Any, src_lang: str | None = None,
                 tgt_lang: str | None = None, **kwargs: Any):
        if src_lang is None and tgt_lang is None:  # "translation": the model's first pair (4.57)
            for key in model.config.get("task_specific_params") or {}:
                match = re.fullmatch(r"translation_(.+)_to_(.+)", key)
                if match:
                    logger.warning('"translation" task was used, instead of '
                                   '"translation_XX_to_YY", defaulting to "%s"', key)
                    src_lang, tgt_lang = match[1], match[2]
                    break
        self.src_lang, self.tgt_lang = src_lang, tgt_lang
        super().__init__(model, tokenizer, *args, **kwargs)
        self._check_pair(model)

    def task_params_key(self) -> str:
        if self.src_lang and self.tgt_lang:
            return f"translation_{self.src_lang}_to_{self.tgt_lang}"
        return self.task

    def _check_pair(self, model) -> None:
        if not (self.src_lang and self.tgt_lang):
            return
        wanted = f"translation_{self.src_lang}_to_{self.tgt_lang}"
        listed = sorted(k for k in (model.config.get("task_specific_params") or {})
                        if k.startswith("translation_"))
        if listed and wanted not in listed:
            raise InputError(f"This model does not translate {self.src_lang!r} to "
                             f"{self.tgt_lang!r}: its config lists {', '.join(listed)}. Use one "
                             "of those tasks, or a model for this language pair.")
        match = _OPUS_PAIR.search(str(getattr(model, "name_or_path", "")))
        if match and (match[1], match[2]) != (self.src_lang, self.tgt_lang):
            raise InputError(f"{model.name_or_path} translates {match[1]!r} to {match[2]!r}, not "
                             f"{self.src_lang!r} to {self.tgt_lang!r}: use "
                             f"translation_{match[1]}_to_{match[2]} or another model.")

    def _sanitize_parameters(self, src_lang=None, tgt_lang=None, **kwargs: Any):
        # Single-pair models (T5 prefixes, Marian) read the languages at construction only.
        return super()._sanitize_parameters(**kwargs)

    def check_inputs(self, input_length: int, min_length: int, max_length: int) -> None:
        if input_length > 0.9 * max_length:
            logger.warning("Your input_length: %s is bigger than 0.9 * max_length: %s. You might "
                           "consider increasing your max_length manually, e.g. "
                           "translator('...', max_length=400)", input_length, max_length)


__all__ = ["ReturnType", "SummarizationPipeline", "Text2TextGenerationPipeline", "TranslationPipeline"]
