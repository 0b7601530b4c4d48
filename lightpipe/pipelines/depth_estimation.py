"""depth-estimation: a depth map per image (DPT)."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import InputError
from .common import refuse_unknown
from .vision_base import SizeGroupedImagePipeline, check_timeout


class DepthEstimationPipeline(SizeGroupedImagePipeline):
    """Estimates the depth of every pixel of an image (DPT, Depth Anything, GLPN, ...).

    Call:
        ``pipe(image, **args)`` where ``image`` is a local path, an http(s) URL, base64 data, a PIL
        image or an array; or a list, iterator or dataset of them.

    Arguments:
        timeout (float, optional): seconds to wait for an image URL.
        parameters (dict, optional): the reference's older form, ``{"timeout": seconds}``.

    Returns:
        For one image, ``{"predicted_depth": torch.Tensor, "depth": PIL.Image}``, both at the
        original image's size: the model's depth as a (height, width) float tensor resized
        bicubically, and that depth stretched to 0-255 as a mode "L" image for viewing. For a
        list of images, a list of those dicts.
    """

    task = "depth-estimation"

    def _sanitize_parameters(self, timeout: float | None = None, parameters: dict | None = None,
                             **kwargs: Any):
        refuse_unknown(self, kwargs, "; it takes timeout.")
        pre = {}
        if isinstance(parameters, dict) and parameters.get("timeout") is not None:
            timeout = parameters["timeout"] if timeout is None else timeout
        if timeout is not None:
            pre["timeout"] = check_timeout(timeout)
        return pre, {}, {}

    def _forward(self, model_inputs: dict, **params: Any) -> dict:
        return {"predicted_depth": self.model(**self.normalized(model_inputs))["predicted_depth"]}

    def postprocess(self, model_outputs: dict) -> dict:
        post = getattr(self.image_processor, "post_process_depth_estimation", None)
        if post is None:
            raise InputError("depth-estimation needs an image processor with "
                             "post_process_depth_estimation (a DPT image processor).")
        depth = model_outputs["predicted_depth"].float()
        predicted = post({"predicted_depth": depth}, [model_outputs["target_size"]])[0]["predicted_depth"]
        values = predicted.numpy()
        # As the reference: stretched to [0, 1] (a flat map gives NaN -> 0), then truncated to uint8.
        with np.errstate(divide="ignore", invalid="ignore"):
            values = (values - values.min()) / (values.max() - values.min())
        from PIL import Image

        image = Image.fromarray(np.nan_to_num(values * 255, nan=0.0).astype("uint8"))
        return {"predicted_depth": predicted, "depth": image}
