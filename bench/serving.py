"""Serving throughput and latency: dynamic batching on vs off, feature-extraction, real MiniLM.

One `lightpipe serve` process per configuration (a subprocess on a free loopback port) serves
all-MiniLM-L6-v2 as feature-extraction:
  batching:     --max-batch-size 32 --max-wait-ms 5
  no batching:  --max-batch-size 1  --max-wait-ms 0   (one request per forward, as a naive server)
32 concurrent clients (keep-alive HTTP/1.1 connections on asyncio streams, in this process)
send N requests, one sentence of 6-30 words each (seeded), to two endpoints in turn:
  /v1/embeddings            OpenAI embeddings: a pooled, normalised 384-float vector per text
  /v1/pipelines/minilm      the pipeline's own answer: every token's 384-float vector
Each (configuration, endpoint) runs --rounds times, interleaved, after a warm-up of 64
requests; medians are reported: requests/s, p50/p99 latency (client side), and the mean batch
size read from the server's /metrics. Goal: batching >= 3x the throughput of no batching.
Every request is checked (status 200, one vector per text); the request loop is bounded.

    python bench/serving.py [--n 1000] [--rounds 3] [--clients 32]     (--n 200 --rounds 1: smoke)
    python bench/serving.py --threads 2        # the servers' torch threads (default: cores - 1)
    python bench/serving.py --model tiny       # a 2-layer, 32-wide BERT: overhead-bound, not compute-bound
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

from common import CHILD_ENV, build_tiny_checkpoint, goal, machine, median, minilm_dir, table, write_json

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = {"batching": ["--max-batch-size", "32", "--max-wait-ms", "5"],
           "no batching": ["--max-batch-size", "1", "--max-wait-ms", "0"]}
ENDPOINTS = ("/v1/embeddings", "/v1/pipelines/minilm")
WORDS = ("the of and to in is was for on that with as by at from this which have one all would there "
         "when who will more can only other new some time two may first like now make over even most "
         "after also many before through back years much way well down each just people how little "
         "good world still own see work long here between both life under never day same another "
         "know while last great old year come since against right take three small house river "
         "window garden music language history science beautiful government question family").split()


def sentences(n: int, seed: int = 99) -> list[str]:
    rng = random.Random(seed)
    return [" ".join(rng.choice(WORDS) for _ in range(rng.randint(6, 30))).capitalize() + "."
            for _ in range(n)]


class Connection:
    """One keep-alive HTTP/1.1 connection: POST JSON, read a Content-Length answer."""

    def __init__(self, host: str, port: int):
        self.host, self.port, self.reader = host, port, None

    async def post(self, path: str, payload: dict) -> tuple[int, bytes]:
        if self.reader is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        body = json.dumps(payload).encode()
        self.writer.write(f"POST {path} HTTP/1.1\r\nHost: {self.host}\r\nContent-Type: application/json"
                          f"\r\nContent-Length: {len(body)}\r\n\r\n".encode() + body)
        head = (await self.reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
        length = next(int(line.split(":", 1)[1]) for line in head if line.lower().startswith("content-length:"))
        return int(head[0].split()[1]), await self.reader.readexactly(length)

    def close(self) -> None:
        if self.reader is not None:
            self.writer.close()


async def load(url: str, path: str, texts: list[str], clients: int, hidden: int) -> dict:
    """Send one request per text from `clients` connections; return timings and checks."""
    host, port = url.removeprefix("http://").split(":")
    todo = iter(range(len(texts)))
    latencies: list[float] = []
    failures: list[str] = []

    async def client() -> None:
        connection = Connection(host, int(port))
        try:
            for index in todo:
                payload = ({"model": "minilm", "input": texts[index], "encoding_format": "float"}
                           if path == "/v1/embeddings" else {"inputs": texts[index]})
                start = time.perf_counter()
                status, body = await connection.post(path, payload)
                latencies.append(time.perf_counter() - start)
                answer = json.loads(body)
                vectors = [answer["data"][0]["embedding"]] if status == 200 and "data" in answer else \
                    answer[0] if status == 200 else []
                if status != 200 or not vectors or len(vectors[0]) != hidden:
                    failures.append(f"{index}: {status} {body[:200]!r}")
        finally:
            connection.close()

    start = time.perf_counter()
    await asyncio.wait_for(asyncio.gather(*(client() for _ in range(clients))), 1200)
    seconds = time.perf_counter() - start
    latencies.sort()
    return {"seconds": seconds, "requests_per_s": len(texts) / seconds,
            "p50_ms": 1000 * latencies[len(latencies) // 2],
            "p99_ms": 1000 * latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))],
            "requests": len(latencies), "failures": failures[:5], "failed": len(failures)}


class Server:
    """`python -m lightpipe serve feature-extraction --model MiniLM ...` on a free port."""

    def __init__(self, model: str, extra: list[str]):
        self.process = subprocess.Popen(
            [sys.executable, "-m", "lightpipe", "serve", "feature-extraction", "--model", model,
             "--name", "minilm", "--port", "0", "--log-level", "warning", *extra],
            cwd=ROOT, env=CHILD_ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        self.lines: list[str] = []
        ready = threading.Event()
        self.url = ""

        def read() -> None:
            for line in self.process.stderr:
                self.lines.append(line)
                found = re.search(r"on (http://127\.0\.0\.1:\d+) with (\d+) torch", line)
                if found:
                    self.url, self.threads = found[1], int(found[2])
                    ready.set()
            ready.set()

        threading.Thread(target=read, daemon=True).start()
        if not ready.wait(120) or not self.url:
            self.stop()
            raise RuntimeError("the server did not start:\n" + "".join(self.lines))

    def batch_stats(self) -> tuple[float, float]:
        """(inputs run, pipeline calls) so far, from /metrics."""
        import urllib.request

        text = urllib.request.urlopen(self.url + "/metrics", timeout=30).read().decode()
        values = dict(re.findall(r'^lightpipe_batch_size_(sum|count)\{model="minilm"\} ([0-9.e+]+)$',
                                 text, re.MULTILINE))
        return float(values.get("sum", 0)), float(values.get("count", 0))

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(60)
            except subprocess.TimeoutExpired:
                self.process.kill()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1000, help="requests per run (default 1000)")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved runs of each case")
    parser.add_argument("--clients", type=int, default=32, help="concurrent connections (default 32)")
    parser.add_argument("--threads", help="the servers' --threads (default: theirs, all cores but one)")
    parser.add_argument("--dtype", default="float32", help="the servers' --dtype (default float32)")
    parser.add_argument("--model", help="a feature-extraction folder (default: the packaged MiniLM); "
                                        "'tiny': a 2-layer, 32-wide BERT built here, where the "
                                        "per-request overhead outweighs the model")
    args = parser.parse_args()
    info = machine()
    texts = sentences(args.n)
    common = ["--dtype", args.dtype] + (["--threads", args.threads] if args.threads else [])
    model = args.model or minilm_dir()
    if args.model == "tiny":
        import tempfile

        model = build_tiny_checkpoint(tempfile.mkdtemp(prefix="serving_tiny_"))
    hidden = json.loads((Path(model) / "config.json").read_text())["hidden_size"]
    servers = {name: Server(model, extra + common) for name, extra in CONFIGS.items()}
    runs: dict[tuple[str, str], list[dict]] = {(c, e): [] for c in CONFIGS for e in ENDPOINTS}
    try:
        for name, server in servers.items():  # warm-up: first forwards, allocator, JIT-free paths
            for path in ENDPOINTS:
                asyncio.run(load(server.url, path, sentences(64, seed=1), args.clients, hidden))
        for round_index in range(args.rounds):
            for path in ENDPOINTS:
                for name, server in servers.items():
                    before = server.batch_stats()
                    result = asyncio.run(load(server.url, path, texts, args.clients, hidden))
                    after = server.batch_stats()
                    result["mean_batch"] = (after[0] - before[0]) / max(1.0, after[1] - before[1])
                    runs[(name, path)].append(result)
                    print(f"round {round_index + 1}/{args.rounds}: {name:<11} {path:<21} "
                          f"{result['requests_per_s']:7.1f} req/s, p50 {result['p50_ms']:.0f} ms, "
                          f"p99 {result['p99_ms']:.0f} ms, mean batch {result['mean_batch']:.1f}, "
                          f"failed {result['failed']}", file=sys.stderr)
        threads = servers["batching"].threads
    finally:
        for server in servers.values():
            server.stop()

    rows, summary = [], {}
    for (name, path), results in runs.items():
        entry = {key: median([r[key] for r in results])
                 for key in ("requests_per_s", "p50_ms", "p99_ms", "mean_batch")}
        entry["failed"] = sum(r["failed"] for r in results)
        entry["runs"] = results
        summary[f"{name} {path}"] = entry
        rows.append([path, name, entry["requests_per_s"], entry["p50_ms"], entry["p99_ms"],
                     entry["mean_batch"], entry["failed"]])
    speedups = {path: summary[f"batching {path}"]["requests_per_s"] /
                summary[f"no batching {path}"]["requests_per_s"] for path in ENDPOINTS}
    print(f"\nfeature-extraction served, {args.model or 'all-MiniLM-L6-v2'}, {args.clients} concurrent clients, "
          f"{args.n} requests per run (one sentence of 6-30 words each), {args.dtype}, {threads} torch thread(s), "
          f"median of {args.rounds} interleaved runs")
    print(table(rows, ["endpoint", "server", "req/s", "p50 ms", "p99 ms", "mean batch", "failed"]))
    for path, speedup in speedups.items():
        print(f"{path}: batching / no batching throughput {speedup:.2f}x (goal >= 3x: {goal(speedup >= 3)})")
    out = write_json(f"serving{'_' + Path(args.model).name if args.model else ''}.json", {
        "machine": info, "load_average_end": machine()["load_average_1_5_15min"], "n": args.n,
        "model": args.model or "all-MiniLM-L6-v2", "clients": args.clients, "rounds": args.rounds, "torch_threads": threads, "dtype": args.dtype,
        "configs": CONFIGS, "results": summary, "speedups": speedups})
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
