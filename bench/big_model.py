"""Big model on a small machine (issue 19; not CI): a random checkpoint with the exact shape of
Llama 3.1 8B (or OPT-1.3B, or a Llama with fewer layers), bfloat16, sharded safetensors, made
in /tmp (never committed); 8 greedy tokens (a) with disk offload under max_memory={"cpu": ...}
and (b) fully in memory, each in its own process (peak RSS is per process); the tokens must
be equal. ``--quantization int4`` adds (c): int4 weight-only, quantised layer by layer while
loading, all in memory (its tokens may differ: other weights).

    python bench/big_model.py --shape opt-1.3b
    python bench/big_model.py --shape llama-3.1-8b --cpu-memory 4GiB      # ~16 GB of disk
    python bench/big_model.py --shape llama-3.1-8b --layers 4             # a smaller Llama
    python bench/big_model.py --shape llama-3.1-8b --quantization int4 --skip-in-memory
"""

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

SHAPES = {
    "llama-3.1-8b": dict(model_type="llama", architectures=["LlamaForCausalLM"], vocab_size=128256,
                         hidden_size=4096, intermediate_size=14336, num_hidden_layers=32,
                         num_attention_heads=32, num_key_value_heads=8, max_position_embeddings=131072,
                         rope_theta=500000.0, rms_norm_eps=1e-5, tie_word_embeddings=False,
                         torch_dtype="bfloat16", bos_token_id=128000, eos_token_id=128001),
    "opt-1.3b": dict(model_type="opt", architectures=["OPTForCausalLM"], vocab_size=50272,
                     hidden_size=2048, ffn_dim=8192, num_hidden_layers=24, num_attention_heads=32,
                     max_position_embeddings=2048, word_embed_proj_dim=2048,
                     do_layer_norm_before=True, torch_dtype="bfloat16", pad_token_id=1,
                     bos_token_id=2, eos_token_id=2, enable_bias=True),
}


def build(folder: Path, config: dict, shard_bytes: int = 2 * 10**9) -> None:
    """Random bfloat16 weights of the config's shape, in shards with an index."""
    import torch
    from safetensors.torch import save_file

    from lightpipe.config import Config
    from lightpipe.memory_estimate import meta_model

    if (folder / "model.safetensors.index.json").is_file():
        return
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps(config))
    model = meta_model(Config.from_folder(folder))
    # random values made once and tiled from a random offset per tensor: drawing 8B normals on
    # this 2-core machine takes half an hour, tiling is a copy
    generator = torch.Generator().manual_seed(0)
    base = (torch.randn(2**24 + 7, generator=generator) * 0.02).to(torch.bfloat16)
    shard, size, weight_map, index = {}, 0, {}, 0

    def flush():
        nonlocal shard, size, index
        if shard:
            name = f"model-{index:05d}.safetensors"
            save_file(shard, str(folder / name), metadata={"format": "pt"})
            weight_map.update(dict.fromkeys(shard, name))
            shard, size, index = {}, 0, index + 1

    for name, param in model.state_dict().items():
        count = param.numel()
        if name.endswith("norm.weight") or "layer_norm.weight" in name:
            tensor = torch.ones(param.shape, dtype=torch.bfloat16)
        else:
            start = int(torch.randint(0, base.numel(), (1,), generator=generator))
            rolled = torch.cat([base[start:], base[:start]])
            tensor = rolled.repeat(count // rolled.numel() + 1)[:count].view(param.shape).clone()
        shard[name] = tensor
        size += shard[name].numel() * 2
        if size >= shard_bytes:
            flush()
    flush()
    (folder / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))


def _peak_rss() -> int:
    """This process's peak resident set: VmHWM (ru_maxrss keeps the parent's peak across exec)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def run(folder: str, cpu_memory: str | None, tokens: int, quantization: str | None = None) -> dict:
    """One measured run (in this process)."""
    import torch

    from lightpipe import AutoModelForCausalLM

    torch.set_num_threads(os.cpu_count() or 1)
    start = time.perf_counter()
    kwargs = {"device_map": "auto", "max_memory": {"cpu": cpu_memory}} if cpu_memory else {}
    if quantization:
        kwargs["quantization"] = quantization
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.bfloat16, **kwargs)
    load = time.perf_counter() - start
    ids = torch.tensor([[1, 450, 4996, 17354, 1701, 432]])
    start = time.perf_counter()
    out = model.generate(ids, max_new_tokens=tokens, do_sample=False)
    seconds = time.perf_counter() - start
    placed = getattr(model, "hf_device_map", {"": "cpu"})
    return {"tokens": out[0, ids.shape[1]:].tolist(), "load_s": round(load, 2),
            "tok_per_s": round(tokens / seconds, 3),
            "peak_rss_gib": round(_peak_rss() / 2**30, 2),
            "disk_blocks": sum(1 for d in placed.values() if d == "disk")}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--shape", choices=sorted(SHAPES), default="opt-1.3b")
    parser.add_argument("--layers", type=int, help="fewer layers than the real model")
    parser.add_argument("--cpu-memory", default="4GiB")
    parser.add_argument("--tokens", type=int, default=8)
    parser.add_argument("--folder", help="where the checkpoint is made (default /tmp/...)")
    parser.add_argument("--quantization", help="also a run with this quantization (int4, int8)")
    parser.add_argument("--skip-in-memory", action="store_true",
                        help="no full in-memory run (it needs the whole checkpoint in RAM)")
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        folder, memory, quantization = args.child
        print(json.dumps(run(folder, None if memory == "-" else memory, args.tokens,
                             None if quantization == "-" else quantization)))
        return
    config = dict(SHAPES[args.shape])
    if args.layers:
        config["num_hidden_layers"] = args.layers
    name = args.shape + (f"-{args.layers}l" if args.layers else "")
    folder = Path(args.folder or f"/tmp/lightpipe_bench_{name}")
    start = time.perf_counter()
    build(folder, config)
    print(f"checkpoint {folder}: built in {time.perf_counter() - start:.0f} s", flush=True)
    results = {}
    runs = [("offload", args.cpu_memory, "-")]
    if not args.skip_in_memory:
        runs.append(("in_memory", "-", "-"))
    if args.quantization:
        runs.append((args.quantization, "-", args.quantization))
    for label, memory, quantization in runs:
        child = subprocess.run([sys.executable, __file__, "--tokens", str(args.tokens),
                                "--child", str(folder), memory, quantization],
                               capture_output=True, text=True)
        if child.returncode:
            print(child.stderr[-2000:])
            raise SystemExit(f"{label} run failed")
        results[label] = json.loads(child.stdout.strip().splitlines()[-1])
        print(label, json.dumps(results[label]), flush=True)
    if "in_memory" in results:
        same = results["offload"]["tokens"] == results["in_memory"]["tokens"]
        print(f"{name}: tokens equal: {same}; offload peak RSS {results['offload']['peak_rss_gib']} "
              f"GiB (max_memory cpu {args.cpu_memory}), in memory "
              f"{results['in_memory']['peak_rss_gib']} GiB")
    if args.quantization:
        print(f"{name}: {args.quantization} peak RSS {results[args.quantization]['peak_rss_gib']} GiB")


if __name__ == "__main__":
    main()
