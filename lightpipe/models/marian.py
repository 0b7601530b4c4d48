"""Marian (Junczys-Dowmunt et al., 2018, arXiv:1804.00344): the OPUS-MT translation models
(``Helsinki-NLP/opus-mt-xx-yy``), a BART-shaped post-norm encoder-decoder.

Matches transformers' ``models/marian/modeling_marian.py`` by reusing ``bart.py``'s blocks;
what differs: sinusoidal positions (sines in the first half of each vector, cosines in the
second, not stored in checkpoints), no norm after the embeddings, embeddings scaled by
sqrt(d_model), and optionally separate source and target vocabularies
(``share_encoder_decoder_embeddings: false``, ``decoder_vocab_size``).
"""

from __future__ import annotations

import torch
from torch import nn

from .bart import BART_DEFAULTS, BartForConditionalGeneration, BartModel

MARIAN_DEFAULTS = {**BART_DEFAULTS, "vocab_size": 58101, "decoder_vocab_size": None,
                   "scale_embedding": False, "pad_token_id": 58100, "eos_token_id": 0,
                   "decoder_start_token_id": 58100, "forced_eos_token_id": 0,
                   "share_encoder_decoder_embeddings": True}


class SinusoidalPositions(nn.Module):
    """Fixed positions: (length, dim) sines then cosines, computed, never loaded."""

    def __init__(self, num_positions: int, dim: int):
        super().__init__()
        self.num_positions, self.dim = num_positions, dim
        self.register_buffer("weight", self.table(), persistent=False)

    def table(self, device=None) -> torch.Tensor:
        positions = torch.arange(self.num_positions, dtype=torch.float64, device=device)[:, None]
        pairs = torch.arange(self.dim, device=device) // 2
        angles = positions / torch.pow(10000.0, 2 * pairs.double() / self.dim)  # (positions, dim)
        half = (self.dim + 1) // 2
        table = torch.empty(self.num_positions, self.dim, dtype=torch.float32, device=device)
        table[:, :half] = torch.sin(angles[:, 0::2]).float()
        table[:, half:] = torch.cos(angles[:, 1::2]).float()
        return table

    def reset_buffers(self, device) -> None:  # called after loading (buffers built on meta)
        self.register_buffer("weight", self.table(device), persistent=False)

    def forward(self, past: int, length: int) -> torch.Tensor:  # (length, dim)
        return self.weight[past:past + length]


class MarianVariant:
    """What Marian changes in BART."""

    model_type = "marian"
    config_defaults = MARIAN_DEFAULTS
    embedding_norm = False
    ignored_weights = [r"embed_positions\.weight$"]

    def positions(self, config) -> nn.Module:
        return SinusoidalPositions(config.max_position_embeddings, config.d_model)


class MarianModel(MarianVariant, BartModel):
    def __init__(self, config):
        if config.get("decoder_vocab_size") is None:
            config.decoder_vocab_size = config.get("vocab_size", MARIAN_DEFAULTS["vocab_size"])
        shared = config.get("share_encoder_decoder_embeddings", True)
        super().__init__(config)
        if not shared:  # separate source and target vocabularies: no ``shared`` table
            del self.shared
            self.encoder.embed_tokens = nn.Embedding(config.vocab_size, config.d_model, config.pad_token_id)
            self.decoder.embed_tokens = nn.Embedding(config.decoder_vocab_size, config.d_model,
                                                     config.pad_token_id)

    def active_ties(self) -> dict[str, str]:
        return dict(self.tied_weights) if self.config.share_encoder_decoder_embeddings else {}


class MarianMTModel(MarianVariant, BartForConditionalGeneration):
    model_class = MarianModel

    def active_ties(self) -> dict[str, str]:
        config = self.config
        if config.share_encoder_decoder_embeddings:
            ties = dict(self.tied_weights)
            if config.get("tie_word_embeddings") is False:
                ties.pop("lm_head.weight")
            return ties
        if config.get("tie_word_embeddings") is False:
            return {}
        return {"lm_head.weight": "model.decoder.embed_tokens.weight"}


# model_type -> head -> class, read by models/__init__.py
HEADS = {"AutoModel": MarianModel, "AutoModelForSeq2SeqLM": MarianMTModel}
