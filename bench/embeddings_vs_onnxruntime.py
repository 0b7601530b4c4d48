"""Sentence embeddings: lightpipe vs ONNX Runtime, real all-MiniLM-L6-v2, in one process.

N English-like sentences of 5-120 words (seeded, as bench/feature_extraction.py), tokenized
once, sorted by length, batches of 32 padded to each batch's longest, mean pooling. Sides:
ONNX Runtime float32 (the reference model exported with ``torch.onnx``), ONNX Runtime's
dynamically quantized int8 model (``onnxruntime.quantization.quantize_dynamic``), lightpipe
float32 and lightpipe ``quantization="int8-dynamic"``. Each at 1 and 2 threads; rounds
interleaved, medians of sentences per second, ratios printed. Agreement: max |diff| of the
float32 embeddings to the reference's (transformers), min cosine of the int8 ones.

    pip install -e '.[bench]'   (onnxruntime, onnx: benchmark-only)
    python bench/embeddings_vs_onnxruntime.py [--n 1000] [--rounds 3] [--threads 1 2]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from common import minilm_dir  # noqa: E402
from feature_extraction import sentences  # noqa: E402


def batches(tokenizer_file: str, texts: list[str], size: int = 32):
    import numpy as np
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(tokenizer_file)
    tok.no_padding()
    tok.enable_truncation(256)
    ids = [e.ids for e in tok.encode_batch(texts)]
    order = sorted(range(len(ids)), key=lambda i: len(ids[i]))
    out = []
    for start in range(0, len(order), size):
        rows = [ids[i] for i in order[start:start + size]]
        width = max(map(len, rows))
        input_ids = np.zeros((len(rows), width), dtype=np.int64)
        mask = np.zeros_like(input_ids)
        for r, row in enumerate(rows):
            input_ids[r, :len(row)] = row
            mask[r, :len(row)] = 1
        out.append((input_ids, mask))
    return out


def mean_pool(hidden, mask):
    import numpy as np

    m = mask[..., None].astype(hidden.dtype)
    return (hidden * m).sum(1) / np.maximum(m.sum(1), 1e-9)


def torch_side_fn(model, data):
    """A run over the batches with a torch model (ours or the reference): pooled float32."""
    import numpy as np
    import torch

    def run():
        outs = []
        with torch.inference_mode():
            for input_ids, attention in data:
                i, a = torch.from_numpy(input_ids), torch.from_numpy(attention)
                hidden = model(input_ids=i, attention_mask=a, token_type_ids=torch.zeros_like(i))
                outs.append(mean_pool(hidden.last_hidden_state.float().numpy(), attention))
        return np.concatenate(outs)
    return run


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    args = parser.parse_args()

    import numpy as np
    import onnxruntime as ort
    import torch
    import transformers
    from onnxruntime.quantization import QuantType, quantize_dynamic

    import lightpipe

    folder = minilm_dir()
    data = batches(str(Path(folder) / "tokenizer.json"), sentences(args.n))
    reference = transformers.AutoModel.from_pretrained(folder).eval()
    work = Path(tempfile.mkdtemp(prefix="lp-onnx-"))
    fp32_path, int8_path = work / "minilm.onnx", work / "minilm-int8.onnx"
    ids, mask = (torch.from_numpy(a) for a in data[0])
    class Exported(torch.nn.Module):  # keyword arguments to the reference's forward
        def __init__(self, model):
            super().__init__()
            self.model = model

        def forward(self, input_ids, attention_mask, token_type_ids):
            return self.model(input_ids=input_ids, attention_mask=attention_mask,
                              token_type_ids=token_type_ids).last_hidden_state

    torch.onnx.export(Exported(reference), (ids, mask, torch.zeros_like(ids)), str(fp32_path),
                      dynamo=False,
                      input_names=["input_ids", "attention_mask", "token_type_ids"],
                      output_names=["last_hidden_state"], opset_version=17,
                      dynamic_axes={n: {0: "batch", 1: "seq"} for n in
                                    ("input_ids", "attention_mask", "token_type_ids", "last_hidden_state")})
    quantize_dynamic(str(fp32_path), str(int8_path), weight_type=QuantType.QInt8)

    # The reference's embeddings from a fresh copy: the traced one (torch.onnx.export) gave other
    # numbers (max |diff| 0.36 to both engines in the first run of this script).
    torch.set_num_threads(max(args.threads))
    want = torch_side_fn(transformers.AutoModel.from_pretrained(folder).eval(), data)()
    ours32 = lightpipe.AutoModel.from_pretrained(folder)
    ours8 = lightpipe.AutoModel.from_pretrained(folder, quantization="int8-dynamic")

    def torch_side(model):
        return torch_side_fn(model, data)

    def ort_side(path, threads):
        options = ort.SessionOptions()
        options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])

        def run():
            return np.concatenate([mean_pool(session.run(None, {
                "input_ids": i, "attention_mask": a, "token_type_ids": np.zeros_like(i)})[0], a)
                for i, a in data])
        return run

    torch.set_num_threads(max(args.threads))
    results = {}
    for threads in args.threads:
        torch.set_num_threads(threads)
        sides = {"onnxruntime float32": ort_side(fp32_path, threads),
                 "onnxruntime int8 (dynamic)": ort_side(int8_path, threads),
                 "lightpipe float32": torch_side(ours32),
                 "lightpipe int8-dynamic": torch_side(ours8)}
        times = {name: [] for name in sides}
        outputs = {name: run() for name, run in sides.items()}  # warm-up, and agreement
        for _ in range(args.rounds):
            for name, run in sides.items():
                start = time.perf_counter()
                run()
                times[name].append(time.perf_counter() - start)
        for name in sides:
            rate = args.n / statistics.median(times[name])
            got = outputs[name]
            cos = (got * want).sum(1) / (np.linalg.norm(got, axis=1) * np.linalg.norm(want, axis=1))
            results[(threads, name)] = (rate, float(np.abs(got - want).max()), float(cos.min()))
    print(f"all-MiniLM-L6-v2, {args.n} sentences, length-sorted batches of 32, mean pooling, "
          f"median of {args.rounds} rounds (sentences/s)")
    for threads in args.threads:
        print(f"\n{threads} thread(s):")
        for (t, name), (rate, diff, cos) in results.items():
            if t == threads:
                print(f"  {name:28s} {rate:8.1f} sent/s   max|diff| {diff:.2e}   min cos {cos:.5f}")
        r = {name: rate for (t, name), (rate, _, _) in results.items() if t == threads}
        print(f"  ratio lightpipe/ORT float32: {r['lightpipe float32'] / r['onnxruntime float32']:.2f}x; "
              f"lightpipe int8-dynamic / ORT int8: "
              f"{r['lightpipe int8-dynamic'] / r['onnxruntime int8 (dynamic)']:.2f}x; "
              f"lightpipe int8 / float32: {r['lightpipe int8-dynamic'] / r['lightpipe float32']:.2f}x")


if __name__ == "__main__":
    main()
