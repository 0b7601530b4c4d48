"""image-to-text: a caption per image, from a vision encoder-decoder's ``generate()``.

transformers 5 dropped this pipeline (image-text-to-text replaced it); lightpipe keeps it with
transformers 4.57's semantics (``pipelines/image_to_text.py``):
- Generation settings: the call's (``max_new_tokens``, ``generate_kwargs``) > the pipeline's
  (``pipeline(..., num_beams=2)``) > the model's generation config > the task's
  ``config.task_specific_params["image-to-text"]`` > the pipeline default
  ``max_new_tokens=256``; as in 4.57, a model ``max_length`` other than 20 replaces that
  default, and a ``max_new_tokens`` still set beats a ``max_length`` given in the call.
- Inputs: every form the image pipelines take (path, URL, PIL image, array, base64, bytes),
  lists, iterators, datasets; ``timeout`` for URLs.
- ``prompt=``: conditional captioning (BLIP: the caption continues the prompt, and includes
  it), refused for vision-encoder-decoder models with the reference's error.
- Outputs: ``[{"generated_text": ...}]`` per image (one record per returned sequence).
"""

from __future__ import annotations

import logging
from typing import Any

from ..errors import InputError
from .common import given, refuse_unknown
from .generative import pipeline_generation
from .vision_base import ImagePipeline

logger = logging.getLogger("lightpipe")


class ImageToTextPipeline(ImagePipeline):
    """Captions images with an image-to-text model (BLIP, VisionEncoderDecoder, ...).

    Call:
        ``pipe(image, **args)`` where ``image`` is a local path, an http(s) URL, base64 data, a PIL
        image or an array; or a list, iterator or dataset of them.

    Arguments:
        max_new_tokens (int, optional): most tokens to generate.
        generate_kwargs (dict, optional): any ``generate()`` argument (``num_beams``,
            ``max_length``, ``repetition_penalty``, ...); other unknown keywords are refused.
        prompt (str, optional): conditional captioning: the caption continues this text
            (deprecated in the reference for the image-text-to-text pipeline; warned about).
        timeout (float, optional): seconds to wait for an image URL.

    Returns:
        For one image, ``[{"generated_text": str}]``; for a list of images, a list of those
        lists.
    """

    task = "image-to-text"
    default_generation = {"max_new_tokens": 256}

    def __init__(self, model, tokenizer=None, *args: Any, task: str = "", **kwargs: Any):
        if not getattr(model, "is_encoder_decoder", False) or not hasattr(model, "generate"):
            raise InputError(f"The image-to-text pipeline needs an image captioning model "
                             f"(AutoModelForVision2Seq); {type(model).__name__} is not one.")
        if tokenizer is None:
            raise InputError("The image-to-text pipeline needs the model's tokenizer to decode the "
                             "captions: pass tokenizer= (an object or a folder).")
        self.generation_config, _ = pipeline_generation(
            model, tokenizer, kwargs, self.default_generation, task or type(self).task)
        super().__init__(model, tokenizer, *args, task=task, **kwargs)

    def _sanitize_parameters(self, max_new_tokens: int | None = None,
                             generate_kwargs: dict | None = None, prompt: Any = None,
                             timeout: float | None = None, **kwargs: Any):
        refuse_unknown(self, kwargs, ". Pass generate() arguments as generate_kwargs={...}.")
        forward = given(max_new_tokens=max_new_tokens)
        if generate_kwargs is not None:
            if not isinstance(generate_kwargs, dict):
                raise InputError(f"generate_kwargs must be a dict of generate() arguments, got "
                                 f"{type(generate_kwargs).__name__}.")
            if max_new_tokens is not None and "max_new_tokens" in generate_kwargs:
                raise ValueError("`max_new_tokens` is defined both as an argument and inside "
                                 "`generate_kwargs` argument, please use only 1 version")
            forward.update(generate_kwargs)
        return given(prompt=prompt, timeout=timeout), forward, {}

    # --- running ---
    def preprocess(self, item: Any, prompt: Any = None, timeout: float | None = None) -> dict:
        image = self.load(item, timeout)
        if prompt is not None:
            logger.warning("Passing `prompt` to the `image-to-text` pipeline is deprecated (as in "
                           "transformers 4.48+); use the `image-text-to-text` pipeline instead.")
            if not isinstance(prompt, str):
                raise InputError(
                    f"Received an invalid text input, got - {type(prompt)} - but expected a single "
                    "string. Note also that one single text can be provided for conditional image "
                    "to text generation.")
            model_type = self.model.config.get("model_type")
            if model_type == "vision-encoder-decoder":
                raise InputError(f"Model type {model_type} does not support conditional text "
                                 "generation: caption without prompt=.")
            encoded = self.tokenizer(prompt)  # BLIP: [CLS] prompt [SEP], the caption's start
            return {"pixel_values": self.pixels(image), "input_ids": list(encoded["input_ids"]),
                    "attention_mask": list(encoded["attention_mask"])}
        return {"pixel_values": self.pixels(image)}

    def _forward(self, model_inputs: dict, **generate_kwargs: Any) -> dict:
        inputs = self.normalized(model_inputs)
        pixel_values = inputs.pop("pixel_values")
        batch = pixel_values.shape[0]
        if "generation_config" not in generate_kwargs:
            generate_kwargs["generation_config"] = self.generation_config
        output_ids = self.model.generate(pixel_values, **inputs, **generate_kwargs)
        if not hasattr(output_ids, "shape"):  # return_dict_in_generate=True
            output_ids = output_ids["sequences"]
        return {"output_ids": output_ids.reshape(batch, output_ids.shape[0] // batch, -1)}

    def postprocess(self, model_outputs: dict) -> list[dict]:
        return [{"generated_text": self.tokenizer.decode(ids.tolist(), skip_special_tokens=True)}
                for ids in model_outputs["output_ids"][0]]
