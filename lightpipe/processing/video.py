"""Videos: decode a file, bytes or URL with PyAV, sample frames as transformers'
video-classification pipeline does, and VideoMAE's image processor (each frame resized,
center-cropped, rescaled and normalised; ``pixel_values`` (batch, frames, 3, height, width)).

Frame sampling: ``num_frames`` indices spread evenly over the first
``num_frames * frame_sampling_rate`` frames (``numpy.linspace`` truncated to integers), so
``frame_sampling_rate=1`` takes the first ``num_frames`` frames.
"""

from __future__ import annotations

import io
import os
from typing import TYPE_CHECKING, Any

from ..errors import InputError, InputTypeError
from .image import (IMAGENET_STANDARD_MEAN, IMAGENET_STANDARD_STD, URL_MAX_BYTES, BatchFeature,
                    ImageProcessor, _is_array)

if TYPE_CHECKING:
    import numpy as np
    import torch

VIDEO_URL_MAX_BYTES = 16 * URL_MAX_BYTES  # 1 GiB: a video download larger than this is refused


def frame_indices(num_frames: int, frame_sampling_rate: int = 1) -> "np.ndarray":
    """The frame numbers the reference pipeline reads: evenly spaced over the first
    ``num_frames * frame_sampling_rate`` frames."""
    import numpy as np

    for name, value in (("num_frames", num_frames), ("frame_sampling_rate", frame_sampling_rate)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise InputError(f"{name} must be a positive integer, got {value!r}.")
    return np.linspace(0, num_frames * frame_sampling_rate - 1, num=num_frames, dtype=np.int64)


def is_frame(value: Any) -> bool:
    """A single frame: a PIL image or a 2-D/3-D array."""
    try:
        from PIL import Image
    except ImportError:  # pragma: no cover - pillow is part of the vision extra
        Image = None
    if Image is not None and isinstance(value, Image.Image):
        return True
    return _is_array(value) and len(value.shape) in (2, 3)


def is_frame_list(value: Any) -> bool:
    """One video given as its frames: a 4-D array or a non-empty list of frames."""
    if _is_array(value) and len(value.shape) == 4:
        return True
    return isinstance(value, (list, tuple)) and bool(value) and all(is_frame(f) for f in value)


def read_video(video: Any, num_frames: int, frame_sampling_rate: int = 1,
               timeout: float | None = None) -> list:
    """A video -> its sampled frames: (height, width, 3) uint8 arrays for a file, bytes or URL;
    the given frames (PIL images or arrays) for a list of frames or a (frames, ...) array."""
    indices = frame_indices(num_frames, frame_sampling_rate)
    if is_frame_list(video):
        frames = list(video)
        return [frames[i] for i in _check_count(indices, len(frames), "The given frame list")]
    source, name = _open_source(video, timeout)
    return _decode(source, indices, name)


def _check_count(indices, available: int, what: str):
    needed = int(indices[-1]) + 1
    if available < needed:
        raise InputError(
            f"{what} has {available} frames, but sampling {len(indices)} frames needs the first "
            f"{needed} (num_frames * frame_sampling_rate). Pass a smaller frame_sampling_rate "
            "(num_frames is fixed by the model) or a longer video.")
    return [int(i) for i in indices]


def _open_source(video: Any, timeout: float | None) -> tuple[Any, str]:
    """A path, URL, data: URI / base64 text or bytes -> something av.open reads, and its name."""
    import base64
    import binascii

    if isinstance(video, os.PathLike):
        video = os.fspath(video)
    if isinstance(video, (bytes, bytearray)):
        return io.BytesIO(bytes(video)), "the given bytes"
    if not isinstance(video, str):
        raise InputTypeError(
            "A video must be a file path, an http(s) URL, base64 data, bytes, or its frames (a "
            f"list of PIL images or arrays, or a (frames, height, width, 3) array); got "
            f"{type(video).__name__}.")
    if video.startswith(("http://", "https://")):
        from .image import fetch_url

        return io.BytesIO(fetch_url(video, timeout, VIDEO_URL_MAX_BYTES)), video
    if os.path.isfile(video):
        return video, video
    is_uri = video.startswith("data:") and "," in video
    data = video.split(",", 1)[1] if is_uri else video
    if is_uri or len(data) >= 64:
        try:
            return io.BytesIO(base64.b64decode(data.strip(), validate=True)), "the base64 data"
        except (binascii.Error, ValueError):
            pass
    if os.path.isdir(video):
        raise InputError(f"{video!r} is a folder, not a video file.")
    shown = video if len(video) < 120 else video[:117] + "..."
    raise InputError(f"No video at {shown!r}: it is not an existing file, an http(s) URL, or "
                     "base64 data. Check the path (relative paths start from the current directory).")


def _import_av():
    try:
        import av
    except ImportError:
        from ..errors import missing_extra

        raise missing_extra("av") from None
    return av


def _check_frame_size(stream: Any, name: str) -> None:
    """A frame larger than Pillow's decompression-bomb limit is refused before decoding (the
    server sets that limit with --max-image-pixels)."""
    try:
        from PIL import Image
        limit = Image.MAX_IMAGE_PIXELS
    except ImportError:
        limit = 89_478_485  # Pillow's default
    width, height = stream.codec_context.width or 0, stream.codec_context.height or 0
    if limit and width * height > limit:
        raise InputError(f"The frames of {name} are {width}x{height} pixels, over the limit of "
                         f"{limit:,} pixels per frame. Pass a smaller video.")


def _decode(source: Any, indices, name: str) -> list:
    """Decode the first video stream up to the last index; keep the frames at ``indices``."""
    av = _import_av()
    wanted = {int(i) for i in indices}
    last = int(indices[-1])
    frames = []
    count = 0
    try:
        with av.open(source, mode="r") as container:
            if not container.streams.video:
                raise InputError(f"{name} has no video stream (is it an audio file or an image?).")
            _check_frame_size(container.streams.video[0], name)
            for count, frame in enumerate(container.decode(video=0), start=1):
                if count - 1 in wanted:
                    frames.append(frame.to_ndarray(format="rgb24"))
                if count - 1 >= last:
                    break
    except InputError:
        raise
    except (av.error.FFmpegError, OSError, ValueError) as err:
        raise InputError(f"Could not decode the video from {name}: {err}. Is it a video file "
                         "(mp4, webm, avi, mkv ...) that is complete?") from None
    _check_count(indices, count, f"The video {name}")
    return frames


class VideoMAEImageProcessor(ImageProcessor):
    """VideoMAE's frames processor (also ViViT-style models' legacy image processor): each frame
    resized so its short side is ``size["shortest_edge"]`` (bilinear), center-cropped to
    ``crop_size``, rescaled and normalised. ``processor(video or videos, return_tensors="pt")``
    -> ``{"pixel_values": (batch, frames, 3, height, width)}``; a video is a list of frames (PIL
    images or arrays) or a (frames, height, width, 3) array."""

    image_processor_type = "VideoMAEImageProcessor"
    default_to_square = False
    defaults = {**ImageProcessor.defaults, "size": {"shortest_edge": 224},
                "do_center_crop": True, "crop_size": {"height": 224, "width": 224},
                "image_mean": IMAGENET_STANDARD_MEAN, "image_std": IMAGENET_STANDARD_STD}

    def prepare_video(self, frames: list, **options: Any) -> "np.ndarray":
        """One video's frames -> (frames, height, width, 3) uint8 after resize and crop."""
        import numpy as np

        opts = options or self.options()
        arrays = [self.prepare(frame, **opts) for frame in frames]
        if len({a.shape for a in arrays}) != 1:
            raise InputError("The frames of this video have different sizes after resizing; set a "
                             "crop size so they match.")
        return np.stack(arrays)

    def normalize_videos(self, pixels: "torch.Tensor", dtype: Any = None, **options: Any) -> "torch.Tensor":
        """(batch, frames, height, width, 3) uint8 -> (batch, frames, 3, height, width) float."""
        batch, frames = pixels.shape[:2]
        flat = self.normalize_batch(pixels.reshape(batch * frames, *pixels.shape[2:]), dtype, **options)
        return flat.reshape(batch, frames, *flat.shape[1:])

    def preprocess(self, videos: Any = None, return_tensors: str | None = None, device: Any = None,
                   data_format: Any = None, input_data_format: Any = None, images: Any = None,
                   **kwargs: Any) -> BatchFeature:
        import numpy as np
        import torch

        videos = images if videos is None else videos
        if videos is None:
            raise InputError(f"{type(self).__name__} needs a video (a list of frames) or a list of "
                             "videos.")
        if is_frame(videos):
            batch = [[videos]]
        elif is_frame_list(videos):
            batch = [list(videos)]
        elif (isinstance(videos, (list, tuple)) and videos and all(is_frame_list(v) for v in videos)) \
                or (_is_array(videos) and len(videos.shape) == 5):
            batch = [list(v) for v in videos]
        else:
            raise InputTypeError(f"{type(self).__name__} takes a video (a list of frames: PIL "
                                 "images or arrays) or a list of videos.")
        opts = self.options(**kwargs)
        arrays = [self.prepare_video(frames, **opts) for frames in batch]
        if len({a.shape for a in arrays}) != 1:
            raise InputError(f"These videos have different shapes after processing "
                             f"({sorted({a.shape for a in arrays})}); give each the same number of "
                             "frames.")
        values = self.normalize_videos(torch.from_numpy(np.stack(arrays)), **opts)
        output = BatchFeature(pixel_values=values)
        if device is not None:
            output = output.to(device)
        if return_tensors in (None, "np", "numpy"):
            array = values.numpy()
            return BatchFeature(pixel_values=list(array) if return_tensors is None else array)
        if return_tensors != "pt":
            raise InputError(f"return_tensors={return_tensors!r} is not supported: use 'pt', 'np' "
                             "or None.")
        return output
