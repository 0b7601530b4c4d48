"""GenerationConfig: the settings of a generate() call, as ``generation_config.json`` holds
them, and how a call's settings are merged (call arguments > the given config > the model's
generation config > the global defaults)."""

from __future__ import annotations

import copy
import json
import os
from pathlib import Path
from typing import Any

from ..jsonfile import read_json

# The global defaults, used for whatever neither the call nor the model's config sets.
GENERATION_DEFAULTS: dict[str, Any] = {
    "max_length": 20, "min_length": 0, "do_sample": False, "use_cache": True,
    "early_stopping": False, "num_beams": 1, "temperature": 1.0, "top_k": 50, "top_p": 1.0,
    "typical_p": 1.0, "repetition_penalty": 1.0, "length_penalty": 1.0,
    "no_repeat_ngram_size": 0, "encoder_no_repeat_ngram_size": 0, "bad_words_ids": None,
    "num_return_sequences": 1, "output_scores": False, "return_dict_in_generate": False,
    "forced_bos_token_id": None, "forced_eos_token_id": None, "remove_invalid_values": False,
    "exponential_decay_length_penalty": None, "suppress_tokens": None,
    "begin_suppress_tokens": None, "epsilon_cutoff": 0.0, "eta_cutoff": 0.0,
    "encoder_repetition_penalty": 1.0, "num_beam_groups": 1, "diversity_penalty": 0.0,
}
# Every field a GenerationConfig has (None = unset).
GENERATION_FIELDS = tuple(GENERATION_DEFAULTS) + (
    "max_new_tokens", "min_new_tokens", "max_time", "stop_strings", "min_p", "top_h",
    "pad_token_id", "bos_token_id", "eos_token_id", "decoder_start_token_id", "output_logits",
    "output_attentions", "output_hidden_states", "renormalize_logits", "sequence_bias",
    "guidance_scale", "cache_implementation", "cache_config", "penalty_alpha", "dola_layers",
    "constraints", "force_words_ids", "low_memory", "prompt_lookup_num_tokens",
    "assistant_early_exit", "token_healing", "watermarking_config", "prefill_chunk_size",
    "compile_config", "disable_compile", "is_assistant", "use_mtp", "max_matching_ngram_size",
    "num_assistant_tokens", "num_assistant_tokens_schedule", "assistant_confidence_threshold",
    "assistant_lookbehind", "target_lookbehind")
# Settings lightpipe does not implement, with the value that means "off".
_UNSUPPORTED = {"epsilon_cutoff": 0.0, "eta_cutoff": 0.0,
                "exponential_decay_length_penalty": None, "encoder_repetition_penalty": 1.0,
                "encoder_no_repeat_ngram_size": 0, "sequence_bias": None, "guidance_scale": 1.0,
                "top_h": None, "num_beam_groups": 1, "diversity_penalty": 0.0,
                "penalty_alpha": None, "dola_layers": None, "constraints": None,
                "force_words_ids": None, "assistant_early_exit": None, "token_healing": False,
                "watermarking_config": None, "prefill_chunk_size": None, "use_mtp": False}


class GenerationConfig:
    """Generation settings (``generation_config.json``), as transformers' GenerationConfig:
    every field is an attribute, None when unset; unknown keys are kept as attributes."""

    def __init__(self, **kwargs: Any):
        for name in GENERATION_FIELDS:
            setattr(self, name, kwargs.pop(name, None))
        kwargs.pop("_from_model_config", None)
        kwargs.pop("_commit_hash", None)
        self.transformers_version = kwargs.pop("transformers_version", None)
        for name, value in kwargs.items():
            setattr(self, name, value)
        self.validate()

    # -- construction
    @classmethod
    def from_dict(cls, data: dict[str, Any], **kwargs: Any) -> GenerationConfig:
        return cls(**{**data, **kwargs})

    @classmethod
    def from_pretrained(cls, folder: str | os.PathLike,
                        config_file_name: str = "generation_config.json", **kwargs: Any):
        """Read ``generation_config.json`` from a model folder or Hub id."""
        from ..hub import resolve

        path = Path(resolve(folder, weights=False, **kwargs)) / config_file_name
        if not path.is_file():
            raise OSError(f"{path} does not exist.")
        return cls.from_dict(read_json(path))

    @classmethod
    def from_model_config(cls, config: Any) -> GenerationConfig:
        """The generation fields a model's config.json holds (the special token ids)."""
        data = config.to_dict() if hasattr(config, "to_dict") else dict(config)
        return cls(**{k: v for k, v in data.items() if k in GENERATION_FIELDS and v is not None})

    # -- views
    def to_dict(self) -> dict[str, Any]:
        return {k: copy.deepcopy(v) for k, v in vars(self).items() if not k.startswith("_")}

    def to_diff_dict(self) -> dict[str, Any]:
        """The fields that are set (not None)."""
        return {k: v for k, v in self.to_dict().items() if v is not None}

    def to_json_string(self) -> str:
        return json.dumps(self.to_diff_dict(), indent=2, sort_keys=True) + "\n"

    def save_pretrained(self, folder: str | os.PathLike) -> None:
        Path(folder).mkdir(parents=True, exist_ok=True)
        (Path(folder) / "generation_config.json").write_text(self.to_json_string(), encoding="utf-8")

    def __repr__(self) -> str:
        return f"GenerationConfig {self.to_json_string()}"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, GenerationConfig) and self.to_diff_dict() == other.to_diff_dict()

    # -- editing
    def update(self, **kwargs: Any) -> dict[str, Any]:
        """Set the known fields among ``kwargs``; return the others (model inputs)."""
        unused = {}
        for key, value in kwargs.items():
            if hasattr(self, key) and not key.startswith("_"):
                setattr(self, key, value)
            else:
                unused[key] = value
        self.validate()
        return unused

    def get_generation_mode(self) -> str:
        """'greedy_search', 'sample', 'beam_search' or 'beam_sample'."""
        sampling = self.do_sample is True
        if self.num_beams is None or self.num_beams == 1:
            return "sample" if sampling else "greedy_search"
        return "beam_sample" if sampling else "beam_search"

    def validate(self) -> None:
        """Errors for settings that cannot work, as the reference raises them."""
        if self.early_stopping not in (None, True, False, "never"):
            raise ValueError(f"`early_stopping` must be a boolean or 'never', but is {self.early_stopping}.")
        if self.max_new_tokens is not None and self.max_new_tokens <= 0:
            raise ValueError(f"`max_new_tokens` must be greater than 0, but is {self.max_new_tokens}.")
        if self.num_return_sequences is not None and self.num_return_sequences > 1:
            if (self.num_beams is None or self.num_beams == 1) and not self.do_sample:
                raise ValueError(
                    "Greedy methods (do_sample != True) without beam search do not support "
                    f"`num_return_sequences` different than 1 (got {self.num_return_sequences}).")
            if self.num_beams is not None and 1 < self.num_beams < self.num_return_sequences:
                raise ValueError(f"`num_return_sequences` ({self.num_return_sequences}) has to be "
                                 f"smaller or equal to `num_beams` ({self.num_beams}).")
        for name in ("streamer", "logits_processor", "stopping_criteria", "assistant_model"):
            if name in vars(self):
                raise ValueError(f"Argument `{name}` is not a valid argument of `GenerationConfig`. "
                                 "It should be passed to `generate()` (or a pipeline) directly.")


def config_for_call(model_config: GenerationConfig, given: GenerationConfig | None,
                    kwargs: dict[str, Any]) -> tuple[GenerationConfig, dict[str, Any], bool]:
    """One call's settings: ``kwargs`` > ``given`` > the model's ``model_config`` > global
    defaults. Returns them, the kwargs that are not settings (model inputs), and whether
    ``max_length`` is the global default (set nowhere)."""
    default_max = (kwargs.get("max_length") is None and model_config.max_length is None
                   and (given is None or given.max_length is None))
    config = copy.deepcopy(given) if given is not None else GenerationConfig()
    for key, value in model_config.to_dict().items():
        if getattr(config, key, None) is None:
            setattr(config, key, copy.deepcopy(value))
    for key, value in GENERATION_DEFAULTS.items():
        if getattr(config, key) is None:
            setattr(config, key, value)
    model_kwargs = config.update(**kwargs)
    return config, model_kwargs, default_max


def unsupported_settings(config: GenerationConfig) -> list[str]:
    """The settings ``config`` turns on that lightpipe does not implement."""
    return [k for k, off in _UNSUPPORTED.items() if getattr(config, k, None) not in (None, off)]
