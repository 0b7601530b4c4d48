"""depth-estimation: a depth map per image (DPT)."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import InputError
from .common import refuse_unknown
from .vision_base import SizeGroupedImagePipeline, check_timeout


class DepthEstimationPipeline(SizeGroupedImagePipeline):
    """``pipe(image)`` -> ``{"predicted_depth": (height, width) float tensor, "depth": PIL "L"
    image}``, both at the original image's size: the model's depth resized (bicubic), and that
    depth stretched to 0-255 for viewing. A list in, a list out."""

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
