"""Image, video and audio inputs arrive as JSON, and are made safe before they are queued:

    media_inputs(kind, items, field, allow_urls)   JSON -> bytes, arrays, or MediaUrl marks
    await resolve_media(state, kind, items, parameters)
        URLs: refused unless the server allows them (--allow-urls), else fetched by fetch.py in
        a thread pool (never in the model's worker), within the server's timeout (a request's
        ``parameters.timeout`` only lowers it) and size cap; images: their pixel count checked
        from the header (decompression bombs), all before batching.

A server never opens a path on its own disk because a client named it: image parts of chat
messages (``{"type": "image", "url" / "path" / "image": ...}``) go through the same checks.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import io
import os
from typing import Any

from .errors import ApiError, type_name
from .fetch import UrlRefused, fetch

_MEDIA_HELP = {
    "image": "an image is a base64 string of the file's bytes, a data: URI or an http(s) URL",
    "video": "a video is a base64 string of the file's bytes, a data: URI or an http(s) URL",
    "audio": ('audio is a base64 string of the file\'s bytes, a data: URI, or {"array": [samples], '
              '"sampling_rate": N}'),
}
_IMAGE_PART_KEYS = ("image", "url", "path")


class MediaUrl(str):
    """An http(s) URL a client gave where a file goes: fetched (or refused) before batching."""


def media_inputs(kind: str, items: list, field: str, allow_urls: bool = False) -> list:
    """Image, video and audio inputs arrive as JSON: base64 file bytes (or a data: URI), an
    http(s) URL, or for audio {"array": [...], "sampling_rate": N}. ``kind`` is the task's."""
    if kind == "multimodal":  # an image, {"image": ..., "question": ...}, or chat messages
        return [_multimodal_item(item, f"{field}[{index}]") for index, item in enumerate(items)]
    if kind not in ("image", "audio", "video"):
        return items
    return [_media_item(kind, item, f"{field}[{index}]", allow_urls) for index, item in enumerate(items)]


def _media_item(kind: str, item: Any, param: str, allow_urls: bool = False) -> Any:
    if isinstance(item, dict) and kind == "audio":
        return _audio_array(item, param)
    if isinstance(item, dict) and kind == "image" and "image" in item:
        return {**item, "image": _media_item(kind, item["image"], f"{param}.image")}
    if not isinstance(item, str) or not item:
        raise ApiError(422, f"{param}: {_MEDIA_HELP[kind]}, not {type_name(item)}.", "invalid_type", param)
    if item.startswith(("http://", "https://")):
        if kind == "audio" and not allow_urls:
            raise ApiError(422, f"{param}: the server does not fetch audio URLs; {_MEDIA_HELP[kind]}.",
                           "invalid_input", param)
        return MediaUrl(item)
    if len(item) < 4096 and os.path.exists(item):
        raise ApiError(422, f"{param}: the server does not read files from its own disk; "
                            f"{_MEDIA_HELP[kind]}.", "invalid_input", param)
    data = item.split(",", 1)[1] if item.startswith("data:") and "," in item else item
    try:
        return base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise ApiError(422, f"{param} is not valid base64; {_MEDIA_HELP[kind]}.", "invalid_input",
                       param) from None


def _audio_array(item: dict, param: str) -> dict:
    """{"array": numbers, "sampling_rate": an integer} -> a float32 array (1-D, or 2-D for
    channels); strings, nested ragged lists and booleans are refused."""
    import numpy as np

    samples = item.get("array", item.get("raw"))
    rate = item.get("sampling_rate")
    if not isinstance(samples, list) or not isinstance(rate, int) or isinstance(rate, bool):
        raise ApiError(422, f"{param}: {_MEDIA_HELP['audio']}.", "invalid_type", param)
    try:
        array = np.asarray(samples)
    except ValueError:  # ragged nested lists
        array = None
    if array is None or array.dtype.kind not in "iuf" or array.ndim not in (1, 2) or not array.size:
        raise ApiError(422, f"{param}: 'array' must be a non-empty list of numbers (or of equal "
                            "lists of numbers, one per channel).", "invalid_input", param)
    return {"array": array.astype(np.float32), "sampling_rate": rate}


def _multimodal_item(item: Any, param: str) -> Any:
    """An image-and-text task's input: its image, as any image input, alone (image-to-text),
    under "image" / "images", or as image parts of chat messages; a dict without an image stays
    as it is (document question answering with the client's word_boxes)."""
    if isinstance(item, (dict, list)):
        return _images_inside(item, param)
    return _media_item("image", item, param)


def _images_inside(value: Any, param: str) -> Any:
    """``value`` with each image it holds checked; the same object when it holds none."""
    if isinstance(value, list):
        changed = [_images_inside(v, f"{param}[{i}]") if isinstance(v, (dict, list)) else v
                   for i, v in enumerate(value)]
        return changed if any(a is not b for a, b in zip(changed, value)) else value
    if not isinstance(value, dict):
        return value
    if value.get("type") == "image":  # a chat content part
        key = next((k for k in _IMAGE_PART_KEYS if value.get(k) is not None), None)
        if key is None:
            return value
        return {"type": "image", "image": _media_item("image", value[key], f"{param}.{key}")}
    changes: dict[str, Any] = {}
    if value.get("image") is not None:
        changes["image"] = _media_item("image", value["image"], f"{param}.image")
    images = value.get("images")
    if images is not None:
        listed = images if isinstance(images, list) else [images]
        converted = [_media_item("image", image, f"{param}.images[{i}]") for i, image in enumerate(listed)]
        changes["images"] = converted if isinstance(images, list) else converted[0]
    for key in ("text", "content", "messages"):
        if isinstance(value.get(key), list):
            inner = _images_inside(value[key], f"{param}.{key}")
            if inner is not value[key]:
                changes[key] = inner
    return {**value, **changes} if changes else value


# --- before batching: URLs fetched or refused, image sizes checked ---

async def resolve_media(state: Any, kind: str, items: list, parameters: dict) -> list:
    """``items`` with every MediaUrl fetched (422 when URLs are off or one cannot be used) and
    every image's pixel count checked (422 past ``max_image_pixels``)."""
    if kind not in ("image", "video", "audio", "multimodal"):
        return items
    settings = state.settings
    urls = list(dict.fromkeys(_find(items, MediaUrl)))
    if urls and not settings.allow_urls:
        raise ApiError(422, "This server does not fetch URLs (it starts with them off; see "
                            "--allow-urls): send the file's bytes as base64.", "urls_disabled", "inputs")
    loop = asyncio.get_running_loop()
    pool = state.media_pool()
    fetched: dict[str, bytes] = {}
    if urls:
        timeout = settings.url_timeout_s
        asked = parameters.get("timeout")
        if isinstance(asked, (int, float)) and not isinstance(asked, bool) and asked > 0:
            timeout = min(timeout, float(asked))
        calls = [loop.run_in_executor(pool, fetch, url, timeout, settings.url_max_bytes) for url in urls]
        results = await asyncio.gather(*calls, return_exceptions=True)
        for url, result in zip(urls, results):
            if isinstance(result, BaseException):
                if isinstance(result, UrlRefused):
                    raise ApiError(422, "A URL input could not be used.", "url_refused", "inputs")
                raise result
            fetched[url] = result
        items = _replace(items, fetched)
    if kind in ("image", "multimodal"):
        images = list(_find(items, (bytes, bytearray)))
        if images:
            await loop.run_in_executor(pool, _check_pixels, images, settings.max_image_pixels)
    return items


def _find(value: Any, kinds: Any):
    if isinstance(value, kinds):
        yield value
    elif isinstance(value, list):
        for item in value:
            yield from _find(item, kinds)
    elif isinstance(value, dict):
        for item in value.values():
            yield from _find(item, kinds)


def _replace(value: Any, fetched: dict) -> Any:
    if isinstance(value, MediaUrl):
        return fetched[value]
    if isinstance(value, list):
        return [_replace(item, fetched) for item in value]
    if isinstance(value, dict):
        return {key: _replace(item, fetched) for key, item in value.items()}
    return value


def _check_pixels(images: list, limit: int) -> None:
    """Each image's size from its header (nothing decoded): 422 past ``limit`` pixels. Files
    PIL cannot identify are left to the pipeline, which says what is wrong with them."""
    from PIL import Image

    for data in images:
        try:
            with Image.open(io.BytesIO(data)) as image:  # reads the header only
                width, height = image.size
        except Image.DecompressionBombError:  # past twice PIL's own limit
            width, height = limit + 1, 1
        except Exception:  # not an image PIL knows: the pipeline's error says so
            continue
        if width * height > limit:
            raise ApiError(422, f"An image of {width * height:,} pixels is larger than this server "
                                f"takes ({limit:,} pixels).", "image_too_large", "inputs")
