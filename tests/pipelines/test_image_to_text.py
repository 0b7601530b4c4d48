"""image-to-text against transformers 4.57's pipeline (v5 removed it): golden outputs recorded
by tests/golden/make_image_to_text.py on tiny committed vision encoder-decoder checkpoints,
replayed here; every input form; batching where 4.57 refuses it; bad input."""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import lightpipe
from lightpipe.errors import InputError, InputTypeError

from ..conftest import assert_outputs_close

GOLDEN = Path(__file__).resolve().parent.parent / "golden" / "image_to_text"
IMAGES = GOLDEN / "images"
CASES = json.loads((GOLDEN / "cases.json").read_text(encoding="utf-8"))["cases"]
ANSWERED = [case for case in CASES if "output" in case]
# 4.57 cannot batch with a tokenizer that has no pad token (GPT-2's): lightpipe can.
NO_PAD_BATCH = [case for case in CASES if "cannot do batching" in case.get("message", "")]
FAILED = [case for case in CASES if "error" in case and case not in NO_PAD_BATCH]


def _case_id(case: dict) -> str:
    shape = f"list{len(case['inputs'])}" if isinstance(case["inputs"], list) else "one"
    return f"{case['model']}-{shape}-{json.dumps({**case['init'], **case['kwargs']}, sort_keys=True)}"


def _inputs(inputs):
    if isinstance(inputs, list):
        return [_inputs(item) for item in inputs]
    if isinstance(inputs, dict):
        return base64.b64encode((IMAGES / inputs["base64"]).read_bytes()).decode("ascii")
    return str(IMAGES / inputs)


_PIPES: dict = {}


def get_pipe(model: str, init: dict | None = None):
    key = (model, json.dumps(init or {}, sort_keys=True))
    if key not in _PIPES:
        _PIPES[key] = lightpipe.pipeline("image-to-text", model=GOLDEN / model, **(init or {}))
    return _PIPES[key]


def test_golden_cases_cover_every_argument():
    used = set().union(*(case["kwargs"] for case in ANSWERED), *(case["init"] for case in ANSWERED))
    assert used >= {"max_new_tokens", "generate_kwargs", "timeout", "batch_size", "num_beams"}
    generate = set().union(*(case["kwargs"].get("generate_kwargs", {}) for case in ANSWERED))
    assert generate >= {"num_beams", "max_length", "num_return_sequences", "repetition_penalty",
                        "no_repeat_ngram_size", "min_new_tokens", "max_new_tokens"}
    assert {case["model"] for case in ANSWERED} == {"vit-gpt2", "vit-gpt2-proj", "blip"}
    assert any(case["kwargs"].get("prompt") for case in ANSWERED if case["model"] == "blip")
    assert any(case["kwargs"].get("batch_size", 1) > 1 for case in ANSWERED)
    assert any(case["kwargs"].get("prompt") for case in FAILED) and NO_PAD_BATCH


@pytest.mark.parametrize("case", ANSWERED, ids=_case_id)
def test_matches_transformers_457(case):
    pipe = get_pipe(case["model"], case["init"])
    assert_outputs_close(pipe(_inputs(case["inputs"]), **case["kwargs"]), case["output"])


@pytest.mark.parametrize("case", FAILED, ids=_case_id)
def test_fails_where_transformers_457_fails(case):
    pipe = get_pipe(case["model"], case["init"])
    with pytest.raises(ValueError, match=re.escape(case["message"][:60])):
        pipe(_inputs(case["inputs"]), **case["kwargs"])


@pytest.mark.parametrize("case", NO_PAD_BATCH, ids=_case_id)
def test_batches_without_a_pad_token(case):
    """Where 4.57 refuses (no pad token), the batched results equal the unbatched ones, and
    those the golden unbatched outputs when one was recorded."""
    pipe = get_pipe(case["model"], case["init"])
    kwargs = {k: v for k, v in case["kwargs"].items() if k != "batch_size"}
    batched = pipe(_inputs(case["inputs"]), **case["kwargs"])
    assert batched == pipe(_inputs(case["inputs"]), **kwargs)
    for golden in ANSWERED:
        if (golden["model"], golden["inputs"], golden["init"], golden["kwargs"]) == \
                (case["model"], case["inputs"], case["init"], kwargs):
            assert_outputs_close(batched, golden["output"])


def test_task_is_inferred_and_defaults():
    pipe = lightpipe.pipeline(model=GOLDEN / "vit-gpt2")
    assert pipe.task == "image-to-text" and type(pipe).__name__ == "ImageToTextPipeline"
    assert pipe.generation_config.max_new_tokens == 256
    # the end token comes from the decoder's config (no generation_config.json)
    assert pipe.model.generation_config.eos_token_id == 0
    proj = get_pipe("vit-gpt2-proj")
    assert proj.generation_config.max_new_tokens is None  # the model's max_length 12 wins
    assert proj.generation_config.max_length == 12


def test_input_forms():
    pipe = get_pipe("vit-gpt2-proj")
    names = ["rgb.jpg", "rgba.png", "gray.png", "exif.jpg"]
    paths = [str(IMAGES / name) for name in names]
    want = pipe(paths, max_new_tokens=6)
    pils = [Image.open(path) for path in paths]
    assert pipe(pils, max_new_tokens=6) == want
    assert pipe([Path(p).read_bytes() for p in paths], max_new_tokens=6) == want
    assert pipe([Path(p) for p in paths], max_new_tokens=6) == want
    assert pipe(images=paths, max_new_tokens=6) == want
    assert pipe(paths[0], max_new_tokens=6) == want[0]
    rgb = np.asarray(Image.open(paths[0]).convert("RGB"))
    assert pipe(rgb, max_new_tokens=6) == want[0]
    streamed = pipe(iter(paths), batch_size=2, max_new_tokens=6)
    assert not isinstance(streamed, list) and list(streamed) == want

    class Dataset:  # sized and indexable, as datasets.Dataset
        def __len__(self):
            return len(paths)

        def __getitem__(self, index):
            return paths[index]

    assert list(pipe(Dataset(), max_new_tokens=6)) == want
    assert pipe([], max_new_tokens=6) == []


def test_model_and_preprocessor_objects():
    pipe = get_pipe("vit-gpt2-proj")
    again = lightpipe.pipeline("image-to-text", model=pipe.model, tokenizer=pipe.tokenizer,
                               image_processor=pipe.image_processor)
    image = str(IMAGES / "rgb.png")
    assert again(image) == pipe(image)
    folders = lightpipe.pipeline("image-to-text", model=pipe.model, tokenizer=GOLDEN / "vit-gpt2-proj",
                                 image_processor=GOLDEN / "vit-gpt2-proj")
    assert folders(image) == pipe(image)


def test_generate_kwargs_reach_generate():
    pipe = get_pipe("vit-gpt2-proj")
    image = str(IMAGES / "wide.png")
    plain = pipe(image, max_new_tokens=5)
    assert pipe(image, generate_kwargs={"max_new_tokens": 5, "return_dict_in_generate": True}) == plain
    assert pipe(image, generate_kwargs={"max_new_tokens": 5, "do_sample": True, "top_k": 1}) == plain


def test_bad_input():
    pipe = get_pipe("vit-gpt2-proj")
    with pytest.raises(InputError):
        pipe(None)
    with pytest.raises(InputTypeError):
        pipe(42)
    with pytest.raises(InputError):
        pipe(str(IMAGES / "missing.png"))
    with pytest.raises(TypeError, match="generate_kwargs"):
        pipe(str(IMAGES / "rgb.jpg"), num_beams=2)
    with pytest.raises(InputError, match="generate_kwargs"):
        pipe(str(IMAGES / "rgb.jpg"), generate_kwargs=[("num_beams", 2)])
    with pytest.raises(ValueError, match="model_kwargs"):  # as the reference's generate()
        pipe(str(IMAGES / "rgb.jpg"), generate_kwargs={"not_an_argument": 1})
    with pytest.raises(TypeError, match="once"):
        pipe(str(IMAGES / "rgb.jpg"), images=str(IMAGES / "rgb.jpg"))


def test_models_that_do_not_caption_are_refused():
    pipe = get_pipe("vit-gpt2-proj")
    with pytest.raises(InputError, match="captioning"):
        lightpipe.pipeline("image-to-text", model=pipe.model.encoder, tokenizer=pipe.tokenizer,
                           image_processor=pipe.image_processor)
