"""Issue 16's hostile cases against `lightpipe serve` and the library, each refused or bounded.

Most run the app in this process (starlette's TestClient); what needs the real process (slow
headers, the connection limit, SIGTERM, the API key with the openai client) runs `lightpipe
serve` in a subprocess, as tests/test_server.py does.
"""

from __future__ import annotations

import base64
import contextlib
import http.server
import io
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import openai
import pytest
import torch
from starlette.testclient import TestClient

import lightpipe
from lightpipe.errors import InputError
from lightpipe.serving import build_settings
from lightpipe.serving.app import build_app
from lightpipe.serving.errors import ApiError, pipeline_error, public_message
from lightpipe.serving.metrics import Metrics
from lightpipe.serving.state import ServedModel

from .conftest import assert_outputs_close
from .test_server import ServerProcess, start_from_config

ROOT = Path(__file__).resolve().parents[1]
HOSTILE_LOOPS = "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}x"
HOSTILE_MEMORY = "{{ ('a' * 1000000000)[:3] }}"
ZERO_SHOT_LABELS = {"id2label": {0: "entailment", 1: "neutral", 2: "contradiction"},
                    "label2id": {"entailment": 0, "neutral": 1, "contradiction": 2}}


@contextlib.contextmanager
def in_process(entries: list[tuple[dict, object]], **server):
    """The app for ``entries`` ((model entry, pipeline) pairs), served in this process."""
    settings = build_settings(models=[entry for entry, _ in entries], **server)
    metrics = Metrics()
    served = [ServedModel(spec, pipe, None, metrics) for spec, (_, pipe) in zip(settings.models, entries)]
    with TestClient(build_app(served, settings, metrics)) as client:
        client.settings = settings
        yield client


def error_of(response) -> dict:
    body = response.json()
    assert set(body) == {"error"}, body
    return body["error"]


@pytest.fixture(scope="module")
def classifier_pipe(tiny_model):
    return lightpipe.pipeline("text-classification",
                              model=str(tiny_model("bert", "AutoModelForSequenceClassification", num_labels=3)))


@pytest.fixture(scope="module")
def generator_pipe(decoder):
    return lightpipe.pipeline("text-generation", model=str(decoder("llama")))


@pytest.fixture(scope="module")
def vit_pipe(vision_model):
    return lightpipe.pipeline("image-classification",
                              model=str(vision_model("vit", "AutoModelForImageClassification")))


@pytest.fixture(scope="module")
def app(classifier_pipe, generator_pipe, vit_pipe):
    entries = [({"name": "cls", "task": "text-classification", "model": "cls", "max_wait_ms": 1}, classifier_pipe),
               ({"name": "gen", "task": "text-generation", "model": "gen", "max_wait_ms": 1}, generator_pipe),
               ({"name": "vit", "task": "image-classification", "model": "vit", "max_wait_ms": 1}, vit_pipe)]
    with in_process(entries, max_image_pixels=1_000_000) as client:
        yield client


# --- 1. code-like parameters and chat templates ---

CODE_CASES = [
    ({"tokenizer_encode_kwargs": {"chat_template": HOSTILE_LOOPS}}, "parameters.tokenizer_encode_kwargs.chat_template"),
    ({"chat_template": "{{ 1 }}"}, "parameters.chat_template"),
    ({"generation_config": {"max_new_tokens": 3}}, "parameters.generation_config"),
    ({"streamer": "x"}, "parameters.streamer"),
    ({"logits_processor": []}, "parameters.logits_processor"),
    ({"stopping_criteria": []}, "parameters.stopping_criteria"),
    ({"prefix_allowed_tokens_fn": "f"}, "parameters.prefix_allowed_tokens_fn"),
    ({"generate_kwargs": {"assistant_model": "x"}}, "parameters.generate_kwargs.assistant_model"),
]


def test_code_like_parameters_are_refused_with_400(app):
    chat = [{"role": "user", "content": "hi"}]
    for parameters, name in CODE_CASES:
        response = app.post("/v1/pipelines/gen", json={"inputs": chat, "parameters": {"max_new_tokens": 2,
                                                                                      **parameters}})
        assert response.status_code == 400, (parameters, response.text)
        error = error_of(response)
        assert (error["code"], error["param"]) == ("forbidden_parameter", name)
        assert name in error["message"]
    response = app.post("/v1/chat/completions", json={"model": "gen", "messages": chat, "chat_template": "{{ 1 }}"})
    assert response.status_code == 400 and error_of(response)["param"] == "chat_template"
    assert app.post("/v1/pipelines/gen", json={"inputs": chat, "parameters": {"max_new_tokens": 2}}).status_code == 200


def test_the_checkpoints_own_template_is_bounded(decoder, monkeypatch):
    from lightpipe.tokenization import template_limits
    from lightpipe.tokenization.chat import render_chat_template
    from lightpipe.tokenization.template_limits import TemplateLimitError

    messages = [{"role": "user", "content": "hi"}]
    monkeypatch.setattr(template_limits, "MAX_RENDER_SECONDS", 1.0)
    tokenizer = lightpipe.AutoTokenizer.from_pretrained(decoder("llama", chat_template=HOSTILE_LOOPS))
    start = time.perf_counter()
    with pytest.raises(TemplateLimitError, match="took more than 1 s"):
        tokenizer.apply_chat_template(messages, tokenize=False)
    assert time.perf_counter() - start < 3
    attacks = [HOSTILE_MEMORY, "{{ 'a'|center(1000000000) }}", "{{ '{:>1000000000}'.format(1) }}",
               "{{ '%1000000000d' % 1 }}", "{{ 'a\nb'|indent(1000000000) }}", "{{ 9 ** (9 ** 9) }}",
               "{% set ns = namespace(s='ab') %}{% for i in range(60) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}",
               "{% macro d(s, n) %}{{ d(s ~ s, n - 1) }}{% endmacro %}{{ d('ab', 60) }}",
               "{% macro f() %}{{ f() }}{% endmacro %}{{ f() }}",
               "{% for i in range(100000) %}{{ 'x' * 1000 }}{% endfor %}"]
    for source in attacks:
        start = time.perf_counter()
        with pytest.raises(TemplateLimitError):
            render_chat_template(source, messages)
        assert time.perf_counter() - start < 2, source
    assert render_chat_template("{% for m in messages %}{{ m.role }}: {{ m.content }}{% endfor %}",
                                messages) == "user: hi"


def test_the_render_time_limit_never_strikes_outside_a_render(monkeypatch):
    """Deadlines about as long as the render: each one ends or stops with the limit error, and
    no signal lands afterwards (nor deadlocks a lock or an import)."""
    from lightpipe.tokenization import template_limits
    from lightpipe.tokenization.chat import _compile_chat_template

    template = _compile_chat_template("{% for i in range(300) %}{% for j in range(3) %}{% endfor %}{% endfor %}x")
    outcomes: list[str] = []

    def renders() -> None:
        for index in range(400):
            try:
                template_limits.render_bounded(template, {})
                outcomes.append("ok")
            except template_limits.TemplateLimitError:
                outcomes.append("limit")
            except BaseException as error:  # noqa: BLE001 - what the test looks for
                outcomes.append(type(error).__name__)
        try:
            total = sum(range(2_000_000))
            time.sleep(0.3)
            outcomes.append("after" if total else "")
        except BaseException as error:  # noqa: BLE001
            outcomes.append("stray " + type(error).__name__)

    monkeypatch.setattr(template_limits, "MAX_RENDER_SECONDS", 0.001)
    threads = [threading.Thread(target=renders) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not any(thread.is_alive() for thread in threads)
    assert set(outcomes) <= {"ok", "limit", "after"} and outcomes.count("after") == 2, set(outcomes)


def test_a_hostile_checkpoint_template_frees_the_worker(decoder, monkeypatch):
    from lightpipe.tokenization import template_limits

    monkeypatch.setattr(template_limits, "MAX_RENDER_SECONDS", 1.0)
    pipe = lightpipe.pipeline("text-generation", model=str(decoder("llama", chat_template=HOSTILE_LOOPS)))
    with in_process([({"name": "bad", "task": "text-generation", "model": "bad"}, pipe)]) as client:
        start = time.perf_counter()
        response = client.post("/v1/pipelines/bad", json={"inputs": [{"role": "user", "content": "hi"}],
                                                          "parameters": {"max_new_tokens": 2}})
        assert response.status_code == 422 and "template was stopped" in error_of(response)["message"]
        answer = client.post("/v1/pipelines/bad", json={"inputs": "plain text", "parameters": {"max_new_tokens": 2}})
        assert answer.status_code == 200 and time.perf_counter() - start < 5


# --- 2. generation stops when nobody waits; lengths are capped ---

def test_a_cancel_event_stops_generate_within_a_step(decoder):
    from lightpipe.generation.cancel import cancel_on

    model = lightpipe.AutoModelForCausalLM.from_pretrained(decoder("llama", max_position_embeddings=200_000))
    prompt = torch.tensor([[5, 6, 7]])
    event = threading.Event()
    threading.Timer(0.3, event.set).start()
    start = time.perf_counter()
    with cancel_on(event):
        out = model.generate(prompt, max_new_tokens=100_000, min_new_tokens=100_000, do_sample=False)
    assert time.perf_counter() - start < 2.5
    assert 3 < out.shape[1] < 100_003
    already = threading.Event()
    already.set()
    with cancel_on(already):
        assert model.generate(prompt, max_new_tokens=50, do_sample=False).shape[1] == 4  # one token
    assert model.generate(prompt, max_new_tokens=5, do_sample=False).shape[1] == 8  # no event: as before


def test_the_kv_cache_is_not_preallocated_for_a_huge_max_new_tokens(decoder, monkeypatch):
    model = lightpipe.AutoModelForCausalLM.from_pretrained(decoder("llama", max_position_embeddings=200_000))
    capacities = []
    original = model.new_cache
    monkeypatch.setattr(model, "new_cache", lambda capacity: capacities.append(capacity) or original(capacity))

    def stop_now(input_ids, scores=None, **kwargs):
        return torch.ones(input_ids.shape[0], dtype=torch.bool)

    model.generate(torch.tensor([[5, 6, 7]]), max_new_tokens=1 << 20, stopping_criteria=[stop_now])
    assert capacities and capacities[0] <= 3 + 4096


def test_a_cancelled_batch_stops_at_the_next_forward(classifier_pipe):
    from lightpipe.generation.cancel import cancel_on
    from lightpipe.serving.batcher import JobCancelled

    spec = build_settings(models=[{"task": "text-classification", "model": "cls"}]).models[0]
    ServedModel(spec, classifier_pipe, None, Metrics())  # installs the forward hook
    stopped = threading.Event()
    stopped.set()
    with cancel_on(stopped), pytest.raises(JobCancelled):
        classifier_pipe(["some text"] * 4)
    assert len(classifier_pipe(["some text"] * 4)) == 4


def test_lengths_beams_and_top_k_are_bounded(app):
    chat = "Hello"
    cases = [({"max_new_tokens": 1 << 20}, "128"), ({"min_new_tokens": 10 ** 9}, "128"),
             ({"max_length": 10 ** 9}, "128"), ({"num_return_sequences": 2_000_000}, "16"),
             ({"num_beams": 0}, "from 1"), ({"num_beams": 1000}, "16"), ({"top_k": 10 ** 9}, "1000"),
             ({"max_new_tokens": "many"}, "integer"), ({"stop_sequence": ["x"] * 300}, "256")]
    for parameters, hint in cases:
        response = app.post("/v1/pipelines/gen", json={"inputs": chat, "parameters": parameters})
        assert response.status_code == 422, (parameters, response.text)
        assert hint in error_of(response)["message"], (parameters, response.text)
    response = app.post("/v1/completions", json={"model": "gen", "prompt": "x", "max_tokens": 1 << 20})
    assert response.status_code == 422 and "128" in error_of(response)["message"]
    response = app.post("/v1/pipelines/cls", json={"inputs": "x", "parameters": {"top_k": 10 ** 9}})
    assert response.status_code == 422 and "1000" in error_of(response)["message"]
    ok = app.post("/v1/pipelines/gen", json={"inputs": chat, "parameters": {"max_new_tokens": 3, "num_beams": 2}})
    assert ok.status_code == 200, ok.text


def test_candidate_labels_are_bounded(tiny_model):
    pipe = lightpipe.pipeline("zero-shot-classification", model=str(tiny_model(
        "bert", "AutoModelForSequenceClassification", num_labels=3, **ZERO_SHOT_LABELS)))
    with in_process([({"name": "zs", "task": "zero-shot-classification", "model": "zs"}, pipe)]) as client:
        for labels in ([f"label {i}" for i in range(300)], ",".join(["x"] * 300)):
            response = client.post("/v1/pipelines/zs", json={"inputs": "a text", "parameters": {"candidate_labels": labels}})
            assert response.status_code == 422 and "256" in error_of(response)["message"]
        response = client.post("/v1/pipelines/zs", json={"inputs": "a text", "parameters": {"candidate_labels": ["a", "b"]}})
        assert response.status_code == 200, response.text


# --- 3. URLs: off by default; when allowed, fetched safely outside the worker ---

def test_public_addresses_only():
    from lightpipe.serving.fetch import public_address

    private = ["127.0.0.1", "10.1.2.3", "172.16.0.1", "192.168.1.1", "169.254.169.254", "0.0.0.0",
               "224.0.0.1", "100.64.0.1", "::1", "::", "fe80::1", "fc00::1", "::ffff:127.0.0.1",
               "::ffff:10.0.0.1", "2002:7f00:1::", "ff02::1", "240.0.0.1"]
    assert [a for a in private if public_address(a)] == []
    assert public_address("8.8.8.8") and public_address("2606:4700:4700::1111")


class _Handler(http.server.BaseHTTPRequestHandler):
    routes: dict = {}
    hits: list = []

    def do_GET(self):
        self.hits.append(self.path)
        action = self.routes.get(self.path, (404, {}, b""))
        if callable(action):
            return action(self)
        status, headers, body = action
        self.send_response(status)
        for key, value in headers.items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture()
def web(test_images):
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}"
    image = Path(test_images["rgb_jpeg"]).read_bytes()

    def drip(handler):  # a byte every 0.2 s, for ever
        handler.send_response(200)
        handler.end_headers()
        try:
            while True:
                handler.wfile.write(b"x")
                handler.wfile.flush()
                time.sleep(0.2)
        except OSError:
            pass

    _Handler.hits.clear()
    _Handler.routes.clear()
    _Handler.routes.update({
        "/cat.jpg": (200, {"Content-Type": "image/jpeg"}, image),
        "/to-private": (302, {"Location": url.replace("127.0.0.1", "127.0.0.2") + "/cat.jpg"}, b""),
        "/to-file": (302, {"Location": "file:///etc/passwd"}, b""),
        "/big": (200, {}, b"x" * 100_000),
        "/drip": drip})
    yield url, image
    server.shutdown()


def test_fetch_checks_every_hop_and_bounds_size_and_time(web, monkeypatch):
    from lightpipe.serving import fetch as fetching

    url, image = web
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    with pytest.raises(fetching.UrlRefused):  # loopback: refused before connecting
        fetching.fetch(url + "/cat.jpg", 5, 1 << 20)
    assert _Handler.hits == []
    monkeypatch.setattr(fetching, "public_address", lambda address: address == "127.0.0.1")  # pretend
    assert fetching.fetch(url + "/cat.jpg", 5, 1 << 20) == image
    for path in ("/to-private", "/to-file", "/big", "/missing"):
        with pytest.raises(fetching.UrlRefused):
            fetching.fetch(url + path, 5, 50_000)
    start = time.perf_counter()
    with pytest.raises(fetching.UrlRefused):
        fetching.fetch(url + "/drip", 1, 1 << 20)
    assert time.perf_counter() - start < 2.5
    for bad in ("ftp://example.com/x", "http://user:pw@example.com/x", "file:///etc/passwd"):
        with pytest.raises(fetching.UrlRefused):
            fetching.fetch(bad, 1, 100)


def test_a_hanging_dns_lookup_counts_against_the_fetch_deadline(monkeypatch):
    from lightpipe.serving import fetch as fetching

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(fetching.socket, "getaddrinfo", lambda *a, **k: time.sleep(5) or [])
    start = time.perf_counter()
    with pytest.raises(fetching.UrlRefused):
        fetching.fetch("http://slow-dns.example/x.png", 0.5, 1 << 20)
    assert time.perf_counter() - start < 2


def test_library_fetch_url_bounds_the_whole_download(web, monkeypatch):
    from lightpipe.processing.image_io import fetch_url

    url, _ = web
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    start = time.perf_counter()
    with pytest.raises(InputError, match="within 1 s"):
        fetch_url(url + "/drip", timeout=1)
    assert time.perf_counter() - start < 3.5


def test_urls_are_off_unless_allowed(app):
    for inputs in ("https://example.com/cat.png", ["https://example.com/a.png"]):
        response = app.post("/v1/pipelines/vit", json={"inputs": inputs})
        assert response.status_code == 422 and error_of(response)["code"] == "urls_disabled"


def test_allowed_urls_are_fetched_in_the_media_pool_with_a_capped_timeout(vit_pipe, web, monkeypatch, test_images):
    from lightpipe.serving import media

    url, image = web
    calls = []

    def fake_fetch(address, timeout, max_bytes):
        calls.append((threading.current_thread().name, address, timeout, max_bytes))
        return image

    with in_process([({"name": "vit", "task": "image-classification", "model": "vit"}, vit_pipe)],
                    allow_urls=True, url_timeout_s=7.0) as client:
        response = client.post("/v1/pipelines/vit", json={"inputs": url + "/cat.jpg",
                                                          "parameters": {"timeout": 1e9}})
        assert response.status_code == 422 and error_of(response)["message"] == "A URL input could not be used."
        assert _Handler.hits == []  # loopback: never contacted
        monkeypatch.setattr(media, "fetch", fake_fetch)
        response = client.post("/v1/pipelines/vit", json={"inputs": "https://example.com/cat.jpg",
                                                          "parameters": {"timeout": 1e9}})
        assert response.status_code == 200, response.text
        assert_outputs_close(response.json(), vit_pipe(test_images["rgb_jpeg"]))
        client.post("/v1/pipelines/vit", json={"inputs": "https://example.com/cat.jpg", "parameters": {"timeout": 0.5}})
    assert [(c[0].startswith("lightpipe-media"), c[2]) for c in calls] == [(True, 7.0), (True, 0.5)]


def test_chat_image_parts_go_through_the_media_checks(tmp_path):
    from lightpipe.serving.media import MediaUrl, _multimodal_item

    local = tmp_path / "secret.png"
    local.write_bytes(b"x")
    chat = [{"role": "user", "content": [{"type": "image", "path": str(local)}, {"type": "text", "text": "q"}]}]
    with pytest.raises(ApiError, match="does not read files"):
        _multimodal_item({"text": chat}, "inputs[0]")
    chat[0]["content"][0] = {"type": "image", "url": "https://example.com/x.png"}
    part = _multimodal_item({"text": chat}, "inputs[0]")["text"][0]["content"][0]
    assert isinstance(part["image"], MediaUrl)
    encoded = base64.b64encode(b"\x89PNG").decode()
    assert _multimodal_item({"images": [encoded], "text": "<image> q"}, "inputs[0]")["images"] == [b"\x89PNG"]


# --- 4. malformed bodies, bombs, arrays, leaks, unknown names ---

def test_bodies_deep_nan_infinity_and_compressed_are_4xx(app):
    for body, status, code in ((b"[" * 5000 + b"]" * 5000, 400, "too_deep"),
                               (b'{"inputs": ' + b"[" * 100 + b"]" * 100 + b"}", 400, "too_deep"),
                               (b'{"inputs": "x", "parameters": {"top_k": NaN}}', 400, "malformed_json"),
                               (b'{"inputs": [Infinity]}', 400, "malformed_json"),
                               (b'{"inputs": -Infinity}', 400, "malformed_json")):
        response = app.post("/v1/pipelines/cls", content=body, headers={"content-type": "application/json"})
        assert (response.status_code, error_of(response)["code"]) == (status, code), body[:40]
    response = app.post("/v1/pipelines/cls", content=b'{"inputs": "x"}', headers={"content-encoding": "gzip"})
    assert response.status_code == 415


def test_decompression_bombs_are_4xx(app, monkeypatch):
    from PIL import Image

    from lightpipe.processing.image_io import load_image

    buffer = io.BytesIO()
    Image.new("L", (12000, 12000)).save(buffer, "PNG")  # 144 M pixels in a 140 KB file
    bomb = buffer.getvalue()
    response = app.post("/v1/pipelines/vit", json={"inputs": base64.b64encode(bomb).decode()})
    assert response.status_code == 422 and error_of(response)["code"] == "image_too_large"
    with pytest.raises(InputError, match="decompression bomb"):
        load_image(bomb)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # below twice the limit: PIL only warns
    buffer = io.BytesIO()
    Image.new("RGB", (40, 40)).save(buffer, "PNG")
    with pytest.raises(InputError, match="1,600 pixels"):
        load_image(buffer.getvalue())


def test_audio_arrays_must_hold_numbers():
    from lightpipe.serving.media import _media_item

    for item in ({"array": ["a", "b"], "sampling_rate": 16000}, {"array": [[1.0], [1.0, 2.0]], "sampling_rate": 16000},
                 {"array": [], "sampling_rate": 16000}, {"array": [0.1], "sampling_rate": True},
                 {"array": [True, False], "sampling_rate": 16000}, {"array": [{"x": 1}], "sampling_rate": 16000}):
        with pytest.raises(ApiError) as caught:
            _media_item("audio", item, "inputs[0]")
        assert caught.value.status == 422, item
    stereo = _media_item("audio", {"array": [[0.0, 0.5], [0.1, 0.2]], "sampling_rate": 16000}, "inputs[0]")
    assert stereo["array"].dtype == np.float32 and stereo["array"].shape == (2, 2)


def test_errors_say_what_not_where(app):
    assert public_message("cannot identify image file <_io.BytesIO object at 0x7f3a2b1c44d0>") == \
        "cannot identify image file <_io.BytesIO>"
    assert public_message("Could not read /root/.cache/huggingface/hub/models--a/config.json") == \
        "Could not read <path>"
    assert "https://example.com/a/b" in public_message("see https://example.com/a/b and org/name")
    error = pipeline_error(RuntimeError("boom in /srv/models/secret at <object at 0xdeadbeef01>"))
    assert error.status == 500 and "/srv" not in error.message and "0xdead" not in error.message
    garbage = base64.b64encode(b"GIF89a" + os.urandom(300)).decode()
    response = app.post("/v1/pipelines/vit", json={"inputs": garbage})
    assert response.status_code == 422 and not re.search(r"0x[0-9a-f]{6}|/\w+/", response.text)
    for model in app.get("/v1/models").json()["data"]:
        assert "/" not in (model["source"] or "")


def test_unknown_parameters_are_named(app):
    response = app.post("/v1/pipelines/cls", json={"inputs": "x", "parameters": {"topk": 2, "colour": "red"}})
    error = error_of(response)
    assert response.status_code == 422 and error["code"] == "unknown_parameter"
    assert "colour, topk" in error["message"] and "top_k" in error["message"]
    response = app.post("/v1/pipelines/gen", json={"inputs": "x", "parameters": {"max_new_token": 2}})
    assert response.status_code == 422 and "max_new_token" in error_of(response)["message"]
    ok = app.post("/v1/pipelines/cls", json={"inputs": "x", "parameters": {"top_k": 2, "truncation": True}})
    assert ok.status_code == 200, ok.text


def test_api_key_from_the_environment(monkeypatch):
    monkeypatch.setenv("LIGHTPIPE_API_KEY", "from-env")
    assert build_settings(models=[{"task": "feature-extraction", "model": "m"}]).api_key == "from-env"
    assert build_settings(models=[{"task": "feature-extraction", "model": "m"}], api_key="given").api_key == "given"


# --- 5. the real process: API key, slow clients, connection limit, timeouts, SIGTERM ---

@pytest.fixture(scope="module")
def guarded(tmp_path_factory, tiny_model):
    config = {"api_key": "s3cret", "header_timeout_s": 1.5, "body_timeout_s": 1.0, "max_connections": 4,
              "models": [{"name": "enc", "task": "feature-extraction",
                          "model": str(tiny_model("bert", "AutoModel"))}]}
    running = start_from_config(tmp_path_factory.mktemp("guarded"), config)
    yield running
    assert running.stop() == 0, "".join(running.lines)


def test_api_key_on_every_route_but_health(guarded):
    key = {"Authorization": "Bearer s3cret"}
    assert guarded.get("/health").status_code == 200
    for path in ("/metrics", "/v1/models", "/v1/nowhere"):
        response = guarded.get(path)
        assert response.status_code == 401 and error_of(response)["code"] == "invalid_api_key", path
        assert response.headers["www-authenticate"] == "Bearer"
    assert guarded.get("/v1/models", headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert guarded.get("/v1/models", headers=key).status_code == 200
    client = openai.OpenAI(base_url=guarded.url + "/v1", api_key="s3cret", max_retries=0, timeout=30)
    assert len(client.embeddings.create(model="enc", input="hello", encoding_format="float").data[0].embedding) == 32
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=guarded.url + "/v1", api_key="nope", max_retries=0).models.list()


def _connect(running: ServerProcess) -> socket.socket:
    host, port = running.url.removeprefix("http://").split(":")
    return socket.create_connection((host, int(port)), timeout=10)


def test_slow_headers_and_bodies_are_cut_and_connections_limited(guarded):
    idle = [_connect(guarded) for _ in range(4)]
    idle[0].sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n")  # never finishes its head
    time.sleep(0.3)
    assert guarded.get("/health").status_code == 503  # the fifth connection: over the limit
    start = time.perf_counter()
    for sock in idle:
        assert sock.recv(100) == b""  # closed by the server
    assert time.perf_counter() - start < 4
    assert guarded.get("/health").status_code == 200
    slow_body = _connect(guarded)
    slow_body.sendall(b"POST /v1/pipelines/enc HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer s3cret\r\n"
                      b"Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"inputs\":")
    reply = slow_body.recv(65536).decode()
    assert reply.startswith("HTTP/1.1 408"), reply
    slow_body.close()


@pytest.fixture(scope="module")
def long_model(decoder):
    return decoder("llama", max_position_embeddings=200_000)


def test_a_timed_out_generation_frees_the_worker(tmp_path, long_model):
    running = start_from_config(tmp_path, {"models": [
        {"name": "long", "task": "text-generation", "model": str(long_model), "timeout_s": 1.5,
         "max_new_tokens": 100_000, "max_wait_ms": 1}]})
    try:
        start = time.perf_counter()
        response = running.post("/v1/pipelines/long", {"inputs": "hi", "parameters": {
            "max_new_tokens": 100_000, "min_new_tokens": 100_000}})
        assert response.status_code == 504
        after = running.post("/v1/pipelines/long", {"inputs": "hi", "parameters": {"max_new_tokens": 2}})
        assert after.status_code == 200, after.text
        assert time.perf_counter() - start < 5  # the worker was free about a second after the 504
        too_long = running.post("/v1/pipelines/long", {"inputs": "hi", "parameters": {"max_new_tokens": 100_001}})
        assert too_long.status_code == 422 and "100000" in error_of(too_long)["message"]
    finally:
        assert running.stop() == 0, "".join(running.lines)


def test_sigterm_is_bounded_with_a_long_job_and_a_public_bind_warns(long_model):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1",
           "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    env.pop("LIGHTPIPE_API_KEY", None)
    process = subprocess.Popen(
        [sys.executable, "-m", "lightpipe", "serve", "text-generation", "--model", str(long_model), "--port", "0",
         "--host", "0.0.0.0", "--timeout", "0", "--graceful-timeout", "1", "--max-new-tokens", "100000",
         "--log-level", "warning"], cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    lines: list[str] = []
    try:
        for line in process.stderr:
            lines.append(line)
            found = re.search(r"serving .* on http://0\.0\.0\.0:(\d+)", line)
            if found:
                break
        assert found, "".join(lines)
        assert any("WARNING: listening on 0.0.0.0 without an API key" in line for line in lines), lines
        url = f"http://127.0.0.1:{found[1]}"
        threading.Thread(target=lambda: httpx.post(url + f"/v1/pipelines/{long_model.name}", timeout=60, json={
            "inputs": "hi", "parameters": {"max_new_tokens": 100_000, "min_new_tokens": 100_000}}),
            daemon=True).start()
        deadline = time.monotonic() + 20
        while "lightpipe_batch_running" not in (page := httpx.get(url + "/metrics").text) or \
                re.search(r"lightpipe_batch_running\{[^}]*\} 0\b", page):
            assert time.monotonic() < deadline, "the long job never started"
            time.sleep(0.05)
        start = time.perf_counter()
        process.send_signal(signal.SIGTERM)
        assert process.wait(15) == 0
        assert time.perf_counter() - start < 6  # 1 s graceful + stopping the generation
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(10)


def test_a_request_of_1000_inputs_is_served_by_default(classifier_pipe):
    """LangChain sends 1,000 texts per call and OpenAI allows 2,048: the default accepts them
    (and 2,049 gets the named limit)."""
    entries = [({"name": "cls", "task": "text-classification", "model": "cls", "max_wait_ms": 1},
                classifier_pipe)]
    with in_process(entries) as client:
        response = client.post("/v1/pipelines/cls", json={"inputs": [f"text {i}" for i in range(1000)]})
        assert response.status_code == 200, response.text
        assert len(response.json()) == 1000
        response = client.post("/v1/pipelines/cls", json={"inputs": ["x"] * 2049})
        assert response.status_code == 422
        assert "2048" in error_of(response)["message"]


# --- server conventions (issue 22, item 4) ---

def test_openapi_schema_and_docs_page(app):
    document = app.get("/openapi.json")
    assert document.status_code == 200
    body = document.json()
    assert body["openapi"].startswith("3.") and {"/v1/pipelines/{name}", "/v1/embeddings",
                                                 "/v1/chat/completions"} <= set(body["paths"])
    assert "`cls` (text-classification)" in body["info"]["description"]
    page = app.get("/docs")
    assert page.status_code == 200 and "/openapi.json" in page.text and "swagger-ui" in page.text


def test_cors_is_off_by_default_and_on_for_the_given_origins(classifier_pipe):
    entries = [({"name": "cls", "task": "text-classification", "model": "cls", "max_wait_ms": 1},
                classifier_pipe)]
    preflight = {"Origin": "https://app.example", "Access-Control-Request-Method": "POST",
                 "Access-Control-Request-Headers": "authorization,content-type"}
    with in_process(entries) as client:
        response = client.post("/v1/pipelines/cls", json={"inputs": "hi"}, headers={"Origin": "https://app.example"})
        assert "access-control-allow-origin" not in response.headers
    with in_process(entries, cors_allow_origins=["https://app.example"], api_key="k") as client:
        answer = client.options("/v1/pipelines/cls", headers=preflight)  # no key needed for the preflight
        assert answer.status_code == 200
        assert answer.headers["access-control-allow-origin"] == "https://app.example"
        response = client.post("/v1/pipelines/cls", json={"inputs": "hi"},
                               headers={"Origin": "https://app.example", "Authorization": "Bearer k"})
        assert response.status_code == 200
        assert response.headers["access-control-allow-origin"] == "https://app.example"
        other = client.options("/v1/pipelines/cls", headers={**preflight, "Origin": "https://evil.example"})
        assert "access-control-allow-origin" not in other.headers
    with pytest.raises(Exception, match="cors_allow_origins must be a list"):
        build_settings(models=[entries[0][0]], cors_allow_origins="*")


def test_token_metrics_queue_time_and_process_metrics_move(app):
    def value(name: str, **labels) -> float:
        return app.app.state.lightpipe.metrics.value(name, **labels) or 0.0

    before = (value("lightpipe_prompt_tokens_total", model="gen"), value("lightpipe_generation_tokens_total", model="gen"))
    response = app.post("/v1/completions", json={"model": "gen", "prompt": "Hello there", "max_tokens": 5})
    assert response.status_code == 200, response.text
    usage = response.json()["usage"]
    assert value("lightpipe_prompt_tokens_total", model="gen") == before[0] + usage["prompt_tokens"]
    assert value("lightpipe_generation_tokens_total", model="gen") == before[1] + usage["completion_tokens"]
    streamed = app.post("/v1/completions", json={"model": "gen", "prompt": "Hi", "max_tokens": 3, "stream": True})
    assert streamed.status_code == 200
    page = app.get("/metrics").text
    for name in ("lightpipe_time_to_first_token_seconds_count", "lightpipe_queue_seconds_count",
                 "process_resident_memory_bytes", "lightpipe_generation_tokens_total"):
        assert name in page, name
