"""What the generative tasks share: their generation settings as transformers 4.57's pipelines
prepare them at construction (text2text-generation, summarization, translation,
image-to-text), and the pipeline defaults a call adds for the settings nobody set
(text-generation, automatic-speech-recognition)."""

from __future__ import annotations

import copy
from typing import Any

from ..generation import GENERATION_DEFAULTS, GENERATION_FIELDS, GenerationConfig


def pipeline_generation(model: Any, tokenizer: Any, init_kwargs: dict, defaults: dict,
                        task_key: str) -> tuple[GenerationConfig, str | None]:
    """4.57's ``Pipeline.__init__``: the pipeline's ``defaults``, the model's non-default
    generation settings over them, the generate() arguments among ``init_kwargs`` (removed from
    it), then the model's ``task_specific_params[task_key]``. Returns the settings and the
    task's input prefix (its ``prefix`` entry, else the config's). As in 4.57, a model
    ``max_length`` other than 20 replaces the default ``max_new_tokens``."""
    settings: dict[str, Any] = {**GENERATION_DEFAULTS, **defaults}
    for key, value in model.generation_config.to_dict().items():
        default = GENERATION_DEFAULTS.get(key)
        if settings.get(key) == default and value != default:
            settings[key] = copy.deepcopy(value)
    settings.update({k: init_kwargs.pop(k) for k in list(init_kwargs) if k in GENERATION_FIELDS})
    if (settings.get("max_new_tokens") == defaults["max_new_tokens"]
            and settings.get("max_length") not in (None, 20)):
        settings["max_new_tokens"] = None  # the model's max_length wins over the default
    config = model.config
    prefix = config.get("prefix")
    task_params = (config.get("task_specific_params") or {}).get(task_key)
    if task_params:
        task_params = dict(task_params)
        prefix = task_params.pop("prefix", prefix)
        settings.update(task_params)
    if settings.get("pad_token_id") is None and tokenizer is not None:
        settings["pad_token_id"] = tokenizer.pad_token_id
    settings.pop("transformers_version", None)
    return GenerationConfig(**settings), prefix


def unset_defaults(defaults: dict, set_params: Any) -> dict:
    """The pipeline ``defaults`` for the settings not in ``set_params`` (what the call and the
    model's generation config set; a ``max_length`` set counts for ``max_new_tokens``), as
    transformers adds them."""
    return {key: value for key, value in defaults.items()
            if key not in set_params and not (key == "max_new_tokens" and "max_length" in set_params)}
