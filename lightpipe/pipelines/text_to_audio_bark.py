"""The text-to-audio pipeline's Bark inputs, as the reference's ``TextToAudioPipeline`` prepares
them: the text through the ``BarkProcessor`` (padded to 256 tokens, no special tokens, with
its attention mask; ``preprocess_params={"voice_preset": ...}`` adds the speaker prompt as
``history_prompt``), and the generation arguments passed to the stages as given (no
pipeline default ``max_new_tokens``: each stage has its own settings)."""

from __future__ import annotations

from typing import Any

import torch

from ..errors import InputError


def is_bark(model: Any) -> bool:
    return model.config.get("model_type") == "bark"


def bark_processor(model: Any, processor: Any, tokenizer: Any) -> Any:
    """The caller's BarkProcessor, else the model folder's (with the pipeline's tokenizer)."""
    from ..processing.bark import BarkProcessor

    if isinstance(processor, BarkProcessor):
        return processor
    name = getattr(model, "name_or_path", None)
    if name:
        loaded = BarkProcessor.from_pretrained(name)
    elif tokenizer is not None:
        loaded = BarkProcessor(tokenizer)
    else:
        raise InputError("A Bark model object was given without its processor: pass "
                         "processor= (a BarkProcessor) or tokenizer=.")
    if tokenizer is not None:
        loaded.tokenizer = tokenizer
    return loaded


def bark_piece(processor: Any, text: str, params: dict) -> dict:
    """One text -> its ids and mask (lists) and, with a voice preset, ``history_prompt``."""
    settings = {"max_length": 256, "add_special_tokens": False, "return_attention_mask": True,
                "return_token_type_ids": False, **params}
    encoded = processor(text, return_tensors="pt", **settings)
    piece = {"input_ids": encoded["input_ids"][0].tolist(),
             "attention_mask": encoded["attention_mask"][0].tolist()}
    if "history_prompt" in encoded:
        piece["history_prompt"] = dict(encoded["history_prompt"])
    return piece


def same_preset(first: dict | None, second: dict | None) -> bool:
    if first is None or second is None:
        return first is second
    return first.keys() == second.keys() and all(
        first[k].shape == second[k].shape and torch.equal(first[k], second[k]) for k in first)


def preset_batches(pieces: list[dict], batch_size: int) -> list[list[int]]:
    """Consecutive pieces, a new batch also where the speaker prompt changes (one per batch,
    as the model takes one)."""
    batches: list[list[int]] = []
    for index, piece in enumerate(pieces):
        last = batches[-1] if batches else None
        if last is None or len(last) == batch_size or not same_preset(
                pieces[last[0]].get("history_prompt"), piece.get("history_prompt")):
            batches.append([index])
        else:
            last.append(index)
    return batches


def bark_generate(model: Any, model_inputs: dict, params: dict) -> dict:
    """The waveforms of a batch; in a batch of several, each cut to its own length."""
    if model_inputs["input_ids"].shape[0] == 1:
        return {"audio": model.generate(**model_inputs, **params)}
    audio, lengths = model.generate(**model_inputs, **params, return_output_lengths=True)
    return {"audio": audio, "lengths": torch.tensor([[n] for n in lengths])}


def bark_collate(batch: dict, extras: list[dict], device: torch.device) -> None:
    """Move the batch's speaker prompt (one per batch, see ``preset_batches``) into its inputs."""
    presets = [extra.pop("history_prompt", None) for extra in extras]
    if presets[0] is not None:
        batch["history_prompt"] = {k: v.to(device) for k, v in presets[0].items()}
