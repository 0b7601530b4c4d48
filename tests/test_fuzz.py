"""Property-based fuzzing (hypothesis): the tokenizer, a pipeline's inputs, and the server's JSON
bodies. Every example gets a result or a clear error (a lightpipe error in Python, a 4xx with
the JSON error shape over HTTP), never a 500, a hang or a raw exception. Examples are few and
each has a deadline, so the file stays well under a minute."""

from __future__ import annotations

import json
import re
import traceback
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import lightpipe
from lightpipe.errors import LightpipeError

from .test_server_hardening import classifier_pipe, generator_pipe, in_process  # noqa: F401 (fixtures)

PACKAGE = Path(lightpipe.__file__).resolve().parent

FUZZ = settings(max_examples=60, deadline=5000, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                       HealthCheck.data_too_large])

scalars = st.none() | st.booleans() | st.integers(-2**40, 2**40) | st.floats(allow_nan=False, allow_infinity=False) \
    | st.text(max_size=40)
json_values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=5)
                           | st.dictionaries(st.text(max_size=10), inner, max_size=5), max_leaves=15)
# Parameter names: the ones the tasks read, code-like ones, and anything else.
parameter_names = st.sampled_from([
    "top_k", "function_to_apply", "truncation", "max_length", "padding", "return_all_scores",
    "max_new_tokens", "min_new_tokens", "num_beams", "num_return_sequences", "do_sample", "temperature",
    "top_p", "stop_sequence", "return_full_text", "tokenizer_encode_kwargs", "generate_kwargs",
    "chat_template", "streamer", "generation_config", "batch_size", "timeout"]) | st.text(max_size=12)
texts = st.text(max_size=200)


@pytest.fixture(scope="module")
def tokenizer(minilm_path):
    return lightpipe.AutoTokenizer.from_pretrained(minilm_path)


@pytest.fixture(scope="module")
def client(classifier_pipe, generator_pipe):
    entries = [({"name": "cls", "task": "text-classification", "model": "cls", "max_wait_ms": 1}, classifier_pipe),
               ({"name": "gen", "task": "text-generation", "model": "gen", "max_wait_ms": 1,
                 "max_new_tokens": 8, "max_sequences": 2}, generator_pipe)]
    with in_process(entries, max_body_bytes=65536) as test_client:
        yield test_client


def _clear_error(call) -> None:
    """A result, a lightpipe error, or a ValueError / TypeError that lightpipe raised itself
    with a message (the reference's types for bad inputs); nothing from deeper down."""
    try:
        call()
    except LightpipeError:
        pass
    except (ValueError, TypeError) as error:
        frames = traceback.extract_tb(error.__traceback__)
        assert str(error) and frames and Path(frames[-1].filename).resolve().is_relative_to(PACKAGE), \
            "".join(traceback.format_exception(error))


@FUZZ
@given(text=texts, pair=st.none() | texts, batch=st.lists(texts, max_size=4))
def test_tokenizer_encodes_any_text(tokenizer, text, pair, batch):
    encoded = tokenizer(text, pair, truncation=True, max_length=64) if pair is not None else tokenizer(text)
    assert all(isinstance(i, int) for i in encoded["input_ids"])
    tokenizer.decode(encoded["input_ids"], skip_special_tokens=True)
    if batch:
        assert len(tokenizer(batch, padding=True)["input_ids"]) == len(batch)


@FUZZ
@given(value=json_values)
def test_tokenizer_refuses_other_values_clearly(tokenizer, value):
    _clear_error(lambda: tokenizer(value))


@FUZZ
@given(inputs=json_values, top_k=st.none() | st.integers(-3, 5))
def test_pipeline_inputs_give_a_result_or_a_clear_error(classifier_pipe, inputs, top_k):
    _clear_error(lambda: classifier_pipe(inputs, top_k=top_k))


def _assert_answered(response) -> None:
    assert response.status_code < 500, response.text
    if response.status_code >= 400:
        body = response.json()
        assert set(body) == {"error"} and set(body["error"]) == {"message", "type", "code", "param"}, body
        assert not re.search(r"at 0x[0-9a-fA-F]{6,}", body["error"]["message"])  # no heap addresses


@FUZZ
@given(name=st.sampled_from(["cls", "gen"]), inputs=json_values,
       parameters=st.dictionaries(parameter_names, json_values, max_size=3) | json_values)
def test_server_json_bodies_never_500(client, name, inputs, parameters):
    body = {"inputs": inputs, "parameters": parameters}
    _assert_answered(client.post(f"/v1/pipelines/{name}", json=body))


@FUZZ
@given(body=json_values)
def test_server_any_json_body_never_500(client, body):
    for path in ("/v1/pipelines/cls", "/v1/chat/completions", "/v1/completions", "/v1/embeddings"):
        _assert_answered(client.post(path, json=body))


@FUZZ
@given(messages=json_values, extra=st.dictionaries(st.sampled_from(
    ["max_tokens", "temperature", "top_p", "n", "stop", "seed", "stream", "chat_template", "logit_bias"]),
    json_values, max_size=3))
def test_openai_bodies_never_500(client, messages, extra):
    body = {"model": "gen", "messages": messages, **extra}
    body.pop("stream", None)  # streamed answers are tested in test_server.py
    _assert_answered(client.post("/v1/chat/completions", json=body))
    prompt = {"model": "gen", "prompt": messages, **{k: v for k, v in body.items() if k not in ("model", "messages")}}
    _assert_answered(client.post("/v1/completions", json=prompt))


@FUZZ
@given(raw=st.binary(max_size=300) | st.text(max_size=300).map(lambda text: text.encode("utf-8")))
def test_server_raw_bytes_never_500(client, raw):
    _assert_answered(client.post("/v1/pipelines/cls", content=raw, headers={"content-type": "application/json"}))
    depth = len(raw) % 200 + 1
    nested = b'{"inputs": ' + b"[" * depth + b"]" * depth + b"}"
    _assert_answered(client.post("/v1/pipelines/cls", content=nested))
    assert json.loads(nested)  # valid JSON: refused only for its depth
