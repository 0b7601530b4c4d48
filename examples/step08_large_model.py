"""Tutorial step 08: a large model in bfloat16 with device_map="auto".

The accelerate "big model inference" tutorial loads facebook/opt-1.3b and generates. In
float32 its 1.3B parameters take 5.3 GB; in bfloat16, 2.6 GB. lightpipe loads a checkpoint in
its own dtype by default (an 8B bf16 checkpoint stays ~16 GB, not 32) and builds the model on
the meta device, so host memory never holds a second, float32 copy. device_map="auto" puts the
whole model on the best device there is (a GPU, else Apple's mps, else the CPU) when it fits;
with max_memory, the decoder layers that do not fit are offloaded: to the CPU, then to "disk",
where they run from the memory-mapped safetensors files one layer at a time (the tutorial's
"big model inference" with offload). model.hf_device_map shows where each block lives.

    python examples/step08_large_model.py                      # facebook/opt-1.3b
    HF_HUB_OFFLINE=1 python examples/step08_large_model.py --model ./opt --max-new-tokens 20
    python examples/step08_large_model.py --max-cpu-memory 1GiB    # the rest offloaded to disk
"""

import argparse
import json

import torch

from lightpipe import AutoModelForCausalLM, AutoTokenizer

parser = argparse.ArgumentParser(description="Tutorial step 08: a large model in bfloat16")
parser.add_argument("--model", default="facebook/opt-1.3b")
parser.add_argument("--dtype", default="bfloat16", help="bfloat16 (the tutorial's), float16, "
                                                         "float32 or auto (the checkpoint's own)")
parser.add_argument("--prompt", default="Hello, my name is")
parser.add_argument("--max-new-tokens", type=int, default=30)
parser.add_argument("--max-cpu-memory", help="e.g. 1GiB: weights beyond it are offloaded to disk")
parser.add_argument("--offload-folder", help="where disk blocks are written when the checkpoint "
                                             "is not safetensors in --dtype")
args = parser.parse_args()
offload = {}
if args.max_cpu_memory:
    offload["max_memory"] = {"cpu": args.max_cpu_memory}
if args.offload_folder:
    offload["offload_folder"] = args.offload_folder

dtype = args.dtype if args.dtype == "auto" else getattr(torch, args.dtype)
model = AutoModelForCausalLM.from_pretrained(args.model, device_map="auto", dtype=dtype, **offload)
tokenizer = AutoTokenizer.from_pretrained(args.model)
weights_bytes = sum(p.numel() * p.element_size() for p in model.parameters())
print("device:", json.dumps(str(model.device)))
print("device map:", json.dumps(model.hf_device_map))
print("dtype:", json.dumps(str(model.dtype).replace("torch.", "")))
print("parameters:", json.dumps(model.num_parameters()))
print("weights GB:", json.dumps(round(weights_bytes / 1e9, 3)))

inputs = tokenizer(args.prompt, return_tensors="pt").to(model.device)
outputs = model.generate(**inputs, max_new_tokens=args.max_new_tokens, do_sample=False)
print("token ids:", json.dumps(outputs[0].tolist()))
print("generated:", json.dumps(tokenizer.decode(outputs[0], skip_special_tokens=True)))
