"""Token embeddings of GGUF files kept quantized (``dequantize=False``):
``lightpipe.quantization.embedding.QuantizedEmbedding`` gathers and dequantizes only the
asked rows; a tied output projection and the embedding hold one copy of the codes.

Compared with the same file dequantised to float32 (the reference's way of loading it, checked
against transformers in test_gguf.py). The per-block-type logits and rows are checked in
test_gguf_packed.py (``test_block_type_matches_dequantised``); here: the row gathering itself,
the tied case's shared storage and memory, ``inputs_embeds`` and ``generate``, ``weight``.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from gguf import GGMLQuantizationType as Q

from lightpipe.quantization import Int4Linear, Int8Linear, kernels
from lightpipe.quantization.embedding import QuantizedEmbedding, RowCodes, gather_rows
from tests.test_gguf_packed import (IDS, INT16_ORDER, NEAREST_TOLERANCE, _load, _relative_error,
                                    tiny_file)


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("gguf-embedding")


def _storage_bytes(model: torch.nn.Module) -> dict[int, tuple[int, bool]]:
    """Each distinct storage of the model's parameters and buffers: bytes, floating."""
    found = {}
    for tensor in list(model.parameters()) + list(model.buffers()):
        storage = tensor.untyped_storage()
        found[storage.data_ptr()] = (storage.nbytes(), tensor.is_floating_point())
    return found


@pytest.mark.parametrize("out_features", [77, 96])  # rows padded to a tile of 32, whole tiles
def test_gather_rows_equal_the_tables_dense_weight(out_features):
    """Rows gathered from each table layout equal the rows of its dequantised weight, bit for
    bit (both tile halves of the int4 layout, the padded tail, repeated ids)."""
    torch.manual_seed(0)
    weight = torch.randn(out_features, 64)
    tables = [Int4Linear.from_weight(weight, 32, None, torch.float32),
              Int4Linear.from_weight(weight, 64, None, torch.bfloat16),
              Int8Linear.from_weight(weight, None, torch.float32),
              Int8Linear.grouped_from_weight(weight, 32, None, torch.bfloat16)]
    ids = torch.tensor([0, 15, 16, 31, 32, 47, 48, 63, out_features - 1, 5, 5])
    for table in tables:
        assert torch.equal(gather_rows(table, ids), table.dense_weight()[ids]), table
        embedding = QuantizedEmbedding(table, torch.float32)
        assert torch.equal(embedding(ids.view(1, -1))[0], table.dense_weight()[ids])
        # and close to the float weight (a wrong nibble or scale is far off)
        assert _relative_error(embedding(ids), weight[ids]) < 0.2


@pytest.mark.parametrize("bits,group,affine", [(5, 32, False), (5, 32, True), (6, 16, False)])
def test_row_codes_hold_codes_and_scales(bits, group, affine):
    """RowCodes (low nibbles and bit planes): each row is (code - 2^(bits-1)) * scale (+ zero),
    computed here from the codes directly."""
    torch.manual_seed(1)
    codes = torch.randint(0, 1 << bits, (45, 96))
    scales = torch.rand(45, 96 // group)
    zeros = torch.randn(45, 96 // group) if affine else None
    table = RowCodes.from_codes(codes, bits, group, scales, zeros)
    expected = (codes.float().view(45, -1, group) - 2 ** (bits - 1)) * scales.unsqueeze(-1)
    if affine:
        expected = expected + zeros.unsqueeze(-1)
    ids = torch.tensor([44, 0, 7, 7, 31])
    assert torch.equal(gather_rows(table, ids), expected.view(45, 96)[ids])
    assert table.low.numel() + table.high.numel() == 45 * 96 * bits // 8
    embedding = QuantizedEmbedding(table, torch.bfloat16)
    assert embedding(ids.view(1, -1)).dtype == torch.bfloat16



@pytest.mark.parametrize("qtype,kernel", [(Q.Q4_1, True), (Q.Q8_0, True), (Q.Q8_0, False)],
                         ids=["Q4_1", "Q8_0", "Q8_0-no-kernel"])
def test_tied_head_and_embedding_share_one_copy(folder, monkeypatch, qtype, kernel):
    """A tied file: the embedding reads the output projection's codes (the same buffers, no
    second copy, no float table); without lightpipe's C kernel a Q8_0 head stays tied to the
    dequantised float embedding as before."""
    if not kernel:
        monkeypatch.setenv("LIGHTPIPE_KERNELS", "0")
    kernels.reset()
    try:
        path = tiny_file(folder, qtype, tied=True)
        dense = _load(path)
        packed = _load(path, dequantize=False, dtype="float32")
        shares = qtype == Q.Q4_1 or kernels.available()
    finally:
        monkeypatch.delenv("LIGHTPIPE_KERNELS", raising=False)
        kernels.reset()
    reference = dense.get_input_embeddings().weight
    embedding = packed.get_input_embeddings()
    vocab, hidden = reference.shape
    if shares:
        assert isinstance(embedding, QuantizedEmbedding) and embedding.shared
        head = packed.lm_head
        assert isinstance(head, Int4Linear if qtype == Q.Q4_1 else Int8Linear)
        assert embedding.table is head
        pointers = {name: buffer.data_ptr() for name, buffer in head.named_buffers()}
        read = embedding.table.named_buffers()
        assert {name: buffer.data_ptr() for name, buffer in read} == pointers
        assert not any(key.startswith("model.embed_tokens") for key in packed.state_dict())
        assert embedding.nbytes() == sum(b.numel() * b.element_size() for b in head.buffers())
        # no float tensor the size of the vocabulary table anywhere in the model
        storages = _storage_bytes(packed)
        assert all(not floating or size < vocab * hidden * 4
                   for size, floating in storages.values())
        assert embedding.nbytes() < vocab * hidden * 4 / 2.5
        # the rows are the head's rows, and the file's values
        ids = torch.arange(vocab)
        assert torch.equal(embedding(ids), head.dense_weight())
        assert torch.allclose(embedding(ids), reference, rtol=1e-5, atol=1e-7)
    else:
        assert isinstance(embedding, torch.nn.Embedding)
        assert packed.lm_head.weight is embedding.weight
    with torch.no_grad():
        error = _relative_error(packed(IDS).logits, dense(IDS).logits)
    # exact layouts throughout (int4; int8 groups of 32 on the C kernel), else the linear
    # layers' int8 per row (see test_gguf_packed.NEAREST_TOLERANCE)
    assert error < (INT16_ORDER if shares else NEAREST_TOLERANCE[qtype]), error


def test_inputs_embeds_and_generate(folder):
    """Untied Qwen2 Q4_K at the default dtype: the embedding's own int4 table feeds
    ``inputs_embeds`` and ``generate`` (from ids and from embeddings) like the ids do."""
    path = tiny_file(folder, Q.Q4_K, "qwen2")
    dense = _load(path)
    packed = _load(path, dequantize=False)
    embedding = packed.get_input_embeddings()
    assert isinstance(embedding, QuantizedEmbedding) and not embedding.shared
    assert isinstance(embedding.table, Int4Linear) and embedding.table is not packed.lm_head
    assert embedding.dtype == packed.dtype
    embeds = embedding(IDS)
    assert embeds.dtype == packed.dtype and embeds.shape == (1, IDS.shape[1], 256)
    with torch.no_grad():
        reference = dense(IDS).logits
        from_embeds = packed(inputs_embeds=embeds).logits
        assert torch.equal(from_embeds, packed(IDS).logits)
        # the dense model given our rows: the same logits as given its own (rows exact in
        # float32; bfloat16 where the model runs in it, without lightpipe's C kernel)
        exact = packed.dtype == torch.float32
        error = _relative_error(dense(inputs_embeds=embeds.float()).logits, reference)
        assert error < (1e-5 if exact else 0.03), error
    assert _relative_error(from_embeds, reference) < 0.03
    by_ids = packed.generate(IDS, max_new_tokens=5, do_sample=False)
    by_embeds = packed.generate(inputs_embeds=embeds, max_new_tokens=5, do_sample=False)
    assert torch.equal(by_embeds, by_ids[:, IDS.shape[1]:])
    # the embedding's memory: int4 codes and one (scale, zero) pair per 32 values
    vocab, padded = embedding.num_embeddings, embedding.table.packed.shape[0]
    assert padded == vocab + -vocab % 32
    itemsize = embedding.table.scales_and_zeros.element_size()
    assert embedding.nbytes() == padded * 256 // 2 + padded * 256 // 32 * 2 * itemsize


def test_weight_read_dequantizes_and_changes_are_refused(folder):
    path = tiny_file(folder, Q.Q5_0)
    dense = _load(path)
    packed = _load(path, dequantize=False, dtype="bfloat16")
    embedding = packed.get_input_embeddings()
    assert isinstance(embedding, QuantizedEmbedding)
    # Q5_0's own 5-bit codes: low nibbles, one bit plane, a scale per 32 values
    assert isinstance(embedding.table, RowCodes) and embedding.table.bits == 5
    vocab, itemsize = embedding.num_embeddings, embedding.table.scales.element_size()
    assert embedding.nbytes() == vocab * 256 // 2 + vocab * 256 // 8 + vocab * 256 // 32 * itemsize
    reference = dense.get_input_embeddings().weight
    weight = embedding.weight  # the whole table dequantised (slow path), in the model's dtype
    assert weight.dtype == torch.bfloat16 and weight.shape == reference.shape
    assert torch.allclose(weight.float(), reference, rtol=1e-2, atol=1e-6)
    with pytest.raises(AttributeError, match="dequantize=True"):
        embedding.weight = torch.nn.Parameter(reference)
    with pytest.raises(IndexError, match="vocabulary"):
        embedding(torch.tensor([[0, embedding.num_embeddings]]))
    with pytest.raises(TypeError, match="token ids"):
        embedding(torch.zeros(1, 2))
    packed.to(torch.float32)  # lookups follow the model's dtype
    assert embedding(IDS).dtype == torch.float32
