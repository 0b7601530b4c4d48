"""lightpipe serve: the real server in a subprocess on a free loopback port, spoken to over HTTP.

Three servers: a main one (tiny classifier, tiny encoder, the real MiniLM) for endpoints,
errors and the load test; a "slow" one whose batches wait seconds to fill, so queue-full,
disconnect, timeout and batch-isolation cases happen on cue; and a one-model server started
from the command line that the graceful-shutdown test stops with SIGTERM.
"""

from __future__ import annotations

import asyncio
import base64
import concurrent.futures
import json
import os
import random
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

import lightpipe
from lightpipe.serving import ConfigError, build_settings, read_config

from .conftest import assert_outputs_close

ROOT = Path(__file__).resolve().parents[1]
TEXTS = ["I love this movie!", "This was terrible and boring.", "Paris is the capital of France."]
SLOW_WAIT_MS = 3000  # the slow model's batches wait this long to fill


class ServerProcess:
    """`python -m lightpipe serve ... --port 0` in a subprocess; its address read from stderr."""

    def __init__(self, *args: str, cwd: Path = ROOT):
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1",
               "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
        self.process = subprocess.Popen(
            [sys.executable, "-m", "lightpipe", "serve", "--port", "0", "--log-level", "warning", *args],
            cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        self.lines: list[str] = []
        self._ready = threading.Event()
        self.url = ""
        threading.Thread(target=self._read, daemon=True).start()
        if not self._ready.wait(60) or not self.url:
            self.stop()
            raise AssertionError("the server did not start:\n" + "".join(self.lines))

    def _read(self) -> None:
        for line in self.process.stderr:
            self.lines.append(line)
            found = re.search(r"serving .* on (http://127\.0\.0\.1:\d+)", line)
            if found:
                self.url = found[1]
                self._ready.set()
        self._ready.set()  # the process ended

    def get(self, path: str, **kwargs) -> httpx.Response:
        return httpx.get(self.url + path, timeout=30, **kwargs)

    def post(self, path: str, body=None, **kwargs) -> httpx.Response:
        if body is not None:
            kwargs["json"] = body
        return httpx.post(self.url + path, timeout=30, **kwargs)

    def metrics(self) -> dict[str, float]:
        """The /metrics page as {'name{labels}': value}."""
        text = self.get("/metrics").text
        values = {}
        for line in text.splitlines():
            if line and not line.startswith("#"):
                key, _, value = line.rpartition(" ")
                values[key] = float(value)
        return values

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        return self.process.returncode


def start_from_config(tmp_path: Path, config: dict) -> ServerProcess:
    path = tmp_path / "serve.json"
    path.write_text(json.dumps(config))
    return ServerProcess("--config", str(path))


@pytest.fixture(scope="module")
def classifier(tiny_model):
    return tiny_model("bert", "AutoModelForSequenceClassification", num_labels=3)


@pytest.fixture(scope="module")
def encoder(tiny_model):
    return tiny_model("bert", "AutoModel")


@pytest.fixture(scope="module")
def media_models(vision_model, wav2vec2_folder):
    return {"vit": vision_model("vit", "AutoModelForImageClassification"), "asr": wav2vec2_folder()}


@pytest.fixture(scope="module")
def server(tmp_path_factory, classifier, encoder, minilm_path, media_models):
    config = {"max_body_bytes": 65536,
              "defaults": {"max_batch_size": 16, "max_wait_ms": 10, "max_inputs": 32,
                           "max_input_chars": 2000},
              "models": [{"name": "cls", "task": "text-classification", "model": str(classifier)},
                         {"name": "enc", "task": "feature-extraction", "model": str(encoder)},
                         {"name": "minilm", "task": "feature-extraction", "model": str(minilm_path),
                          "max_input_chars": 20000},
                         {"name": "vit", "task": "image-classification", "model": str(media_models["vit"])},
                         {"name": "asr", "task": "automatic-speech-recognition",
                          "model": str(media_models["asr"])}]}
    running = start_from_config(tmp_path_factory.mktemp("server"), config)
    yield running
    assert running.stop() == 0, "".join(running.lines)


@pytest.fixture(scope="module")
def slow(tmp_path_factory, classifier):
    config = {"models": [
        {"name": "slow", "task": "text-classification", "model": str(classifier), "max_batch_size": 64,
         "max_wait_ms": SLOW_WAIT_MS, "max_queue": 4},
        {"name": "hurried", "task": "text-classification", "model": str(classifier),
         "max_wait_ms": SLOW_WAIT_MS, "timeout_s": 0.3}]}
    running = start_from_config(tmp_path_factory.mktemp("slow"), config)
    yield running
    assert running.stop() == 0, "".join(running.lines)


@pytest.fixture(scope="module")
def reference(classifier, encoder):
    """The same checkpoints in this process: what an unbatched Python call returns. One torch
    thread: on tiny models it is the fastest, and on a busy 2-core machine two threads made
    each call ~50x slower (threads waiting on each other at every op)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield {"cls": lightpipe.pipeline("text-classification", model=str(classifier)),
           "enc": lightpipe.pipeline("feature-extraction", model=str(encoder))}
    torch.set_num_threads(threads)


def in_threads(calls: list, workers: int = 8) -> list:
    with concurrent.futures.ThreadPoolExecutor(workers) as pool:
        return [future.result() for future in [pool.submit(call) for call in calls]]


def error_of(response: httpx.Response) -> dict:
    body = response.json()
    assert set(body) == {"error"}, body
    assert set(body["error"]) == {"message", "type", "code", "param"}, body
    return body["error"]


# --- endpoints ---

def test_health_models_and_metrics(server):
    health = server.get("/health")
    assert health.status_code == 200
    assert health.json()["status"] == "ok"
    assert set(health.json()["models"]) == {"cls", "enc", "minilm", "vit", "asr"}
    listed = server.get("/v1/models").json()
    assert listed["object"] == "list"
    assert [m["id"] for m in listed["data"]] == ["cls", "enc", "minilm", "vit", "asr"]
    assert [m["task"] for m in listed["data"]][:2] == ["text-classification", "feature-extraction"]
    assert server.get("/v1/models/cls").json()["id"] == "cls"

    server.post("/v1/pipelines/cls", {"inputs": TEXTS})
    page = server.get("/metrics")
    assert page.headers["content-type"].startswith("text/plain")
    text = page.text
    for name, kind in (("lightpipe_requests_total", "counter"), ("lightpipe_batch_size", "histogram"),
                       ("lightpipe_queue_depth", "gauge"), ("lightpipe_request_seconds", "histogram")):
        assert f"# TYPE {name} {kind}" in text
    # Every sample line is `name{labels} number`; histogram buckets rise to +Inf == _count.
    sample = re.compile(r'^[a-z_]+(\{[a-z_]+="[^"]*"(,[a-z_]+="[^"]*")*\})? -?[0-9.e+-]+$')
    assert all(sample.match(line) for line in text.splitlines() if not line.startswith("#")), text
    values = server.metrics()
    buckets = [v for k, v in values.items() if k.startswith('lightpipe_batch_size_bucket{') and 'model="cls"' in k]
    assert buckets == sorted(buckets) and buckets[-1] == values['lightpipe_batch_size_count{model="cls"}'] >= 1
    assert values['lightpipe_queue_depth{model="cls"}'] == 0
    assert values['lightpipe_requests_total{code="200",endpoint="pipelines",model="cls"}'] >= 1


def test_pipeline_results_equal_the_python_call(server, reference):
    cls, enc = reference["cls"], reference["enc"]
    cases = [("cls", "I love this", {}), ("cls", TEXTS, {}), ("cls", "I love this", {"top_k": 2}),
             ("cls", TEXTS, {"top_k": None}), ("cls", {"text": "A question?", "text_pair": "An answer."}, {}),
             ("cls", TEXTS[:2], {"function_to_apply": "sigmoid"}),
             ("enc", "Hello world", {}), ("enc", TEXTS, {})]
    for name, inputs, parameters in cases:
        response = server.post(f"/v1/pipelines/{name}", {"inputs": inputs, "parameters": parameters})
        assert response.status_code == 200, response.text
        expected = {"cls": cls, "enc": enc}[name](inputs, **parameters)
        assert_outputs_close(response.json(), expected, atol=1e-5)
    assert server.post("/v1/pipelines/cls", {"inputs": []}).json() == []
    # Known by its task too, when one model serves it.
    assert server.post("/v1/pipelines/text-classification", {"inputs": "x"}).status_code == 200


def test_embeddings_with_the_openai_client(server, minilm_path):
    import transformers

    client = openai.OpenAI(base_url=server.url + "/v1", api_key="unused", max_retries=0, timeout=30)
    assert {m.id for m in client.models.list()} == {"cls", "enc", "minilm", "vit", "asr"}
    sentences = ["A man is eating food.", "A man is eating a piece of bread.",
                 "Someone is playing a musical instrument. " * 3]
    as_floats = client.embeddings.create(model="minilm", input=sentences, encoding_format="float")
    as_base64 = client.embeddings.create(model="minilm", input=sentences)  # the client's default
    one = client.embeddings.create(model=str(minilm_path), input=sentences[0], encoding_format="float")

    tokenizer = transformers.AutoTokenizer.from_pretrained(minilm_path)
    model = transformers.AutoModel.from_pretrained(minilm_path)
    batch = tokenizer(sentences, padding=True, truncation=True, max_length=256, return_tensors="pt")
    with torch.no_grad():
        hidden = model(**batch).last_hidden_state
    mask = batch["attention_mask"].unsqueeze(-1).float()
    expected = torch.nn.functional.normalize((hidden * mask).sum(1) / mask.sum(1), dim=1)

    got = torch.tensor([item.embedding for item in as_floats.data])
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(torch.tensor([item.embedding for item in as_base64.data]), got)
    torch.testing.assert_close(torch.tensor(one.data[0].embedding), got[0])
    assert [item.index for item in as_floats.data] == [0, 1, 2]
    assert as_floats.model == "minilm"
    assert as_floats.usage.prompt_tokens == int(batch["attention_mask"].sum())
    # The raw base64 is little-endian float32, as OpenAI sends it.
    raw = server.post("/v1/embeddings", {"model": "minilm", "input": "hi", "encoding_format": "base64"})
    vector = np.frombuffer(base64.b64decode(raw.json()["data"][0]["embedding"]), dtype="<f4")
    assert vector.shape == (384,) and abs(float(np.linalg.norm(vector)) - 1) < 1e-5

    with pytest.raises(openai.NotFoundError, match="Unknown model 'gpt-4'"):
        client.embeddings.create(model="gpt-4", input="hi")
    with pytest.raises(openai.UnprocessableEntityError, match="serves text-classification"):
        client.embeddings.create(model="cls", input="hi")


def test_generation_endpoints_without_a_generation_pipeline(server):
    from lightpipe.pipelines import SUPPORTED_TASKS

    if SUPPORTED_TASKS["text-generation"].available:  # wired: served models here are not generators
        expected = (422, "wrong_task")
    else:
        expected = (501, "not_implemented")
    for path, body in (("/v1/chat/completions", {"model": "cls", "messages": [{"role": "user", "content": "hi"}]}),
                       ("/v1/completions", {"model": "cls", "prompt": "hi"})):
        response = server.post(path, body)
        assert (response.status_code, error_of(response)["code"]) == expected


# --- limits and errors ---

ERROR_CASES = [
    # (path, raw body or JSON, status, code)
    ("/v1/pipelines/cls", b'{"inputs": ', 400, "malformed_json"),
    ("/v1/pipelines/cls", b"\xff\xfe", 400, "malformed_json"),
    ("/v1/pipelines/cls", ["not", "an", "object"], 422, "invalid_type"),
    ("/v1/pipelines/cls", {"parameters": {}}, 422, "missing_field"),
    ("/v1/pipelines/cls", {"inputs": "x", "parametres": {}}, 422, "unknown_field"),
    ("/v1/pipelines/cls", {"inputs": "x", "parameters": [1]}, 422, "invalid_type"),
    ("/v1/pipelines/cls", {"inputs": "x", "parameters": {"top_k": 0}}, 422, "invalid_parameter"),
    ("/v1/pipelines/cls", {"inputs": "x", "parameters": {"function_to_apply": "cube"}}, 422, "invalid_parameter"),
    ("/v1/pipelines/cls", {"inputs": "x", "parameters": {"batch_size": 64}}, 422, "invalid_parameter"),
    ("/v1/pipelines/cls", {"inputs": 12345}, 422, "invalid_input"),
    ("/v1/pipelines/cls", {"inputs": [["a", "b", "c"]]}, 422, "invalid_input"),
    ("/v1/pipelines/cls", {"inputs": ["x"] * 33}, 422, "too_many_inputs"),
    ("/v1/pipelines/cls", {"inputs": "word " * 500}, 422, "input_too_long"),
    ("/v1/pipelines/minilm", {"inputs": "word " * 600}, 422, "invalid_input"),  # > 512 tokens
    ("/v1/pipelines/cls", {"inputs": "x" * 70000}, 413, "body_too_large"),
    ("/v1/pipelines/gpt-9", {"inputs": "x"}, 404, "model_not_found"),
    ("/v2/anything", {"inputs": "x"}, 404, "not_found"),
    ("/v1/embeddings", {"model": "minilm"}, 422, "missing_field"),
    ("/v1/embeddings", {"model": "minilm", "input": 7}, 422, "invalid_type"),
    ("/v1/embeddings", {"model": "minilm", "input": [[101, 102]]}, 422, "invalid_type"),
    ("/v1/embeddings", {"model": 3, "input": "x"}, 422, "invalid_type"),
    ("/v1/embeddings", {"model": "minilm", "input": "x", "encoding_format": "int8"}, 422, "invalid_value"),
    ("/v1/embeddings", {"model": "minilm", "input": "x", "dimensions": 128}, 422, "invalid_value"),
]


def test_each_error_is_json_with_its_status(server):
    for path, body, status, code in ERROR_CASES:
        content = body if isinstance(body, bytes) else json.dumps(body).encode()
        response = server.post(path, content=content, headers={"content-type": "application/json"})
        assert response.status_code == status, (path, body, response.text)
        error = error_of(response)
        assert error["code"] == code, (path, body, error)
        assert len(error["message"]) > 10
    wrong_method = server.get("/v1/pipelines/cls")
    assert wrong_method.status_code == 405 and error_of(wrong_method)["code"] == "method_not_allowed"
    # The last one's message names the tokens, and the server still answers.
    assert "512" in error_of(server.post("/v1/pipelines/minilm", {"inputs": "word " * 600}))["message"]
    assert server.post("/v1/pipelines/cls", {"inputs": "still fine"}).status_code == 200


def test_event_loop_answers_while_the_model_runs(server):
    rng = random.Random(0)
    words = "the quick brown fox jumps over a lazy dog while music plays in the garden".split()
    long_texts = [" ".join(rng.choice(words) for _ in range(200)) for _ in range(32)]
    big = threading.Thread(target=server.post, args=("/v1/pipelines/minilm", {"inputs": long_texts}))
    big.start()
    deadline = time.monotonic() + 20
    while server.metrics().get('lightpipe_batch_running{model="minilm"}', 0) == 0:
        assert time.monotonic() < deadline, "the big batch never ran"
        time.sleep(0.005)
    start = time.perf_counter()
    assert server.get("/health").status_code == 200
    health_s = time.perf_counter() - start
    still_running = server.metrics()['lightpipe_batch_running{model="minilm"}'] > 0
    big.join(60)
    assert still_running, "the batch ended before /health was measured; use longer texts"
    assert health_s < 0.5, f"/health took {health_s:.3f} s while the model ran"


# --- the load test ---

class Connection:
    """One keep-alive HTTP/1.1 connection on asyncio streams: far lighter than an httpx client,
    so 64 of them in the test process leave the 2 cores to the server."""

    def __init__(self, url: str):
        host, port = url.removeprefix("http://").split(":")
        self.host, self.port = host, int(port)
        self.reader: asyncio.StreamReader | None = None

    async def post(self, path: str, payload, headers: dict | None = None) -> tuple[int, dict, bytes]:
        if self.reader is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        body = json.dumps(payload).encode()
        extra = "".join(f"{key}: {value}\r\n" for key, value in (headers or {}).items())
        self.writer.write(f"POST {path} HTTP/1.1\r\nHost: {self.host}\r\nContent-Type: application/json"
                          f"\r\nContent-Length: {len(body)}\r\n{extra}\r\n".encode() + body)
        head = (await self.reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
        fields = {key.lower(): value.strip() for key, _, value in (line.partition(":") for line in head[1:] if line)}
        return int(head[0].split()[1]), fields, await self.reader.readexactly(int(fields["content-length"]))

    def close(self) -> None:
        if self.reader is not None:
            self.writer.close()


def test_load_64_clients_2000_requests(server, reference):
    """Every request answered once, with its own result (equal to an unbatched call), and
    requests batched together (mean batch size > 1)."""
    rng = random.Random(7)
    words = "good bad movie film great awful plot actor music scene boring brilliant long short".split()
    requests = []
    for index in range(2000):
        text = f"{index}: " + " ".join(rng.choice(words) for _ in range(rng.randint(2, 30)))
        inputs = [text, text[::-1]] if index % 10 == 0 else text
        parameters = {"top_k": 2} if index % 7 == 0 else {}
        requests.append((inputs, parameters))
    before = server.metrics()

    async def drive() -> dict[int, tuple]:
        answers: dict[int, tuple] = {}
        todo = iter(range(len(requests)))

        async def client() -> None:
            connection = Connection(server.url)
            try:
                for index in todo:
                    inputs, parameters = requests[index]
                    status, headers, body = await connection.post(
                        "/v1/pipelines/cls", {"inputs": inputs, "parameters": parameters},
                        {"x-request-id": str(index)})
                    assert index not in answers, f"request {index} answered twice"
                    answers[index] = (status, headers.get("x-request-id"), json.loads(body))
            finally:
                connection.close()

        await asyncio.wait_for(asyncio.gather(*(client() for _ in range(64))), 60)
        return answers

    answers = asyncio.run(drive())
    after = server.metrics()
    assert sorted(answers) == list(range(len(requests))), "requests lost"
    pipe = reference["cls"]
    for index, (status, request_id, body) in answers.items():
        assert status == 200, body
        assert request_id == str(index)
        inputs, parameters = requests[index]
        assert_outputs_close(body, pipe(inputs, **parameters), atol=1e-5, path=f"request {index}")

    def delta(key: str) -> float:
        return after.get(key, 0) - before.get(key, 0)

    assert delta('lightpipe_requests_total{code="200",endpoint="pipelines",model="cls"}') == 2000
    inputs_run = delta('lightpipe_batch_size_sum{model="cls"}')
    batches = delta('lightpipe_batch_size_count{model="cls"}')
    assert inputs_run == sum(len(i) if isinstance(i, list) else 1 for i, _ in requests)
    assert inputs_run / batches > 1.5, f"mean batch size {inputs_run / batches:.2f}"
    assert after['lightpipe_queue_depth{model="cls"}'] == 0


# --- the slow server: queue, disconnects, timeouts, isolation ---

def _wait_for(check, seconds: float = 5.0) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.01)


def _queued(running: ServerProcess, name: str) -> int:
    return running.get("/health").json()["models"][name]["queued"]


def _raw_request(running: ServerProcess, path: str, body: dict) -> socket.socket:
    """Send a request on a raw socket and return it unread (to close it: a client leaving)."""
    host, port = running.url.removeprefix("http://").split(":")
    data = json.dumps(body).encode()
    sock = socket.create_connection((host, int(port)), timeout=10)
    sock.sendall(f"POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
                 f"Content-Length: {len(data)}\r\n\r\n".encode() + data)
    return sock


def test_queue_full_then_a_disconnect_frees_a_slot(slow, reference):
    sockets = [_raw_request(slow, "/v1/pipelines/slow", {"inputs": f"waiting {i}"}) for i in range(4)]
    _wait_for(lambda: _queued(slow, "slow") == 4)
    full = slow.post("/v1/pipelines/slow", {"inputs": "one too many"})
    assert full.status_code == 429 and error_of(full)["code"] == "queue_full"
    assert full.headers["retry-after"] == "1"
    before = slow.metrics().get('lightpipe_requests_cancelled_total{model="slow",reason="disconnect"}', 0)
    sockets.pop().close()  # this client leaves
    _wait_for(lambda: _queued(slow, "slow") == 3, seconds=1.0)
    after = slow.metrics()['lightpipe_requests_cancelled_total{model="slow",reason="disconnect"}']
    assert after == before + 1
    admitted = slow.post("/v1/pipelines/slow", {"inputs": "now there is room"})
    assert admitted.status_code == 200
    assert_outputs_close(admitted.json(), reference["cls"]("now there is room"), atol=1e-5)
    for sock in sockets:  # the others were answered too, in the same batch
        reply = sock.recv(65536).decode()
        assert reply.startswith("HTTP/1.1 200"), reply
        sock.close()


def test_a_bad_input_fails_alone_in_its_batch(slow, reference):
    before = slow.metrics().get('lightpipe_batches_total{model="slow"}', 0)
    bodies = [{"inputs": "a good one"}, {"inputs": {"text": 3}}, {"inputs": ["two", "good ones"]}]
    responses = in_threads([lambda b=b: slow.post("/v1/pipelines/slow", b) for b in bodies])
    assert slow.metrics()['lightpipe_batches_total{model="slow"}'] == before + 1  # one shared batch
    assert [r.status_code for r in responses] == [200, 422, 200]
    assert "strings in 'text'" in error_of(responses[1])["message"]
    assert_outputs_close(responses[0].json(), reference["cls"]("a good one"), atol=1e-5)
    assert_outputs_close(responses[2].json(), reference["cls"](["two", "good ones"]), atol=1e-5)


def test_request_timeout_is_504_and_leaves_the_queue(slow):
    start = time.perf_counter()
    response = slow.post("/v1/pipelines/hurried", {"inputs": "too slow"})
    elapsed = time.perf_counter() - start
    assert response.status_code == 504 and error_of(response)["code"] == "timeout"
    assert 0.25 < elapsed < 2.0
    assert _queued(slow, "hurried") == 0
    assert slow.metrics()['lightpipe_requests_cancelled_total{model="hurried",reason="timeout"}'] >= 1


# --- generation: OpenAI completions and chat, streamed and not ---

CHAT_TEMPLATE = ("{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}"
                 "{% if add_generation_prompt %}assistant:{% endif %}")


@pytest.fixture(scope="module")
def gpt2(gpt2_path, tmp_path_factory):
    """A tiny random GPT-2 (weights drawn wide, so greedy choices are clear) with the GPT-2-style
    test tokenizer and a chat template."""
    import shutil

    import transformers

    folder = tmp_path_factory.mktemp("gpt2_lm")
    for item in gpt2_path.iterdir():
        shutil.copy(item, folder / item.name)
    config_path = folder / "tokenizer_config.json"
    config_path.write_text(json.dumps({**json.loads(config_path.read_text()), "chat_template": CHAT_TEMPLATE}))
    vocab = len(transformers.AutoTokenizer.from_pretrained(folder))
    torch.manual_seed(0)
    model = transformers.GPT2LMHeadModel(transformers.GPT2Config(
        n_embd=32, n_layer=2, n_head=4, n_positions=128, vocab_size=vocab))
    with torch.no_grad():
        for param in model.parameters():
            if param.dim() > 1:
                param.normal_(0.0, 0.25)
    model.save_pretrained(folder)
    return folder


def test_completions_and_chat_with_the_openai_client(gpt2, tmp_path):
    from lightpipe.pipelines import SUPPORTED_TASKS

    assert SUPPORTED_TASKS["text-generation"].available, "the text-generation pipeline is missing"
    running = start_from_config(tmp_path, {"models": [
        {"name": "gpt2", "task": "text-generation", "model": str(gpt2), "max_wait_ms": 50}]})
    try:
        pipe = lightpipe.pipeline("text-generation", model=str(gpt2))
        client = openai.OpenAI(base_url=running.url + "/v1", api_key="unused", max_retries=0, timeout=60)
        prompts = ["Hello world", "The quick brown fox", "Tokenizers split words"]

        def expected(prompt, tokens):
            return pipe(prompt, max_new_tokens=tokens, do_sample=False, return_full_text=False)[0]["generated_text"]

        # Several prompts in one request, and concurrent requests: batched, each its own text.
        many = client.completions.create(model="gpt2", prompt=prompts, max_tokens=8, temperature=0)
        assert [c.text for c in many.choices] == [expected(p, 8) for p in prompts]
        assert [c.index for c in many.choices] == [0, 1, 2]
        assert many.usage.completion_tokens > 0 and many.usage.prompt_tokens > 0
        # usage counts the generated ids (the reference's generate), not the re-tokenised text
        import torch
        import transformers

        reference = transformers.AutoModelForCausalLM.from_pretrained(gpt2).eval()
        tokenizer = transformers.AutoTokenizer.from_pretrained(gpt2)
        generated = 0
        for prompt in prompts:
            ids = tokenizer(prompt, return_tensors="pt")["input_ids"]
            with torch.no_grad():
                new = reference.generate(ids, max_new_tokens=8, do_sample=False)[0, ids.shape[1]:].tolist()
            eos = reference.generation_config.eos_token_id
            generated += new.index(eos) + 1 if eos in new else len(new)
        assert many.usage.completion_tokens == generated
        single = in_threads([lambda p=p: client.completions.create(model="gpt2", prompt=p, max_tokens=6,
                                                                   temperature=0) for p in prompts])
        assert [r.choices[0].text for r in single] == [expected(p, 6) for p in prompts]
        assert single[0].choices[0].finish_reason in ("length", "stop")

        streamed = client.completions.create(model="gpt2", prompt=prompts[1], max_tokens=10,
                                             temperature=0, stream=True)
        pieces = [event.choices[0].text for event in streamed if event.choices]
        assert len([p for p in pieces if p]) >= 2, pieces  # more than one event carried text
        assert "".join(pieces) == expected(prompts[1], 10)

        messages = [{"role": "user", "content": "Hello there"}]
        reply = pipe(messages, max_new_tokens=8, do_sample=False, return_full_text=False)[0]["generated_text"]
        chat = client.chat.completions.create(model="gpt2", messages=messages, max_tokens=8, temperature=0)
        assert chat.choices[0].message.role == "assistant"
        assert chat.choices[0].message.content == reply
        stream = client.chat.completions.create(model="gpt2", messages=messages, max_tokens=8,
                                                temperature=0, stream=True,
                                                stream_options={"include_usage": True})
        events = list(stream)
        assert events[0].choices[0].delta.role == "assistant"
        assert "".join(e.choices[0].delta.content or "" for e in events if e.choices) == reply
        assert events[-2].choices[0].finish_reason in ("length", "stop")
        assert events[-1].usage.completion_tokens == 8 or events[-2].choices[0].finish_reason == "stop"

        # A stop string cuts the text before it, streamed or not.
        full = expected(prompts[0], 12)
        stop = full.strip()[2:5]
        assert stop and stop in full
        cut = client.completions.create(model="gpt2", prompt=prompts[0], max_tokens=12, temperature=0, stop=stop)
        assert cut.choices[0].text == full[:full.find(stop)] and cut.choices[0].finish_reason == "stop"
        streamed_cut = client.completions.create(model="gpt2", prompt=prompts[0], max_tokens=12,
                                                 temperature=0, stop=[stop], stream=True)
        assert "".join(e.choices[0].text for e in streamed_cut if e.choices) == full[:full.find(stop)]

        # Seeded sampling is reproducible; errors are the OpenAI client's errors.
        sampled = [client.completions.create(model="gpt2", prompt="Hello", max_tokens=8, temperature=1.0,
                                             seed=3).choices[0].text for _ in range(2)]
        assert sampled[0] == sampled[1]
        with pytest.raises(openai.UnprocessableEntityError, match="'n' must be an integer from 1 to 1"):
            client.completions.create(model="gpt2", prompt="x", n=2)
        with pytest.raises(openai.UnprocessableEntityError, match="messages\\[0\\]"):
            client.chat.completions.create(model="gpt2", messages=[{"role": "user"}])
        with pytest.raises(openai.UnprocessableEntityError, match="longer than|positions|maximum"):
            client.completions.create(model="gpt2", prompt="word " * 200, max_tokens=4, stream=True)
        with pytest.raises(openai.NotFoundError):
            client.chat.completions.create(model="gpt-4o", messages=messages)
        assert running.get("/health").json()["models"]["gpt2"]["queued"] == 0
    finally:
        assert running.stop() == 0, "".join(running.lines)


# --- the command line and shutdown ---

def test_cli_serve_one_model_and_graceful_shutdown(classifier, reference):
    running = ServerProcess("text-classification", "--model", str(classifier), "--max-batch-size", "8",
                            "--max-wait-ms", str(SLOW_WAIT_MS))
    try:
        assert [m["id"] for m in running.get("/v1/models").json()["data"]] == [classifier.name]
        answer: list = []
        worker = threading.Thread(target=lambda: answer.append(
            running.post(f"/v1/pipelines/{classifier.name}", {"inputs": TEXTS})))
        worker.start()
        _wait_for(lambda: _queued(running, classifier.name) == 1)
        start = time.perf_counter()
        running.process.send_signal(signal.SIGTERM)  # in flight: waiting for its batch to fill
        worker.join(30)
        assert running.process.wait(30) == 0
        # Shutdown ran the queued request at once instead of waiting out its batch window.
        assert time.perf_counter() - start < SLOW_WAIT_MS / 1000
        assert answer and answer[0].status_code == 200
        assert_outputs_close(answer[0].json(), reference["cls"](TEXTS), atol=1e-5)
        assert "server stopped" in "".join(running.lines)
    finally:
        running.stop()


def test_webserver_example(minilm_path):
    env = {**os.environ, "HF_HUB_OFFLINE": "1",
           "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    done = subprocess.run([sys.executable, str(ROOT / "examples" / "webserver.py"), "--model",
                           str(minilm_path), "--requests", "16"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "models: ['minilm']" in out
    passes = re.search(r"16 requests, 384 dimensions, (\d+) forward passes", out)
    assert passes and int(passes[1]) < 16, out  # batched
    similarity = json.loads(out.split("similarity: ", 1)[1].splitlines()[0])
    assert all(abs(similarity[i][i] - 1) < 1e-3 for i in range(6))
    assert similarity[0][1] > 0.6 > similarity[0][2]  # eating ~ eating, not ~ violin
    assert "pipeline: status 200, 4 token vectors of 384" in out
    assert 'error: status 422, {"error": {"message": "The feature-extraction pipeline takes a string' in out
    assert "server exit code: 0" in out


def test_config_errors_name_the_problem(tmp_path):
    with pytest.raises(ConfigError, match="Unknown key 'max_batch' .*max_batch_size"):
        build_settings(models=[{"task": "feature-extraction", "model": "m", "max_batch": 4}])
    with pytest.raises(ConfigError, match="Two models are named 'm'"):
        build_settings(models=[{"task": "feature-extraction", "model": "a/m"},
                               {"task": "text-classification", "model": "b/m"}])
    with pytest.raises(ConfigError, match="max_wait_ms must be a number"):
        build_settings(models=[{"task": "feature-extraction", "model": "m", "max_wait_ms": "5"}])
    settings = build_settings({"port": 9000, "defaults": {"max_batch_size": 8},
                               "models": [{"task": "feature-extraction", "model": "org/minilm"}]},
                              defaults={"max_wait_ms": 2.0, "max_batch_size": None}, host="::1")
    assert (settings.host, settings.port) == ("::1", 9000)
    assert (settings.models[0].name, settings.models[0].max_batch_size, settings.models[0].max_wait_ms) == (
        "minilm", 8, 2.0)
    toml = tmp_path / "serve.toml"
    toml.write_text('port = 8100\n[defaults]\nmax_wait_ms = 3\n[[models]]\ntask = "ner"\nmodel = "org/bert-ner"\n'
                    '[[models]]\nname = "embed"\ntask = "feature-extraction"\nmodel = "org/minilm"\n')
    settings = build_settings(read_config(toml))
    assert settings.port == 8100
    assert [(m.name, m.task, m.max_wait_ms) for m in settings.models] == [
        ("bert-ner", "ner", 3), ("embed", "feature-extraction", 3)]
    bad = tmp_path / "bad.json"
    bad.write_text('{"models": [}')
    done = subprocess.run([sys.executable, "-m", "lightpipe", "serve", "--config", str(bad)],
                          capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert done.returncode == 2 and "does not parse" in done.stderr and "Traceback" not in done.stderr
    done = subprocess.run([sys.executable, "-m", "lightpipe", "serve"], capture_output=True, text=True,
                          timeout=60, cwd=ROOT)
    assert done.returncode == 2 and "--config FILE" in done.stderr


# --- image and audio inputs arrive as JSON ---

def test_media_inputs_decode_base64_and_refuse_server_paths(tmp_path):
    from lightpipe.serving.routes import ApiError, _media_item

    payload = b"RIFF\x00\x00fake-bytes"
    encoded = base64.b64encode(payload).decode()
    assert _media_item("audio", encoded, "inputs[0]") == payload
    assert _media_item("image", f"data:image/png;base64,{encoded}", "inputs[0]") == payload
    assert _media_item("image", "https://example.com/cat.png", "inputs[0]") == "https://example.com/cat.png"
    assert _media_item("video", "https://example.com/clip.mp4", "inputs[0]") == "https://example.com/clip.mp4"
    assert _media_item("video", encoded, "inputs[0]") == payload
    item = _media_item("audio", {"array": [0.0, 0.5, -0.5], "sampling_rate": 16000}, "inputs[0]")
    assert item["sampling_rate"] == 16000 and item["array"].dtype == np.float32
    np.testing.assert_array_equal(item["array"], [0.0, 0.5, -0.5])
    local = tmp_path / "secret.wav"
    local.write_bytes(payload)
    cases = [("audio", str(local), "does not read files"), ("image", str(local), "does not read files"),
             ("audio", "https://example.com/a.wav", "does not fetch audio URLs"),
             ("audio", "not base64!", "not valid base64"), ("image", 42, "not a number"),
             ("audio", {"array": "x", "sampling_rate": 16000}, "sampling_rate"),
             ("video", str(local), "does not read files"), ("video", "not base64!", "not valid base64")]
    for kind, value, message in cases:
        with pytest.raises(ApiError, match=message) as caught:
            _media_item(kind, value, "inputs[0]")
        assert caught.value.status == 422 and caught.value.param == "inputs[0]"


def test_image_and_audio_over_http(server, media_models, test_images, tmp_path):
    """Images and audio travel as base64 (or, for audio, a samples array); the answer equals
    the Python call's on the same file, and a path on the server's disk is refused."""
    import soundfile

    image_path = Path(test_images["rgb_jpeg"])
    encoded = base64.b64encode(image_path.read_bytes()).decode()
    local = lightpipe.pipeline("image-classification", model=str(media_models["vit"]))
    answer = server.post("/v1/pipelines/vit", {"inputs": encoded, "parameters": {"top_k": 2}})
    assert answer.status_code == 200, answer.text
    assert_outputs_close(answer.json(), local(str(image_path), top_k=2))
    answer = server.post("/v1/pipelines/vit", {"inputs": [f"data:image/jpeg;base64,{encoded}", encoded]})
    assert answer.status_code == 200 and len(answer.json()) == 2
    refused = server.post("/v1/pipelines/vit", {"inputs": str(image_path)})
    assert refused.status_code == 422 and "does not read files" in refused.json()["error"]["message"]

    samples = np.round(np.sin(np.arange(2400) / 7.0) * 0.3, 3).astype(np.float32)
    wav = tmp_path / "tone.wav"
    soundfile.write(wav, samples, 16000, subtype="PCM_16")
    asr = lightpipe.pipeline("automatic-speech-recognition", model=str(media_models["asr"]))
    answer = server.post("/v1/pipelines/asr", {"inputs": base64.b64encode(wav.read_bytes()).decode()})
    assert answer.status_code == 200, answer.text
    assert answer.json() == asr(str(wav))
    answer = server.post("/v1/pipelines/asr", {"inputs": {"array": samples.tolist(), "sampling_rate": 16000}})
    assert answer.status_code == 200, answer.text
    assert answer.json() == asr({"array": samples, "sampling_rate": 16000})


def test_multimodal_inputs_and_image_outputs_travel_as_json(tmp_path):
    """{"image", "question"} inputs: the image goes through the same checks as an image input
    (base64, data: URI, URL; never a server path); a dict without one (document QA with
    word_boxes) stays as it is. Images in outputs leave as PNG data: URIs."""
    import io

    from PIL import Image

    from lightpipe.serving.routes import ApiError, _multimodal_item
    from lightpipe.serving.batcher import encode_json

    encoded = base64.b64encode(b"\x89PNG fake").decode()
    assert _multimodal_item({"image": encoded, "question": "q?"}, "inputs[0]") == \
        {"image": b"\x89PNG fake", "question": "q?"}
    assert _multimodal_item(encoded, "inputs[0]") == b"\x89PNG fake"
    boxes = {"question": "q?", "word_boxes": [["total", [1, 2, 3, 4]]]}
    assert _multimodal_item(boxes, "inputs[0]") is boxes
    local = tmp_path / "secret.png"
    local.write_bytes(b"x")
    with pytest.raises(ApiError, match="does not read files") as caught:
        _multimodal_item({"image": str(local), "question": "q?"}, "inputs[3]")
    assert caught.value.param == "inputs[3].image"

    image = Image.new("RGB", (3, 2), (10, 20, 30))
    payload = json.loads(encode_json([{"depth": image, "score": 0.5}]))
    header, data = payload[0]["depth"].split(",", 1)
    assert header == "data:image/png;base64" and payload[0]["score"] == 0.5
    decoded = Image.open(io.BytesIO(base64.b64decode(data)))
    assert decoded.size == (3, 2) and decoded.tobytes() == image.tobytes()


def test_vqa_and_image_to_image_over_http(tmp_path_factory, vilt_checkpoint, swin2sr_checkpoint,
                                          test_images):
    import io

    from PIL import Image

    config = {"models": [{"name": "vqa", "task": "visual-question-answering", "model": str(vilt_checkpoint())},
                         {"name": "sr", "task": "image-to-image", "model": str(swin2sr_checkpoint())}]}
    running = start_from_config(tmp_path_factory.mktemp("multimodal_server"), config)
    try:
        path = Path(test_images["rgb_jpeg"])
        encoded = base64.b64encode(path.read_bytes()).decode()
        answer = running.post("/v1/pipelines/vqa", {"inputs": {"image": encoded, "question": "what is it?"},
                                                    "parameters": {"top_k": 2}})
        assert answer.status_code == 200, answer.text
        local = lightpipe.pipeline("visual-question-answering", model=str(vilt_checkpoint()))
        assert_outputs_close(answer.json(), local(image=str(path), question="what is it?", top_k=2))
        refused = running.post("/v1/pipelines/vqa", {"inputs": {"image": str(path), "question": "q"}})
        assert refused.status_code == 422 and "does not read files" in refused.json()["error"]["message"]
        answer = running.post("/v1/pipelines/sr", {"inputs": encoded})
        assert answer.status_code == 200, answer.text
        sent = answer.json()
        sent = sent[0] if isinstance(sent, list) else sent
        shown = Image.open(io.BytesIO(base64.b64decode(sent.split(",", 1)[1])))
        want = lightpipe.pipeline("image-to-image", model=str(swin2sr_checkpoint()))(str(path))
        assert shown.size == want.size and shown.tobytes() == want.tobytes()
    finally:
        assert running.stop() == 0, "".join(running.lines)
