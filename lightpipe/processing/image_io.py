"""Image input: a path, an http(s) URL, base64 data, bytes, a PIL image, an array or a tensor
-> an upright RGB PIL image, as transformers' ``image_utils.load_image`` (EXIF orientation
applied, then RGB); URL downloads with a bounded timeout and a size limit. An image over PIL's
``Image.MAX_IMAGE_PIXELS`` is refused before it is decoded (PIL only warns below twice that:
a decompression bomb, a small file that decodes to gigabytes).
"""

from __future__ import annotations

import base64
import binascii
import io
import os
import time
import types
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from ..errors import InputError, InputTypeError

if TYPE_CHECKING:
    from PIL import Image

URL_TIMEOUT = 10.0               # seconds, when the caller gives none
URL_MAX_TIMEOUT = 120.0          # a caller's timeout is capped at this (the whole download)
URL_MAX_BYTES = 64 * 1024 * 1024  # an image larger than this is refused
_EXIF_ORIENTATION = 0x0112


# --- loading ---------------------------------------------------------------------------------
def load_image(image: Any, timeout: float | None = None) -> "Image.Image":
    """A path, an http(s) URL, base64 data (a ``data:`` URI or a raw base64 string), bytes, a PIL
    image, a numpy array (HWC or CHW, uint8 or float in [0, 1]) or a torch tensor -> an upright
    RGB PIL image (as transformers' ``load_image``: EXIF orientation, then ``convert("RGB")``)."""
    from PIL import Image

    if isinstance(image, os.PathLike):
        image = os.fspath(image)
    if isinstance(image, str):
        image = _open_string(image, timeout)
    elif isinstance(image, (bytes, bytearray)):
        image = _open_bytes(bytes(image), "the given bytes")
    elif not isinstance(image, Image.Image):
        if _is_array(image):
            image = array_to_pil(image)
        else:
            raise InputTypeError(
                f"An image must be a file path, an http(s) URL, base64 data, a PIL image or a "
                f"numpy array; got {type(image).__name__}.")
    if image.width == 0 or image.height == 0:
        raise InputError(f"The image is empty ({image.width}x{image.height} pixels): pass an "
                         "image with at least one pixel.")
    return to_rgb(upright(image))


def upright(image: "Image.Image") -> "Image.Image":
    """Apply the EXIF orientation tag (the camera's rotation), copying only when there is one."""
    from PIL import ImageOps

    try:
        orientation = image.getexif().get(_EXIF_ORIENTATION, 1)
    except Exception:  # a damaged EXIF block: as the reference, keep the pixels as stored
        return image
    return ImageOps.exif_transpose(image) if orientation not in (None, 1) else image


def to_rgb(image: "Image.Image") -> "Image.Image":
    return image if image.mode == "RGB" else image.convert("RGB")


def to_rgb_on_white(image: "Image.Image") -> "Image.Image":
    """RGB with any transparency composited onto white (the processors' ``do_convert_rgb``)."""
    from PIL import Image

    if "A" in image.getbands() or image.info.get("transparency") is not None:
        image = image.convert("RGBA")
        background = Image.new("RGBA", image.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, image).convert("RGB")
    return to_rgb(image)


def _open_string(text: str, timeout: float | None) -> "Image.Image":
    if text.startswith(("http://", "https://")):
        return _open_bytes(fetch_url(text, timeout), text)
    if os.path.isfile(text):
        return _open_file(text)
    is_uri = text.startswith("data:") and "," in text
    data = text.split(",", 1)[1] if is_uri else text
    raw = None
    if is_uri or len(data) >= 64:  # shorter strings are mistyped paths, not images
        try:
            raw = base64.b64decode(data.strip(), validate=True)
        except (binascii.Error, ValueError):
            raw = None
    if raw:
        return _open_bytes(raw, "the base64 data")
    if os.path.isdir(text):
        raise InputError(f"{text!r} is a folder, not an image file.")
    shown = text if len(text) < 120 else text[:117] + "..."
    raise InputError(f"No image at {shown!r}: it is not an existing file, an http(s) URL, or "
                     "base64 data. Check the path (relative paths start from the current "
                     "directory).")


def _open_file(path: str) -> "Image.Image":
    from PIL import Image, UnidentifiedImageError

    try:
        image = Image.open(path)
        _check_pixels(image, path)
        image.load()
    except Image.DecompressionBombError as err:
        raise InputError(f"{path}: {err}") from None
    except UnidentifiedImageError:
        raise InputError(f"{path} is not an image file PIL can read (is it an image? JPEG, PNG, "
                         "WebP, BMP, GIF and TIFF are supported).") from None
    except OSError as err:
        raise InputError(f"Could not read the image {path}: {err}. The file may be truncated "
                         "or damaged.") from None
    return image


def _open_bytes(data: bytes, source: str) -> "Image.Image":
    from PIL import Image, UnidentifiedImageError

    try:
        image = Image.open(io.BytesIO(data))
        _check_pixels(image, source)
        image.load()
    except Image.DecompressionBombError as err:
        raise InputError(f"The image from {source}: {err}") from None
    except UnidentifiedImageError:
        raise InputError(f"The data from {source} is not an image PIL can read.") from None
    except OSError as err:
        raise InputError(f"Could not decode the image from {source}: {err}.") from None
    return image


def _check_pixels(image: "Image.Image", source: str) -> None:
    """PIL's bomb warning as an error: no image over ``Image.MAX_IMAGE_PIXELS`` is decoded."""
    from PIL import Image

    limit = Image.MAX_IMAGE_PIXELS
    pixels = image.width * image.height
    if limit and pixels > limit:
        raise InputError(f"The image from {source} has {pixels:,} pixels, more than the limit of "
                         f"{limit:,} (PIL's Image.MAX_IMAGE_PIXELS): it could be a decompression "
                         "bomb. Raise Image.MAX_IMAGE_PIXELS if you trust it.")


def fetch_url(url: str, timeout: float | None = None, max_bytes: int = URL_MAX_BYTES) -> bytes:
    """Download an image, with a timeout (for the whole download, at most URL_MAX_TIMEOUT)
    and a size limit; a clear error when offline."""
    import urllib.error
    import urllib.request

    if os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on"):
        raise InputError(f"Cannot fetch {url}: HF_HUB_OFFLINE is set, so lightpipe makes no "
                         "network requests. Download the image and pass its file path.")
    request = urllib.request.Request(url, headers={"User-Agent": "lightpipe"})
    if not isinstance(timeout, (int, float)) or isinstance(timeout, bool) or not timeout > 0:
        timeout = URL_TIMEOUT
    timeout = min(float(timeout), URL_MAX_TIMEOUT)
    deadline = time.monotonic() + timeout
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            length = response.headers.get("Content-Length")
            if length is not None and length.isdigit() and int(length) > max_bytes:
                raise InputError(f"{url} is {int(length)} bytes, more than the {max_bytes}-byte "
                                 "limit for images.")
            chunks, size = [], 0
            while size <= max_bytes:
                if time.monotonic() > deadline:
                    raise InputError(f"Could not fetch {url}: no complete answer within "
                                     f"{timeout:g} s.")
                chunk = response.read1(65536)
                if not chunk:
                    break
                chunks.append(chunk)
                size += len(chunk)
            data = b"".join(chunks)
    except urllib.error.HTTPError as err:
        raise InputError(f"Could not fetch {url}: HTTP {err.code} {err.reason}.") from None
    except (urllib.error.URLError, OSError) as err:
        reason = getattr(err, "reason", err)
        raise InputError(f"Could not fetch {url}: {reason}. Check the address and the network "
                         "connection, or download the image and pass its file path.") from None
    if len(data) > max_bytes:
        raise InputError(f"{url} is more than the {max_bytes}-byte limit for images.")
    return data


def _is_array(value: Any) -> bool:
    return hasattr(value, "shape") and hasattr(value, "dtype") and hasattr(value, "__array__")


def array_to_pil(array: Any) -> "Image.Image":
    """A numpy array or tensor (HWC or CHW; 1, 3 or 4 channels or 2-D; uint8 or float in
    [0, 1]) -> a PIL image. Floats become uint8 as the reference converts them (x * 255,
    truncated)."""
    import numpy as np
    from PIL import Image

    if hasattr(array, "detach"):
        array = array.detach().cpu().numpy()
    array = np.asarray(array)
    if array.ndim == 3 and array.shape[0] in (1, 3, 4) and array.shape[-1] not in (1, 3, 4):
        array = np.moveaxis(array, 0, -1)  # CHW -> HWC
    if array.ndim == 3 and array.shape[-1] == 1:
        array = array[..., 0]
    if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[-1] not in (3, 4)):
        raise InputError(f"An image array must be (height, width), (height, width, channels) "
                         f"or (channels, height, width) with 1, 3 or 4 channels; got shape "
                         f"{tuple(array.shape)}.")
    if array.size == 0:
        raise InputError(f"The image array is empty (shape {tuple(array.shape)}).")
    if array.dtype != np.uint8:
        if array.dtype == np.bool_:
            array = array.astype(np.uint8) * 255
        elif np.issubdtype(array.dtype, np.floating) and not np.allclose(array, np.round(array)):
            if array.min() < 0 or array.max() > 1:
                raise InputError("A float image array must hold values in [0, 1] (or whole "
                                 f"numbers in [0, 255]); got [{array.min()}, {array.max()}].")
            array = (array * 255).astype(np.uint8)
        else:
            if array.min() < 0 or array.max() > 255:
                raise InputError("An integer image array must hold values in [0, 255]; got "
                                 f"[{array.min()}, {array.max()}].")
            array = array.astype(np.uint8)
    return Image.fromarray(np.ascontiguousarray(array))


def image_list(images: Any) -> tuple[list, bool]:
    """One image, a list/tuple or an iterator of images -> (list, whether a batch was given)."""
    if isinstance(images, (list, tuple)):
        return list(images), True
    if isinstance(images, (types.GeneratorType, Iterator)):
        return list(images), True
    if _is_array(images) and len(images.shape) == 4:  # a batch array (N, H, W, C) / (N, C, H, W)
        return list(images), True
    return [images], False
