"""image-feature-extraction: a vision model's hidden states (or pooled output) for images."""

from __future__ import annotations

from typing import Any

from ..errors import InputError
from .common import given, refuse_unknown
from .vision_base import ImagePipeline


class ImageFeatureExtractionPipeline(ImagePipeline):
    """Returns the hidden states (or pooled vector) of an image model (ViT, DINOv2, CLIP, ...).

    Call:
        ``pipe(image, **args)`` where ``image`` is a local path, an http(s) URL, base64 data, a PIL
        image or an array; or a list, iterator or dataset of them.

    Arguments:
        pool (bool, default False): return the model's ``pooler_output`` instead of its
            ``last_hidden_state``.
        return_tensors (bool, default False): return torch tensors instead of nested lists.
        image_processor_kwargs (dict, optional): override the image processor's settings
            (``size``, ``do_center_crop``, ...).
        timeout (float, optional): seconds to wait for an image URL.

    Returns:
        For one image, nested lists of shape ``[1][tokens][hidden]`` (``[1][hidden]`` with
        ``pool=True``), or a tensor of that shape with ``return_tensors=True``; for a list of
        images, a list of those.
    """

    task = "image-feature-extraction"

    def _sanitize_parameters(self, image_processor_kwargs: dict | None = None,
                             return_tensors: Any = None, pool: Any = None,
                             timeout: float | None = None, **kwargs: Any):
        refuse_unknown(self, kwargs)
        options = {"processor_options": dict(image_processor_kwargs)} if image_processor_kwargs else {}
        return ({**options, **given(timeout=timeout)}, options,
                given(pool=pool, return_tensors=return_tensors))

    def preprocess(self, item: Any, timeout: float | None = None,
                   processor_options: dict | None = None) -> dict:
        self._check_processor()
        image = self.load(item, timeout)
        options = self.image_processor.options(**(processor_options or {}))
        return {"pixel_values": self.image_processor.prepare(image, **options)}

    def _forward(self, model_inputs: dict, processor_options: dict | None = None) -> dict:
        options = self.image_processor.options(**(processor_options or {}))
        pixels = self.image_processor.normalize_batch(model_inputs["pixel_values"],
                                                      dtype=self.model.dtype, **options)
        return self.model(**{**model_inputs, "pixel_values": pixels})

    def postprocess(self, model_outputs: dict, pool: bool = False, return_tensors: bool = False) -> Any:
        if pool:
            if "pooler_output" not in model_outputs:
                raise InputError("This model has no pooled output (no pooler layer), so pool=True "
                                 "cannot be used; leave pool out to get the hidden states.")
            outputs = model_outputs["pooler_output"]
        else:
            outputs = model_outputs["last_hidden_state"]
        return outputs if return_tensors else outputs.tolist()
