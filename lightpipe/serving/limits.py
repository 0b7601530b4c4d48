"""What a request's ``parameters`` may hold: no code-like arguments (400), only the call
arguments the task takes (422 naming the unknown ones), and every size a client controls
within the model's limits (422 with the limit in the message).

    ParameterLimits(spec, pipe).check(parameters)

A leaf of serving: it imports only ``errors`` (and, for the generate() field names, the
generation package when the model generates).
"""

from __future__ import annotations

import inspect
import re
from typing import Any

from .errors import ApiError, type_name

# Arguments that are code, objects or a template: a client never sets them. A chat template
# is Jinja code run by the server; the others are Python objects or callables.
CODE_PARAMETERS = frozenset({
    "chat_template", "chat_template_kwargs", "generation_config", "streamer", "logits_processor",
    "logits_processors", "stopping_criteria", "prefix_allowed_tokens_fn", "assistant_model",
    "assistant_tokenizer", "tokenizer", "generator", "synced_gpus", "custom_generate",
    "trust_remote_code", "negative_prompt_ids", "negative_prompt_attention_mask",
    "processor", "feature_extractor", "image_processor", "watermarking_config", "compile_config",
    "cache_implementation", "cache_config", "past_key_values", "constraints", "assistant_early_exit",
})
# Call arguments the server decides, not the client.
RESERVED_PARAMETERS = ("batch_size", "num_workers", "device")
# Dicts of keyword arguments handed on (to generate(), the tokenizer, ...): checked as parameters.
KWARGS_DICTS = frozenset({"generate_kwargs", "tokenizer_encode_kwargs", "tokenize_kwargs",
                          "tokenizer_kwargs", "image_processor_kwargs", "decoder_kwargs",
                          "model_kwargs", "parameters"})
# What a tokenizer call takes (tasks whose **kwargs go to the tokenizer).
TOKENIZER_ARGUMENTS = frozenset({
    "truncation", "max_length", "stride", "add_special_tokens", "padding", "pad_to_multiple_of",
    "return_token_type_ids", "return_attention_mask", "return_overflowing_tokens",
    "return_special_tokens_mask", "return_offsets_mapping", "return_length", "verbose",
    "is_split_into_words"})
_LENGTHS = ("max_new_tokens", "min_new_tokens", "max_length", "min_length", "max_tokens", "stride",
            "doc_stride", "max_seq_len", "max_question_len", "max_answer_len", "no_repeat_ngram_size")
_SEQUENCES = ("num_return_sequences", "num_beams", "n", "best_of", "num_beam_groups")
_TESSERACT_CONFIG = re.compile(r"^\s*(?:--(?:psm|oem|dpi)\s+\d{1,4}\s*)*$")
_TESSERACT_LANG = re.compile(r"^[A-Za-z_]{1,32}(?:\+[A-Za-z_]{1,32}){0,7}$")


def refuse_code(mapping: dict, where: str) -> None:
    """400 naming the first code-like argument in ``mapping`` or its keyword-argument dicts."""
    for key, value in mapping.items():
        name = f"{where}.{key}" if where else key
        if key in CODE_PARAMETERS:
            raise ApiError(400, f"'{name}' is not accepted from clients: the server does not run "
                                "templates, code or objects sent with a request.",
                           "forbidden_parameter", name)
        if key in KWARGS_DICTS and isinstance(value, dict):
            refuse_code(value, name)


def context_length(pipe: Any) -> int | None:
    """The positions the model reads (None: no fixed limit, e.g. T5's relative positions)."""
    model = getattr(pipe, "model", None)
    positions = getattr(model, "max_positions", None)
    if callable(positions):
        try:
            value = positions()
        except Exception:  # a model that cannot say: fall back on its config
            value = None
        if isinstance(value, int) and value > 0:
            return value
    config = getattr(model, "config", None)
    for key in ("max_position_embeddings", "n_positions", "max_target_positions"):
        value = config.get(key) if hasattr(config, "get") else None
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return value
    return None


def known_parameters(pipe: Any) -> frozenset[str]:
    """The call arguments a pipeline takes: the named ones of its ``_sanitize_parameters`` (and
    of the ones it hands its ``**kwargs`` to), plus what those ``**kwargs`` stand for:
    generate() settings when the model generates, tokenizer arguments for a text task; nothing
    for a ``**unknown`` (the task ignores them) or an image/audio task (it refuses them)."""
    from ..pipelines.base import Pipeline

    names: set[str] = set()
    spread = None
    for cls in type(pipe).__mro__:
        method = cls.__dict__.get("_sanitize_parameters")
        if method is None or cls is Pipeline:
            continue
        parameters = list(inspect.signature(method).parameters.values())[1:]
        names |= {p.name for p in parameters if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
        spread = next((p.name for p in parameters if p.kind is p.VAR_KEYWORD), None)
        if spread is None:
            break
    if spread is not None and spread != "unknown":
        if callable(getattr(getattr(pipe, "model", None), "generate", None)):
            from ..generation import GENERATION_FIELDS

            names |= set(GENERATION_FIELDS)
        elif getattr(pipe, "tokenizer", None) is not None and getattr(pipe, "image_processor", None) is None \
                and getattr(pipe, "feature_extractor", None) is None:
            names |= TOKENIZER_ARGUMENTS
    return frozenset(names)


class ParameterLimits:
    """The checks one served model's requests go through (its ModelSpec's limits)."""

    def __init__(self, spec: Any, pipe: Any):
        self.spec = spec
        self.task = getattr(pipe, "task", "")
        self.known = known_parameters(pipe)
        context = context_length(pipe)
        self.context = context
        self.max_tokens = min(spec.max_new_tokens, context) if context else spec.max_new_tokens

    def check(self, parameters: dict) -> None:
        refuse_code(parameters, "parameters")
        for key in RESERVED_PARAMETERS:
            if key in parameters:
                raise ApiError(422, f"'{key}' is set by the server (see --max-batch-size), not per request.",
                               "invalid_parameter", f"parameters.{key}")
        unknown = sorted(key for key in parameters if key not in self.known)
        if unknown:
            raise ApiError(422, f"Unknown parameters for {self.task}: {', '.join(unknown)}. It takes: "
                                f"{', '.join(sorted(self.known)) or 'none'}.", "unknown_parameter",
                           f"parameters.{unknown[0]}")
        self.check_values(parameters, "parameters")

    def check_values(self, mapping: dict, where: str) -> None:
        """The rules by name (lengths, beams, top_k, ...) and the sizes of every value."""
        for key, value in mapping.items():
            param = f"{where}.{key}"
            if key in KWARGS_DICTS and value is not None:
                if not isinstance(value, dict):
                    raise ApiError(422, f"'{param}' must be an object, not {type_name(value)}.",
                                   "invalid_parameter", param)
                self.check_values(value, param)
                continue
            if key in _LENGTHS:
                self.integer(value, param, 0, self.max_tokens, "the model's context and this server's "
                                                                "--max-new-tokens")
            elif key in _SEQUENCES:
                self.integer(value, param, 1, self.spec.max_sequences, "--max-sequences")
            elif key == "top_k":
                for each in value if isinstance(value, list) else [value]:
                    self.integer(each, param, 0, self.spec.max_top_k, "--max-top-k")
            elif key == "candidate_labels" and isinstance(value, str):
                self.count(len(value.split(",")), param)
            elif key in ("num_frames", "frame_sampling_rate", "pad_to_multiple_of"):
                self.integer(value, param, 1, 1024, "the server's bound")
            elif key in ("chunk_length_s", "stride_length_s", "max_time"):  # (a URL `timeout`
                # may be anything: it only lowers the server's, see media.py)
                for each in value if isinstance(value, list) else [value]:
                    self.number(each, param, 0.5 if key == "chunk_length_s" else 0, 3600)
            elif key == "tesseract_config" and value is not None:
                if not isinstance(value, str) or not _TESSERACT_CONFIG.match(value):
                    raise ApiError(422, f"'{param}' may hold only --psm N, --oem N and --dpi N on this "
                                        "server.", "invalid_parameter", param)
            elif key == "lang" and value is not None:
                if not isinstance(value, str) or not _TESSERACT_LANG.match(value):
                    raise ApiError(422, f"'{param}' must be tesseract language codes like "
                                        "\"eng\" or \"eng+fra\".", "invalid_parameter", param)
            self.sizes(value, param)

    def integer(self, value: Any, param: str, low: int, high: int, setting: str) -> None:
        if value is None:
            return
        if not isinstance(value, int) or isinstance(value, bool):
            raise ApiError(422, f"'{param}' must be an integer, not {type_name(value)}.",
                           "invalid_parameter", param)
        if not low <= value <= high:
            raise ApiError(422, f"'{param}' must be from {low} to {high} on this server ({setting}); "
                                f"got {value}.", "invalid_parameter", param)

    @staticmethod
    def number(value: Any, param: str, low: float, high: float) -> None:
        if value is None:
            return
        if not isinstance(value, (int, float)) or isinstance(value, bool) or not low <= value <= high:
            raise ApiError(422, f"'{param}' must be a number from {low:g} to {high:g}; got "
                                f"{value!r}.", "invalid_parameter", param)

    def count(self, count: int, param: str) -> None:
        if count > self.spec.max_list_items:
            raise ApiError(422, f"'{param}' has {count} items; this server takes at most "
                                f"{self.spec.max_list_items} (--max-list-items).", "invalid_parameter", param)

    def sizes(self, value: Any, param: str) -> None:
        """Strings within --max-input-chars; lists (at any depth) within --max-list-items."""
        if isinstance(value, str):
            if len(value) > self.spec.max_input_chars:
                raise ApiError(422, f"'{param}' has {len(value)} characters; this server takes at most "
                                    f"{self.spec.max_input_chars}.", "invalid_parameter", param)
        elif isinstance(value, list):
            self.count(len(value), param)
            for item in value:
                self.sizes(item, param)
        elif isinstance(value, dict):
            self.count(len(value), param)
            for item in value.values():
                self.sizes(item, param)

    def check_max_tokens(self, value: int, param: str = "max_tokens") -> None:
        """An OpenAI request's max_tokens: within the context and --max-new-tokens."""
        self.integer(value, param, 1, self.max_tokens, "the model's context and this server's "
                                                       "--max-new-tokens")
