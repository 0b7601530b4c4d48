"""Convert a Whisper model in CTranslate2 format (``model.bin``, ``config.json``,
``tokenizer.json``: what faster-whisper and its packages ship) to a Hub-format folder that
lightpipe and transformers load: config.json, model.safetensors, generation_config.json,
preprocessor_config.json, tokenizer.json and tokenizer_config.json.

    python -m lightpipe.convert_ctranslate2 path/to/ct2-model out-folder [--name tiny.en]

CTranslate2 fuses the attention projections (q, k, v into one linear; the cross-attention's
k and v into another) and stores ``gamma``/``beta`` for layer norms; the file is a flat list
of named arrays (format version 6): this module reads it with numpy, without ctranslate2.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import struct
from pathlib import Path
from typing import Any

from .errors import ModelNotFoundError, WeightsError

# CTranslate2's DataType enum -> numpy dtype names.
_DTYPES = {0: "float32", 1: "int8", 2: "int16", 3: "int32", 4: "float16", 5: "bfloat16"}


def read_model_bin(path: str | Path) -> tuple[str, dict[str, Any]]:
    """(spec name, {variable name: numpy array}) from a CTranslate2 ``model.bin``. Aliases
    (tied weights) point to the same array."""
    import numpy as np

    data = Path(path).read_bytes()
    pos = 0

    def unpack(fmt: str):
        nonlocal pos
        values = struct.unpack_from("<" + fmt, data, pos)
        pos += struct.calcsize("<" + fmt)
        return values

    def string() -> str:
        nonlocal pos
        (length,) = unpack("H")
        text = data[pos:pos + length].rstrip(b"\0").decode("utf-8")
        pos += length
        return text

    try:
        (version,) = unpack("I")
        if version < 5:
            raise WeightsError(f"{path}: CTranslate2 format version {version} is not supported "
                               "(5 or later); convert the model again with a recent ctranslate2.")
        spec = string()
        unpack("I")  # spec revision
        (count,) = unpack("I")
        variables: dict[str, Any] = {}
        for _ in range(count):
            name = string()
            (rank,) = unpack("B")
            dims = unpack("I" * rank) if rank else ()
            (dtype,) = unpack("B")
            (size,) = unpack("I")
            raw = data[pos:pos + size]
            pos += size
            if dtype == 5:  # bfloat16: widen through uint16 -> float32
                array = (np.frombuffer(raw, dtype=np.uint16).astype(np.uint32) << 16).view(np.float32)
            else:
                array = np.frombuffer(raw, dtype=_DTYPES[dtype])
            variables[name] = array.reshape(dims) if dims else array.reshape(())
        (aliases,) = unpack("I")
        for _ in range(aliases):
            alias, target = string(), string()
            variables[alias] = variables[target]
    except (struct.error, KeyError, UnicodeDecodeError) as err:
        raise WeightsError(f"{path} is not a readable CTranslate2 model.bin ({err}).") from err
    return spec, variables


def _norm(out: dict, prefix: str, source: dict, name: str) -> None:
    out[f"{prefix}.weight"] = source[f"{name}/gamma"]
    out[f"{prefix}.bias"] = source[f"{name}/beta"]


def _linear(out: dict, prefix: str, source: dict, name: str, bias: bool = True) -> None:
    out[f"{prefix}.weight"] = source[f"{name}/weight"]
    if bias:
        out[f"{prefix}.bias"] = source[f"{name}/bias"]


def _split(out: dict, prefixes: list[str], source: dict, name: str) -> None:
    """A fused linear -> its parts (k_proj has no bias in Whisper: CTranslate2 stores zeros)."""
    import numpy as np

    weights = np.split(source[f"{name}/weight"], len(prefixes), axis=0)
    biases = np.split(source[f"{name}/bias"], len(prefixes), axis=0)
    for prefix, weight, bias in zip(prefixes, weights, biases):
        out[f"{prefix}.weight"] = weight
        if not prefix.endswith("k_proj"):
            out[f"{prefix}.bias"] = bias


def whisper_state(variables: dict[str, Any]) -> tuple[dict[str, Any], dict[str, int]]:
    """CTranslate2 WhisperSpec variables -> (transformers' state dict, sizes)."""
    state: dict[str, Any] = {}
    def count(side: str) -> int:
        return len({k.split("/")[1] for k in variables
                    if re.match(rf"{side}/layer_\d+/", k)})

    encoder_layers, decoder_layers = count("encoder"), count("decoder")

    def self_attention_and_ffn(ours: str, theirs: str) -> None:  # what every layer has
        _norm(state, f"{ours}.self_attn_layer_norm", variables, f"{theirs}/self_attention/layer_norm")
        _split(state, [f"{ours}.self_attn.{p}" for p in ("q_proj", "k_proj", "v_proj")],
               variables, f"{theirs}/self_attention/linear_0")
        _linear(state, f"{ours}.self_attn.out_proj", variables, f"{theirs}/self_attention/linear_1")
        _norm(state, f"{ours}.final_layer_norm", variables, f"{theirs}/ffn/layer_norm")
        _linear(state, f"{ours}.fc1", variables, f"{theirs}/ffn/linear_0")
        _linear(state, f"{ours}.fc2", variables, f"{theirs}/ffn/linear_1")

    for conv in ("conv1", "conv2"):
        _linear(state, f"model.encoder.{conv}", variables, f"encoder/{conv}")
    state["model.encoder.embed_positions.weight"] = variables["encoder/position_encodings/encodings"]
    for i in range(encoder_layers):
        self_attention_and_ffn(f"model.encoder.layers.{i}", f"encoder/layer_{i}")
    _norm(state, "model.encoder.layer_norm", variables, "encoder/layer_norm")
    state["model.decoder.embed_tokens.weight"] = variables["decoder/embeddings/weight"]
    state["model.decoder.embed_positions.weight"] = variables["decoder/position_encodings/encodings"]
    for i in range(decoder_layers):
        ours, theirs = f"model.decoder.layers.{i}", f"decoder/layer_{i}"
        self_attention_and_ffn(ours, theirs)
        _norm(state, f"{ours}.encoder_attn_layer_norm", variables, f"{theirs}/attention/layer_norm")
        _linear(state, f"{ours}.encoder_attn.q_proj", variables, f"{theirs}/attention/linear_0")
        _split(state, [f"{ours}.encoder_attn.{p}" for p in ("k_proj", "v_proj")],
               variables, f"{theirs}/attention/linear_1")
        _linear(state, f"{ours}.encoder_attn.out_proj", variables, f"{theirs}/attention/linear_2")
    _norm(state, "model.decoder.layer_norm", variables, "decoder/layer_norm")
    sizes = {
        "d_model": int(state["model.encoder.conv1.weight"].shape[0]),
        "num_mel_bins": int(state["model.encoder.conv1.weight"].shape[1]),
        "encoder_layers": encoder_layers, "decoder_layers": decoder_layers,
        "encoder_attention_heads": int(variables["encoder/num_heads"]),
        "decoder_attention_heads": int(variables["decoder/num_heads"]),
        "encoder_ffn_dim": int(state["model.encoder.layers.0.fc1.weight"].shape[0]),
        "decoder_ffn_dim": int(state["model.decoder.layers.0.fc1.weight"].shape[0]),
        "max_source_positions": int(state["model.encoder.embed_positions.weight"].shape[0]),
        "max_target_positions": int(state["model.decoder.embed_positions.weight"].shape[0]),
        "vocab_size": int(state["model.decoder.embed_tokens.weight"].shape[0]),
    }
    return state, sizes


def convert(source: str | Path, target: str | Path, dtype: str | None = None) -> Path:
    """Write the Hub-format Whisper folder for the CTranslate2 model in ``source``; ``dtype``
    ("float32", "float16") casts the weights (default: as stored, often float16)."""
    import numpy as np
    from safetensors.numpy import save_file

    source, target = Path(source), Path(target)
    if not (source / "model.bin").is_file():
        raise ModelNotFoundError(f"{source} has no model.bin: it is not a CTranslate2 model folder.")
    spec, variables = read_model_bin(source / "model.bin")
    if spec != "WhisperSpec":
        raise WeightsError(f"{source}/model.bin holds a {spec}; only WhisperSpec is converted.")
    state, sizes = whisper_state(variables)
    if dtype is not None:
        state = {k: v.astype(dtype) for k, v in state.items()}
    ct2_config = json.loads((source / "config.json").read_text()) if (source / "config.json").is_file() else {}
    target.mkdir(parents=True, exist_ok=True)
    dtype = str(state["model.encoder.conv1.weight"].dtype)
    save_file({k: np.ascontiguousarray(v) for k, v in state.items()},
              str(target / "model.safetensors"), metadata={"format": "pt"})

    tokenizer = json.loads((source / "tokenizer.json").read_text(encoding="utf-8"))
    added = {t["content"]: t["id"] for t in tokenizer.get("added_tokens", [])}
    end, start = added["<|endoftext|>"], added["<|startoftranscript|>"]
    no_timestamps = added["<|notimestamps|>"]
    languages = {t: i for t, i in added.items() if i in set(ct2_config.get("lang_ids", []))}
    multilingual = sizes["vocab_size"] >= 51865
    suppress = ct2_config.get("suppress_ids", [])
    begin_suppress = ct2_config.get("suppress_ids_begin", [220, end])
    config = {"architectures": ["WhisperForConditionalGeneration"], "model_type": "whisper",
              **sizes, "activation_function": "gelu", "bos_token_id": end, "eos_token_id": end,
              "pad_token_id": end, "decoder_start_token_id": start, "scale_embedding": False,
              "suppress_tokens": suppress, "begin_suppress_tokens": begin_suppress,
              "torch_dtype": dtype, "tie_word_embeddings": True, "use_cache": True}
    (target / "config.json").write_text(json.dumps(config, indent=2))
    generation = {"decoder_start_token_id": start, "bos_token_id": end, "eos_token_id": end,
                  "pad_token_id": end, "max_length": sizes["max_target_positions"],
                  "suppress_tokens": suppress, "begin_suppress_tokens": begin_suppress,
                  "no_timestamps_token_id": no_timestamps, "max_initial_timestamp_index": 50,
                  "prev_sot_token_id": added.get("<|startofprev|>"), "return_timestamps": False,
                  "is_multilingual": multilingual,
                  "alignment_heads": ct2_config.get("alignment_heads", [])}
    if multilingual:
        generation["lang_to_id"] = languages
        generation["task_to_id"] = {"transcribe": added["<|transcribe|>"],
                                    "translate": added["<|translate|>"]}
        generation["forced_decoder_ids"] = [[1, None], [2, added["<|transcribe|>"]]]
    else:
        generation["forced_decoder_ids"] = [[1, no_timestamps]]
    (target / "generation_config.json").write_text(json.dumps(generation, indent=2))
    (target / "preprocessor_config.json").write_text(json.dumps({
        "feature_extractor_type": "WhisperFeatureExtractor", "feature_size": sizes["num_mel_bins"],
        "sampling_rate": 16000, "hop_length": 160, "chunk_length": 30, "n_fft": 400,
        "padding_value": 0.0, "return_attention_mask": False, "padding_side": "right",
        "processor_class": "WhisperProcessor"}, indent=2))
    shutil.copy(source / "tokenizer.json", target / "tokenizer.json")
    specials = [t for t, i in sorted(added.items(), key=lambda kv: kv[1])]
    (target / "tokenizer_config.json").write_text(json.dumps({
        "tokenizer_class": "WhisperTokenizer", "bos_token": "<|endoftext|>",
        "eos_token": "<|endoftext|>", "unk_token": "<|endoftext|>", "pad_token": "<|endoftext|>",
        "additional_special_tokens": specials, "model_max_length": 1024,
        "processor_class": "WhisperProcessor", "clean_up_tokenization_spaces": False,
        "errors": "replace", "add_prefix_space": False}, indent=2))
    return target


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source", help="folder with CTranslate2's model.bin, config.json, tokenizer.json")
    parser.add_argument("target", help="the Hub-format folder to write")
    parser.add_argument("--dtype", choices=["float32", "float16"], default=None,
                        help="cast the weights (default: keep the stored dtype)")
    args = parser.parse_args(argv)
    print(convert(args.source, args.target, args.dtype))


if __name__ == "__main__":
    main()
