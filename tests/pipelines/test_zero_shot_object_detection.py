"""zero-shot-object-detection (OWL-ViT, OWLv2) against transformers 5's pipeline on a tiny random
checkpoint: every argument (candidate_labels as a list or a comma-separated string,
threshold, top_k, timeout, batch_size, text_queries), every input form (one image, lists of
images with shared or per-image labels, dicts, lists of dicts, iterators), and clear errors."""

from __future__ import annotations

import math

import numpy as np

import pytest
import torch
import transformers

import lightpipe
from lightpipe.errors import InputError
from tests.fixtures.owlvit import owlv2_folder, owlvit_folder, owlvit_images  # noqa: F401

LABELS = ["a cat", "the dog", "x"]


@pytest.fixture(scope="module")
def pipes(owlvit_folder):
    ours = lightpipe.pipeline("zero-shot-object-detection", model=str(owlvit_folder))
    theirs = transformers.pipeline("zero-shot-object-detection", model=str(owlvit_folder))
    return ours, theirs


def assert_same(got, want):
    """Equal results: labels and boxes exactly, scores within float tolerance. Where the
    reference's scores tie within that tolerance, the order inside the tie may differ."""
    if want and isinstance(want[0], list):
        assert isinstance(got, list) and len(got) == len(want)
        for g, w in zip(got, want):
            assert_same(g, w)
        return
    assert isinstance(got, list) and len(got) == len(want), (len(got), len(want))
    for g, w in zip(got, want):
        assert set(g) == {"score", "label", "box"}
        assert type(g["score"]) is float and all(type(v) is int for v in g["box"].values())
        assert math.isclose(g["score"], w["score"], rel_tol=1e-5, abs_tol=1e-6), (g, w)
    start = 0
    while start < len(want):  # groups of (nearly) tied scores
        end = start + 1
        while end < len(want) and abs(want[end]["score"] - want[start]["score"]) < 1e-5:
            end += 1
        key = lambda r: (r["label"], sorted(r["box"].items()))  # noqa: E731
        assert sorted(map(key, got[start:end])) == sorted(map(key, want[start:end]))
        start = end


def test_task_is_inferred_and_results_spread(owlvit_folder, pipes, owlvit_images):
    ours, theirs = pipes
    assert lightpipe.pipeline(model=str(owlvit_folder)).task == "zero-shot-object-detection"
    want = theirs(owlvit_images["rgb_pil"], candidate_labels=LABELS)
    assert 0 < len(want) < 16 * len(LABELS)  # the threshold keeps some boxes, not all
    assert_same(ours(owlvit_images["rgb_pil"], candidate_labels=LABELS), want)


@pytest.mark.parametrize("name", ["rgb_pil", "wide_pil", "gray_pil", "rgb_jpeg", "rgba_png"])
def test_images_match_reference(pipes, owlvit_images, name):
    ours, theirs = pipes
    image = owlvit_images[name]
    assert_same(ours(image, candidate_labels=LABELS), theirs(image, candidate_labels=LABELS))


@pytest.mark.parametrize("kwargs", [
    dict(threshold=0.0), dict(threshold=0.35), dict(threshold=0.9), dict(top_k=3),
    dict(top_k=1, threshold=0.2), dict(top_k=0), dict(top_k=500), dict(timeout=5.0),
])
def test_arguments_match_reference(pipes, owlvit_images, kwargs):
    ours, theirs = pipes
    image = owlvit_images["wide_pil"]
    assert_same(ours(image, candidate_labels=LABELS, **kwargs),
                theirs(image, candidate_labels=LABELS, **kwargs))


@pytest.mark.parametrize("labels", ["cat,dog, x", "cat", ["cat"], ("a cat", "dog")])
def test_label_forms_match_reference(pipes, owlvit_images, labels):
    """A string is split on commas (spaces kept, as the reference); tuples work too."""
    ours, theirs = pipes
    image = owlvit_images["rgb_jpeg"]
    want = theirs(image, candidate_labels=list(labels) if isinstance(labels, tuple) else labels)
    assert_same(ours(image, candidate_labels=labels), want)


@pytest.mark.parametrize("batch_size", [1, 2, 3])
def test_lists_and_batches_match_reference(pipes, owlvit_images, batch_size):
    ours, theirs = pipes
    # PIL images: the reference's list form takes no paths (ours does: see the next test)
    images = [owlvit_images[n] for n in ["rgb_pil", "wide_pil", "gray_pil", "rgba_pil"]]
    per_image = [LABELS, ["dog"], ["cat", "the dog"], ["x", "a cat", "of", "the dog"]]
    # one label list for all images
    assert_same(ours(images, candidate_labels=LABELS, batch_size=batch_size),
                theirs(images, candidate_labels=LABELS, batch_size=batch_size))
    # one label list per image (different numbers of queries in one batch)
    assert_same(ours(images, candidate_labels=per_image, batch_size=batch_size, threshold=0.3),
                theirs(images, candidate_labels=per_image, batch_size=batch_size, threshold=0.3))
    # dicts
    dicts = [{"image": i, "candidate_labels": l} for i, l in zip(images, per_image)]
    assert_same(ours(dicts, batch_size=batch_size, top_k=4),
                theirs(dicts, batch_size=batch_size, top_k=4))


def test_paths_in_lists(pipes, owlvit_images):
    """Paths and PIL images mixed in one list: each result as the reference's for that image."""
    ours, theirs = pipes
    images = [owlvit_images["rgb_jpeg"], owlvit_images["rgb_pil"], owlvit_images["rgba_png"]]
    got = ours(images, candidate_labels=LABELS, batch_size=2)
    assert_same(got, [theirs(i, candidate_labels=LABELS) for i in images])


def test_dict_iterator_and_alias_match_reference(pipes, owlvit_images):
    ours, theirs = pipes
    image = owlvit_images["rgb_pil"]
    one = {"image": image, "candidate_labels": LABELS}
    assert_same(ours(one), theirs(one))
    assert_same(ours(image, text_queries=["cat", "dog"]), theirs(image, text_queries=["cat", "dog"]))
    pair = [image, owlvit_images["wide_pil"]]
    assert_same(ours(images=pair, candidate_labels=[["cat"], ["dog", "x"]]),
                theirs(pair, candidate_labels=[["cat"], ["dog", "x"]]))
    dicts = [one, {"image": owlvit_images["gray_pil"], "candidate_labels": ["dog"]}]
    got = ours((d for d in dicts), batch_size=2)
    assert not isinstance(got, list)
    assert_same(list(got), list(theirs((d for d in dicts), batch_size=2)))


def test_construction_time_arguments(owlvit_folder, owlvit_images):
    ours = lightpipe.pipeline("zero-shot-object-detection", model=str(owlvit_folder), threshold=0.4, top_k=2)
    theirs = transformers.pipeline("zero-shot-object-detection", model=str(owlvit_folder),
                                   threshold=0.4, top_k=2)
    image = owlvit_images["rgb_pil"]
    assert_same(ours(image, candidate_labels=LABELS), theirs(image, candidate_labels=LABELS))


def test_bfloat16_runs(owlvit_folder, owlvit_images):
    pipe = lightpipe.pipeline("zero-shot-object-detection", model=str(owlvit_folder), dtype=torch.bfloat16)
    results = pipe(owlvit_images["rgb_pil"], candidate_labels=LABELS, threshold=0.0)
    assert len(results) == 16 * len(LABELS)
    assert all(type(r["score"]) is float for r in results)


def test_bad_inputs_raise_clear_errors(pipes, owlvit_images):
    ours, _ = pipes
    image = owlvit_images["rgb_pil"]
    with pytest.raises(InputError, match="needs candidate_labels"):
        ours(image)
    with pytest.raises(InputError, match="needs candidate_labels"):
        ours([{"image": image}])
    with pytest.raises(TypeError, match="string or a list of strings"):
        ours(image, candidate_labels=[1, 2])
    with pytest.raises(TypeError, match="string or a list of strings"):
        ours(image, candidate_labels=5)
    with pytest.raises(InputError, match="empty"):
        ours(image, candidate_labels=[])
    with pytest.raises(InputError, match="'image' key"):
        ours({"picture": image, "candidate_labels": ["cat"]})
    with pytest.raises(InputError, match="2 images but 3"):
        ours([image, image], candidate_labels=[["a"], ["b"], ["c"]])
    with pytest.raises(TypeError, match="one such list per image"):
        ours([image, image], candidate_labels=[["a"], 3])
    with pytest.raises(TypeError, match="threshold"):
        ours(image, candidate_labels=["cat"], threshold="high")
    with pytest.raises(TypeError, match="top_k"):
        ours(image, candidate_labels=["cat"], top_k=-1)
    with pytest.raises(TypeError, match="unexpected"):
        ours(image, candidate_labels=["cat"], hypothesis_template="{}")
    with pytest.raises(InputError, match="at most 16"):
        ours(image, candidate_labels=["a very long label that has many many tokens"])
    with pytest.raises(InputError, match="needs an image"):
        ours(candidate_labels=["cat"])


@pytest.mark.parametrize("kwargs", [dict(), dict(threshold=0.3, top_k=4), dict(batch_size=2)])
def test_owlv2_matches_reference(owlv2_folder, owlvit_images, kwargs):
    """Boxes relative to the padded square are scaled by the longer side."""
    from PIL import Image

    ours = lightpipe.pipeline("zero-shot-object-detection", model=str(owlv2_folder))
    theirs = transformers.pipeline("zero-shot-object-detection", model=str(owlv2_folder))
    tall = Image.fromarray(np.random.default_rng(6).integers(0, 256, (120, 47, 3), dtype=np.uint8))
    images = [owlvit_images["wide_pil"], tall, owlvit_images["gray_pil"]]
    assert lightpipe.pipeline(model=str(owlv2_folder)).task == "zero-shot-object-detection"
    assert_same(ours(images, candidate_labels=LABELS, **kwargs),
                theirs(images, candidate_labels=LABELS, **kwargs))
