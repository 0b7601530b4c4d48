"""image-to-image: super-resolution and restoration (Swin2SR), as transformers 4.x's
``ImageToImagePipeline`` (v5 removed it)."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import InputError
from .common import given, refuse_unknown
from .vision_base import SizeGroupedImagePipeline


class ImageToImagePipeline(SizeGroupedImagePipeline):
    """Turns images into images with an image-to-image model (Swin2SR super-resolution).

    Call:
        ``pipe(image, **args)`` where ``image`` is a local path, an http(s) URL, base64 data, a PIL
        image or an array; or a list, iterator or dataset of them. Images of one size share a
        batch, so results do not depend on ``batch_size``.

    Arguments:
        timeout (float, optional): seconds to wait for an image URL.
        head_mask: refused with a clear error (Swin2SR ignores it in the reference too).

    Returns:
        For one image, a PIL image (RGB, or L for a one-channel model): the model's
        reconstruction of the image *as its processor padded it* (Swin2SR mirrors the bottom and
        right edges out to the next multiple of 8), clamped to [0, 1] and rounded to 8 bits, as
        the reference returns it (a 64x64 input gives 144x144 at x2). For a list, a list of
        images.
    """

    task = "image-to-image"

    def _sanitize_parameters(self, timeout: float | None = None, head_mask: Any = None, **kwargs: Any):
        refuse_unknown(self, kwargs)
        if head_mask is not None:
            raise InputError("head_mask is not supported by lightpipe's image-to-image models "
                             "(Swin2SR ignores it in the reference too); leave it out.")
        return given(timeout=timeout), {}, {}

    def _forward(self, model_inputs: dict, **params: Any) -> dict:
        out = self.model(**self.normalized(model_inputs))
        if "reconstruction" not in out:
            raise InputError(f"{type(self.model).__name__} gives no reconstruction: the "
                             "image-to-image pipeline takes image-to-image models (Swin2SR).")
        return {"reconstruction": out["reconstruction"]}

    def postprocess(self, model_outputs: dict, **params: Any):
        """(1, channels, H, W) in [0, 1] -> a PIL image (RGB, or L for one channel)."""
        from PIL import Image

        values = model_outputs["reconstruction"][0].float().clamp(0, 1).numpy()
        pixels = (np.moveaxis(values, 0, -1) * 255.0).round().astype(np.uint8)
        if pixels.shape[-1] == 1:
            pixels = pixels[..., 0]
        return Image.fromarray(np.ascontiguousarray(pixels))
