"""Audio inputs that would exhaust memory are refused before any large allocation (issue 16):
tiny or absurd sampling rates, ratios whose filter bank would be huge, and an unbounded
filter cache."""

from __future__ import annotations

import math

import numpy as np
import pytest

from lightpipe.errors import InputError
from lightpipe.processing import audio_io
from lightpipe.processing.audio_io import load_audio, resample


@pytest.mark.parametrize("rate", [4, 0, -16000, 10_000_000, float("nan"), float("inf"), "16000", True])
def test_absurd_sampling_rates_are_refused(rate):
    with pytest.raises(InputError, match="sampling_rate"):
        load_audio({"array": np.zeros(50_000, dtype=np.float32), "sampling_rate": rate}, 16000)


def test_a_ratio_with_a_huge_filter_bank_is_refused_before_building_it():
    before = dict(audio_io._KERNELS)
    with pytest.raises(InputError, match="too fine"):
        resample(np.zeros(1000, dtype=np.float32), 20004, 16000)
    assert dict(audio_io._KERNELS) == before


def test_the_filter_cache_stays_bounded(monkeypatch):
    monkeypatch.setattr(audio_io, "_CACHE_BYTES", 2_000_000)
    audio_io._KERNELS.clear()
    for rate in (11025, 22050, 44100, 32000, 24000, 12000, 37800, 47250, 18900, 14700):
        out = resample(np.zeros(rate // 10, dtype=np.float32), rate, 16000)
        assert out.shape == (math.ceil(16000 * (rate // 10) / rate),)
    cached = sum(kernel.numel() * 4 for kernel, _ in audio_io._KERNELS.values())
    assert cached <= 2_000_000
    assert len(audio_io._KERNELS) < 10


def test_ordinary_rates_still_resample():
    for rate in (8000, 22050, 44100, 48000, 96000):
        out, _ = load_audio({"array": np.zeros(rate, dtype=np.float32), "sampling_rate": rate}, 16000)
        assert out.shape == (16000,)
