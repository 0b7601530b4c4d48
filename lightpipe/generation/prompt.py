"""Prompt preparation: a generate() call's input, whatever its form, checked and turned into
one ``Prompt`` (token ids; an encoder's input, encoded once; or embeddings), and the lengths
of the call (``set_lengths``), as the reference counts them."""

from __future__ import annotations

import inspect
import logging
import warnings
from typing import TYPE_CHECKING, Any

import torch

from ..errors import InputError, UnsupportedModelError
from .state import Prompt

if TYPE_CHECKING:
    from .contract import EncoderDecoderModel, GenerativeModel

logger = logging.getLogger("lightpipe")

_IDS_HINT = ("input_ids must be a 2-D tensor of token ids (batch, sequence); the tokenizer "
             "gives one with return_tensors='pt'.")


def ids_prompt(model: GenerativeModel, input_ids: Any, attention_mask: Any, config: Any) -> Prompt:
    """A decoder-only prompt of token ids (None: the model's ``bos_token_id``), left-padded;
    positions follow the mask, as in the reference."""
    eos, pad = special_tokens(config, attention_mask is not None, input_ids)
    if input_ids is None:
        if config.bos_token_id is None:
            raise ValueError("`bos_token_id` has to be defined when no `input_ids` are provided.")
        input_ids = torch.full((1, 1), config.bos_token_id, dtype=torch.long)
    if not isinstance(input_ids, torch.Tensor) or input_ids.dim() != 2:
        raise InputError(_IDS_HINT)
    if input_ids.shape[1] == 0:
        raise InputError("The prompt is empty (0 tokens). Pass input_ids=None to start from "
                         "the model's bos_token_id, or give at least one token.")
    input_ids = input_ids.to(model.device)
    batch_size = input_ids.shape[0]
    if attention_mask is None:
        attention_mask = infer_mask(input_ids, pad, eos)
    attention_mask = attention_mask.to(model.device)
    if batch_size > 1 and pad is not None and bool((attention_mask[:, -1] == 0).any()):
        logger.warning("A decoder-only architecture is being used, but right-padding was "
                       "detected! For correct generation results, please set "
                       "`padding_side='left'` when initializing the tokenizer.")
    positions, attention_mask = _positions(attention_mask)
    return Prompt(input_ids, positions, attention_mask, eos, pad, batch_size)


def encoder_decoder_prompt(model: EncoderDecoderModel, given: dict, config: Any) -> Prompt:
    """An encoder-decoder's prompt: the encoder runs once (unless ``encoder_outputs`` are
    given); the decoder starts from ``decoder_start_token_id``, before ``decoder_input_ids``
    when given. Lengths count decoder tokens (the start token included), as in the reference."""
    device = model.device
    source, mask, encoded = given["inputs"], given["attention_mask"], given["encoder_outputs"]
    name = model.main_input_name
    if encoded is None:
        if not isinstance(source, torch.Tensor) or source.dim() < 2:
            raise InputError(f"generate() needs the encoder's input as a batched tensor: pass "
                             f"`{name}` as the {'tokenizer' if name == 'input_ids' else 'feature extractor'} "
                             "gives it with return_tensors='pt'.")
        if source.shape[1] == 0 or source.shape[0] == 0:
            raise InputError(f"The encoder's input `{name}` is empty (shape {tuple(source.shape)}).")
        source = source.to(device)
    elif not isinstance(encoded, torch.Tensor):  # a ModelOutput or a tuple
        encoded = encoded["last_hidden_state"] if isinstance(encoded, dict) else encoded[0]
    eos, pad = special_tokens(config, mask is not None, source)
    if encoded is None:  # (no mask given: none inferred from padding, as transformers 5)
        encoded = model.encode(source, attention_mask=mask)
    encoded = encoded.to(device)
    batch_size = encoded.shape[0]
    if mask is not None:
        mask = None if bool(mask.all()) else mask.to(device)

    start = config.decoder_start_token_id
    if start is None:
        start = config.bos_token_id
    if start is None:
        raise ValueError("`decoder_start_token_id` or `bos_token_id` has to be defined for "
                         "encoder-decoder generation.")
    starts = torch.as_tensor(start, dtype=torch.long, device=device).reshape(-1, 1)
    starts = starts.expand(batch_size, 1) if starts.shape[0] == 1 else starts
    decoder_input_ids = given["decoder_input_ids"]
    if decoder_input_ids is None:
        decoder_input_ids = starts
    else:
        decoder_input_ids = decoder_input_ids.to(device)
        if model.prepend_decoder_start and bool((decoder_input_ids[:, 0] != starts[:, 0]).all()):
            decoder_input_ids = torch.cat((starts, decoder_input_ids), dim=-1)
    positions = torch.arange(decoder_input_ids.shape[1], device=device).expand(batch_size, -1)
    return Prompt(decoder_input_ids, positions, None, eos, pad, batch_size,
                  encoder_states=encoded, encoder_mask=mask)


def encoder_inputs(model: EncoderDecoderModel, inputs: Any, model_kwargs: dict) -> dict:
    """Take an encoder-decoder's inputs out of generate()'s keyword arguments: the encoder's
    (``inputs`` or the ``main_input_name`` keyword, its mask, or ready ``encoder_outputs``)
    and the decoder's prompt (``decoder_input_ids``)."""
    name = model.main_input_name
    source = model_kwargs.pop(name, None)
    if inputs is not None and source is not None:
        raise ValueError(f"Pass the encoder's input either as `inputs` or as `{name}`, not both.")
    decoder_input_ids = model_kwargs.pop("decoder_input_ids", None)
    if decoder_input_ids is None and name != "input_ids":  # the reference's alias
        decoder_input_ids = model_kwargs.pop("input_ids", None)
    model_kwargs.pop("decoder_attention_mask", None)
    return {"inputs": inputs if inputs is not None else source,
            "attention_mask": model_kwargs.pop("attention_mask", None),
            "encoder_outputs": model_kwargs.pop("encoder_outputs", None),
            "decoder_input_ids": decoder_input_ids}


def embeds_prompt(model: GenerativeModel, inputs_embeds: Any, input_ids: Any, attention_mask: Any,
                  config: Any) -> Prompt:
    """``generate(inputs_embeds=...)``, as the reference: the first step reads the prompt as
    embeddings, later steps feed the new tokens through the cache. The returned sequences
    are the ``input_ids`` given with the embeddings (none: only the new tokens), then the
    new tokens; the embedded positions before those ids are the prompt's ``offset``. The
    attention mask (given, or inferred from the ids' padding) covers the embedded prompt;
    positions follow it as for ids."""
    device = model.device
    if "inputs_embeds" not in inspect.signature(model.forward).parameters:
        raise UnsupportedModelError(f"{type(model).__name__} does not take inputs_embeds: "
                                    "pass the prompt as input_ids.")
    if not isinstance(inputs_embeds, torch.Tensor) or inputs_embeds.dim() != 3 \
            or not inputs_embeds.is_floating_point():
        got = (f"a {inputs_embeds.dim()}-D {inputs_embeds.dtype} tensor"
               if isinstance(inputs_embeds, torch.Tensor) else type(inputs_embeds).__name__)
        raise InputError(f"inputs_embeds must be a 3-D float tensor (batch, sequence, hidden "
                         f"size), such as model.get_input_embeddings()(input_ids); got {got}.")
    batch_size, embeds_length, width = inputs_embeds.shape
    if batch_size == 0 or embeds_length == 0:
        raise InputError(f"inputs_embeds is empty (shape {tuple(inputs_embeds.shape)}): give "
                         "at least one position per row.")
    embedding = model.get_input_embeddings() if hasattr(model, "get_input_embeddings") else None
    expected = getattr(embedding, "embedding_dim", None)
    if expected is not None and width != expected:
        raise InputError(f"inputs_embeds has {width} features per position but this model's "
                         f"input embeddings have {expected}: build them with "
                         "model.get_input_embeddings() (shape: batch, sequence, "
                         f"{expected}).")
    inputs_embeds = inputs_embeds.to(device=device, dtype=model.dtype)
    if input_ids is None:  # only the new tokens will be returned
        input_ids = torch.zeros(batch_size, 0, dtype=torch.long, device=device)
    elif not isinstance(input_ids, torch.Tensor) or input_ids.dim() != 2 \
            or input_ids.is_floating_point():
        raise InputError(_IDS_HINT)
    elif input_ids.shape[0] != batch_size or input_ids.shape[1] > embeds_length:
        raise InputError(f"input_ids {tuple(input_ids.shape)} do not fit inputs_embeds "
                         f"{tuple(inputs_embeds.shape)}: give the same batch size, and at "
                         "most as many ids as embedded positions (the ids of the prompt's "
                         "last positions), or leave input_ids out.")
    input_ids = input_ids.to(device)
    ids_length = input_ids.shape[1]
    eos, pad = special_tokens(config, attention_mask is not None, inputs_embeds)
    if attention_mask is None:  # as the reference: from the ids' padding, if ids are given
        attention_mask = infer_mask(input_ids, pad, eos) if ids_length else \
            torch.ones(batch_size, embeds_length, dtype=torch.long, device=device)
    if not isinstance(attention_mask, torch.Tensor) or \
            tuple(attention_mask.shape) != (batch_size, embeds_length):
        got = tuple(attention_mask.shape) if isinstance(attention_mask, torch.Tensor) else \
            type(attention_mask).__name__
        raise InputError(f"The attention mask must cover the embedded prompt: shape (batch, "
                         f"sequence) = {(batch_size, embeds_length)}, 1 for real positions "
                         f"and 0 for (left) padding; got {got}. When input_ids are shorter "
                         "than inputs_embeds, pass attention_mask.")
    positions, attention_mask = _positions(attention_mask.to(device))
    config.use_cache = True  # as the reference: the embeddings are read once, into the cache
    if not ids_length:
        for name, what, off in (("repetition_penalty", "the penalty", 1.0),
                                ("no_repeat_ngram_size", "n-gram constraints", 0)):
            if getattr(config, name) not in (None, off):
                warnings.warn(f"Passing `{name}` with `inputs_embeds` and without `input_ids` "
                              f"to `generate` will apply {what} only to newly generated "
                              "tokens, not to the prompt.", UserWarning, stacklevel=4)
    return Prompt(input_ids, positions, attention_mask, eos, pad, batch_size,
                  offset=embeds_length - ids_length, inputs_embeds=inputs_embeds)


def special_tokens(config: Any, has_mask: bool, inputs: Any) -> tuple[torch.Tensor | None, int | None]:
    """(EOS ids as a 1-D tensor, the pad id): an unset pad id falls back to the first EOS."""
    eos = config.eos_token_id
    eos = None if eos is None else torch.tensor(eos, dtype=torch.long).reshape(-1)
    pad = config.pad_token_id
    if pad is None and eos is not None:
        batched = inputs is not None and inputs.shape[0] > 1
        if not has_mask and batched:
            logger.warning("The attention mask and the pad token id were not set, with a "
                           "batched input: pass the input's attention_mask for reliable results.")
        pad = int(eos[0])
    return eos, pad


def infer_mask(input_ids: torch.Tensor, pad: int | None, eos: torch.Tensor | None) -> torch.Tensor:
    """As the reference: pad tokens are masked when there are some and pad is not an EOS."""
    if pad is None or (eos is not None and bool((eos == pad).any())):
        return torch.ones_like(input_ids)
    mask = input_ids.ne(pad).long()
    return mask if bool((mask == 0).any()) else torch.ones_like(input_ids)


def _positions(attention_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Positions counted over the real tokens of left-padded rows, and the mask (None when
    nothing is padded: SDPA's causal path, no mask to build)."""
    positions = (attention_mask.long().cumsum(-1) - 1).masked_fill(attention_mask == 0, 0)
    return positions, None if bool(attention_mask.all()) else attention_mask


def set_lengths(model: GenerativeModel, config: Any, prompt_length: int, default_max: bool,
                offset: int = 0) -> None:
    """Settle ``config.max_length`` / ``min_length`` for a prompt of ``prompt_length`` ids
    (after ``offset`` embedded positions without ids), within the model's positions."""
    limit = model.max_positions()  # defined by each model family
    if offset:  # the reference's rule: an explicit max/min length counts the embeddings
        if config.max_new_tokens is None and not default_max:
            config.max_length -= offset + prompt_length
        if config.min_new_tokens is None:
            config.min_length = max(config.min_length - offset - prompt_length, 0)
    if config.max_new_tokens is not None:
        config.max_length = config.max_new_tokens + prompt_length
    elif default_max:
        config.max_length = config.max_length + prompt_length
        if limit is not None:
            config.max_length = min(config.max_length, limit)
        warnings.warn(f"Using the model-agnostic default `max_length` (={config.max_length}) "
                      "to control the generation length. We recommend setting "
                      "`max_new_tokens` to control the maximum length of the generation.",
                      UserWarning, stacklevel=4)
    if config.min_new_tokens is not None:
        config.min_length = config.min_new_tokens + prompt_length
    if prompt_length >= config.max_length:
        raise ValueError(
            f"Input length of input_ids is {prompt_length}, but `max_length` is set to "
            f"{config.max_length}. This can lead to unexpected behavior. You should consider "
            "increasing `max_length` or, better yet, setting `max_new_tokens`.")
    if model.learned_positions and limit is not None and config.max_length > limit:
        if prompt_length >= limit:
            raise InputError(
                f"The prompt has {prompt_length} tokens but this model reads at most {limit} "
                "positions, so there is no room for a new token. Shorten it, or cut it from "
                "the left (pipeline argument handle_long_generation='hole', or tokenizer "
                "truncation_side='left' with truncation=True and max_length).")
        logger.warning("The prompt (%d tokens) plus %d new tokens would need %d positions but "
                       "this model has %d: generating at most %d new tokens.", prompt_length,
                       config.max_length - prompt_length, config.max_length, limit,
                       limit - prompt_length)
        config.max_length = limit
    elif limit is not None and config.max_length > limit:
        logger.warning("max_length %d is past the model's max_position_embeddings %d: the "
                       "rotary positions extrapolate and quality may drop.", config.max_length, limit)
    if offset and model.learned_positions and limit is not None and \
            config.max_length + offset > limit:
        if offset + prompt_length >= limit:
            raise InputError(
                f"The embedded prompt has {offset + prompt_length} positions but this model "
                f"reads at most {limit}, so there is no room for a new token. Shorten it.")
        logger.warning("The embedded prompt (%d positions) plus the new tokens would need more "
                       "than the model's %d positions: generating at most %d new tokens.",
                       offset + prompt_length, limit, limit - offset - prompt_length)
        config.max_length = limit - offset
