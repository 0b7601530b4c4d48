"""Tutorial step 11: chat with an instruct model.

A chat is a list of {"role", "content"} messages; the text-generation pipeline renders it with
the model's chat template and returns the conversation with the assistant's reply appended.
Append your next message to that conversation to go on. Gated models (Llama 3 here) need an
accepted licence on the Hub and a token: pass --token, or set HF_TOKEN (or run
`huggingface-cli login`); the pipeline reads it as transformers does.

    HF_TOKEN=hf_... python examples/step11_chat.py     # meta-llama/Meta-Llama-3-8B-Instruct
    python examples/step11_chat.py --model Qwen/Qwen2.5-0.5B-Instruct
    HF_HUB_OFFLINE=1 python examples/step11_chat.py --model ./instruct --max-new-tokens 20

An 8B model on a 16 GB laptop without a GPU: quantise it while loading (int4: about 4.5 GB of
weights; int8: about 8.5 GB), or keep bfloat16 and offload what does not fit to disk:

    python examples/step11_chat.py --quantize int4
    python examples/step11_chat.py --max-cpu-memory 8GiB      # the rest streamed from disk
"""

import argparse
import json

from lightpipe import pipeline

parser = argparse.ArgumentParser(description="Tutorial step 11: chat with an instruct model")
parser.add_argument("--model", default="meta-llama/Meta-Llama-3-8B-Instruct")
parser.add_argument("--token", help="a Hub token for gated models (default: HF_TOKEN or the login)")
parser.add_argument("--max-new-tokens", type=int, default=128)
parser.add_argument("--sample", action="store_true", help="sample (temperature 0.7) instead of "
                                                          "greedy decoding")
parser.add_argument("--quantize", help="int8 or int4 weight-only, applied layer by layer while "
                                       "loading (never the whole model in float first)")
parser.add_argument("--max-cpu-memory", help="e.g. 8GiB: decoder layers beyond it are offloaded "
                                             "to disk (memory-mapped, read as they run)")
args = parser.parse_args()

# The checkpoint's own dtype (bfloat16 for Llama 3: 16 GB, not 32), on the best device;
# quantised or partly offloaded when asked (`lightpipe estimate-memory MODEL` says what fits).
options = {}
if args.quantize:
    options["quantization"] = args.quantize
if args.max_cpu_memory:  # a from_pretrained argument: model_kwargs, as in transformers
    options["model_kwargs"] = {"max_memory": {"cpu": args.max_cpu_memory}}
pipe = pipeline("text-generation", model=args.model, token=args.token, dtype="auto",
                device_map="auto", **options)
settings = {"max_new_tokens": args.max_new_tokens, "do_sample": args.sample}
if options:  # where the layers live, and how many products are quantised
    placement = getattr(pipe.model, "hf_device_map", None) or {"": str(pipe.device)}
    print("placement:", json.dumps(sorted(set(map(str, placement.values())))))
    quantized = [type(m).__name__ for m in pipe.model.modules() if "Int" in type(m).__name__]
    print("quantized products:", json.dumps(len(quantized)))

chat = [
    {"role": "system", "content": "You are a sassy, wise-cracking robot as imagined by Hollywood circa 1986."},
    {"role": "user", "content": "Hey, can you tell me any fun things to do in New York?"},
]
# 1. One turn: the whole conversation comes back, the reply last.
chat = pipe(chat, **settings)[0]["generated_text"]
print("reply:", json.dumps(chat[-1]["content"]))

# 2. The next turn: append a message to the returned conversation.
chat.append({"role": "user", "content": "Wait, what's so wild about soup cans?"})
chat = pipe(chat, **settings)[0]["generated_text"]
print("second reply:", json.dumps(chat[-1]["content"]))
print("roles:", json.dumps([message["role"] for message in chat]))

# 3. Streaming: the reply piece by piece, as it is generated.
pieces = []
for piece in pipe.stream(chat[:2], **settings):
    pieces.append(piece)
    print(piece, end="", flush=True)
print()
print("streamed pieces:", json.dumps(len(pieces)))
