"""image-text-to-text with LLaVA against transformers 5's pipeline (tiny random checkpoint from
tests/fixtures/llava.py)."""

from __future__ import annotations

import pytest
import transformers

import lightpipe
from lightpipe.errors import InputError
from lightpipe.pipelines.image_text_to_text import ImageTextToTextPipeline
from tests.fixtures.llava import llava_images, llava_path  # noqa: F401  (fixtures)

PROMPT = "USER: <image>\nWhat is shown? ASSISTANT:"


@pytest.fixture(scope="module")
def pipes(llava_path):
    ours = lightpipe.pipeline("image-text-to-text", model=str(llava_path))
    ref = transformers.pipeline("image-text-to-text", model=str(llava_path))
    return ours, ref


def _chat(images, text="Describe it.", assistant=None):
    content = [{"type": "image", "image": image} for image in images]
    chat = [{"role": "user", "content": content + [{"type": "text", "text": text}]}]
    if assistant is not None:
        chat.append({"role": "assistant", "content": [{"type": "text", "text": assistant}]})
    return chat


def test_pipeline_class(pipes):
    assert isinstance(pipes[0], ImageTextToTextPipeline)


@pytest.mark.parametrize("kwargs", [{"max_new_tokens": 8},
                                    {"max_new_tokens": 6, "return_full_text": False},
                                    {"generate_kwargs": {"max_new_tokens": 5}}])
def test_prompt_matches_reference(pipes, llava_images, kwargs):
    ours, ref = pipes
    expected = ref(images=llava_images[0], text=PROMPT, **kwargs)
    assert ours(images=llava_images[0], text=PROMPT, **kwargs) == expected


def test_two_images_in_prompt(pipes, llava_images):
    ours, ref = pipes
    prompt = "USER: <image>\n<image>\nCompare. ASSISTANT:"
    expected = ref(images=llava_images[:2], text=prompt, max_new_tokens=7)
    assert ours(images=llava_images[:2], text=prompt, max_new_tokens=7) == expected


@pytest.mark.parametrize("count, kwargs", [(1, {"max_new_tokens": 8}),
                                           (2, {"max_new_tokens": 6, "return_full_text": False})])
def test_chat_matches_reference(pipes, llava_images, count, kwargs):
    ours, ref = pipes
    expected = ref(text=_chat(llava_images[:count]), **kwargs)
    got = ours(text=_chat(llava_images[:count]), **kwargs)
    assert got == expected
    if kwargs.get("return_full_text", True):
        assert got[0]["generated_text"][-1]["role"] == "assistant"


def test_chat_continues_final_assistant_message(pipes, llava_images):
    ours, ref = pipes
    chat = _chat(llava_images[:1], assistant="It is")
    assert ours(text=chat, max_new_tokens=5) == ref(text=chat, max_new_tokens=5)


def test_list_of_chats(pipes, llava_images):
    ours, ref = pipes
    chats = [_chat(llava_images[:1]), _chat(llava_images[1:2], text="What is it?")]
    assert ours(text=chats, max_new_tokens=4) == ref(text=chats, max_new_tokens=4)


def test_errors(pipes, llava_images):
    ours = pipes[0]
    with pytest.raises(InputError, match="<image>"):
        ours(images=llava_images[0], text="USER: hello ASSISTANT:", max_new_tokens=2)
    with pytest.raises(InputError, match="2 image"):
        ours(images=llava_images[:2], text=PROMPT, max_new_tokens=2)
    with pytest.raises(InputError, match="content"):
        ours(images=llava_images[0], text=_chat(llava_images[:1]))
    with pytest.raises(InputError, match="either text or images"):
        ours()
    with pytest.raises(ValueError, match="twice"):
        ours(images=llava_images[0], text=PROMPT, max_new_tokens=2,
             generate_kwargs={"max_new_tokens": 3})


def test_text_only_and_default_length(pipes, llava_images):
    ours, ref = pipes
    prompt = "USER: Say something. ASSISTANT:"
    assert ours(text=prompt, max_new_tokens=6) == ref(text=prompt, max_new_tokens=6)
    # no max_new_tokens: the pipeline's default (256 new tokens unless the model stops first)
    assert ours(images=llava_images[2], text=PROMPT) == ref(images=llava_images[2], text=PROMPT)


def test_task_inferred_from_checkpoint(llava_path):
    pipe = lightpipe.pipeline(model=str(llava_path))
    assert isinstance(pipe, ImageTextToTextPipeline)
    assert pipe.task == "image-text-to-text"


def test_list_of_prompts_matches_each_prompt_alone(pipes, llava_images):
    ours, ref = pipes
    prompts = [PROMPT, "USER: <image>\n<image>\nCompare these two pictures please. ASSISTANT:"]
    expected = (ref(images=llava_images[:1], text=prompts[0], max_new_tokens=5)
                + ref(images=llava_images[1:3], text=prompts[1], max_new_tokens=5))
    assert ours(images=llava_images[:3], text=prompts, max_new_tokens=5) == expected
    with pytest.raises(InputError, match="3 <image> tokens in all but 2"):
        ours(images=llava_images[:2], text=prompts, max_new_tokens=2)
