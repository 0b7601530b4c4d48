"""lightpipe.threads.adapt_threads: torch's thread count follows the other processes' load
after the model is loaded (issue 18: never slower with the default threads than with one,
busy machine or not)."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest
import torch

import lightpipe
from lightpipe import threads


@pytest.fixture
def adapting(monkeypatch):
    """adapt_threads' state saved and restored around a test; torch's count too."""
    saved = {name: getattr(threads, name) for name in ("_ceiling", "_set", "_last", "ADAPT_EVERY")}
    before = torch.get_num_threads()
    yield
    for name, value in saved.items():
        setattr(threads, name, value)
    torch.set_num_threads(before)


def look(t: float, busy: list[float], own: float, start: tuple | None = None):
    """A synthetic ``_look`` at time t: each cpu's busy share since ``start`` (100 ticks a
    second), and this process's own CPU seconds."""
    tick = os.sysconf("SC_CLK_TCK")
    if start is None:
        return (t, {cpu: (0, 0) for cpu in range(len(busy))}, 0)
    t0, cpus0, own0 = start
    span = (t - t0) * tick
    cpus = {cpu: (cpus0[cpu][0] + round(span * (1 - share)), cpus0[cpu][1] + round(span))
            for cpu, share in enumerate(busy)}
    return (t, cpus, own0 + round(own * tick))


def test_others_busy_subtracts_our_own_time():
    start = look(10.0, [0, 0], 0)
    # both cores fully busy for 1 s, 1.0 core of it ours: another process held one core
    assert threads.others_busy(start, look(11.0, [1.0, 1.0], 1.0, start)) == pytest.approx(1.0, abs=0.02)
    # our two threads are all the load
    assert threads.others_busy(start, look(11.0, [1.0, 1.0], 2.0, start)) == pytest.approx(0.0, abs=0.02)
    # quiet except for us on one core
    assert threads.others_busy(start, look(11.0, [1.0, 0.0], 1.0, start)) == pytest.approx(0.0, abs=0.02)


def test_adapt_lowers_raises_and_keeps_the_ceiling(adapting, monkeypatch):
    clock = [100.0]
    monkeypatch.setattr(threads.time, "monotonic", lambda: clock[0])
    torch.set_num_threads(2)
    state = {"last": look(100.0, [0, 0], 0), "busy": [1.0, 1.0], "own": 1.0}

    def fake_look():
        state["last"] = look(clock[0], state["busy"], state["own"] * (clock[0] - state["last"][0]),
                             state["last"])
        return state["last"]
    monkeypatch.setattr(threads, "_look", fake_look)
    threads._ceiling, threads._set, threads._last = 2, 2, state["last"]

    clock[0] += 0.1  # too soon to look again: nothing read, nothing changed
    assert threads.adapt_threads() == 2 and threads._last[0] == 100.0
    clock[0] += 0.5  # another process held a core: one thread
    assert threads.adapt_threads() == 1 and torch.get_num_threads() == 1
    clock[0] += 0.6  # still there (it has its core, we have ours)
    assert threads.adapt_threads() == 1
    state["busy"], state["own"] = [1.0, 0.0], 1.0
    clock[0] += 0.6  # it stopped: back to the ceiling
    assert threads.adapt_threads() == 2 and torch.get_num_threads() == 2
    state["busy"], state["own"] = [1.0, 0.45], 1.0  # sharing our second core: ~half of it
    clock[0] += 0.6
    assert threads.adapt_threads() == 1
    state["busy"], state["own"] = [0.0, 0.0], 0.0
    clock[0] += 0.6
    assert threads.adapt_threads() == 2
    state["busy"], state["own"] = [0.2, 0.0], 0.0  # background noise: kept
    clock[0] += 0.6
    assert threads.adapt_threads() == 2
    torch.set_num_threads(1)  # the user's own count becomes the ceiling: never raised above it
    clock[0] += 0.6
    assert threads.adapt_threads() == 1 and threads._ceiling == 1
    clock[0] += 0.6
    assert threads.adapt_threads() == 1 and torch.get_num_threads() == 1


def test_not_adapting_when_the_count_is_pinned(adapting, monkeypatch):
    monkeypatch.setenv("LIGHTPIPE_NUM_THREADS", "2")
    threads._ceiling = 2  # (adapting before)
    threads.choose_threads(force=True)
    assert threads._ceiling is None and threads.adapt_threads() is None
    assert torch.get_num_threads() == 2


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="needs two cores to take one away")
def test_a_busy_process_takes_a_thread_away(adapting):
    """Real /proc: a process spinning on one core, our work on all of them: one thread fewer."""
    cores = len(os.sched_getaffinity(0))
    torch.set_num_threads(cores)
    threads.ADAPT_EVERY = 0.3
    threads._start_adapting(cores)
    busy = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        a, w = torch.randn(64, 256), torch.randn(256, 1024)
        deadline = time.monotonic() + 4.0
        counts = []
        while time.monotonic() < deadline and (not counts or counts[-1] == cores):
            for _ in range(20):
                a @ w
            counts.append(threads.adapt_threads())
        assert counts[-1] == cores - 1, counts
    finally:
        busy.kill()
        busy.wait()


def test_generate_and_pipeline_batches_look(decoder, monkeypatch):
    """The hooks: each decoding step of generate() and each batch of a pipeline call it."""
    import lightpipe.generation.search as search
    import lightpipe.pipelines.base as base

    calls = []
    monkeypatch.setattr(search, "adapt_threads", lambda: calls.append("step"))
    monkeypatch.setattr(base, "adapt_threads", lambda: calls.append("batch"))
    folder = decoder("llama")
    model = lightpipe.AutoModelForCausalLM.from_pretrained(folder)
    model.generate(torch.tensor([[5, 6, 7]]), max_new_tokens=4, min_new_tokens=4, do_sample=False)
    assert calls.count("step") == 4  # the prompt, then three steps (the fourth token ends it)
    calls.clear()
    pipe = lightpipe.pipeline("feature-extraction", model=str(folder))
    pipe(["one", "two", "three"], batch_size=2)
    assert calls.count("batch") == 2
