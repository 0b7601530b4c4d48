"""Checks shared by the DINOv2 and DeiT tests: a tiny random checkpoint of a reference class
saved with a reference image processor, and our pipelines against the reference's."""

from __future__ import annotations

from pathlib import Path

import torch
import transformers

import lightpipe

from ..conftest import assert_outputs_close
from ..fixtures.vision import LABELS, spread

LABEL_MAPS = dict(id2label=dict(enumerate(LABELS)), label2id={l: i for i, l in enumerate(LABELS)})


def save_vision(folder: Path, config, head: str, processor: tuple[str, dict]) -> Path:
    """A random ``head`` (a reference class name) of ``config`` and the reference image
    processor ``processor`` = (class name, settings), saved into ``folder``."""
    torch.manual_seed(0)
    model = getattr(transformers, head)(config).eval()
    spread(model)
    with torch.no_grad():  # tokens and positions drawn wide enough to show in the outputs
        for name, param in model.named_parameters():
            if name.endswith(("position_embeddings", "cls_token", "distillation_token")):
                param.normal_(0.0, 1.0)
    model.save_pretrained(folder)
    name, settings = processor
    getattr(transformers, name)(**settings).save_pretrained(folder)
    return folder


def pixels(batch=2, height=32, width=32, seed=0) -> torch.Tensor:
    return torch.randn(batch, 3, height, width, generator=torch.Generator().manual_seed(seed))


def assert_same_outputs(folder: Path, head: str, reference_head: str | None, keys: list[str],
                        **call) -> None:
    """Same class name as the reference's ``reference_head`` (default: ``head``); same
    ``keys`` and hidden states on random pixels."""
    ours = getattr(lightpipe, head).from_pretrained(folder)
    theirs = getattr(transformers, reference_head or head).from_pretrained(folder).eval()
    assert type(ours).__name__ == type(theirs).__name__
    values = pixels(**{k: call.pop(k) for k in ("height", "width", "seed") if k in call})
    with torch.inference_mode():
        got = ours(pixel_values=values, output_hidden_states=True, **call)
        want = theirs(pixel_values=values, output_hidden_states=True, **call)
    for key in keys:
        torch.testing.assert_close(got[key], want[key], rtol=1e-4, atol=1e-5, msg=key)
    assert len(got.hidden_states) == len(want.hidden_states)
    for mine, reference in zip(got.hidden_states, want.hidden_states):
        torch.testing.assert_close(mine, reference, rtol=1e-4, atol=1e-5)


def assert_pipeline_matches(task: str, folder: Path, images: list, calls: list[dict]) -> None:
    ours = lightpipe.pipeline(task, model=str(folder))
    theirs = transformers.pipeline(task, model=str(folder))
    assert type(ours.model).__name__ == type(theirs.model).__name__
    assert type(ours.image_processor).__name__ == \
        type(theirs.image_processor).__name__.removesuffix("Pil")
    for kwargs in calls:
        assert_outputs_close(ours(images[0], **kwargs), theirs(images[0], **kwargs))
        assert_outputs_close(ours(images, batch_size=2, **kwargs), theirs(images, **kwargs))
