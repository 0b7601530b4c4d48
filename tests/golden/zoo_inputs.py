"""The zoo's shared inputs (tests/golden/zoo/inputs/) and the '@name' placeholders of a
preprocessing call, read the same way by make_zoo.py (the reference) and tests/test_zoo.py
(lightpipe). Imports neither transformers nor lightpipe."""

from __future__ import annotations

from pathlib import Path

import numpy as np

INPUTS = Path(__file__).resolve().parent / "zoo" / "inputs"
TEXTS = ["Hello world, the quick brown fox jumps.", "What is the capital of France?"]
SAMPLE_RATE = 16000


def make_inputs() -> None:
    """Two odd-sized RGB images, one second of speech-like audio, four video frames."""
    from PIL import Image

    INPUTS.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for name, (height, width) in {"image0.png": (37, 53), "image1.png": (61, 45)}.items():
        if not (INPUTS / name).is_file():
            small = rng.integers(0, 256, (height // 8 + 1, width // 8 + 1, 3), dtype=np.uint8)
            Image.fromarray(small).resize((width, height), Image.BILINEAR).save(INPUTS / name)
    if not (INPUTS / "audio.npy").is_file():
        time = np.arange(SAMPLE_RATE) / SAMPLE_RATE
        tones = sum(np.sin(2 * np.pi * f * time) * a for f, a in ((220, 0.3), (660, 0.2), (1500, 0.1)))
        noise = 0.02 * np.random.default_rng(1).standard_normal(len(time))
        np.save(INPUTS / "audio.npy", (tones * (0.5 + 0.5 * np.sin(6 * time)) + noise).astype(np.float32))
    if not (INPUTS / "video.npy").is_file():
        frames = np.random.default_rng(2).integers(0, 256, (4, 40, 48, 3), dtype=np.uint8)
        np.save(INPUTS / "video.npy", frames)


def resolve(value):
    """A preprocessing call's arguments with '@texts', '@images', '@image', '@audio' and
    '@video' replaced by the inputs themselves."""
    from PIL import Image

    if isinstance(value, list):
        return [resolve(item) for item in value]
    if isinstance(value, dict):
        return {key: resolve(item) for key, item in value.items()}
    if value == "@texts":
        return list(TEXTS)
    if value == "@images":
        return [Image.open(INPUTS / f"image{i}.png").convert("RGB") for i in range(2)]
    if value == "@image":
        return Image.open(INPUTS / "image0.png").convert("RGB")
    if value == "@audio":
        return np.load(INPUTS / "audio.npy")
    if value == "@video":
        return list(np.load(INPUTS / "video.npy"))
    return value
