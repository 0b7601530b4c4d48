"""The bases of the image tasks: images are loaded, resized and cropped per item as uint8
arrays (few copies), and each batch is rescaled and normalised at once (numpy on the CPU, torch
on a GPU), just before the model."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import InputError
from .base import Pipeline


def check_timeout(timeout: Any) -> float:
    """An image download ``timeout``: a positive number of seconds."""
    if not isinstance(timeout, (int, float)) or isinstance(timeout, bool) or timeout <= 0:
        raise InputError(f"timeout must be a positive number of seconds, got {timeout!r}.")
    return float(timeout)


class ImagePipeline(Pipeline):
    """Base of the image tasks. ``preprocess`` -> ``{"pixel_values": (H, W, 3) uint8 array}``;
    ``collate`` stacks the images (``stack_images``) and pads any text inputs; ``_forward``
    normalises the batch with the image processor (``normalized``), then runs the model."""

    # The keyword a call may give its inputs by instead, and what they are (for the error).
    inputs_keyword = "images"
    inputs_help = "an image (a path, URL, PIL image, array or base64 data) or a list of them"

    def gather_inputs(self, inputs: Any = None, *args: Any, **params: Any) -> tuple[Any, dict]:
        by_name = params.pop(self.inputs_keyword, None)
        if by_name is not None:
            if inputs is not None:
                raise TypeError(f"Pass the {self.inputs_keyword} once: as the first argument or "
                                f"as {self.inputs_keyword}=.")
            inputs = by_name
        if inputs is None:
            raise InputError(f"The {self.task} pipeline needs {self.inputs_help}.")
        return super().gather_inputs(inputs, *args, **params)

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

    def collate(self, pieces: list[dict]) -> tuple[dict, list[dict]]:
        """Text inputs padded as any pipeline pads them; the images by ``stack_images``."""
        batch, extras = super().collate([{k: v for k, v in piece.items() if k != "pixel_values"}
                                         for piece in pieces])
        batch.update(self.stack_images([piece["pixel_values"] for piece in pieces]))
        return batch, extras

    def stack_images(self, images: list[np.ndarray]) -> dict:
        """uint8 images -> ``{"pixel_values": (batch, H, W, 3) uint8 tensor}`` on the model's
        device, stacked in numpy (one thread: see ImageProcessor.normalize_batch)."""
        import torch

        # A processor whose images keep their own size (SigLIP 2's NaFlex patches) makes the
        # model inputs itself, normalised.
        stack = getattr(self.image_processor, "collate", None) \
            if getattr(self.image_processor, "collates_own_sizes", False) else None
        if stack is not None:
            return {key: value.to(self.device) for key, value in stack(images).items()}
        return {"pixel_values": torch.from_numpy(np.stack(images)).to(self.device)}

    def normalized(self, model_inputs: dict) -> dict:
        inputs = dict(model_inputs)
        if getattr(self.image_processor, "collates_own_sizes", False):  # normalised (stack_images)
            inputs["pixel_values"] = inputs["pixel_values"].to(self.model.dtype)
        else:  # uint8, or float padding some processors add (OWLv2): normalise here
            inputs["pixel_values"] = self.image_processor.normalize_batch(
                inputs["pixel_values"], dtype=self.model.dtype)
        return inputs

    def _forward(self, model_inputs: dict, **params: Any) -> dict:
        return self.model(**self.normalized(model_inputs))

    def save_pretrained(self, folder: str) -> None:
        super().save_pretrained(folder)
        if self.image_processor is not None:
            self.image_processor.save_pretrained(folder)


class SizeGroupedImagePipeline(ImagePipeline):
    """Image tasks whose images keep their own processed size (DETR's, DPT's with
    ``keep_aspect_ratio``, Swin2SR's padding; video clips of frames with no crop): only images
    of one size share a batch, since padding them would change what the model sees, so results
    do not depend on ``batch_size``. Each piece carries its original ``target_size`` (height,
    width) to postprocess."""

    def preprocess(self, item: Any, timeout: float | None = None) -> dict:
        image = self.load(item, timeout)
        return {"pixel_values": self.pixels(image), "target_size": (image.height, image.width)}

    def make_batches(self, pieces: list[dict], batch_size: int) -> list[list[int]]:
        groups: dict[tuple, list[int]] = {}
        for index, piece in enumerate(pieces):
            groups.setdefault(tuple(piece["pixel_values"].shape), []).append(index)
        return [indices[start:start + batch_size] for indices in groups.values()
                for start in range(0, len(indices), batch_size)]
