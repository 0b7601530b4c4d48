"""video-classification against the reference (transformers 5's pipeline, which runs here
with VideoMAE's PIL image processor and no torchvision) on a tiny random VideoMAE and tiny
H.264 files: frame sampling, pixel values, results for every argument, batched and not; other
input forms (bytes, base64, frames) against the reference model on the reference processor's
pixels; clear errors."""

from __future__ import annotations

import base64
import sys

import numpy as np
import pytest
import torch
import transformers
from PIL import Image

import lightpipe
from lightpipe.errors import InputError, InputTypeError
from lightpipe.processing.video import frame_indices, read_video

from ..conftest import assert_outputs_close
from ..fixtures.video import reference_frames, video_files, videomae_checkpoint  # noqa: F401


@pytest.fixture(scope="module")
def pipes(videomae_checkpoint):
    """(ours, the reference's) for a checkpoint variant; cached."""
    made = {}

    def make(**overrides):
        key = repr(sorted(overrides.items()))
        if key not in made:
            folder = videomae_checkpoint(**overrides)
            made[key] = (lightpipe.pipeline("video-classification", model=str(folder)),
                         transformers.pipeline("video-classification", model=str(folder)))
        return made[key]

    return make


@pytest.mark.parametrize("num_frames,rate", [(4, 1), (4, 2), (4, 3), (4, 4), (3, 5), (1, 1), (16, 1)])
def test_frame_sampling_matches_reference(video_files, num_frames, rate):
    indices = np.linspace(0, num_frames * rate - 1, num=num_frames, dtype=np.int64)
    assert frame_indices(num_frames, rate).tolist() == indices.tolist()
    got = np.stack(read_video(str(video_files["main"]), num_frames, rate))
    want = reference_frames(video_files["main"], indices)
    assert got.dtype == np.uint8 and got.shape == want.shape == (num_frames, 40, 48, 3)
    assert np.array_equal(got, want)
    # Distinct frames really were picked (the blocks move).
    if num_frames > 1:
        assert not np.array_equal(got[0], got[-1])


def test_pixel_values_match_reference(pipes, video_files):
    ours, theirs = pipes()
    for rate in (1, 3):
        got = ours.normalized({"pixel_values": torch.from_numpy(
            ours.preprocess(str(video_files["wide"]), frame_sampling_rate=rate)["pixel_values"])[None]})
        want = theirs.preprocess(str(video_files["wide"]), frame_sampling_rate=rate)
        assert got["pixel_values"].shape == (1, 4, 3, 32, 32)
        torch.testing.assert_close(got["pixel_values"], want["pixel_values"], rtol=1e-5, atol=1e-6)


CALLS = [{}, {"top_k": 2}, {"top_k": 50}, {"top_k": 1}, {"frame_sampling_rate": 2},
         {"frame_sampling_rate": 3, "top_k": 3}, {"num_frames": 4}, {"function_to_apply": "sigmoid"},
         {"function_to_apply": "none", "top_k": 4}, {"function_to_apply": "softmax"}]


@pytest.mark.parametrize("kwargs", CALLS, ids=lambda k: ",".join(f"{a}={b}" for a, b in k.items()) or "default")
def test_outputs_match_reference(pipes, video_files, kwargs):
    ours, theirs = pipes()
    path = str(video_files["main"])
    want = theirs(path, **kwargs)
    got = ours(path, **kwargs)
    assert len(got) == min(kwargs.get("top_k", 5), 7)
    assert all(list(entry) == ["score", "label"] for entry in got)
    assert_outputs_close(got, want, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("batch_size", [1, 2, 3])
def test_lists_and_batches_match_reference(pipes, video_files, batch_size):
    ours, theirs = pipes()
    paths = [str(video_files[name]) for name in ("main", "wide", "main", "wide", "main")]
    want = theirs(paths, top_k=3, frame_sampling_rate=2, batch_size=batch_size)
    got = ours(paths, top_k=3, frame_sampling_rate=2, batch_size=batch_size)
    assert len(got) == 5
    assert_outputs_close(got, want, rtol=1e-4, atol=1e-5)
    # An iterator in gives an iterator out.
    streamed = ours((p for p in paths), top_k=3, frame_sampling_rate=2, batch_size=batch_size)
    assert not isinstance(streamed, list)
    assert_outputs_close(list(streamed), want, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("overrides", [{"use_mean_pooling": False},
                                       {"problem_type": "multi_label_classification"},
                                       {"problem_type": "regression"}],
                         ids=["first-token", "multi-label", "regression"])
def test_model_variants_and_default_functions_match_reference(pipes, video_files, overrides):
    ours, theirs = pipes(**overrides)
    path = str(video_files["wide"])
    assert_outputs_close(ours(path, top_k=7), theirs(path, top_k=7), rtol=1e-5, atol=1e-6)


def _reference_on_frames(theirs, frames, top_k=5):
    """The reference model on the reference processor's pixels of these frames, scored as its
    pipeline scores them."""
    inputs = theirs.image_processor(list(frames), return_tensors="pt")
    with torch.no_grad():
        logits = theirs.model(**inputs).logits
    return theirs.postprocess(type("Out", (), {"logits": logits})(), top_k=top_k)


def test_other_input_forms(pipes, video_files):
    ours, theirs = pipes()
    path = video_files["main"]
    want = theirs(str(path))
    data = path.read_bytes()
    uri = "data:video/mp4;base64," + base64.b64encode(data).decode()
    for video in (path, data, bytearray(data), uri, base64.b64encode(data).decode()):
        assert_outputs_close(ours(video), want, rtol=1e-5, atol=1e-6)
    assert_outputs_close(ours(videos=str(path)), want, rtol=1e-5, atol=1e-6)
    # Frames: a list of PIL images or arrays, or one (frames, H, W, 3) array, is one video.
    frames = reference_frames(video_files["wide"], np.arange(8))
    from_frames = _reference_on_frames(theirs, frames[:4])
    assert_outputs_close(ours(list(frames)), from_frames, rtol=1e-5, atol=1e-6)
    assert_outputs_close(ours([Image.fromarray(f) for f in frames]), from_frames, rtol=1e-5, atol=1e-6)
    assert_outputs_close(ours(frames), from_frames, rtol=1e-5, atol=1e-6)
    # Frames sample as a file does: every 2nd of the first 8.
    assert_outputs_close(ours(list(frames), frame_sampling_rate=2),
                         _reference_on_frames(theirs, frames[[0, 2, 4, 7]]), rtol=1e-5, atol=1e-6)
    # A list of frame lists is a batch, and may mix with files.
    small = [np.ascontiguousarray(f[:20, :30]) for f in frames[:4]]
    got = ours([list(frames[:4]), small, str(path)], batch_size=3)
    assert_outputs_close(got, [from_frames, _reference_on_frames(theirs, small), want], rtol=1e-5, atol=1e-6)
    assert ours([]) == []


def test_urls_are_fetched_with_a_limit(pipes, video_files, monkeypatch):
    ours, theirs = pipes()
    data = video_files["main"].read_bytes()
    asked = []

    def fake_fetch(url, timeout=None, max_bytes=0):
        asked.append((url, timeout, max_bytes))
        return data

    monkeypatch.setattr("lightpipe.processing.image.fetch_url", fake_fetch)
    got = ours("https://example.com/clip.mp4", timeout=3.0)
    assert asked == [("https://example.com/clip.mp4", 3.0, 1024 ** 3)]
    assert_outputs_close(got, theirs(str(video_files["main"])), rtol=1e-5, atol=1e-6)


def test_task_is_inferred_and_model_objects_work(videomae_checkpoint, video_files):
    folder = videomae_checkpoint()
    inferred = lightpipe.pipeline(model=str(folder))
    assert inferred.task == "video-classification"
    model = lightpipe.AutoModelForVideoClassification.from_pretrained(folder)
    given = lightpipe.pipeline("video-classification", model=model,
                               image_processor=lightpipe.AutoImageProcessor.from_pretrained(folder),
                               top_k=2)
    reference = transformers.pipeline("video-classification", model=str(folder))
    assert_outputs_close(given(str(video_files["main"])), reference(str(video_files["main"]), top_k=2),
                         rtol=1e-5, atol=1e-6)


def test_save_pretrained_round_trips(pipes, video_files, tmp_path):
    ours, _ = pipes()
    ours.save_pretrained(tmp_path)
    again = lightpipe.pipeline("video-classification", model=str(tmp_path))
    path = str(video_files["main"])
    assert_outputs_close(again(path), ours(path), rtol=1e-6, atol=1e-7)


def test_clear_errors(pipes, video_files, tmp_path, monkeypatch):
    ours, _ = pipes()
    with pytest.raises(InputError, match="needs a video"):
        ours()
    with pytest.raises(InputError, match="No video at"):
        ours(str(tmp_path / "missing.mp4"))
    with pytest.raises(InputError, match="is a folder"):
        ours(str(tmp_path))
    with pytest.raises(InputError, match="Could not decode the video"):
        ours(str(video_files["text"]))
    with pytest.raises(InputError, match="Could not decode the video"):
        ours(b"\x00\x01 not a video at all" * 10)
    with pytest.raises(InputError, match="has 3 frames.*smaller frame_sampling_rate"):
        ours(str(video_files["short"]))
    with pytest.raises(InputError, match="has 16 frames.*needs the first 20"):
        ours(str(video_files["main"]), frame_sampling_rate=5)
    with pytest.raises(InputError, match="exactly 4 frames"):
        ours(str(video_files["main"]), num_frames=6)
    with pytest.raises(InputError, match="frame_sampling_rate must be a positive integer"):
        ours(str(video_files["main"]), frame_sampling_rate=0)
    with pytest.raises(InputError, match="num_frames must be a positive integer"):
        ours(str(video_files["main"]), num_frames=2.5)
    with pytest.raises(ValueError, match="function_to_apply"):
        ours(str(video_files["main"]), function_to_apply="relu")
    with pytest.raises(ValueError, match="top_k"):
        ours(str(video_files["main"]), top_k=0)
    with pytest.raises(TypeError, match="unexpected arguments: fps"):
        ours(str(video_files["main"]), fps=3)
    with pytest.raises(InputTypeError, match="A video must be"):
        ours(42)
    with pytest.raises(InputError, match="has 2 frames"):
        ours([np.zeros((8, 8, 3), dtype=np.uint8)] * 2)
    monkeypatch.setitem(sys.modules, "av", None)
    from lightpipe.errors import MissingExtraError

    with pytest.raises(MissingExtraError, match=r"pip install 'lightpipe\[video\]'"):
        ours(str(video_files["main"]))


def test_server_kind_is_video():
    from lightpipe.pipelines import SUPPORTED_TASKS

    task = SUPPORTED_TASKS["video-classification"]
    assert task.available and task.kind == "video" and task.preprocessors == ("image_processor",)


def test_frames_over_the_pixel_limit_are_refused_before_decoding(tmp_path, monkeypatch):
    """A video whose frames are larger than Pillow's decompression-bomb limit is a clear error
    read from the stream header, before any frame is decoded."""
    from ..fixtures.video import write_video

    path = write_video(tmp_path / "wide.mp4", frames=4, height=64, width=96)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 64 * 96 - 1)
    with pytest.raises(InputError, match="96x64 pixels, over the limit"):
        read_video(str(path), num_frames=2)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 64 * 96)
    assert len(read_video(str(path), num_frames=2)) == 2
