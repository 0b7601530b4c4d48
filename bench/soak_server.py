"""Soak test of `lightpipe serve` (not in CI): good and hostile requests, mixed, concurrent.

One server on 127.0.0.1 serves two tiny models built here (a 2-layer, 32-wide BERT as
text-classification "cls" and as feature-extraction "enc"). --clients keep-alive connections
send --n requests (seeded): about 70% good ones (a text or a few, sometimes with top_k), whose
answers are compared with the same pipeline's answer in this process, and 30% hostile ones
(deep JSON, NaN, code-like and unknown parameters, oversized values, too many inputs, bad JSON,
compressed bodies, unknown models), which must be answered 4xx. It prints:

    lost        requests without exactly one answer (goal 0)
    mixed up    good answers that are not their own request's (goal 0)
    5xx         (goal 0); unexpected statuses (a good request not 200, a hostile one not 4xx)
    RSS         the server's resident memory after warm-up and at the end (goal: flat)
    p50 / p99   latency of good and of hostile requests

    python bench/soak_server.py                       # 20,000 requests, 64 clients
    python bench/soak_server.py --n 2000 --clients 16 # a shorter run on a busy machine

Bounded: every request has a 60 s timeout and the whole run --max-seconds.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import re
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from common import CHILD_ENV, build_tiny_checkpoint, machine, write_json

ROOT = Path(__file__).resolve().parents[1]
WORDS = ("good bad movie film great awful plot actor music scene boring brilliant long short river "
         "window garden language history science family house small right take three").split()


def texts(count: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    return [f"{i}: " + " ".join(rng.choice(WORDS) for _ in range(rng.randint(2, 24))) for i in range(count)]


HOSTILE = [  # (path, raw body or JSON, extra headers)
    ("/v1/pipelines/cls", b"[" * 5000 + b"]" * 5000, {}),
    ("/v1/pipelines/cls", b'{"inputs": NaN}', {}),
    ("/v1/pipelines/cls", b'{"inputs": "x", "parameters": {"top_k": Infinity}}', {}),
    ("/v1/pipelines/cls", {"inputs": "x", "parameters": {"chat_template": "{{ 1 }}"}}, {}),
    ("/v1/pipelines/cls", {"inputs": "x", "parameters": {"tokenizer_kwargs": {"chat_template": "x"}}}, {}),
    ("/v1/pipelines/cls", {"inputs": "x", "parameters": {"num_return_sequences": 2000000}}, {}),
    ("/v1/pipelines/cls", {"inputs": "x", "parameters": {"top_k": 10 ** 9}}, {}),
    ("/v1/pipelines/cls", {"inputs": "x", "parameters": {"max_length": 10 ** 9, "padding": "max_length"}}, {}),
    ("/v1/pipelines/cls", {"inputs": "x", "parameters": {"streamer": "x", "generation_config": {}}}, {}),
    ("/v1/pipelines/cls", {"inputs": "x", "parameters": {"colour": "red"}}, {}),
    ("/v1/pipelines/cls", {"inputs": "x", "parameters": {"batch_size": 100000}}, {}),
    ("/v1/pipelines/cls", {"inputs": ["x"] * 300}, {}),
    ("/v1/pipelines/cls", {"inputs": "word " * 20000}, {}),
    ("/v1/pipelines/cls", {"inputs": [[["deep"]]]}, {}),
    ("/v1/pipelines/cls", {"inputs": 12345}, {}),
    ("/v1/pipelines/cls", b'{"inputs": ', {}),
    ("/v1/pipelines/cls", b'{"inputs": "x"}', {"Content-Encoding": "gzip"}),
    ("/v1/pipelines/enc", {"inputs": "x", "parameters": {"tokenize_kwargs": {"max_length": 10 ** 9}}}, {}),
    ("/v1/pipelines/gpt-9", {"inputs": "x"}, {}),
    ("/v1/embeddings", {"model": "enc", "input": [[1, 2, 3]]}, {}),
    ("/v1/embeddings", {"model": "enc", "input": "x", "chat_template": "x"}, {}),
    ("/v1/chat/completions", {"model": "cls", "messages": [{"role": "user", "content": "hi"}]}, {}),
]


def plan(n: int, seed: int, pool: list[str]) -> list[dict]:
    """The requests, seeded: good ones name the texts they send, hostile ones their case. Lists
    of texts come from 200 fixed combinations, so the expected answers are few to compute."""
    rng = random.Random(seed)
    combos = [[rng.randrange(len(pool)) for _ in range(rng.choice((2, 3)))] for _ in range(200)]
    requests = []
    for index in range(n):
        if rng.random() < 0.3:
            path, body, headers = HOSTILE[rng.randrange(len(HOSTILE))]
            requests.append({"kind": "hostile", "path": path, "body": body, "headers": headers})
            continue
        model = "cls" if rng.random() < 0.7 else "enc"
        chosen = [rng.randrange(len(pool))] if rng.random() < 0.7 else combos[rng.randrange(len(combos))]
        inputs = pool[chosen[0]] if len(chosen) == 1 else [pool[i] for i in chosen]
        parameters = {"top_k": 2} if model == "cls" and rng.random() < 0.3 else {}
        requests.append({"kind": "good", "path": f"/v1/pipelines/{model}", "model": model, "texts": chosen,
                         "body": {"inputs": inputs, "parameters": parameters}, "headers": {}})
    return requests


class Connection:
    """One keep-alive HTTP/1.1 connection; reconnects when the server closed it between requests."""

    def __init__(self, host: str, port: int):
        self.host, self.port, self.reader, self.writer = host, port, None, None

    async def post(self, path: str, body, headers: dict) -> tuple[int, dict, bytes]:
        if self.reader is None or self.reader.at_eof():
            self.close()
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        extra = "".join(f"{key}: {value}\r\n" for key, value in headers.items())
        self.writer.write(f"POST {path} HTTP/1.1\r\nHost: {self.host}\r\nContent-Type: application/json\r\n"
                          f"Content-Length: {len(data)}\r\n{extra}\r\n".encode() + data)
        head = (await self.reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
        fields = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in head[1:] if line)}
        answer = await self.reader.readexactly(int(fields.get("content-length", 0)))
        if fields.get("connection", "").lower() == "close":
            self.close()
        return int(head[0].split()[1]), fields, answer

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None


def close_enough(ours, theirs, tolerance: float = 1e-4) -> bool:
    if isinstance(theirs, (list, tuple)):
        return isinstance(ours, list) and len(ours) == len(theirs) and \
            all(close_enough(a, b, tolerance) for a, b in zip(ours, theirs))
    if isinstance(theirs, dict):
        return isinstance(ours, dict) and ours.keys() == theirs.keys() and \
            all(close_enough(ours[k], theirs[k], tolerance) for k in theirs)
    if isinstance(theirs, float):
        return isinstance(ours, (int, float)) and abs(ours - theirs) <= tolerance
    return ours == theirs


async def drive(url: str, requests: list[dict], expected, clients: int, max_seconds: float) -> dict:
    host, port = url.removeprefix("http://").split(":")
    answers: dict[int, int] = {}
    latencies = {"good": [], "hostile": []}
    counts = {"5xx": 0, "unexpected": 0, "mixed_up": 0, "errors": 0}
    examples: list[str] = []
    todo = iter(range(len(requests)))

    async def client() -> None:
        connection = Connection(host, int(port))
        try:
            for index in todo:
                request = requests[index]
                start = time.perf_counter()
                try:
                    status, fields, body = await asyncio.wait_for(connection.post(
                        request["path"], request["body"], {**request["headers"], "x-request-id": str(index)}), 60)
                except (OSError, asyncio.IncompleteReadError, asyncio.TimeoutError) as error:
                    counts["errors"] += 1
                    examples.append(f"{index}: {type(error).__name__}")
                    connection.close()
                    continue
                latencies[request["kind"]].append(time.perf_counter() - start)
                answers[index] = answers.get(index, 0) + 1
                if status >= 500:
                    counts["5xx"] += 1
                    examples.append(f"{index}: {status} {body[:200]!r}")
                good = request["kind"] == "good"
                if (good and status != 200) or (not good and not 400 <= status < 500):
                    if status != 429:  # backpressure is an answer, not an error
                        counts["unexpected"] += 1
                        examples.append(f"{index} ({request['kind']}): {status} {body[:200]!r}")
                    continue
                if good and (fields.get("x-request-id") != str(index)
                             or not close_enough(json.loads(body), expected(request))):
                    counts["mixed_up"] += 1
                    examples.append(f"{index}: not its own answer")
        finally:
            connection.close()

    await asyncio.wait_for(asyncio.gather(*(client() for _ in range(clients))), max_seconds)
    lost = sum(1 for i in range(len(requests)) if answers.get(i) != 1)
    return {"lost": lost, **counts, "examples": examples[:10], "latencies": latencies}


def rss_mb(pid: int) -> float:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(r"VmRSS:\s+(\d+) kB", status)[1]) / 1024


def percentile(values: list[float], fraction: float) -> float:
    values = sorted(values)
    return 1000 * values[min(len(values) - 1, int(len(values) * fraction))] if values else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=20_000, help="requests (default 20,000)")
    parser.add_argument("--clients", type=int, default=64, help="concurrent connections (default 64)")
    parser.add_argument("--max-seconds", type=float, default=1800, help="bound on the whole run")
    parser.add_argument("--seed", type=int, default=16)
    args = parser.parse_args()

    import lightpipe  # the expected answers come from the same pipelines, in this process

    model = build_tiny_checkpoint(tempfile.mkdtemp(prefix="soak_"))
    pool = texts(400, args.seed)
    local = {"cls": lightpipe.pipeline("text-classification", model=model),
             "enc": lightpipe.pipeline("feature-extraction", model=model)}
    cache: dict = {}

    def expected(request: dict):
        body = request["body"]
        key = (request["model"], json.dumps(body, sort_keys=True))
        if key not in cache:
            cache[key] = json.loads(json.dumps(local[request["model"]](body["inputs"], **body["parameters"]),
                                               default=lambda v: v.tolist()))
        return cache[key]

    config = Path(tempfile.mkdtemp(prefix="soak_config_")) / "serve.json"
    config.write_text(json.dumps({"models": [
        {"name": "cls", "task": "text-classification", "model": model, "max_queue": 4096},
        {"name": "enc", "task": "feature-extraction", "model": model, "max_queue": 4096}]}))
    process = subprocess.Popen([sys.executable, "-m", "lightpipe", "serve", "--config", str(config), "--port", "0",
                                "--log-level", "error"], cwd=ROOT, env=CHILD_ENV, stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE, text=True)
    lines: list[str] = []
    ready = threading.Event()
    url = ""

    def read() -> None:
        nonlocal url
        for line in process.stderr:
            lines.append(line)
            found = re.search(r"on (http://127\.0\.0\.1:\d+)", line)
            if found:
                url = found[1]
                ready.set()
        ready.set()

    threading.Thread(target=read, daemon=True).start()
    try:
        if not ready.wait(180) or not url:
            raise RuntimeError("the server did not start:\n" + "".join(lines))
        warm = plan(400, args.seed + 1, pool)
        requests = plan(args.n, args.seed, pool)
        for request in warm + requests:  # the expected answers, before the clock starts
            if request["kind"] == "good":
                expected(request)
        asyncio.run(drive(url, warm, expected, args.clients, args.max_seconds))
        rss_start = rss_mb(process.pid)
        start = time.perf_counter()
        result = asyncio.run(drive(url, requests, expected, args.clients, args.max_seconds))
        seconds = time.perf_counter() - start
        rss_end = rss_mb(process.pid)
    finally:
        process.terminate()
        try:
            process.wait(60)
        except subprocess.TimeoutExpired:
            process.kill()
    good, hostile = result.pop("latencies").values()
    summary = {
        "requests": args.n, "clients": args.clients, "seconds": round(seconds, 1),
        "good": len(good), "hostile": len(hostile), "lost": result["lost"], "mixed_up": result["mixed_up"],
        "5xx": result["5xx"], "unexpected": result["unexpected"], "connection_errors": result["errors"],
        "rss_start_mb": round(rss_start, 1), "rss_end_mb": round(rss_end, 1),
        "p50_ms": {"good": round(percentile(good, 0.5), 1), "hostile": round(percentile(hostile, 0.5), 1)},
        "p99_ms": {"good": round(percentile(good, 0.99), 1), "hostile": round(percentile(hostile, 0.99), 1)},
        "server_exit": process.returncode, "examples": result["examples"], "machine": machine()}
    print(f"{args.n} requests ({len(good)} good, {len(hostile)} hostile) from {args.clients} clients "
          f"in {seconds:.0f} s ({args.n / seconds:.0f} req/s)")
    print(f"lost {summary['lost']}, mixed up {summary['mixed_up']}, 5xx {summary['5xx']}, unexpected "
          f"{summary['unexpected']}, connection errors {summary['connection_errors']}")
    print(f"server RSS {rss_start:.0f} MB after warm-up, {rss_end:.0f} MB at the end")
    print(f"p50 / p99: good {summary['p50_ms']['good']} / {summary['p99_ms']['good']} ms, "
          f"hostile {summary['p50_ms']['hostile']} / {summary['p99_ms']['hostile']} ms")
    for example in result["examples"]:
        print("  " + example)
    print(f"JSON: {write_json('soak_server', summary)}")


if __name__ == "__main__":
    main()
