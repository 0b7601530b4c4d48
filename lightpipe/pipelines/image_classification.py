"""image-classification: labels and scores for images. Also ``ImagePipeline``, the shared base
of the image tasks: images are loaded, resized and cropped per item as uint8 arrays (few
copies), and each batch is rescaled and normalised at once (numpy on the CPU, torch on a GPU),
just before the model."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import InputError
from .base import Pipeline, check_function_to_apply, class_scores


class ImagePipeline(Pipeline):
    """Base of the image tasks. ``preprocess`` -> ``{"pixel_values": (H, W, 3) uint8 array}``;
    ``_forward`` normalises the batch with the image processor, then runs the model."""

    def __call__(self, inputs: Any = None, *args: Any, images: Any = None, **kwargs: Any) -> Any:
        if images is not None:
            if inputs is not None:
                raise TypeError("Pass the images once: as the first argument or as images=.")
            inputs = images
        if inputs is None:
            raise InputError(f"The {self.task} pipeline needs an image (a path, URL, PIL image, "
                             "array or base64 data) or a list of them.")
        return super().__call__(inputs, *args, **kwargs)

    def _check_processor(self) -> None:
        if self.image_processor is None or not hasattr(self.image_processor, "prepare"):
            raise InputError(f"The {self.task} pipeline needs a lightpipe image processor "
                             "(lightpipe.AutoImageProcessor.from_pretrained(model folder)).")

    def load(self, item: Any, timeout: float | None = None):
        from ..processing.image import load_image

        return load_image(item, timeout=timeout)

    def pixels(self, image: Any) -> np.ndarray:
        """A loaded image -> its (H, W, 3) uint8 array after resize and crop."""
        self._check_processor()
        return self.image_processor.prepare(image)

    def preprocess(self, item: Any, timeout: float | None = None) -> dict:
        return {"pixel_values": self.pixels(self.load(item, timeout))}

    def _collate(self, pieces: list[dict]) -> tuple[dict, list[dict]]:
        """Pieces' uint8 images -> one (batch, H, W, 3) uint8 tensor on the model's device,
        stacked in numpy (one thread: see ImageProcessor.normalize_batch)."""
        import torch

        pixels = torch.from_numpy(np.stack([piece["pixel_values"] for piece in pieces]))
        extras = [{k: v for k, v in piece.items() if k != "pixel_values"} for piece in pieces]
        return {"pixel_values": pixels.to(self.device)}, extras

    def normalized(self, model_inputs: dict) -> dict:
        inputs = dict(model_inputs)
        inputs["pixel_values"] = self.image_processor.normalize_batch(
            inputs["pixel_values"], dtype=self.model.dtype)
        return inputs

    def _forward(self, model_inputs: dict, **params: Any) -> dict:
        return self.model(**self.normalized(model_inputs))

    def save_pretrained(self, folder: str) -> None:
        super().save_pretrained(folder)
        if self.image_processor is not None:
            self.image_processor.save_pretrained(folder)


def check_timeout(timeout: Any) -> float:
    """An image download ``timeout``: a positive number of seconds."""
    if not isinstance(timeout, (int, float)) or isinstance(timeout, bool) or timeout <= 0:
        raise InputError(f"timeout must be a positive number of seconds, got {timeout!r}.")
    return float(timeout)


class SizeGroupedImagePipeline(ImagePipeline):
    """Image tasks whose images keep their own processed size (DETR's, DPT's with
    ``keep_aspect_ratio``, Swin2SR's padding): only images of one size share a batch, since
    padding them would change what the model sees, so results do not depend on
    ``batch_size``. Each piece carries its original ``target_size`` (height, width) to
    postprocess."""

    def preprocess(self, item: Any, timeout: float | None = None) -> dict:
        image = self.load(item, timeout)
        return {"pixel_values": self.pixels(image), "target_size": (image.height, image.width)}

    def _forward_pieces(self, pieces: list[dict], batch_size: int, fwd: dict) -> list[dict]:
        groups: dict[tuple, list[int]] = {}
        for index, piece in enumerate(pieces):
            groups.setdefault(tuple(piece["pixel_values"].shape), []).append(index)
        outputs: list[dict | None] = [None] * len(pieces)
        for indices in groups.values():
            for start in range(0, len(indices), batch_size):
                chosen = indices[start:start + batch_size]
                done = super()._forward_pieces([pieces[j] for j in chosen], batch_size, fwd)
                for j, out in zip(chosen, done):
                    outputs[j] = out
        return outputs  # type: ignore[return-value]


class ImageClassificationPipeline(ImagePipeline):
    """``pipe(image)`` -> ``[{"label": ..., "score": ...}, ...]`` (the ``top_k`` best, 5 by
    default). ``function_to_apply``: "softmax", "sigmoid" or "none" (default: sigmoid for one
    label or multi-label models, none for regression, softmax otherwise, as the reference)."""

    task = "image-classification"

    def _sanitize_parameters(self, top_k: Any = None, function_to_apply: Any = None,
                             timeout: float | None = None, **kwargs: Any):
        if kwargs:
            raise TypeError(f"{type(self).__name__} got unexpected arguments: {', '.join(kwargs)}")
        pre, post = {}, {}
        if timeout is not None:
            pre["timeout"] = timeout
        if top_k is not None:
            if not isinstance(top_k, int) or isinstance(top_k, bool) or top_k < 1:
                raise ValueError(f"top_k must be a positive integer, got {top_k!r}.")
            post["top_k"] = top_k
        if function_to_apply is not None:
            post["function_to_apply"] = check_function_to_apply(function_to_apply)
        return pre, {}, post

    def postprocess(self, model_outputs: dict, function_to_apply: str | None = None,
                    top_k: int = 5) -> list[dict]:
        config = self.model.config
        scores = class_scores(config, model_outputs["logits"][0], function_to_apply)
        results = [{"label": config.id2label[i], "score": score.item()} for i, score in enumerate(scores)]
        results.sort(key=lambda entry: entry["score"], reverse=True)
        return results[:min(top_k, config.num_labels)]
