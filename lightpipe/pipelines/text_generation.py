"""text-generation: continue prompts, or chats, with the model's ``generate()``.

Follows transformers 5's ``pipelines/text_generation.py``: the same arguments, defaults and
outputs. Chats (lists of ``{"role", "content"}`` messages) go through the tokenizer's chat
template and come back as the conversation with the assistant's reply appended.
"""

from __future__ import annotations

import copy
import enum
import logging
import os
import threading
import types
from collections.abc import Iterator
from typing import Any

import torch

from ..errors import InputError
from ..generation import GenerationConfig, TextIteratorStreamer
from ..generation.cancel import cancel_on
from ..modeling import ModelOutput
from .base import Pipeline
from .common import raise_type
from .generative import unset_defaults

logger = logging.getLogger("lightpipe")


class ReturnType(enum.Enum):
    TENSORS = 0
    NEW_TEXT = 1
    FULL_TEXT = 2


def is_message(item: Any) -> bool:
    return isinstance(item, dict) and "role" in item and "content" in item


class Chat:
    """One conversation given to the pipeline, so that its messages are not taken for a batch
    of prompts."""

    def __init__(self, messages: list[dict]):
        if not all(is_message(m) for m in messages):
            raise ValueError("When passing chat dicts as input, each dict must have a 'role' and "
                             "'content' key.")
        self.messages = list(messages)


def as_chats(inputs: Any) -> Any:
    """A chat -> Chat; a list of chats -> a list of Chat; an iterator -> the same, lazily."""
    if isinstance(inputs, (list, tuple)) and inputs:
        if is_message(inputs[0]):
            return Chat(inputs)
        if all(isinstance(chat, (list, tuple)) and chat and is_message(chat[0]) for chat in inputs):
            return [Chat(chat) for chat in inputs]
        return inputs
    if isinstance(inputs, (types.GeneratorType, Iterator)):
        return (Chat(item) if isinstance(item, (list, tuple)) and item and is_message(item[0])
                else item for item in inputs)
    return inputs


class TextGenerationPipeline(Pipeline):
    """Continues a prompt, or answers a chat, with a causal language model.

    Call:
        ``pipe(prompt, **args)`` where ``prompt`` is a string, a chat (a list of ``{"role",
        "content"}`` messages, formatted with the tokenizer's chat template), or a list /
        iterator of them. ``pipe.stream(prompt, **args)`` yields the text as it is generated.

    Arguments:
        max_new_tokens, do_sample, temperature, top_k, top_p, num_beams,
            num_return_sequences, repetition_penalty, ... : every ``generate()`` argument is a
            pipeline argument. Unless the model's generation
            config sets them, the reference's defaults apply: ``max_new_tokens=256,
            do_sample=True, temperature=0.7``.
        return_full_text (bool, default True): False returns only the new text (for a chat, the
            assistant's reply alone instead of the whole chat).
        return_tensors (bool, default False): return the token ids instead of text.
        return_text (bool, default True): return the text (the default output).
        return_type (ReturnType, optional): the reference's enum form of the three above.
        clean_up_tokenization_spaces (bool, optional): tidy spaces in the decoded text.
        skip_special_tokens (bool, default True): leave special tokens out of the text.
        prefix (str, optional): text put before every prompt.
        handle_long_generation (str, optional): "hole" cuts a prompt from the left (with a
            warning) to leave room for the new tokens.
        stop_sequence (str | list[str], optional): stop generating at this string (or any of
            these strings).
        truncation (bool, optional), max_length (int, optional), padding, add_special_tokens
            (bool, optional), tokenizer_encode_kwargs (dict, optional): how prompts are tokenized.
        continue_final_message (bool, optional): continue the last chat message instead of
            starting a new assistant turn.
        tools (list, optional), documents (list, optional): passed to the chat template.
        return_token_count (bool, default False): lightpipe's: add ``"num_new_tokens"`` to each
            result (for servers).

    Returns:
        For one prompt, a list of ``num_return_sequences`` dicts ``{"generated_text": str}``
        (for a chat, the chat with the reply appended, or the reply alone with
        ``return_full_text=False``); ``{"generated_token_ids": list[int]}`` with
        ``return_tensors=True``. A list of prompts gives a list of those lists.
    """

    task = "text-generation"
    # transformers' defaults for this pipeline, for what the model's generation config leaves unset.
    default_generation = {"max_new_tokens": 256, "do_sample": True, "temperature": 0.7}
    _SAMPLING_ONLY = {"temperature", "top_k", "top_p", "min_p", "top_h", "typical_p",
                      "epsilon_cutoff", "eta_cutoff"}

    def __init__(self, *args: Any, **kwargs: Any):
        assistant = kwargs.get("assistant_model")
        if isinstance(assistant, (str, os.PathLike)):  # as the reference: a name or folder loads
            from ..models import AutoModelForCausalLM

            model = kwargs.get("model", args[0] if args else None)
            dtype = getattr(model, "dtype", None)
            helper = AutoModelForCausalLM.from_pretrained(
                assistant, **({"dtype": dtype} if isinstance(dtype, torch.dtype) else {}))
            device = getattr(model, "device", None)
            if isinstance(device, torch.device) and device.type != "cpu":
                helper = helper.to(device)
            kwargs["assistant_model"] = helper
        super().__init__(*args, **kwargs)
        if self.tokenizer is not None and self.tokenizer.padding_side == "right":
            self.tokenizer.padding_side = "left"  # decoder-only models generate after the prompt

    def _sanitize_parameters(self, return_full_text=None, return_tensors=None, return_text=None,
                             return_type=None, clean_up_tokenization_spaces=None, prefix=None,
                             handle_long_generation=None, stop_sequence=None, truncation=None,
                             max_length=None, continue_final_message=None,
                             skip_special_tokens=None, tokenizer_encode_kwargs=None, tools=None,
                             documents=None, add_special_tokens=None, padding=None,
                             return_token_count=None, **generate_kwargs: Any):
        pre: dict[str, Any] = {}
        for name, value in (("add_special_tokens", add_special_tokens), ("truncation", truncation),
                            ("max_length", max_length), ("tools", tools), ("documents", documents),
                            ("prefix", prefix), ("continue_final_message", continue_final_message),
                            ("tokenizer_encode_kwargs", tokenizer_encode_kwargs)):
            if value is not None:
                pre[name] = value
        if max_length is not None:
            generate_kwargs["max_length"] = max_length
        if prefix:
            ids = self.tokenizer(prefix, add_special_tokens=bool(add_special_tokens))["input_ids"]
            generate_kwargs["prefix_length"] = len(ids)
        if handle_long_generation is not None:
            if handle_long_generation != "hole":
                raise ValueError(f"{handle_long_generation} is not a valid value for "
                                 "`handle_long_generation` parameter expected [None, 'hole']")
            pre["handle_long_generation"] = handle_long_generation
            pre["generate_kwargs"] = dict(generate_kwargs)
        if stop_sequence is not None:
            generate_kwargs["stop_strings"] = [stop_sequence] if isinstance(stop_sequence, str) else stop_sequence
            generate_kwargs["tokenizer"] = self.tokenizer

        post: dict[str, Any] = {}
        if return_full_text is not None and return_type is None:
            if return_text is not None:
                raise ValueError("`return_text` is mutually exclusive with `return_full_text`")
            if return_tensors is not None:
                raise ValueError("`return_full_text` is mutually exclusive with `return_tensors`")
            return_type = ReturnType.FULL_TEXT if return_full_text else ReturnType.NEW_TEXT
        if return_tensors is not None and return_type is None:
            if return_text is not None:
                raise ValueError("`return_text` is mutually exclusive with `return_tensors`")
            return_type = ReturnType.TENSORS
        for name, value in (("return_type", return_type), ("continue_final_message", continue_final_message),
                            ("clean_up_tokenization_spaces", clean_up_tokenization_spaces),
                            ("skip_special_tokens", skip_special_tokens),
                            ("return_token_count", return_token_count)):
            if value is not None:
                post[name] = value
        return pre, generate_kwargs, post

    def gather_inputs(self, text_inputs: Any = None, *args: Any, **params: Any) -> tuple[Any, dict]:
        return super().gather_inputs(text_inputs, *args, **params)

    def split_inputs(self, inputs: Any, params: dict) -> tuple[Any, bool]:
        """One prompt or chat (answered with a list of records), or a list of them (a list of
        lists); an iterator gives an iterator. A chat is a list of messages: one input."""
        return super().split_inputs(as_chats(inputs), params)

    def stream(self, text_input: Any, **kwargs: Any) -> Iterator[str]:
        """Yield the new text of one prompt or chat piece by piece, as it is generated (a
        ``TextIteratorStreamer`` fed by generate() in a thread)."""
        item = as_chats(text_input)
        if not isinstance(item, (str, Chat)):
            raise InputError("stream() takes one prompt (a string) or one chat (a list of messages).")
        decode = {"skip_special_tokens": kwargs.get("skip_special_tokens", True)}
        streamer = TextIteratorStreamer(self.tokenizer, skip_prompt=True, **decode)
        failures: list[BaseException] = []
        stop = threading.Event()

        def run() -> None:
            try:
                with cancel_on(stop):
                    self(item, streamer=streamer, **kwargs)
            except BaseException as err:  # noqa: BLE001 - re-raised in the caller's thread
                failures.append(err)
                streamer.text_queue.put(streamer.stop_signal)

        worker = threading.Thread(target=run, daemon=True)
        worker.start()
        try:
            yield from streamer
        finally:  # also when the caller stops early (close(), Ctrl-C): end the generation first
            stop.set()
            worker.join()
        if failures:
            raise failures[0]

    # --- the three steps ---
    def preprocess_many(self, items: list, prefix: str = "", handle_long_generation=None,
                        add_special_tokens=None, truncation=None, max_length=None,
                        continue_final_message=None, tokenizer_encode_kwargs=None, tools=None,
                        documents=None, generate_kwargs=None) -> list:
        options = {k: v for k, v in (("add_special_tokens", add_special_tokens),
                                     ("truncation", truncation), ("max_length", max_length)) if v is not None}
        options.update(tokenizer_encode_kwargs or {})
        pieces = []
        for item in items:
            if isinstance(item, Chat):
                chat_options = {k: v for k, v in options.items() if k != "add_special_tokens"}
                final = continue_final_message
                if final is None:  # a chat ending in an assistant message is a prefill to continue
                    final = item.messages[-1]["role"] == "assistant"
                encoded = self.tokenizer.apply_chat_template(
                    item.messages, add_generation_prompt=not final, continue_final_message=final,
                    tools=tools, documents=documents, tokenize=True, return_dict=True, **chat_options)
            elif isinstance(item, str):
                encoded = self.tokenizer(prefix + item, **options)
            else:
                raise_type(item, self.task, "a string, a chat (list of {'role', 'content'} "
                           "messages), or a list of them")
            piece = {"input_ids": list(encoded["input_ids"]), "prompt_text": item}
            if "attention_mask" in encoded:
                piece["attention_mask"] = list(encoded["attention_mask"])
            if handle_long_generation == "hole":
                self._cut_for_room(piece, generate_kwargs or {})
            pieces.append(piece)
        return pieces

    def _cut_for_room(self, piece: dict, generate_kwargs: dict) -> None:
        """'hole': drop the prompt's first tokens so that the new tokens fit the model."""
        length = len(piece["input_ids"])
        params = self._set_generation_params(self._generate_kwargs(generate_kwargs))
        new_tokens = params.get("max_new_tokens")
        if new_tokens is None:
            new_tokens = params["max_length"] - length
            if new_tokens < 0:
                raise ValueError("We cannot infer how many new tokens are expected")
        limit = self.tokenizer.model_max_length
        if length + new_tokens > limit:
            keep = limit - new_tokens
            if keep <= 0:
                raise ValueError("We cannot use `hole` to handle this generation the number of "
                                 "desired tokens exceeds the models max length")
            logger.warning("The prompt has %d tokens; keeping its last %d so that %d new tokens fit "
                           "the model's %d positions (handle_long_generation='hole').",
                           length, keep, new_tokens, limit)
            for key in ("input_ids", "attention_mask"):
                if key in piece:
                    piece[key] = piece[key][-keep:]

    def _forward(self, model_inputs: dict, **generate_kwargs: Any) -> dict:
        input_ids = model_inputs["input_ids"]
        attention_mask = model_inputs.get("attention_mask")
        batch = input_ids.shape[0]
        if input_ids.shape[1] == 0:  # an empty prompt: generate from the model's BOS token
            input_ids = attention_mask = None
        prefix_length = generate_kwargs.pop("prefix_length", 0)
        generate_kwargs = self._generate_kwargs(generate_kwargs)
        if prefix_length:  # a total length must count the prefix too
            params = self._set_generation_params(generate_kwargs)
            for length, new in (("max_length", "max_new_tokens"), ("min_length", "min_new_tokens")):
                if length in params and new not in params:
                    generate_kwargs[length] = params[length] + prefix_length
        output = self.model.generate(input_ids=input_ids, attention_mask=attention_mask, **generate_kwargs)
        sequences = output.sequences if isinstance(output, ModelOutput) else output
        prompt = model_inputs["input_ids"] if input_ids is not None else \
            torch.zeros(batch, 0, dtype=torch.long)
        return {"generated_sequence": sequences.reshape(batch, -1, sequences.shape[-1]),
                "input_ids": prompt}

    def postprocess(self, model_outputs: dict, return_type: ReturnType = ReturnType.FULL_TEXT,
                    clean_up_tokenization_spaces=None, continue_final_message=None,
                    skip_special_tokens=None, return_token_count=False) -> list[dict]:
        """Records as the reference's; ``return_token_count=True`` (lightpipe's, for a server's
        usage figures) adds ``"num_new_tokens"``: the generated ids up to the first EOS."""
        sequences = model_outputs["generated_sequence"][0].tolist()
        prompt_length = model_outputs["input_ids"].shape[-1]
        prompt = model_outputs["prompt_text"]
        skip = True if skip_special_tokens is None else skip_special_tokens
        records = []
        for sequence in sequences:
            if return_type == ReturnType.TENSORS:
                records.append({"generated_token_ids": sequence})
                continue
            text = self.tokenizer.decode(sequence[prompt_length:], skip_special_tokens=skip,
                                         clean_up_tokenization_spaces=clean_up_tokenization_spaces)
            if return_type == ReturnType.FULL_TEXT:
                if isinstance(prompt, str):
                    text = prompt + text
                else:
                    final = continue_final_message
                    if final is None:
                        final = prompt.messages[-1]["role"] == "assistant"
                    if final:  # the reply continues the last message
                        last = prompt.messages[-1]
                        text = prompt.messages[:-1] + [{"role": last["role"], "content": last["content"] + text}]
                    else:
                        text = prompt.messages + [{"role": "assistant", "content": text}]
            records.append({"generated_text": text})
            if return_token_count:
                records[-1]["num_new_tokens"] = self._new_token_count(sequence[prompt_length:])
        return records

    def _new_token_count(self, new: list[int]) -> int:
        eos = self.model.generation_config.eos_token_id
        eos = set(eos if isinstance(eos, (list, tuple)) else [] if eos is None else [eos])
        for index, token in enumerate(new):
            if token in eos:
                return index + 1
        return len(new)

    # --- generation settings ---
    def _generation_defaults(self) -> dict:
        defaults = dict(self.default_generation)
        if self.tokenizer is not None and self.tokenizer.pad_token_id is not None:
            defaults["pad_token_id"] = self.tokenizer.pad_token_id
        return defaults

    def _set_generation_params(self, generate_kwargs: dict) -> dict:
        """What a generate() call with these kwargs does not take from the global defaults."""
        params = self.model.generation_config.to_diff_dict()
        if generate_kwargs.get("generation_config") is not None:
            params.update(generate_kwargs["generation_config"].to_diff_dict())
        return {**params, **generate_kwargs}

    def _generate_kwargs(self, generate_kwargs: dict) -> dict:
        """The call's generate() kwargs plus the pipeline defaults for what nobody set (the
        sampling ones only when sampling), as the reference adds them."""
        set_params = self._set_generation_params(generate_kwargs)
        added = unset_defaults(self._generation_defaults(), set_params)
        if not {**set_params, **added}.get("do_sample"):
            added = {k: v for k, v in added.items() if k not in self._SAMPLING_ONLY}
        user_config = generate_kwargs.get("generation_config")
        if user_config is None:
            return {**generate_kwargs, **added}
        user_config = copy.deepcopy(user_config)
        user_config.update(**added)
        return {**generate_kwargs, "generation_config": user_config}


__all__ = ["Chat", "GenerationConfig", "ReturnType", "TextGenerationPipeline"]
