"""Chat templates: the Jinja source a tokenizer carries (``chat_template.jinja``, named extra
templates, or the config's), messages normalised to plain data, and rendering in a sandbox the
way transformers does (``apply_chat_template``)."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

from ..errors import InputError, InputTypeError
from ..jsonfile import read_json
from .template_limits import bounded_sandbox, check_size, render_bounded

_REASONING_KEYS = ("reasoning_content", "thinking", "reasoning")
_CONTINUE_TAG = "CONTINUE_FINAL_MESSAGE_TAG "


def _read_chat_templates(folder: Path, from_config: Any) -> Any:
    """chat_template.jinja (plus additional_chat_templates/*.jinja) wins over the config's
    template, which wins over a legacy chat_template.json."""
    templates = {}
    if (folder / "chat_template.jinja").is_file():
        templates["default"] = (folder / "chat_template.jinja").read_text(encoding="utf-8")
    extra_dir = folder / "additional_chat_templates"
    if extra_dir.is_dir():
        for path in sorted(extra_dir.glob("*.jinja")):
            templates[path.name.removesuffix(".jinja")] = path.read_text(encoding="utf-8")
    if list(templates) == ["default"]:
        return templates["default"]
    if templates:
        return templates
    if from_config is not None:
        return from_config
    return read_json(folder / "chat_template.json").get("chat_template")


class ChatTemplateMixin:
    """The chat-template part of :class:`Tokenizer`. Needs ``chat_template``, ``name_or_path``,
    ``special_tokens_map`` and the tokenizer call."""

    def get_chat_template(self, chat_template: str | None = None,
                          tools: list | None = None) -> str:
        """The Jinja source to use: ``chat_template`` (source or template name) or the model's."""
        templates = self.chat_template
        if isinstance(templates, dict):
            if chat_template is not None and chat_template in templates:
                return templates[chat_template]
            if chat_template is not None:
                return chat_template
            if tools is not None and "tool_use" in templates:
                return templates["tool_use"]
            if "default" in templates:
                return templates["default"]
            raise InputError("This model has several chat templates and none is the default: "
                             f"pass chat_template= one of {sorted(templates)}.")
        if chat_template is not None:
            return chat_template
        if templates is None:
            raise InputError(
                f"The tokenizer of {self.name_or_path or 'this model'} has no chat template, so it "
                "cannot format chat messages. Pass one with apply_chat_template(..., "
                "chat_template=\"{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\\n"
                "{% endfor %}\"), or set tokenizer.chat_template.")
        return templates

    def apply_chat_template(
        self,
        conversation: Sequence[Mapping[str, Any]] | Sequence[Sequence[Mapping[str, Any]]],
        tools: list[dict] | None = None,
        documents: list[dict] | None = None,
        chat_template: str | None = None,
        add_generation_prompt: bool = False,
        continue_final_message: bool | str = False,
        tokenize: bool = True,
        padding: bool | str = False,
        truncation: bool = False,
        max_length: int | None = None,
        return_tensors: str | None = None,
        return_dict: bool = True,
        tokenizer_kwargs: dict[str, Any] | None = None,
        **template_kwargs: Any,
    ) -> Any:
        """Render chat messages with the model's Jinja template (as transformers does) and,
        with ``tokenize=True``, tokenize the result (ids, or a BatchEncoding with
        ``return_dict=True``, the default in transformers 5). A list of conversations gives a
        list."""
        source = self.get_chat_template(chat_template, tools)
        if isinstance(conversation, (list, tuple)) and not conversation:
            raise InputError("Cannot apply a chat template to an empty conversation: pass at least "
                             "one message like {'role': 'user', 'content': 'Hi'}.")
        if not isinstance(conversation, (list, tuple)) and not hasattr(conversation, "messages"):
            raise InputTypeError("conversation must be a list of messages (dicts with 'role' and "
                                 f"'content') or a list of such lists, got "
                                 f"{type(conversation).__name__}.")
        is_batched = isinstance(conversation[0], (list, tuple)) or \
            hasattr(conversation[0], "messages")
        conversations = conversation if is_batched else [conversation]
        if continue_final_message and add_generation_prompt:
            raise InputError("continue_final_message and add_generation_prompt cannot be used "
                             "together: the first continues the last message, the second starts "
                             "a new assistant message.")
        variables = {**self.special_tokens_map, **template_kwargs}
        rendered = [render_chat_template(source, _normalize_messages(chat), tools=tools,
                                         documents=documents,
                                         add_generation_prompt=add_generation_prompt,
                                         continue_final_message=continue_final_message,
                                         **variables)
                    for chat in conversations]
        if not tokenize:
            return rendered if is_batched else rendered[0]
        out = self(rendered if is_batched else rendered[0], padding=padding,
                   truncation=truncation, max_length=max_length, add_special_tokens=False,
                   return_tensors=return_tensors, **(tokenizer_kwargs or {}))
        return out if return_dict else out["input_ids"]


def _normalize_messages(chat: Any) -> list[dict]:
    """Messages as plain dicts, without None values (templates print them as 'None')."""
    messages = getattr(chat, "messages", chat)
    normalized = []
    for message in messages:
        message = _plain_data(message)
        if not isinstance(message, dict):
            raise InputTypeError(f"Chat messages must be dicts with 'role' and 'content', got "
                                 f"{type(message).__name__}.")
        message = {key: value for key, value in message.items() if value is not None}
        reasoning = next((message[key] for key in _REASONING_KEYS if key in message), None)
        if reasoning is not None:
            # Templates read the reasoning under different names; give it under each.
            message = {"thinking": reasoning, **message, "reasoning_content": reasoning}
        normalized.append(message)
    return normalized


def _plain_data(value: Any) -> Any:
    """Only plain JSON-like data reaches the template: rich objects (tensors, images) carry
    methods the sandbox does not know to be unsafe, so they become a placeholder string."""
    if value is None or type(value) in (str, int, float, bool):
        return value
    if isinstance(value, str):
        return str.__str__(value)
    if isinstance(value, bool):
        return bool(value)
    if isinstance(value, int):
        return int.__int__(value)
    if isinstance(value, float):
        return float.__float__(value)
    if isinstance(value, Mapping):
        return {_plain_data(key): _plain_data(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_plain_data(item) for item in value]
    if isinstance(value, tuple):
        return tuple(_plain_data(item) for item in value)
    if hasattr(value, "item") and getattr(value, "shape", None) == ():  # numpy scalar
        return _plain_data(value.item())
    import dataclasses

    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {field.name: _plain_data(getattr(value, field.name))
                for field in dataclasses.fields(value)}
    if callable(getattr(value, "model_dump", None)):  # pydantic, e.g. OpenAI SDK messages
        return _plain_data(value.model_dump())
    return f"<{type(value).__name__}>"


def render_chat_template(source: str, messages: list[dict], *, tools: list | None = None,
                         documents: list | None = None, add_generation_prompt: bool = False,
                         continue_final_message: bool | str = False, **variables: Any) -> str:
    """Render one conversation with a chat template, in transformers' Jinja environment."""
    if tools is not None:
        for tool in tools:
            if not isinstance(tool, dict):
                raise InputTypeError("Tools must be JSON-schema dicts ({'type': 'function', "
                                     "'function': {...}}); lightpipe does not convert Python "
                                     f"functions. Got {type(tool).__name__}.")
    if documents is not None and not all(isinstance(doc, dict) for doc in documents):
        raise InputTypeError("Documents must be dicts with 'title' and 'text' keys.")
    template = _compile_chat_template(source)
    messages = [dict(message) for message in messages]
    final = None
    if continue_final_message:
        field = continue_final_message if isinstance(continue_final_message, str) else "content"
        final = messages[-1].get(field) if messages else None
        if final is None:
            raise InputError(f"continue_final_message is set but the last message has no "
                             f"{field!r} to continue.")
        fields = [field]
        if field in _REASONING_KEYS:
            fields = [key for key in _REASONING_KEYS if messages[-1].get(key) == final]
        if not any(name in source for name in fields):
            raise InputError(f"continue_final_message={continue_final_message!r} but the chat "
                             "template never reads that field.")
        last = messages[-1] = dict(messages[-1])
        if isinstance(final, (list, tuple)):
            blocks = [dict(block) for block in final]
            for block in reversed(blocks):
                if "text" in block:
                    final = block["text"]
                    block["text"] = block["text"] + _CONTINUE_TAG
                    break
            else:
                raise InputError("continue_final_message is set but the last message has no "
                                 "text block to continue.")
            last[field] = blocks
        else:
            for name in fields:
                last[name] = last[name] + _CONTINUE_TAG
    rendered = render_bounded(template, dict(  # time and size limits: template_limits.py
        messages=messages, tools=_plain_data(tools), documents=_plain_data(documents),
        add_generation_prompt=add_generation_prompt, **_plain_data(variables)))
    if continue_final_message:
        tag = _CONTINUE_TAG.strip()
        if final.strip() not in rendered or tag not in rendered:
            raise InputError("continue_final_message is set but the chat template dropped part of "
                             "the final message, so it cannot be continued.")
        cut = rendered.rindex(tag)
        # Keep the message's own trailing spacing when the template kept it.
        rendered = rendered[:cut] if rendered[cut:cut + len(_CONTINUE_TAG)] == _CONTINUE_TAG \
            else rendered[:cut].rstrip()
    return rendered


@lru_cache(maxsize=32)
def _compile_chat_template(source: str) -> Any:
    """Compile in a sandbox: chat templates come from the Hub and are untrusted code."""
    from datetime import datetime

    import jinja2
    from jinja2.ext import Extension, loopcontrols

    class GenerationTag(Extension):
        # `{% generation %}...{% endgeneration %}` marks assistant text for training masks;
        # for inference it only renders its body.
        tags = {"generation"}

        def parse(self, parser):
            next(parser.stream)
            return parser.parse_statements(("name:endgeneration",), drop_needle=True)

    class SafeNamespace(jinja2.utils.Namespace):
        # Block underscore names, which could reach Python internals.
        def __init__(*args, **kwargs):
            self, args = args[0], args[1:]
            attrs = dict(*args, **kwargs)
            for name in attrs:
                SafeNamespace._check(name)
            jinja2.utils.Namespace.__init__(self, attrs)

        def __setitem__(self, name, value):
            SafeNamespace._check(name)
            jinja2.utils.Namespace.__setitem__(self, name, check_size(value, "a namespace value"))

        @staticmethod
        def _check(name):
            if isinstance(name, str) and name.startswith("_"):
                raise jinja2.exceptions.SecurityError(
                    f"Chat templates cannot set underscore attributes on a namespace ({name!r}).")

    def raise_exception(message):
        raise jinja2.exceptions.TemplateError(message)

    def tojson(value, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
        # Unlike Jinja's own filter: no HTML escaping, and json.dumps' options.
        if isinstance(indent, int) and not 0 <= indent <= 64:
            raise jinja2.exceptions.TemplateError(f"tojson: indent {indent} is not in 0..64.")
        return json.dumps(value, ensure_ascii=ensure_ascii, indent=indent, separators=separators,
                          sort_keys=sort_keys)

    def strftime_now(format):
        return datetime.now().strftime(format)

    env = bounded_sandbox()(trim_blocks=True, lstrip_blocks=True,  # an ImmutableSandboxedEnvironment
                            extensions=[GenerationTag, loopcontrols])
    env.filters["tojson"] = tojson
    env.globals.update(raise_exception=raise_exception, strftime_now=strftime_now,
                       namespace=SafeNamespace, dict=lambda *a, **k: dict(*a, **k))
    try:
        return env.from_string(source)
    except jinja2.exceptions.TemplateSyntaxError as err:
        raise InputError(f"The chat template is not valid Jinja: {err} (line {err.lineno}).") \
            from err
