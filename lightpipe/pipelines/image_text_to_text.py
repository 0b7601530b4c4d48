"""image-text-to-text: text generated from images and a prompt, by a vision-language model
(LLaVA 1.5: ``LlavaForConditionalGeneration``), as transformers 5's
``pipelines/image_text_to_text.py``.

- ``pipe(images=image_or_list, text="USER: <image>\\nWhat is this? ASSISTANT:")``: a prompt with
  one ``<image>`` per image -> ``[{"input_text": prompt, "generated_text": prompt + answer}]``.
- ``pipe(text=messages)``: chat messages whose content holds ``{"type": "image", "image" / "url"
  / "path": ...}`` and ``{"type": "text", "text": ...}`` parts, rendered by the chat template
  with the generation prompt -> ``[{"input_text": messages, "generated_text": messages +
  [{"role": "assistant", "content": answer}]}]`` (a chat ending in an assistant message is
  continued instead). A list of chats gives a list of such lists.
- ``pipe(images=[...], text=[prompt, ...])``: the images dealt out to the prompts in order (one
  per ``<image>``); each prompt runs alone, so its answer does not depend on padding (the
  reference pads on the tokenizer's side, right for some checkpoints, which spoils the shorter
  prompts' answers).
- ``max_new_tokens`` (default 256 unless the model's generation config sets a length),
  ``generate_kwargs``, ``return_full_text=False`` (only the new text), ``timeout`` for URLs.
"""

from __future__ import annotations

import copy
from typing import Any

from ..errors import InputError, InputTypeError
from .base import Pipeline
from .common import refuse_unknown

_IMAGE_KEYS = ("image", "url", "path")


class ImageTextToTextPipeline(Pipeline):
    """Generates text from images and text (LLaVA and other vision-language models), as
    transformers' pipeline.

    Call:
        ``pipe(images, text)`` with a prompt string (with the model's image tokens, or they are
        added), or ``pipe(text=messages)`` with chat messages whose content parts are
        ``{"type": "image", "image"/"url"/"path": ...}`` and ``{"type": "text", "text": ...}``;
        lists of either.

    Arguments:
        max_new_tokens (int, default 256): the longest reply.
        return_full_text (bool, default True): False gives only the new text.
        continue_final_message (bool, default None): continue the last (assistant) message
            instead of starting a reply; None: when the chat ends with an assistant message.
        skip_special_tokens (bool, default True): leave special tokens out of the text.
        generate_kwargs (dict, default None): any generate() argument.
        timeout (float, default None): seconds to fetch an image URL.

    Returns:
        Per input, ``[{"input_text": prompt or messages, "generated_text": str or messages with
        the assistant's reply}]``.
    """

    task = "image-text-to-text"
    default_max_new_tokens = 256

    def __init__(self, model, tokenizer=None, *args: Any, processor: Any = None,
                 image_processor: Any = None, **kwargs: Any):
        if not hasattr(model, "generate") or not hasattr(model, "embed_with_images"):
            raise InputError(f"The image-text-to-text pipeline needs a vision-language model "
                             f"(AutoModelForImageTextToText, e.g. LLaVA); {type(model).__name__} "
                             "is not one.")
        from ..processing.llava import LlavaProcessor

        if not (isinstance(processor, LlavaProcessor) and processor.ready()):
            processor = self._load_processor(model, tokenizer, image_processor)
        super().__init__(model, processor.tokenizer, *args, image_processor=processor.image_processor,
                         processor=processor, **kwargs)

    @staticmethod
    def _load_processor(model, tokenizer, image_processor):
        from ..families import FAMILIES, load
        from ..processing.llava import LlavaProcessor

        name = getattr(model, "name_or_path", None)
        if name is None:
            raise InputError("The image-text-to-text pipeline needs the model's processor: load "
                             "the model with from_pretrained or pass processor= (a "
                             "LlavaProcessor.from_pretrained(folder)).")
        family = FAMILIES.get(str(model.config.get("model_type")))
        processor_class = load(family.processor) if family and family.processor else LlavaProcessor
        processor = processor_class.from_pretrained(name)
        if tokenizer is not None:
            processor.tokenizer = tokenizer
        if image_processor is not None:
            processor.image_processor = image_processor
        return processor

    def _sanitize_parameters(self, max_new_tokens: int | None = None,
                             generate_kwargs: dict | None = None, return_full_text: bool | None = None,
                             continue_final_message: bool | None = None, timeout: float | None = None,
                             skip_special_tokens: bool | None = None, **kwargs: Any):
        refuse_unknown(self, kwargs, ". Pass generate() arguments as generate_kwargs={...}.")
        forward: dict[str, Any] = {}
        if generate_kwargs is not None:
            if not isinstance(generate_kwargs, dict):
                raise InputTypeError(f"generate_kwargs must be a dict of generate() arguments, got "
                                     f"{type(generate_kwargs).__name__}.")
            forward.update(generate_kwargs)
        if max_new_tokens is not None:
            if "max_new_tokens" in forward:
                raise ValueError("'max_new_tokens' is defined twice, once in 'generate_kwargs' and "
                                 "once as a direct parameter, please use only one")
            forward["max_new_tokens"] = max_new_tokens
        pre = {"timeout": timeout, "continue_final_message": continue_final_message}
        post = {"return_full_text": True if return_full_text is None else bool(return_full_text),
                "continue_final_message": continue_final_message,
                "skip_special_tokens": True if skip_special_tokens is None else skip_special_tokens}
        return pre, forward, post

    # --- inputs and answers ---
    def gather_inputs(self, images: Any = None, text: Any = None, **params: Any) -> tuple[Any, dict]:
        """``pipe(images=..., text=...)`` -> a chat, a list of chats, or ``{"text": prompt or
        prompts, "images": ...}``."""
        if images is None and text is None:
            raise InputError("You must at least provide either text or images.")
        if text is None and _is_chat(images):  # a chat given positionally
            images, text = None, images
        if _is_chat(text):
            if images is not None:
                raise InputError("Invalid input: you passed `chat` and `images` as separate input "
                                 "arguments. Images must be placed inside the chat message's "
                                 "`content`, e.g. {'type': 'image', 'url': ...}.")
            return text, params
        if text is None:
            raise InputError("You must provide text for this pipeline: a prompt with one <image> "
                             "per image, or chat messages.")
        return {"text": text, "images": images}, params

    def split_inputs(self, inputs: Any, params: dict) -> tuple[list, bool]:
        """Items are ``{"text": a prompt or a chat, "images": that prompt's images}``. Several
        prompts: the images are dealt out in order, as many to each prompt as it has <image>
        tokens."""
        if _is_chat(inputs):
            if isinstance(inputs[0], dict):
                return [{"text": inputs, "images": None}], True
            return [{"text": chat, "images": None} for chat in inputs], False
        text, images = inputs["text"], inputs.get("images")
        if isinstance(text, (list, tuple)) and text and all(isinstance(t, str) for t in text):
            return self._deal_images(list(text), images), False
        if not isinstance(text, str):
            raise InputTypeError(f"text must be a prompt string, a list of them, or chat messages "
                                 f"(a list of dicts with 'role' and 'content'), got "
                                 f"{type(text).__name__}.")
        return [{"text": text, "images": images}], True

    def _deal_images(self, prompts: list[str], images: Any) -> list[dict]:
        listed = [] if images is None else list(images) if isinstance(images, (list, tuple)) else [images]
        token = self.processor.image_token
        wanted = sum(prompt.count(token) for prompt in prompts)
        if wanted != len(listed):
            raise InputError(f"The prompts have {wanted} {token} tokens in all but {len(listed)} "
                             f"image(s) were given: put one {token} where each image goes.")
        items, start = [], 0
        for prompt in prompts:
            count = prompt.count(token)
            items.append({"text": prompt, "images": listed[start:start + count] or None})
            start += count
        return items

    def shape_results(self, inputs: Any, single: bool, params: dict, results: list) -> Any:
        """Several prompts give one flat list of records, as the reference."""
        if isinstance(inputs, dict) and not single:
            return [record for records in results for record in records]
        return super().shape_results(inputs, single, params, results)

    def run_window(self, items: list, batch_size: int | None, pre: dict, fwd: dict,
                   post: dict) -> list:
        """Each prompt runs alone (no padding), so its answer is the one it gets by itself (the
        reference pads on the tokenizer's side, right for some checkpoints, which spoils the
        shorter prompts' answers)."""
        return [self.postprocess(self._forward(self.preprocess(item, **pre), **fwd), **post)
                for item in items]

    def preprocess(self, item: dict, timeout: float | None = None,
                   continue_final_message: bool | None = None) -> dict:
        from ..processing.image import load_image

        prompt, images = item["text"], item.get("images")
        if isinstance(prompt, str):
            loaded = None
            if images is not None:
                listed = images if isinstance(images, (list, tuple)) else [images]
                loaded = [load_image(image, timeout=timeout) for image in listed]
            encoded = self.processor(text=prompt, images=loaded)
            return {**encoded, "prompt": prompt}
        messages = [_check_message(message) for message in prompt]
        if continue_final_message is None:
            continue_final_message = messages[-1]["role"] == "assistant"
        loaded, shown = [], []
        for message in messages:
            content = message["content"]
            if isinstance(content, str):
                shown.append(message)
                continue
            parts = []
            for part in content:
                if isinstance(part, dict) and part.get("type") == "image":
                    source = next((part[k] for k in _IMAGE_KEYS if part.get(k) is not None), None)
                    if source is None:
                        raise InputError("An image part of the chat has no image: give it as "
                                         "{'type': 'image', 'image': ...} (or 'url' / 'path').")
                    loaded.append(_chat_image(source, timeout))
                    part = {"type": "image"}
                parts.append(part)
            shown.append({**message, "content": parts})
        template = self.processor.chat_template
        rendered = self.tokenizer.apply_chat_template(
            shown, chat_template=template, tokenize=False,
            add_generation_prompt=not continue_final_message,
            continue_final_message=continue_final_message)
        bos = getattr(self.tokenizer, "bos_token", None)
        special = not (bos and rendered.startswith(bos))  # the template wrote it already
        encoded = self.processor(text=rendered, images=loaded or None, add_special_tokens=special)
        return {**encoded, "prompt": prompt, "continue_final_message": continue_final_message}

    def _forward(self, inputs: dict, **generate_kwargs: Any) -> dict:
        import torch

        generate_kwargs = dict(generate_kwargs)
        config = self.model.generation_config
        if "generation_config" not in generate_kwargs and "max_new_tokens" not in generate_kwargs \
                and "max_length" not in generate_kwargs and config.max_new_tokens is None \
                and config.max_length in (None, 20):
            generate_kwargs["max_new_tokens"] = self.default_max_new_tokens
        device = self.device
        pixel_values = inputs.get("pixel_values")
        if pixel_values is not None:
            pixel_values = torch.as_tensor(pixel_values).to(device=device, dtype=self.dtype)
        input_ids = torch.as_tensor(inputs["input_ids"]).to(device)
        mask = inputs.get("attention_mask")
        mask = torch.as_tensor(mask).to(device) if mask is not None else None
        with torch.no_grad():
            # the processor outputs the model's images read besides pixel_values (LLaVA-
            # OneVision's image sizes, Qwen2-VL's patch grids)
            extra = {key: inputs[key] for key in getattr(self.model, "image_input_names", ())
                     if inputs.get(key) is not None}
            sequences = self.model.generate(input_ids=input_ids, pixel_values=pixel_values,
                                            attention_mask=mask, **extra, **generate_kwargs)
        if not hasattr(sequences, "shape"):  # return_dict_in_generate=True
            sequences = sequences["sequences"]
        return {"sequences": sequences, "input_ids": input_ids, "prompt": inputs["prompt"],
                "continue_final_message": inputs.get("continue_final_message")}

    def postprocess(self, outputs: dict, return_full_text: bool = True,
                    continue_final_message: bool | None = None,
                    skip_special_tokens: bool = True) -> list[dict]:
        decode = self.tokenizer.batch_decode
        prompt = outputs["prompt"]
        generated = decode(outputs["sequences"].tolist(), skip_special_tokens=skip_special_tokens)
        decoded_input = decode(outputs["input_ids"].tolist(), skip_special_tokens=skip_special_tokens)[0]
        records = []
        for text in generated:
            start = text.find(decoded_input)
            if 0 <= start <= 2:  # the prompt (after up to 2 stray characters) comes back: cut it
                text = text[start + len(decoded_input):]
            if return_full_text:
                text = self._full(prompt, text, outputs, continue_final_message)
            records.append({"input_text": prompt, "generated_text": text})
        return records

    @staticmethod
    def _full(prompt: Any, text: str, outputs: dict, continue_final_message: bool | None) -> Any:
        if isinstance(prompt, str):
            return prompt + text
        if continue_final_message is None:
            continue_final_message = outputs.get("continue_final_message")
        messages = list(prompt)
        if not continue_final_message:
            return messages + [{"role": "assistant", "content": text}]
        last = copy.copy(messages[-1])
        content = last["content"]
        if isinstance(content, str):
            content = content + text
        else:
            final = dict(content[-1])
            final["text"] = final["text"] + text
            content = list(content[:-1]) + [final]
        return messages[:-1] + [{"role": last["role"], "content": content}]


def _is_chat(value: Any) -> bool:
    return isinstance(value, (list, tuple)) and len(value) > 0 and \
        isinstance(value[0], (list, tuple, dict))


def _chat_image(source: Any, timeout: float | None) -> Any:
    """A chat's image as the reference's processor gets it: a PIL image as given (the image
    processor composites its transparency on white); a path, URL or data loaded as RGB (which
    drops the alpha channel, as the reference's load_image)."""
    from PIL import Image

    from ..processing.image import load_image

    return source if isinstance(source, Image.Image) else load_image(source, timeout=timeout)


def _check_message(message: Any) -> dict:
    if not isinstance(message, dict) or "role" not in message or "content" not in message:
        raise InputTypeError("Chat messages must be dicts with 'role' and 'content' (a string, or "
                             "a list of {'type': 'image', ...} and {'type': 'text', ...} parts).")
    return message
