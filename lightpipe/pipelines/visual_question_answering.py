"""visual-question-answering (vqa): answer a question about an image (ViLT), as transformers
4.x's ``VisualQuestionAnsweringPipeline`` (v5 removed it)."""

from __future__ import annotations

import types
from collections.abc import Iterator
from typing import Any

from ..errors import InputError, InputTypeError
from .common import given, raise_type, refuse_unknown
from .vision_base import ImagePipeline


class VisualQuestionAnsweringPipeline(ImagePipeline):
    """Answers questions about images with a classifier over an answer vocabulary (ViLT, ...).

    Call:
        ``pipe(image, question)``, ``pipe(image=..., question=...)``, ``pipe({"image": ...,
        "question": ...})``, a list of such dicts (or an iterator / dataset of them); one image
        with a list of questions; a list of images with one question; or a list of images and a
        list of questions, which asks every question of every image (questions outer, images
        inner). An image is a local path, an http(s) URL, base64 data, a PIL image or an array.
        Images of different sizes share a batch, padded, with a pixel mask: results do not
        depend on ``batch_size``.

    Arguments:
        top_k (int, default 5): how many answers to return, best first (at most the number of
            labels).
        padding (bool | str, default False), truncation (bool | str, default False): how the
            questions are tokenized.
        timeout (float, optional): seconds to wait for an image URL.

    Returns:
        For one (image, question), a list of ``{"score": float, "answer": str}`` dicts, best
        first, each answer of ``config.id2label`` scored by a sigmoid; for several, a list of
        those lists.
    """

    task = "visual-question-answering"

    def gather_inputs(self, image: Any = None, question: Any = None, *args: Any,
                      **params: Any) -> tuple[Any, dict]:
        """``pipe(image, question)`` and the other forms of the class docstring -> one
        {"image", "question"} dict, a list of them, or an iterable of them."""
        if "images" in params:
            if image is not None:
                raise TypeError("Pass the images once: as the first argument or as image=.")
            image = params.pop("images")
        if "inputs" in params:
            if image is not None:
                raise TypeError("Pass the inputs once: as the first argument or as inputs=.")
            image = params.pop("inputs")
        if args:
            raise TypeError(f"{type(self).__name__} takes an image and a question; got "
                            f"{2 + len(args)} positional arguments.")
        return _pairs(image, question), params

    def _sanitize_parameters(self, top_k: Any = None, padding: Any = None, truncation: Any = None,
                             timeout: float | None = None, **kwargs: Any):
        refuse_unknown(self, kwargs)
        post: dict[str, Any] = {}
        if top_k is not None:
            if not isinstance(top_k, int) or isinstance(top_k, bool) or top_k < 0:
                raise InputError(f"top_k must be a whole number of answers (0 or more), got {top_k!r}.")
            post["top_k"] = top_k
        return given(padding=padding, truncation=truncation, timeout=timeout), {}, post

    # --- preprocessing: one tokenizer call per window; images as uint8 arrays ---
    def preprocess_many(self, items: list, padding: Any = False, truncation: Any = False,
                        timeout: float | None = None) -> list[dict]:
        if self.tokenizer is None:
            raise InputError("The visual-question-answering pipeline needs a tokenizer for the "
                             "questions: pass tokenizer= (or a model folder with tokenizer files).")
        checked = [_check_item(item) for item in items]
        questions = [question for _, question in checked]
        encoded = self.tokenizer(questions, padding=padding, truncation=truncation)
        pieces = []
        for row, (image, _) in enumerate(checked):
            piece = {key: list(encoded[key][row]) for key in encoded.keys()}
            piece["pixel_values"] = self.pixels(self.load(image, timeout))
            pieces.append(piece)
        return pieces

    def preprocess(self, item: Any, **params: Any) -> dict:
        return self.preprocess_many([item], **params)[0]

    def stack_images(self, images: list) -> dict:
        """Images zero-padded to the largest, with their pixel mask (uint8 until _forward
        normalises them): images of different sizes share a batch."""
        import numpy as np

        from ..processing.image import pad_batch

        pixels, mask = pad_batch([np.asarray(image) for image in images])
        return {"pixel_values": pixels.to(self.device), "pixel_mask": mask.to(self.device)}

    def _forward(self, model_inputs: dict, **params: Any) -> dict:
        inputs = dict(model_inputs)
        processor = self.image_processor
        options = processor.options()
        values = processor.normalize_batch(inputs["pixel_values"], dtype=self.model.dtype, **options)
        inputs["pixel_values"] = values * inputs["pixel_mask"][:, None].to(values.dtype)
        out = self.model(**inputs)
        if "logits" not in out:
            raise InputError(f"{type(self.model).__name__} gives no answer logits: the "
                             "visual-question-answering pipeline takes classifier models (ViLT).")
        return {"logits": out["logits"]}

    def postprocess(self, model_outputs: dict, top_k: int = 5) -> list[dict]:
        labels = self.model.config.id2label
        top_k = min(top_k, self.model.config.num_labels)
        probabilities = model_outputs["logits"][0].float().sigmoid()
        scores, ids = probabilities.topk(top_k)
        return [{"score": score, "answer": labels[index]}
                for score, index in zip(scores.tolist(), ids.tolist())]


def _is_single_image(value: Any) -> bool:
    return not isinstance(value, (list, tuple, dict, types.GeneratorType, Iterator)) and \
        not (hasattr(value, "__len__") and hasattr(value, "__getitem__")
             and not isinstance(value, (str, bytes, bytearray)) and not hasattr(value, "shape")
             and not hasattr(value, "getpixel"))


def _pairs(image: Any, question: Any) -> Any:
    """The call's image(s) and question(s) -> one {"image", "question"} dict, a list of them,
    or the caller's iterable of them (as the reference pairs them)."""
    if image is None:
        raise InputError("The visual-question-answering pipeline needs an image and a question: "
                         "pipe(image=..., question=...) or pipe({'image': ..., 'question': ...}).")
    if question is None:
        return image  # dicts, a list of dicts, an iterator or dataset of dicts
    questions = list(question) if isinstance(question, (list, tuple)) else None
    if questions is not None:
        if not questions:
            raise InputError("question is an empty list: pass at least one question.")
        for item in questions:
            if not isinstance(item, str):
                raise_type(item, "visual-question-answering", "questions as strings")
    elif not isinstance(question, str):
        raise_type(question, "visual-question-answering", "a question as a string (or a list of strings)")
    if isinstance(image, dict):
        raise InputError("Pass either a dict {'image': ..., 'question': ...} or image= and "
                         "question=, not both.")
    if isinstance(image, (list, tuple)):
        images = list(image)
        if not images:
            raise InputError("image is an empty list: pass at least one image.")
        if questions is None:
            return [{"image": item, "question": question} for item in images]
        return [{"image": item, "question": text} for text in questions for item in images]
    if isinstance(image, (types.GeneratorType, Iterator)) or not _is_single_image(image):
        if questions is not None:
            raise InputError("With an iterator or dataset of images, ask one question (a string).")
        return ({"image": item, "question": question} for item in image)
    if questions is None:
        return {"image": image, "question": question}
    return [{"image": image, "question": text} for text in questions]


def _check_item(item: Any) -> tuple[Any, str]:
    if not isinstance(item, dict):
        raise InputTypeError(
            "The visual-question-answering pipeline takes pipe(image=..., question=...), a dict "
            f"{{'image': ..., 'question': ...}} or a list of such dicts; got {type(item).__name__}"
            + (" without a question." if not isinstance(item, (list, tuple)) else "."))
    missing = [key for key in ("image", "question") if item.get(key) is None]
    if missing:
        raise InputError(f"The input dict has no {' and no '.join(repr(m) for m in missing)}: "
                         "pass {'image': ..., 'question': ...}.")
    if not isinstance(item["question"], str):
        raise_type(item["question"], "visual-question-answering", "a question as a string")
    return item["image"], item["question"]
