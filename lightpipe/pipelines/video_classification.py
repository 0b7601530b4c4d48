"""video-classification: labels and scores for videos (VideoMAE and other models that read a
clip of frames through an image processor).

Each video is decoded with PyAV and ``num_frames`` frames are sampled as the reference does
(see ``lightpipe.processing.video``); each frame is resized and cropped as uint8, and a batch of
clips is rescaled and normalised at once just before the model."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import InputError
from .common import class_scores, classifier_options, given, ranked_labels, refuse_unknown
from .vision_base import SizeGroupedImagePipeline


class VideoClassificationPipeline(SizeGroupedImagePipeline):
    """Labels videos with a video classification model (VideoMAE, ...).

    Call:
        ``pipe(video, **args)`` where ``video`` is a file path, an http(s) URL, base64 data, bytes,
        or its frames (a list of PIL images or arrays, or a (frames, height, width, 3) array);
        or a list or iterator of videos. Files are decoded with PyAV.

    Arguments:
        top_k (int, default 5): how many labels to return, best first.
        num_frames (int, default ``config.num_frames``): frames sampled from each video.
        frame_sampling_rate (int, default 1): the frames are sampled evenly from the first
            ``num_frames * frame_sampling_rate`` frames.
        function_to_apply (str, default "softmax"): "softmax", "sigmoid" (default for
            multi-label models) or "none" (default for regression).
        timeout (float, optional): seconds to wait for a video URL.

    Returns:
        For one video, a list of ``{"score": float, "label": str}`` dicts, best first; for a list
        of videos, a list of those lists.
    """

    task = "video-classification"
    inputs_keyword = "videos"
    inputs_help = "a video (a path, URL, base64 data, bytes or a list of frames) or a list of videos"

    def split_inputs(self, inputs: Any, params: dict) -> tuple[Any, bool]:
        from ..processing.video import is_frame_list

        if isinstance(inputs, (bytearray, memoryview)):
            inputs = bytes(inputs)  # one file's bytes, not a sequence of items
        if isinstance(inputs, tuple) or (isinstance(inputs, list) and is_frame_list(inputs)):
            return [inputs], True  # one video given as its frames, not a batch of images
        return super().split_inputs(inputs, params)

    def _sanitize_parameters(self, top_k: Any = None, num_frames: Any = None,
                             frame_sampling_rate: Any = None, function_to_apply: Any = None,
                             timeout: float | None = None, **kwargs: Any):
        from ..processing.video import frame_indices

        refuse_unknown(self, kwargs)
        if num_frames is not None:
            frame_indices(num_frames)  # a positive integer, or a clear error now
        if frame_sampling_rate is not None:
            frame_indices(1, frame_sampling_rate)
        pre = given(timeout=timeout, num_frames=num_frames, frame_sampling_rate=frame_sampling_rate)
        return pre, {}, classifier_options(top_k, function_to_apply)

    def preprocess(self, item: Any, num_frames: int | None = None, frame_sampling_rate: int = 1,
                   timeout: float | None = None) -> dict:
        from ..processing.video import read_video

        self._check_processor()
        if num_frames is None:
            num_frames = self.model.config.get("num_frames")
            if num_frames is None:
                raise InputError("This model's config has no num_frames: pass num_frames=.")
        frames = read_video(item, num_frames, frame_sampling_rate, timeout)
        processor = self.image_processor
        arrays = [processor.prepare(frame) for frame in frames]
        if len({a.shape for a in arrays}) != 1:
            raise InputError("The frames of this video have different sizes after resizing; set a "
                             "crop size in the image processor so they match.")
        return {"pixel_values": np.stack(arrays)}  # (frames, height, width, 3) uint8

    def normalized(self, model_inputs: dict) -> dict:
        """(batch, frames, H, W, 3) uint8 -> (batch, frames, 3, H, W) in the model's dtype."""
        pixels = model_inputs["pixel_values"]
        batch, frames = pixels.shape[:2]
        flat = self.image_processor.normalize_batch(pixels.reshape(batch * frames, *pixels.shape[2:]),
                                                    dtype=self.model.dtype)
        return {**model_inputs, "pixel_values": flat.reshape(batch, frames, *flat.shape[1:])}

    def postprocess(self, model_outputs: dict, function_to_apply: str | None = None,
                    top_k: int = 5) -> list[dict]:
        config = self.model.config
        scores = class_scores(config, model_outputs["logits"][0], function_to_apply,
                              one_label_sigmoid=False)
        return [{"score": score, "label": label} for label, score in ranked_labels(config, scores, top_k)]
